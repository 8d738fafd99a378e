// Which stored tensor types the host executor can compute on directly: the
// block-quantised GGUF types that have a QuantFormat (core/
// quantized_matrix.hpp), so a loader can hand a tensor's bytes to the
// executor as a QuantizedMatrixView instead of dequantising them.
#pragma once

#include <optional>

#include "elastic/core/quantized_matrix.hpp"
#include "elastic/io/tensor_type.hpp"

namespace elastic::io {

constexpr std::optional<QuantFormat> quant_format(TensorType type) {
  switch (type) {
    case TensorType::q4_0: return QuantFormat::q4_0;
    case TensorType::q4_1: return QuantFormat::q4_1;
    case TensorType::q5_0: return QuantFormat::q5_0;
    case TensorType::q5_1: return QuantFormat::q5_1;
    case TensorType::q8_0: return QuantFormat::q8_0;
    case TensorType::q4_k: return QuantFormat::q4_k;
    case TensorType::q5_k: return QuantFormat::q5_k;
    case TensorType::q6_k: return QuantFormat::q6_k;
    default: return std::nullopt;
  }
}

constexpr TensorType tensor_type(QuantFormat format) {
  switch (format) {
    case QuantFormat::q4_0: return TensorType::q4_0;
    case QuantFormat::q4_1: return TensorType::q4_1;
    case QuantFormat::q5_0: return TensorType::q5_0;
    case QuantFormat::q5_1: return TensorType::q5_1;
    case QuantFormat::q8_0: return TensorType::q8_0;
    case QuantFormat::q4_k: return TensorType::q4_k;
    case QuantFormat::q5_k: return TensorType::q5_k;
    case QuantFormat::q6_k: return TensorType::q6_k;
  }
  return TensorType::f32;
}

// The two tables agree on every block's size.
static_assert([] {
  for (QuantFormat format : {QuantFormat::q4_0, QuantFormat::q4_1, QuantFormat::q5_0, QuantFormat::q5_1,
                             QuantFormat::q8_0, QuantFormat::q4_k, QuantFormat::q5_k, QuantFormat::q6_k}) {
    const TensorTypeInfo& stored = info(tensor_type(format));
    if (quant_format(stored.type) != format || stored.block_elements != quant_format_info(format).block_elements ||
        stored.block_bytes != quant_format_info(format).block_bytes)
      return false;
  }
  return true;
}());

}  // namespace elastic::io
