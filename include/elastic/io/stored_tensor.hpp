// A tensor as a model file stores it: its name, element type, shape and a
// view of its bytes inside the mapped file. Shapes are outermost-first
// (row-major, as safetensors and PyTorch write them); the GGUF reader
// reverses GGUF's innermost-first dimensions into this order, so a weight of
// `rows x cols` reads as {rows, cols} whichever file it came from. The bytes
// may be unaligned: convert them (dequantize.hpp) or copy them before doing
// arithmetic on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "elastic/io/tensor_type.hpp"

namespace elastic::io {

struct StoredTensor {
  std::string name;
  TensorType type = TensorType::f32;
  std::vector<std::int64_t> shape;  // outermost first
  std::span<const std::byte> bytes;

  std::int64_t elements() const {
    std::int64_t count = 1;
    for (std::int64_t dim : shape) count *= dim;  // the readers checked the product fits
    return count;
  }
  // Rows and columns of the tensor seen as a matrix (a vector is one row).
  std::int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  std::int64_t rows() const { return cols() == 0 ? 0 : elements() / cols(); }
};

// "[rows, cols]" for messages.
inline std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

}  // namespace elastic::io
