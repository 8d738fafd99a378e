// The per-lane inner loop of the skinny GEMM (decode GEMV): the readable
// reference form of the row dot products.
//
// accumulate_row_dots() computes, for one lane of a group of Lanes lanes, the
// partial dot products of one weight row (or the same row of NumRows weight
// matrices, e.g. gate and up) with up to MaxTokens activation rows. Lane l
// handles the 16-byte vectors l, l + Lanes, l + 2*Lanes, ... of the row; the
// partials of all lanes sum to the full dot products. The CUDA kernel for
// single tokens and float32 calls it with its warp lane (Lanes = 32) and
// reduces across the warp; tests drive every lane from a host loop. (The
// host executor runs host/simd/row_dots-inl.hpp, the same sums in another
// order.) Gathered reads token t's activations from row token_rows[t]
// instead of row t, so a route group's tokens are used in place, with no
// gathered copy.
//
// The 16-byte vector type and its loads and stores, used by every kernel that
// streams rows, live here too.
#pragma once

#include <cstring>

#include "elastic/core/dtype.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic::math {

// Elements of T in one 16-byte vector.
template <class T>
inline constexpr int vector_width = 16 / static_cast<int>(sizeof(T));

template <class T>
struct alignas(16) Vector16 {
  T elements[vector_width<T>];
};

// Reads one 16-byte vector through the read-only data cache on the device
// and with a plain copy on the host. `source` must be 16-byte aligned.
template <class T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE Vector16<T> load_vector(const T* source) {
  Vector16<T> vector;
#if ELASTIC_DEVICE_PASS
  const int4 raw = __ldg(reinterpret_cast<const int4*>(source));
  static_assert(sizeof(raw) == sizeof(vector));
  memcpy(&vector, &raw, sizeof vector);
#else
  std::memcpy(&vector, source, sizeof vector);
#endif
  return vector;
}

// A plain load, for memory the same kernel also writes (an output read
// before it is updated, or a row transformed in place): load_vector's
// read-only cache path is only for data that stays constant while the kernel
// runs. `source` must be 16-byte aligned.
template <class T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE Vector16<T> load_mutable_vector(const T* source) {
#if ELASTIC_DEVICE_PASS
  return *reinterpret_cast<const Vector16<T>*>(source);
#else
  Vector16<T> vector;
  std::memcpy(&vector, source, sizeof vector);
  return vector;
#endif
}

// Stores one 16-byte vector; `destination` must be 16-byte aligned.
template <class T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void store_vector(T* destination, const Vector16<T>& vector) {
#if ELASTIC_DEVICE_PASS
  *reinterpret_cast<Vector16<T>*>(destination) = vector;
#else
  std::memcpy(destination, &vector, sizeof vector);
#endif
}

template <class T, int NumRows>
struct RowDotArgs {
  const T* weight_rows[NumRows];  // row start in each weight matrix
  const T* activations;           // token 0's row; token t at activations + t * activation_stride
  index_t activation_stride;      // elements between consecutive rows
  const int* token_rows;          // Gathered only: token t at activations + token_rows[t] * activation_stride
  int length;                     // row length in elements, a multiple of vector_width<T>
  int tokens;                     // 1 .. MaxTokens
};

template <class T, int MaxTokens, int NumRows, int Lanes, bool Gathered = false>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void accumulate_row_dots(
    float (&partials)[NumRows][MaxTokens], const RowDotArgs<T, NumRows>& args, int lane) {
  constexpr int kWidth = vector_width<T>;
  constexpr int kUnroll = 4;  // independent vector loads in flight per row
  const int vectors = args.length / kWidth;
  for (int base = lane; base < vectors; base += Lanes * kUnroll) {
    Vector16<T> weights[NumRows][kUnroll];
    ELASTIC_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      const int v = base + u * Lanes;
      if (v < vectors) {
    ELASTIC_UNROLL
        for (int r = 0; r < NumRows; ++r) weights[r][u] = load_vector(args.weight_rows[r] + v * kWidth);
      }
    }
    ELASTIC_UNROLL
    for (int u = 0; u < kUnroll; ++u) {
      const int v = base + u * Lanes;
      if (v >= vectors) break;
      float w[NumRows][kWidth];
    ELASTIC_UNROLL
      for (int r = 0; r < NumRows; ++r)
    ELASTIC_UNROLL
        for (int e = 0; e < kWidth; ++e) w[r][e] = to_float(weights[r][u].elements[e]);
    ELASTIC_UNROLL
      for (int t = 0; t < MaxTokens; ++t) {
        if (t < args.tokens) {
          const index_t row = Gathered ? args.token_rows[t] : t;
          const Vector16<T> x = load_vector(args.activations + row * args.activation_stride + v * kWidth);
    ELASTIC_UNROLL
          for (int e = 0; e < kWidth; ++e) {
            const float xe = to_float(x.elements[e]);
    ELASTIC_UNROLL
            for (int r = 0; r < NumRows; ++r) partials[r][t] += w[r][e] * xe;
          }
        }
      }
    }
  }
}

}  // namespace elastic::math

namespace elastic::math {

// Applies the epilogue to token t's finished dot products (one per weight
// matrix): Identity for a linear map, SwiGLU for gate and up.
template <int NumRows, int MaxTokens, class Epilogue>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float finish_row_dots(
    const Epilogue& epilogue, const float (&dots)[NumRows][MaxTokens], int t) {
  static_assert(NumRows == 1 || NumRows == 2, "epilogues take one or two dot products");
  if constexpr (NumRows == 1) {
    return epilogue(dots[0][t]);
  } else {
    return epilogue(dots[0][t], dots[1][t]);
  }
}

}  // namespace elastic::math
