// The host executor's vector attention kernel, compiled once per instruction
// set by Highway (see kernels.hpp): one pass over a range of key and value
// rows of one KV head for up to 16 query rows (attention_tile_call.hpp).
//
// The range is taken in chunks of 64 positions. Per chunk, each key row is
// widened to float32 once and dotted with the queries of up to four rows
// (one fused multiply-add per vector per row and key, four keys at a time so
// that their horizontal sums share shuffles); each row then takes one
// online-softmax step for the whole chunk: the chunk's maximum, one rescale
// of its sum and accumulators, and the weights exp(score - max) as vectors
// over positions. Last, each value row is widened
// once per group of four rows and added into their accumulators, a few
// vectors of each row at a time so that the accumulators stay in registers
// across the chunk. Compared with math::softmax_push applied score by score
// (what the CUDA kernels run), only the order of float32 operations and the
// exponential's last bits differ.
//
// The per-target toggle below lets foreach_target.h include this file once
// for every instruction set.
#if defined(ELASTIC_HOST_SIMD_ATTENTION_TILE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ELASTIC_HOST_SIMD_ATTENTION_TILE_INL_H_
#undef ELASTIC_HOST_SIMD_ATTENTION_TILE_INL_H_
#else
#define ELASTIC_HOST_SIMD_ATTENTION_TILE_INL_H_
#endif

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "elastic/core/dtype.hpp"
#include "elastic/host/simd/attention_tile_call.hpp"
#include "elastic/host/simd/vector_load-inl.hpp"

HWY_BEFORE_NAMESPACE();
namespace elastic::host::simd {
namespace HWY_NAMESPACE {

// Rows that share one load of each key or value vector.
inline constexpr int attention_row_group = 4;

using ChunkRow = float[attention_chunk];

// Calls body.template operator()<R>(first) for the rows [first, first + R)
// of each group of up to attention_row_group rows.
template <class Body>
HWY_INLINE void for_each_row_group(int rows, Body&& body) {
  for (int first = 0; first < rows; first += attention_row_group) {
    switch (std::min(attention_row_group, rows - first)) {
      case 1: body.template operator()<1>(first); break;
      case 2: body.template operator()<2>(first); break;
      case 3: body.template operator()<3>(first); break;
      default: body.template operator()<4>(first); break;
    }
  }
}

#if HWY_TARGET != HWY_SCALAR && !HWY_HAVE_SCALABLE
// The sum of the 128-bit blocks of v.
template <class D>
HWY_INLINE hn::Vec<hn::Full128<float>> add_blocks(D /*tag*/, hn::Vec<D> v) {
  if constexpr (hn::MaxLanes(D()) <= 4) {
    return v;
  } else {
    const hn::Half<D> half;
    return add_blocks(half, hn::Add(hn::LowerHalf(half, v), hn::UpperHalf(half, v)));
  }
}
#endif

// The horizontal sums of four vectors, stored to sums[0 .. 4). Interleaving
// the vectors two by two and adding puts the four partial sums of each
// 128-bit block side by side, so the four reductions share their shuffles
// and end in one store.
HWY_INLINE void sum_of_lanes4(FloatVector a, FloatVector b, FloatVector c, FloatVector d, float* sums) {
  const FloatTag tag;
#if HWY_TARGET == HWY_SCALAR || HWY_HAVE_SCALABLE  // no fixed 128-bit blocks
  sums[0] = hn::GetLane(hn::SumOfLanes(tag, a));
  sums[1] = hn::GetLane(hn::SumOfLanes(tag, b));
  sums[2] = hn::GetLane(hn::SumOfLanes(tag, c));
  sums[3] = hn::GetLane(hn::SumOfLanes(tag, d));
#else
  const hn::Repartition<std::uint64_t, FloatTag> pairs;
  // Per block: a0+a2 b0+b2 a1+a3 b1+b3, and the same for c, d.
  const auto ab = hn::BitCast(pairs, hn::Add(hn::InterleaveLower(tag, a, b), hn::InterleaveUpper(tag, a, b)));
  const auto cd = hn::BitCast(pairs, hn::Add(hn::InterleaveLower(tag, c, d), hn::InterleaveUpper(tag, c, d)));
  // Per block: the block's share of each of the four sums.
  const FloatVector blocks = hn::Add(hn::BitCast(tag, hn::InterleaveLower(pairs, ab, cd)),
                                     hn::BitCast(tag, hn::InterleaveUpper(pairs, ab, cd)));
  hn::StoreU(add_blocks(tag, blocks), hn::Full128<float>(), sums);
#endif
}

// Query rows whose dots share the loads of four key rows: 4 x 4
// accumulators fit 32 registers on 512-bit targets, 2 x 4 fit 16 on
// narrower ones.
inline constexpr int score_rows = hn::MaxLanes(FloatTag()) >= 16 ? 4 : 2;

// scores[r][c] = q_r . k_c for the R rows of `queries` and the first `count`
// key rows of `keys`: four key rows at a time, whose four dots with a query
// row are reduced together and stored as one vector, then one at a time.
template <class T, int HeadDim, int R>
HWY_INLINE void group_scores(const float* queries, const T* keys, int count, ChunkRow* scores) {
  if constexpr (R > score_rows) {
    group_scores<T, HeadDim, score_rows>(queries, keys, count, scores);
    group_scores<T, HeadDim, R - score_rows>(queries + score_rows * HeadDim, keys, count, scores + score_rows);
  } else {
    const FloatTag tag;
    const std::size_t lanes = hn::Lanes(tag);
    int c = 0;
    for (; c + 4 <= count; c += 4) {
      const T* key = keys + static_cast<std::size_t>(c) * HeadDim;
      FloatVector sums[R][4];
      for (int r = 0; r < R; ++r)
        for (int p = 0; p < 4; ++p) sums[r][p] = hn::Zero(tag);
      for (std::size_t i = 0; i < HeadDim; i += lanes) {
        FloatVector k[4];
        for (int p = 0; p < 4; ++p) k[p] = load_widened(tag, key + p * HeadDim + i);
        for (int r = 0; r < R; ++r) {
          const FloatVector q = hn::LoadU(tag, queries + r * HeadDim + i);
          for (int p = 0; p < 4; ++p) sums[r][p] = hn::MulAdd(q, k[p], sums[r][p]);
        }
      }
      for (int r = 0; r < R; ++r) sum_of_lanes4(sums[r][0], sums[r][1], sums[r][2], sums[r][3], scores[r] + c);
    }
    for (; c < count; ++c) {
      const T* key = keys + static_cast<std::size_t>(c) * HeadDim;
      FloatVector sums[R];
      for (int r = 0; r < R; ++r) sums[r] = hn::Zero(tag);
      for (std::size_t i = 0; i < HeadDim; i += lanes) {
        const FloatVector k = load_widened(tag, key + i);
        for (int r = 0; r < R; ++r) sums[r] = hn::MulAdd(hn::LoadU(tag, queries + r * HeadDim + i), k, sums[r]);
      }
      for (int r = 0; r < R; ++r) scores[r][c] = hn::GetLane(hn::SumOfLanes(tag, sums[r]));
    }
  }
}

// acc_r += sum_c weights[r][c] * v_c for the R rows of `accumulators` and
// the first `count` value rows of `values`.
template <class T, int HeadDim, int R>
HWY_INLINE void group_values(const ChunkRow* weights, const T* values, int count, float* accumulators) {
  const FloatTag tag;
  const std::size_t lanes = hn::Lanes(tag);
  // Vectors of each row per pass: R * Block accumulators and Block loaded
  // values fit 32 registers on 512-bit targets, 16 on narrower ones.
  constexpr std::size_t max_lanes = hn::MaxLanes(FloatTag());
  constexpr std::size_t Block = std::min<std::size_t>(HeadDim / max_lanes, max_lanes >= 16 ? 4 : 2);
  for (std::size_t first = 0; first < HeadDim; first += Block * lanes) {
    FloatVector acc[R][Block];
    for (int r = 0; r < R; ++r)
      for (std::size_t j = 0; j < Block; ++j) acc[r][j] = hn::LoadU(tag, accumulators + r * HeadDim + first + j * lanes);
    for (int c = 0; c < count; ++c) {
      const T* value = values + static_cast<std::size_t>(c) * HeadDim + first;
      FloatVector v[Block];
      for (std::size_t j = 0; j < Block; ++j) v[j] = load_widened(tag, value + j * lanes);
      for (int r = 0; r < R; ++r) {
        const FloatVector weight = hn::Set(tag, weights[r][c]);
        for (std::size_t j = 0; j < Block; ++j) acc[r][j] = hn::MulAdd(weight, v[j], acc[r][j]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (std::size_t j = 0; j < Block; ++j) hn::StoreU(acc[r][j], tag, accumulators + r * HeadDim + first + j * lanes);
  }
}

// One online-softmax step of a row over a chunk whose first `seen` scores it
// sees (seen >= 1): updates max, sum and the accumulators, and turns the
// row's scores into the weights of the chunk's values (zero past `seen`).
template <int HeadDim>
HWY_INLINE void softmax_chunk(ChunkRow& row, int seen, float& max, float& sum, float* accumulators) {
  const FloatTag tag;
  const std::size_t lanes = hn::Lanes(tag);
  std::fill(row + seen, row + attention_chunk, -INFINITY);
  FloatVector chunk_max = hn::Set(tag, -INFINITY);
  for (std::size_t c = 0; c < static_cast<std::size_t>(seen); c += lanes)
    chunk_max = hn::Max(chunk_max, hn::LoadU(tag, row + c));
  const float new_max = std::max(max, hn::GetLane(hn::MaxOfLanes(tag, chunk_max)));
  const float rescale = std::exp(max - new_max);  // 0 for a row that has seen nothing
  const FloatVector shift = hn::Set(tag, new_max);
  FloatVector total = hn::Zero(tag);
  for (std::size_t c = 0; c < attention_chunk; c += lanes) {
    const FloatVector weight = hn::Exp(tag, hn::Sub(hn::LoadU(tag, row + c), shift));  // exp(-inf) = 0
    hn::StoreU(weight, tag, row + c);
    total = hn::Add(total, weight);
  }
  sum = sum * rescale + hn::GetLane(hn::SumOfLanes(tag, total));
  max = new_max;
  if (rescale != 1.0f) {
    const FloatVector factor = hn::Set(tag, rescale);
    for (std::size_t i = 0; i < HeadDim; i += lanes)
      hn::StoreU(hn::Mul(hn::LoadU(tag, accumulators + i), factor), tag, accumulators + i);
  }
}

template <class T, int HeadDim>
HWY_INLINE void attention_tile_typed(const AttentionTileCall& call) {
  const T* const keys = static_cast<const T*>(call.keys);
  const T* const values = static_cast<const T*>(call.values);
  HWY_ALIGN ChunkRow scores[max_attention_rows];
  int seen[max_attention_rows];
  for (int first = call.begin; first < call.end; first += attention_chunk) {
    const int count = std::min(attention_chunk, call.end - first);
    for (int r = 0; r < call.rows; ++r) seen[r] = std::clamp(call.visible[r] - first, 0, count);
    // The key or value rows a group of rows needs: up to its last seen one.
    const auto group_count = [&](int r0, int R) { return *std::max_element(seen + r0, seen + r0 + R); };
    const std::size_t offset = static_cast<std::size_t>(first) * HeadDim;

    for_each_row_group(call.rows, [&]<int R>(int r0) {
      const int needed = group_count(r0, R);
      if (needed > 0) group_scores<T, HeadDim, R>(call.queries + r0 * HeadDim, keys + offset, needed, scores + r0);
    });
    for (int r = 0; r < call.rows; ++r) {
      if (seen[r] == 0) std::fill(scores[r], scores[r] + attention_chunk, 0.0f);
      else softmax_chunk<HeadDim>(scores[r], seen[r], call.max[r], call.sum[r], call.accumulators + r * HeadDim);
    }
    for_each_row_group(call.rows, [&]<int R>(int r0) {
      const int needed = group_count(r0, R);
      if (needed > 0) group_values<T, HeadDim, R>(scores + r0, values + offset, needed, call.accumulators + r0 * HeadDim);
    });
  }
}

// The exported entry: picks the element type and head size of the call.
inline void AttentionTile(const AttentionTileCall& call) {
  const auto with_head_dim = [&]<class T>() {
    if (call.head_dim == 64) attention_tile_typed<T, 64>(call);
    else attention_tile_typed<T, 128>(call);
  };
  switch (call.dtype) {
    case DType::float32: with_head_dim.template operator()<float>(); break;
    case DType::float16: with_head_dim.template operator()<half_t>(); break;
    case DType::bfloat16: with_head_dim.template operator()<bfloat16_t>(); break;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace elastic::host::simd
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
