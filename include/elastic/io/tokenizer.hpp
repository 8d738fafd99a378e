// Text <-> token ids for the vocabularies model files carry, built from a
// TokenizerSpec (read from GGUF metadata or an HF tokenizer.json):
//
// - byte-level BPE (GPT-2 family: SmolLM, Llama 3, Qwen 2): the text is cut
//   into pieces by the model's pre-tokenizer regexes, each piece's bytes are
//   spelled in GPT-2's byte alphabet and merged by merge rank. Lossless: any
//   byte string encodes and decodes back to itself.
// - SentencePiece (GGUF "llama": Llama 2, TinyLlama): spaces become '▁', an
//   optional '▁' starts the text, characters are merged best score first, and
//   pieces outside the vocabulary fall back to <0xNN> byte tokens (or the
//   unknown token).
//
// Added tokens (kinds control and user_defined) are matched in the text
// first and never split. decode() returns the raw bytes the tokens stand
// for; StreamingDecoder hands them out one token at a time without ever
// cutting a UTF-8 character in half.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/io/bpe_merge.hpp"
#include "elastic/io/byte_level.hpp"
#include "elastic/io/pretokenizer.hpp"
#include "elastic/io/special_tokens.hpp"
#include "elastic/io/tokenizer_spec.hpp"
#include "elastic/io/utf8.hpp"

namespace elastic::io {

class StreamingDecoder;

class Tokenizer {
 public:
  // Validates the spec (ids in range, per-token arrays of the vocabulary's
  // length, merges made of vocabulary tokens, a known pre-tokenizer) and
  // builds the lookup tables; throws elastic::Error on the first problem.
  static Tokenizer from_spec(TokenizerSpec spec) { return Tokenizer(std::move(spec)); }

  // add_special: bos/eos as the spec asks; parse_special: added tokens
  // written in the text become their ids (else they are ordinary text).
  std::vector<int> encode(std::string_view text, bool add_special = true, bool parse_special = true) const {
    std::vector<int> ids;
    if (add_special && spec_.add_bos && spec_.bos_id) ids.push_back(*spec_.bos_id);
    const std::vector<TextFragment> fragments =
        parse_special ? added_tokens_.split(text) : std::vector<TextFragment>{{0, text.size(), -1}};
    for (const TextFragment& fragment : fragments) {
      if (fragment.token_id >= 0) {
        ids.push_back(fragment.token_id);
      } else if (spec_.model == TokenizerModel::byte_level_bpe) {
        encode_byte_level(text.substr(fragment.begin, fragment.size), ids);
      } else {
        encode_sentencepiece(text.substr(fragment.begin, fragment.size), fragment.begin == 0, ids);
      }
    }
    if (add_special && spec_.add_eos && !spec_.eos_ids.empty()) ids.push_back(spec_.eos_ids.front());
    return ids;
  }

  // The bytes the ids stand for (not checked to be valid UTF-8: a cut-off
  // id sequence can end inside a character). Throws elastic::Error naming
  // an id outside the vocabulary.
  std::string decode(std::span<const int> ids, bool skip_special = false) const {
    std::string text;
    bool first = true;
    for (int id : ids) {
      check_id(id);
      if (skip_special && is_special(id)) continue;
      append_token_bytes(id, first, text);
      first = first && is_special(id);
    }
    return text;
  }

  StreamingDecoder streaming_decoder(bool skip_special = false) const;

  // The token as the vocabulary spells it (byte-level: in GPT-2's alphabet).
  std::string_view token_text(int id) const {
    check_id(id);
    return spec_.tokens[static_cast<std::size_t>(id)];
  }

  std::optional<int> token_id(std::string_view text) const {
    const auto found = token_ids_.find(text);
    if (found == token_ids_.end()) return std::nullopt;
    return found->second;
  }

  int vocab_size() const { return static_cast<int>(spec_.tokens.size()); }
  std::optional<int> bos_id() const { return spec_.bos_id; }
  std::span<const int> eos_ids() const { return spec_.eos_ids; }
  const TokenizerSpec& spec() const { return spec_; }

  TokenKind kind(int id) const {
    check_id(id);
    return kinds_[static_cast<std::size_t>(id)];
  }
  // Control tokens (bos, eos, <|im_start|>, ...) and the unknown token: what decode skips when asked.
  bool is_special(int id) const { return kind(id) == TokenKind::control || kind(id) == TokenKind::unknown; }
  bool is_eos(int id) const {
    check_id(id);
    return std::find(spec_.eos_ids.begin(), spec_.eos_ids.end(), id) != spec_.eos_ids.end();
  }

 private:
  friend class StreamingDecoder;

  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  using TokenIndex = std::unordered_map<std::string, int, StringHash, std::equal_to<>>;

  static constexpr std::string_view space_marker = "\xE2\x96\x81";  // '▁', SentencePiece's space

  explicit Tokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {
    validate_spec();
    kinds_ = spec_.kinds.empty() ? inferred_kinds() : spec_.kinds;
    std::vector<SpecialTokenMatcher::Token> added;
    for (std::size_t id = 0; id < spec_.tokens.size(); ++id) {
      const int as_int = static_cast<int>(id);
      token_ids_.try_emplace(spec_.tokens[id], as_int);
      if (kinds_[id] == TokenKind::control || kinds_[id] == TokenKind::user_defined)
        added.push_back({spec_.tokens[id], as_int});
    }
    added_tokens_ = SpecialTokenMatcher(added);
    byte_tokens_.fill(-1);
    if (spec_.model == TokenizerModel::byte_level_bpe) {
      build_byte_level();
    } else {
      build_sentencepiece();
    }
  }

  void check_id(int id) const {
    require(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary (size ", vocab_size(), ")");
  }

  void validate_spec() const {
    const std::size_t size = spec_.tokens.size();
    require(size > 0 && size <= static_cast<std::size_t>(INT32_MAX), "tokenizer: the vocabulary is empty or too large (",
            size, " tokens)");
    require(spec_.kinds.empty() || spec_.kinds.size() == size, "tokenizer: ", spec_.kinds.size(),
            " token kinds for ", size, " tokens");
    for (TokenKind kind : spec_.kinds)
      require(kind >= TokenKind::normal && kind <= TokenKind::byte, "tokenizer: unknown token kind ",
              static_cast<int>(kind));
    const auto check_special = [&](std::optional<int> id, std::string_view what) {
      require(!id || (*id >= 0 && static_cast<std::size_t>(*id) < size), "tokenizer: ", what, " id ", id.value_or(0),
              " is outside the vocabulary (size ", size, ")");
    };
    check_special(spec_.bos_id, "bos");
    check_special(spec_.unknown_id, "unknown");
    check_special(spec_.padding_id, "padding");
    for (int eos : spec_.eos_ids) check_special(eos, "eos");
    if (spec_.model == TokenizerModel::sentencepiece)
      require(spec_.scores.size() == size, "tokenizer: SentencePiece needs one score per token; got ",
              spec_.scores.size(), " scores for ", size, " tokens");
  }

  static std::optional<std::uint8_t> byte_token_value(std::string_view text) {
    const auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    if (text.size() != 6 || !text.starts_with("<0x") || text.back() != '>') return std::nullopt;
    const int high = hex(text[3]);
    const int low = hex(text[4]);
    if (high < 0 || low < 0) return std::nullopt;
    return static_cast<std::uint8_t>(high * 16 + low);
  }

  // Without kinds, a SentencePiece vocabulary's <0xNN> pieces are its byte tokens.
  std::vector<TokenKind> inferred_kinds() const {
    std::vector<TokenKind> kinds(spec_.tokens.size(), TokenKind::normal);
    if (spec_.model == TokenizerModel::sentencepiece)
      for (std::size_t id = 0; id < kinds.size(); ++id)
        if (byte_token_value(spec_.tokens[id])) kinds[id] = TokenKind::byte;
    return kinds;
  }

  // ---- byte-level BPE ----

  static std::uint64_t pair_key(int left, int right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }

  int required_token(std::string_view text, std::size_t merge_rank, std::string_view merge) const {
    const auto id = token_id(text);
    require(id.has_value(), "tokenizer: merge ", merge_rank, " '", merge, "' uses '", text,
            "', which is not in the vocabulary");
    return *id;
  }

  void build_byte_level() {
    pretokenizer_ = Pretokenizer::named(spec_.pre.empty() ? "default" : spec_.pre);
    ignore_merges_ = spec_.pre == "llama-bpe";  // Llama 3 takes a piece that is a whole token as it is
    const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::instance();
    for (unsigned byte = 0; byte < 256; ++byte)
      byte_tokens_[byte] = token_id(alphabet.spell(static_cast<std::uint8_t>(byte))).value_or(-1);
    merges_.reserve(spec_.merges.size());
    for (std::size_t rank = 0; rank < spec_.merges.size(); ++rank) {
      const std::string_view merge = spec_.merges[rank];
      const std::size_t space = merge.find(' ');
      require(space != std::string_view::npos && space > 0 && space + 1 < merge.size(), "tokenizer: merge ", rank,
              " '", merge, "' is not two tokens separated by a space");
      const std::string_view left = merge.substr(0, space);
      const std::string_view right = merge.substr(space + 1);
      const int left_id = required_token(left, rank, merge);
      const int right_id = required_token(right, rank, merge);
      const int merged = required_token(std::string(left) + std::string(right), rank, merge);
      merges_.try_emplace(pair_key(left_id, right_id), MergeChoice{static_cast<double>(rank), merged});
    }
  }

  void encode_byte_level(std::string_view text, std::vector<int>& ids) const {
    const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::instance();
    for (const TextSpan& span : pretokenizer_->split(text)) {
      const std::string_view piece = text.substr(span.begin, span.size);
      if (ignore_merges_) {
        if (const auto whole = token_id(alphabet.spell(piece))) {
          ids.push_back(*whole);
          continue;
        }
      }
      std::vector<MergeSymbol> symbols;
      symbols.reserve(piece.size());
      for (std::size_t i = 0; i < piece.size(); ++i)
        symbols.push_back({i, 1, byte_tokens_[static_cast<unsigned char>(piece[i])]});
      const auto choose = [&](const MergeSymbol& left, const MergeSymbol& right) -> std::optional<MergeChoice> {
        if (left.id < 0 || right.id < 0) return std::nullopt;
        const auto found = merges_.find(pair_key(left.id, right.id));
        if (found == merges_.end()) return std::nullopt;
        return found->second;
      };
      for (const MergeSymbol& symbol : merge_symbols(symbols, choose))
        symbol.id >= 0 ? ids.push_back(symbol.id) : append_unknown(piece.substr(symbol.begin, symbol.size), ids);
    }
  }

  // ---- SentencePiece ----

  void build_sentencepiece() {
    for (std::size_t id = 0; id < spec_.tokens.size(); ++id) {
      const int as_int = static_cast<int>(id);
      if (kinds_[id] == TokenKind::normal || kinds_[id] == TokenKind::user_defined) {
        pieces_.try_emplace(spec_.tokens[id], as_int);
      } else if (kinds_[id] == TokenKind::byte) {
        const auto value = byte_token_value(spec_.tokens[id]);
        require(value.has_value(), "tokenizer: byte token ", id, " '", spec_.tokens[id], "' is not spelled <0xNN>");
        byte_tokens_[*value] = as_int;
      }
    }
  }

  void encode_sentencepiece(std::string_view fragment, bool starts_text, std::vector<int>& ids) const {
    std::string text;
    if (spec_.add_space_prefix && starts_text) text += space_marker;
    for (char c : fragment) c == ' ' ? text += space_marker : text += c;

    std::vector<MergeSymbol> symbols;
    for (std::size_t pos = 0; pos < text.size();) {
      const std::size_t length = utf8::character_length(text, pos);
      symbols.push_back({pos, length, piece_id(std::string_view(text).substr(pos, length))});
      pos += length;
    }
    const auto choose = [&](const MergeSymbol& left, const MergeSymbol& right) -> std::optional<MergeChoice> {
      const int merged = piece_id(std::string_view(text).substr(left.begin, left.size + right.size));
      if (merged < 0) return std::nullopt;
      return MergeChoice{-static_cast<double>(spec_.scores[static_cast<std::size_t>(merged)]), merged};
    };
    for (const MergeSymbol& symbol : merge_symbols(symbols, choose)) {
      if (symbol.id >= 0) {
        ids.push_back(symbol.id);
        continue;
      }
      append_byte_fallback(std::string_view(text).substr(symbol.begin, symbol.size), ids);
    }
  }

  // A character no piece spells: its <0xNN> byte tokens, or the unknown token when some are missing.
  void append_byte_fallback(std::string_view character, std::vector<int>& ids) const {
    const bool all_bytes = std::all_of(character.begin(), character.end(),
                                       [&](char c) { return byte_tokens_[static_cast<unsigned char>(c)] >= 0; });
    if (!all_bytes) return append_unknown(character, ids);
    for (char c : character) ids.push_back(byte_tokens_[static_cast<unsigned char>(c)]);
  }

  int piece_id(std::string_view text) const {
    const auto found = pieces_.find(text);
    return found == pieces_.end() ? -1 : found->second;
  }

  void append_unknown(std::string_view text, std::vector<int>& ids) const {
    require(spec_.unknown_id.has_value(), "tokenizer: no token spells '", text,
            "' and the vocabulary has no unknown token");
    ids.push_back(*spec_.unknown_id);
  }

  // ---- decoding ----

  void append_token_bytes(int id, bool first, std::string& out) const {
    const std::string_view text = spec_.tokens[static_cast<std::size_t>(id)];
    const TokenKind token_kind = kinds_[static_cast<std::size_t>(id)];
    if (token_kind == TokenKind::control || token_kind == TokenKind::unknown ||
        (token_kind == TokenKind::user_defined && spec_.model == TokenizerModel::byte_level_bpe)) {
      out += text;
    } else if (spec_.model == TokenizerModel::byte_level_bpe) {
      ByteLevelAlphabet::instance().unspell(text, out);
    } else if (token_kind == TokenKind::byte) {
      out += static_cast<char>(*byte_token_value(text));
    } else {
      append_sentencepiece_text(text, first, out);
    }
  }

  // '▁' reads as a space; the space the encoder put before the text (`first`:
  // no text token came before this one) is dropped again.
  void append_sentencepiece_text(std::string_view text, bool first, std::string& out) const {
    const std::size_t start = out.size();
    for (std::size_t pos = 0; pos < text.size();) {
      if (text.substr(pos, space_marker.size()) == space_marker) {
        out += ' ';
        pos += space_marker.size();
      } else {
        out += text[pos++];
      }
    }
    if (first && spec_.add_space_prefix && out.size() > start && out[start] == ' ') out.erase(start, 1);
  }

  TokenizerSpec spec_;
  std::vector<TokenKind> kinds_;
  TokenIndex token_ids_;                     // every token's text -> its (first) id
  SpecialTokenMatcher added_tokens_;
  std::array<int, 256> byte_tokens_{};       // byte -> its token (byte-level: spelled byte; SentencePiece: <0xNN>)
  std::optional<Pretokenizer> pretokenizer_;
  std::unordered_map<std::uint64_t, MergeChoice> merges_;  // (left id, right id) -> rank and result
  bool ignore_merges_ = false;
  TokenIndex pieces_;                        // SentencePiece: the pieces merging may produce
};

// Turns ids into text one at a time, as a model generates them: feed()
// returns the text that became complete with this id, holding back the
// bytes of a character whose remaining bytes have not arrived yet; flush()
// returns what is held back at the end. The concatenation of all outputs
// equals Tokenizer::decode of the same ids.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(&tokenizer), skip_special_(skip_special) {}

  std::string feed(int id) {
    tokenizer_->check_id(id);
    if (skip_special_ && tokenizer_->is_special(id)) return {};
    tokenizer_->append_token_bytes(id, first_, pending_);
    first_ = first_ && tokenizer_->is_special(id);
    const std::size_t complete = utf8::complete_prefix_length(pending_);
    std::string ready = pending_.substr(0, complete);
    pending_.erase(0, complete);
    return ready;
  }

  std::string flush() { return std::exchange(pending_, {}); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  bool first_ = true;
  std::string pending_;
};

inline StreamingDecoder Tokenizer::streaming_decoder(bool skip_special) const {
  return StreamingDecoder(*this, skip_special);
}

}  // namespace elastic::io
