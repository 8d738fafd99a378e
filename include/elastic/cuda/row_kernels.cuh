// Row kernels of the CUDA executor's routing primitives: gather and
// scatter-add of rows by index (moving a route group's tokens into a dense
// batch and its results back into the residual), RMSNorm, ReLU in place and
// the residual contribution ratio of each row; and the widening of a matrix
// to float32 (convert: a 16-bit model's logits). One block of row_threads
// threads per row; thread i runs lane i of the per-lane loops in
// math/row_ops.hpp (16-byte vectors, a scalar tail when a row is not a whole
// number of vectors, float32 arithmetic with one rounding per stored
// element), and the row reductions are cub::BlockReduce.
//
// The row indices of gather and scatter-add are device memory, so the host
// cannot check them without a synchronisation: a row whose index lies outside
// [0, rows) of the indexed matrix is skipped (its destination row is left as
// it was), never clamped. Indices from a route plan are always in range.
// Scatter-add indices must also be distinct, as a plan's permutation is: two
// rows added into the same destination row race.
#pragma once

#include <cub/block/block_reduce.cuh>
#include <cuda_runtime.h>

#include <limits>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/math/routing.hpp"
#include "elastic/math/row_ops.hpp"

namespace elastic::cuda {

namespace kernels {

inline constexpr int row_threads = 128;

// A row of a strided matrix.
template <class T>
struct RowsArg {
  T* data;
  index_t stride;

  __device__ __forceinline__ T* row(index_t r) const { return data + r * stride; }
};

// dst[i] = src[indices[i]], one block per destination row.
template <class T>
__global__ void __launch_bounds__(row_threads)
    gather_rows(RowsArg<T> dst, RowsArg<const T> src, index_t src_rows, int cols, const int* indices) {
  const index_t row = blockIdx.x;
  const int index = indices[row];
  if (index < 0 || index >= src_rows) return;
  math::copy_row_lane(dst.row(row), src.row(index), cols, static_cast<int>(threadIdx.x), row_threads);
}

// dst[indices[i]] += src[i], one block per source row.
template <class T>
__global__ void __launch_bounds__(row_threads)
    scatter_add_rows(RowsArg<T> dst, index_t dst_rows, RowsArg<const T> src, int cols, const int* indices) {
  const index_t row = blockIdx.x;
  const int index = indices[row];
  if (index < 0 || index >= dst_rows) return;
  math::add_row_lane(dst.row(index), src.row(row), cols, static_cast<int>(threadIdx.x), row_threads);
}

// y = x * weight / rms(x) per row; y may be x.
template <class T>
__global__ void __launch_bounds__(row_threads)
    rms_norm(RowsArg<T> y, RowsArg<const T> x, const T* weight, int cols, float epsilon) {
  using Reduce = cub::BlockReduce<float, row_threads>;
  __shared__ typename Reduce::TempStorage storage;
  __shared__ float scale;
  const int lane = static_cast<int>(threadIdx.x);
  const T* input = x.row(blockIdx.x);
  const float sum = Reduce(storage).Sum(math::sum_of_squares_lane(input, cols, lane, row_threads));
  if (lane == 0) scale = math::rms_scale(sum, cols, epsilon);
  __syncthreads();
  math::scale_row_lane(y.row(blockIdx.x), input, weight, scale, cols, lane, row_threads);
}

// dst = src widened to float32, one block per row.
template <class T>
__global__ void __launch_bounds__(row_threads) widen_rows(RowsArg<float> dst, RowsArg<const T> src, int cols) {
  math::widen_row_lane(dst.row(blockIdx.x), src.row(blockIdx.x), cols, static_cast<int>(threadIdx.x), row_threads);
}

template <class T>
__global__ void __launch_bounds__(row_threads) relu_in_place(RowsArg<T> x, int cols) {
  math::relu_row_lane(x.row(blockIdx.x), cols, static_cast<int>(threadIdx.x), row_threads);
}

// ratios[r] = ||block[r]|| / ||residual[r] + block[r]||
template <class T>
__global__ void __launch_bounds__(row_threads)
    contribution_ratios(float* ratios, RowsArg<const T> block, RowsArg<const T> residual, int cols) {
  using Reduce = cub::BlockReduce<math::ContributionSums, row_threads>;
  __shared__ typename Reduce::TempStorage storage;
  const int lane = static_cast<int>(threadIdx.x);
  const math::ContributionSums sums = Reduce(storage).Sum(
      math::contribution_sums_lane(block.row(blockIdx.x), residual.row(blockIdx.x), cols, lane, row_threads));
  if (lane == 0) ratios[blockIdx.x] = math::contribution_ratio(sums.block, sums.output);
}

}  // namespace kernels

// One block per row: checks that the grid and the per-lane column count fit
// their int ranges (before anything is enqueued) and returns the grid size.
inline unsigned row_grid(index_t rows, index_t cols, const char* op) {
  constexpr index_t limit = std::numeric_limits<int>::max();
  require(rows <= limit && cols <= limit, op, ": at most ", limit, " rows and columns, found [", rows, " x ", cols,
          "]");
  return static_cast<unsigned>(rows);
}

template <class T>
kernels::RowsArg<T> rows_arg(MatrixView<T> view) {
  return {view.data(), view.row_stride()};
}

template <class T>
void launch_gather_rows(MatrixView<T> dst, ConstMatrixView<T> src, const int* indices, cudaStream_t stream) {
  const unsigned blocks = row_grid(dst.rows(), dst.cols(), "gather_rows");
  if (dst.empty()) return;
  kernels::gather_rows<T><<<blocks, kernels::row_threads, 0, stream>>>(rows_arg(dst), rows_arg(src), src.rows(),
                                                                      static_cast<int>(dst.cols()), indices);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_scatter_add_rows(MatrixView<T> dst, ConstMatrixView<T> src, const int* indices, cudaStream_t stream) {
  const unsigned blocks = row_grid(src.rows(), src.cols(), "scatter_add_rows");
  if (src.empty()) return;
  kernels::scatter_add_rows<T><<<blocks, kernels::row_threads, 0, stream>>>(
      rows_arg(dst), dst.rows(), rows_arg(src), static_cast<int>(src.cols()), indices);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_rms_norm(MatrixView<T> y, ConstMatrixView<T> x, ConstMatrixView<T> weight, float epsilon,
                     cudaStream_t stream) {
  const unsigned blocks = row_grid(x.rows(), x.cols(), "rms_norm");
  if (x.empty()) return;
  kernels::rms_norm<T><<<blocks, kernels::row_threads, 0, stream>>>(rows_arg(y), rows_arg(x), weight.data(),
                                                                   static_cast<int>(x.cols()), epsilon);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_widen_rows(MatrixView<float> dst, ConstMatrixView<T> src, cudaStream_t stream) {
  const unsigned blocks = row_grid(src.rows(), src.cols(), "convert");
  if (src.empty()) return;
  kernels::widen_rows<T><<<blocks, kernels::row_threads, 0, stream>>>(rows_arg(dst), rows_arg(src),
                                                                     static_cast<int>(src.cols()));
  ELASTIC_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_relu_in_place(MatrixView<T> x, cudaStream_t stream) {
  const unsigned blocks = row_grid(x.rows(), x.cols(), "relu_in_place");
  if (x.empty()) return;
  kernels::relu_in_place<T><<<blocks, kernels::row_threads, 0, stream>>>(rows_arg(x), static_cast<int>(x.cols()));
  ELASTIC_CUDA_CHECK_LAUNCH();
}

// Every row gets a ratio, zero-length rows included (0).
template <class T>
void launch_contribution_ratios(float* ratios, ConstMatrixView<T> block, ConstMatrixView<T> residual,
                                cudaStream_t stream) {
  const unsigned blocks = row_grid(block.rows(), block.cols(), "contribution_ratios");
  if (block.rows() == 0) return;
  kernels::contribution_ratios<T><<<blocks, kernels::row_threads, 0, stream>>>(
      ratios, rows_arg(block), rows_arg(residual), static_cast<int>(block.cols()));
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
