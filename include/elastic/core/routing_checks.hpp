// Argument checks of the routing primitives, shared by both executors so they
// accept and reject the same calls (before anything is written):
//
//   decide_routes(choices, logits, rule, ws)        per-token choices from router logits
//   plan_routes(plan, choices, ws)                  counts, offsets, stable permutation
//   read_route_counts(plan, counts)                 the plan's counts, on the host
//   check_route_counts(plan, counts, plan_ws, caller)
//                                                   group sizes a caller claims == the plan's
//                                                   (the host throws at once; CUDA checks on
//                                                   the device and read_route_counts throws)
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
//
// Outputs overlap nothing the call reads, index arrays and plans included.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>

#include "elastic/core/checks.hpp"
#include "elastic/core/counts.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/quantized_checks.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic::detail {

// dst, src and `index_count` row indices (dst.rows() to gather, src.rows()
// to scatter).
// Source: a ConstMatrixView<T>, or a QuantizedMatrixView for a gather.
template <class T, class Source>
void check_rows_op(const MatrixView<T>& dst, const Source& src, const int* indices, index_t index_count,
                   std::string_view op) {
  require(dst.cols() == src.cols(), op, ": destination has ", dst.cols(), " columns but the source has ",
          src.cols(), " (expected equal)");
  require(indices != nullptr || (dst.rows() == 0 && src.rows() == 0) || dst.empty(), op,
          ": the row indices are a null pointer");
  check_view(dst, op, "destination");
  check_view(src, op, "source");
  check_disjoint(op, {region("destination", dst)}, {region("source", src), region("row indices", indices, index_count)});
}

template <class T>
void check_gather_swiglu(const MatrixView<T>& h, const ConstMatrixView<T>& x, const int* indices,
                         const ConstMatrixView<T>& gate, const ConstMatrixView<T>& up) {
  constexpr std::string_view op = "gather_swiglu";
  require(indices != nullptr || h.rows() == 0, op, ": the row indices are a null pointer");
  check_swiglu_operands(h, x, gate, up, op, h.rows());
  check_disjoint(op, {region("output", h)}, {region("row indices", indices, h.rows())});
}

template <class T>
void check_linear_scatter_add(const MatrixView<T>& y, const ConstMatrixView<T>& x, const ConstMatrixView<T>& w,
                              const int* indices, int static_length) {
  constexpr std::string_view op = "linear_scatter_add";
  require(indices != nullptr || x.rows() == 0, op, ": the row indices are a null pointer");
  check_linear_operands(y, x, w, static_length, op, y.rows());
  check_disjoint(op, {region("output", y)}, {region("row indices", indices, x.rows())});
}

// A group's rows bound (h.rows() or x.rows()) against the executor's limit,
// and the group's arrays against the call's output.
template <class T>
void check_route_group(const RouteGroup& group, index_t max_rows, index_t executor_limit, const MatrixView<T>& output,
                       std::string_view op) {
  require(max_rows <= executor_limit, op, ": a route group of up to ", max_rows,
          " rows exceeds this executor's limit of ", executor_limit, " rows for groups sized in its memory");
  require(max_rows == 0 || (group.permutation != nullptr && group.first != nullptr && group.count != nullptr), op,
          ": the route group has null arrays");
  require(group.plan_tokens >= 0, op, ": the route group's plan has ", group.plan_tokens, " tokens");
  check_disjoint(op, {region("output", output)},
                 {region("route group's permutation", group.permutation, group.plan_tokens),
                  region("route group's offset", group.first, 1), region("route group's count", group.count, 1)});
}

template <class T>
void check_decide_routes(int* choices, const ConstMatrixView<T>& logits, const RouteRule& rule) {
  constexpr std::string_view op = "decide_routes";
  require(logits.cols() >= 1, op, ": logits need at least one choice column, found ", logits.cols());
  require(choices != nullptr || logits.rows() == 0, op, ": the choices output is a null pointer");
  require(logits.empty() || logits.data() != nullptr, op, ": the logits are a null pointer");
  rule.validate(narrow_to_int(logits.cols(), op, "the number of choices"),
                narrow_to_int(logits.rows(), op, "the token count"));
  check_disjoint(op, {region("choices output", choices, logits.rows())}, {region("logits", logits)});
}

inline void check_load_indices(int* destination, std::span<const int> indices) {
  constexpr std::string_view op = "load_indices";
  require(destination != nullptr || indices.empty(), op, ": the destination is a null pointer");
  const auto count = static_cast<index_t>(indices.size());
  check_disjoint(op, {region("destination", destination, count)}, {region("host indices", indices.data(), count)});
}

inline void check_plan_routes(const RoutePlan& plan, const int* choices) {
  constexpr std::string_view op = "plan_routes";
  require(plan.choices > 0 && plan.tokens >= 0, op, ": the plan needs choices > 0 and tokens >= 0, found ",
          plan.choices, " and ", plan.tokens);
  require(plan.counts != nullptr && plan.offsets != nullptr && (plan.permutation != nullptr || plan.tokens == 0),
          op, ": the plan has null arrays (carve it from memory first)");
  require(choices != nullptr || plan.tokens == 0, op, ": the choices are a null pointer");
  check_disjoint(op,
                 {region("plan's counts", plan.counts, plan.choices),
                  region("plan's offsets", plan.offsets, index_t{plan.choices} + 1),
                  region("plan's permutation", plan.permutation, plan.tokens)},
                 {region("choices", choices, plan.tokens)});
}

// The shape of a claim about a plan's group sizes (their values are checked
// against the plan by the executor).
inline void check_claimed_counts(const RoutePlan& plan, std::span<const int> counts, std::string_view caller) {
  require(counts.size() == static_cast<std::size_t>(plan.choices), caller, ": ", counts.size(),
          " group sizes given for ", plan.choices, " choices");
  index_t total = 0;
  for (std::size_t c = 0; c < counts.size(); ++c) {
    require(counts[c] >= 0, caller, ": group sizes must be non-negative, found ", counts[c], " for choice ", c);
    total += counts[c];
  }
  require(total == plan.tokens, caller, ": group sizes add up to ", total, " but the batch has ", plan.tokens,
          " tokens");
}

template <class T>
void check_rms_norm(const MatrixView<T>& y, const ConstMatrixView<T>& x, const ConstMatrixView<T>& weight,
                    float epsilon) {
  constexpr std::string_view op = "rms_norm";
  require(std::isfinite(epsilon) && epsilon >= 0.0f, op, ": epsilon must be finite and non-negative, found ", epsilon);
  check_shape(y, x.rows(), x.cols(), op, "output");
  check_shape(weight, 1, x.cols(), op, "weight");
  check_reduction_length<T>(x.cols(), op);
  check_weight_extents(weight, op, "weight");
  check_view(y, op, "output");
  check_view(x, op, "input");
  check_view(weight, op, "weight");
  require(y.data() != x.data() || y.row_stride() == x.row_stride(), op,
          ": an in-place output must have the input's row stride, found ", y.row_stride(), " and ", x.row_stride());
  check_disjoint(op, {region("output", y).allow_in_place_of("input")}, {region("input", x), region("weight", weight)});
}

template <class T>
void check_contribution(float* ratios, const ConstMatrixView<T>& block, const ConstMatrixView<T>& residual) {
  constexpr std::string_view op = "contribution_ratios";
  check_shape(residual, block.rows(), block.cols(), op, "residual");
  require(ratios != nullptr || block.rows() == 0, op, ": the ratios output is a null pointer");
  check_view(block, op, "block output");
  check_view(residual, op, "residual");
  check_disjoint(op, {region("ratios output", ratios, block.rows())},
                 {region("block output", block), region("residual", residual)});
}

}  // namespace elastic::detail
