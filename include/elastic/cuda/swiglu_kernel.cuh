// The prefill SwiGLU epilogue: after cuBLASLt has written gate = x . W_gate^T
// into the activation buffer and up = x . W_up^T into scratch, one pass turns
// the activation buffer into silu(gate) * up in place (math::SwiGLU, the
// formula the host executor and the decode kernel use).
#pragma once

#include <algorithm>

#include <cuda_runtime.h>

#include "elastic/core/dtype.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/math/activation.hpp"

namespace elastic::cuda {

namespace kernels {

template <class T>
__global__ void swiglu_in_place(T* gate_then_out, index_t gate_stride, const T* up, index_t up_stride,
                                index_t rows, index_t cols) {
  const index_t count = rows * cols;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t row = i / cols;
    const index_t col = i - row * cols;
    T& gate = gate_then_out[row * gate_stride + col];
    gate = from_float<T>(math::SwiGLU{}(to_float(gate), to_float(up[row * up_stride + col])));
  }
}

}  // namespace kernels

// gate_then_out[t, j] = silu(gate_then_out[t, j]) * up[t, j]
template <class T>
void launch_swiglu_in_place(MatrixView<T> gate_then_out, ConstMatrixView<T> up, cudaStream_t stream) {
  if (gate_then_out.empty()) return;
  constexpr unsigned threads = 256;
  const index_t wanted = (gate_then_out.size() + threads - 1) / threads;
  const auto blocks = static_cast<unsigned>(std::min<index_t>(wanted, 65535));
  kernels::swiglu_in_place<T><<<blocks, threads, 0, stream>>>(
      gate_then_out.data(), gate_then_out.row_stride(), up.data(), up.row_stride(), gate_then_out.rows(),
      gate_then_out.cols());
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
