// Writing GGUF v3 files: metadata of every type (arrays and nested arrays
// included) and tensors of any GGUF tensor type given as raw bytes in their
// stored layout, with the data section padded to `general.alignment` (32
// unless the metadata sets it). The tests build tiny models with it and the
// conversion tool writes converted models with it.
//
// write() streams into a temporary file beside the target and renames it
// into place only once everything is written, so a failure leaves no
// half-written model behind.
#pragma once


#include <bit>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "elastic/io/file_error.hpp"
#include "elastic/io/gguf.hpp"
#include "elastic/io/temporary_file.hpp"

namespace elastic::io {

// Builds array values from plain vectors: gguf_array<std::uint32_t>({1, 2}),
// gguf_array<std::string>(tokens).
template <class T>
GgufValue gguf_array(const std::vector<T>& items) {
  GgufArray array;
  array.element_type = GgufValue{T{}}.type();
  array.values.reserve(items.size());
  for (const T& item : items) array.values.push_back(GgufValue{item});
  return GgufValue{std::move(array)};
}

class GgufWriter {
 public:
  // Adds a metadata entry; keys must be unique, non-empty UTF-8.
  void add(std::string key, GgufValue value) {
    require(!key.empty() && valid_utf8(key), "GgufWriter::add: the key must be non-empty UTF-8");
    require(keys_.insert(key).second, "GgufWriter::add: duplicate metadata key '", key, "'");
    if (key == "general.alignment") {
      const auto* alignment = std::get_if<std::uint32_t>(&value.value);
      require(alignment != nullptr && std::has_single_bit(*alignment),
              "GgufWriter::add: general.alignment must be a u32 power of two");
      alignment_ = *alignment;
    }
    metadata_.emplace_back(std::move(key), std::move(value));
  }

  // Adds a tensor of `shape` (outermost first) whose `bytes` are its data in
  // the type's stored layout; the bytes must stay alive until write().
  void add_tensor(std::string name, TensorType type, std::vector<std::int64_t> shape,
                  std::span<const std::byte> bytes) {
    require(!name.empty() && valid_utf8(name), "GgufWriter::add_tensor: the name must be non-empty UTF-8");
    require(ggml_type_id(type).has_value(), "GgufWriter::add_tensor: tensor '", name, "': GGUF cannot store ",
            type_name(type));
    require(!shape.empty() && shape.size() <= gguf_max_dims, "GgufWriter::add_tensor: tensor '", name,
            "': expected 1 to ", gguf_max_dims, " dimensions, found ", shape.size());
    for (std::int64_t dim : shape) require(dim > 0, "GgufWriter::add_tensor: tensor '", name, "': dimension ", dim);
    const auto size = tensor_bytes(type, shape, shape.back());
    require(size && *size == bytes.size(), "GgufWriter::add_tensor: tensor '", name, "' (", type_name(type),
            ") needs ", size.value_or(0), " bytes, given ", bytes.size());
    require(tensor_names_.emplace(name).second, "GgufWriter::add_tensor: duplicate tensor '", name, "'");
    tensors_.push_back({std::move(name), type, std::move(shape), bytes});
  }

  // Writes the file (replacing any file at `path` once the new one is
  // complete); FileError on failure, with no partial file left behind.
  void write(const std::filesystem::path& path) const {
    TemporaryFile file(path);
    Output output(file);
    write_contents(output);
    output.flush();
    file.commit();
  }

 private:
  // A buffered writer into the temporary file that counts what it wrote.
  class Output {
   public:
    explicit Output(TemporaryFile& file) : file_(file) {}
    void bytes(const void* data, std::size_t size) {
      const auto* p = static_cast<const char*>(data);
      written_ += size;
      if (buffer_.size() + size > buffer_limit) flush();
      if (size > buffer_limit) return file_.write(std::as_bytes(std::span(p, size)));
      buffer_.append(p, size);
    }
    template <class T>
    void value(T v) { bytes(&v, sizeof v); }
    void string(std::string_view text) {
      value<std::uint64_t>(text.size());
      bytes(text.data(), text.size());
    }
    void pad_to(std::uint64_t alignment) {
      static constexpr char zeros[64] = {};
      std::uint64_t padding = (alignment - written_ % alignment) % alignment;
      while (padding > 0) {
        const std::size_t chunk = padding < sizeof zeros ? static_cast<std::size_t>(padding) : sizeof zeros;
        bytes(zeros, chunk);
        padding -= chunk;
      }
    }
    std::uint64_t written() const { return written_; }
    void flush() {
      file_.write(std::as_bytes(std::span(buffer_.data(), buffer_.size())));
      buffer_.clear();
    }

   private:
    static constexpr std::size_t buffer_limit = 1 << 20;
    TemporaryFile& file_;
    std::string buffer_;
    std::uint64_t written_ = 0;
  };

  struct PendingTensor {
    std::string name;
    TensorType type;
    std::vector<std::int64_t> shape;
    std::span<const std::byte> bytes;
  };

  static void write_value(Output& output, const GgufValue& value) {
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, std::string>) {
            output.string(v);
          } else if constexpr (std::is_same_v<V, GgufArray>) {
            output.value(static_cast<std::uint32_t>(v.element_type));
            output.value<std::uint64_t>(v.values.size());
            for (const GgufValue& item : v.values) {
              require(item.type() == v.element_type, "GgufWriter: an array of ", gguf_type_name(v.element_type),
                      " holds a ", gguf_type_name(item.type()));
              write_value(output, item);
            }
          } else if constexpr (std::is_same_v<V, bool>) {
            output.value<std::uint8_t>(v ? 1 : 0);
          } else {
            output.value(v);
          }
        },
        value.value);
  }

  std::uint64_t aligned(std::uint64_t offset) const { return (offset + alignment_ - 1) / alignment_ * alignment_; }

  void write_contents(Output& output) const {
    output.value(gguf_magic);
    output.value<std::uint32_t>(3);
    output.value<std::uint64_t>(tensors_.size());
    output.value<std::uint64_t>(metadata_.size());
    for (const auto& [key, value] : metadata_) {
      output.string(key);
      output.value(static_cast<std::uint32_t>(value.type()));
      write_value(output, value);
    }
    std::uint64_t offset = 0;
    for (const PendingTensor& tensor : tensors_) {
      output.string(tensor.name);
      output.value<std::uint32_t>(static_cast<std::uint32_t>(tensor.shape.size()));
      for (auto dim = tensor.shape.rbegin(); dim != tensor.shape.rend(); ++dim)
        output.value<std::uint64_t>(static_cast<std::uint64_t>(*dim));
      output.value<std::uint32_t>(*ggml_type_id(tensor.type));
      output.value<std::uint64_t>(offset);
      offset = aligned(offset + tensor.bytes.size());
    }
    output.pad_to(alignment_);
    for (const PendingTensor& tensor : tensors_) {
      output.bytes(tensor.bytes.data(), tensor.bytes.size());
      output.pad_to(alignment_);
    }
  }

  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::set<std::string, std::less<>> keys_;
  std::vector<PendingTensor> tensors_;
  std::set<std::string, std::less<>> tensor_names_;
  std::uint32_t alignment_ = gguf_default_alignment;
};

}  // namespace elastic::io
