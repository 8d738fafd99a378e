// A bounds-checked little-endian cursor over the bytes of a file, for the
// binary headers (GGUF, the safetensors length prefix). Every read checks the
// bytes left first and copies with memcpy, so neither a truncated file nor an
// unaligned field is ever read out of bounds or through a misaligned pointer.
// Errors name the file, the field and the offset.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "elastic/io/file_error.hpp"

namespace elastic::io {

static_assert(std::endian::native == std::endian::little, "the file readers assume a little-endian host");

class ByteReader {
 public:
  ByteReader(std::span<const std::byte> bytes, std::string_view path) : bytes_(bytes), path_(path) {}

  std::size_t offset() const { return offset_; }
  std::size_t remaining() const { return bytes_.size() - offset_; }
  std::string_view path() const { return path_; }

  // `count` bytes for `field`, or FileError if the file ends first.
  std::span<const std::byte> take(std::size_t count, std::string_view field) {
    require_file(count <= remaining(), path_, "truncated: ", field, " at offset ", offset_, " needs ", count,
                 " bytes, but the file has ", remaining(), " left");
    const auto bytes = bytes_.subspan(offset_, count);
    offset_ += count;
    return bytes;
  }

  template <class T>
    requires std::is_trivially_copyable_v<T>
  T read(std::string_view field) {
    T value;
    std::memcpy(&value, take(sizeof(T), field).data(), sizeof(T));
    return value;
  }

  // A string of `length` bytes (no terminator), at most `max_length` long.
  std::string read_string(std::uint64_t length, std::uint64_t max_length, std::string_view field) {
    require_file(length <= max_length, path_, field, " at offset ", offset_, " claims ", length,
                 " bytes, expected at most ", max_length);
    const auto bytes = take(static_cast<std::size_t>(length), field);
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }

  void seek(std::size_t offset, std::string_view field) {
    require_file(offset <= bytes_.size(), path_, field, " offset ", offset, " is past the end of the file (",
                 bytes_.size(), " bytes)");
    offset_ = offset;
  }

 private:
  std::span<const std::byte> bytes_;
  std::string_view path_;
  std::size_t offset_ = 0;
};

}  // namespace elastic::io
