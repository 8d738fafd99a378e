// The host executor's vector kernel for row dot products, compiled once per
// instruction set by Highway (see dispatch.hpp, which includes this file
// through hwy/foreach_target.h and dispatches at run time): for one weight
// row (or the gate and up rows of a fused SwiGLU) and up to 16 tokens,
// float32 sums of w . x_t over the reduction length.
//
// Weights and activations load as whole vectors of their storage type and
// widen to float32 lanes (bfloat16 by a shift, float16 through F16C where
// the target has it); each token keeps one float32 accumulator vector per
// weight row, fed by one fused multiply-add per vector, and ends with one
// horizontal sum. Tokens run in groups of up to four against the same pass
// over the weights (the rows stay in the first-level cache for the next
// group), so 2 rows x 4 tokens of accumulators plus the loaded vectors fit
// every target's register file. Elements past the last whole vector take a
// scalar tail. Compared with math::accumulate_row_dots (the per-lane loop
// the CUDA kernels share) only the order of the float32 additions differs.
//
// The per-target toggle below lets foreach_target.h include this file once
// for every instruction set.
#if defined(ELASTIC_HOST_SIMD_ROW_DOTS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ELASTIC_HOST_SIMD_ROW_DOTS_INL_H_
#undef ELASTIC_HOST_SIMD_ROW_DOTS_INL_H_
#else
#define ELASTIC_HOST_SIMD_ROW_DOTS_INL_H_
#endif

#include <hwy/highway.h>

#include <algorithm>
#include <cstddef>

#include "elastic/core/dtype.hpp"
#include "elastic/host/simd/row_dots_call.hpp"
#include "elastic/host/simd/vector_load-inl.hpp"

HWY_BEFORE_NAMESPACE();
namespace elastic::host::simd {
namespace HWY_NAMESPACE {

// partials[r][first + j] += w_r . x_j for the Tokens tokens x[0 .. Tokens).
template <class T, int NumRows, int Tokens>
HWY_INLINE void token_group_dots(const RowDotsCall& call, const T* const (&x)[Tokens], int first) {
  const FloatTag tag;
  const std::size_t lanes = hn::Lanes(tag);
  const auto length = static_cast<std::size_t>(call.length);
  const T* weights[NumRows];
  for (int r = 0; r < NumRows; ++r) weights[r] = static_cast<const T*>(call.weight_rows[r]);

  FloatVector sums[NumRows][Tokens];
  for (int r = 0; r < NumRows; ++r)
    for (int j = 0; j < Tokens; ++j) sums[r][j] = hn::Zero(tag);
  std::size_t i = 0;
  for (; i + lanes <= length; i += lanes) {
    FloatVector w[NumRows];
    for (int r = 0; r < NumRows; ++r) w[r] = load_widened(tag, weights[r] + i);
    for (int j = 0; j < Tokens; ++j) {
      const FloatVector xj = load_widened(tag, x[j] + i);
      for (int r = 0; r < NumRows; ++r) sums[r][j] = hn::MulAdd(w[r], xj, sums[r][j]);
    }
  }
  for (int r = 0; r < NumRows; ++r)
    for (int j = 0; j < Tokens; ++j) {
      float sum = hn::GetLane(hn::SumOfLanes(tag, sums[r][j]));
      for (std::size_t tail = i; tail < length; ++tail) sum += to_float(weights[r][tail]) * to_float(x[j][tail]);
      call.partials[r][first + j] += sum;
    }
}

template <class T, int NumRows>
HWY_INLINE void row_dots_typed(const RowDotsCall& call) {
  const T* const activations = static_cast<const T*>(call.activations);
  const auto token_row = [&](int t) {
    const index_t row = call.token_rows != nullptr ? call.token_rows[t] : t;
    return activations + row * call.activation_stride;
  };
  for (int first = 0; first < call.tokens; first += 4) {
    const int count = std::min(4, call.tokens - first);
    const auto run = [&]<int Tokens>() {
      const T* x[Tokens];
      for (int j = 0; j < Tokens; ++j) x[j] = token_row(first + j);
      token_group_dots<T, NumRows, Tokens>(call, x, first);
    };
    switch (count) {
      case 1: run.template operator()<1>(); break;
      case 2: run.template operator()<2>(); break;
      case 3: run.template operator()<3>(); break;
      default: run.template operator()<4>(); break;
    }
  }
}

// The exported entry: picks the element type and row count of the call.
inline void RowDots(const RowDotsCall& call) {
  const auto with_rows = [&]<class T>() {
    if (call.num_rows == 1) row_dots_typed<T, 1>(call);
    else row_dots_typed<T, 2>(call);
  };
  switch (call.dtype) {
    case DType::float32: with_rows.template operator()<float>(); break;
    case DType::float16: with_rows.template operator()<half_t>(); break;
    case DType::bfloat16: with_rows.template operator()<bfloat16_t>(); break;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace elastic::host::simd
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
