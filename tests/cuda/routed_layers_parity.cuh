// CUDA-vs-host parity of the routed layers, shared by the per-dtype test file
// (test_routed_layers_parity.cu, compiled once per element type): the
// indexed MLP halves gather_swiglu and linear_scatter_add (and
// ElasticMLP::add_to_rows on top) on a route group drawn from a larger
// batch, at every width of the set and token counts covering the three
// decode buckets and the gather/GEMM/scatter path; the decode kernels'
// skipping of out-of-range device indices; RoutedMLP (forward and
// forward_with_counts) over random, partly empty and single-group routes;
// the Router's logits; a capacity-routed layer (router, top-k decision,
// routed MLP with static group sizes) captured in a CUDA graph and replayed
// on new inputs; SkippableAttention under both KV policies on a ragged batch
// and the decode step after it, and on a prefill whose kept tokens form a
// decode batch; and the argument checks, which reject bad calls before
// anything is written.
//
// Outputs start poisoned (NaN), including the padding past each gathered
// activation row; rows a call must not touch are compared bit for bit with
// their values before it. Results are compared with the host executor's
// within test::tolerance<T>(): decode kernels round each result once, as the
// host does; the GEMM path rounds the projection before adding it.
#pragma once

#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "cuda/attention_parity.cuh"
#include "cuda/parity.cuh"
#include "cuda/routing_parity.cuh"

namespace elastic::test {

// Rows of the batch a route group's tokens are drawn from (more than the
// largest group of cuda_token_counts).
inline constexpr int routed_batch_rows = 80;

// Batch sizes of the routed MLP checks. A group of up to 16 tokens runs on
// the decode kernels, a larger one on the gather/GEMM/scatter path: with
// five choices, 17 and 67 tokens make mostly decode-sized groups, 1000 and
// 4096 large ones, and the single-group spread puts a whole batch in one.
inline constexpr int routed_token_counts[] = {1, 3, 16, 17, 67, 1000, 4096};

// `count` distinct rows of [0, rows), in random order.
inline std::vector<int> random_rows(int count, int rows, std::uint64_t seed) {
  std::vector<int> all(static_cast<std::size_t>(rows));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), std::mt19937_64(seed));
  all.resize(static_cast<std::size_t>(count));
  return all;
}

// The rows `rows` of a host matrix, in that order.
template <class T>
HostMatrix<T> select_rows(const HostMatrix<T>& matrix, std::span<const int> rows) {
  HostMatrix<T> selected(static_cast<index_t>(rows.size()), matrix.cols);
  for (std::size_t i = 0; i < rows.size(); ++i)
    std::copy_n(matrix.values.begin() + rows[i] * matrix.cols, matrix.cols,
                selected.values.begin() + static_cast<index_t>(i) * matrix.cols);
  return selected;
}

// The first `cols` columns of a host matrix.
template <class T>
HostMatrix<T> leading_cols(const HostMatrix<T>& matrix, index_t cols) {
  HostMatrix<T> leading(matrix.rows, cols);
  for (index_t r = 0; r < matrix.rows; ++r)
    std::copy_n(matrix.values.begin() + r * matrix.cols, cols, leading.values.begin() + r * cols);
  return leading;
}

// True when every row of `after` that is not in `rows` holds the bits of the
// same row of `before`.
template <class T>
bool other_rows_unchanged(const HostMatrix<T>& after, const HostMatrix<T>& before, std::span<const int> rows) {
  std::vector<bool> listed(static_cast<std::size_t>(after.rows), false);
  for (const int row : rows) listed[static_cast<std::size_t>(row)] = true;
  for (index_t r = 0; r < after.rows; ++r)
    if (!listed[static_cast<std::size_t>(r)] &&
        std::memcmp(after.values.data() + r * after.cols, before.values.data() + r * before.cols,
                    static_cast<std::size_t>(after.cols) * sizeof(T)) != 0)
      return false;
  return true;
}

// A matrix after a call that adds into the rows `rows` (from `before`): those
// rows within `bound` of the host executor's, every other row bit for bit
// as it was.
template <class T>
void check_added_rows(const HostMatrix<T>& got, const HostMatrix<T>& expected, const HostMatrix<T>& before,
                      std::span<const int> rows, double bound) {
  if (!rows.empty()) CHECK(relative_difference(select_rows(got, rows), select_rows(expected, rows)) < bound);
  CHECK(other_rows_unchanged(got, before, rows));
}

// gather_swiglu, linear_scatter_add (with the width as an Extent and as a
// dynamic length) and ElasticMLP::add_to_rows on both executors, for a group
// of distinct rows of a batch of routed_batch_rows.
template <class T>
void check_indexed_mlp_parity() {
  constexpr index_t full = TestWidths::max;
  const RandomMLP<T> weights(parity_hidden, full, 4040);
  const DeviceMatrix<T> gate(weights.gate), up(weights.up), down(weights.down);
  const ElasticMLP<T, TestWidths> host_mlp(weights.weights());
  const ElasticMLP<T, TestWidths> device_mlp({gate.view(), up.view(), down.view()});
  host::Executor host_executor;
  cuda::Executor device_executor;
  const HostMatrix<T> batch = random_matrix<T>(routed_batch_rows, parity_hidden, 41);
  const HostMatrix<T> residual = random_matrix<T>(routed_batch_rows, parity_hidden, 42);
  const DeviceMatrix<T> device_batch(batch);

  for (int tokens : cuda_token_counts) {
    const std::vector<int> indices = random_rows(tokens, routed_batch_rows, 43 + tokens);
    const DeviceArray<int> device_indices(indices);
    // The group's intermediate activations, for linear_scatter_add.
    const HostMatrix<T> activations = random_matrix<T>(tokens, full, 44 + tokens);
    const DeviceMatrix<T> device_activations(activations);
    host::WorkspaceBuffer host_workspace(host_mlp.add_to_rows_workspace_bytes(host_executor, tokens));
    const cuda::WorkspaceBuffer device_workspace(
        std::max({device_executor.gather_swiglu_workspace_bytes<T>(tokens, full, parity_hidden),
                  device_executor.linear_scatter_add_workspace_bytes<T>(tokens, parity_hidden, full),
                  device_mlp.add_to_rows_workspace_bytes(device_executor, tokens)}));
    TestWidths::for_each([&]<int Width>() {
      CAPTURE(tokens);
      CAPTURE(Width);
      const MLPWeights<T> host_sliced = host_mlp.weights_at(Width);
      const MLPWeights<T> device_sliced = device_mlp.weights_at(Width);

      HostMatrix<T> expected_h(tokens, Width);
      host_executor.gather_swiglu(expected_h.view(), batch.view(), indices.data(), host_sliced.gate, host_sliced.up);
      PaddedOutput<T> h(tokens, Width);
      device_executor.gather_swiglu(h.view(), device_batch.view(), device_indices.data(), device_sliced.gate,
                                    device_sliced.up, device_workspace.get());

      HostMatrix<T> expected_y = residual;
      host_executor.linear_scatter_add(expected_y.view(), activations.view().first_cols(Width), host_sliced.down,
                                       indices.data());
      DeviceMatrix<T> y_static(residual), y_dynamic(residual);
      device_executor.linear_scatter_add(y_static.view(), device_activations.view().first_cols(Width),
                                         device_sliced.down, device_indices.data(), device_workspace.get(),
                                         Extent<Width>{});
      device_executor.linear_scatter_add(y_dynamic.view(), device_activations.view().first_cols(Width),
                                         device_sliced.down, device_indices.data(), device_workspace.get());

      HostMatrix<T> expected_sum = residual;
      host_mlp.add_to_rows(host_executor, Width, expected_sum.view(), batch.view(), indices.data(), tokens,
                           host_workspace.get());
      DeviceMatrix<T> sum(residual);
      device_mlp.add_to_rows(device_executor, Width, sum.view(), device_batch.view(), device_indices.data(), tokens,
                             device_workspace.get());
      ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());

      CHECK(relative_difference(h.to_host(), expected_h) < tolerance<T>());
      check_added_rows(y_static.to_host(), expected_y, residual, indices, tolerance<T>());
      check_added_rows(y_dynamic.to_host(), expected_y, residual, indices, tolerance<T>());
      check_added_rows(sum.to_host(), expected_sum, residual, indices, tolerance<T>());
    });
  }
}

// On the decode kernels (one index list per token bucket: 1, 4 and 16), a
// token whose device index is negative or past the batch is skipped:
// gather_swiglu leaves its activation row poisoned, linear_scatter_add adds
// it nowhere; the other tokens get the host executor's results.
template <class T>
void check_indexed_out_of_range() {
  constexpr int width = TestWidths::min;
  constexpr int past_end = routed_batch_rows;
  constexpr int lowest = std::numeric_limits<int>::min();
  const RandomMLP<T> weights(parity_hidden, TestWidths::max, 4141);
  const DeviceMatrix<T> gate(weights.gate), up(weights.up), down(weights.down);
  const ConstMatrixView<T> host_gate = weights.gate.view().first_rows(width);
  const ConstMatrixView<T> host_up = weights.up.view().first_rows(width);
  const ConstMatrixView<T> host_down = weights.down.view().first_cols(width);
  host::Executor host_executor;
  cuda::Executor device_executor;
  const HostMatrix<T> batch = random_matrix<T>(routed_batch_rows, parity_hidden, 45);
  const HostMatrix<T> residual = random_matrix<T>(routed_batch_rows, parity_hidden, 46);
  const DeviceMatrix<T> device_batch(batch);

  const std::vector<std::vector<int>> index_lists = {
      {past_end}, {5, -1, 12}, {7, past_end, 2, lowest, 11, -1, routed_batch_rows - 1}};
  for (const std::vector<int>& indices : index_lists) {
    const int tokens = static_cast<int>(indices.size());
    CAPTURE(tokens);
    REQUIRE(cuda::Executor::is_decode(tokens));
    std::vector<int> kept_tokens, kept_indices, skipped_tokens;
    for (int t = 0; t < tokens; ++t) {
      const int index = indices[static_cast<std::size_t>(t)];
      if (index >= 0 && index < routed_batch_rows) {
        kept_tokens.push_back(t);
        kept_indices.push_back(index);
      } else {
        skipped_tokens.push_back(t);
      }
    }
    const DeviceArray<int> device_indices(indices);
    const HostMatrix<T> activations = random_matrix<T>(tokens, width, 47 + tokens);
    const DeviceMatrix<T> device_activations(activations);

    PaddedOutput<T> h(tokens, width);
    device_executor.gather_swiglu(h.view(), device_batch.view(), device_indices.data(),
                                  gate.view().first_rows(width), up.view().first_rows(width));
    DeviceMatrix<T> y(residual);
    device_executor.linear_scatter_add(y.view(), device_activations.view(), down.view().first_cols(width),
                                       device_indices.data());
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());

    // The expected results: the host executor on the in-range tokens only.
    const HostMatrix<T> got_h = h.to_host();
    CHECK(all_poison(select_rows(got_h, skipped_tokens)));
    HostMatrix<T> expected_y = residual;
    if (!kept_tokens.empty()) {
      HostMatrix<T> expected_h(static_cast<index_t>(kept_tokens.size()), width);
      host_executor.gather_swiglu(expected_h.view(), batch.view(), kept_indices.data(), host_gate, host_up);
      CHECK(relative_difference(select_rows(got_h, kept_tokens), expected_h) < tolerance<T>());
      host_executor.linear_scatter_add(expected_y.view(), select_rows(activations, kept_tokens).view(), host_down,
                                       kept_indices.data());
    }
    check_added_rows(y.to_host(), expected_y, residual, kept_indices, tolerance<T>());
  }
}

// The width of each routed MLP choice: skip, then every width of the set.
inline std::vector<int> routed_choice_widths() {
  std::vector<int> widths = {0};
  for (int width : TestWidths::values) widths.push_back(width);
  return widths;
}

// RoutedMLP::forward and forward_with_counts on the CUDA executor against
// forward on the host executor, for uniform, partly empty and single-group
// routes. forward_with_counts runs the same groups as forward, so the two
// device results agree bit for bit; skipped tokens' rows stay as they were.
template <class T>
void check_routed_mlp_parity() {
  const RandomMLP<T> weights(parity_hidden, TestWidths::max, 4242);
  const DeviceMatrix<T> gate(weights.gate), up(weights.up), down(weights.down);
  const ElasticMLP<T, TestWidths> host_mlp(weights.weights());
  const ElasticMLP<T, TestWidths> device_mlp({gate.view(), up.view(), down.view()});
  const std::vector<int> widths = routed_choice_widths();
  const RoutedMLP<T, TestWidths> host_routed(host_mlp, widths);
  const RoutedMLP<T, TestWidths> device_routed(device_mlp, widths);
  const int choices = host_routed.choices();
  host::Executor host_executor;
  cuda::Executor device_executor;

  for (int tokens : routed_token_counts) {
    const HostMatrix<T> input = random_matrix<T>(tokens, parity_hidden, 600 + tokens);
    const HostMatrix<T> residual = random_matrix<T>(tokens, parity_hidden, 700 + tokens);
    const DeviceMatrix<T> device_input(input);
    host::WorkspaceBuffer host_workspace(host_routed.workspace_bytes(host_executor, tokens));
    const cuda::WorkspaceBuffer device_workspace(device_routed.workspace_bytes(device_executor, tokens));
    for (Spread spread : spreads) {
      CAPTURE(tokens);
      CAPTURE(describe(spread));
      const std::vector<int> picks =
          spread_choices(tokens, choices, spread, 13 * static_cast<std::uint64_t>(tokens) + static_cast<int>(spread));
      const DeviceArray<int> device_picks(picks);
      std::vector<int> counts(static_cast<std::size_t>(choices), 0);
      std::vector<int> routed_tokens;  // the tokens that run the MLP
      for (int t = 0; t < tokens; ++t) {
        const int pick = picks[static_cast<std::size_t>(t)];
        ++counts[static_cast<std::size_t>(pick)];
        if (host_routed.width_of(pick) != 0) routed_tokens.push_back(t);
      }

      HostMatrix<T> expected = residual;
      host_routed.forward(host_executor, expected.view(), input.view(), picks.data(), host_workspace.get());
      DeviceMatrix<T> planned(residual), counted(residual);
      device_routed.forward(device_executor, planned.view(), device_input.view(), device_picks.data(),
                            device_workspace.get());
      device_routed.forward_with_counts(device_executor, counted.view(), device_input.view(), device_picks.data(),
                                        counts, device_workspace.get());
      ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());

      const HostMatrix<T> got = planned.to_host();
      check_added_rows(got, expected, residual, routed_tokens, tolerance<T>());
      CHECK(bitwise_equal(counted.to_host().values, got.values));
    }
  }
}

// Router logits (RMSNorm, a ReLU hidden layer, the output layer) on both
// executors; the padding of each logits row stays poisoned. The hidden
// layer's activations are rounded to T, so the budget is twice the MLP's.
template <class T>
void check_router_parity() {
  constexpr int choices = 3;
  constexpr index_t inner = 32;
  using RouterT = Router<T, choices>;
  constexpr index_t stride = RouterT::logits_stride;
  const HostMatrix<T> norm = random_matrix<T>(1, parity_hidden, 71);
  const HostMatrix<T> first = random_matrix<T>(inner, parity_hidden, 72, 0.2f);
  const HostMatrix<T> output = random_matrix<T>(choices, inner, 73, 0.3f);
  const DeviceMatrix<T> device_norm(norm), device_first(first), device_output(output);
  const RouterT host_router({norm.view(), first.view(), output.view()});
  const RouterT device_router({device_norm.view(), device_first.view(), device_output.view()});
  host::Executor host_executor;
  cuda::Executor device_executor;

  for (int tokens : cuda_token_counts) {
    CAPTURE(tokens);
    const HostMatrix<T> x = random_matrix<T>(tokens, parity_hidden, 74 + tokens);
    const DeviceMatrix<T> device_x(x);
    HostMatrix<T> expected(tokens, stride);
    host::WorkspaceBuffer host_workspace(host_router.workspace_bytes(host_executor, tokens));
    host_router.logits(host_executor, MatrixView<T>(expected.values.data(), tokens, choices, stride), x.view(),
                       host_workspace.get());
    DeviceMatrix<T> logits = poisoned_device_matrix<T>(tokens, stride);
    const cuda::WorkspaceBuffer device_workspace(device_router.workspace_bytes(device_executor, tokens));
    device_router.logits(device_executor, MatrixView<T>(logits.buffer.data(), tokens, choices, stride),
                         device_x.view(), device_workspace.get());
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());

    const HostMatrix<T> got = logits.to_host();
    CHECK(relative_difference(leading_cols(got, choices), leading_cols(expected, choices)) < 2 * tolerance<T>());
    HostMatrix<T> padding(tokens, stride - choices);
    for (index_t t = 0; t < tokens; ++t)
      std::copy_n(got.values.begin() + t * stride + choices, stride - choices,
                  padding.values.begin() + t * (stride - choices));
    CHECK(all_poison(padding));
  }
}

// A capacity-routed layer with static shapes: router logits, the top-k
// decision (capacity tokens to the full width, the rest to the smallest),
// RoutedMLP::forward_with_counts with the known group sizes. Captured once
// in a CUDA graph on a non-blocking stream, then new inputs are written into
// the same device buffers and the graph replayed: the result equals an eager
// run on those inputs bit for bit, routes exactly `capacity` tokens to the
// target, and matches the host executor's routed MLP under the same choices.
// 16 tokens with capacity 4 run both groups (4 and 12) on the decode
// kernels; 256 tokens run the GEMM path, whose cuBLASLt plans an eager run
// builds before the capture.
template <class T>
void check_capacity_layer_graph() {
  constexpr int fallback = 0;
  constexpr int target = 1;
  const RandomMLP<T> weights(parity_hidden, TestWidths::max, 4343);
  const DeviceMatrix<T> gate(weights.gate), up(weights.up), down(weights.down);
  const ElasticMLP<T, TestWidths> host_mlp(weights.weights());
  const ElasticMLP<T, TestWidths> device_mlp({gate.view(), up.view(), down.view()});
  const std::vector<int> widths = {TestWidths::min, TestWidths::max};  // fallback, target
  const RoutedMLP<T, TestWidths> host_routed(host_mlp, widths);
  const RoutedMLP<T, TestWidths> routed(device_mlp, widths);
  const DeviceMatrix<T> router_norm(random_matrix<T>(1, parity_hidden, 81));
  const DeviceMatrix<T> router_output(random_matrix<T>(2, parity_hidden, 82, 0.2f));
  const Router<T, 2> router({router_norm.view(), {}, router_output.view()});
  host::Executor host_executor;
  cudaStream_t stream = nullptr;
  ELASTIC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cuda::Executor executor(stream);

  for (const std::pair<int, int>& shape : {std::pair{16, 4}, std::pair{256, 64}}) {
    const int tokens = shape.first;
    const int capacity = shape.second;
    CAPTURE(tokens);
    CAPTURE(capacity);
    const RouteRule rule = RouteRule::top_k(target, fallback, capacity);
    const std::vector<int> counts = {tokens - capacity, capacity};
    const HostMatrix<T> first_input = random_matrix<T>(tokens, parity_hidden, 83 + tokens);
    const HostMatrix<T> first_residual = random_matrix<T>(tokens, parity_hidden, 84 + tokens);
    const HostMatrix<T> new_input = random_matrix<T>(tokens, parity_hidden, 85 + tokens);
    const HostMatrix<T> new_residual = random_matrix<T>(tokens, parity_hidden, 86 + tokens);
    DeviceMatrix<T> input(first_input), residual(first_residual);
    const DeviceArray<int> choices(std::vector<int>(static_cast<std::size_t>(tokens), choice_poison));
    const cuda::WorkspaceBuffer router_workspace(router.route_workspace_bytes(executor, tokens));
    const cuda::WorkspaceBuffer routed_workspace(routed.workspace_bytes(executor, tokens));

    const auto step = [&] {
      router.route(executor, choices.data(), input.view(), rule, router_workspace.get());
      routed.forward_with_counts(executor, residual.view(), input.view(), choices.data(), counts,
                                 routed_workspace.get());
    };
    // New values into the layer's input and residual buffers, in stream order.
    const auto load = [&](const HostMatrix<T>& x, const HostMatrix<T>& r) {
      const std::size_t bytes = x.values.size() * sizeof(T);
      ELASTIC_CUDA_CHECK(cudaMemcpyAsync(input.buffer.data(), x.values.data(), bytes, cudaMemcpyHostToDevice, stream));
      ELASTIC_CUDA_CHECK(
          cudaMemcpyAsync(residual.buffer.data(), r.values.data(), bytes, cudaMemcpyHostToDevice, stream));
    };

    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());  // the uploads ran on the default stream
    step();                                        // builds the GEMM plans of every shape the step uses
    cudaGraph_t graph = nullptr;
    ELASTIC_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    step();
    ELASTIC_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    ELASTIC_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));

    load(new_input, new_residual);
    ELASTIC_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream));
    const HostMatrix<T> replayed = residual.to_host();
    const std::vector<int> replayed_choices = choices.to_host();

    load(new_input, new_residual);
    step();
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream));
    CHECK(bitwise_equal(residual.to_host().values, replayed.values));
    CHECK(choices.to_host() == replayed_choices);
    CHECK(std::count(replayed_choices.begin(), replayed_choices.end(), target) == capacity);
    CHECK(std::count(replayed_choices.begin(), replayed_choices.end(), fallback) == tokens - capacity);

    HostMatrix<T> expected = new_residual;
    host::WorkspaceBuffer host_workspace(host_routed.workspace_bytes(host_executor, tokens));
    host_routed.forward_with_counts(host_executor, expected.view(), new_input.view(), replayed_choices.data(), counts,
                                    host_workspace.get());
    CHECK(relative_difference(replayed, expected) < tolerance<T>());
    ELASTIC_CUDA_CHECK(cudaGraphExecDestroy(exec));
    ELASTIC_CUDA_CHECK(cudaGraphDestroy(graph));
  }
  ELASTIC_CUDA_CHECK(cudaStreamDestroy(stream));
}

inline const char* describe(SkippedTokenKV policy) {
  return policy == SkippedTokenKV::dropped ? "dropped" : "written";
}

using SkipHeadCounts = Widths<4, 8>;
inline constexpr int skip_head_dim = 64;
inline constexpr int skip_kv_heads = 4;
inline constexpr index_t skip_hidden = 64;
inline constexpr int skip_capacity = 160;

// The batch a skippable layer's attention covers: under `dropped` each
// sequence's kept tokens only, under `written` all of them (positions are
// left out: the cache checks do not read them).
inline BatchSpec attended_batch(const BatchSpec& batch, std::span<const int> skip, SkippedTokenKV policy) {
  BatchSpec attended{batch.name, batch.slots, batch.cached, batch.fresh, {}};
  if (policy == SkippedTokenKV::written) return attended;
  std::size_t token = 0;
  for (int& count : attended.fresh) {
    const int fresh = count;
    count = 0;
    for (int j = 0; j < fresh; ++j) count += skip[token++] == 0;
  }
  return attended;
}

// SkippableAttention on both executors, with weights for SkipHeadCounts::max
// query heads over skip_kv_heads KV heads and a cache of attention_slots
// slots of skip_capacity positions.
template <class T>
class SkippableAttentionParity {
 public:
  using Attention = ElasticAttention<T, SkipHeadCounts, skip_head_dim>;
  using Layer = SkippableAttention<T, SkipHeadCounts, skip_head_dim>;

  SkippableAttentionParity()
      : q_(random_matrix<T>(q_width, skip_hidden, 61, input_scale())),
        k_(random_matrix<T>(kv_width, skip_hidden, 62, input_scale())),
        v_(random_matrix<T>(kv_width, skip_hidden, 63, input_scale())),
        o_(random_matrix<T>(skip_hidden, q_width, 64, 1.0f / std::sqrt(float(q_width)))),
        device_q_(q_), device_k_(k_), device_v_(v_), device_o_(o_),
        host_attention_({q_.view(), k_.view(), v_.view(), o_.view()}, config()),
        device_attention_({device_q_.view(), device_k_.view(), device_v_.view(), device_o_.view()}, config()) {}

  KVCacheShape cache_shape() const { return host_attention_.kv_cache_shape(attention_slots, skip_capacity); }

  // One forward of the host and the device layer over `spec` with `skip`
  // flags, from caches with the same contents. Checks the residuals (kept
  // rows against the host's, skipped rows unchanged), the appended counts and
  // the caches; returns the appended counts.
  std::vector<int> check_call(SkippedTokenKV policy, int heads, const CachePair<T>& cache, const BatchSpec& spec,
                              const std::vector<int>& skip, std::uint64_t seed) {
    const Layer host_layer(host_attention_, policy);
    const Layer device_layer(device_attention_, policy);
    const AttentionBatch batch = spec.view();
    const int tokens = batch.tokens();
    const HostMatrix<T> x = random_matrix<T>(tokens, skip_hidden, seed);
    const HostMatrix<T> before = random_matrix<T>(tokens, skip_hidden, seed + 1);

    HostMatrix<T> expected = before;
    std::vector<int> host_appended(batch.sequences(), -1);
    host::WorkspaceBuffer host_workspace(host_layer.workspace_bytes(host_executor_, batch, cache.shape()));
    host_layer.forward(host_executor_, heads, expected.view(), x.view(), cache.host(), batch, skip, host_appended,
                       host_workspace.get());

    const DeviceMatrix<T> device_x(x);
    DeviceMatrix<T> residual(before);
    std::vector<int> device_appended(batch.sequences(), -1);
    const cuda::WorkspaceBuffer device_workspace(device_layer.workspace_bytes(device_executor_, batch, cache.shape()));
    device_layer.forward(device_executor_, heads, residual.view(), device_x.view(), cache.device(), batch, skip,
                         device_appended, device_workspace.get());
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());

    const BatchSpec attended = attended_batch(spec, skip, policy);
    CHECK(host_appended == attended.fresh);
    CHECK(device_appended == host_appended);
    std::vector<int> kept_tokens;
    for (int t = 0; t < tokens; ++t)
      if (skip[static_cast<std::size_t>(t)] == 0) kept_tokens.push_back(t);
    check_added_rows(residual.to_host(), expected, before, kept_tokens, attention_tolerance<T>());
    host::WorkspaceBuffer downloaded(cache.bytes());
    check_cache(cache.download(downloaded), cache.host(), attended.view(), host_attention_.kv_heads_for(heads), false,
                attention_tolerance<T>());
    return host_appended;
  }

 private:
  static constexpr index_t q_width = index_t{SkipHeadCounts::max} * skip_head_dim;
  static constexpr index_t kv_width = index_t{skip_kv_heads} * skip_head_dim;
  static float input_scale() { return 1.0f / std::sqrt(float(skip_hidden)); }
  static AttentionConfig config() { return {SkipHeadCounts::max, skip_kv_heads, attention_rope(0), 0.0f}; }

  HostMatrix<T> q_, k_, v_, o_;
  DeviceMatrix<T> device_q_, device_k_, device_v_, device_o_;
  Attention host_attention_;
  Attention device_attention_;
  host::Executor host_executor_;
  cuda::Executor device_executor_;
};

// The device cache takes the host cache's contents, so the next call starts
// both from the same state.
template <class T>
void copy_host_cache_to_device(const CachePair<T>& cache) {
  const std::size_t bytes = cache.shape().elements_per_tensor() * sizeof(T);
  ELASTIC_CUDA_CHECK(cudaMemcpy(cache.device().keys(), cache.host().keys(), bytes, cudaMemcpyHostToDevice));
  ELASTIC_CUDA_CHECK(cudaMemcpy(cache.device().values(), cache.host().values(), bytes, cudaMemcpyHostToDevice));
}

// Both policies at both head counts: a ragged batch (a prefill from
// scratch, a decode token, a chunked prefill, another decode token) with
// random skip flags, in which one decode sequence skips its token (under
// `dropped` it attends over nothing and appends nothing) and the other keeps
// it; then a decode step for every sequence at its true positions with one
// token skipped (under `dropped` a batch with an empty sequence, so not a
// decode batch).
template <class T>
void check_skippable_attention_parity() {
  SkippableAttentionParity<T> parity;
  const BatchSpec first{"ragged prefill and decode", {3, 1, 0, 2}, {0, 40, 5, 130}, {9, 1, 6, 1}, {}};
  std::vector<int> first_skip(static_cast<std::size_t>(first.tokens()));
  std::mt19937 engine(91);
  std::bernoulli_distribution skipped(0.4);
  for (int& flag : first_skip) flag = skipped(engine) ? 1 : 0;
  first_skip[9] = 1;   // the first decode token
  first_skip[16] = 0;  // the second
  const std::vector<int> second_skip = {0, 1, 0, 0};

  for (SkippedTokenKV policy : {SkippedTokenKV::dropped, SkippedTokenKV::written})
    for (int heads : SkipHeadCounts::values) {
      CAPTURE(describe(policy));
      CAPTURE(heads);
      CachePair<T> cache(parity.cache_shape(), first.view(), 92);
      cache.reset();
      const std::vector<int> appended = parity.check_call(policy, heads, cache, first, first_skip, 93);

      BatchSpec second{"decode after the ragged batch", first.slots, first.cached, {1, 1, 1, 1}, {}};
      for (std::size_t s = 0; s < first.slots.size(); ++s) {
        second.cached[s] += appended[s];
        second.positions.push_back(first.cached[s] + first.fresh[s]);
      }
      copy_host_cache_to_device(cache);
      parity.check_call(policy, heads, cache, second, second_skip, 94);
    }
}

// Under `dropped`, a small prefill batch whose kept tokens leave exactly one
// per sequence attends as a decode batch (split partials in the workspace):
// the layer's workspace query must cover that batch too.
template <class T>
void check_skippable_attention_kept_decode() {
  SkippableAttentionParity<T> parity;
  const BatchSpec spec{"prefill whose kept tokens form a decode batch", {0, 1, 2, 3}, {5, 3, 7, 2}, {2, 1, 1, 1}, {}};
  CachePair<T> cache(parity.cache_shape(), spec.view(), 95);
  cache.reset();
  parity.check_call(SkippedTokenKV::dropped, SkipHeadCounts::max, cache, spec, {1, 0, 0, 0, 0}, 96);
}

// Rejected calls throw before anything is written: the activation output
// stays poisoned and the residual keeps its bits.
template <class T>
void check_routed_argument_errors() {
  constexpr int tokens = 17;  // the gather/GEMM/scatter path, which needs workspace
  constexpr int width = TestWidths::min;
  constexpr int rows = routed_batch_rows;
  const RandomMLP<T> weights(parity_hidden, TestWidths::max, 4444);
  const DeviceMatrix<T> gate(weights.gate), up(weights.up), down(weights.down);
  const ElasticMLP<T, TestWidths> mlp({gate.view(), up.view(), down.view()});
  const std::vector<int> widths = {0, width};
  const RoutedMLP<T, TestWidths> routed(mlp, widths);
  cuda::Executor executor;

  const DeviceMatrix<T> batch(random_matrix<T>(rows, parity_hidden, 51));
  const HostMatrix<T> residual_before = random_matrix<T>(rows, parity_hidden, 52);
  DeviceMatrix<T> residual(residual_before);
  const DeviceMatrix<T> activations(random_matrix<T>(tokens, width, 53));
  const DeviceArray<int> indices(random_rows(tokens, rows, 54));
  const DeviceArray<int> choices(spread_choices(rows, routed.choices(), Spread::uniform, 55));
  PaddedOutput<T> h(tokens, width);
  const ConstMatrixView<T> gate_at = gate.view().first_rows(width);
  const ConstMatrixView<T> up_at = up.view().first_rows(width);
  const ConstMatrixView<T> down_at = down.view().first_cols(width);

  const std::size_t gather_bytes = executor.gather_swiglu_workspace_bytes<T>(tokens, width, parity_hidden);
  const std::size_t scatter_bytes = executor.linear_scatter_add_workspace_bytes<T>(tokens, parity_hidden, width);
  const std::size_t add_bytes = mlp.add_to_rows_workspace_bytes(executor, tokens);
  const std::size_t routed_bytes = routed.workspace_bytes(executor, rows);
  const cuda::WorkspaceBuffer small_gather(gather_bytes - 256), small_scatter(scatter_bytes - 256);
  const cuda::WorkspaceBuffer small_add(add_bytes - 256);
  const cuda::WorkspaceBuffer enough(std::max({gather_bytes, scatter_bytes, add_bytes, routed_bytes}));

  CHECK_THROWS_WITH_AS(
      executor.gather_swiglu(h.view(), batch.view(), indices.data(), gate_at, up_at, small_gather.get()),
      doctest::Contains("gather_swiglu: workspace too small"), WorkspaceError);
  CHECK_THROWS_WITH_AS(
      executor.linear_scatter_add(residual.view(), activations.view(), down_at, indices.data(), small_scatter.get()),
      doctest::Contains("linear_scatter_add: workspace too small"), WorkspaceError);
  CHECK_THROWS_WITH_AS(executor.gather_swiglu(h.view(), batch.view(), nullptr, gate_at, up_at, enough.get()),
                       doctest::Contains("gather_swiglu: the row indices are a null pointer"), Error);
  CHECK_THROWS_WITH_AS(
      executor.linear_scatter_add(residual.view(), activations.view(), down_at, nullptr, enough.get()),
      doctest::Contains("linear_scatter_add: the row indices are a null pointer"), Error);
  CHECK_THROWS_WITH_AS(
      executor.gather_swiglu(h.view(), batch.view(), indices.data(), gate.view(), up.view(), enough.get()),
      doctest::Contains("gather_swiglu: output must be"), Error);
  CHECK_THROWS_WITH_AS(executor.gather_swiglu(h.view(), batch.view().first_cols(parity_hidden - 8), indices.data(),
                                              gate_at, up_at, enough.get()),
                       doctest::Contains("columns but the gate weight has"), Error);
  CHECK_THROWS_WITH_AS(executor.linear_scatter_add(residual.view().first_cols(parity_hidden - 8),
                                                   activations.view(), down_at, indices.data(), enough.get()),
                       doctest::Contains("linear_scatter_add: output must be"), Error);
  CHECK_THROWS_WITH_AS(executor.linear_scatter_add(residual.view(), activations.view(),
                                                   down.view().first_cols(TestWidths::max - 8), indices.data(),
                                                   enough.get(), Extent<TestWidths::max>{}),
                       doctest::Contains("does not match the reduction length"), Error);

  CHECK_THROWS_AS(mlp.add_to_rows(executor, TestWidths::max, residual.view(), batch.view(), indices.data(), tokens,
                                  small_add.get()),
                  WorkspaceError);  // the size query covers the widest width
  CHECK_THROWS_AS(mlp.add_to_rows(executor, TestWidths::min + 8, residual.view(), batch.view(), indices.data(),
                                  tokens, enough.get()),
                  WidthError);
  CHECK_THROWS_WITH_AS(mlp.add_to_rows(executor, width, residual.view(), batch.view(), indices.data(), rows + 1,
                                       enough.get()),
                       doctest::Contains("rows requested from a batch of"), Error);
  CHECK_THROWS_WITH_AS(mlp.add_to_rows(executor, width, residual.view(), residual.view(), indices.data(), tokens,
                                       enough.get()),
                       doctest::Contains("the residual overlaps the input"), Error);

  const std::vector<int> wrong_counts = {rows - 1, 2};
  CHECK_THROWS_WITH_AS(routed.forward_with_counts(executor, residual.view(), batch.view(), choices.data(),
                                                  wrong_counts, enough.get()),
                       doctest::Contains("group sizes add up to 81"), Error);
  CHECK_THROWS_WITH_AS(routed.forward(executor, residual.view(), batch.view(), nullptr, enough.get()),
                       doctest::Contains("the choices are a null pointer"), Error);
  CHECK_THROWS_WITH_AS(routed.forward(executor, residual.view().first_rows(rows - 1), batch.view(), choices.data(),
                                      enough.get()),
                       doctest::Contains("RoutedMLP: residual must be"), Error);

  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(all_poison(h.to_host()));
  CHECK(bitwise_equal(residual.to_host().values, residual_before.values));
}

}  // namespace elastic::test
