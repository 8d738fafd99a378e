// Reading GGUF files (versions 2 and 3, the llama.cpp model format): the
// metadata key/value store and the tensor directory, with every tensor a
// StoredTensor view into the mapped file (dimensions reversed to
// outermost-first). parse_gguf() works on any byte span, so a fuzzer can
// drive it without a file; GgufFile maps a file and parses it.
//
// Nothing in the file is trusted: the magic and version, every count against
// the bytes that could still hold it (before anything is reserved), string
// lengths, UTF-8 in keys and tensor names, unique keys and tensor names,
// array nesting depth, booleans, `general.alignment`, tensor ranks, dims,
// element counts, ggml type ids, block divisibility, offsets (aligned, inside
// the data section) and overlaps. Every failure is a FileError that starts
// with the path and names the key or tensor.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "elastic/io/byte_reader.hpp"
#include "elastic/io/file_error.hpp"
#include "elastic/io/mapped_file.hpp"
#include "elastic/io/stored_tensor.hpp"
#include "elastic/io/tensor_type.hpp"

namespace elastic::io {

inline constexpr std::uint32_t gguf_magic = 0x46554747;  // "GGUF" little-endian
inline constexpr std::uint32_t gguf_default_alignment = 32;
inline constexpr int gguf_max_array_depth = 8;           // an array of arrays of ... at most this deep
inline constexpr std::uint32_t gguf_max_dims = 4;

// Metadata value types, numbered as the file stores them.
enum class GgufType : std::uint32_t { u8, i8, u16, i16, u32, i32, f32, boolean, string, array, u64, i64, f64 };

constexpr std::string_view gguf_type_name(GgufType type) {
  constexpr std::string_view names[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
  const auto index = static_cast<std::uint32_t>(type);
  return index < std::size(names) ? names[index] : "unknown";
}

struct GgufValue;

// A homogeneous array; element_type says what `values` hold (also when empty).
struct GgufArray {
  GgufType element_type = GgufType::u8;
  std::vector<GgufValue> values;
};

struct GgufValue {
  // Alternatives in GgufType order, so the index is the type.
  using Storage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t,
                               float, bool, std::string, GgufArray, std::uint64_t, std::int64_t, double>;
  Storage value;

  GgufType type() const { return static_cast<GgufType>(value.index()); }
  bool is_integer() const {
    const GgufType t = type();
    return t <= GgufType::i32 || t == GgufType::u64 || t == GgufType::i64;
  }
  // The integer, if this is one that fits in int64.
  std::optional<std::int64_t> as_integer() const {
    return std::visit(
        [](const auto& v) -> std::optional<std::int64_t> {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_integral_v<V> && !std::is_same_v<V, bool>) {
            if constexpr (std::is_same_v<V, std::uint64_t>)
              if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
            return static_cast<std::int64_t>(v);
          } else {
            return std::nullopt;
          }
        },
        value);
  }
};

// "u32", "string", "array of f32", "array of array of i32" ...
inline std::string gguf_describe_type(const GgufValue& value) {
  if (const auto* array = std::get_if<GgufArray>(&value.value)) {
    if (array->element_type == GgufType::array && !array->values.empty())
      return "array of " + gguf_describe_type(array->values.front());
    return "array of " + std::string(gguf_type_name(array->element_type));
  }
  return std::string(gguf_type_name(value.type()));
}

// ggml's type ids of the tensor types GGUF stores.
inline constexpr std::pair<std::uint32_t, TensorType> ggml_type_ids[] = {
    {0, TensorType::f32},   {1, TensorType::f16},   {2, TensorType::q4_0},  {3, TensorType::q4_1},
    {6, TensorType::q5_0},  {7, TensorType::q5_1},  {8, TensorType::q8_0},  {10, TensorType::q2_k},
    {11, TensorType::q3_k}, {12, TensorType::q4_k}, {13, TensorType::q5_k}, {14, TensorType::q6_k},
    {24, TensorType::i8},   {25, TensorType::i16},  {26, TensorType::i32},  {27, TensorType::i64},
    {28, TensorType::f64},  {30, TensorType::bf16},
};

constexpr std::optional<TensorType> tensor_type_from_ggml(std::uint32_t id) {
  for (const auto& [ggml_id, type] : ggml_type_ids)
    if (ggml_id == id) return type;
  return std::nullopt;
}

constexpr std::optional<std::uint32_t> ggml_type_id(TensorType type) {
  for (const auto& [ggml_id, known] : ggml_type_ids)
    if (known == type) return ggml_id;
  return std::nullopt;
}

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or
// code points past U+10FFFF).
constexpr bool valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    int continuation = 0;
    std::uint32_t code = 0;
    if (lead < 0x80) { ++i; continue; }
    if (lead >= 0xC2 && lead <= 0xDF) { continuation = 1; code = lead & 0x1Fu; }
    else if (lead >= 0xE0 && lead <= 0xEF) { continuation = 2; code = lead & 0x0Fu; }
    else if (lead >= 0xF0 && lead <= 0xF4) { continuation = 3; code = lead & 0x07u; }
    else return false;
    if (text.size() - i <= static_cast<std::size_t>(continuation)) return false;
    for (int k = 1; k <= continuation; ++k) {
      const auto next = static_cast<unsigned char>(text[i + static_cast<std::size_t>(k)]);
      if ((next & 0xC0u) != 0x80u) return false;
      code = code << 6 | (next & 0x3Fu);
    }
    const bool overlong = (continuation == 2 && code < 0x800) || (continuation == 3 && code < 0x10000);
    if (overlong || (code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) return false;
    i += static_cast<std::size_t>(continuation) + 1;
  }
  return true;
}

// What parse_gguf() finds: the header, the metadata, the tensor directory.
// Tensor bytes are views into the span it parsed, which must outlive this.
class GgufContents {
 private:
  friend GgufContents parse_gguf(std::span<const std::byte>, std::string_view);

  static constexpr std::string_view integer_expected = "an integer within int64";
  static std::optional<std::int64_t> integer_of(const GgufValue& v) { return v.as_integer(); }
  static std::optional<double> float_of(const GgufValue& v) {
    if (const auto* f = std::get_if<float>(&v.value)) return *f;
    if (const auto* d = std::get_if<double>(&v.value)) return *d;
    return std::nullopt;
  }
  static std::optional<bool> bool_of(const GgufValue& v) {
    if (const auto* b = std::get_if<bool>(&v.value)) return *b;
    return std::nullopt;
  }
  static std::optional<const std::string*> string_of(const GgufValue& v) {
    if (const auto* s = std::get_if<std::string>(&v.value)) return s;
    return std::nullopt;
  }
  static std::optional<const GgufArray*> array_of(const GgufValue& v) {
    if (const auto* a = std::get_if<GgufArray>(&v.value)) return a;
    return std::nullopt;
  }

  template <class Convert>
  auto found(std::string_view key, std::string_view expected, Convert convert) const
      -> decltype(convert(std::declval<const GgufValue&>())) {
    const GgufValue* value = find(key);
    if (value == nullptr) return std::nullopt;
    auto result = convert(*value);
    if (!result) fail_type(key, expected, *value);
    return result;
  }

  template <class Convert>
  auto converted(std::string_view key, std::string_view expected, Convert convert) const {
    const auto result = found(key, expected, convert);
    require_file(result.has_value(), path_, "missing metadata key '", key, "' (expected ", expected, ")");
    return *result;
  }

  template <class Convert>
  auto array_elements(std::string_view key, std::string_view element, Convert convert) const {
    const GgufArray& array = get_array(key);
    std::vector<typename decltype(convert(std::declval<const GgufValue&>()))::value_type> result;
    result.reserve(array.values.size());
    for (std::size_t i = 0; i < array.values.size(); ++i) {
      auto item = convert(array.values[i]);
      if (!item)
        fail_file(path_, "metadata key '", key, "': expected an array of ", element, ", found ",
                  gguf_describe_type(GgufValue{array}), " (element ", i, ")");
      result.push_back(std::move(*item));
    }
    return result;
  }


 public:
  const std::string& path() const { return path_; }
  std::uint32_t version() const { return version_; }
  std::uint32_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }  // where the aligned tensor data starts

  // ---- metadata
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }  // file order
  const GgufValue* find(std::string_view key) const {
    const auto it = metadata_index_.find(key);
    return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
  }
  bool contains(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters: get_* throws FileError when the key is missing, find_*
  // returns nullopt; both throw FileError naming the file, the key, the
  // expected and the found type when the value has another type. Integers
  // of any width and signedness are accepted when the value fits.
  std::int64_t get_int(std::string_view key) const { return converted(key, integer_expected, integer_of); }
  std::optional<std::int64_t> find_int(std::string_view key) const { return found(key, integer_expected, integer_of); }
  double get_float(std::string_view key) const { return converted(key, "f32 or f64", float_of); }
  std::optional<double> find_float(std::string_view key) const { return found(key, "f32 or f64", float_of); }
  bool get_bool(std::string_view key) const { return converted(key, "bool", bool_of); }
  std::optional<bool> find_bool(std::string_view key) const { return found(key, "bool", bool_of); }
  const std::string& get_string(std::string_view key) const { return *converted(key, "string", string_of); }
  const std::string* find_string(std::string_view key) const { return found(key, "string", string_of).value_or(nullptr); }
  const GgufArray& get_array(std::string_view key) const { return *converted(key, "an array", array_of); }

  // Arrays converted element by element (same rules as the scalar getters).
  std::vector<std::int64_t> get_int_array(std::string_view key) const { return array_elements(key, "integer", integer_of); }
  std::vector<float> get_float_array(std::string_view key) const {
    return array_elements(key, "f32", [](const GgufValue& v) -> std::optional<float> {
      if (const auto* f = std::get_if<float>(&v.value)) return *f;
      return std::nullopt;
    });
  }
  std::vector<std::string> get_string_array(std::string_view key) const {
    return array_elements(key, "string", [](const GgufValue& v) -> std::optional<std::string> {
      if (const auto* s = std::get_if<std::string>(&v.value)) return *s;
      return std::nullopt;
    });
  }

  // FileError "<path>: metadata key '<key>': expected <expected>, found <type>".
  [[noreturn]] void fail_type(std::string_view key, std::string_view expected, const GgufValue& found_value) const {
    fail_file(path_, "metadata key '", key, "': expected ", expected, ", found ", gguf_describe_type(found_value));
  }

  // ---- tensors
  const std::vector<StoredTensor>& tensors() const { return tensors_; }  // file order
  const StoredTensor* find_tensor(std::string_view name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  const StoredTensor& tensor(std::string_view name) const {
    const StoredTensor* found_tensor = find_tensor(name);
    require_file(found_tensor != nullptr, path_, "missing tensor '", name, "'");
    return *found_tensor;
  }

 private:
  std::string path_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = gguf_default_alignment;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, std::size_t, std::less<>> metadata_index_;
  std::vector<StoredTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

namespace gguf_parsing {

// Smallest encoding of one value of each type (an empty string or array
// still has its length), for bounding counts by the bytes left.
constexpr std::uint64_t gguf_min_encoded_bytes(GgufType type) {
  switch (type) {
    case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
    case GgufType::u16: case GgufType::i16: return 2;
    case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
    case GgufType::array: return 12;
    default: return 8;  // u64 i64 f64 and a string's length
  }
}

inline constexpr std::uint64_t gguf_min_kv_bytes = 8 + 4 + 1;            // key length, type, smallest value
inline constexpr std::uint64_t gguf_min_tensor_info_bytes = 8 + 4 + 8 + 4 + 8;  // name length, rank, one dim, type, offset

class GgufParser {
 public:
  GgufParser(std::span<const std::byte> bytes, std::string_view path) : reader_(bytes, path), path_(path) {}

  std::uint64_t read_count(std::uint64_t min_bytes_each, std::string_view what) {
    const auto count = reader_.read<std::uint64_t>(what);
    require_file(count <= reader_.remaining() / min_bytes_each, path_, what, " ", count, " at offset ",
                 reader_.offset() - 8, " cannot fit in the ", reader_.remaining(), " bytes left");
    return count;
  }

  std::string read_string(std::string_view what) {
    const auto length = reader_.read<std::uint64_t>(what);
    return reader_.read_string(length, reader_.remaining(), what);
  }

  // A key or tensor name: non-empty, well-formed UTF-8.
  std::string read_name(std::string_view what) {
    const std::size_t at = reader_.offset();
    std::string name = read_string(what);
    require_file(!name.empty(), path_, "empty ", what, " at offset ", at);
    require_file(valid_utf8(name), path_, what, " at offset ", at, " is not valid UTF-8");
    return name;
  }

  GgufType read_type(std::string_view what) {
    const auto id = reader_.read<std::uint32_t>(what);
    require_file(id <= static_cast<std::uint32_t>(GgufType::f64), path_, what, " at offset ", reader_.offset() - 4,
                 ": unknown metadata type id ", id, " (known: 0..12)");
    return static_cast<GgufType>(id);
  }

  GgufValue read_value(GgufType type, int depth) {
    switch (type) {
      case GgufType::u8: return {reader_.read<std::uint8_t>("u8 value")};
      case GgufType::i8: return {reader_.read<std::int8_t>("i8 value")};
      case GgufType::u16: return {reader_.read<std::uint16_t>("u16 value")};
      case GgufType::i16: return {reader_.read<std::int16_t>("i16 value")};
      case GgufType::u32: return {reader_.read<std::uint32_t>("u32 value")};
      case GgufType::i32: return {reader_.read<std::int32_t>("i32 value")};
      case GgufType::f32: return {reader_.read<float>("f32 value")};
      case GgufType::boolean: {
        const auto byte = reader_.read<std::uint8_t>("bool value");
        require_file(byte <= 1, path_, "bool value at offset ", reader_.offset() - 1, " is ", unsigned{byte},
                     ", expected 0 or 1");
        return {byte == 1};
      }
      case GgufType::string: return {read_string("string value")};
      case GgufType::array: return {read_array(depth + 1)};
      case GgufType::u64: return {reader_.read<std::uint64_t>("u64 value")};
      case GgufType::i64: return {reader_.read<std::int64_t>("i64 value")};
      case GgufType::f64: return {reader_.read<double>("f64 value")};
    }
    fail_file(path_, "unreachable metadata type");
  }

  GgufArray read_array(int depth) {
    require_file(depth <= gguf_max_array_depth, path_, "arrays nested deeper than ", gguf_max_array_depth,
                 " levels at offset ", reader_.offset());
    GgufArray array;
    array.element_type = read_type("array element type");
    const std::uint64_t count = read_count(gguf_min_encoded_bytes(array.element_type), "array length");
    array.values.reserve(static_cast<std::size_t>(count));
    for (std::uint64_t i = 0; i < count; ++i) array.values.push_back(read_value(array.element_type, depth));
    return array;
  }

  ByteReader& reader() { return reader_; }

 private:
  ByteReader reader_;
  std::string_view path_;
};

inline std::uint32_t gguf_alignment_of(const GgufContents& contents) {
  const GgufValue* value = contents.find("general.alignment");
  if (value == nullptr) return gguf_default_alignment;
  const auto* alignment = std::get_if<std::uint32_t>(&value->value);
  if (alignment == nullptr) contents.fail_type("general.alignment", "u32", *value);
  require_file(std::has_single_bit(*alignment), contents.path(),
               "metadata key 'general.alignment': expected a power of two, found ", *alignment);
  return *alignment;
}

}  // namespace gguf_parsing

// Parses a whole GGUF file held in `file_bytes`; `path` names it in errors.
inline GgufContents parse_gguf(std::span<const std::byte> file_bytes, std::string_view path) {
  GgufContents contents;
  contents.path_ = std::string(path);
  gguf_parsing::GgufParser parser(file_bytes, path);
  ByteReader& reader = parser.reader();

  const auto magic = reader.read<std::uint32_t>("magic");
  require_file(magic == gguf_magic, path, "not a GGUF file: expected the magic \"GGUF\" (0x46554747), found 0x",
               std::hex, magic);
  contents.version_ = reader.read<std::uint32_t>("version");
  require_file(contents.version_ == 2 || contents.version_ == 3, path, "unsupported GGUF version ",
               contents.version_, ", expected 2 or 3");
  const auto tensor_count = reader.read<std::uint64_t>("tensor count");
  const std::uint64_t kv_count = parser.read_count(gguf_parsing::gguf_min_kv_bytes, "metadata key count");
  require_file(tensor_count <= reader.remaining() / gguf_parsing::gguf_min_tensor_info_bytes, path, "tensor count ",
               tensor_count, " cannot fit in the ", reader.remaining(), " bytes left");

  contents.metadata_.reserve(static_cast<std::size_t>(kv_count));
  for (std::uint64_t i = 0; i < kv_count; ++i) {
    std::string key = parser.read_name("metadata key");
    try {
      const GgufType type = parser.read_type("metadata value type");
      GgufValue value = parser.read_value(type, 0);
      require_file(contents.metadata_index_.emplace(key, contents.metadata_.size()).second, path,
                   "duplicate metadata key");
      contents.metadata_.emplace_back(std::move(key), std::move(value));
    } catch (const FileError& error) {
      throw FileError(std::string(error.what()) + " (metadata key '" + key + "')");
    }
  }
  contents.alignment_ = gguf_parsing::gguf_alignment_of(contents);

  struct Placement {
    std::uint64_t offset;
    std::uint64_t size;
  };
  std::vector<Placement> placements;
  placements.reserve(static_cast<std::size_t>(tensor_count));
  contents.tensors_.reserve(static_cast<std::size_t>(tensor_count));
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    StoredTensor tensor;
    tensor.name = parser.read_name("tensor name");
    const std::string_view name = tensor.name;
    const auto rank = reader.read<std::uint32_t>("tensor rank");
    require_file(rank >= 1 && rank <= gguf_max_dims, path, "tensor '", name, "': expected 1 to ", gguf_max_dims,
                 " dimensions, found ", rank);
    std::int64_t elements = 1;
    tensor.shape.resize(rank);
    for (std::uint32_t d = 0; d < rank; ++d) {
      const auto dim = reader.read<std::uint64_t>("tensor dimension");
      require_file(dim >= 1 && dim <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max() / elements),
                   path, "tensor '", name, "': dimension ", d, " is ", dim,
                   ", expected positive with an element count that fits in 64 bits");
      elements *= static_cast<std::int64_t>(dim);
      tensor.shape[rank - 1 - d] = static_cast<std::int64_t>(dim);  // GGUF lists the innermost first
    }
    const auto type_id = reader.read<std::uint32_t>("tensor type");
    const std::optional<TensorType> type = tensor_type_from_ggml(type_id);
    require_file(type.has_value(), path, "tensor '", name, "': unknown or unsupported ggml type id ", type_id);
    tensor.type = *type;
    const std::optional<std::uint64_t> size = tensor_bytes(tensor.type, tensor.shape, tensor.shape.back());
    require_file(size.has_value(), path, "tensor '", name, "': innermost dimension ", tensor.shape.back(),
                 " is not a multiple of the ", type_name(tensor.type), " block of ", info(tensor.type).block_elements,
                 ", or its size overflows");
    const auto offset = reader.read<std::uint64_t>("tensor offset");
    require_file(offset % contents.alignment_ == 0, path, "tensor '", name, "': offset ", offset,
                 " is not a multiple of the alignment ", contents.alignment_);
    require_file(contents.tensor_index_.emplace(tensor.name, contents.tensors_.size()).second, path,
                 "duplicate tensor '", name, "'");
    placements.push_back({offset, *size});
    contents.tensors_.push_back(std::move(tensor));
  }

  const std::uint64_t header_end = reader.offset();
  const std::uint64_t padding = (contents.alignment_ - header_end % contents.alignment_) % contents.alignment_;
  contents.data_offset_ = header_end + padding;  // header_end < 2^63 and padding < 2^32: no overflow
  const std::uint64_t data_size =
      file_bytes.size() > contents.data_offset_ ? file_bytes.size() - contents.data_offset_ : 0;
  for (std::size_t i = 0; i < contents.tensors_.size(); ++i) {
    const auto [offset, size] = placements[i];
    require_file(offset <= data_size && size <= data_size - offset, path, "tensor '", contents.tensors_[i].name,
                 "': bytes [", offset, ", ", offset + size, ") of the data section lie outside its ", data_size,
                 " bytes");
    contents.tensors_[i].bytes = file_bytes.subspan(static_cast<std::size_t>(contents.data_offset_ + offset),
                                                     static_cast<std::size_t>(size));
  }

  std::vector<std::size_t> by_offset(contents.tensors_.size());
  for (std::size_t i = 0; i < by_offset.size(); ++i) by_offset[i] = i;
  std::sort(by_offset.begin(), by_offset.end(),
            [&](std::size_t a, std::size_t b) { return placements[a].offset < placements[b].offset; });
  for (std::size_t k = 1; k < by_offset.size(); ++k) {
    const Placement& earlier = placements[by_offset[k - 1]];
    require_file(earlier.offset + earlier.size <= placements[by_offset[k]].offset, path, "tensor '",
                 contents.tensors_[by_offset[k - 1]].name, "' (bytes [", earlier.offset, ", ",
                 earlier.offset + earlier.size, ")) overlaps tensor '", contents.tensors_[by_offset[k]].name,
                 "' (from ", placements[by_offset[k]].offset, ")");
  }
  return contents;
}

namespace gguf_parsing {
struct GgufMapping {
  MappedFile file;
};
}  // namespace gguf_parsing

// A GGUF file mapped read-only and parsed; tensors view the mapping, which
// lives (and stays put when moved) as long as this object.
class GgufFile : private gguf_parsing::GgufMapping, public GgufContents {
 public:
  explicit GgufFile(const std::filesystem::path& path)
      : gguf_parsing::GgufMapping{MappedFile(path.string())}, GgufContents(parse_gguf(file.bytes(), file.path())) {}
};

}  // namespace elastic::io
