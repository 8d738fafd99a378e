// Finds a vocabulary's added tokens (control tokens such as <|im_start|>,
// user-defined ones such as <think>) in text before anything else sees it,
// so they are never split: the text is cut into plain-text fragments and
// whole tokens, taking at each position the longest token that starts there
// (leftmost-longest, as HF tokenizers and llama.cpp do).
#pragma once

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace elastic::io {

struct TextFragment {
  std::size_t begin = 0;
  std::size_t size = 0;
  int token_id = -1;  // -1: plain text to tokenize; else the whole added token
};

class SpecialTokenMatcher {
 public:
  struct Token {
    std::string_view text;
    int id;
  };

  SpecialTokenMatcher() = default;
  explicit SpecialTokenMatcher(const std::vector<Token>& tokens) {
    for (const Token& token : tokens)
      if (!token.text.empty())
        by_first_byte_[static_cast<unsigned char>(token.text.front())].push_back({std::string(token.text), token.id});
    for (auto& bucket : by_first_byte_)
      std::stable_sort(bucket.begin(), bucket.end(),
                       [](const Entry& a, const Entry& b) { return a.text.size() > b.text.size(); });
  }

  std::vector<TextFragment> split(std::string_view text) const {
    std::vector<TextFragment> fragments;
    std::size_t plain_begin = 0;
    for (std::size_t pos = 0; pos < text.size();) {
      const Entry* found = longest_at(text, pos);
      if (found == nullptr) {
        ++pos;
        continue;
      }
      if (pos > plain_begin) fragments.push_back({plain_begin, pos - plain_begin, -1});
      fragments.push_back({pos, found->text.size(), found->id});
      pos += found->text.size();
      plain_begin = pos;
    }
    if (text.size() > plain_begin) fragments.push_back({plain_begin, text.size() - plain_begin, -1});
    return fragments;
  }

 private:
  struct Entry {
    std::string text;
    int id;
  };

  const Entry* longest_at(std::string_view text, std::size_t pos) const {
    for (const Entry& entry : by_first_byte_[static_cast<unsigned char>(text[pos])])
      if (text.substr(pos, entry.text.size()) == entry.text) return &entry;
    return nullptr;
  }

  std::array<std::vector<Entry>, 256> by_first_byte_;
};

}  // namespace elastic::io
