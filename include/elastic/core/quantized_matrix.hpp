// A non-owning view of a weight matrix stored in one of ggml's block-quantised
// formats (as GGUF files hold them): each row is a run of blocks, a block
// packing `block_elements` weights and their scales into `block_bytes` bytes.
// Rows sit `row_bytes` apart, so the first rows of a bigger matrix are a view
// of the same bytes, and so are its first columns when they end on a block
// boundary; a column prefix that would cut a block in two is refused, since
// a block's values cannot be read without its scale.
//
// The host executor computes directly on these blocks (host/
// quantized_row_dots.hpp). The view knows only the block geometry; the bit
// layouts live with the kernels and with io/quant_blocks.hpp's decoders.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic {

// The block formats the host executor computes on, named as ggml names them.
enum class QuantFormat : unsigned char { q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k };

struct QuantFormatInfo {
  std::string_view name;
  index_t block_elements;  // weights per block
  index_t block_bytes;     // bytes per block, scales included
};

constexpr QuantFormatInfo quant_format_info(QuantFormat format) {
  switch (format) {
    case QuantFormat::q4_0: return {"Q4_0", 32, 18};
    case QuantFormat::q4_1: return {"Q4_1", 32, 20};
    case QuantFormat::q5_0: return {"Q5_0", 32, 22};
    case QuantFormat::q5_1: return {"Q5_1", 32, 24};
    case QuantFormat::q8_0: return {"Q8_0", 32, 34};
    case QuantFormat::q4_k: return {"Q4_K", 256, 144};
    case QuantFormat::q5_k: return {"Q5_K", 256, 176};
    case QuantFormat::q6_k: return {"Q6_K", 256, 210};
  }
  return {"unknown", 1, 0};
}

class QuantizedMatrixView {
 public:
  QuantizedMatrixView() = default;

  // rows x cols weights of `format` at `data`, row r starting at
  // data + r * row_bytes. cols must be a whole number of blocks and
  // row_bytes at least the bytes of those blocks.
  QuantizedMatrixView(QuantFormat format, const std::byte* data, index_t rows, index_t cols, index_t row_bytes)
      : format_(format), data_(data), rows_(rows), cols_(cols), row_bytes_(row_bytes) {
    const QuantFormatInfo info = quant_format_info(format);
    require(rows >= 0 && cols >= 0, "quantised matrix extents must be non-negative, found [", rows, " x ", cols,
            "]");
    require(cols % info.block_elements == 0, "a ", info.name, " matrix must have a multiple of ",
            info.block_elements, " columns (whole blocks), found ", cols);
    require(row_bytes >= cols / info.block_elements * info.block_bytes, "a ", info.name, " row of ", cols,
            " columns takes ", cols / info.block_elements * info.block_bytes, " bytes, but the row stride is ",
            row_bytes, " bytes");
    require(data != nullptr || rows == 0 || cols == 0, "quantised matrix ", describe(), " has a null data pointer");
  }

  // A contiguous rows x cols matrix (rows of whole blocks back to back).
  QuantizedMatrixView(QuantFormat format, const std::byte* data, index_t rows, index_t cols)
      : QuantizedMatrixView(format, data, rows, cols, dense_row_bytes(format, cols)) {}

  QuantFormat format() const { return format_; }
  const std::byte* data() const { return data_; }
  index_t rows() const { return rows_; }
  index_t cols() const { return cols_; }
  index_t row_bytes() const { return row_bytes_; }
  bool empty() const { return rows_ == 0 || cols_ == 0; }
  index_t block_elements() const { return quant_format_info(format_).block_elements; }
  index_t blocks_per_row() const { return cols_ / block_elements(); }

  const std::byte* row(index_t r) const { return data_ + r * row_bytes_; }

  // Rows [begin, begin + count).
  QuantizedMatrixView row_range(index_t begin, index_t count) const {
    require(begin >= 0 && count >= 0 && begin + count <= rows_, "row range [", begin, ", ", begin + count,
            ") is outside the quantised matrix ", describe());
    return QuantizedMatrixView(format_, data_ + begin * row_bytes_, count, cols_, row_bytes_);
  }
  QuantizedMatrixView first_rows(index_t count) const { return row_range(0, count); }

  // The first `count` columns: whole blocks only.
  QuantizedMatrixView first_cols(index_t count) const {
    require(count >= 0 && count <= cols_, "the first ", count, " columns are outside the quantised matrix ",
            describe());
    const QuantFormatInfo info = quant_format_info(format_);
    require(count % info.block_elements == 0, "cannot take the first ", count, " columns of the ", info.name,
            " matrix ", describe(), ": a column prefix must be a multiple of the ", info.block_elements,
            "-element block");
    return QuantizedMatrixView(format_, data_, rows_, count, row_bytes_);
  }

  // "Q4_0 [rows x cols, stride b bytes]" for error messages.
  std::string describe() const {
    return detail::concat(quant_format_info(format_).name, " [", rows_, " x ", cols_, ", stride ", row_bytes_,
                          " bytes]");
  }

  // Bytes of `cols` columns of `format` stored densely (a multiple of the block).
  static index_t dense_row_bytes(QuantFormat format, index_t cols) {
    const QuantFormatInfo info = quant_format_info(format);
    return cols / info.block_elements * info.block_bytes;
  }

 private:
  QuantFormat format_ = QuantFormat::q8_0;
  const std::byte* data_ = nullptr;
  index_t rows_ = 0;
  index_t cols_ = 0;
  index_t row_bytes_ = 0;
};

}  // namespace elastic
