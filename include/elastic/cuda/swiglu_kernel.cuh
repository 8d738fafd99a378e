// The prefill SwiGLU epilogue: after cuBLASLt has written gate = x . W_gate^T
// into the activation buffer and up = x . W_up^T into scratch, one pass turns
// the activation buffer into silu(gate) * up in place (math::SwiGLU, the
// formula the host executor and the decode kernel use).
//
// The grid is two-dimensional, so no thread divides to find its element:
// blockIdx.y (striding by gridDim.y) picks the row, and each thread of the x
// dimension owns one 16-byte vector of columns (8 elements of a 16-bit type,
// 4 of float32): one load of gate, one of up, one store. Both matrices' rows
// start on 16-byte boundaries (the executor checks its operands' pointers and
// strides, and pads its scratch rows), so only a row length that is not a
// whole number of vectors needs care: the thread that owns the row's last,
// partial vector takes its elements one by one. The pass is memory-bound,
// three bytes moved per byte of output.
#pragma once

#include <algorithm>

#include <cuda_runtime.h>

#include "elastic/core/dtype.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/math/activation.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

namespace kernels {

inline constexpr unsigned swiglu_threads = 128;

template <class T>
__global__ void __launch_bounds__(swiglu_threads)
    swiglu_in_place(T* gate_then_out, index_t gate_stride, const T* up, index_t up_stride, index_t rows,
                    index_t cols) {
  constexpr int width = math::vector_width<T>;
  const index_t column = (blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x) * width;
  if (column >= cols) return;
  const bool whole_vector = column + width <= cols;
  for (index_t row = blockIdx.y; row < rows; row += gridDim.y) {
    T* gate = gate_then_out + row * gate_stride + column;
    const T* up_row = up + row * up_stride + column;
    if (whole_vector) {
      math::Vector16<T> gates = math::load_mutable_vector(gate);
      const math::Vector16<T> ups = math::load_vector(up_row);
      ELASTIC_UNROLL
      for (int e = 0; e < width; ++e)
        gates.elements[e] = from_float<T>(math::SwiGLU{}(to_float(gates.elements[e]), to_float(ups.elements[e])));
      math::store_vector(gate, gates);
    } else {
      for (index_t e = 0; e < cols - column; ++e)
        gate[e] = from_float<T>(math::SwiGLU{}(to_float(gate[e]), to_float(up_row[e])));
    }
  }
}

}  // namespace kernels

// gate_then_out[t, j] = silu(gate_then_out[t, j]) * up[t, j]; both matrices'
// rows start on 16-byte boundaries.
template <class T>
void launch_swiglu_in_place(MatrixView<T> gate_then_out, ConstMatrixView<T> up, cudaStream_t stream) {
  if (gate_then_out.empty()) return;
  constexpr index_t width = math::vector_width<T>;
  const index_t vectors = (gate_then_out.cols() + width - 1) / width;
  const dim3 grid(static_cast<unsigned>((vectors + kernels::swiglu_threads - 1) / kernels::swiglu_threads),
                  static_cast<unsigned>(std::min<index_t>(gate_then_out.rows(), 65535)));
  kernels::swiglu_in_place<T><<<grid, kernels::swiglu_threads, 0, stream>>>(
      gate_then_out.data(), gate_then_out.row_stride(), up.data(), up.row_stride(), gate_then_out.rows(),
      gate_then_out.cols());
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
