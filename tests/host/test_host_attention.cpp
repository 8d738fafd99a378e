// The host executor's attention primitive (host/attention.hpp and its
// vector kernel, host/simd/attention_tile-inl.hpp) against a float64
// reference written here, on every instruction set Highway compiled and this
// CPU runs, each forced in turn: every element type, head_dim 64 and 128,
// GQA groups of 1, 3 (SmolLM2: 9 heads over 3 KV heads), 4 (and a last group
// left short) and 20 (more heads than one tile takes); ragged batches of
// prefill, chunked prefill and decode over cached prefixes in scattered
// slots, prefill lengths that are not multiples of the kernel's tiles,
// explicit RoPE positions, and a single sequence decoding after 3000 cached
// positions (the split path, whose merge must not depend on the threads).
// Cache positions past each sequence's end hold NaN, so a read past the
// causal limit shows in the output; outputs are poisoned before each call.
// Also the tiling plan: every (token, head) pair in exactly one tile, splits
// that cover each tile's positions in whole kernel chunks.
#include <doctest/doctest.h>

#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "support/forced_target.hpp"
#include "support/test_support.hpp"

using namespace elastic;

namespace {

struct Sequence {
  int slot;
  int cached;  // positions already in the cache
  int fresh;   // new tokens
};

struct HeadLayout {
  int heads;
  int kv_heads;
  int group_size;
};

// Error budget against float64: the output's rounding to T and float32
// accumulation over a few thousand positions (the new keys are rounded to T
// in the reference as the cache rounds them).
template <class T>
constexpr double attention_tolerance() {
  if constexpr (std::is_same_v<T, float>) return 2e-6;
  else if constexpr (std::is_same_v<T, half_t>) return 5e-4;
  else return 4e-3;
}

// Error budget of a rotated key in the cache: one rounding to T of values
// below 2, after float32 rotation.
template <class T>
constexpr double key_tolerance() {
  if constexpr (std::is_same_v<T, float>) return 1e-6;
  else if constexpr (std::is_same_v<T, half_t>) return 1e-3;
  else return 8e-3;
}

template <class T>
double rounded(double x) {
  return to_float(from_float<T>(static_cast<float>(x)));
}

// One call of the primitive and its float64 reference.
template <class T, int HeadDim>
class AttentionCall {
 public:
  AttentionCall(const HeadLayout& layout, std::vector<Sequence> sequences, bool explicit_positions,
                std::uint64_t seed)
      : layout_(layout), sequences_(std::move(sequences)) {
    int slots = 0, capacity = 0;
    for (const Sequence& s : sequences_) {
      slots = std::max(slots, s.slot + 1);
      capacity = std::max(capacity, s.cached + s.fresh + 5);  // unwritten positions past every end
      first_token_.push_back(tokens_);
      tokens_ += s.fresh;
      slots_.push_back(s.slot);
      cached_.push_back(s.cached);
      fresh_.push_back(s.fresh);
    }
    // One KV head more than the call uses: the call reads the first kv_heads.
    shape_ = KVCacheShape{slots, layout.kv_heads + 1, capacity, HeadDim};
    cache_memory_.assign(2 * shape_.elements_per_tensor(), test::poison<T>());
    cache_ = KVCacheView<T>(Workspace{cache_memory_.data(), cache_memory_.size() * sizeof(T)}, shape_);
    std::mt19937_64 engine(seed);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (const Sequence& s : sequences_)
      for (int head = 0; head < layout.kv_heads; ++head)
        for (int p = 0; p < s.cached; ++p)
          for (int d = 0; d < HeadDim; ++d) {
            const std::size_t at = cache_.offset(s.slot, head, p) + d;
            cache_.keys()[at] = from_float<T>(uniform(engine));
            cache_.values()[at] = from_float<T>(uniform(engine));
          }
    q_ = test::random_matrix<T>(tokens_, index_t{layout.heads} * HeadDim, seed + 1);
    k_ = test::random_matrix<T>(tokens_, index_t{layout.kv_heads} * HeadDim, seed + 2);
    v_ = test::random_matrix<T>(tokens_, index_t{layout.kv_heads} * HeadDim, seed + 3);
    for (std::size_t s = 0; s < sequences_.size(); ++s)
      for (int j = 0; j < sequences_[s].fresh; ++j)
        positions_.push_back(explicit_positions ? sequences_[s].cached + 3 * j + 7 : sequences_[s].cached + j);
    if (!explicit_positions) positions_.clear();
    RopeConfig rope;
    rope.max_positions = 4 * capacity + 16;
    // A scale that makes the softmax peaked, so the running maximum moves.
    params_ = AttentionParams<HeadDim>::make(layout.heads, layout.kv_heads, layout.group_size,
                                             4.0f / std::sqrt(static_cast<float>(HeadDim)), rope);
  }

  AttentionBatch batch() const { return {slots_, cached_, fresh_, positions_}; }

  test::HostMatrix<T> run(host::Executor& executor) {
    test::HostMatrix<T> out = test::poisoned_matrix<T>(tokens_, index_t{layout_.heads} * HeadDim);
    executor.attention(out.view(), q_.view(), k_.view(), v_.view(), cache_, batch(), params_);
    return out;
  }

  // Checks an output of run() (the first on this call's cache) and the keys
  // and values it appended.
  void check(const test::HostMatrix<T>& out) const {
    const Reference reference = compute_reference();
    CHECK(test::relative_error(out, reference.out) < attention_tolerance<T>());
    // Each (token, head) row on its own, so a wrong short row is not hidden by the long ones.
    double worst_row = 0.0;
    for (index_t t = 0; t < tokens_; ++t)
      for (int h = 0; h < layout_.heads; ++h) {
        double diff = 0.0, norm = 0.0;
        for (int d = 0; d < HeadDim; ++d) {
          const index_t column = index_t{h} * HeadDim + d;
          const double expected = reference.out[static_cast<std::size_t>(t * out.cols + column)];
          const double found = out.at(t, column);
          diff += (found - expected) * (found - expected);
          norm += expected * expected;
        }
        worst_row = std::max(worst_row, std::isfinite(diff) ? std::sqrt(diff / norm) : INFINITY);
      }
    CHECK(worst_row < 2 * attention_tolerance<T>());
    double key_error = 0.0, value_error = 0.0;
    for (std::size_t i = 0; i < reference.cache_at.size(); ++i) {
      const std::size_t at = reference.cache_at[i];
      key_error = std::max(key_error, std::abs(to_float(cache_.keys()[at]) - reference.keys[i]));
      value_error = std::max(value_error, std::abs(to_float(cache_.values()[at]) - reference.values[i]));
    }
    CHECK(key_error < key_tolerance<T>());
    CHECK(value_error == 0.0);
  }

 private:
  struct Reference {
    std::vector<double> out;           // [tokens][heads * HeadDim]
    std::vector<std::size_t> cache_at; // cache offsets of the appended elements
    std::vector<double> keys;          // what they should hold (rotated keys before rounding)
    std::vector<double> values;
  };

  // The float32 angle position * inverse frequency (both parameters of the
  // primitive), then rotation in float64.
  void rotate(double* head, int position) const {
    for (int pair = 0; pair < HeadDim / 2; ++pair) {
      const int a = params_.rope_layout == RopeLayout::rotate_half ? pair : 2 * pair;
      const int b = params_.rope_layout == RopeLayout::rotate_half ? pair + HeadDim / 2 : 2 * pair + 1;
      const double angle = static_cast<float>(position) * params_.rope_inverse_frequencies[pair];
      const double x0 = head[a], x1 = head[b];
      head[a] = x0 * std::cos(angle) - x1 * std::sin(angle);
      head[b] = x1 * std::cos(angle) + x0 * std::sin(angle);
    }
  }

  int position(std::size_t s, int j) const {
    return positions_.empty() ? sequences_[s].cached + j : positions_[static_cast<std::size_t>(first_token_[s] + j)];
  }

  Reference compute_reference() const {
    Reference reference;
    const index_t width = index_t{layout_.heads} * HeadDim;
    reference.out.assign(static_cast<std::size_t>(tokens_ * width), 0.0);
    for (std::size_t s = 0; s < sequences_.size(); ++s) {
      const Sequence& sequence = sequences_[s];
      const int length = sequence.cached + sequence.fresh;
      // keys[g][p][d], values[g][p][d] of the whole sequence as the cache should hold them.
      std::vector<double> keys(static_cast<std::size_t>(layout_.kv_heads) * length * HeadDim);
      std::vector<double> values(keys.size());
      for (int g = 0; g < layout_.kv_heads; ++g)
        for (int p = 0; p < length; ++p) {
          double* key = &keys[(static_cast<std::size_t>(g) * length + p) * HeadDim];
          double* value = &values[(static_cast<std::size_t>(g) * length + p) * HeadDim];
          if (p < sequence.cached) {
            for (int d = 0; d < HeadDim; ++d) {
              key[d] = to_float(cache_.keys()[cache_.offset(sequence.slot, g, p) + d]);
              value[d] = to_float(cache_.values()[cache_.offset(sequence.slot, g, p) + d]);
            }
            continue;
          }
          const index_t t = first_token_[s] + p - sequence.cached;
          for (int d = 0; d < HeadDim; ++d) {
            key[d] = k_.at(t, index_t{g} * HeadDim + d);
            value[d] = v_.at(t, index_t{g} * HeadDim + d);
          }
          rotate(key, position(s, p - sequence.cached));
          for (int d = 0; d < HeadDim; ++d) {
            reference.cache_at.push_back(cache_.offset(sequence.slot, g, p) + d);
            reference.keys.push_back(key[d]);
            reference.values.push_back(value[d]);
            key[d] = rounded<T>(key[d]);
          }
        }
      for (int j = 0; j < sequence.fresh; ++j) {
        const index_t t = first_token_[s] + j;
        const int visible = sequence.cached + j + 1;
        for (int h = 0; h < layout_.heads; ++h) {
          const int g = h / layout_.group_size;
          double query[HeadDim];
          for (int d = 0; d < HeadDim; ++d) query[d] = q_.at(t, index_t{h} * HeadDim + d);
          rotate(query, position(s, j));
          std::vector<double> scores(static_cast<std::size_t>(visible));
          double max = -INFINITY;
          for (int p = 0; p < visible; ++p) {
            const double* key = &keys[(static_cast<std::size_t>(g) * length + p) * HeadDim];
            double dot = 0.0;
            for (int d = 0; d < HeadDim; ++d) dot += query[d] * key[d];
            scores[p] = dot * params_.scale;
            max = std::max(max, scores[p]);
          }
          double sum = 0.0;
          for (double& score : scores) sum += (score = std::exp(score - max));
          double* row = &reference.out[static_cast<std::size_t>(t * width + index_t{h} * HeadDim)];
          for (int p = 0; p < visible; ++p) {
            const double* value = &values[(static_cast<std::size_t>(g) * length + p) * HeadDim];
            for (int d = 0; d < HeadDim; ++d) row[d] += scores[p] / sum * value[d];
          }
        }
      }
    }
    return reference;
  }

  HeadLayout layout_;
  std::vector<Sequence> sequences_;
  std::vector<int> first_token_, slots_, cached_, fresh_, positions_;
  index_t tokens_ = 0;
  KVCacheShape shape_{};
  std::vector<T, test::AlignedAllocator<T, workspace_alignment>> cache_memory_;
  KVCacheView<T> cache_;
  test::HostMatrix<T> q_{0, 0}, k_{0, 0}, v_{0, 0};
  AttentionParams<HeadDim> params_;
};

// Prefill of lengths that straddle every tile size, chunked prefill and
// decode over cached prefixes, in slots out of order.
const std::vector<Sequence> ragged_batch = {
    {3, 0, 37}, {0, 5, 1}, {5, 130, 19}, {1, 64, 16}, {4, 0, 1}, {2, 200, 6}};

// One sequence decoding after a long context: too few tiles for the
// threads, so the positions are split.
const std::vector<Sequence> long_decode = {{1, 3000, 1}};

template <class T, int HeadDim>
void check_layout(host::Executor& executor, const HeadLayout& layout, std::uint64_t seed) {
  CAPTURE(layout.heads);
  CAPTURE(layout.kv_heads);
  CAPTURE(HeadDim);
  {
    AttentionCall<T, HeadDim> call(layout, ragged_batch, false, seed);
    call.check(call.run(executor));
  }
  {
    AttentionCall<T, HeadDim> call(layout, ragged_batch, true, seed + 10);
    call.check(call.run(executor));
  }
  {
    AttentionCall<T, HeadDim> call(layout, long_decode, false, seed + 20);
    const test::HostMatrix<T> out = call.run(executor);
    call.check(out);
    // Again on 3 threads (other splits, another merge order in time): the
    // appended K/V are the same, and the output the same to round-off.
    host::Executor three(3);
    const test::HostMatrix<T> again = call.run(three);
    call.check(again);
    // And on the first executor again: bit for bit what it gave before.
    CHECK(test::bitwise_equal(call.run(executor).values, out.values));
  }
}

template <class T>
void check_all_layouts(host::Executor& executor) {
  check_layout<T, 64>(executor, {4, 4, 1}, 100);
  check_layout<T, 64>(executor, {9, 3, 3}, 200);  // SmolLM2
  check_layout<T, 128>(executor, {8, 2, 4}, 300);
  check_layout<T, 128>(executor, {6, 2, 3}, 400);
  check_layout<T, 64>(executor, {7, 2, 4}, 500);   // the last group has three heads
  check_layout<T, 64>(executor, {20, 1, 20}, 600);  // a group wider than a tile
}

}  // namespace

TEST_CASE_TEMPLATE("host attention matches float64 on every compiled instruction set", T, float, half_t,
                   bfloat16_t) {
  host::Executor executor(2);
  test::for_each_compiled_target([&] { check_all_layouts<T>(executor); });
}

TEST_CASE("host attention plan: every query row in one tile, splits over whole chunks") {
  const std::vector<int> slots = {0, 1, 2}, cached = {0, 40, 3000}, fresh = {37, 1, 1};
  const AttentionBatch batch{slots, cached, fresh, {}};
  for (const HeadLayout layout : {HeadLayout{4, 4, 1}, HeadLayout{9, 3, 3}, HeadLayout{20, 1, 20}})
    for (const unsigned threads : {1u, 2u, 16u}) {
      CAPTURE(layout.heads);
      CAPTURE(threads);
      host::kernels::AttentionPlan plan;
      plan.build(batch, layout.heads, layout.kv_heads, layout.group_size, 64, threads);
      std::set<std::tuple<int, int>> covered;  // (token, head)
      std::size_t tasks = 0;
      for (const host::kernels::AttentionTile& tile : plan.tiles) {
        CHECK(tile.rows() <= host::simd::max_attention_rows);
        CHECK(tile.first_head / layout.group_size == tile.kv_head);
        CHECK((tile.first_head + tile.heads - 1) / layout.group_size == tile.kv_head);
        CHECK(tile.positions == cached[tile.sequence] + (tile.first_token - plan.first_token[tile.sequence]) + tile.tokens);
        for (int t = 0; t < tile.tokens; ++t)
          for (int h = 0; h < tile.heads; ++h) CHECK(covered.emplace(tile.first_token + t, tile.first_head + h).second);
        if (tile.splits > 1) CHECK(tile.split_length % host::simd::attention_chunk == 0);
        CHECK((tile.splits - 1) * tile.split_length < tile.positions);
        CHECK(tile.splits * tile.split_length >= tile.positions);
        if (plan.tiles.size() >= 4 * threads) CHECK(tile.splits == 1);
        tasks += static_cast<std::size_t>(tile.splits);
      }
      CHECK(covered.size() == static_cast<std::size_t>(batch.tokens() * layout.heads));
      CHECK(plan.tasks.size() == tasks);
    }
  // A lone long decode on two threads is split.
  const std::vector<int> one_slot = {0}, long_cached = {3000}, one = {1};
  host::kernels::AttentionPlan plan;
  plan.build(AttentionBatch{one_slot, long_cached, one, {}}, 9, 3, 3, 64, 2);
  REQUIRE(plan.tiles.size() == 3);
  for (const host::kernels::AttentionTile& tile : plan.tiles) CHECK(tile.splits > 1);
}
