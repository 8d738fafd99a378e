// Small vocabularies the tokenizer tests and the tokenizer fuzzer build
// themselves: a byte-level BPE one (all 256 bytes, a few merges, added
// tokens) and a SentencePiece one (scored pieces, <0xNN> byte tokens).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "elastic/io/byte_level.hpp"
#include "elastic/io/tokenizer_spec.hpp"

namespace elastic::test {

inline void add_token(io::TokenizerSpec& spec, std::string text, io::TokenKind kind, float score = 0) {
  spec.tokens.push_back(std::move(text));
  spec.kinds.push_back(kind);
  if (spec.model == io::TokenizerModel::sentencepiece) spec.scores.push_back(score);
}

// Ids 0..255: the bytes; then one token per merge; then <|start|>, <|end|> (control) and <think> (user-defined).
inline io::TokenizerSpec small_byte_level_spec() {
  io::TokenizerSpec spec;
  spec.model = io::TokenizerModel::byte_level_bpe;
  spec.pre = "gpt2";
  spec.add_space_prefix = false;
  const io::ByteLevelAlphabet& alphabet = io::ByteLevelAlphabet::instance();
  for (unsigned byte = 0; byte < 256; ++byte)
    add_token(spec, std::string(alphabet.spell(static_cast<std::uint8_t>(byte))), io::TokenKind::normal);
  spec.merges = {"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ġ t", "Ġt he",
                 "1 2", "Ġ Ġ"};
  // 😀 is F0 9F 98 80: merge it into one token in two steps.
  const auto spell = [&](const char* bytes) { return alphabet.spell(std::string_view(bytes)); };
  spec.merges.push_back(spell("\xF0") + " " + spell("\x9F"));
  spec.merges.push_back(spell("\xF0\x9F") + " " + spell("\x98"));
  spec.merges.push_back(spell("\xF0\x9F\x98") + " " + spell("\x80"));
  for (const std::string& merge : spec.merges) {
    const std::size_t space = merge.find(' ');
    add_token(spec, merge.substr(0, space) + merge.substr(space + 1), io::TokenKind::normal);
  }
  spec.bos_id = static_cast<int>(spec.tokens.size());
  add_token(spec, "<|start|>", io::TokenKind::control);
  spec.eos_ids = {static_cast<int>(spec.tokens.size())};
  add_token(spec, "<|end|>", io::TokenKind::control);
  add_token(spec, "<think>", io::TokenKind::user_defined);
  return spec;
}

// <unk>, <s>, </s>, <0x00>..<0xFF>, then scored pieces (higher scores merge first).
inline io::TokenizerSpec small_sentencepiece_spec() {
  io::TokenizerSpec spec;
  spec.model = io::TokenizerModel::sentencepiece;
  spec.add_space_prefix = true;
  spec.add_bos = true;
  spec.unknown_id = 0;
  add_token(spec, "<unk>", io::TokenKind::unknown);
  spec.bos_id = 1;
  add_token(spec, "<s>", io::TokenKind::control);
  spec.eos_ids = {2};
  add_token(spec, "</s>", io::TokenKind::control);
  const char* hex = "0123456789ABCDEF";
  for (unsigned byte = 0; byte < 256; ++byte)
    add_token(spec, std::string("<0x") + hex[byte >> 4] + hex[byte & 15] + ">", io::TokenKind::byte);
  const std::vector<std::pair<std::string, float>> pieces = {
      {"▁t", -1}, {"he", -2}, {"▁the", -3}, {"ll", -4}, {"▁w", -5}, {"or", -6}, {"▁wor", -7}, {"ld", -8},
      {"▁world", -9}, {"▁h", -10}, {"▁he", -11}, {"llo", -12}, {"▁hello", -13}, {"▁", -20}, {"h", -21},
      {"e", -22}, {"l", -23}, {"o", -24}, {"t", -25}, {"w", -26}, {"r", -27}, {"d", -28}, {"é", -29}};
  for (const auto& [piece, score] : pieces) add_token(spec, piece, io::TokenKind::normal, score);
  return spec;
}

}  // namespace elastic::test
