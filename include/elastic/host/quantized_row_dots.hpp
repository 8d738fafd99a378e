// The host executor's loop over block-quantised weights: the activations are
// quantised once per call (quantized_activations.hpp), then output rows are
// split across the pool's threads and each output row is one call of the
// quantised row-dot kernel (simd/quant_row_dots-inl.hpp) per tile of up to 16
// tokens, with one rounding to the storage type at the store. The same loop
// serves linear maps, the fused SwiGLU and the routed forms that read token
// rows by index or add into output rows by index.
#pragma once

#include <algorithm>
#include <array>

#include "elastic/core/dtype.hpp"
#include "elastic/core/quantized_matrix.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/host/quantized_activations.hpp"
#include "elastic/host/routing.hpp"
#include "elastic/host/simd/kernels.hpp"
#include "elastic/host/thread_pool.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::host::kernels {

// For each of `tokens` tokens t and output neuron o:
//   out[t, o] = epilogue(x[s] . w_0[o], ..., x[s] . w_{NumRows-1}[o])
// where s = source_rows[t], or t when source_rows is null; with output_rows,
// the value is added to out[output_rows[t], o] instead (one rounding of the
// sum). The weights share one format and shape; the caller has checked the
// shapes and indices.
template <class T, int NumRows, class Epilogue>
void quantized_row_dots(ThreadPool& pool, MatrixView<T> out, ConstMatrixView<T> x, index_t tokens,
                        std::array<QuantizedMatrixView, NumRows> weights, Epilogue epilogue,
                        const int* source_rows = nullptr, const int* output_rows = nullptr) {
  constexpr int tile = simd::max_call_tokens;
  const index_t rows = out.cols();
  if (tokens == 0 || rows == 0) return;
  // The calling thread's buffers, kept between calls: no allocation once
  // they have grown to the largest call. The pool's threads reach them
  // through this reference (naming the thread_local there would name
  // their own).
  thread_local QuantizedActivationRows calling_thread_rows;
  QuantizedActivationRows& activations = calling_thread_rows;
  activations.quantize(pool, x, tokens, source_rows);
  const index_t grain = std::max<index_t>(1, rows / (8 * static_cast<index_t>(pool.size())));
  pool.parallel_for(0, rows, grain, [&](index_t first_row, index_t last_row) {
    for (index_t row = first_row; row < last_row; ++row) {
      for (index_t first_token = 0; first_token < tokens; first_token += tile) {
        float partials[NumRows][tile] = {};
        simd::QuantRowDotsCall call{};
        call.format = weights[0].format();
        call.num_rows = NumRows;
        for (int r = 0; r < NumRows; ++r) call.weight_rows[r] = weights[r].row(row);
        call.activations = activations.from_token(first_token);
        call.tokens = static_cast<int>(std::min<index_t>(tile, tokens - first_token));
        call.partials = partials;
        simd::quant_row_dots(call);
        for (int t = 0; t < call.tokens; ++t)
          store_row_dot(out, first_token + t, row, math::finish_row_dots(epilogue, partials, t), output_rows);
      }
    }
  });
}

}  // namespace elastic::host::kernels
