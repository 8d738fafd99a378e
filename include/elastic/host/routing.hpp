// The host executor's routing "kernels": route decisions (argmax, threshold,
// top-k capacity), the counting sort behind a route plan, row gather and
// scatter-add, RMSNorm, ReLU and the residual-contribution probe. Each checks
// every index it is given before it writes anything.
#pragma once

#include <algorithm>
#include <numeric>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/host/thread_pool.hpp"
#include "elastic/math/routing.hpp"
#include "elastic/math/row_ops.hpp"

namespace elastic::host::kernels {

template <class T>
void decide_routes(int* choices, ConstMatrixView<T> logits, const RouteRule& rule) {
  const int tokens = static_cast<int>(logits.rows());
  const int count = static_cast<int>(logits.cols());
  if (rule.mode != RouteRule::Mode::capacity) {
    for (int t = 0; t < tokens; ++t)
      choices[t] = math::route_choice(logits.row(t), count, rule.mode, rule.skip_choice, rule.threshold);
    return;
  }
  std::vector<int> order(static_cast<std::size_t>(tokens));
  std::iota(order.begin(), order.end(), 0);
  auto score = [&](int t) { return to_float(logits(t, rule.target)); };
  std::nth_element(order.begin(), order.begin() + rule.capacity, order.end(),
                   [&](int a, int b) { return math::ranks_before(score(a), a, score(b), b); });
  for (int t = 0; t < tokens; ++t) choices[t] = rule.fallback;
  for (int i = 0; i < rule.capacity; ++i) choices[order[static_cast<std::size_t>(i)]] = rule.target;
}

inline void plan_routes(const RoutePlan& plan, const int* choices) {
  for (int t = 0; t < plan.tokens; ++t)
    require(choices[t] >= 0 && choices[t] < plan.choices, "plan_routes: token ", t, " chose ", choices[t],
            ", expected 0 <= choice < ", plan.choices);
  std::fill(plan.counts, plan.counts + plan.choices, 0);
  for (int t = 0; t < plan.tokens; ++t) ++plan.counts[choices[t]];
  plan.offsets[0] = 0;
  for (int c = 0; c < plan.choices; ++c) plan.offsets[c + 1] = plan.offsets[c] + plan.counts[c];
  std::vector<int> next(plan.offsets, plan.offsets + plan.choices);
  for (int t = 0; t < plan.tokens; ++t) plan.permutation[next[static_cast<std::size_t>(choices[t])]++] = t;
}

inline void check_indices(const int* indices, index_t count, index_t rows, const char* op) {
  for (index_t i = 0; i < count; ++i)
    require(indices[i] >= 0 && indices[i] < rows, op, ": index ", i, " is ", indices[i], ", expected 0 <= index < ",
            rows);
}

// out[token, neuron] = value, or, with output_rows, out[output_rows[token],
// neuron] += value with one rounding of the sum: the store of the row-dot
// loops, plain or scatter-add.
template <class T>
void store_row_dot(MatrixView<T>& out, index_t token, index_t neuron, float value, const int* output_rows) {
  if (output_rows == nullptr) {
    out(token, neuron) = from_float<T>(value);
  } else {
    T& target = out(output_rows[token], neuron);
    target = from_float<T>(to_float(target) + value);
  }
}

template <class T>
void gather_rows(ThreadPool& pool, MatrixView<T> dst, ConstMatrixView<T> src, const int* indices) {
  check_indices(indices, dst.rows(), src.rows(), "gather_rows");
  pool.parallel_for(0, dst.rows(), 64, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) std::copy_n(src.row(indices[i]), src.cols(), dst.row(i));
  });
}

template <class T>
void scatter_add_rows(ThreadPool& pool, MatrixView<T> dst, ConstMatrixView<T> src, const int* indices) {
  check_indices(indices, src.rows(), dst.rows(), "scatter_add_rows");
  pool.parallel_for(0, src.rows(), 64, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) {
      T* out = dst.row(indices[i]);
      for (index_t c = 0; c < src.cols(); ++c) out[c] = from_float<T>(to_float(out[c]) + to_float(src(i, c)));
    }
  });
}

template <class T>
void rms_norm(ThreadPool& pool, MatrixView<T> y, ConstMatrixView<T> x, ConstMatrixView<T> weight, float epsilon) {
  pool.parallel_for(0, x.rows(), 16, [&](index_t lo, index_t hi) {
    const int cols = static_cast<int>(x.cols());
    for (index_t t = lo; t < hi; ++t) {  // the CUDA kernel's lane functions, as one lane
      const float sum = math::sum_of_squares_lane(x.row(t), cols, 0, 1);
      math::scale_row_lane(y.row(t), x.row(t), weight.data(), math::rms_scale(sum, cols, epsilon), cols, 0, 1);
    }
  });
}

template <class T>
void contribution_ratios(float* ratios, ConstMatrixView<T> block, ConstMatrixView<T> residual) {
  for (index_t t = 0; t < block.rows(); ++t) {
    float block_sum = 0.0f, output_sum = 0.0f;
    for (index_t c = 0; c < block.cols(); ++c) {
      const float f = to_float(block(t, c));
      const float out = to_float(residual(t, c)) + f;
      block_sum += f * f;
      output_sum += out * out;
    }
    ratios[t] = math::contribution_ratio(block_sum, output_sum);
  }
}

}  // namespace elastic::host::kernels
