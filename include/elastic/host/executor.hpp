// The host (CPU) executor: multi-threaded, float32 accumulation throughout.
// The output neurons of a weight are split across the pool's threads in
// blocks whose weight rows fit the second-level cache; each block runs the
// vector row-dot kernel (host/simd/row_dots-inl.hpp) over chunks of neurons
// and tiles of up to 16 tokens, so decode streams each weight row once and
// prefill reuses a block's rows from the cache for every token tile. Each
// output is rounded to the storage type once, at the store. The routed
// halves of an MLP (gather_swiglu, linear_scatter_add) run the same loop
// reading and writing rows by index. Weights kept in GGUF blocks
// (QuantizedMatrixView) run the quantised kernel with 8-bit activations
// (host/quantized_row_dots.hpp). Attention (host/attention.hpp) runs its own
// vector kernel over tiles of the query rows that share a KV head. Every
// kernel is dispatched at run time to the best instruction set the CPU has
// (host/simd/kernels.hpp). Memory is host memory; no primitive needs
// workspace.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <memory>
#include <span>
#include <string_view>
#include <thread>
#include <type_traits>

#include "elastic/core/attention_params.hpp"
#include "elastic/core/checks.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/quantized_checks.hpp"
#include "elastic/core/quantized_matrix.hpp"
#include "elastic/core/routing_checks.hpp"
#include "elastic/host/attention.hpp"
#include "elastic/host/quantized_row_dots.hpp"
#include "elastic/host/quantized_rows.hpp"
#include "elastic/host/routing.hpp"
#include "elastic/host/simd/kernels.hpp"
#include "elastic/host/thread_pool.hpp"
#include "elastic/math/activation.hpp"

namespace elastic::host {

class Executor {
 public:
  static constexpr MemorySpace memory_space = MemorySpace::host;

  // Tokens processed per pass over a weight row.
  static constexpr int token_tile = 16;

  // threads = 0 uses every hardware thread, at most ThreadPool::max_threads.
  // A count above ThreadPool::max_threads (such as a negative number converted
  // to unsigned) throws elastic::Error before anything is allocated.
  explicit Executor(unsigned threads = 0) {
    require(threads <= ThreadPool::max_threads, "host::Executor(threads = ", threads,
            "): expected 0 (every hardware thread) or 1 to ", ThreadPool::max_threads);
    pool_ = std::make_unique<ThreadPool>(
        threads != 0 ? threads : std::clamp(std::thread::hardware_concurrency(), 1u, ThreadPool::max_threads));
  }

  unsigned threads() const { return pool_->size(); }

  template <ElementType T>
  std::size_t linear_workspace_bytes(index_t /*tokens*/, index_t /*out*/, index_t /*in*/) const {
    return 0;
  }

  template <ElementType T>
  std::size_t swiglu_workspace_bytes(index_t /*tokens*/, index_t /*out*/, index_t /*in*/) const {
    return 0;
  }

  template <ElementType T, int StaticLength = dynamic_extent>
  void linear(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x,
              std::type_identity_t<ConstMatrixView<T>> w, Workspace /*workspace*/ = {},
              Extent<StaticLength> = {}) {
    detail::check_linear(y, x, w, StaticLength);
    run_row_dots<T, 1, false>(y, x, x.rows(), {w});
  }

  template <ElementType T>
  void swiglu(MatrixView<T> h, std::type_identity_t<ConstMatrixView<T>> x,
              std::type_identity_t<ConstMatrixView<T>> gate, std::type_identity_t<ConstMatrixView<T>> up,
              Workspace /*workspace*/ = {}) {
    detail::check_swiglu(h, x, gate, up);
    run_row_dots<T, 2, false>(h, x, x.rows(), {gate, up});
  }

  template <ElementType T>
  std::size_t attention_workspace_bytes(const AttentionBatch& /*batch*/, int /*heads*/, int /*head_dim*/,
                                        const KVCacheShape& /*cache*/) const {
    return 0;
  }

  // Rotates k and appends k, v to the cache, then causal attention of q over
  // the cache (see core/attention_params.hpp).
  template <ElementType T, int HeadDim>
  void attention(MatrixView<T> out, std::type_identity_t<ConstMatrixView<T>> q,
                 std::type_identity_t<ConstMatrixView<T>> k, std::type_identity_t<ConstMatrixView<T>> v,
                 const KVCacheView<T>& cache, const AttentionBatch& batch, const AttentionParams<HeadDim>& params,
                 Workspace /*workspace*/ = {}) {
    detail::check_attention(out, q, k, v, cache, batch, params);
    if (q.rows() == 0) return;
    kernels::attention(*pool_, out, q, k, v, cache, batch, params);
  }

  // Routing primitives (see core/routing_checks.hpp); none needs workspace.
  template <ElementType T>
  std::size_t decide_routes_workspace_bytes(index_t /*tokens*/, int /*choices*/) const {
    return 0;
  }
  std::size_t plan_routes_workspace_bytes(int /*tokens*/, int /*choices*/) const { return 0; }

  template <ElementType T>
  void decide_routes(int* choices, ConstMatrixView<T> logits, const RouteRule& rule,
                     Workspace /*workspace*/ = {}) {
    detail::check_decide_routes(choices, logits, rule);
    kernels::decide_routes(choices, logits, rule);
  }

  void plan_routes(const RoutePlan& plan, const int* choices, Workspace /*workspace*/ = {}) {
    detail::check_plan_routes(plan, choices);
    kernels::plan_routes(plan, choices);
  }

  void read_route_counts(const RoutePlan& plan, std::span<int> counts) const {
    require(counts.size() == static_cast<std::size_t>(plan.choices), "read_route_counts: ", counts.size(),
            " entries given for ", plan.choices, " choices");
    std::copy_n(plan.counts, plan.choices, counts.begin());
  }

  // The group sizes a caller claims for a plan (e.g. the capacity rule's),
  // compared with the plan: a mismatch throws, naming the caller.
  void check_route_counts(const RoutePlan& plan, std::span<const int> counts, Workspace /*plan_workspace*/,
                          std::string_view caller) {
    detail::check_claimed_counts(plan, counts, caller);
    for (int c = 0; c < plan.choices; ++c)
      require(counts[static_cast<std::size_t>(c)] == plan.counts[c], caller, ": ",
              counts[static_cast<std::size_t>(c)], " tokens given for choice ", c, ", but the plan routed ",
              plan.counts[c], " there");
  }

  // Copies host indices into executor memory (here: host memory).
  void load_indices(int* destination, std::span<const int> indices) {
    detail::check_load_indices(destination, indices);
    std::copy(indices.begin(), indices.end(), destination);
  }

  template <ElementType T>
  void gather_rows(MatrixView<T> dst, std::type_identity_t<ConstMatrixView<T>> src, const int* indices) {
    detail::check_rows_op(dst, src, indices, dst.rows(), "gather_rows");
    kernels::gather_rows(*pool_, dst, src, indices);
  }

  // Rows of a block-quantised table (an embedding kept in its GGUF blocks),
  // decoded and rounded to T.
  template <ElementType T>
  void gather_rows(MatrixView<T> dst, const QuantizedMatrixView& src, const int* indices) {
    detail::check_rows_op(dst, src, indices, dst.rows(), "gather_rows");
    kernels::gather_quantized_rows(*pool_, dst, src, indices);
  }

  template <ElementType T>
  void scatter_add_rows(MatrixView<T> dst, std::type_identity_t<ConstMatrixView<T>> src, const int* indices) {
    detail::check_rows_op(dst, src, indices, src.rows(), "scatter_add_rows");
    kernels::scatter_add_rows(*pool_, dst, src, indices);
  }

  template <ElementType T>
  std::size_t gather_swiglu_workspace_bytes(index_t /*tokens*/, index_t /*out*/, index_t /*in*/) const {
    return 0;
  }

  template <ElementType T>
  std::size_t linear_scatter_add_workspace_bytes(index_t /*tokens*/, index_t /*out*/, index_t /*in*/) const {
    return 0;
  }

  template <ElementType T>
  void gather_swiglu(MatrixView<T> h, std::type_identity_t<ConstMatrixView<T>> x, const int* indices,
                     std::type_identity_t<ConstMatrixView<T>> gate, std::type_identity_t<ConstMatrixView<T>> up,
                     Workspace /*workspace*/ = {}) {
    detail::check_gather_swiglu(h, x, indices, gate, up);
    kernels::check_indices(indices, h.rows(), x.rows(), "gather_swiglu");
    run_row_dots<T, 2, true>(h, x, h.rows(), {gate, up}, indices);
  }

  // The indices must be distinct (as a route plan's are).
  template <ElementType T, int StaticLength = dynamic_extent>
  void linear_scatter_add(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x,
                          std::type_identity_t<ConstMatrixView<T>> w, const int* indices,
                          Workspace /*workspace*/ = {}, Extent<StaticLength> = {}) {
    detail::check_linear_scatter_add(y, x, w, indices, StaticLength);
    kernels::check_indices(indices, x.rows(), y.rows(), "linear_scatter_add");
    run_row_dots<T, 1, false>(y, x, x.rows(), {w}, nullptr, indices);
  }

  // The same maps with block-quantised weights (GGUF's Q4_0, Q4_1, Q5_0,
  // Q5_1, Q8_0, Q4_K, Q5_K, Q6_K; core/quantized_matrix.hpp), computed on the
  // blocks with the activations quantised to 8 bits per 32-element block
  // (host/quantized_activations.hpp). Like the float forms they need no
  // workspace, and a compile-time reduction length is only checked.
  template <ElementType T, int StaticLength = dynamic_extent>
  void linear(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x, const QuantizedMatrixView& w,
              Workspace /*workspace*/ = {}, Extent<StaticLength> = {}) {
    detail::check_static_length(x.cols(), StaticLength, "linear");
    detail::check_quantized_linear_operands(y, x, w, "linear", x.rows());
    kernels::quantized_row_dots<T, 1>(*pool_, y, x, x.rows(), {w}, math::Identity{});
  }

  template <ElementType T>
  void swiglu(MatrixView<T> h, std::type_identity_t<ConstMatrixView<T>> x, const QuantizedMatrixView& gate,
              const QuantizedMatrixView& up, Workspace /*workspace*/ = {}) {
    detail::check_quantized_swiglu_operands(h, x, gate, up, "swiglu", x.rows());
    kernels::quantized_row_dots<T, 2>(*pool_, h, x, x.rows(), {gate, up}, math::SwiGLU{});
  }

  template <ElementType T>
  void gather_swiglu(MatrixView<T> h, std::type_identity_t<ConstMatrixView<T>> x, const int* indices,
                     const QuantizedMatrixView& gate, const QuantizedMatrixView& up, Workspace /*workspace*/ = {}) {
    detail::check_quantized_gather_swiglu(h, x, indices, gate, up);
    kernels::check_indices(indices, h.rows(), x.rows(), "gather_swiglu");
    kernels::quantized_row_dots<T, 2>(*pool_, h, x, h.rows(), {gate, up}, math::SwiGLU{}, indices);
  }

  // The indices must be distinct (as a route plan's are).
  template <ElementType T, int StaticLength = dynamic_extent>
  void linear_scatter_add(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x, const QuantizedMatrixView& w,
                          const int* indices, Workspace /*workspace*/ = {}, Extent<StaticLength> = {}) {
    detail::check_static_length(x.cols(), StaticLength, "linear_scatter_add");
    detail::check_quantized_linear_scatter_add(y, x, w, indices);
    kernels::check_indices(indices, x.rows(), y.rows(), "linear_scatter_add");
    kernels::quantized_row_dots<T, 1>(*pool_, y, x, x.rows(), {w}, math::Identity{}, nullptr, indices);
  }

  // Route groups sized in executor memory: here host memory, read directly,
  // so a group may have any number of rows.
  static constexpr index_t group_max_rows = std::numeric_limits<index_t>::max();

  template <ElementType T>
  void gather_swiglu(MatrixView<T> h, std::type_identity_t<ConstMatrixView<T>> x, const RouteGroup& group,
                     std::type_identity_t<ConstMatrixView<T>> gate, std::type_identity_t<ConstMatrixView<T>> up,
                     Workspace workspace = {}) {
    detail::check_gather_swiglu(h, x, group.permutation, gate, up);
    const GroupRows rows = group_rows(group, h, h.rows(), "gather_swiglu");
    gather_swiglu(h.first_rows(rows.count), x, rows.indices, gate, up, workspace);
  }

  template <ElementType T, int StaticLength = dynamic_extent>
  void linear_scatter_add(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x,
                          std::type_identity_t<ConstMatrixView<T>> w, const RouteGroup& group,
                          Workspace workspace = {}, Extent<StaticLength> extent = {}) {
    detail::check_linear_scatter_add(y, x, w, group.permutation, StaticLength);
    const GroupRows rows = group_rows(group, y, x.rows(), "linear_scatter_add");
    linear_scatter_add(y, x.first_rows(rows.count), w, rows.indices, workspace, extent);
  }

  template <ElementType T>
  void rms_norm(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x,
                std::type_identity_t<ConstMatrixView<T>> weight, float epsilon) {
    detail::check_rms_norm(y, x, weight, epsilon);
    kernels::rms_norm(*pool_, y, x, weight, epsilon);
  }

  template <ElementType T>
  void relu_in_place(MatrixView<T> x) {
    detail::check_view(x, "relu_in_place", "matrix");
    for (index_t t = 0; t < x.rows(); ++t)
      for (index_t c = 0; c < x.cols(); ++c)
        if (to_float(x(t, c)) < 0.0f) x(t, c) = from_float<T>(0.0f);
  }

  template <ElementType T>
  void contribution_ratios(float* ratios, ConstMatrixView<T> block,
                           std::type_identity_t<ConstMatrixView<T>> residual) {
    detail::check_contribution(ratios, block, residual);
    kernels::contribution_ratios(ratios, block, residual);
  }

 private:
  struct GroupRows {
    const int* indices;
    index_t count;
  };

  // The group's indices and size, checked against the rows given, its plan
  // and the call's output.
  template <class T>
  static GroupRows group_rows(const RouteGroup& group, const MatrixView<T>& output, index_t max_rows, const char* op) {
    detail::check_route_group(group, max_rows, group_max_rows, output, op);
    if (max_rows == 0) return {nullptr, 0};
    const int first = *group.first;
    const int count = *group.count;
    require(first >= 0 && count >= 0 && count <= group.plan_tokens - first, op, ": the route group starts at ", first,
            " with ", count, " tokens, outside its plan of ", group.plan_tokens, " tokens");
    require(count <= max_rows, op, ": the route group has ", count, " tokens but only ", max_rows,
            " rows were given");
    return {group.permutation + first, count};
  }

  // For each of `tokens` tokens t and output neuron o:
  //   out[t, o] = x[s] . w_0[o]                          (one weight: linear)
  //   out[t, o] = silu(x[s] . w_0[o]) * (x[s] . w_1[o])  (two: gate and up)
  // where s = source_rows[t] if Gathered, else t; with output_rows, the value
  // is added to out[output_rows[t], o] instead (one rounding of the sum).
  template <class T, int NumRows, bool Gathered>
  void run_row_dots(MatrixView<T> out, ConstMatrixView<T> x, index_t tokens,
                    std::array<ConstMatrixView<T>, NumRows> weights, const int* source_rows = nullptr, const int* output_rows = nullptr) {
    static_assert(token_tile == simd::max_call_tokens);
    constexpr index_t neurons_per_call = simd::max_call_rows / NumRows;
    const index_t neurons = out.cols();
    if (tokens == 0 || neurons == 0) return;
    const index_t length = x.cols();
    pool_->parallel_for(0, neurons, neuron_grain(neurons, tokens, length * NumRows * sizeof(T), neurons_per_call),
                        [&](index_t first_neuron, index_t last_neuron) {
      for (index_t first_token = 0; first_token < tokens; first_token += token_tile) {
        for (index_t first = first_neuron; first < last_neuron; first += neurons_per_call) {
          const int count = static_cast<int>(std::min(neurons_per_call, last_neuron - first));
          float partials[simd::max_call_rows][token_tile] = {};
          simd::RowDotsCall call{};
          call.dtype = dtype_of<T>;
          call.rows = count * NumRows;
          call.swiglu = NumRows == 2;
          for (int r = 0; r < NumRows; ++r)
            for (int n = 0; n < count; ++n) call.weight_rows[r * count + n] = weights[r].row(first + n);
          call.activations = Gathered ? x.data() : x.row(first_token);
          call.activation_stride = x.row_stride();
          call.token_rows = Gathered ? source_rows + first_token : nullptr;
          call.length = static_cast<int>(length);
          call.tokens = static_cast<int>(std::min<index_t>(token_tile, tokens - first_token));
          call.partials = partials;
          simd::row_dots(call);
          for (int t = 0; t < call.tokens; ++t)
            for (int n = 0; n < count; ++n)
              kernels::store_row_dot(out, first_token + t, first + n, partials[n][t], output_rows);
        }
      }
    });
  }

  // Neurons per parallel grain: with one token tile (decode), small grains
  // that balance the threads; with more, as many as keep the block's
  // weight rows (`neuron_bytes` each) in the second-level cache while the
  // token tiles pass, but at least four grains per thread where the neurons
  // allow. Whole chunks of `chunk` neurons either way.
  index_t neuron_grain(index_t neurons, index_t tokens, std::size_t neuron_bytes, index_t chunk) const {
    const auto threads_ = static_cast<index_t>(threads());
    const auto round_up = [&](index_t n) { return std::max<index_t>(chunk, (n + chunk - 1) / chunk * chunk); };
    if (tokens <= token_tile) return std::max<index_t>(1, neurons / (8 * threads_));
    constexpr std::size_t block_bytes = 256 * 1024;
    const auto cached = static_cast<index_t>(block_bytes / std::max<std::size_t>(1, neuron_bytes));
    const index_t balanced = (neurons + 4 * threads_ - 1) / (4 * threads_);
    return round_up(std::min(cached, balanced));
  }

  std::unique_ptr<ThreadPool> pool_;
};

static_assert(elastic::Executor<Executor>);
static_assert(AttentionExecutorFor<Executor, float> && AttentionExecutorFor<Executor, half_t> &&
              AttentionExecutorFor<Executor, bfloat16_t>);
static_assert(RoutingExecutorFor<Executor, float> && RoutingExecutorFor<Executor, half_t> &&
              RoutingExecutorFor<Executor, bfloat16_t>);

}  // namespace elastic::host
