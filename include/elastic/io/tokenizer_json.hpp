// Reads a Hugging Face tokenizer.json (and the tokenizer_config.json beside
// it, when there is one) into a TokenizerSpec. Supported: model "BPE" over
// GPT-2's byte alphabet with the pre-tokenizer configurations that byte-level
// models publish, each mapped to the named pre-tokenizer that splits alike:
//   ByteLevel(use_regex)                                 -> "gpt2"
//   Sequence[Digits(individual_digits), ByteLevel(use_regex)] -> "smollm"
//   Sequence[Split(Llama 3 regex), ByteLevel(no regex)]  -> "llama-bpe"
//   Sequence[Split(Qwen 2 regex), ByteLevel(no regex)]   -> "qwen2"
// Merges may be "a b" strings or [a, b] pairs; added_tokens become control
// (special) or user_defined tokens. Anything else (WordPiece, Unigram,
// normalizers, other splits) is a FileError that says what is supported.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/io/file_error.hpp"
#include "elastic/io/json_document.hpp"
#include "elastic/io/mapped_file.hpp"
#include "elastic/io/pretokenizer.hpp"
#include "elastic/io/tokenizer_spec.hpp"

namespace elastic::io {

namespace tokenizer_json_detail {

using nlohmann::json;

inline constexpr std::string_view supported_summary =
    "supported: model BPE with a ByteLevel pre-tokenizer (alone, after Digits(individual_digits), or after a Split "
    "with the Llama 3 or Qwen 2 regex) and no normalizer";

inline bool is_type(const json& node, std::string_view type) {
  return node.is_object() && node.contains("type") && node["type"].is_string() &&
         node["type"].get<std::string>() == type;
}

inline bool flag(const json& node, const char* key, bool fallback) {
  return node.contains(key) && node[key].is_boolean() ? node[key].get<bool>() : fallback;
}

inline std::string split_pattern(const json& split) {
  const json pattern = split.value("pattern", json::object());
  if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string())
    return pattern["Regex"].get<std::string>();
  return {};
}

// The named pre-tokenizer that splits as the file's pre_tokenizer does.
inline std::string pretokenizer_name(const json& node, std::string_view path) {
  namespace p = pretokenizer_patterns;
  if (is_type(node, "ByteLevel") && flag(node, "use_regex", true) && !flag(node, "add_prefix_space", false))
    return "gpt2";
  if (is_type(node, "Sequence") && node.contains("pretokenizers") && node["pretokenizers"].is_array() &&
      node["pretokenizers"].size() == 2) {
    const json& first = node["pretokenizers"][0];
    const json& second = node["pretokenizers"][1];
    const bool regex_byte_level =
        is_type(second, "ByteLevel") && flag(second, "use_regex", true) && !flag(second, "add_prefix_space", false);
    const bool plain_byte_level = is_type(second, "ByteLevel") && !flag(second, "use_regex", true) &&
                                  !flag(second, "add_prefix_space", false);
    if (is_type(first, "Digits") && flag(first, "individual_digits", false) && regex_byte_level) return "smollm";
    if (is_type(first, "Split") && plain_byte_level && first.value("behavior", "") == "Isolated" &&
        !flag(first, "invert", false)) {
      const std::string pattern = split_pattern(first);
      if (pattern == p::llama3) return "llama-bpe";
      if (pattern == p::qwen2) return "qwen2";
    }
  }
  fail_file(path, "unsupported pre_tokenizer ", node.dump(), "; ", supported_summary);
}

inline int token_id_of(const json& token, const std::vector<std::string>& tokens) {
  const json& text = token.is_object() ? token.value("content", json()) : token;
  if (!text.is_string()) return -1;
  for (std::size_t id = 0; id < tokens.size(); ++id)
    if (tokens[id] == text.get_ref<const std::string&>()) return static_cast<int>(id);
  return -1;
}

inline void read_vocabulary(const json& model, const json& added, TokenizerSpec& spec, std::string_view path) {
  require_file(model.contains("vocab") && model["vocab"].is_object(), path, "model.vocab must be an object");
  const json& vocab = model["vocab"];
  const std::size_t entries = vocab.size() + (added.is_array() ? added.size() : 0);
  const auto place = [&](long long id, const std::string& text, TokenKind kind) {
    require_file(id >= 0 && static_cast<std::size_t>(id) < entries, path, "token id ", id, " of '", text,
                 "' is outside 0..", entries - 1);
    const auto index = static_cast<std::size_t>(id);
    if (index >= spec.tokens.size()) {
      spec.tokens.resize(index + 1);
      spec.kinds.resize(index + 1, TokenKind::unused);
    }
    require_file(spec.kinds[index] == TokenKind::unused || spec.tokens[index] == text, path, "token id ", id,
                 " is both '", spec.tokens[index], "' and '", text, "'");
    spec.tokens[index] = text;
    spec.kinds[index] = kind;
  };
  for (const auto& [text, id] : vocab.items()) {
    require_file(id.is_number_integer(), path, "model.vocab['", text, "'] must be an integer id");
    place(id.get<long long>(), text, TokenKind::normal);
  }
  if (added.is_array()) {
    for (const json& token : added) {
      require_file(token.is_object() && token.contains("id") && token["id"].is_number_integer() &&
                       token.contains("content") && token["content"].is_string(),
                   path, "added_tokens entries need an integer id and a string content");
      place(token["id"].get<long long>(), token["content"].get<std::string>(),
            flag(token, "special", false) ? TokenKind::control : TokenKind::user_defined);
    }
  }
  for (std::size_t id = 0; id < spec.kinds.size(); ++id)
    require_file(spec.kinds[id] != TokenKind::unused, path, "token id ", id, " is missing (ids must be 0..",
                 spec.tokens.size() - 1, " without gaps)");
}

inline void read_merges(const json& model, TokenizerSpec& spec, std::string_view path) {
  require_file(model.contains("merges") && model["merges"].is_array(), path, "model.merges must be an array");
  for (const json& merge : model["merges"]) {
    if (merge.is_string()) {
      spec.merges.push_back(merge.get<std::string>());
    } else {
      require_file(merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string(), path,
                   "a merge must be \"a b\" or [\"a\", \"b\"]; found ", merge.dump());
      spec.merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
    }
  }
}

// A template processor that starts every sequence with a special token means "add bos".
inline void read_post_processor(const json& post, TokenizerSpec& spec) {
  if (!is_type(post, "TemplateProcessing") || !post.contains("single") || !post["single"].is_array() ||
      post["single"].empty())
    return;
  const json& first = post["single"][0];
  if (!first.is_object() || !first.contains("SpecialToken") || !first["SpecialToken"].is_object()) return;
  const int id = token_id_of(first["SpecialToken"].value("id", json()), spec.tokens);
  if (id < 0) return;
  spec.bos_id = id;
  spec.add_bos = true;
}

inline TokenizerSpec parse(const json& root, std::string_view path) {
  require_file(root.is_object() && root.contains("model") && root["model"].is_object(), path,
               "not a tokenizer.json: no model object");
  const json& model = root["model"];
  const std::string type = model.value("type", model.contains("merges") ? "BPE" : "");
  require_file(type == "BPE", path, "unsupported tokenizer model '", type, "'; ", supported_summary);
  require_file(!flag(model, "byte_fallback", false), path,
               "BPE with byte_fallback (SentencePiece-style) is not supported; ", supported_summary);
  require_file(!root.contains("normalizer") || root["normalizer"].is_null(), path, "unsupported normalizer ",
               root.value("normalizer", json()).dump(), "; ", supported_summary);
  require_file(root.contains("pre_tokenizer"), path, "no pre_tokenizer; ", supported_summary);

  TokenizerSpec spec;
  spec.model = TokenizerModel::byte_level_bpe;
  spec.add_space_prefix = false;
  spec.pre = pretokenizer_name(root["pre_tokenizer"], path);
  read_vocabulary(model, root.value("added_tokens", json::array()), spec, path);
  read_merges(model, spec, path);
  if (const int unknown = token_id_of(model.value("unk_token", json()), spec.tokens); unknown >= 0)
    spec.unknown_id = unknown;
  read_post_processor(root.value("post_processor", json()), spec);
  return spec;
}

// tokenizer_config.json: chat template, bos/eos tokens, add_bos_token/add_eos_token.
inline void apply_config(const json& config, TokenizerSpec& spec, std::string_view path) {
  require_file(config.is_object(), path, "tokenizer_config.json must be an object");
  if (config.contains("chat_template")) {
    const json& chat = config["chat_template"];
    if (chat.is_string()) spec.chat_template = chat.get<std::string>();
    if (chat.is_array())
      for (const json& named : chat)
        if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
            named["template"].is_string())
          spec.chat_template = named["template"].get<std::string>();
  }
  if (const int bos = token_id_of(config.value("bos_token", json()), spec.tokens); bos >= 0) spec.bos_id = bos;
  if (const int eos = token_id_of(config.value("eos_token", json()), spec.tokens); eos >= 0) spec.eos_ids = {eos};
  if (const int pad = token_id_of(config.value("pad_token", json()), spec.tokens); pad >= 0) spec.padding_id = pad;
  spec.add_bos = flag(config, "add_bos_token", spec.add_bos);
  spec.add_eos = flag(config, "add_eos_token", spec.add_eos);
}

inline constexpr std::uint64_t max_tokenizer_json_bytes = 256u << 20;

inline std::string text_of(const MappedFile& file) {
  require_file(file.size() <= max_tokenizer_json_bytes, file.path(), "expected at most ", max_tokenizer_json_bytes,
               " bytes, found ", file.size());
  return {reinterpret_cast<const char*>(file.bytes().data()), file.size()};
}

}  // namespace tokenizer_json_detail

// Parses tokenizer.json text; `path` names it in errors. Throws FileError.
inline TokenizerSpec parse_tokenizer_json(std::string_view text, std::string_view path = "tokenizer.json") {
  using namespace tokenizer_json_detail;
  try {
    return parse(parse_json_document(text, path), path);
  } catch (const json::exception& error) {
    fail_file(path, "malformed tokenizer.json: ", error.what());
  }
}

// Applies a tokenizer_config.json's text to a spec read from tokenizer.json.
inline void apply_tokenizer_config_json(std::string_view text, TokenizerSpec& spec,
                                        std::string_view path = "tokenizer_config.json") {
  using namespace tokenizer_json_detail;
  try {
    apply_config(parse_json_document(text, path), spec, path);
  } catch (const json::exception& error) {
    fail_file(path, "malformed tokenizer_config.json: ", error.what());
  }
}

// Reads tokenizer.json and, when present beside it, tokenizer_config.json.
inline TokenizerSpec read_tokenizer_json(const std::filesystem::path& path) {
  using namespace tokenizer_json_detail;
  const MappedFile tokenizer(path.string());
  TokenizerSpec spec = parse_tokenizer_json(text_of(tokenizer), tokenizer.path());
  const std::filesystem::path config = path.parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(config)) {
    const MappedFile config_file(config.string());
    apply_tokenizer_config_json(text_of(config_file), spec, config_file.path());
  }
  return spec;
}

}  // namespace elastic::io
