// What one call of the host's vector attention kernel (attention_tile.hpp)
// computes: for up to 16 query rows that read the same KV head of one cache
// slot (the query heads of a GQA group, for one or several tokens), one pass
// over the key and value rows of positions [begin, end), continuing each
// row's online softmax (math/online_softmax.hpp):
//
//   scores    s_r,p = q_r . k_p            for p in [begin, min(end, visible_r))
//   state     max_r, sum_r, acc_r          updated as if each score were pushed in turn
//
// where acc_r holds sum_p exp(s_r,p - max_r) v_p (not yet divided by sum_r).
// Positions at or past visible_r are masked (causal). A row whose state has
// seen no score holds max -inf, sum 0 and zero accumulators; rows may start
// there, and a call that gives a row no visible position leaves it unchanged.
#pragma once

#include "elastic/core/dtype.hpp"

namespace elastic::host::simd {

// Query rows per call: the pass over a K/V row serves every one of them.
inline constexpr int max_attention_rows = 16;

// Key positions per online-softmax step of the kernel.
inline constexpr int attention_chunk = 64;

struct AttentionTileCall {
  DType dtype;           // of the keys and values
  int head_dim;          // 64 or 128
  const void* keys;      // key row of position 0; rows are head_dim elements apart
  const void* values;    // value row of position 0
  int begin;             // first position of the pass
  int end;               // one past the last
  int rows;              // 1 .. max_attention_rows
  const float* queries;  // [rows][head_dim], rotated and multiplied by the softmax scale
  const int* visible;    // [rows]: row r sees positions below visible[r]
  float* max;            // [rows] running maxima, updated
  float* sum;            // [rows] running sums of exp(score - max), updated
  float* accumulators;   // [rows][head_dim] running weighted values, updated
};

}  // namespace elastic::host::simd
