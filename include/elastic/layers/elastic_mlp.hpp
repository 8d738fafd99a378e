// Elastic SwiGLU MLP (Llama's down(silu(gate(x)) * up(x))) with Flextron's
// nested widths. The weights are stored once at full width with neurons in
// importance order; a forward at width k uses the first k neurons: the first
// k rows of gate and up and the first k columns of down. Widths come from the
// compile-time set; any token count works. The intermediate activation lives
// in the caller's workspace (see workspace_bytes), so a forward allocates
// nothing and may be captured in a CUDA graph on the CUDA executor.
//
// add_to_rows() is the form a route group runs: it reads the group's tokens
// from the batch by index and adds their outputs into the residual rows
// (executor primitives gather_swiglu and linear_scatter_add), so the group
// is never copied out and back. add_to_group() does the same for a route
// group whose size only the executor's memory holds.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>

#include "elastic/core/checks.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/quantized_checks.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/routing_checks.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/widths.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/layers/width_checks.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic {

// The three projections of a SwiGLU MLP. gate, up: [intermediate x hidden];
// down: [hidden x intermediate] (PyTorch nn.Linear layout: [out x in]).
// W is the weights' view: ConstMatrixView<T>, or QuantizedMatrixView for
// GGUF blocks on an executor that computes on them (the host's).
template <ElementType T, class W = ConstMatrixView<T>>
struct MLPWeights {
  W gate;
  W up;
  W down;
};

template <ElementType T, WidthSet WidthsT, class W = ConstMatrixView<T>>
class ElasticMLP {
 public:
  using element_type = T;
  using widths = WidthsT;

  using Weights = MLPWeights<T, W>;

  explicit ElasticMLP(const Weights& weights) : weights_(weights) {
    constexpr auto op = "ElasticMLP";
    detail::check_shape(weights.up, weights.gate.rows(), weights.gate.cols(), op, "up weight");
    detail::check_shape(weights.down, weights.gate.cols(), weights.gate.rows(), op, "down weight");
    detail::check_view(weights.gate, op, "gate weight");
    detail::check_view(weights.up, op, "up weight");
    detail::check_view(weights.down, op, "down weight");
    detail::check_reduction_length<T>(hidden(), op);
    detail::check_width_set<WidthsT, T>(intermediate(), "ElasticMLP width");
  }

  index_t hidden() const { return weights_.gate.cols(); }
  index_t intermediate() const { return weights_.gate.rows(); }

  // The full-width weights, and the views a forward at this width reads
  // (slices, not copies).
  const Weights& weights() const { return weights_; }
  Weights weights_at(int width) const {
    return {weights_.gate.first_rows(width), weights_.up.first_rows(width),
            weights_.down.first_cols(width)};
  }

  // Bytes of workspace a forward over `tokens` tokens needs at any width.
  template <ExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor, index_t tokens) const {
    WorkspaceCursor cursor;
    carve(cursor, executor, tokens, static_cast<int>(intermediate()));
    return cursor.bytes_used();
  }

  // y = down_k(silu(gate_k(x)) * up_k(x)) with x, y: [tokens x hidden]. y may
  // be x itself (in-place); neither y nor the workspace may otherwise overlap
  // x or the layer's weights.
  template <ExecutorFor<T> E>
  void forward(E& executor, int width, MatrixView<T> y, ConstMatrixView<T> x,
               Workspace workspace) const {
    constexpr auto op = "ElasticMLP::forward";
    detail::check_width<WidthsT, T>(width, intermediate(), "ElasticMLP width");
    detail::check_shape(x, x.rows(), hidden(), op, "input x");
    detail::check_shape(y, x.rows(), hidden(), op, "output y");
    WorkspaceCursor cursor(workspace);
    const Buffers buffers = carve(cursor, executor, x.rows(), width);
    const Weights sliced = weights_at(width);
    const std::array written{detail::region("output y", y).allow_in_place_of("input x"),
                             detail::region("workspace", workspace, cursor.bytes_used())};
    detail::check_disjoint(op, written, weight_regions(x));
    WidthsT::dispatch(width, [&]<int Width>() {
      executor.swiglu(buffers.activation, x, sliced.gate, sliced.up, buffers.scratch);
      executor.linear(y, ConstMatrixView<T>(buffers.activation), sliced.down, buffers.scratch,
                      Extent<Width>{});
    });
  }

  // Bytes of workspace add_to_rows over `rows` rows needs at any width.
  template <RoutingExecutorFor<T> E>
  std::size_t add_to_rows_workspace_bytes(const E& executor, index_t rows) const {
    WorkspaceCursor cursor;
    carve_add_to_rows(cursor, executor, rows, static_cast<int>(intermediate()));
    return cursor.bytes_used();
  }

  // residual[indices[i]] += down_k(silu(gate_k(x[indices[i]])) * up_k(x[indices[i]]))
  // for i < rows, with residual, x: [tokens x hidden] and `rows` distinct
  // indices in executor memory. The sum is rounded once, from the float32
  // projection. residual may not overlap x.
  template <RoutingExecutorFor<T> E>
  void add_to_rows(E& executor, int width, MatrixView<T> residual, ConstMatrixView<T> x, const int* indices,
                   index_t rows, Workspace workspace) const {
    add_to_selected_rows(executor, width, residual, x, indices, rows, workspace, "ElasticMLP::add_to_rows");
  }

  // As add_to_rows for the tokens of a route group, whose size the executor
  // reads from its own memory (at most max_rows <= E::group_max_rows), so the
  // host never waits for it. Workspace: add_to_rows_workspace_bytes(max_rows).
  template <RoutingExecutorFor<T> E>
  void add_to_group(E& executor, int width, MatrixView<T> residual, ConstMatrixView<T> x, const RouteGroup& group,
                    index_t max_rows, Workspace workspace) const {
    add_to_selected_rows(executor, width, residual, x, group, max_rows, workspace, "ElasticMLP::add_to_group");
  }

 private:
  struct Buffers {
    MatrixView<T> activation;  // [tokens x width]
    Workspace scratch;         // for the executor's primitives
  };

  // What a call reads: x, the layer's weights and, for add_to_rows, its rows.
  std::array<detail::Region, 5> weight_regions(const ConstMatrixView<T>& x, detail::Region rows = {}) const {
    return {detail::region("input x", x), detail::region("gate weight", weights_.gate),
            detail::region("up weight", weights_.up), detail::region("down weight", weights_.down), rows};
  }

  static detail::Region rows_region(const int* indices, index_t rows) {
    return detail::region("row indices", indices, rows);
  }
  static detail::Region rows_region(const RouteGroup& group, index_t /*max_rows*/) {
    return detail::region("route group's permutation", group.permutation, group.plan_tokens);
  }

  // Rows: the indices (const int*) or a RouteGroup, as the primitives take them.
  template <class E, class Rows>
  void add_to_selected_rows(E& executor, int width, MatrixView<T> residual, ConstMatrixView<T> x, const Rows& rows,
                            index_t max_rows, Workspace workspace, const char* op) const {
    detail::check_width<WidthsT, T>(width, intermediate(), "ElasticMLP width");
    detail::check_shape(x, x.rows(), hidden(), op, "input x");
    detail::check_shape(residual, x.rows(), hidden(), op, "residual");
    require(max_rows >= 0 && max_rows <= x.rows(), op, ": ", max_rows, " rows requested from a batch of ", x.rows());
    WorkspaceCursor cursor(workspace);
    const Buffers buffers = carve_add_to_rows(cursor, executor, max_rows, width);
    const Weights sliced = weights_at(width);
    const std::array written{detail::region("residual", residual),
                             detail::region("workspace", workspace, cursor.bytes_used())};
    detail::check_disjoint(op, written, weight_regions(x, rows_region(rows, max_rows)));
    WidthsT::dispatch(width, [&]<int Width>() {
      executor.gather_swiglu(buffers.activation, x, rows, sliced.gate, sliced.up, buffers.scratch);
      executor.linear_scatter_add(residual, ConstMatrixView<T>(buffers.activation), sliced.down, rows,
                                  buffers.scratch, Extent<Width>{});
    });
  }

  template <class E>
  Buffers carve(WorkspaceCursor& cursor, const E& executor, index_t tokens, int width) const {
    return carve_buffers(cursor, tokens, width,
                         std::max(executor.template swiglu_workspace_bytes<T>(tokens, width, hidden()),
                                  executor.template linear_workspace_bytes<T>(tokens, hidden(), width)));
  }

  template <class E>
  Buffers carve_add_to_rows(WorkspaceCursor& cursor, const E& executor, index_t rows, int width) const {
    return carve_buffers(
        cursor, rows, width,
        std::max(executor.template gather_swiglu_workspace_bytes<T>(rows, width, hidden()),
                 executor.template linear_scatter_add_workspace_bytes<T>(rows, hidden(), width)));
  }

  // The [tokens x width] activation (rows padded to whole 16-byte vectors),
  // then the primitives' scratch.
  Buffers carve_buffers(WorkspaceCursor& cursor, index_t tokens, int width, std::size_t scratch_bytes) const {
    const MatrixView<T> activation = cursor.take_matrix<T>(tokens, width);
    return {activation, cursor.take_workspace(scratch_bytes)};
  }

  Weights weights_;
};

}  // namespace elastic
