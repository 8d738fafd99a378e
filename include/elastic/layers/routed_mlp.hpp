// Token-routed elastic MLP: each token runs the MLP at the width its choice
// maps to, or skips it (width 0: the residual passes through unchanged).
// Tokens are grouped by a route plan and each group runs as one dense
// ElasticMLP call at its width, reading its tokens by index and adding its
// results into their residual rows (ElasticMLP::add_to_rows: the gather and
// the scatter-add are folded into the projections):
//
//   residual[t] += MLP_{width(choice[t])}(input[t])     (nothing for a skip)
//
// forward() reads the group sizes back to the host to size the dense calls
// (on the CUDA executor that synchronises the stream once per layer);
// forward_with_counts() takes them from the caller instead — with the
// capacity rule they are known in advance (capacity for the target, the rest
// for the fallback), so the whole layer has static shapes and can be
// captured in a CUDA graph. The given sizes are checked against the plan
// (executor.check_route_counts): the host executor throws before the groups
// run; the CUDA executor compares them on the device, without a
// synchronisation, and read_counts then reports a mismatch. forward_decode() leaves the sizes in executor
// memory, where the decode kernels read them: for batches of at most
// E::group_max_rows tokens (16 on CUDA) any route rule runs without a
// synchronisation and captures in a CUDA graph.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "elastic/core/counts.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/widths.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/layers/elastic_mlp.hpp"

namespace elastic {

template <ElementType T, WidthSet WidthsT>
class RoutedMLP {
 public:
  // choice_widths[c]: the MLP width choice c runs at, 0 to skip; every other
  // width must be in the MLP's set.
  RoutedMLP(const ElasticMLP<T, WidthsT>& mlp, std::span<const int> choice_widths)
      : mlp_(mlp), widths_(choice_widths.begin(), choice_widths.end()) {
    require(!widths_.empty(), "RoutedMLP: at least one choice is needed");
    for (int width : widths_)
      if (width != 0) detail::check_width<WidthsT, T>(width, mlp.intermediate(), "RoutedMLP width");
  }

  int choices() const { return static_cast<int>(widths_.size()); }
  int width_of(int choice) const { return widths_[static_cast<std::size_t>(choice)]; }

  template <RoutingExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor, index_t tokens) const {
    WorkspaceCursor cursor;
    carve(cursor, executor, tokens);
    return cursor.bytes_used();
  }

  // residual, input: [tokens x hidden]; choices: [tokens] in the executor's
  // memory. The residual and the workspace overlap nothing the call reads
  // (input, choices, the MLP's weights).
  template <RoutingExecutorFor<T> E>
  void forward(E& executor, MatrixView<T> residual, ConstMatrixView<T> input, const int* choices,
               Workspace workspace) const {
    const Buffers buffers = plan(executor, residual, input, choices, workspace, "RoutedMLP::forward");
    std::vector<int> counts(widths_.size());
    executor.read_route_counts(buffers.plan, counts);
    run_groups(executor, residual, input, buffers, counts);
  }

  // As forward(), with the group sizes known on the host (e.g. the capacity
  // rule's); they must equal what the choices produce. The host executor
  // throws before any group runs when they do not; the CUDA executor runs the
  // groups on the given sizes (within the plan's bounds) and read_counts
  // reports the mismatch.
  template <RoutingExecutorFor<T> E>
  void forward_with_counts(E& executor, MatrixView<T> residual, ConstMatrixView<T> input, const int* choices,
                           std::span<const int> counts, Workspace workspace) const {
    constexpr auto op = "RoutedMLP::forward_with_counts";
    const Buffers buffers = plan(executor, residual, input, choices, workspace, op);
    executor.check_route_counts(buffers.plan, counts, buffers.plan_scratch, op);
    run_groups(executor, residual, input, buffers, counts);
  }

  // As forward(), for a batch of at most E::group_max_rows tokens, with no
  // host synchronisation: each choice that runs an MLP launches its group at
  // up to the whole batch and the executor reads the group's size from the
  // plan (an empty group returns at once). The choices are checked on the
  // device, as plan_routes checks them: an invalid one leaves the plan as it
  // was (the groups then run on what it held, within its bounds), so choices
  // from anything but decide_routes should be checked with read_counts.
  template <RoutingExecutorFor<T> E>
  void forward_decode(E& executor, MatrixView<T> residual, ConstMatrixView<T> input, const int* choices,
                      Workspace workspace) const {
    constexpr auto op = "RoutedMLP::forward_decode";
    require(input.rows() <= E::group_max_rows, op, ": at most ", E::group_max_rows, " tokens on this executor, found ",
            input.rows());
    const Buffers buffers = plan(executor, residual, input, choices, workspace, op);
    for (std::size_t c = 0; c < widths_.size(); ++c)
      if (widths_[c] != 0)
        mlp_.add_to_group(executor, widths_[c], residual, input, RouteGroup::of(buffers.plan, static_cast<int>(c)),
                          input.rows(), buffers.mlp_scratch);
  }

  // The group sizes of the last forward of `tokens` tokens on this workspace,
  // read back to the host (on CUDA: a synchronisation); throws plan_routes'
  // error when a choice was out of range.
  template <RoutingExecutorFor<T> E>
  void read_counts(const E& executor, index_t tokens, Workspace workspace, std::span<int> counts) const {
    WorkspaceCursor cursor(workspace);
    executor.read_route_counts(carve(cursor, executor, tokens).plan, counts);
  }

 private:
  struct Buffers {
    RoutePlan plan;
    Workspace plan_scratch;  // plan_routes' (kept: read_route_counts checks its status)
    Workspace mlp_scratch;
  };

  // Checks the activations, carves the workspace and builds the route plan.
  template <class E>
  Buffers plan(E& executor, const MatrixView<T>& residual, const ConstMatrixView<T>& input, const int* choices,
               Workspace workspace, const char* op) const {
    detail::check_shape(input, input.rows(), mlp_.hidden(), op, "input");
    detail::check_shape(residual, input.rows(), mlp_.hidden(), op, "residual");
    require(choices != nullptr || input.rows() == 0, op, ": the choices are a null pointer");
    WorkspaceCursor cursor(workspace);
    const Buffers buffers = carve(cursor, executor, input.rows());
    const MLPWeights<T>& read = mlp_.weights();
    detail::check_disjoint(op,
                           {detail::region("residual", residual),
                            detail::region("workspace", workspace, cursor.bytes_used())},
                           {detail::region("input", input), detail::region("choices", choices, input.rows()),
                            detail::region("gate weight", read.gate), detail::region("up weight", read.up),
                            detail::region("down weight", read.down)});
    executor.plan_routes(buffers.plan, choices, buffers.plan_scratch);
    return buffers;
  }

  template <class E>
  Buffers carve(WorkspaceCursor& cursor, const E& executor, index_t tokens) const {
    const int n = detail::narrow_to_int(tokens, "RoutedMLP", "the token count");
    const int c = choices();
    Buffers buffers;
    const std::size_t plan_bytes = RoutePlan::bytes_required(n, c);
    const Workspace plan_memory = cursor.take_workspace(plan_bytes);
    if (plan_memory.data != nullptr) buffers.plan = RoutePlan::carve(plan_memory, n, c);
    buffers.plan_scratch = cursor.take_workspace(executor.plan_routes_workspace_bytes(n, c));
    buffers.mlp_scratch = cursor.take_workspace(mlp_.add_to_rows_workspace_bytes(executor, tokens));
    return buffers;
  }

  template <class E>
  void run_groups(E& executor, MatrixView<T> residual, ConstMatrixView<T> input, const Buffers& buffers,
                  std::span<const int> counts) const {
    index_t offset = 0;
    for (std::size_t c = 0; c < widths_.size(); ++c) {
      const index_t count = counts[c];
      const int* indices = buffers.plan.permutation + offset;
      offset += count;
      if (widths_[c] == 0 || count == 0) continue;
      mlp_.add_to_rows(executor, widths_[c], residual, input, indices, count, buffers.mlp_scratch);
    }
  }

  ElasticMLP<T, WidthsT> mlp_;  // views of the caller's weights
  std::vector<int> widths_;
};

}  // namespace elastic
