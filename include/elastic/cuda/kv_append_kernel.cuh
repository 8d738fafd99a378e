// Appending a call's new keys and values to the KV cache, and the RoPE step
// every attention kernel shares.
//
// RoPE on 16-byte vectors: a thread takes vector v of a head's first half and
// vector v of its second half. Both layouts keep every rotated pair inside
// that vector pair: rotate-half pairs dimension i with i + HeadDim/2 (the same
// place in the two vectors), interleaved pairs 2i with 2i + 1 (neighbours in
// one vector). So HeadDim / (2 * vector width) threads rotate a head with
// 16-byte loads and stores and no exchange between threads.
// rotate_vector_pair() is that per-thread step (math::rotate_pair on each
// pair, in float32, exactly as math::rotate_head does it); the append kernel
// uses it for keys, the decode and prefill kernels for queries.
//
// The append kernel: one thread per (token, KV head, vector pair) rotates the
// new key for the token's position, rounds it to T and stores it at cache
// position cached_lengths[s] + j of slot cache_slots[s]; the value is copied
// unchanged. It writes nothing else. A small grid-stride launcher sits below.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "elastic/core/dtype.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/cuda/attention_metadata.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/math/rope.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

// Vector pairs per head: the threads that rotate one head together.
template <class T, int HeadDim>
inline constexpr int rope_vector_pairs = HeadDim / (2 * math::vector_width<T>);

template <class T>
using VectorFloats = float[math::vector_width<T>];

template <class T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void widen(const math::Vector16<T>& vector, VectorFloats<T>& values) {
  ELASTIC_UNROLL
  for (int e = 0; e < math::vector_width<T>; ++e) values[e] = to_float(vector.elements[e]);
}

template <class T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE math::Vector16<T> narrow(const VectorFloats<T>& values) {
  math::Vector16<T> vector;
  ELASTIC_UNROLL
  for (int e = 0; e < math::vector_width<T>; ++e) vector.elements[e] = from_float<T>(values[e]);
  return vector;
}

// The head dimension of element e of the low (first-half) or high vector v.
template <class T, int HeadDim>
ELASTIC_HOST_DEVICE constexpr int vector_pair_dim(int v, bool high, int e) {
  return (high ? HeadDim / 2 : 0) + v * math::vector_width<T> + e;
}

// Rotates the pairs held by low = vector v of the first half and high =
// vector v of the second half of one head, for `position`.
template <class T, int HeadDim>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void rotate_vector_pair(VectorFloats<T>& low, VectorFloats<T>& high, int v,
                                                               int position, RopeLayout layout,
                                                               const float* inverse_frequencies) {
  constexpr int kWidth = math::vector_width<T>;
  static_assert(kWidth % 2 == 0 && (HeadDim / 2) % kWidth == 0, "a vector must hold whole interleaved pairs");
  if (layout == RopeLayout::rotate_half) {
    ELASTIC_UNROLL
    for (int e = 0; e < kWidth; ++e)
      math::rotate_pair(low[e], high[e], position, inverse_frequencies[vector_pair_dim<T, HeadDim>(v, false, e)]);
  } else {
    ELASTIC_UNROLL
    for (int e = 0; e < kWidth; e += 2) {
      math::rotate_pair(low[e], low[e + 1], position,
                        inverse_frequencies[vector_pair_dim<T, HeadDim>(v, false, e) / 2]);
      math::rotate_pair(high[e], high[e + 1], position,
                        inverse_frequencies[vector_pair_dim<T, HeadDim>(v, true, e) / 2]);
    }
  }
}

// Loads vector pair v of the head starting at `head` (16-byte aligned),
// widens it to float32 and rotates it for `position`.
template <class T, int HeadDim>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void load_rotated_pair(VectorFloats<T>& low, VectorFloats<T>& high,
                                                              const T* head, int v, int position, RopeLayout layout,
                                                              const float* inverse_frequencies) {
  widen<T>(math::load_vector(head + vector_pair_dim<T, HeadDim>(v, false, 0)), low);
  widen<T>(math::load_vector(head + vector_pair_dim<T, HeadDim>(v, true, 0)), high);
  rotate_vector_pair<T, HeadDim>(low, high, v, position, layout, inverse_frequencies);
}

namespace kernels {

inline constexpr int append_threads = 256;

// Appends key and value vector pair `v` of KV head `head` of packed token `token`.
template <class T, int HeadDim>
__device__ __forceinline__ void append_vector_pair(const AttentionArgs<T, HeadDim>& args, int token, int head, int v) {
  const AttentionMetadata& batch = args.batch;
  const int sequence = batch.token_sequences[token];
  const int cache_position = batch.cached_lengths[sequence] + token - batch.first_tokens[sequence];
  const std::size_t offset = args.cache_offset(batch.cache_slots[sequence], head, cache_position);

  VectorFloats<T> low, high;
  load_rotated_pair<T, HeadDim>(low, high, args.k + token * args.k_stride + head * HeadDim, v,
                                batch.token_positions[token], args.rope_layout, args.rope_inverse_frequencies);
  math::store_vector(args.cache_keys + offset + vector_pair_dim<T, HeadDim>(v, false, 0), narrow<T>(low));
  math::store_vector(args.cache_keys + offset + vector_pair_dim<T, HeadDim>(v, true, 0), narrow<T>(high));

  const T* value = args.v + token * args.v_stride + head * HeadDim;
  for (int half = 0; half < 2; ++half) {
    const int dim = vector_pair_dim<T, HeadDim>(v, half == 1, 0);
    math::store_vector(args.cache_values + offset + dim, math::load_vector(value + dim));
  }
}

template <class T, int HeadDim>
__global__ void __launch_bounds__(append_threads) append_kv(const AttentionArgs<T, HeadDim> args) {
  constexpr int kPairs = rope_vector_pairs<T, HeadDim>;
  const index_t items = index_t{args.batch.tokens} * args.kv_heads * kPairs;
  for (index_t item = blockIdx.x * index_t{blockDim.x} + threadIdx.x; item < items;
       item += index_t{gridDim.x} * blockDim.x) {
    const int v = static_cast<int>(item % kPairs);
    const index_t token_head = item / kPairs;
    append_vector_pair(args, static_cast<int>(token_head / args.kv_heads), static_cast<int>(token_head % args.kv_heads),
                       v);
  }
}

}  // namespace kernels

// Enqueues the append of every new token's rotated key and value.
template <class T, int HeadDim>
void launch_append_kv(const AttentionArgs<T, HeadDim>& args, cudaStream_t stream) {
  const index_t items = index_t{args.batch.tokens} * args.kv_heads * rope_vector_pairs<T, HeadDim>;
  if (items == 0) return;
  const index_t wanted = (items + kernels::append_threads - 1) / kernels::append_threads;
  const auto blocks = static_cast<unsigned>(std::min<index_t>(wanted, 65535));
  kernels::append_kv<T, HeadDim><<<blocks, kernels::append_threads, 0, stream>>>(args);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

}  // namespace elastic::cuda
