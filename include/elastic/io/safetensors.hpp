// Reading safetensors model files: one `model.safetensors`, or the shards a
// `model.safetensors.index.json` lists. A file is an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets: [begin,
// end)}, "__metadata__": {string: string}} and the data section the offsets
// point into. Everything in the header comes from outside, so it is checked
// before any byte is trusted: the header length against the file and a cap,
// the JSON (well formed, valid UTF-8, bounded nesting, no duplicate keys,
// which nlohmann would silently drop), the dtypes, the shapes, every size
// computed without overflow, every range inside the data section and no two
// ranges overlapping. Tensors are views into the mapping; data need not be
// aligned. The JSON checks are those of every JSON file of a model folder
// (json_document.hpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/io/byte_reader.hpp"
#include "elastic/io/json_document.hpp"
#include "elastic/io/file_error.hpp"
#include "elastic/io/mapped_file.hpp"
#include "elastic/io/stored_tensor.hpp"
#include "elastic/io/tensor_type.hpp"

namespace elastic::io {

// ----------------------------------------------------------- one file ----

inline constexpr std::uint64_t max_safetensors_header_bytes = 100'000'000;

struct SafetensorsHeader {
  std::vector<StoredTensor> tensors;  // ordered by where their data starts
  std::map<std::string, std::string> metadata;
};

namespace detail {

struct TensorEntry {
  StoredTensor tensor;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

inline std::uint64_t json_unsigned(const nlohmann::json& value, std::string_view path, std::string_view tensor,
                                   std::string_view field) {
  require_file(value.is_number_unsigned(), path, "tensor \"", tensor, "\": expected ", field,
               " to be a non-negative integer, found ", describe_json(value));
  return value.get<std::uint64_t>();
}

inline TensorType parse_dtype(const nlohmann::json& value, std::string_view path, std::string_view tensor) {
  static constexpr std::string_view supported = "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2";
  require_file(value.is_string(), path, "tensor \"", tensor, "\": expected dtype to be a string, found ",
               describe_json(value));
  const std::string& name = value.get_ref<const std::string&>();
  const std::optional<TensorType> type = tensor_type_named(name);
  require_file(type && !info(*type).quantized, path, "tensor \"", tensor, "\": unknown dtype \"", name,
               "\", expected one of ", supported);
  return *type;
}

// The shape, with every prefix product checked to fit int64 (so
// StoredTensor::elements() cannot overflow), and the tensor's byte count.
inline std::uint64_t parse_shape(const nlohmann::json& value, TensorType type, std::string_view path,
                                 std::string_view tensor, std::vector<std::int64_t>& shape) {
  require_file(value.is_array(), path, "tensor \"", tensor, "\": expected shape to be an array, found ",
               describe_json(value));
  constexpr auto max_dim = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t elements = 1;
  for (const nlohmann::json& entry : value) {
    const std::uint64_t dim = json_unsigned(entry, path, tensor, "each shape entry");
    require_file(dim <= max_dim && (dim == 0 || elements <= max_dim / dim), path, "tensor \"", tensor,
                 "\": shape ", value.dump(), " has more elements than fit in 64 bits");
    elements *= dim;
    shape.push_back(static_cast<std::int64_t>(dim));
  }
  const auto element_bytes = static_cast<std::uint64_t>(info(type).block_bytes);
  require_file(elements <= std::numeric_limits<std::uint64_t>::max() / element_bytes, path, "tensor \"", tensor,
               "\": shape ", value.dump(), " of ", type_name(type), " is larger than 64 bits of bytes");
  return elements * element_bytes;
}

inline TensorEntry parse_tensor_entry(const std::string& name, const nlohmann::json& entry, std::string_view path,
                                      std::uint64_t data_bytes) {
  require_file(entry.is_object(), path, "tensor \"", name, "\": expected an object {dtype, shape, data_offsets}, found ",
               describe_json(entry));
  for (const auto& [key, ignored] : entry.items())
    require_file(key == "dtype" || key == "shape" || key == "data_offsets", path, "tensor \"", name,
                 "\": unexpected key \"", key, "\", expected only dtype, shape and data_offsets");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    require_file(entry.contains(key), path, "tensor \"", name, "\": missing key \"", key, "\"");

  TensorEntry result;
  result.tensor.name = name;
  result.tensor.type = parse_dtype(entry["dtype"], path, name);
  const std::uint64_t bytes = parse_shape(entry["shape"], result.tensor.type, path, name, result.tensor.shape);

  const nlohmann::json& offsets = entry["data_offsets"];
  require_file(offsets.is_array() && offsets.size() == 2, path, "tensor \"", name,
               "\": expected data_offsets to be [begin, end], found ", offsets.dump());
  result.begin = json_unsigned(offsets[0], path, name, "data_offsets[0]");
  result.end = json_unsigned(offsets[1], path, name, "data_offsets[1]");
  require_file(result.begin <= result.end && result.end <= data_bytes, path, "tensor \"", name, "\": data_offsets [",
               result.begin, ", ", result.end, ") expected inside the data section of ", data_bytes, " bytes");
  require_file(result.end - result.begin == bytes, path, "tensor \"", name, "\": data_offsets [", result.begin, ", ",
               result.end, ") hold ", result.end - result.begin, " bytes, expected ", bytes, " for ",
               type_name(result.tensor.type), " ", entry["shape"].dump());
  return result;
}

inline std::map<std::string, std::string> parse_metadata(const nlohmann::json& value, std::string_view path) {
  require_file(value.is_object(), path, "expected __metadata__ to be an object of strings, found ",
               describe_json(value));
  std::map<std::string, std::string> metadata;
  for (const auto& [key, entry] : value.items()) {
    require_file(entry.is_string(), path, "__metadata__ key \"", key, "\": expected a string, found ",
                 describe_json(entry));
    metadata.emplace(key, entry.get<std::string>());
  }
  return metadata;
}

// Sorts by where the data starts and rejects any range that begins before
// the previous one ends (empty tensors overlap nothing).
inline void require_disjoint(std::vector<TensorEntry>& entries, std::string_view path) {
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& entry : entries) {
    if (entry.begin == entry.end) continue;
    if (previous != nullptr)
      require_file(entry.begin >= previous->end, path, "tensors \"", previous->tensor.name, "\" [", previous->begin,
                   ", ", previous->end, ") and \"", entry.tensor.name, "\" [", entry.begin, ", ", entry.end,
                   ") overlap, expected disjoint data ranges");
    previous = &entry;
  }
}

}  // namespace detail

// Checks the header of a whole safetensors file held in `file_bytes` and
// returns its tensors (views into `file_bytes`) and metadata. `path` only
// names the file in errors.
inline SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file_bytes, std::string_view path) {
  ByteReader reader(file_bytes, path);
  const auto header_bytes = reader.read<std::uint64_t>("the 8-byte header length");
  const std::uint64_t available = file_bytes.size() - 8;
  require_file(header_bytes <= max_safetensors_header_bytes && header_bytes <= available, path, "header length ",
               header_bytes, " expected at most ", std::min<std::uint64_t>(available, max_safetensors_header_bytes),
               " (the file has ", available, " bytes after the length, the cap is ", max_safetensors_header_bytes,
               ")");
  const auto header = file_bytes.subspan(8, header_bytes);
  const auto data = file_bytes.subspan(8 + header_bytes);

  const nlohmann::json document =
      parse_json_document({reinterpret_cast<const char*>(header.data()), header.size()}, path);
  require_file(document.is_object(), path, "expected the header to be a JSON object, found ", describe_json(document));

  SafetensorsHeader result;
  std::vector<detail::TensorEntry> entries;
  for (const auto& [key, value] : document.items()) {
    if (key == "__metadata__")
      result.metadata = detail::parse_metadata(value, path);
    else
      entries.push_back(detail::parse_tensor_entry(key, value, path, data.size()));
  }
  detail::require_disjoint(entries, path);
  for (detail::TensorEntry& entry : entries) {
    entry.tensor.bytes = data.subspan(entry.begin, entry.end - entry.begin);
    result.tensors.push_back(std::move(entry.tensor));
  }
  return result;
}

// One mapped safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(std::string path) : file_(std::move(path)) {
    SafetensorsHeader header = parse_safetensors_header(file_.bytes(), file_.path());
    tensors_ = std::move(header.tensors);
    metadata_ = std::move(header.metadata);
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  const std::string& path() const { return file_.path(); }
  std::span<const StoredTensor> tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor called `name`, or nullptr.
  const StoredTensor* find(std::string_view name) const {
    const auto found = index_.find(name);
    return found == index_.end() ? nullptr : &tensors_[found->second];
  }
  // The tensor called `name`, or FileError naming the file and the tensor.
  const StoredTensor& tensor(std::string_view name) const {
    const StoredTensor* found = find(name);
    require_file(found != nullptr, path(), "expected a tensor \"", name, "\", found none among ", tensors_.size(),
                 " tensors");
    return *found;
  }

 private:
  MappedFile file_;
  std::vector<StoredTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

// ---------------------------------------------------------- one model ----

inline constexpr std::string_view safetensors_single_name = "model.safetensors";
inline constexpr std::string_view safetensors_index_name = "model.safetensors.index.json";
inline constexpr std::uint64_t max_safetensors_index_bytes = 100'000'000;

// A model's weights: one safetensors file, or the shards of an index whose
// `weight_map` says which shard holds each tensor. Opened from the file, the
// index or a folder holding either (the index wins). Every index entry is
// checked: its shard is a plain file name in the index's folder and holds
// the tensor.
class SafetensorsModel {
 public:
  explicit SafetensorsModel(const std::filesystem::path& path) {
    std::filesystem::path file = path;
    if (is_folder(path)) {
      std::error_code ignored;  // an unreadable entry counts as absent; opening it reports why
      file = path / safetensors_index_name;
      if (!std::filesystem::exists(file, ignored)) file = path / safetensors_single_name;
      require_file(std::filesystem::exists(file, ignored), path.string(), "expected a folder holding ", safetensors_index_name,
                   " or ", safetensors_single_name, ", found neither");
    }
    path_ = file.string();
    if (file.extension() == ".json")
      open_index(file);
    else
      open_single(file);
  }

  // The file or index the model was opened from.
  const std::string& path() const { return path_; }
  std::span<const SafetensorsFile> shards() const { return shards_; }

  // The tensor called `name`, or nullptr.
  const StoredTensor* find(std::string_view name) const {
    const auto found = location_.find(name);
    return found == location_.end() ? nullptr : shards_[found->second].find(name);
  }
  // The tensor called `name`, or FileError naming the model and the tensor.
  const StoredTensor& tensor(std::string_view name) const {
    const StoredTensor* found = find(name);
    require_file(found != nullptr, path_, "expected a tensor \"", name, "\", found none among ", location_.size(),
                 " tensors");
    return *found;
  }
  // Every tensor of the model, ordered by name.
  std::vector<const StoredTensor*> tensors() const {
    std::vector<const StoredTensor*> all;
    for (const auto& [name, shard] : location_) all.push_back(shards_[shard].find(name));
    return all;
  }

 private:
  void open_single(const std::filesystem::path& file) {
    shards_.emplace_back(file.string());
    for (const StoredTensor& tensor : shards_.front().tensors()) location_.emplace(tensor.name, 0);
  }

  void open_index(const std::filesystem::path& index) {
    const nlohmann::json document = read_json_file(index, max_safetensors_index_bytes);
    require_file(document.is_object() && document.contains("weight_map") && document["weight_map"].is_object(), path_,
                 "expected an object with a \"weight_map\" object, found ", describe_json(document));
    std::map<std::string, std::size_t> shard_numbers;
    for (const auto& [name, shard] : document["weight_map"].items()) {
      const std::string& shard_name = checked_shard_name(name, shard);
      const auto [position, added] = shard_numbers.emplace(shard_name, shards_.size());
      if (added) shards_.emplace_back((index.parent_path() / shard_name).string());
      require_file(shards_[position->second].find(name) != nullptr, path_, "weight_map says tensor \"", name,
                   "\" is in \"", shard_name, "\", but that shard has no such tensor");
      location_.emplace(name, position->second);
    }
  }

  const std::string& checked_shard_name(const std::string& tensor, const nlohmann::json& shard) const {
    require_file(shard.is_string(), path_, "weight_map entry \"", tensor, "\": expected a shard file name, found ",
                 describe_json(shard));
    const std::string& name = shard.get_ref<const std::string&>();
    require_file(!name.empty() && name != "." && name != ".." && name.find_first_of("/\\") == std::string::npos &&
                     name.find('\0') == std::string::npos,
                 path_, "weight_map entry \"", tensor, "\": expected a file name in the index's folder, found \"",
                 name, "\"");
    return name;
  }

  std::string path_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, std::size_t, std::less<>> location_;  // tensor name -> shard
};

}  // namespace elastic::io
