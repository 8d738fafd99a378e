// Elastic attention on the host executor against a float64 reference: every
// head count of the set, head_dim 64 and 128, each dtype, MHA / GQA / MQA,
// both RoPE layouts with and without Llama 3 scaling, over a schedule of
// ragged calls that mixes prefill, chunked prefill and decode. Also nesting,
// prefill/decode consistency, ragged-vs-alone equality and bad input.
#include <doctest/doctest.h>

#include <cstring>

#include "support/attention_reference.hpp"

using namespace elastic;

namespace {

constexpr index_t kHidden = 128;
constexpr int kHeads = 8;
using HeadCounts = Widths<2, 4, 6, 8>;

// One call of a schedule: for each sequence, how many new tokens.
using Step = std::vector<int>;

// Runs `steps` over sequences whose full token streams are `streams` and
// returns each sequence's outputs in order (rows of [tokens x hidden]).
template <class T, int D, class Heads>
std::vector<std::vector<T>> run_schedule(const ElasticAttention<T, Heads, D>& layer, int heads,
                                         const std::vector<test::HostMatrix<T>>& streams,
                                         const std::vector<Step>& steps, host::Executor& executor) {
  const int sequences = static_cast<int>(streams.size());
  const KVCacheShape shape = layer.kv_cache_shape(sequences + 1, 128);
  host::WorkspaceBuffer cache_memory(shape.bytes_required<T>());
  const KVCacheView<T> cache(cache_memory.get(), shape);
  std::vector<std::vector<T>> outputs(static_cast<std::size_t>(sequences));
  std::vector<int> cached(static_cast<std::size_t>(sequences), 0);
  for (const Step& step : steps) {
    std::vector<int> slots, cached_lengths, new_lengths;
    std::vector<T> packed;
    for (int s = 0; s < sequences; ++s) {
      if (step[s] == 0) continue;
      slots.push_back(sequences - s);  // slots need not follow sequence order
      cached_lengths.push_back(cached[s]);
      new_lengths.push_back(step[s]);
      const T* first = streams[s].values.data() + cached[s] * kHidden;
      packed.insert(packed.end(), first, first + step[s] * kHidden);
    }
    const AttentionBatch batch{slots, cached_lengths, new_lengths, {}};
    const int tokens = batch.tokens();
    test::HostMatrix<T> x(tokens, kHidden), y(tokens, kHidden);
    std::copy(packed.begin(), packed.end(), x.values.begin());
    test::fill_poison(y);
    host::WorkspaceBuffer workspace(layer.workspace_bytes(executor, batch, shape));
    layer.forward(executor, heads, y.view(), x.view(), cache, batch, workspace.get());
    int row = 0;
    for (int s = 0; s < sequences; ++s) {
      outputs[s].insert(outputs[s].end(), y.values.begin() + row * kHidden,
                        y.values.begin() + (row + step[s]) * kHidden);
      row += step[s];
      cached[s] += step[s];
    }
  }
  return outputs;
}

// Three calls over three sequences: ragged prefill, then decode mixed with a
// prefill chunk and a newcomer, then more of both.
const std::vector<Step> kSchedule = {{12, 5, 0}, {1, 4, 9}, {7, 1, 1}};

template <class T, int D>
void check_layer(int kv_heads, const RopeConfig& rope, std::uint64_t seed) {
  host::Executor executor;
  const test::RandomAttention<T> weights(kHidden, kHeads, kv_heads, D, seed);
  const ElasticAttention<T, HeadCounts, D> layer(weights.weights(), {kHeads, kv_heads, rope, 0.0f});
  std::vector<test::HostMatrix<T>> streams;
  for (int s = 0; s < 3; ++s) {
    int total = 0;
    for (const Step& step : kSchedule) total += step[s];
    streams.push_back(test::random_matrix<T>(total, kHidden, seed * 10 + s));
  }
  for (int heads : HeadCounts::values) {
    CAPTURE(heads);
    const auto outputs = run_schedule(layer, heads, streams, kSchedule, executor);
    for (int s = 0; s < 3; ++s) {
      CAPTURE(s);
      test::HostMatrix<T> got(streams[s].rows, kHidden);
      std::copy(outputs[s].begin(), outputs[s].end(), got.values.begin());
      const auto expected = test::reference_attention(streams[s], weights, heads, rope, 1.0 / std::sqrt(double(D)));
      CHECK(test::relative_error(got, expected) < test::attention_tolerance<T>());
    }
  }
}

RopeConfig llama3_rope() {
  RopeConfig rope;
  rope.theta = 500000.0f;
  rope.llama3_scaling = true;
  rope.llama3 = {8.0f, 1.0f, 4.0f, 64};  // a short original context so every band is exercised
  rope.max_positions = 4096;
  return rope;
}

}  // namespace

TEST_CASE_TEMPLATE("elastic attention matches float64: MHA, GQA, MQA, head_dim 64 and 128", T, float, half_t,
                   bfloat16_t) {
  for (int kv_heads : {8, 4, 1}) {
    CAPTURE(kv_heads);
    check_layer<T, 64>(kv_heads, llama3_rope(), 3);
    check_layer<T, 128>(kv_heads, llama3_rope(), 4);
  }
}

TEST_CASE_TEMPLATE("both RoPE layouts, with and without Llama 3 scaling", T, float, bfloat16_t) {
  for (RopeLayout layout : {RopeLayout::rotate_half, RopeLayout::interleaved})
    for (bool llama3 : {false, true}) {
      CAPTURE(static_cast<int>(layout));
      CAPTURE(llama3);
      RopeConfig rope = llama3_rope();
      rope.layout = layout;
      rope.llama3_scaling = llama3;
      check_layer<T, 64>(4, rope, 5);
    }
}

TEST_CASE("attention over the first h heads equals a dense layer of copies of those heads") {
  host::Executor executor;
  constexpr int D = 64;
  const test::RandomAttention<float> full(kHidden, kHeads, 4, D, 9);  // groups of 2
  const ElasticAttention<float, HeadCounts, D> elastic(full.weights(), {kHeads, 4, llama3_rope(), 0.0f});
  const std::vector<test::HostMatrix<float>> streams = {test::random_matrix<float>(10, kHidden, 1),
                                                        test::random_matrix<float>(6, kHidden, 2)};
  const std::vector<Step> steps = {{7, 6}, {1, 0}, {2, 0}};
  for (int heads : HeadCounts::values) {
    CAPTURE(heads);
    const int kv = heads / 2;
    test::RandomAttention<float> dense(kHidden, heads, kv, D, 0);
    std::copy_n(full.q.values.begin(), dense.q.values.size(), dense.q.values.begin());
    std::copy_n(full.k.values.begin(), dense.k.values.size(), dense.k.values.begin());
    std::copy_n(full.v.values.begin(), dense.v.values.size(), dense.v.values.begin());
    for (index_t r = 0; r < kHidden; ++r)
      std::copy_n(full.o.values.begin() + r * kHeads * D, heads * D, dense.o.values.begin() + r * heads * D);
    const ElasticAttention<float, AnyWidth, D> dense_layer(dense.weights(), {heads, kv, llama3_rope(), 0.0f});
    const auto nested = run_schedule(elastic, heads, streams, steps, executor);
    const auto reference = run_schedule(dense_layer, heads, streams, steps, executor);
    for (std::size_t s = 0; s < nested.size(); ++s) CHECK(test::bitwise_equal(nested[s], reference[s]));
  }
}

TEST_CASE("prefill then decode equals one longer prefill; a ragged batch equals each sequence alone") {
  host::Executor executor;
  constexpr int D = 64;
  const test::RandomAttention<bfloat16_t> weights(kHidden, kHeads, 2, D, 13);
  const ElasticAttention<bfloat16_t, HeadCounts, D> layer(weights.weights(), {kHeads, 2, llama3_rope(), 0.0f});
  const std::vector<test::HostMatrix<bfloat16_t>> streams = {test::random_matrix<bfloat16_t>(21, kHidden, 1),
                                                             test::random_matrix<bfloat16_t>(13, kHidden, 2)};
  const auto stepwise = run_schedule(layer, 6, streams, {{20, 12}, {1, 1}}, executor);
  const auto at_once = run_schedule(layer, 6, streams, {{21, 13}}, executor);
  CHECK(test::bitwise_equal(stepwise[0], at_once[0]));
  CHECK(test::bitwise_equal(stepwise[1], at_once[1]));
  const auto first_alone = run_schedule(layer, 6, {streams[0]}, {{20}, {1}}, executor);
  const auto second_alone = run_schedule(layer, 6, {streams[1]}, {{12}, {1}}, executor);
  CHECK(test::bitwise_equal(first_alone[0], stepwise[0]));
  CHECK(test::bitwise_equal(second_alone[0], stepwise[1]));
}

TEST_CASE("bad attention input is rejected before the cache or the output is written") {
  host::Executor executor;
  constexpr int D = 64;
  const test::RandomAttention<float> weights(kHidden, kHeads, 4, D, 17);
  const ElasticAttention<float, HeadCounts, D> layer(weights.weights(), {kHeads, 4, llama3_rope(), 0.0f});
  const KVCacheShape shape = layer.kv_cache_shape(2, 16);
  host::WorkspaceBuffer cache_memory(shape.bytes_required<float>());
  const KVCacheView<float> cache(cache_memory.get(), shape);
  std::memset(cache_memory.get().data, 0xff, cache_memory.bytes());  // NaN bits
  const auto x = test::random_matrix<float>(4, kHidden, 1);
  test::HostMatrix<float> y(4, kHidden);
  test::fill_poison(y);

  const std::vector<int> slots = {0, 1}, cached = {0, 14}, fits = {3, 1}, overflow = {1, 3}, short_lengths = {2, 1};
  const AttentionBatch good{slots, cached, fits, {}};
  host::WorkspaceBuffer workspace(layer.workspace_bytes(executor, good, shape));
  auto forward = [&](int heads, const AttentionBatch& batch) {
    layer.forward(executor, heads, y.view(), x.view(), cache, batch, workspace.get());
  };

  CHECK_THROWS_WITH_AS(forward(5, good), "ElasticAttention head count 5 is not in the head-count set {2, 4, 6, 8}",
                       WidthError);
  CHECK_THROWS_WITH_AS(forward(8, AttentionBatch{slots, cached, overflow, {}}),
                       "attention batch: sequence 1 needs 17 cache positions (14 cached + 3 new), but the cache holds 16",
                       Error);
  CHECK_THROWS_WITH_AS(forward(8, AttentionBatch{slots, cached, short_lengths, {}}),
                       "attention batch: new_lengths add up to 3 tokens but the activations have 4 rows", Error);
  const std::vector<int> bad_positions = {0, 1, 2, 4096};
  CHECK_THROWS_WITH_AS(forward(8, AttentionBatch{slots, cached, fits, bad_positions}),
                       "attention batch: token 3 has position 4096, expected 0 <= position < 4096", Error);
  const std::vector<int> same_slot = {1, 1};
  CHECK_THROWS_AS(forward(8, AttentionBatch{same_slot, cached, fits, {}}), Error);
  const std::vector<int> missing_slot = {0, 2};
  CHECK_THROWS_AS(forward(8, AttentionBatch{missing_slot, cached, fits, {}}), Error);
  CHECK_THROWS_AS(forward(8, AttentionBatch{std::span<const int>(slots).first(1), cached, fits, {}}), Error);
  host::WorkspaceBuffer small(workspace.bytes() - 1);
  CHECK_THROWS_AS(layer.forward(executor, 8, y.view(), x.view(), cache, good, small.get()), WorkspaceError);

  CHECK(test::all_poison(y));
  const auto* cache_bytes = static_cast<const unsigned char*>(cache_memory.get().data);
  for (std::size_t i = 0; i < cache_memory.bytes(); ++i) REQUIRE(cache_bytes[i] == 0xff);

  // The good batch goes through and writes both.
  forward(8, good);
  CHECK_FALSE(test::all_poison(y));
}

TEST_CASE("KV cache sizing and layer construction checks") {
  const KVCacheShape shape{3, 2, 100, 128};
  CHECK(shape.bytes_required<bfloat16_t>() == 2 * align_up(3 * 2 * 100 * 128 * 2, workspace_alignment));
  CHECK(KVCacheShape{3, 0, 100, 128}.bytes_required<float>() == 0);  // linear / no-op attention owns no cache
  host::WorkspaceBuffer memory(shape.bytes_required<float>() - 1);
  CHECK_THROWS_AS(KVCacheView<float>(memory.get(), shape), WorkspaceError);

  const test::RandomAttention<float> weights(kHidden, kHeads, 4, 64, 1);
  CHECK_THROWS_AS((ElasticAttention<float, HeadCounts, 64>(weights.weights(), {kHeads, 3, {}, 0.0f})), Error);
  CHECK_THROWS_WITH_AS((ElasticAttention<float, Widths<4, 16>, 64>(weights.weights(), {kHeads, 4, {}, 0.0f})),
                       "ElasticAttention head count 16 must be between 1 and the stored 8 heads", WidthError);
  CHECK_THROWS_AS((ElasticAttention<float, HeadCounts, 128>(weights.weights(), {kHeads, 4, {}, 0.0f})), Error);
}
