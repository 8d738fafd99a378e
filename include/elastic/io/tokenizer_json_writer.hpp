// Writing a byte-level BPE TokenizerSpec as the Hugging Face files
// tokenizer.json and tokenizer_config.json, the inverse of tokenizer_json.hpp,
// so that a tokenizer read from GGUF metadata can travel with a model saved
// in HF layout. tokenizer.json holds the vocabulary (every token, in id
// order), the merges as [left, right] pairs, the pre-tokenizer configuration
// the spec's named pre-tokenizer stands for, a ByteLevel decoder, a
// post-processor adding bos / eos when the spec asks, and the control
// (special) and user_defined (not special) tokens as added tokens; normal,
// unknown and unused tokens are plain vocabulary entries (read back as normal).
// tokenizer_config.json holds the bos / eos / padding / unknown tokens by
// text, add_bos_token / add_eos_token and the chat template. Its eos_token is
// the spec's first end id; further end ids belong in config.json's
// eos_token_id. SentencePiece specs are refused. Each file is written under a
// temporary name and renamed into place once complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

#include <nlohmann/json.hpp>

#include "elastic/core/error.hpp"
#include "elastic/io/pretokenizer.hpp"
#include "elastic/io/temporary_file.hpp"
#include "elastic/io/tokenizer_spec.hpp"

namespace elastic::io {

namespace tokenizer_json_writer_detail {

using nlohmann::ordered_json;

inline ordered_json byte_level(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  return {{"type", "ByteLevel"},
          {"add_prefix_space", add_prefix_space},
          {"trim_offsets", trim_offsets},
          {"use_regex", use_regex}};
}

inline ordered_json isolated_split(std::string_view regex) {
  return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}

inline ordered_json sequence(ordered_json first, ordered_json second) {
  return {{"type", "Sequence"}, {"pretokenizers", {std::move(first), std::move(second)}}};
}

// The pre_tokenizer that tokenizer_json.hpp reads back as `name`, as the model families publish it.
inline ordered_json pre_tokenizer(std::string_view name) {
  namespace p = pretokenizer_patterns;
  if (name == "gpt2") return byte_level(false, true, true);
  if (name == "smollm") return sequence({{"type", "Digits"}, {"individual_digits", true}}, byte_level(false, true, true));
  if (name == "llama-bpe") return sequence(isolated_split(p::llama3), byte_level(false, true, false));
  if (name == "qwen2") return sequence(isolated_split(p::qwen2), byte_level(false, true, false));
  throw Error(elastic::detail::concat("tokenizer.json: expected pre-tokenizer \"gpt2\", \"smollm\", \"llama-bpe\" or ",
                                      "\"qwen2\", found \"", name, "\""));
}

inline void require_token_id(const TokenizerSpec& spec, std::optional<int> id, std::string_view role) {
  require(!id || (*id >= 0 && static_cast<std::size_t>(*id) < spec.tokens.size()), "tokenizer.json: expected the ",
          role, " id inside the vocabulary of ", spec.tokens.size(), ", found ", id.value_or(0));
}

inline ordered_json special_token_piece(const TokenizerSpec& spec, int id, int type_id) {
  return {{"SpecialToken", {{"id", spec.tokens[static_cast<std::size_t>(id)]}, {"type_id", type_id}}}};
}

// TemplateProcessing adding bos first and / or eos last when the spec asks
// (as Llama 3 ships it); otherwise ByteLevel, which changes offsets only (as
// SmolLM2 ships it).
inline ordered_json post_processor(const TokenizerSpec& spec) {
  if (!spec.add_bos && !spec.add_eos) return byte_level(true, false, true);
  require(!spec.add_bos || spec.bos_id.has_value(), "tokenizer.json: expected a bos id with add_bos set, found none");
  require(!spec.add_eos || !spec.eos_ids.empty(), "tokenizer.json: expected an eos id with add_eos set, found none");
  const auto sequence_of = [&](const char* name, int type_id) {
    ordered_json pieces = ordered_json::array();
    if (spec.add_bos) pieces.push_back(special_token_piece(spec, *spec.bos_id, type_id));
    pieces.push_back({{"Sequence", {{"id", name}, {"type_id", type_id}}}});
    if (spec.add_eos) pieces.push_back(special_token_piece(spec, spec.eos_ids.front(), type_id));
    return pieces;
  };
  ordered_json pair = sequence_of("A", 0);
  for (ordered_json& piece : sequence_of("B", 1)) pair.push_back(std::move(piece));
  ordered_json special_tokens = ordered_json::object();
  const auto add_special = [&](int id) {
    const std::string& text = spec.tokens[static_cast<std::size_t>(id)];
    special_tokens[text] = {{"id", text}, {"ids", {id}}, {"tokens", {text}}};
  };
  if (spec.add_bos) add_special(*spec.bos_id);
  if (spec.add_eos) add_special(spec.eos_ids.front());
  return {{"type", "TemplateProcessing"},
          {"single", sequence_of("A", 0)},
          {"pair", std::move(pair)},
          {"special_tokens", std::move(special_tokens)}};
}

inline TokenKind kind_of(const TokenizerSpec& spec, std::size_t id) {
  return spec.kinds.empty() ? TokenKind::normal : spec.kinds[id];
}

inline void require_writable(const TokenizerSpec& spec) {
  require(spec.model == TokenizerModel::byte_level_bpe, "tokenizer.json: expected a byte-level BPE tokenizer, found ",
          "a SentencePiece one, which is not supported as tokenizer.json yet");
  require(!spec.tokens.empty(), "tokenizer.json: expected a vocabulary, found no tokens");
  require(spec.kinds.empty() || spec.kinds.size() == spec.tokens.size(), "tokenizer.json: expected one token kind ",
          "per token (", spec.tokens.size(), "), found ", spec.kinds.size());
  std::unordered_set<std::string_view> seen;
  for (std::size_t id = 0; id < spec.tokens.size(); ++id) {
    require(seen.insert(spec.tokens[id]).second, "tokenizer.json: expected each token once, found '",
            spec.tokens[id], "' again at id ", id);
    require(kind_of(spec, id) != TokenKind::byte, "tokenizer.json: token ", id, " '", spec.tokens[id],
            "' is a byte token, which byte-level BPE does not have");
  }
  require_token_id(spec, spec.bos_id, "bos");
  for (int id : spec.eos_ids) require_token_id(spec, id, "eos");
  require_token_id(spec, spec.unknown_id, "unknown");
  require_token_id(spec, spec.padding_id, "padding");
  for (const std::string& merge : spec.merges)
    require(merge.find(' ') != std::string::npos && merge.find(' ') == merge.rfind(' '), "tokenizer.json: expected ",
            "a merge as \"left right\" with one space, found \"", merge, "\"");
}

// Vocabulary in id order. Built on the object's underlying vector: keyed
// insertion into an ordered_json object searches it linearly.
inline ordered_json vocabulary(const TokenizerSpec& spec) {
  ordered_json vocab = ordered_json::object();
  auto& entries = vocab.get_ref<ordered_json::object_t&>();
  entries.reserve(spec.tokens.size());
  for (std::size_t id = 0; id < spec.tokens.size(); ++id) entries.emplace_back(spec.tokens[id], id);
  return vocab;
}

inline ordered_json merge_pairs(const TokenizerSpec& spec) {
  ordered_json merges = ordered_json::array();
  for (const std::string& merge : spec.merges) {
    const std::size_t space = merge.find(' ');
    merges.push_back({merge.substr(0, space), merge.substr(space + 1)});
  }
  return merges;
}

// Control tokens as special added tokens, user_defined ones as plain added tokens.
inline ordered_json added_tokens(const TokenizerSpec& spec) {
  ordered_json added = ordered_json::array();
  for (std::size_t id = 0; id < spec.tokens.size(); ++id) {
    const TokenKind kind = kind_of(spec, id);
    if (kind != TokenKind::control && kind != TokenKind::user_defined) continue;
    added.push_back({{"id", id},
                     {"content", spec.tokens[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", kind == TokenKind::control}});
  }
  return added;
}

inline ordered_json token_or_null(const TokenizerSpec& spec, std::optional<int> id) {
  return id ? ordered_json(spec.tokens[static_cast<std::size_t>(*id)]) : ordered_json(nullptr);
}

inline std::string json_text(std::string_view file_name, const ordered_json& document) {
  try {
    return document.dump(2) + "\n";
  } catch (const nlohmann::json::exception& error) {
    throw Error(elastic::detail::concat(file_name, ": expected token texts that are valid UTF-8: ", error.what()));
  }
}

inline void write_text_file(const std::filesystem::path& path, std::string_view text) {
  TemporaryFile file(path);
  file.write(std::as_bytes(std::span(text)));
  file.commit();
}

}  // namespace tokenizer_json_writer_detail

// The tokenizer.json of `spec` (byte-level BPE only); Error for what it cannot hold.
inline nlohmann::ordered_json tokenizer_json(const TokenizerSpec& spec) {
  using namespace tokenizer_json_writer_detail;
  require_writable(spec);
  ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  root["added_tokens"] = added_tokens(spec);
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = pre_tokenizer(spec.pre);
  root["post_processor"] = post_processor(spec);
  root["decoder"] = byte_level(true, true, true);
  root["model"] = {{"type", "BPE"},
                   {"dropout", nullptr},
                   {"unk_token", token_or_null(spec, spec.unknown_id)},
                   {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr},
                   {"fuse_unk", false},
                   {"byte_fallback", false},
                   {"ignore_merges", false},
                   {"vocab", vocabulary(spec)},
                   {"merges", merge_pairs(spec)}};
  return root;
}

// The tokenizer_config.json of `spec` (byte-level BPE only); `model_max_length` (the model's
// context length) is written when given.
inline nlohmann::ordered_json tokenizer_config_json(const TokenizerSpec& spec,
                                                    std::optional<std::int64_t> model_max_length = std::nullopt) {
  using namespace tokenizer_json_writer_detail;
  require_writable(spec);
  ordered_json config;
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  config["bos_token"] = token_or_null(spec, spec.bos_id);
  config["eos_token"] = token_or_null(spec, spec.eos_ids.empty() ? std::nullopt : std::optional(spec.eos_ids.front()));
  if (spec.padding_id) config["pad_token"] = token_or_null(spec, spec.padding_id);
  if (spec.unknown_id) config["unk_token"] = token_or_null(spec, spec.unknown_id);
  config["add_bos_token"] = spec.add_bos;
  config["add_eos_token"] = spec.add_eos;
  if (!spec.chat_template.empty()) config["chat_template"] = spec.chat_template;
  if (model_max_length) config["model_max_length"] = *model_max_length;
  config["clean_up_tokenization_spaces"] = false;
  return config;
}

// Writes `folder`/tokenizer.json and `folder`/tokenizer_config.json. Every
// check runs before either file is written.
inline void write_tokenizer_files(const std::filesystem::path& folder, const TokenizerSpec& spec,
                                  std::optional<std::int64_t> model_max_length = std::nullopt) {
  using namespace tokenizer_json_writer_detail;
  const std::string tokenizer = json_text("tokenizer.json", tokenizer_json(spec));
  const std::string config = json_text("tokenizer_config.json", tokenizer_config_json(spec, model_max_length));
  write_text_file(folder / "tokenizer.json", tokenizer);
  write_text_file(folder / "tokenizer_config.json", config);
}

}  // namespace elastic::io
