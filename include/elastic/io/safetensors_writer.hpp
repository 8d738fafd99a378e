// Writing safetensors files, for tools that save converted or pruned weights
// and for tests that need files to read. Every argument is checked before a
// byte is written (plain types only, sizes matching shapes, unique names),
// the header is padded with spaces to a multiple of 8 bytes so the data
// section starts aligned, and the file is written under a temporary name in
// the destination's folder and renamed into place only once complete: a
// failure at any point leaves neither a half-written file nor the temporary.
#pragma once


#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/core/error.hpp"
#include "elastic/io/file_error.hpp"
#include "elastic/io/temporary_file.hpp"
#include "elastic/io/tensor_type.hpp"

namespace elastic::io {

struct TensorToWrite {
  std::string name;
  TensorType type = TensorType::f32;
  std::vector<std::int64_t> shape;  // outermost first
  std::span<const std::byte> data;  // exactly elements * element size bytes
};

namespace detail {

// Bytes `tensor` must hold, or Error when its type or shape cannot be written.
inline std::uint64_t checked_tensor_bytes(const TensorToWrite& tensor) {
  require(!info(tensor.type).quantized, "write_safetensors: tensor \"", tensor.name, "\" has type ",
          type_name(tensor.type), ", expected a plain type (safetensors cannot store quantised blocks)");
  const std::optional<std::uint64_t> bytes =
      tensor_bytes(tensor.type, tensor.shape, tensor.shape.empty() ? 1 : tensor.shape.back());
  require(bytes.has_value(), "write_safetensors: tensor \"", tensor.name,
          "\": expected non-negative dimensions whose size fits 64 bits");
  require(*bytes == tensor.data.size(), "write_safetensors: tensor \"", tensor.name, "\" of ", type_name(tensor.type),
          " needs ", *bytes, " bytes for its shape, found ", tensor.data.size());
  return *bytes;
}

// The header JSON, space-padded to a multiple of 8 bytes.
inline std::string safetensors_header_text(std::span<const TensorToWrite> tensors,
                                           const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string_view> names;
  std::uint64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    require(!tensor.name.empty() && tensor.name != "__metadata__", "write_safetensors: expected a tensor name other ",
            "than \"\" and \"__metadata__\", found \"", tensor.name, "\"");
    require(names.insert(tensor.name).second, "write_safetensors: tensor \"", tensor.name, "\" appears twice");
    const std::uint64_t bytes = checked_tensor_bytes(tensor);
    header[tensor.name] = {{"dtype", type_name(tensor.type)},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;  // no overflow: every tensor's bytes are in memory
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& error) {
    throw Error(std::string("write_safetensors: names and metadata must be valid UTF-8: ") + error.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace detail

// Writes `tensors` (data in the given order) and `metadata` to `path`,
// replacing any file there only once the new one is complete. Throws Error
// for an invalid tensor before touching the file system, FileError for an
// I/O failure.
inline void write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  const std::string header = detail::safetensors_header_text(tensors, metadata);
  std::byte length_bytes[8];
  for (std::size_t i = 0; i < 8; ++i) length_bytes[i] = static_cast<std::byte>(std::uint64_t{header.size()} >> (8 * i));

  TemporaryFile file(path);
  file.write(length_bytes);
  file.write(std::as_bytes(std::span(header)));
  for (const TensorToWrite& tensor : tensors) file.write(tensor.data);
  file.commit();
}

}  // namespace elastic::io
