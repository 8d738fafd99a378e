// Converting stored tensor bytes (F32, F16, BF16 and ggml's block-quantised
// Q4_0 ... Q6_K) into float, half_t or bfloat16_t arrays the layers compute
// with. Values are decoded to float32 exactly as ggml's reference
// dequantiser computes them (quant_blocks.hpp) and then rounded once to the
// output type. The quantised bytes themselves stay available as
// StoredTensor views for kernels that compute on blocks directly.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/io/quant_blocks.hpp"
#include "elastic/io/stored_tensor.hpp"
#include "elastic/io/tensor_type.hpp"

namespace elastic::io {

// True when `type` can be dequantised.
constexpr bool dequantizable(TensorType type) { return quant::block_decoder(type) != nullptr; }

namespace quant {

template <class T>
bool byte_ranges_overlap(std::span<const std::byte> bytes, std::span<T> out) {
  const auto* out_begin = reinterpret_cast<const std::byte*>(out.data());
  const auto* out_end = out_begin + out.size_bytes();
  std::less<const std::byte*> before;
  return !bytes.empty() && !out.empty() && before(bytes.data(), out_end) && before(out_begin, bytes.data() + bytes.size());
}

}  // namespace quant

// Decodes out.size() elements of `type` from `blocks`, which must hold
// exactly those elements' bytes (a whole number of blocks) and must not
// overlap `out`. Throws elastic::Error naming the type and both sizes.
template <ElementType T>
void dequantize(TensorType type, std::span<const std::byte> blocks, std::span<T> out) {
  const TensorTypeInfo& type_info = info(type);
  const quant::BlockDecoder decode = quant::block_decoder(type);
  require(decode != nullptr, "dequantize: cannot dequantize ", type_info.name,
          " (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K)");
  const auto block_elements = static_cast<std::size_t>(type_info.block_elements);
  const auto block_bytes = static_cast<std::size_t>(type_info.block_bytes);
  require(out.size() % block_elements == 0, "dequantize: ", out.size(), " ", type_info.name,
          " elements are not a whole number of ", block_elements, "-element blocks");
  const std::size_t block_count = out.size() / block_elements;
  require(blocks.size() / block_bytes == block_count && blocks.size() % block_bytes == 0, "dequantize: ", out.size(),
          " ", type_info.name, " elements take ", block_count * block_bytes, " bytes, but ", blocks.size(),
          " bytes were given");
  require(!quant::byte_ranges_overlap(blocks, out), "dequantize: the ", type_info.name,
          " input bytes overlap the output");
  std::array<float, quant::k_block_elements> values{};
  for (std::size_t block = 0; block < block_count; ++block) {
    decode(blocks.data() + block * block_bytes, values.data());
    T* destination = out.data() + block * block_elements;
    for (std::size_t i = 0; i < block_elements; ++i) destination[i] = from_float<T>(values[i]);
  }
}

// Decodes a whole stored tensor into `out` (exactly its element count).
// Errors name the tensor, its type and shape.
template <ElementType T>
void dequantize_tensor(const StoredTensor& tensor, std::span<T> out) {
  const auto describe = [&] {
    std::string shape;
    for (std::int64_t dim : tensor.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(dim);
    return elastic::detail::concat("tensor '", tensor.name, "' (", type_name(tensor.type), " [", shape, "])");
  };
  require(dequantizable(tensor.type), describe(), ": cannot dequantize ", type_name(tensor.type));
  require(out.size() == static_cast<std::uint64_t>(tensor.elements()), describe(), ": has ", tensor.elements(),
          " elements, but the output holds ", out.size());
  const auto expected = tensor_bytes(tensor.type, tensor.shape, tensor.cols());
  require(expected && *expected == tensor.bytes.size(), describe(), ": expected ", expected.value_or(0),
          " bytes of data, found ", tensor.bytes.size());
  dequantize(tensor.type, tensor.bytes, out);
}

}  // namespace elastic::io
