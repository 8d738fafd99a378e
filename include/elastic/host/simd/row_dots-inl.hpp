// The host executor's vector kernel for row dot products, compiled once per
// instruction set by Highway (kernels.hpp includes this file through
// hwy/foreach_target.h and dispatches at run time): for up to 12 weight rows
// and up to 16 tokens, float32 sums of w . x_t over the reduction length.
// It serves decode (one to a few tokens) and, called over tiles of 16
// tokens, prefill.
//
// Weights and activations load as whole vectors of their storage type and
// widen to float32 lanes (bfloat16 by a shift, float16 through F16C where
// the target has it). The rows and tokens are cut into register tiles (up
// to 6 rows x 4 tokens on AVX-512, 2 x 4 with 16 vector registers): each
// (row, token) pair keeps one float32 accumulator vector fed by one fused
// multiply-add per vector of the row, so a tile loads rows + tokens vectors
// for rows x tokens multiply-adds, and the rows stay in the first-level
// cache for the next token group. Each sum ends with one horizontal sum of
// its lanes, then a scalar tail over the elements past the last whole
// vector. A SwiGLU call then applies silu(gate) * up to 16 tokens at a
// time (one AVX-512 vector), with Highway's vector exp (within 1 ulp of
// expf, so within a few float32 ulps of math::SwiGLU).
//
// The arithmetic of one (row, token) pair does not depend on the tile it
// ran in, on the other rows or tokens of the call, or on how a caller
// splits its work, so a token's outputs are bitwise the same whatever batch
// it runs in. Compared with math::accumulate_row_dots (the per-lane loop the
// CUDA kernels share) only the order of the float32 additions differs.
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
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cstddef>

#include "elastic/core/dtype.hpp"
#include "elastic/host/simd/row_dots_call.hpp"
#include "elastic/host/simd/vector_load-inl.hpp"

HWY_BEFORE_NAMESPACE();
namespace elastic::host::simd {
namespace HWY_NAMESPACE {

// Rows of a register tile: Rows x 4 accumulators, Rows weight vectors and
// one activation vector fit the vector registers.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
inline constexpr int tile_rows = 6;
#elif HWY_ARCH_ARM_A64
inline constexpr int tile_rows = 6;
#else
inline constexpr int tile_rows = 2;
#endif
inline constexpr int tile_tokens = 4;

// partials[r][first + j] += w_r . x_j for the Rows rows w[0 .. Rows) and the
// Tokens tokens x[0 .. Tokens).
template <class T, int Rows, int Tokens>
HWY_INLINE void tile_dots(const T* const* w, const T* const (&x)[Tokens], std::size_t length,
                          float (*partials)[max_call_tokens], int first) {
  const FloatTag tag;
  const std::size_t lanes = hn::Lanes(tag);
  FloatVector sums[Rows][Tokens];
  for (int r = 0; r < Rows; ++r)
    for (int j = 0; j < Tokens; ++j) sums[r][j] = hn::Zero(tag);
  std::size_t i = 0;
  for (; i + lanes <= length; i += lanes) {
    FloatVector wv[Rows];
    for (int r = 0; r < Rows; ++r) wv[r] = load_widened(tag, w[r] + i);
    for (int j = 0; j < Tokens; ++j) {
      const FloatVector xj = load_widened(tag, x[j] + i);
      for (int r = 0; r < Rows; ++r) sums[r][j] = hn::MulAdd(wv[r], xj, sums[r][j]);
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int j = 0; j < Tokens; ++j) {
      float sum = hn::GetLane(hn::SumOfLanes(tag, sums[r][j]));
      for (std::size_t tail = i; tail < length; ++tail) sum += to_float(w[r][tail]) * to_float(x[j][tail]);
      partials[r][first + j] += sum;
    }
}

// One token group against every row of the call, tile by tile: tiles of
// tile_rows rows, the remainder in tiles of 4, 2 and 1.
template <class T, int Tokens>
HWY_INLINE void token_group_dots(const RowDotsCall& call, const T* const (&x)[Tokens], int first) {
  const T* weights[max_call_rows];
  for (int r = 0; r < call.rows; ++r) weights[r] = static_cast<const T*>(call.weight_rows[r]);
  const auto length = static_cast<std::size_t>(call.length);
  int r = 0;
  const auto run_tiles = [&]<int Rows>() {
    for (; r + Rows <= call.rows; r += Rows) tile_dots<T, Rows, Tokens>(weights + r, x, length, call.partials + r, first);
  };
  run_tiles.template operator()<tile_rows>();
  if constexpr (tile_rows > 4) run_tiles.template operator()<4>();
  run_tiles.template operator()<2>();
  run_tiles.template operator()<1>();
}

template <class T>
HWY_INLINE void row_dots_typed(const RowDotsCall& call) {
  const T* const activations = static_cast<const T*>(call.activations);
  const auto token_row = [&](int t) {
    const index_t row = call.token_rows != nullptr ? call.token_rows[t] : t;
    return activations + row * call.activation_stride;
  };
  for (int first = 0; first < call.tokens; first += tile_tokens) {
    const int count = std::min(tile_tokens, call.tokens - first);
    const auto run = [&]<int Tokens>() {
      const T* x[Tokens];
      for (int j = 0; j < Tokens; ++j) x[j] = token_row(first + j);
      token_group_dots<T, Tokens>(call, x, first);
    };
    switch (count) {
      case 1: run.template operator()<1>(); break;
      case 2: run.template operator()<2>(); break;
      case 3: run.template operator()<3>(); break;
      default: run.template operator()<4>(); break;
    }
  }
}

// partials[n][t] = silu(partials[n][t]) * partials[gates + n][t] for the
// call's gate rows n (silu(g) = g / (1 + e^-g)).
HWY_INLINE void swiglu_epilogue(const RowDotsCall& call) {
  const FloatTag tag;
  const std::size_t lanes = hn::Lanes(tag);
  const FloatVector one = hn::Set(tag, 1.0f);
  const FloatVector max_exponent = hn::Set(tag, 88.0f);  // e^88 is finite; e^-g beyond it only rounds g / inf
  const int gates = call.rows / 2;
  for (int n = 0; n < gates; ++n)
    for (std::size_t t = 0; t < static_cast<std::size_t>(call.tokens); t += lanes) {
      const FloatVector gate = hn::LoadU(tag, call.partials[n] + t);
      const FloatVector up = hn::LoadU(tag, call.partials[gates + n] + t);
      const FloatVector exp_minus_gate = hn::Exp(tag, hn::Min(hn::Neg(gate), max_exponent));
      hn::StoreU(hn::Mul(hn::Div(gate, hn::Add(one, exp_minus_gate)), up), tag, call.partials[n] + t);
    }
}

// The exported entry: picks the element type of the call.
inline void RowDots(const RowDotsCall& call) {
  switch (call.dtype) {
    case DType::float32: row_dots_typed<float>(call); break;
    case DType::float16: row_dots_typed<half_t>(call); break;
    case DType::bfloat16: row_dots_typed<bfloat16_t>(call); break;
  }
  if (call.swiglu) swiglu_epilogue(call);
}

}  // namespace HWY_NAMESPACE
}  // namespace elastic::host::simd
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
