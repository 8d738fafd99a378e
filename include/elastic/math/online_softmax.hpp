// Online (streaming) softmax, the core of flash attention and flash decoding.
//
// A SoftmaxState summarises a block of scores s_j by their running maximum m
// and the sum l = sum_j exp(s_j - m); the block's weighted values are kept
// scaled by exp(-m). Two blocks merge exactly by rescaling both to the larger
// maximum, so the key/value sequence can be cut into blocks (per thread, per
// warp, per split of the sequence across thread blocks) and combined in any
// grouping. The host executor and the CUDA kernels share these functions.
#pragma once

#include <cmath>

#include "elastic/core/macros.hpp"

namespace elastic::math {

struct SoftmaxState {
  float max = -INFINITY;
  float sum = 0.0f;
};

ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float softmax_exp(float x) {
#if ELASTIC_DEVICE_PASS
  return __expf(x);
#else
  return std::exp(x);
#endif
}

// Adds score s to the state. Returns (through the arguments) the factor the
// accumulated values must be multiplied by and the weight of s's value.
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void softmax_push(SoftmaxState& state, float score, float& rescale,
                                                         float& weight) {
  const float new_max = score > state.max ? score : state.max;
  if (new_max == -INFINITY) {  // only -inf scores so far (masked): nothing to add, exp(-inf - -inf) is NaN
    rescale = 1.0f;
    weight = 0.0f;
    return;
  }
  rescale = softmax_exp(state.max - new_max);  // exp(-inf) = 0 on the first finite score
  weight = softmax_exp(score - new_max);
  state.sum = state.sum * rescale + weight;
  state.max = new_max;
}

// Merges state b into a. Returns the factors for a's and b's accumulated
// values: merged = acc_a * scale_a + acc_b * scale_b.
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void softmax_merge(SoftmaxState& a, const SoftmaxState& b, float& scale_a,
                                                          float& scale_b) {
  const float new_max = a.max > b.max ? a.max : b.max;
  if (new_max == -INFINITY) {  // both empty
    scale_a = 0.0f;
    scale_b = 0.0f;
    return;
  }
  scale_a = softmax_exp(a.max - new_max);
  scale_b = softmax_exp(b.max - new_max);
  a.sum = a.sum * scale_a + b.sum * scale_b;
  a.max = new_max;
}

}  // namespace elastic::math
