// Per-token routing maths shared by both executors: the choice a row of
// router logits makes under a RouteRule (argmax, or a skip threshold), the
// order of the capacity rule's top-k, RMSNorm's scale and the residual
// contribution of a block (Radial Networks' profiling signal).
#pragma once

#include <cmath>

#include "elastic/core/dtype.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/core/route_plan.hpp"

namespace elastic::math {

// argmax over logits[0, choices) skipping `excluded` (-1: none); the lowest
// index wins ties.
template <class T>
ELASTIC_HOST_DEVICE inline int argmax_logit(const T* logits, int choices, int excluded = -1) {
  int best = -1;
  float best_value = 0.0f;
  for (int c = 0; c < choices; ++c) {
    if (c == excluded) continue;
    const float value = to_float(logits[c]);
    if (best < 0 || value > best_value) {
      best = c;
      best_value = value;
    }
  }
  return best;
}

// The choice of one token under an argmax or threshold rule.
template <class T>
ELASTIC_HOST_DEVICE inline int route_choice(const T* logits, int choices, RouteRule::Mode mode, int skip_choice,
                                            float threshold) {
  if (mode == RouteRule::Mode::threshold) {
    if (to_float(logits[skip_choice]) >= threshold) return skip_choice;
    return argmax_logit(logits, choices, skip_choice);
  }
  return argmax_logit(logits, choices);
}

// The capacity rule's order: token a ranks before token b when its score is
// higher, or equal with a lower index.
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE bool ranks_before(float score_a, int token_a, float score_b, int token_b) {
  return score_a > score_b || (score_a == score_b && token_a < token_b);
}

// RMSNorm: y = x * weight / sqrt(mean(x^2) + epsilon); this is the factor
// 1 / sqrt(sum_of_squares / count + epsilon), with IEEE square root and
// division on both executors (not the approximate rsqrtf), so host and
// device differ only in the order the sum of squares is added up.
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float rms_scale(float sum_of_squares, int count, float epsilon) {
  return 1.0f / sqrtf(sum_of_squares / static_cast<float>(count) + epsilon);
}

// ||f|| / ||x + f|| from the sums of f^2 and (x + f)^2 over a row: the share
// of a layer's output its block contributes (0 when the output is zero).
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float contribution_ratio(float block_sum_of_squares,
                                                                float output_sum_of_squares) {
  if (output_sum_of_squares <= 0.0f) return 0.0f;
  return sqrtf(block_sum_of_squares / output_sum_of_squares);
}

}  // namespace elastic::math
