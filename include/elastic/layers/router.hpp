// A token router: logits over `Choices` choices from a token's hidden state,
// then a per-token choice under a RouteRule (argmax, skip threshold, or top-k
// capacity). The router is a linear map or a 2-layer MLP (ReLU between),
// optionally after RMSNorm of the input: Flextron's dynamic width router,
// Radial Networks' layer router and Mixture-of-Depths' capacity router are
// all this shape. The logits are stored in T with their row stride padded to
// 16 bytes (see logits_stride).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>

#include "elastic/core/checks.hpp"
#include "elastic/core/counts.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic {

// norm: [1 x hidden] RMSNorm weight, or empty for no norm; hidden: [r x hidden]
// for a 2-layer router, or empty for a linear one; output: [Choices x in]
// with in = r or hidden.
template <ElementType T>
struct RouterWeights {
  ConstMatrixView<T> norm;
  ConstMatrixView<T> hidden;
  ConstMatrixView<T> output;
};

template <ElementType T, int Choices>
class Router {
 public:
  static_assert(Choices >= 2, "a router chooses between at least 2 options");
  static constexpr int choices = Choices;
  // Row stride of the logits: Choices rounded up to whole 16-byte vectors.
  static constexpr index_t logits_stride =
      (Choices + math::vector_width<T> - 1) / math::vector_width<T> * math::vector_width<T>;

  explicit Router(const RouterWeights<T>& weights, float epsilon = 1e-5f) : weights_(weights), epsilon_(epsilon) {
    constexpr auto op = "Router";
    const index_t in = weights.hidden.empty() ? hidden() : weights.hidden.rows();
    detail::check_shape(weights.output, Choices, in, op, "output weight");
    if (!weights.norm.empty()) detail::check_shape(weights.norm, 1, hidden(), op, "norm weight");
    if (!weights.hidden.empty()) detail::check_reduction_length<T>(weights.hidden.cols(), op);
    detail::check_reduction_length<T>(in, op);
    require(hidden() > 0, op, ": the router needs its input width (give a norm or hidden weight, or an output weight)");
    require(std::isfinite(epsilon) && epsilon >= 0.0f, op, ": epsilon must be finite and non-negative, found ", epsilon);
  }

  index_t hidden() const {
    if (!weights_.hidden.empty()) return weights_.hidden.cols();
    if (!weights_.norm.empty()) return weights_.norm.cols();
    return weights_.output.cols();
  }

  template <ExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor, index_t tokens) const {
    WorkspaceCursor cursor;
    carve(cursor, executor, tokens);
    return cursor.bytes_used();
  }

  // logits: [tokens x Choices] with row stride logits_stride; x: [tokens x hidden].
  template <ExecutorFor<T> E>
  void logits(E& executor, MatrixView<T> logits, ConstMatrixView<T> x, Workspace workspace) const {
    constexpr auto op = "Router::logits";
    detail::check_shape(x, x.rows(), hidden(), op, "input x");
    detail::check_shape(logits, x.rows(), Choices, op, "logits");
    WorkspaceCursor cursor(workspace);
    const Buffers buffers = carve(cursor, executor, x.rows());
    const std::array written{detail::region("logits", logits),
                             detail::region("workspace", workspace, cursor.bytes_used())};
    detail::check_disjoint(op, written, read_regions(x));
    ConstMatrixView<T> input = x;
    if (!weights_.norm.empty()) {
      executor.rms_norm(buffers.normed, x, weights_.norm, epsilon_);
      input = buffers.normed;
    }
    if (!weights_.hidden.empty()) {
      executor.linear(buffers.hidden, input, weights_.hidden, buffers.scratch);
      executor.relu_in_place(buffers.hidden);
      input = buffers.hidden;
    }
    executor.linear(logits, input, weights_.output, buffers.scratch);
  }

  // choices[t] for every token of x under `rule` (choices: [tokens] in the
  // executor's memory); the logits live in the workspace.
  template <ExecutorFor<T> E>
  void route(E& executor, int* choices, ConstMatrixView<T> x, const RouteRule& rule, Workspace workspace) const {
    constexpr auto op = "Router::route";
    detail::check_shape(x, x.rows(), hidden(), op, "input x");
    rule.validate(Choices, detail::narrow_to_int(x.rows(), op, "the token count"));
    require(choices != nullptr || x.rows() == 0, op, ": the choices output is a null pointer");
    WorkspaceCursor cursor(workspace);
    const RouteBuffers buffers = carve_route(cursor, executor, x.rows());
    const std::array written{detail::region("choices output", choices, x.rows()),
                             detail::region("workspace", workspace, cursor.bytes_used())};
    detail::check_disjoint(op, written, read_regions(x));
    logits(executor, buffers.logits, x, buffers.rest);
    executor.decide_routes(choices, ConstMatrixView<T>(buffers.logits), rule, buffers.rest);
  }

  // Workspace for route(): the logits plus logits()'s own.
  template <ExecutorFor<T> E>
  std::size_t route_workspace_bytes(const E& executor, index_t tokens) const {
    WorkspaceCursor cursor;
    carve_route(cursor, executor, tokens);
    return cursor.bytes_used();
  }

 private:
  struct Buffers {
    MatrixView<T> normed;
    MatrixView<T> hidden;
    Workspace scratch;
  };

  struct RouteBuffers {
    MatrixView<T> logits;  // [tokens x Choices], row stride logits_stride
    Workspace rest;        // logits()'s and decide_routes' workspace
  };

  // What a call reads: the input and the router's weights.
  std::array<detail::Region, 4> read_regions(const ConstMatrixView<T>& x) const {
    return {detail::region("input x", x), detail::region("norm weight", weights_.norm),
            detail::region("hidden weight", weights_.hidden), detail::region("output weight", weights_.output)};
  }

  template <class E>
  Buffers carve(WorkspaceCursor& cursor, const E& executor, index_t tokens) const {
    Buffers buffers;
    if (!weights_.norm.empty()) buffers.normed = cursor.take_matrix<T>(tokens, hidden());
    if (!weights_.hidden.empty()) buffers.hidden = cursor.take_matrix<T>(tokens, weights_.hidden.rows());
    const std::size_t scratch = executor.template linear_workspace_bytes<T>(tokens, weights_.output.cols(), hidden());
    buffers.scratch = cursor.take_workspace(scratch);
    return buffers;
  }

  template <class E>
  RouteBuffers carve_route(WorkspaceCursor& cursor, const E& executor, index_t tokens) const {
    const MatrixView<T> logits = cursor.take_matrix<T>(tokens, Choices);
    const std::size_t rest =
        std::max(workspace_bytes(executor, tokens), executor.template decide_routes_workspace_bytes<T>(tokens, Choices));
    return {logits, cursor.take_workspace(rest)};
  }

  RouterWeights<T> weights_;
  float epsilon_;
};

}  // namespace elastic
