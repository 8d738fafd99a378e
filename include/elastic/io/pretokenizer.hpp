// Pre-tokenizers of byte-level BPE vocabularies: the text is cut into pieces
// by a list of regular expressions applied one after the other (each cuts
// every piece of the previous step into its matches and the text between
// them), and BPE merges then run inside each piece only. The lists are the
// ones the model families were trained with, named as GGUF's
// tokenizer.ggml.pre names them; they run on PCRE2 with UTF and Unicode
// properties. Invalid UTF-8 never matches a pattern element, so stray bytes
// end up in pieces of their own and are still encoded (byte-level BPE can
// spell any byte).
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "elastic/core/error.hpp"

namespace elastic::io {

// A piece of the text: [begin, begin + size).
struct TextSpan {
  std::size_t begin = 0;
  std::size_t size = 0;
};

namespace pretokenizer_patterns {

// GPT-2 (the HF ByteLevel pre-tokenizer's own regex).
inline constexpr std::string_view gpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama 3: case-insensitive contractions, numbers in runs of at most three digits.
inline constexpr std::string_view llama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen 2: as Llama 3 but every digit on its own.
inline constexpr std::string_view qwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Every digit on its own (HF's Digits pre-tokenizer with individual_digits).
inline constexpr std::string_view single_digit = R"(\p{N})";

}  // namespace pretokenizer_patterns

struct NamedPretokenizer {
  std::string_view name;
  std::vector<std::string_view> patterns;
};

inline const std::vector<NamedPretokenizer>& named_pretokenizers() {
  namespace p = pretokenizer_patterns;
  static const std::vector<NamedPretokenizer> table = {
      {"gpt2", {p::gpt2}},
      {"smollm", {p::single_digit, p::gpt2}},  // SmolLM/SmolLM2: Digits(individual) then ByteLevel
      {"llama-bpe", {p::llama3}},
      {"qwen2", {p::qwen2}},
      // GGUF's fallback when a file names no pre-tokenizer.
      {"default", {R"([\p{P}\$\+<=>\^~\|]+)", p::gpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}},
  };
  return table;
}

inline std::string supported_pretokenizer_names() {
  std::string names;
  for (const NamedPretokenizer& entry : named_pretokenizers()) names += (names.empty() ? "" : ", ") + std::string(entry.name);
  return names;
}

class Pretokenizer {
 public:
  // Throws elastic::Error listing the supported names when `name` is not one of them.
  static Pretokenizer named(std::string_view name) {
    for (const NamedPretokenizer& entry : named_pretokenizers())
      if (entry.name == name) return Pretokenizer(entry.patterns);
    throw Error(elastic::detail::concat("unknown pre-tokenizer '", name, "'; supported: ", supported_pretokenizer_names()));
  }

  // The pieces of `text`, in order, covering all of it.
  std::vector<TextSpan> split(std::string_view text) const {
    std::vector<TextSpan> pieces{{0, text.size()}};
    if (text.empty()) return {};
    for (const Pattern& pattern : patterns_) {
      std::vector<TextSpan> finer;
      for (const TextSpan& piece : pieces) pattern.split_isolated(text, piece, finer);
      pieces = std::move(finer);
    }
    return pieces;
  }

 private:
  class Pattern {
   public:
    explicit Pattern(std::string_view source) {
      int error_code = 0;
      PCRE2_SIZE error_offset = 0;
      code_ = std::shared_ptr<pcre2_code>(
          pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error_code, &error_offset, nullptr),
          CodeDeleter{});
      require(code_ != nullptr, "pre-tokenizer regex '", source, "' does not compile at offset ", error_offset, ": ",
              message(error_code));
    }

    // Appends to `out` the matches of the pattern inside `piece` and the non-empty gaps between them.
    void split_isolated(std::string_view text, TextSpan piece, std::vector<TextSpan>& out) const {
      const std::unique_ptr<pcre2_match_data, MatchDataDeleter> match(
          pcre2_match_data_create_from_pattern(code_.get(), nullptr));
      require(match != nullptr, "pre-tokenizer: out of memory for a match block");
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + piece.begin);
      std::size_t gap_begin = 0;
      std::size_t offset = 0;
      while (offset < piece.size) {
        const int rc = pcre2_match(code_.get(), subject, piece.size, offset, 0, match.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        require(rc >= 0, "pre-tokenizer regex match failed: ", message(rc));
        const PCRE2_SIZE* bounds = pcre2_get_ovector_pointer(match.get());
        if (bounds[1] == bounds[0]) {  // an empty match cuts nothing: step past it
          offset = bounds[0] + 1;
          continue;
        }
        if (bounds[0] > gap_begin) out.push_back({piece.begin + gap_begin, bounds[0] - gap_begin});
        out.push_back({piece.begin + bounds[0], bounds[1] - bounds[0]});
        gap_begin = offset = bounds[1];
      }
      if (piece.size > gap_begin) out.push_back({piece.begin + gap_begin, piece.size - gap_begin});
    }

   private:
    struct CodeDeleter {
      void operator()(pcre2_code* code) const { pcre2_code_free(code); }
    };
    struct MatchDataDeleter {
      void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
    };

    static std::string message(int error_code) {
      std::array<PCRE2_UCHAR, 256> buffer{};
      const int length = pcre2_get_error_message(error_code, buffer.data(), buffer.size());
      return length < 0 ? "PCRE2 error " + std::to_string(error_code)
                        : std::string(reinterpret_cast<const char*>(buffer.data()), static_cast<std::size_t>(length));
    }

    std::shared_ptr<pcre2_code> code_;  // immutable once compiled, so copies of a tokenizer share it
  };

  explicit Pretokenizer(const std::vector<std::string_view>& sources) {
    for (std::string_view source : sources) patterns_.emplace_back(source);
  }

  std::vector<Pattern> patterns_;
};

}  // namespace elastic::io
