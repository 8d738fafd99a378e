// Rows of a block-quantised matrix read out as T: the host executor's
// gather_rows from a GGUF embedding table that stays in its blocks. Each
// gathered row's blocks are decoded to float32 by io/quant_blocks.hpp's
// decoders (bit-exact with ggml's dequantiser) and rounded to T once.
#pragma once

#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/core/quantized_matrix.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/host/routing.hpp"
#include "elastic/host/thread_pool.hpp"
#include "elastic/io/quant_blocks.hpp"
#include "elastic/io/quant_format.hpp"

namespace elastic::host::kernels {

template <class T>
void gather_quantized_rows(ThreadPool& pool, MatrixView<T> dst, const QuantizedMatrixView& src, const int* indices) {
  check_indices(indices, dst.rows(), src.rows(), "gather_rows");
  const QuantFormatInfo info = quant_format_info(src.format());
  const io::quant::BlockDecoder decode_block = io::quant::block_decoder(io::tensor_type(src.format()));
  pool.parallel_for(0, dst.rows(), 16, [&](index_t lo, index_t hi) {
    std::vector<float> block(static_cast<std::size_t>(info.block_elements));
    for (index_t i = lo; i < hi; ++i) {
      const std::byte* row = src.row(indices[i]);
      T* out = dst.row(i);
      for (index_t b = 0; b < src.blocks_per_row(); ++b) {
        decode_block(row + b * info.block_bytes, block.data());
        for (index_t e = 0; e < info.block_elements; ++e) out[b * info.block_elements + e] = from_float<T>(block[e]);
      }
    }
  });
}

}  // namespace elastic::host::kernels
