// CUDA-vs-host parity of attention, shared by the per-dtype test files: the
// executors' attention primitive and the ElasticAttention layer, at head_dim
// 64 and 128, every head count of AttentionHeadCounts over 8 stored heads
// with 8 (MHA), 4 (GQA, groups of 2) and 1 (MQA, one group of 8) KV heads
// (and, for the primitive, one group of 12 heads, wider than a decode
// block's largest head bucket), both RoPE layouts with and without Llama-3
// scaling, on decode batches (one sequence long enough to split into several
// chunks, one batch that needs no split) and ragged prefill batches (one of
// several query tiles per sequence; at these few heads the query tiles'
// K/V ranges split across blocks, merged in a second pass, while tiles
// that see one chunk or less write directly; for the primitive also a
// short prefill after a long cache, whose two tiles split many times),
// with
// default and explicit positions. Decode also runs at GQA group sizes 1, 3
// (SmolLM2's), 4 (Llama-3-8B's) and 8 over sequences whose lengths sit on
// both sides of the split and tile boundaries, and as a captured CUDA graph:
// plan once, capture run + advance, replay for several steps with new
// activations, each step against the uncaptured call and the host executor.
// Outputs start poisoned and sit inside wider rows whose padding must stay
// poisoned; the cache starts poisoned past each sequence's cached positions
// and in a slot no sequence uses, and every cache row the call does not
// append to must come back bit for bit. Plus the argument checks: every
// rejected call leaves the output and the cache untouched.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "cuda/device_buffer.cuh"
#include "elastic/elastic.cuh"

namespace elastic::test {

// Relative-error budget of the CUDA result against the host executor's. The
// host computes in float32 with libm; the CUDA kernels add, for float32, the
// device's __expf and sincosf and another summation order (lanes, splits,
// tiles): about 1e-6 relative each, so 1e-5. For float16/bfloat16 the prefill
// kernel also rounds the rotated queries and the softmax weights P to T for
// its tensor-core products (the host keeps both in float32), up to half an
// ulp of T each: twice the MLP budget, tolerance<T>().
template <class T>
constexpr double attention_tolerance() {
  if constexpr (std::is_same_v<T, float>) return 1e-5;
  else return 2 * tolerance<T>();
}

using AttentionHeadCounts = Widths<2, 4, 6, 8>;
inline constexpr int attention_stored_heads = AttentionHeadCounts::max;
inline constexpr int attention_kv_heads[] = {8, 4, 1};  // MHA, GQA, MQA
// One KV group larger than the largest decode head bucket (8): 12 heads
// take two blocks per group, 9 leave the second with one head.
inline constexpr int attention_large_group = 12;
inline constexpr int attention_large_group_heads[] = {9, 12};
inline constexpr int attention_slots = 5;               // slot 4 is used by two batches only
inline constexpr int attention_capacity = 1104;
inline constexpr int attention_max_positions = 8192;
inline constexpr index_t attention_output_padding = 8;  // elements past each output row, 16-byte multiple

// A batch description that owns its arrays.
struct BatchSpec {
  std::string name;
  std::vector<int> slots, cached, fresh, positions;

  AttentionBatch view() const { return {slots, cached, fresh, positions}; }
  int tokens() const { return view().tokens(); }
};

// cached + j + offset for every new token: explicit positions.
inline std::vector<int> shifted_positions(const std::vector<int>& cached, const std::vector<int>& fresh, int offset) {
  std::vector<int> positions;
  for (std::size_t s = 0; s < cached.size(); ++s)
    for (int j = 0; j < fresh[s]; ++j) positions.push_back(cached[s] + j + offset);
  return positions;
}

inline BatchSpec long_decode_batch() {
  return {"decode, one sequence of several splits", {2, 0, 3, 1}, {1100, 0, 37, 300}, {1, 1, 1, 1}, {}};
}

inline BatchSpec ragged_prefill_batch() {
  return {"ragged prefill", {3, 1, 0, 2}, {0, 40, 5, 130}, {1, 17, 64, 70}, {}};
}

// Prefill over several 128-row query tiles per sequence: full tiles, a last
// tile of one row (129 new rows), cached prefixes that are not a multiple of
// the 64-position K/V tile, and up to 17 K/V tiles per query tile.
inline BatchSpec long_ragged_prefill_batch() {
  return {"long ragged prefill", {0, 2, 4, 1}, {0, 200, 37, 900}, {300, 260, 129, 150}, {}};
}

// A short prefill after a long cached prefix beside a tiny one: few query
// tiles (3 for 16-bit types: 24 blocks unsplit at 8 heads) of which two see
// about 1100 positions, so their K/V ranges are cut into several splits (6
// each at 8 heads and head_dim 128 on 132 SMs, 17 and 18 at 2 heads),
// merged in split order; the tiny sequence's tile sees less than a chunk
// and writes its output directly.
inline BatchSpec split_prefill_batch() {
  return {"short prefill after a long cache (split K/V ranges)", {1, 3}, {900, 0}, {200, 5}, {}};
}

// Decode sequences that see 1 position, a tile's rows (tiles are 8 to 32
// rows) and the minimum split chunk (math::decode_min_chunk = 64) exactly
// and one past, a few chunks and one past, and a long range of many splits.
inline BatchSpec boundary_decode_batch() {
  const std::vector<int> visible = {1, 16, 17, 33, 64, 65, 129, 700, 2049};
  BatchSpec spec{"decode, lengths around split and tile boundaries", {}, {}, {}, {}};
  for (std::size_t s = 0; s < visible.size(); ++s) {
    spec.slots.push_back(static_cast<int>(visible.size() - 1 - s));
    spec.cached.push_back(visible[s] - 1);
    spec.fresh.push_back(1);
  }
  return spec;
}
inline constexpr int boundary_capacity = 2056;
inline constexpr int decode_group_sizes[] = {1, 3, 4, 8};

inline std::vector<BatchSpec> attention_batches() {
  BatchSpec short_decode{"decode, one split each, explicit positions", {1, 4}, {3, 60}, {1, 1}, {503, 67}};
  BatchSpec positioned = ragged_prefill_batch();
  positioned.name = "ragged prefill, explicit positions";
  positioned.positions = shifted_positions(positioned.cached, positioned.fresh, 9);
  return {long_decode_batch(), short_decode, ragged_prefill_batch(), positioned, long_ragged_prefill_batch(),
          split_prefill_batch()};
}

// Rotate-half or interleaved, with or without Llama-3 scaling.
inline RopeConfig attention_rope(int variant) {
  RopeConfig rope;
  rope.theta = 500000.0f;
  rope.layout = variant % 2 == 0 ? RopeLayout::rotate_half : RopeLayout::interleaved;
  rope.llama3_scaling = variant / 2 % 2 == 1;
  rope.max_positions = attention_max_positions;
  return rope;
}

inline std::string describe_rope(const RopeConfig& rope) {
  return std::string(rope.layout == RopeLayout::rotate_half ? "rotate-half" : "interleaved") +
         (rope.llama3_scaling ? " + llama3 scaling" : "");
}

// A KV cache in host memory and its device twin, both reset to one initial
// state: random values at each sequence's cached positions, poison elsewhere.
template <class T>
class CachePair {
 public:
  CachePair(const KVCacheShape& shape, const AttentionBatch& batch, std::uint64_t seed)
      : shape_(shape),
        bytes_(shape.bytes_required<T>()),
        initial_(bytes_),
        host_(bytes_),
        device_(bytes_) {
    const KVCacheView<T> initial = view(initial_.get());
    for (std::size_t i = 0; i < shape.elements_per_tensor(); ++i) initial.keys()[i] = initial.values()[i] = poison<T>();
    // Row 2h: keys of head h, row 2h + 1: its values (the same in every slot).
    const HostMatrix<T> random =
        random_matrix<T>(2 * shape.kv_heads, static_cast<index_t>(shape.capacity) * shape.head_dim, seed);
    for (std::size_t s = 0; s < batch.sequences(); ++s)
      for (int head = 0; head < shape.kv_heads; ++head) {
        const std::size_t offset = initial.offset(batch.cache_slots[s], head, 0);
        const auto count = static_cast<std::size_t>(batch.cached_lengths[s]) * shape.head_dim;
        std::memcpy(initial.keys() + offset, random.values.data() + 2 * head * random.cols, count * sizeof(T));
        std::memcpy(initial.values() + offset, random.values.data() + (2 * head + 1) * random.cols, count * sizeof(T));
      }
  }

  // Both caches back to the initial state.
  void reset() {
    std::memcpy(host_.get().data, initial_.get().data, bytes_);
    ELASTIC_CUDA_CHECK(cudaMemcpy(device_.get().data, initial_.get().data, bytes_, cudaMemcpyHostToDevice));
  }

  KVCacheView<T> host() const { return view(host_.get()); }
  KVCacheView<T> device() const { return view(device_.get()); }
  KVCacheView<T> initial() const { return view(initial_.get()); }

  // The device cache's contents, in `into` (a host buffer of bytes() bytes).
  KVCacheView<T> download(host::WorkspaceBuffer& into) const {
    ELASTIC_CUDA_CHECK(cudaMemcpy(into.get().data, device_.get().data, bytes_, cudaMemcpyDeviceToHost));
    return view(into.get());
  }

  const KVCacheShape& shape() const { return shape_; }
  std::size_t bytes() const { return bytes_; }

 private:
  KVCacheView<T> view(Workspace memory) const { return KVCacheView<T>(memory, shape_); }

  KVCacheShape shape_;
  std::size_t bytes_;
  host::WorkspaceBuffer initial_;
  host::WorkspaceBuffer host_;
  cuda::WorkspaceBuffer device_;
};

// Compares the device cache after a call with the host cache after the same
// call. Rows the call appends (the new positions of each sequence, in its
// first kv_heads heads) must agree to `tolerance` (keys and, unless
// exact_values, values); every other row must be bit for bit what both
// caches hold (the initial state, as the host executor leaves it).
template <class T>
void check_cache(const KVCacheView<T>& got, const KVCacheView<T>& expected, const AttentionBatch& batch, int kv_heads,
                 bool exact_values, double tolerance) {
  const KVCacheShape& shape = got.shape();
  const std::size_t row_bytes = static_cast<std::size_t>(shape.head_dim) * sizeof(T);
  // The positions each slot receives: [first_new, first_new + new_count).
  const auto slots = static_cast<std::size_t>(shape.slots);
  std::vector<int> first_new(slots, -1), new_count(slots, 0);
  for (std::size_t s = 0; s < batch.sequences(); ++s) {
    first_new[static_cast<std::size_t>(batch.cache_slots[s])] = batch.cached_lengths[s];
    new_count[static_cast<std::size_t>(batch.cache_slots[s])] = batch.new_lengths[s];
  }
  std::size_t untouched_mismatches = 0;
  std::size_t value_mismatches = 0;
  std::vector<double> key_reference, value_reference;
  HostMatrix<T> key_got(0, 0), value_got(0, 0);
  for (int slot = 0; slot < shape.slots; ++slot)
    for (int head = 0; head < shape.kv_heads; ++head)
      for (int position = 0; position < shape.capacity; ++position) {
        const std::size_t offset = got.offset(slot, head, position);
        const int first = first_new[static_cast<std::size_t>(slot)];
        const int count = new_count[static_cast<std::size_t>(slot)];
        const bool appended = head < kv_heads && first >= 0 && position >= first && position < first + count;
        if (!appended) {
          untouched_mismatches += std::memcmp(got.keys() + offset, expected.keys() + offset, row_bytes) != 0;
          untouched_mismatches += std::memcmp(got.values() + offset, expected.values() + offset, row_bytes) != 0;
          continue;
        }
        if (exact_values)
          value_mismatches += std::memcmp(got.values() + offset, expected.values() + offset, row_bytes) != 0;
        for (int d = 0; d < shape.head_dim; ++d) {
          key_reference.push_back(to_float(expected.keys()[offset + d]));
          key_got.values.push_back(got.keys()[offset + d]);
          value_reference.push_back(to_float(expected.values()[offset + d]));
          value_got.values.push_back(got.values()[offset + d]);
        }
      }
  CHECK(untouched_mismatches == 0);
  CHECK(key_reference.size() == static_cast<std::size_t>(batch.tokens()) * kv_heads * shape.head_dim);
  CHECK(relative_error(key_got, key_reference) < tolerance);
  if (exact_values)
    CHECK(value_mismatches == 0);
  else
    CHECK(relative_error(value_got, value_reference) < tolerance);
}

// An output of rows x cols inside poisoned rows of cols + padding elements.
template <class T>
struct PaddedOutput {
  PaddedOutput(index_t rows, index_t cols_)
      : cols(cols_), buffer(poisoned_device_matrix<T>(rows, cols_ + attention_output_padding)) {}

  MatrixView<T> view() { return buffer.view().first_cols(cols); }

  // The output rows; checks that the padding is still poisoned.
  HostMatrix<T> to_host() const {
    const HostMatrix<T> padded = buffer.to_host();
    HostMatrix<T> values(padded.rows, cols);
    HostMatrix<T> padding(padded.rows, attention_output_padding);
    for (index_t r = 0; r < padded.rows; ++r)
      for (index_t c = 0; c < padded.cols; ++c)
        (c < cols ? values.values[r * cols + c] : padding.values[r * attention_output_padding + c - cols]) =
            padded.values[r * padded.cols + c];
    CHECK(all_poison(padding));
    return values;
  }

  index_t cols;
  DeviceMatrix<T> buffer;
};

// Cache slots that hold every slot of `batches`, and at least attention_slots.
inline int slots_for(const std::vector<BatchSpec>& batches) {
  int slots = attention_slots;
  for (const BatchSpec& spec : batches)
    for (int slot : spec.slots) slots = std::max(slots, slot + 1);
  return slots;
}

// The attention primitive on both executors, for every batch, each of
// `head_counts` query heads in groups of group_size (the cache holds the KV
// heads of the largest count) and, cycling, every RoPE variant.
template <class T, int HeadDim>
void check_attention_primitive(int group_size, std::span<const int> head_counts,
                               const std::vector<BatchSpec>& batches = attention_batches(),
                               int capacity = attention_capacity) {
  const int max_heads = *std::max_element(head_counts.begin(), head_counts.end());
  const KVCacheShape shape{slots_for(batches), (max_heads - 1) / group_size + 1, capacity, HeadDim};
  host::Executor host_executor;
  cuda::Executor device_executor;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const AttentionBatch batch = batches[b].view();
    const int tokens = batch.tokens();
    CachePair<T> cache(shape, batch, 40 + b);
    host::WorkspaceBuffer downloaded(cache.bytes());
    int variant = static_cast<int>(b);
    for (const int heads : head_counts) {
      const int kv_heads = (heads - 1) / group_size + 1;
      const RopeConfig rope = attention_rope(variant++);
      CAPTURE(batches[b].name);
      CAPTURE(HeadDim);
      CAPTURE(heads);
      CAPTURE(kv_heads);
      CAPTURE(group_size);
      CAPTURE(describe_rope(rope));
      const auto params =
          AttentionParams<HeadDim>::make(heads, kv_heads, group_size, 1.0f / std::sqrt(float(HeadDim)), rope);
      const HostMatrix<T> q = random_matrix<T>(tokens, index_t{heads} * HeadDim, 100 + heads, 2.0f);
      const HostMatrix<T> k = random_matrix<T>(tokens, index_t{kv_heads} * HeadDim, 200 + heads);
      const HostMatrix<T> v = random_matrix<T>(tokens, index_t{kv_heads} * HeadDim, 300 + heads);
      cache.reset();

      HostMatrix<T> expected(tokens, index_t{heads} * HeadDim);
      fill_poison(expected);
      host_executor.attention(expected.view(), q.view(), k.view(), v.view(), cache.host(), batch, params);

      const DeviceMatrix<T> device_q(q), device_k(k), device_v(v);
      PaddedOutput<T> out(tokens, index_t{heads} * HeadDim);
      const cuda::WorkspaceBuffer workspace(
          device_executor.attention_workspace_bytes<T>(batch, heads, HeadDim, shape));
      device_executor.attention(out.view(), device_q.view(), device_k.view(), device_v.view(), cache.device(), batch,
                                params, workspace.get());
      ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());

      CHECK(relative_difference(out.to_host(), expected) < attention_tolerance<T>());
      check_cache(cache.download(downloaded), cache.host(), batch, kv_heads, true, tolerance<T>());
    }
  }
}

// ElasticAttention on both executors at every head count of the set, on a
// decode batch and two ragged prefill batches.
template <class T, int HeadDim>
void check_attention_layer(int kv_config) {
  constexpr index_t hidden = 64;
  constexpr index_t width = index_t{attention_stored_heads} * HeadDim;
  const float in_scale = 1.0f / std::sqrt(float(hidden));
  const HostMatrix<T> wq = random_matrix<T>(width, hidden, 11, 2.0f * in_scale);
  const HostMatrix<T> wk = random_matrix<T>(index_t{kv_config} * HeadDim, hidden, 12, in_scale);
  const HostMatrix<T> wv = random_matrix<T>(index_t{kv_config} * HeadDim, hidden, 13, in_scale);
  const HostMatrix<T> wo = random_matrix<T>(hidden, width, 14, 1.0f / std::sqrt(float(width)));
  const DeviceMatrix<T> device_wq(wq), device_wk(wk), device_wv(wv), device_wo(wo);

  AttentionConfig config;
  config.heads = attention_stored_heads;
  config.kv_heads = kv_config;
  config.rope = attention_rope(kv_config == 4 ? 1 : kv_config == 1 ? 3 : 2);
  using Layer = ElasticAttention<T, AttentionHeadCounts, HeadDim>;
  const Layer host_layer({wq.view(), wk.view(), wv.view(), wo.view()}, config);
  const Layer device_layer({device_wq.view(), device_wk.view(), device_wv.view(), device_wo.view()}, config);
  host::Executor host_executor;
  cuda::Executor device_executor;

  for (const BatchSpec& spec : {long_decode_batch(), ragged_prefill_batch(), long_ragged_prefill_batch()}) {
    const AttentionBatch batch = spec.view();
    const int tokens = batch.tokens();
    const KVCacheShape shape = host_layer.kv_cache_shape(attention_slots, attention_capacity);
    CachePair<T> cache(shape, batch, 77);
    host::WorkspaceBuffer downloaded(cache.bytes());
    const HostMatrix<T> x = random_matrix<T>(tokens, hidden, 500 + tokens);
    const DeviceMatrix<T> device_x(x);
    host::WorkspaceBuffer host_workspace(host_layer.workspace_bytes(host_executor, batch, shape));
    const cuda::WorkspaceBuffer device_workspace(device_layer.workspace_bytes(device_executor, batch, shape));
    AttentionHeadCounts::for_each([&]<int Heads>() {
      CAPTURE(spec.name);
      CAPTURE(HeadDim);
      CAPTURE(Heads);
      CAPTURE(kv_config);
      CAPTURE(describe_rope(config.rope));
      cache.reset();
      HostMatrix<T> expected(tokens, hidden);
      host_layer.forward(host_executor, Heads, expected.view(), x.view(), cache.host(), batch, host_workspace.get());
      PaddedOutput<T> y(tokens, hidden);
      device_layer.forward(device_executor, Heads, y.view(), device_x.view(), cache.device(), batch,
                           device_workspace.get());
      ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
      CHECK(relative_difference(y.to_host(), expected) < attention_tolerance<T>());
      check_cache(cache.download(downloaded), cache.host(), batch, host_layer.kv_heads_for(Heads), false,
                  attention_tolerance<T>());
    });
  }
}

// Decode at GQA group size group_size over two KV heads, on the boundary
// batch: the primitive against the host executor.
template <class T, int HeadDim>
void check_decode_group(int group_size) {
  const int heads[] = {2 * group_size};
  check_attention_primitive<T, HeadDim>(group_size, heads, {boundary_decode_batch()}, boundary_capacity);
}

// One captured decode step: run + advance of `plan` on `executor`'s stream.
class CapturedDecodeStep {
 public:
  template <class T, int HeadDim>
  CapturedDecodeStep(cuda::Executor& executor, const cuda::DecodeAttentionPlan<T, HeadDim>& plan) {
    ELASTIC_CUDA_CHECK(cudaStreamBeginCapture(executor.stream(), cudaStreamCaptureModeThreadLocal));
    executor.run_decode_attention(plan);
    executor.advance_decode_attention(plan);
    ELASTIC_CUDA_CHECK(cudaStreamEndCapture(executor.stream(), &graph_));
    ELASTIC_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }
  CapturedDecodeStep(const CapturedDecodeStep&) = delete;
  CapturedDecodeStep& operator=(const CapturedDecodeStep&) = delete;
  ~CapturedDecodeStep() {
    cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
  }

  void replay(cudaStream_t stream) const { ELASTIC_CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

// Decode captured once and replayed for `steps` steps: before each replay
// new random q, k, v go into the planned buffers and the output is poisoned;
// after it, the output must match the uncaptured attention() on a twin cache
// and the host executor on the same step's batch (lengths one longer each
// step, positions default or explicit). At the end both device caches hold
// the same appended rows, bit for bit, and agree with the host's; replays
// past max_context leave the cache past it untouched.
template <class T, int HeadDim>
void check_decode_graph(int group_size, bool explicit_positions) {
  constexpr int kKvHeads = 2;
  constexpr int kSteps = 5;
  const int heads = kKvHeads * group_size;
  BatchSpec first{"captured decode", {1, 0, 2}, {3, 130, 1000}, {1, 1, 1}, {}};
  if (explicit_positions) first.positions = shifted_positions(first.cached, first.fresh, 7);
  const int max_context = 1000 + kSteps;
  const KVCacheShape shape{attention_slots, kKvHeads, 1024, HeadDim};
  const auto params = AttentionParams<HeadDim>::make(heads, kKvHeads, group_size, 1.0f / std::sqrt(float(HeadDim)),
                                                     attention_rope(explicit_positions ? 3 : 0));
  CAPTURE(HeadDim);
  CAPTURE(group_size);
  CAPTURE(explicit_positions);
  const int tokens = first.tokens();
  CachePair<T> cache(shape, first.view(), 90);  // the captured path's device cache and the host cache
  CachePair<T> twin(shape, first.view(), 90);   // the uncaptured path's
  cache.reset();
  twin.reset();

  const cuda::Stream stream;  // a graph cannot be captured on the legacy default stream
  cuda::Executor executor(stream.get());
  cuda::Executor twin_executor;
  host::Executor host_executor;
  DeviceMatrix<T> q(random_matrix<T>(tokens, index_t{heads} * HeadDim, 1));
  DeviceMatrix<T> k(random_matrix<T>(tokens, index_t{kKvHeads} * HeadDim, 2));
  DeviceMatrix<T> v(random_matrix<T>(tokens, index_t{kKvHeads} * HeadDim, 3));
  DeviceMatrix<T> out = poisoned_device_matrix<T>(tokens, index_t{heads} * HeadDim);
  const cuda::WorkspaceBuffer workspace(
      executor.decode_attention_workspace_bytes(tokens, heads, HeadDim, max_context));

  CHECK_THROWS_WITH_AS(executor.plan_decode_attention(out.view(), q.view(), k.view(), v.view(), cache.device(),
                                                      first.view(), params, shape.capacity + 1, workspace.get()),
                       doctest::Contains("max_context must lie between"), Error);
  const auto plan = executor.plan_decode_attention(out.view(), q.view(), k.view(), v.view(), cache.device(),
                                                   first.view(), params, max_context, workspace.get());
  const CapturedDecodeStep step(executor, plan);
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());  // the resets and the plan's upload have landed

  for (int s = 0; s < kSteps; ++s) {
    CAPTURE(s);
    BatchSpec spec = first;
    for (int& length : spec.cached) length += s;
    for (int& position : spec.positions) position += s;
    const HostMatrix<T> step_q = random_matrix<T>(tokens, index_t{heads} * HeadDim, 10 + s, 2.0f);
    const HostMatrix<T> step_k = random_matrix<T>(tokens, index_t{kKvHeads} * HeadDim, 20 + s);
    const HostMatrix<T> step_v = random_matrix<T>(tokens, index_t{kKvHeads} * HeadDim, 30 + s);
    HostMatrix<T> poisoned(tokens, index_t{heads} * HeadDim);
    fill_poison(poisoned);
    const auto upload = [](DeviceMatrix<T>& into, const HostMatrix<T>& from) {
      ELASTIC_CUDA_CHECK(cudaMemcpy(into.buffer.data(), from.values.data(), from.values.size() * sizeof(T),
                                    cudaMemcpyHostToDevice));
    };
    upload(q, step_q);  // into the planned buffers: the graph reads these addresses
    upload(k, step_k);
    upload(v, step_v);
    upload(out, poisoned);
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());  // pageable copies may return before their DMA ends
    step.replay(stream.get());
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
    const HostMatrix<T> got = out.to_host();

    HostMatrix<T> expected(tokens, index_t{heads} * HeadDim);
    fill_poison(expected);
    host_executor.attention(expected.view(), step_q.view(), step_k.view(), step_v.view(), cache.host(), spec.view(),
                            params);
    DeviceMatrix<T> uncaptured = poisoned_device_matrix<T>(tokens, index_t{heads} * HeadDim);
    const cuda::WorkspaceBuffer twin_workspace(
        twin_executor.attention_workspace_bytes<T>(spec.view(), heads, HeadDim, shape));
    twin_executor.attention(uncaptured.view(), q.view(), k.view(), v.view(), twin.device(), spec.view(), params,
                            twin_workspace.get());
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(relative_difference(got, expected) < attention_tolerance<T>());
    CHECK(relative_difference(got, uncaptured.to_host()) < attention_tolerance<T>());
  }

  const BatchSpec appended{"all steps", first.slots, first.cached, {kSteps, kSteps, kSteps}, {}};
  host::WorkspaceBuffer downloaded(cache.bytes());
  host::WorkspaceBuffer twin_downloaded(twin.bytes());
  const KVCacheView<T> captured_cache = cache.download(downloaded);
  const KVCacheView<T> twin_cache = twin.download(twin_downloaded);
  CHECK(std::memcmp(captured_cache.keys(), twin_cache.keys(), shape.elements_per_tensor() * sizeof(T)) == 0);
  CHECK(std::memcmp(captured_cache.values(), twin_cache.values(), shape.elements_per_tensor() * sizeof(T)) == 0);
  check_cache(captured_cache, cache.host(), appended.view(), kKvHeads, true, tolerance<T>());

  // Replays past max_context: the longest sequence (slot 2) has reached it
  // and stops growing, so nothing lands past the positions the plan checked.
  for (int extra = 0; extra < 3; ++extra) step.replay(stream.get());
  ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  const KVCacheView<T> replayed = cache.download(downloaded);
  bool untouched = true;
  for (int head = 0; head < kKvHeads; ++head)
    for (int position = max_context; position < shape.capacity; ++position)
      for (int d = 0; d < HeadDim; ++d) {
        const std::size_t at = replayed.offset(2, head, position) + static_cast<std::size_t>(d);
        untouched = untouched && std::isnan(to_float(replayed.keys()[at])) && std::isnan(to_float(replayed.values()[at]));
      }
  CHECK(untouched);
}

// Every rejected call throws before a kernel runs: the output stays poisoned
// and the cache keeps its initial contents.
template <class T>
void check_attention_errors() {
  constexpr int kHeadDim = 64;
  constexpr int kHeads = 4;
  constexpr int kKvHeads = 2;
  const KVCacheShape shape{3, kKvHeads, 64, kHeadDim};
  const auto params = AttentionParams<kHeadDim>::make(kHeads, kKvHeads, 2, 0.125f, attention_rope(0));
  const BatchSpec prefill{"prefill", {0, 2}, {10, 3}, {1, 2}, {}};
  const BatchSpec decode{"decode", {0, 2}, {10, 3}, {1, 1}, {}};
  CachePair<T> cache(shape, prefill.view(), 5);
  cache.reset();
  cuda::Executor executor;

  for (const BatchSpec& good : {prefill, decode}) {
    CAPTURE(good.name);
    const int tokens = good.tokens();
    const DeviceMatrix<T> q(random_matrix<T>(tokens, kHeads * kHeadDim, 1));
    const DeviceMatrix<T> kv(random_matrix<T>(tokens, kKvHeads * kHeadDim, 2));
    DeviceMatrix<T> out = poisoned_device_matrix<T>(tokens, kHeads * kHeadDim);
    const std::size_t needed = executor.attention_workspace_bytes<T>(good.view(), kHeads, kHeadDim, shape);
    const cuda::WorkspaceBuffer small(needed - 256);
    const cuda::WorkspaceBuffer enough(needed);
    const auto call = [&](const BatchSpec& spec, const AttentionParams<kHeadDim>& p, Workspace workspace) {
      executor.attention(out.view(), q.view(), kv.view(), kv.view(), cache.device(), spec.view(), p, workspace);
    };
    const auto call_with_queries = [&](ConstMatrixView<T> queries) {
      executor.attention(out.view(), queries, kv.view(), kv.view(), cache.device(), good.view(), params, enough.get());
    };
    const auto with = [&](auto change) {
      BatchSpec spec = good;
      change(spec);
      return spec;
    };

    CHECK_THROWS_WITH_AS(call(good, params, small.get()), doctest::Contains("workspace too small"), WorkspaceError);
    CHECK_THROWS_WITH_AS(call(with([](BatchSpec& s) { s.cached[0] = 64; }), params, enough.get()),
                         doctest::Contains("but the cache holds 64"), Error);
    CHECK_THROWS_WITH_AS(call(with([](BatchSpec& s) { s.slots[1] = 0; }), params, enough.get()),
                         doctest::Contains("used by two sequences"), Error);
    CHECK_THROWS_WITH_AS(call(with([](BatchSpec& s) { s.slots[1] = 3; }), params, enough.get()),
                         doctest::Contains("expected 0 <= slot < 3"), Error);
    CHECK_THROWS_WITH_AS(call(with([](BatchSpec& s) { s.fresh[0] += 1; }), params, enough.get()),
                         doctest::Contains("tokens but the activations have"), Error);
    CHECK_THROWS_WITH_AS(call(with([&](BatchSpec& s) { s.positions.assign(static_cast<std::size_t>(tokens), 0);
                                                       s.positions.back() = attention_max_positions; }),
                              params, enough.get()),
                         doctest::Contains("expected 0 <= position < 8192"), Error);
    CHECK_THROWS_WITH_AS(call(with([](BatchSpec& s) { s.cached.pop_back(); }), params, enough.get()),
                         doctest::Contains("one entry per sequence"), Error);
    auto wrong_groups = params;
    wrong_groups.kv_heads = 1;
    CHECK_THROWS_WITH_AS(call(good, wrong_groups, enough.get()), doctest::Contains("need 2 KV heads, found 1"), Error);
    const DeviceMatrix<T> spare(random_matrix<T>(tokens + 1, kHeads * kHeadDim, 3));
    const ConstMatrixView<T> misaligned(spare.buffer.data() + 1, tokens, kHeads * kHeadDim);
    CHECK_THROWS_WITH_AS(call_with_queries(misaligned), doctest::Contains("16-byte aligned"), Error);

    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(all_poison(out.to_host()));
    host::WorkspaceBuffer downloaded(cache.bytes());
    const KVCacheView<T> after = cache.download(downloaded);
    const KVCacheView<T> initial = cache.initial();
    CHECK(std::memcmp(after.keys(), initial.keys(), shape.elements_per_tensor() * sizeof(T)) == 0);
    CHECK(std::memcmp(after.values(), initial.values(), shape.elements_per_tensor() * sizeof(T)) == 0);
  }
}

}  // namespace elastic::test
