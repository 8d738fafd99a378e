// JSON as the model files hold it (safetensors headers and indexes,
// config.json, tokenizer.json), parsed defensively: nesting depth bounded as
// the parser enters each container, duplicate keys refused (nlohmann keeps
// one silently), and every failure a FileError naming the file. Also a short
// description of a JSON value for error messages, and a bounded file read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/io/file_error.hpp"
#include "elastic/io/mapped_file.hpp"

namespace elastic::io {

inline constexpr int max_json_depth = 64;

// Parses `text` as one JSON value, or throws FileError naming `path`: on
// malformed JSON or invalid UTF-8 (nlohmann's own message, which gives the
// byte offset), on nesting deeper than `max_depth` (checked as the parser
// enters each container, so depth never grows past it), and on a key that
// appears twice in one object.
inline nlohmann::json parse_json_document(std::string_view text, std::string_view path,
                                          int max_depth = max_json_depth) {
  std::vector<std::set<std::string>> open_objects;  // keys seen so far in each enclosing object
  auto check = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start || event == Event::array_start)
      require_file(depth < max_depth, path, "JSON nested deeper than ", max_depth, " levels");
    if (event == Event::object_start) open_objects.emplace_back();
    if (event == Event::object_end) open_objects.pop_back();
    if (event == Event::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      require_file(open_objects.back().insert(key).second, path, "duplicate JSON key \"", key,
                   "\": expected each key once per object");
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), check);
  } catch (const nlohmann::json::exception& error) {
    fail_file(path, "expected well-formed UTF-8 JSON, found: ", error.what());
  }
}

// A short description of a JSON value for error messages: its type, and the
// value itself when it is a short scalar.
inline std::string describe_json(const nlohmann::json& value) {
  if (value.is_structured()) return value.type_name();
  std::string text = value.dump();
  if (text.size() > 40) text = text.substr(0, 40) + "...";
  return std::string(value.type_name()) + " " + text;
}

// The JSON document in the file at `path`, at most `max_bytes` long.
inline nlohmann::json read_json_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  const MappedFile file(path.string());
  require_file(file.size() <= max_bytes, file.path(), "expected a JSON file of at most ", max_bytes,
               " bytes, found ", file.size());
  return parse_json_document({reinterpret_cast<const char*>(file.bytes().data()), file.size()}, file.path());
}

}  // namespace elastic::io
