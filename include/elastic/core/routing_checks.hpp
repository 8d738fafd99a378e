// Argument checks of the routing primitives, shared by both executors so they
// accept and reject the same calls (before anything is written):
//
//   decide_routes(choices, logits, rule, ws)        per-token choices from router logits
//   plan_routes(plan, choices, ws)                  counts, offsets, stable permutation
//   read_route_counts(plan, counts)                 the plan's counts, on the host
//   load_indices(destination, host_indices)         host indices into executor memory
//   gather_rows(dst, src, indices)                  dst[i] = src[indices[i]]
//   scatter_add_rows(dst, src, indices)             dst[indices[i]] += src[i]
//   gather_swiglu(h, x, indices, gate, up, ws)      h[i] = swiglu(x[indices[i]])      (i < h.rows())
//   linear_scatter_add(y, x, w, indices, ws [, Extent<L>])
//                                                   y[indices[i]] += x[i] . w^T      (i < x.rows())
//
// gather_swiglu and linear_scatter_add are the two halves of a route group's
// MLP with the gather and the scatter-add folded into the projections, so a
// group's tokens are read in place and its results added straight into the
// residual (rounded once, from the float32 dot products). Each also takes a
// RouteGroup in place of the indices: then the group's size is read by the
// executor (i < *group.count, at most h.rows() / x.rows() and at most the
// executor's group_max_rows), rows past it are left as they were.
//   rms_norm(y, x, weight, epsilon)                 y = x * weight / rms(x)
//   relu_in_place(x)                                x = max(x, 0)
//   contribution_ratios(ratios, block, residual)    ratios[t] = |f| / |x + f| per row
#pragma once

#include <cstddef>
#include <string_view>

#include "elastic/core/checks.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic::detail {

template <class T>
void check_rows_op(const MatrixView<T>& dst, const ConstMatrixView<T>& src, const void* indices,
                   std::string_view op) {
  require(dst.cols() == src.cols(), op, ": destination has ", dst.cols(), " columns but the source has ",
          src.cols(), " (expected equal)");
  require(indices != nullptr || (dst.rows() == 0 && src.rows() == 0) || dst.empty(), op,
          ": the row indices are a null pointer");
  check_view(dst, op, "destination");
  check_view(src, op, "source");
  check_disjoint(dst, src, op, "source");
}

template <class T>
void check_gather_swiglu(const MatrixView<T>& h, const ConstMatrixView<T>& x, const int* indices,
                         const ConstMatrixView<T>& gate, const ConstMatrixView<T>& up) {
  constexpr std::string_view op = "gather_swiglu";
  require(indices != nullptr || h.rows() == 0, op, ": the row indices are a null pointer");
  check_swiglu_operands(h, x, gate, up, op, h.rows());
}

template <class T>
void check_linear_scatter_add(const MatrixView<T>& y, const ConstMatrixView<T>& x, const ConstMatrixView<T>& w,
                              const int* indices, int static_length) {
  constexpr std::string_view op = "linear_scatter_add";
  require(indices != nullptr || x.rows() == 0, op, ": the row indices are a null pointer");
  check_linear_operands(y, x, w, static_length, op, y.rows());
}

// A group's rows bound (h.rows() or x.rows()) against the executor's limit.
inline void check_route_group(const RouteGroup& group, index_t max_rows, index_t executor_limit,
                              std::string_view op) {
  require(max_rows <= executor_limit, op, ": a route group of up to ", max_rows,
          " rows exceeds this executor's limit of ", executor_limit, " rows for groups sized in its memory");
  require(max_rows == 0 || (group.permutation != nullptr && group.first != nullptr && group.count != nullptr), op,
          ": the route group has null arrays");
}

template <class T>
void check_decide_routes(const int* choices, const ConstMatrixView<T>& logits, const RouteRule& rule) {
  constexpr std::string_view op = "decide_routes";
  require(logits.cols() >= 1, op, ": logits need at least one choice column, found ", logits.cols());
  require(choices != nullptr || logits.rows() == 0, op, ": the choices output is a null pointer");
  require(logits.empty() || logits.data() != nullptr, op, ": the logits are a null pointer");
  rule.validate(static_cast<int>(logits.cols()), static_cast<int>(logits.rows()));
}

inline void check_load_indices(const int* destination, std::size_t count) {
  require(destination != nullptr || count == 0, "load_indices: the destination is a null pointer");
}

inline void check_plan_routes(const RoutePlan& plan, const int* choices) {
  require(plan.choices > 0 && plan.tokens >= 0, "plan_routes: the plan needs choices > 0 and tokens >= 0, found ",
          plan.choices, " and ", plan.tokens);
  require(plan.counts != nullptr && plan.offsets != nullptr && (plan.permutation != nullptr || plan.tokens == 0),
          "plan_routes: the plan has null arrays (carve it from memory first)");
  require(choices != nullptr || plan.tokens == 0, "plan_routes: the choices are a null pointer");
}

template <class T>
void check_rms_norm(const MatrixView<T>& y, const ConstMatrixView<T>& x, const ConstMatrixView<T>& weight) {
  constexpr std::string_view op = "rms_norm";
  check_shape(y, x.rows(), x.cols(), op, "output");
  check_shape(weight, 1, x.cols(), op, "weight");
  check_reduction_length<T>(x.cols(), op);
  check_view(y, op, "output");
  check_view(x, op, "input");
  check_view(weight, op, "weight");
  require(y.data() == x.data() || !overlaps(y, x), op, ": the output partly overlaps the input");
}

template <class T>
void check_contribution(const float* ratios, const ConstMatrixView<T>& block, const ConstMatrixView<T>& residual) {
  constexpr std::string_view op = "contribution_ratios";
  check_shape(residual, block.rows(), block.cols(), op, "residual");
  require(ratios != nullptr || block.rows() == 0, op, ": the ratios output is a null pointer");
  check_view(block, op, "block output");
  check_view(residual, op, "residual");
}

}  // namespace elastic::detail
