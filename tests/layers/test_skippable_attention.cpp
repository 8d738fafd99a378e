// Per-token attention-layer skip under both KV policies, each against a
// float64 reference of its definition over two calls (so the cache the first
// call leaves behind matters): with `dropped`, kept tokens attend only to
// kept tokens, at their true RoPE positions; with `written`, they attend to
// every token. Skipped tokens' residual rows stay bit for bit.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "support/attention_reference.hpp"

using namespace elastic;

namespace {

constexpr index_t kHidden = 128;
constexpr int kD = 64;
using Heads = Widths<4, 8>;

template <class T>
struct Run {
  std::vector<test::HostMatrix<T>> before, after;  // residual per call
  std::vector<std::vector<int>> skip;              // per call
};

// Two calls over two sequences: prefills of 9 and 6 tokens, then 3 and 1 more.
template <class T>
Run<T> run(SkippedTokenKV policy, const test::RandomAttention<T>& weights, const test::HostMatrix<T>& stream0,
           const test::HostMatrix<T>& stream1, host::Executor& executor) {
  RopeConfig rope;
  rope.max_positions = 64;
  const ElasticAttention<T, Heads, kD> attention(weights.weights(), {8, 4, rope, 0.0f});
  const SkippableAttention<T, Heads, kD> layer(attention, policy);
  const KVCacheShape shape = attention.kv_cache_shape(2, 32);
  host::WorkspaceBuffer cache_memory(shape.bytes_required<T>());
  const KVCacheView<T> cache(cache_memory.get(), shape);
  std::mt19937 engine(7);
  std::bernoulli_distribution skipped(0.4);
  Run<T> result;
  std::vector<int> cached = {0, 0};  // this layer's lengths
  int consumed0 = 0, consumed1 = 0;
  for (const auto& [n0, n1] : {std::pair{9, 6}, std::pair{3, 1}}) {
    test::HostMatrix<T> x(n0 + n1, kHidden);
    std::copy_n(stream0.values.begin() + consumed0 * kHidden, n0 * kHidden, x.values.begin());
    std::copy_n(stream1.values.begin() + consumed1 * kHidden, n1 * kHidden, x.values.begin() + n0 * kHidden);
    std::vector<int> positions;
    for (int j = 0; j < n0; ++j) positions.push_back(consumed0 + j);
    for (int j = 0; j < n1; ++j) positions.push_back(consumed1 + j);
    std::vector<int> skip(static_cast<std::size_t>(n0 + n1));
    for (int& flag : skip) flag = skipped(engine) ? 1 : 0;
    const std::vector<int> slots = {0, 1}, fresh = {n0, n1};
    const AttentionBatch batch{slots, cached, fresh, positions};
    auto residual = test::random_matrix<T>(n0 + n1, kHidden, 50 + consumed0);
    result.before.push_back(residual);
    std::vector<int> appended(2);
    host::WorkspaceBuffer workspace(layer.workspace_bytes(executor, batch, shape));
    layer.forward(executor, 8, residual.view(), x.view(), cache, batch, skip, appended, workspace.get());
    result.after.push_back(residual);
    result.skip.push_back(skip);
    for (int s = 0; s < 2; ++s) cached[s] += appended[s];
    consumed0 += n0;
    consumed1 += n1;
  }
  if (policy == SkippedTokenKV::written) CHECK(cached == std::vector<int>{12, 7});
  return result;
}

}  // namespace

TEST_CASE("attention skip: both KV policies equal float64 references of their definitions") {
  host::Executor executor;
  const test::RandomAttention<float> weights(kHidden, 8, 4, kD, 3);
  const auto stream0 = test::random_matrix<float>(12, kHidden, 10);
  const auto stream1 = test::random_matrix<float>(7, kHidden, 11);
  RopeConfig rope;
  rope.max_positions = 64;
  for (SkippedTokenKV policy : {SkippedTokenKV::dropped, SkippedTokenKV::written}) {
    CAPTURE(static_cast<int>(policy));
    const Run<float> result = run(policy, weights, stream0, stream1, executor);
    // Per sequence: rows of each call, in stream order, with their skip flags.
    for (int s = 0; s < 2; ++s) {
      const auto& stream = s == 0 ? stream0 : stream1;
      std::vector<std::pair<int, int>> rows;  // (call, row in call) per stream token
      std::vector<int> kept_positions;
      for (int call = 0; call < 2; ++call) {
        const int n0 = call == 0 ? 9 : 3, n1 = call == 0 ? 6 : 1;
        const int first = s == 0 ? 0 : n0, count = s == 0 ? n0 : n1;
        for (int j = 0; j < count; ++j) rows.push_back({call, first + j});
      }
      // The tokens this sequence's keys come from, under the policy.
      test::HostMatrix<float> visible(0, kHidden);
      std::vector<int> stream_index;
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const bool skipped = result.skip[rows[i].first][rows[i].second] != 0;
        if (policy == SkippedTokenKV::dropped && skipped) continue;
        stream_index.push_back(static_cast<int>(i));
      }
      test::HostMatrix<float> x(static_cast<index_t>(stream_index.size()), kHidden);
      for (std::size_t k = 0; k < stream_index.size(); ++k) {
        std::copy_n(stream.values.begin() + stream_index[k] * kHidden, kHidden, x.values.begin() + k * kHidden);
        kept_positions.push_back(stream_index[k]);
      }
      const auto expected = test::reference_attention(x, weights, 8, rope, 1.0 / std::sqrt(double(kD)), kept_positions);
      double diff = 0.0, norm = 0.0;
      for (std::size_t k = 0; k < stream_index.size(); ++k) {
        const auto [call, row] = rows[static_cast<std::size_t>(stream_index[k])];
        if (result.skip[call][row] != 0) continue;  // written policy: its output is dropped
        for (index_t c = 0; c < kHidden; ++c) {
          const double added = result.after[call].at(row, c) - result.before[call].at(row, c);
          diff += (added - expected[k * kHidden + c]) * (added - expected[k * kHidden + c]);
          norm += expected[k * kHidden + c] * expected[k * kHidden + c];
        }
      }
      CHECK(std::sqrt(diff / norm) < 1e-5);
    }
    // Skipped rows pass through unchanged.
    for (int call = 0; call < 2; ++call)
      for (std::size_t row = 0; row < result.skip[call].size(); ++row)
        if (result.skip[call][row] != 0)
          for (index_t c = 0; c < kHidden; ++c)
            REQUIRE(result.after[call].at(static_cast<index_t>(row), c) ==
                    result.before[call].at(static_cast<index_t>(row), c));
  }
}

TEST_CASE("attention skip: the dropped policy grows the cache by kept tokens only; bad flags are rejected") {
  host::Executor executor;
  const test::RandomAttention<bfloat16_t> weights(kHidden, 8, 4, kD, 5);
  RopeConfig rope;
  rope.max_positions = 64;
  const ElasticAttention<bfloat16_t, Heads, kD> attention(weights.weights(), {8, 4, rope, 0.0f});
  const SkippableAttention<bfloat16_t, Heads, kD> layer(attention, SkippedTokenKV::dropped);
  const KVCacheShape shape = attention.kv_cache_shape(1, 8);
  host::WorkspaceBuffer cache_memory(shape.bytes_required<bfloat16_t>());
  const KVCacheView<bfloat16_t> cache(cache_memory.get(), shape);
  const auto x = test::random_matrix<bfloat16_t>(5, kHidden, 1);
  auto residual = test::random_matrix<bfloat16_t>(5, kHidden, 2);
  const std::vector<int> slots = {0}, cached = {0}, fresh = {5}, skip = {1, 0, 1, 1, 0};
  const AttentionBatch batch{slots, cached, fresh, {}};
  host::WorkspaceBuffer workspace(layer.workspace_bytes(executor, batch, shape));
  std::vector<int> appended(1, -1);
  layer.forward(executor, 4, residual.view(), x.view(), cache, batch, skip, appended, workspace.get());
  CHECK(appended == std::vector<int>{2});

  const std::vector<int> short_skip = {0, 0};
  CHECK_THROWS_WITH_AS(
      layer.forward(executor, 4, residual.view(), x.view(), cache, batch, short_skip, appended, workspace.get()),
      "SkippableAttention::forward: 2 skip flags for 5 tokens", Error);
}
