// The executor concept: the primitives every backend implements so layers are
// written once. An executor computes on memory in its own space (host or
// device); layers hand it views and a caller-owned workspace sized by its
// size queries. Primitives (y = output, x = input rows, one row per token):
//
//   linear(y, x, w, ws [, Extent<L>])    y = x . w^T            (w: [out x in])
//   swiglu(h, x, w_gate, w_up, ws)       h = silu(x . w_gate^T) * (x . w_up^T)
//
// and, for executors that satisfy AttentionExecutorFor as well:
//
//   attention(out, q, k, v, cache, batch, params, ws)
//       append rope(k), v to the KV cache; out = causal attention of rope(q)
//       over each sequence's cache positions (core/attention_params.hpp)
//
// Extent<L> says the reduction length is the compile-time width L, so a
// backend may specialise on it. Implementations: elastic::host::Executor
// (host/executor.hpp) and elastic::cuda::Executor (cuda/executor.cuh).
#pragma once

#include <concepts>
#include <cstddef>
#include <span>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/attention_params.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/widths.hpp"
#include "elastic/core/workspace.hpp"

namespace elastic {

enum class MemorySpace { host, device };

template <class E, class T>
concept ExecutorFor =
    ElementType<T> && requires(E& ex, const E& const_ex, MatrixView<T> y, ConstMatrixView<T> x,
                               Workspace workspace, index_t n) {
      { E::memory_space } -> std::convertible_to<MemorySpace>;
      { const_ex.template linear_workspace_bytes<T>(n, n, n) } -> std::same_as<std::size_t>;
      { const_ex.template swiglu_workspace_bytes<T>(n, n, n) } -> std::same_as<std::size_t>;
      ex.linear(y, x, x, workspace);
      ex.linear(y, x, x, workspace, Extent<64>{});
      ex.swiglu(y, x, x, x, workspace);
    };

template <class E>
concept Executor = ExecutorFor<E, float> && ExecutorFor<E, half_t> && ExecutorFor<E, bfloat16_t>;

// The attention primitive and its workspace query, checked at head_dim 64.
template <class E, class T>
concept AttentionExecutorFor =
    ExecutorFor<E, T> && requires(E& ex, const E& const_ex, MatrixView<T> out, ConstMatrixView<T> x,
                                  const KVCacheView<T>& cache, const AttentionBatch& batch,
                                  const AttentionParams<64>& params, const KVCacheShape& shape, Workspace workspace,
                                  int n) {
      { const_ex.template attention_workspace_bytes<T>(batch, n, n, shape) } -> std::same_as<std::size_t>;
      ex.attention(out, x, x, x, cache, batch, params, workspace);
    };

// The routing primitives (core/routing_checks.hpp) and their workspace queries.
template <class E, class T>
concept RoutingExecutorFor =
    ExecutorFor<E, T> && requires(E& ex, const E& const_ex, MatrixView<T> y, ConstMatrixView<T> x, int* choices,
                                  const int* indices, float* ratios, const RoutePlan& plan, const RouteRule& rule,
                                  const RouteGroup& group,
                                  std::span<int> counts, Workspace workspace, index_t n, int c) {
      { const_ex.template decide_routes_workspace_bytes<T>(n, c) } -> std::same_as<std::size_t>;
      { const_ex.plan_routes_workspace_bytes(c, c) } -> std::same_as<std::size_t>;
      { const_ex.template gather_swiglu_workspace_bytes<T>(n, n, n) } -> std::same_as<std::size_t>;
      { const_ex.template linear_scatter_add_workspace_bytes<T>(n, n, n) } -> std::same_as<std::size_t>;
      ex.decide_routes(choices, x, rule, workspace);
      ex.plan_routes(plan, indices, workspace);
      const_ex.read_route_counts(plan, counts);
      ex.check_route_counts(plan, std::span<const int>(counts), workspace, "caller");
      ex.load_indices(choices, std::span<const int>(indices, 1));
      ex.gather_rows(y, x, indices);
      ex.scatter_add_rows(y, x, indices);
      ex.gather_swiglu(y, x, indices, x, x, workspace);
      ex.linear_scatter_add(y, x, x, indices, workspace);
      ex.linear_scatter_add(y, x, x, indices, workspace, Extent<64>{});
      { E::group_max_rows } -> std::convertible_to<index_t>;
      ex.gather_swiglu(y, x, group, x, x, workspace);
      ex.linear_scatter_add(y, x, x, group, workspace, Extent<64>{});
      ex.rms_norm(y, x, x, 1e-5f);
      ex.relu_in_place(y);
      ex.contribution_ratios(ratios, x, x);
    };

}  // namespace elastic
