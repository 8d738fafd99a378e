// A tokenizer as a model file describes it, before it is built: the
// vocabulary with its scores and token kinds, the BPE merges, the
// pre-tokenizer's name and the special tokens. GGUF metadata
// (tokenizer.ggml.*) and HF tokenizer.json both read into this; the
// tokenizers (tokenizer.hpp) are built from it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace elastic::io {

enum class TokenizerModel : std::uint8_t {
  byte_level_bpe,  // GPT-2 family: GGUF "gpt2", tokenizer.json BPE with a ByteLevel pre-tokenizer
  sentencepiece,   // Llama 2 family: GGUF "llama", scores and <0xNN> byte fallback
};

// GGUF's tokenizer.ggml.token_type values.
enum class TokenKind : std::uint8_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

struct TokenizerSpec {
  TokenizerModel model = TokenizerModel::byte_level_bpe;
  std::string pre;                   // pre-tokenizer name: "smollm", "llama-bpe", "gpt2", "qwen2", "default", ...
  std::vector<std::string> tokens;   // id -> token text (byte-level BPE: GPT-2's byte-to-unicode spelling)
  std::vector<float> scores;         // sentencepiece: id -> score; empty otherwise
  std::vector<TokenKind> kinds;      // id -> kind; empty means all normal
  std::vector<std::string> merges;   // byte-level BPE: "left right", highest priority first
  std::optional<int> bos_id;
  std::vector<int> eos_ids;
  std::optional<int> unknown_id;
  std::optional<int> padding_id;
  bool add_bos = false;              // encode() of a prompt starts with bos
  bool add_eos = false;
  bool add_space_prefix = true;      // sentencepiece: a leading "▁" before the first word
  std::string chat_template;         // Jinja text as the file stores it; empty when none
};

}  // namespace elastic::io
