// Misuse of the public layers on the host executor: every bad argument is
// rejected with the right error type, a message naming the layer's call and
// the argument at fault, and nothing written — outputs, residuals, KV caches
// and weights keep their bytes. Next to each family of bad calls stands a good
// one, so the checks cannot pass by rejecting everything. The cases are the
// findings of a misuse audit and their relatives: wrapped-around batch sums,
// counts above INT_MAX, size queries that overflow, outputs overlapping
// weights, workspaces or caches, trusted route counts, NaN configuration, and
// validation that depended on the data.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "support/attention_reference.hpp"
#include "support/misuse.hpp"

using namespace elastic;
using test::bytes_of;
using test::check_rejected;

namespace {

constexpr index_t kHidden = 64;
constexpr int kTokens = 3;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
using MLP = ElasticMLP<float, test::TestWidths>;

// A block of 256-byte aligned host memory to lay several arguments out in,
// so that they overlap on purpose.
struct Arena {
  explicit Arena(std::size_t bytes) : buffer(bytes) {
    auto* values = static_cast<float*>(buffer.get().data);
    for (std::size_t i = 0; i < bytes / sizeof(float); ++i) values[i] = 0.25f + static_cast<float>(i % 7);
  }
  float* floats(std::size_t offset = 0) const { return static_cast<float*>(buffer.get().data) + offset; }
  MatrixView<float> matrix(std::size_t offset, index_t rows, index_t cols) const {
    return {floats(offset), rows, cols};
  }
  Workspace workspace(std::size_t offset_bytes = 0) const {
    return {static_cast<std::byte*>(buffer.get().data) + offset_bytes, buffer.bytes() - offset_bytes};
  }
  test::Bytes bytes() const { return bytes_of(buffer); }

  host::WorkspaceBuffer buffer;
};

struct MLPFixture {
  host::Executor executor{2};
  test::RandomMLP<float> weights{kHidden, test::TestWidths::max, 5};
  MLP mlp{weights.weights()};
  test::HostMatrix<float> x = test::random_matrix<float>(kTokens, kHidden, 6);
  test::HostMatrix<float> y = test::random_matrix<float>(kTokens, kHidden, 7);
  host::WorkspaceBuffer workspace{mlp.workspace_bytes(executor, kTokens)};
};

}  // namespace

TEST_CASE("ElasticMLP::forward rejects outputs and workspaces that overlap what it reads") {
  MLPFixture f;
  const int width = test::TestWidths::max;
  const auto untouched = {bytes_of(f.weights.gate), bytes_of(f.weights.up), bytes_of(f.weights.down), bytes_of(f.x)};

  // y written over each weight: the weights would be corrupted silently.
  const MatrixView<float> over_gate(f.weights.gate.values.data(), kTokens, kHidden);
  check_rejected([&] { f.mlp.forward(f.executor, width, over_gate, f.x.view(), f.workspace.get()); },
                 {"ElasticMLP::forward", "output y", "gate weight"}, untouched);
  const MatrixView<float> over_up(f.weights.up.values.data() + 40 * kHidden, kTokens, kHidden);
  check_rejected([&] { f.mlp.forward(f.executor, 64, over_up, f.x.view(), f.workspace.get()); },
                 {"ElasticMLP::forward", "output y", "up weight"}, untouched);
  const MatrixView<float> over_down(f.weights.down.values.data() + 8, kTokens, kHidden, kHidden);
  check_rejected([&] { f.mlp.forward(f.executor, width, over_down, f.x.view(), f.workspace.get()); },
                 {"ElasticMLP::forward", "output y", "down weight"}, untouched);

  // y shifted by one row over x: only an exact in-place alias is allowed.
  test::HostMatrix<float> rows = test::random_matrix<float>(kTokens + 1, kHidden, 8);
  const MatrixView<float> shifted(rows.values.data() + kHidden, kTokens, kHidden);
  check_rejected([&] { f.mlp.forward(f.executor, width, shifted, rows.view().first_rows(kTokens), f.workspace.get()); },
                 {"ElasticMLP::forward", "output y", "input x", "in-place"}, {bytes_of(rows)});

  // The workspace laid over the input.
  const Arena arena(f.mlp.workspace_bytes(f.executor, kTokens) + 4096);
  const MatrixView<float> x_in_workspace = arena.matrix(0, kTokens, kHidden);
  check_rejected([&] { f.mlp.forward(f.executor, width, f.y.view(), x_in_workspace, arena.workspace()); },
                 {"ElasticMLP::forward", "workspace", "input x"}, {bytes_of(f.y), arena.bytes()});

  // In place is accepted and equals the out-of-place result bit for bit.
  f.mlp.forward(f.executor, width, f.y.view(), f.x.view(), f.workspace.get());
  test::HostMatrix<float> in_place = f.x;
  f.mlp.forward(f.executor, width, in_place.view(), in_place.view(), f.workspace.get());
  CHECK(test::bitwise_equal(in_place.values, f.y.values));
}

TEST_CASE("ElasticMLP rejects widths, shapes, workspaces and sizes before writing") {
  MLPFixture f;
  test::fill_poison(f.y);
  const auto untouched = {bytes_of(f.y), bytes_of(f.weights.gate)};
  check_rejected<WidthError>([&] { f.mlp.forward(f.executor, 100, f.y.view(), f.x.view(), f.workspace.get()); },
                             {"ElasticMLP width 100", "width set"}, untouched);
  check_rejected([&] { f.mlp.forward(f.executor, 64, f.y.view().first_rows(2), f.x.view(), f.workspace.get()); },
                 {"ElasticMLP::forward", "output y"}, untouched);
  check_rejected<WorkspaceError>(
      [&] { f.mlp.forward(f.executor, 64, f.y.view(), f.x.view(), Workspace{f.workspace.get().data, 256}); },
      {"workspace too small"}, untouched);
  // Size queries throw rather than wrap around to a small number.
  check_rejected<WorkspaceError>([&] { (void)f.mlp.workspace_bytes(f.executor, index_t{1} << 58); },
                                 {"workspace", "overflows"}, {});
  check_rejected<WorkspaceError>([&] { (void)f.mlp.add_to_rows_workspace_bytes(f.executor, index_t{1} << 60); },
                                 {"workspace", "overflows"}, {});
  CHECK(f.mlp.workspace_bytes(f.executor, index_t{1} << 20) > std::size_t{1} << 20);
}

TEST_CASE("ElasticMLP::add_to_rows rejects overlaps, counts and indices before the residual changes") {
  MLPFixture f;
  const std::vector<int> rows = {2, 0};
  host::WorkspaceBuffer workspace(f.mlp.add_to_rows_workspace_bytes(f.executor, kTokens));
  auto add = [&](MatrixView<float> residual, ConstMatrixView<float> x, const int* indices, index_t count,
                 Workspace ws) { f.mlp.add_to_rows(f.executor, 64, residual, x, indices, count, ws); };
  const auto untouched = {bytes_of(f.y), bytes_of(f.weights.gate)};
  check_rejected([&] { add(f.y.view(), ConstMatrixView<float>(f.y.view()), rows.data(), 2, workspace.get()); },
                 {"ElasticMLP::add_to_rows", "residual", "input x"}, untouched);
  check_rejected([&] { add(f.y.view(), f.x.view(), rows.data(), 4, workspace.get()); },
                 {"ElasticMLP::add_to_rows", "4 rows requested"}, untouched);
  check_rejected([&] { add(f.y.view(), f.x.view(), rows.data(), -1, workspace.get()); },
                 {"ElasticMLP::add_to_rows", "-1 rows"}, untouched);
  const std::vector<int> out_of_range = {1, 3};
  check_rejected([&] { add(f.y.view(), f.x.view(), out_of_range.data(), 2, workspace.get()); },
                 {"index 1 is 3"}, untouched);
  // The row indices inside the residual's memory.
  test::HostMatrix<float> residual = test::random_matrix<float>(kTokens, kHidden, 9);
  auto* indices_in_residual = reinterpret_cast<int*>(residual.values.data() + kHidden);
  indices_in_residual[0] = 0;
  indices_in_residual[1] = 1;
  check_rejected([&] { add(residual.view(), f.x.view(), indices_in_residual, 2, workspace.get()); },
                 {"ElasticMLP::add_to_rows", "residual", "row indices"}, {bytes_of(residual)});
  // The workspace over the residual.
  const Arena arena(f.mlp.add_to_rows_workspace_bytes(f.executor, kTokens) + 4096);
  check_rejected([&] { add(arena.matrix(0, kTokens, kHidden), f.x.view(), rows.data(), 2, arena.workspace()); },
                 {"ElasticMLP::add_to_rows", "residual", "workspace"}, {arena.bytes()});
  add(f.y.view(), f.x.view(), rows.data(), 2, workspace.get());  // the good call
}

TEST_CASE("ElasticLinear::forward rejects an output over its weight or input") {
  host::Executor executor(1);
  auto weight = test::random_matrix<float>(128, kHidden, 1);
  const ElasticLinear<float, Widths<64, 128>, AnyWidth> linear(weight.view());
  const auto x = test::random_matrix<float>(kTokens, kHidden, 2);
  const MatrixView<float> over_unread_rows(weight.values.data() + 100 * kHidden, kTokens, 64);
  check_rejected([&] { linear.forward(executor, 64, kHidden, over_unread_rows, x.view(), {}); },
                 {"ElasticLinear::forward", "output y", "weight"}, {bytes_of(weight)});
  test::HostMatrix<float> y(kTokens, 64);
  linear.forward(executor, 64, kHidden, y.view(), x.view(), {});
  CHECK(std::isfinite(y.values[0]));
}

namespace {

constexpr int kD = 64;
using Heads = Widths<2, 4>;
using Attention = ElasticAttention<float, Heads, kD>;

RopeConfig small_rope() {
  RopeConfig rope;
  rope.max_positions = 64;
  return rope;
}

struct AttentionFixture {
  host::Executor executor{2};
  test::RandomAttention<float> weights{kHidden, 4, 2, kD, 11};
  Attention attention{weights.weights(), {4, 2, small_rope(), 0.0f}};
  KVCacheShape shape = attention.kv_cache_shape(2, 16);
  host::WorkspaceBuffer cache_memory{shape.bytes_required<float>()};
  KVCacheView<float> cache{cache_memory.get(), shape};
  std::vector<int> slots = {0, 1}, cached = {0, 0}, fresh = {2, 1};
  AttentionBatch batch{slots, cached, fresh, {}};
  test::HostMatrix<float> x = test::random_matrix<float>(kTokens, kHidden, 12);
  test::HostMatrix<float> y = test::random_matrix<float>(kTokens, kHidden, 13);
  host::WorkspaceBuffer workspace{attention.workspace_bytes(executor, batch, shape)};

  test::Bytes cache_bytes() const { return bytes_of(cache_memory); }
};

}  // namespace

TEST_CASE("ElasticAttention rejects RoPE and scale configurations that would give NaN") {
  const test::RandomAttention<float> weights(kHidden, 4, 2, kD, 3);
  auto construct = [&](RopeConfig rope, float scale = 0.0f) { Attention(weights.weights(), {4, 2, rope, scale}); };
  RopeConfig rope = small_rope();
  for (float theta : {0.0f, -10000.0f, kNaN, std::numeric_limits<float>::infinity()}) {
    rope.theta = theta;
    check_rejected([&] { construct(rope); }, {"ElasticAttention", "rope.theta"}, {});
  }
  rope = small_rope();
  rope.llama3_scaling = true;
  rope.llama3.factor = kNaN;
  check_rejected([&] { construct(rope); }, {"ElasticAttention", "rope.llama3.factor"}, {});
  rope.llama3.factor = 8.0f;
  rope.llama3.high_freq_factor = rope.llama3.low_freq_factor;  // an empty band divides by zero
  check_rejected([&] { construct(rope); }, {"ElasticAttention", "low_freq_factor < high_freq_factor"}, {});
  rope.llama3.high_freq_factor = 4.0f;
  rope.llama3.original_max_positions = 0;
  check_rejected([&] { construct(rope); }, {"ElasticAttention", "original_max_positions"}, {});
  rope = small_rope();
  rope.max_positions = 0;
  check_rejected([&] { construct(rope); }, {"ElasticAttention", "rope.max_positions"}, {});
  for (float scale : {kNaN, -0.125f, std::numeric_limits<float>::infinity()})
    check_rejected([&] { construct(small_rope(), scale); }, {"ElasticAttention", "scale"}, {});
  rope = small_rope();
  rope.llama3_scaling = true;
  construct(rope, 0.125f);  // a good configuration
}

TEST_CASE("ElasticAttention::forward rejects a wrapped-around batch before it writes the cache") {
  AttentionFixture f;
  // cached + new overflows int: it used to pass the capacity check and write outside the cache.
  const std::vector<int> huge_cached = {std::numeric_limits<int>::max(), 0}, one_each = {1, 1};
  const std::vector<int> positions = {3, 4};
  const auto untouched = {bytes_of(f.y), f.cache_bytes()};
  auto forward = [&](const AttentionBatch& batch, index_t tokens) {
    f.attention.forward(f.executor, 4, f.y.view().first_rows(tokens), f.x.view().first_rows(tokens), f.cache, batch,
                        f.workspace.get());
  };
  check_rejected([&] { forward(AttentionBatch{f.slots, huge_cached, one_each, positions}, 2); },
                 {"attention batch", "sequence 0", "cache positions"}, untouched);
  check_rejected([&] { forward(AttentionBatch{f.slots, huge_cached, one_each, {}}, 2); },
                 {"attention batch", "sequence 0"}, untouched);
  // new_lengths whose sum does not fit in int.
  const std::vector<int> huge_fresh = {std::numeric_limits<int>::max(), 5};
  check_rejected([&] { forward(AttentionBatch{f.slots, f.cached, huge_fresh, {}}, 2); }, {"attention batch"},
                 untouched);
  CHECK(AttentionBatch{f.slots, f.cached, huge_fresh, {}}.tokens() == index_t{std::numeric_limits<int>::max()} + 5);
  const std::vector<int> negative = {-1, 1};
  check_rejected([&] { forward(AttentionBatch{f.slots, negative, one_each, {}}, 2); },
                 {"attention batch", "negative lengths"}, untouched);
  check_rejected<WidthError>([&] { f.attention.forward(f.executor, 3, f.y.view(), f.x.view(), f.cache, f.batch,
                                                       f.workspace.get()); },
                             {"ElasticAttention head count 3"}, untouched);
}

TEST_CASE("ElasticAttention::forward rejects outputs, caches and workspaces that overlap what it reads") {
  AttentionFixture f;
  const std::size_t ws_bytes = f.attention.workspace_bytes(f.executor, f.batch, f.shape);
  auto forward = [&](MatrixView<float> y, ConstMatrixView<float> x, const KVCacheView<float>& cache, Workspace ws) {
    f.attention.forward(f.executor, 4, y, x, cache, f.batch, ws);
  };
  // y over the cache.
  const MatrixView<float> y_in_cache(f.cache.keys(), kTokens, kHidden);
  check_rejected([&] { forward(y_in_cache, f.x.view(), f.cache, f.workspace.get()); },
                 {"ElasticAttention::forward", "output y", "KV cache"}, {f.cache_bytes()});
  // The cache over the input, and over a weight.
  const Arena arena(f.shape.bytes_required<float>() + ws_bytes + 4096);
  const KVCacheView<float> cache_over_x(arena.workspace(), f.shape);
  check_rejected([&] { forward(f.y.view(), arena.matrix(0, kTokens, kHidden), cache_over_x, f.workspace.get()); },
                 {"ElasticAttention::forward", "KV cache", "input x"}, {bytes_of(f.y), arena.bytes()});
  test::RandomAttention<float> weights(kHidden, 4, 2, kD, 11);
  const Attention layer(weights.weights(), {4, 2, small_rope(), 0.0f});
  const std::size_t offset = reinterpret_cast<std::uintptr_t>(weights.o.values.data()) % workspace_alignment;
  const Workspace in_o{reinterpret_cast<std::byte*>(weights.o.values.data()) + (offset ? workspace_alignment - offset : 0),
                       f.shape.bytes_required<float>()};
  if (weights.o.values.size() * sizeof(float) >= in_o.bytes + workspace_alignment) {
    const KVCacheView<float> cache_over_o(in_o, f.shape);
    check_rejected([&] { layer.forward(f.executor, 4, f.y.view(), f.x.view(), cache_over_o, f.batch, f.workspace.get()); },
                   {"ElasticAttention::forward", "KV cache", "o weight"}, {bytes_of(weights.o), bytes_of(f.y)});
  }
  // The workspace over the cache.
  const Workspace ws_over_cache{f.cache_memory.get().data, f.cache_memory.bytes()};
  if (ws_over_cache.bytes >= ws_bytes)
    check_rejected([&] { forward(f.y.view(), f.x.view(), f.cache, ws_over_cache); },
                   {"ElasticAttention::forward", "workspace", "KV cache"}, {bytes_of(f.y)});
  else
    check_rejected<WorkspaceError>([&] { forward(f.y.view(), f.x.view(), f.cache, ws_over_cache); }, {"workspace"},
                                   {bytes_of(f.y)});
  // The good call, in place.
  test::HostMatrix<float> in_place = f.x;
  forward(in_place.view(), in_place.view(), f.cache, f.workspace.get());
  CHECK(!test::bitwise_equal(in_place.values, f.x.values));
}

TEST_CASE("SkippableAttention::forward checks everything whatever the skip flags say") {
  AttentionFixture f;
  const SkippableAttention<float, Heads, kD> layer(f.attention, SkippedTokenKV::dropped);
  host::WorkspaceBuffer workspace(layer.workspace_bytes(f.executor, f.batch, f.shape));
  const std::vector<int> all_skipped = {1, 1, 1};
  std::vector<int> appended(2, -7);
  const auto untouched = {bytes_of(f.y), f.cache_bytes(), bytes_of(appended)};
  auto forward = [&](int heads, MatrixView<float> residual, Workspace ws) {
    layer.forward(f.executor, heads, residual, f.x.view(), f.cache, f.batch, all_skipped, appended, ws);
  };
  // Every token skipped used to return before the head count was checked.
  check_rejected<WidthError>([&] { forward(3, f.y.view(), workspace.get()); }, {"ElasticAttention head count 3"},
                             untouched);
  check_rejected<WidthError>([&] { forward(8, f.y.view(), workspace.get()); }, {"head count 8"}, untouched);
  check_rejected<WorkspaceError>([&] { forward(4, f.y.view(), Workspace{}); },
                                 {"SkippableAttention::forward", "workspace too small"}, untouched);
  const MatrixView<float> residual_in_cache(f.cache.values(), kTokens, kHidden);
  check_rejected([&] { forward(4, residual_in_cache, workspace.get()); },
                 {"SkippableAttention::forward", "residual", "KV cache"}, {f.cache_bytes(), bytes_of(appended)});
  const MatrixView<float> residual_over_q(f.weights.q.values.data(), kTokens, kHidden);
  check_rejected([&] { forward(4, residual_over_q, workspace.get()); },
                 {"SkippableAttention::forward", "residual", "q weight"}, {bytes_of(f.weights.q)});
  forward(4, f.y.view(), workspace.get());  // the good call: nothing kept, nothing appended
  CHECK(appended == std::vector<int>{0, 0});
}

namespace {

constexpr int kChoices = 5;  // skip, then each test width

struct RoutingFixture {
  host::Executor executor{2};
  test::RandomMLP<float> weights{kHidden, test::TestWidths::max, 31};
  MLP mlp{weights.weights()};
  std::vector<int> widths = {0, 64, 128, 192, 256};
  RoutedMLP<float, test::TestWidths> routed{mlp, widths};
  static constexpr int tokens = 8;
  test::HostMatrix<float> input = test::random_matrix<float>(tokens, kHidden, 32);
  test::HostMatrix<float> residual = test::random_matrix<float>(tokens, kHidden, 33);
  std::vector<int> choices = {1, 4, 0, 2, 4, 3, 1, 0};
  host::WorkspaceBuffer workspace{routed.workspace_bytes(executor, tokens)};
};

}  // namespace

TEST_CASE("RoutedMLP::forward_with_counts checks the counts against the plan") {
  RoutingFixture f;
  // The right total split wrongly: this used to run the groups at the wrong widths.
  const std::vector<int> right = {2, 2, 1, 1, 2}, wrong = {2, 1, 2, 1, 2};
  check_rejected([&] { f.routed.forward_with_counts(f.executor, f.residual.view(), f.input.view(), f.choices.data(),
                                                    wrong, f.workspace.get()); },
                 {"RoutedMLP::forward_with_counts", "choice 1", "the plan routed 2"}, {bytes_of(f.residual)});
  const std::vector<int> short_counts = {2, 2, 1, 1};
  check_rejected([&] { f.routed.forward_with_counts(f.executor, f.residual.view(), f.input.view(), f.choices.data(),
                                                    short_counts, f.workspace.get()); },
                 {"RoutedMLP::forward_with_counts", "4 group sizes", "5 choices"}, {bytes_of(f.residual)});
  const std::vector<int> with_negative = {4, 2, -1, 1, 2};
  check_rejected([&] { f.routed.forward_with_counts(f.executor, f.residual.view(), f.input.view(), f.choices.data(),
                                                    with_negative, f.workspace.get()); },
                 {"RoutedMLP::forward_with_counts", "non-negative"}, {bytes_of(f.residual)});
  test::HostMatrix<float> expected = f.residual;
  f.routed.forward(f.executor, expected.view(), f.input.view(), f.choices.data(), f.workspace.get());
  f.routed.forward_with_counts(f.executor, f.residual.view(), f.input.view(), f.choices.data(), right,
                               f.workspace.get());
  CHECK(test::bitwise_equal(f.residual.values, expected.values));
}

TEST_CASE("RoutedMLP rejects huge batches, overlaps and bad choices before the residual changes") {
  RoutingFixture f;
  // 2^32 + 2 tokens used to be narrowed to 2 and computed.
  const index_t huge = (index_t{1} << 32) + 2;
  const ConstMatrixView<float> huge_input(f.input.values.data(), huge, kHidden);
  const MatrixView<float> huge_residual(f.residual.values.data(), huge, kHidden);
  check_rejected([&] { f.routed.forward(f.executor, huge_residual, huge_input, f.choices.data(), f.workspace.get()); },
                 {"RoutedMLP", "token count", "4294967298"}, {bytes_of(f.residual)});
  check_rejected([&] { (void)f.routed.workspace_bytes(f.executor, huge); }, {"RoutedMLP", "token count"}, {});
  // The residual over the weights, the choices inside the residual.
  const MatrixView<float> over_down(f.weights.down.values.data(), RoutingFixture::tokens, kHidden);
  check_rejected([&] { f.routed.forward(f.executor, over_down, f.input.view(), f.choices.data(), f.workspace.get()); },
                 {"RoutedMLP::forward", "residual", "down weight"}, {bytes_of(f.weights.down)});
  auto* choices_in_residual = reinterpret_cast<int*>(f.residual.values.data());
  check_rejected([&] { f.routed.forward(f.executor, f.residual.view(), f.input.view(), choices_in_residual,
                                        f.workspace.get()); },
                 {"RoutedMLP::forward", "residual", "choices"}, {bytes_of(f.residual)});
  std::vector<int> bad = f.choices;
  bad[5] = kChoices;
  check_rejected([&] { f.routed.forward(f.executor, f.residual.view(), f.input.view(), bad.data(), f.workspace.get()); },
                 {"plan_routes", "token 5 chose 5"}, {bytes_of(f.residual)});
  check_rejected([&] { f.routed.forward(f.executor, f.residual.view(), f.input.view(), nullptr, f.workspace.get()); },
                 {"RoutedMLP::forward", "null"}, {bytes_of(f.residual)});
  check_rejected([&] { f.routed.forward_decode(f.executor, f.residual.view(), f.input.view(), bad.data(),
                                               f.workspace.get()); },
                 {"plan_routes", "token 5"}, {bytes_of(f.residual)});
}

TEST_CASE("Router rejects NaN configuration and outputs that overlap what it reads") {
  host::Executor executor(1);
  const auto norm = test::random_matrix<float>(1, kHidden, 41);
  const auto out = test::random_matrix<float>(kChoices, kHidden, 42);
  const Router<float, kChoices> router({norm.view(), {}, out.view()});
  constexpr int tokens = 6;
  const auto x = test::random_matrix<float>(tokens, kHidden, 43);
  host::WorkspaceBuffer workspace(router.route_workspace_bytes(executor, tokens));
  std::vector<int> choices(tokens, -3);
  const auto untouched = {bytes_of(choices)};
  check_rejected([&] { router.route(executor, choices.data(), x.view(), RouteRule::skip_above(0, kNaN), workspace.get()); },
                 {"route rule", "threshold is NaN"}, untouched);
  check_rejected([&] { router.route(executor, choices.data(), x.view(), RouteRule::top_k(1, 0, tokens + 1),
                                    workspace.get()); },
                 {"route rule", "capacity 7"}, untouched);
  check_rejected([&] { Router<float, kChoices>({norm.view(), {}, out.view()}, kNaN); }, {"Router", "epsilon"}, {});
  check_rejected([&] { Router<float, kChoices>({norm.view(), {}, out.view()}, -1e-5f); }, {"Router", "epsilon"}, {});
  // Choices written into the input, logits written over the output weight.
  test::HostMatrix<float> x_copy = x;
  check_rejected([&] { router.route(executor, reinterpret_cast<int*>(x_copy.values.data()), x_copy.view(),
                                    RouteRule::argmax(), workspace.get()); },
                 {"Router::route", "choices output", "input x"}, {bytes_of(x_copy)});
  test::HostMatrix<float> weights_copy = out;
  const MatrixView<float> logits_over_weight(weights_copy.values.data(), 1, kChoices, Router<float, kChoices>::logits_stride);
  const Router<float, kChoices> copy_router({norm.view(), {}, weights_copy.view()});
  check_rejected([&] { copy_router.logits(executor, logits_over_weight, x.view().first_rows(1), workspace.get()); },
                 {"Router::logits", "logits", "output weight"}, {bytes_of(weights_copy)});
  router.route(executor, choices.data(), x.view(), RouteRule::skip_above(0, std::numeric_limits<float>::infinity()),
               workspace.get());  // +inf: never skip
  for (int c : choices) CHECK(c != 0);
}

TEST_CASE("BudgetRouter rejects NaN budgets") {
  check_rejected([] { BudgetRouter(1, 2, {{std::nan(""), {0}}}); }, {"BudgetRouter", "budget"}, {});
  const BudgetRouter router(1, 2, {{0.5, {0}}, {1.0, {1}}});
  check_rejected([&] { (void)router.lookup(std::nan("")); }, {"BudgetRouter", "NaN"}, {});
  CHECK(router.lookup(0.75) == std::vector<int>{0});
}
