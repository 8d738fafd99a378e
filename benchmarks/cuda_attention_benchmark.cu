// Microbenchmarks of the CUDA executor's attention primitive
// (elastic::cuda::Executor::attention: metadata upload, RoPE + append of the
// new keys and values, attention), in bfloat16 at head_dim 128 with
// Llama-3-8B's 32 query / 8 KV heads and, as a head-scaling series, every
// head count of AttentionHeads with groups of 4 (KV heads = heads / 4):
//
//   decode   batch 1 and 32, one new token per sequence that sees `context`
//            positions (context - 1 cached, context 1k, 4k, 32k):
//            flash-decoding through attention(), host planning included.
//            bytes = the K/V rows read, 2 * kv_heads * context * head_dim *
//            2 bytes per sequence; frac_copy_bw against the measured
//            device-to-device copy bandwidth.
//   decode_graph  the same decode step planned once and captured in a CUDA
//            graph (run_decode_attention: append + split plan + attention +
//            combine), replayed: the device time without the per-call host
//            work, at 32 query heads.
//   prefill  one sequence of `context` new tokens on an empty cache (the
//            causal tiled kernel; when its query tiles alone would leave
//            SMs idle, as at 512 tokens x 8-32 heads, their K/V ranges
//            split across blocks and a second pass merges them); flop = 2 *
//            2 * heads * head_dim * n * (n + 1) / 2; frac_gemm_peak against
//            the measured bf16 GEMM rate; blocks = the attention grid and
//            split_chunk = the K/V positions per split (the whole range of
//            the longest tile when nothing splits).
//
// Names follow the host attention benchmark's, e.g.
// elastic_cuda/bfloat16/decode/heads:32/kv_heads:8/head_dim:128/batch:1/context:4096;
// names that differ only in heads/kv_heads are a head-scaling series.
// peer_torch_attention.py times torch's scaled_dot_product_attention on the
// same shapes under the same names with impl torch_sdpa.
//
// How it measures (cuda_benchmark.cuh): ceilings once at startup; decode
// calls cycle through copies of the cache (other cache slots) so the K/V one
// call reads, times the copies, exceed twice the L2 size; data is random,
// never zero; CUDA events bracket batches of calls, reported per call as
// manual time; medians with --benchmark_repetitions=N
// --benchmark_report_aggregates_only=true. Without a usable CUDA device the
// program says so and exits with status 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cuda_benchmark.cuh"
#include "mlp_benchmark.hpp"

namespace {

using namespace elastic;
using T = bfloat16_t;

constexpr int head_dim = 128;
using AttentionHeads = Widths<8, 16, 24, 32>;
constexpr int group_size = 4;  // Llama-3-8B: 32 query heads over 8 KV heads
constexpr int max_kv_heads = AttentionHeads::max / group_size;
constexpr int decode_batches[] = {1, 32};
constexpr int decode_contexts[] = {1024, 4096, 32768};
constexpr int prefill_tokens[] = {512, 1024, 2048, 4096, 8192};
constexpr int max_positions = 131072;  // Llama-3.1's context with its RoPE scaling

struct AttentionCase {
  std::string_view phase;  // decode, decode_graph or prefill
  int batch;               // sequences
  int context;             // positions visible to the last token of each sequence
  int new_tokens;          // per sequence
  int heads;

  int kv_heads() const { return heads / group_size; }
  int cached() const { return context - new_tokens; }

  // K/V bytes the attention must read: every position of every sequence.
  double kv_bytes() const { return 2.0 * kv_heads() * static_cast<double>(context) * head_dim * sizeof(T) * batch; }

  // Score and value products over the causally visible positions: token j
  // of a sequence sees cached + j + 1 of them.
  double flops() const {
    const double n = new_tokens;
    const double visible = n * cached() + n * (n + 1) / 2;
    return 2.0 * 2.0 * heads * head_dim * visible * batch;
  }

  std::string name() const {
    return detail::concat("elastic_cuda/bfloat16/", phase, "/heads:", heads, "/kv_heads:", kv_heads(),
                          "/head_dim:", head_dim, "/batch:", batch, "/context:", context);
  }
};

AttentionParams<head_dim> llama3_params(int heads) {
  RopeConfig rope;
  rope.theta = 500000.0f;
  rope.llama3_scaling = true;
  rope.max_positions = max_positions;
  return AttentionParams<head_dim>::make(heads, heads / group_size, group_size,
                                         1.0f / std::sqrt(static_cast<float>(head_dim)), rope);
}

// A CUDA graph of what enqueue() puts on `stream`, instantiated.
class CapturedGraph {
 public:
  template <class Enqueue>
  CapturedGraph(cudaStream_t stream, Enqueue&& enqueue) {
    ELASTIC_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    enqueue();
    ELASTIC_CUDA_CHECK(cudaStreamEndCapture(stream, &graph_));
    ELASTIC_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }
  CapturedGraph(CapturedGraph&& other) noexcept
      : graph_(std::exchange(other.graph_, nullptr)), exec_(std::exchange(other.exec_, nullptr)) {}
  CapturedGraph& operator=(CapturedGraph&&) = delete;
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;
  ~CapturedGraph() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    if (graph_ != nullptr) cudaGraphDestroy(graph_);
  }

  void replay(cudaStream_t stream) const { ELASTIC_CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

// One cache with `copies` groups of `batch` slots of capacity `context`, the
// batch description of each group, random q/k/v for the largest head count,
// an output and a workspace that fits every call.
class AttentionSetup {
 public:
  AttentionSetup(bench::Gpu& gpu, int batch, int context, int tokens, std::size_t copies)
      : batch_(batch),
        context_(context),
        tokens_(tokens),
        copies_(copies),
        shape_{batch * static_cast<int>(copies), max_kv_heads, context, head_dim},
        cache_memory_(shape_.bytes_required<T>()),
        cache_(cache_memory_.get(), shape_) {
    const std::size_t rows = static_cast<std::size_t>(batch) * tokens;
    q_ = support::DeviceBuffer<T>(rows * AttentionHeads::max * head_dim);
    kv_ = support::DeviceBuffer<T>(rows * max_kv_heads * head_dim * 2);
    out_ = support::DeviceBuffer<T>(rows * AttentionHeads::max * head_dim);
    const auto fill = [&](T* data, std::size_t count, std::uint64_t seed) {
      support::fill_random_on_device(data, count, seed, 1.0f, gpu.stream.get());
    };
    fill(cache_.keys(), shape_.elements_per_tensor(), 1);
    fill(cache_.values(), shape_.elements_per_tensor(), 2);
    fill(q_.data(), q_.size(), 3);
    fill(kv_.data(), kv_.size(), 4);

    for (std::size_t copy = 0; copy < copies; ++copy) {
      std::vector<int> slots(static_cast<std::size_t>(batch));
      for (int s = 0; s < batch; ++s) slots[static_cast<std::size_t>(s)] = static_cast<int>(copy) * batch + s;
      slots_.push_back(std::move(slots));
    }
    cached_.assign(static_cast<std::size_t>(batch), context - tokens);
    fresh_.assign(static_cast<std::size_t>(batch), tokens);
    workspace_ = elastic::cuda::WorkspaceBuffer(
        gpu.executor.attention_workspace_bytes<T>(this->batch(0), AttentionHeads::max, head_dim, shape_));
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(gpu.stream.get()));
  }

  bool fits(int batch, int context, int tokens) const {
    return batch == batch_ && context == context_ && tokens == tokens_;
  }
  std::size_t copies() const { return copies_; }

  AttentionBatch batch(std::size_t copy) const { return {slots_[copy], cached_, fresh_, {}}; }

  void call(bench::Gpu& gpu, std::size_t copy, const AttentionParams<head_dim>& params) {
    const Views views = this->views(params);
    gpu.executor.attention(views.out, views.q, views.k, views.v, cache_, batch(copy), params, workspace_.get());
  }

  // One decode step per copy, planned (each in a workspace of its own) and
  // captured on the executor's stream; replay(copy) runs it.
  void capture(bench::Gpu& gpu, const AttentionParams<head_dim>& params) {
    const Views views = this->views(params);
    graphs_.clear();  // before the workspaces they read
    plan_workspaces_.clear();
    plan_workspaces_.reserve(copies_);
    for (std::size_t copy = 0; copy < copies_; ++copy) {
      plan_workspaces_.emplace_back(
          gpu.executor.decode_attention_workspace_bytes(batch_, AttentionHeads::max, head_dim, context_));
      const auto plan = gpu.executor.plan_decode_attention(views.out, views.q, views.k, views.v, cache_, batch(copy),
                                                           params, context_, plan_workspaces_.back().get());
      graphs_.emplace_back(gpu.stream.get(), [&] { gpu.executor.run_decode_attention(plan); });
    }
  }
  void replay(bench::Gpu& gpu, std::size_t copy) const { graphs_[copy].replay(gpu.stream.get()); }

 private:
  struct Views {
    MatrixView<T> out;
    ConstMatrixView<T> q, k, v;
  };

  Views views(const AttentionParams<head_dim>& params) {
    const index_t rows = index_t{batch_} * tokens_;
    const index_t q_width = index_t{params.heads} * head_dim;
    const index_t kv_width = index_t{params.kv_heads} * head_dim;
    return {MatrixView<T>(out_.data(), rows, q_width), ConstMatrixView<T>(q_.data(), rows, q_width),
            ConstMatrixView<T>(kv_.data(), rows, kv_width),
            ConstMatrixView<T>(kv_.data() + rows * kv_width, rows, kv_width)};
  }

  int batch_, context_, tokens_;
  std::size_t copies_;
  KVCacheShape shape_;
  elastic::cuda::WorkspaceBuffer cache_memory_;
  KVCacheView<T> cache_;
  support::DeviceBuffer<T> q_, kv_, out_;
  elastic::cuda::WorkspaceBuffer workspace_{0};
  std::vector<std::vector<int>> slots_;
  std::vector<int> cached_, fresh_;
  std::vector<elastic::cuda::WorkspaceBuffer> plan_workspaces_;
  std::vector<CapturedGraph> graphs_;
};

// The device and the setup of the shape being measured (cases of one shape
// are registered together, so each setup is built once).
class Harness {
 public:
  Harness() {
    bench::measure_copy_bandwidth(gpu_);
    bench::measure_gemm_rate(gpu_);
  }

  bench::Gpu& gpu() { return gpu_; }

  AttentionSetup& setup(const AttentionCase& c) {
    if (!setup_ || !setup_->fits(c.batch, c.context, c.new_tokens)) {
      setup_.reset();  // free the previous shape's cache first
      setup_.emplace(gpu_, c.batch, c.context, c.new_tokens, copies_for(c));
    }
    return *setup_;
  }

 private:
  // Decode rotates through enough cache copies that the smallest head count's
  // K/V come from memory; prefill reads far more than L2 in any case.
  std::size_t copies_for(const AttentionCase& c) const {
    if (c.phase == "prefill") return 1;
    AttentionCase smallest = c;
    smallest.heads = AttentionHeads::min;
    const double copy_bytes = c.kv_bytes() * max_kv_heads / c.kv_heads();
    return bench::rotation_copies(smallest.kv_bytes(), gpu_.l2_bytes(), copy_bytes, gpu_.free_bytes() / 2);
  }

  bench::Gpu gpu_;
  std::optional<AttentionSetup> setup_;
};

void run_case(benchmark::State& state, Harness& harness, const AttentionCase& c) {
  bench::run_or_skip(state, [&] {
    bench::Gpu& gpu = harness.gpu();
    AttentionSetup& setup = harness.setup(c);
    const AttentionParams<head_dim> params = llama3_params(c.heads);
    if (c.phase == "decode_graph") {
      setup.capture(gpu, params);
      bench::time_rotating_calls(state, gpu, setup.copies(), [&](std::size_t copy) { setup.replay(gpu, copy); });
    } else {
      bench::time_rotating_calls(state, gpu, setup.copies(),
                                 [&](std::size_t copy) { setup.call(gpu, copy, params); });
    }
    using benchmark::Counter;
    state.counters["bytes_per_second"] = Counter(c.kv_bytes(), Counter::kIsIterationInvariantRate);
    state.counters["flop_per_second"] = Counter(c.flops(), Counter::kIsIterationInvariantRate);
    state.counters["head_fraction"] = static_cast<double>(c.heads) / AttentionHeads::max;
    state.counters["rotation_over_cache"] =
        static_cast<double>(setup.copies()) * c.kv_bytes() / std::max(gpu.l2_bytes(), 1.0);
    if (c.phase != "prefill") {
      bench::set_ceiling_fraction(state, "frac_copy_bw", c.kv_bytes(), gpu.copy_bytes_per_second);
    } else {
      bench::set_ceiling_fraction(state, "frac_gemm_peak", c.flops(), gpu.gemm_flop_per_second);
      const elastic::cuda::PrefillSplitPlan plan =
          elastic::cuda::plan_prefill_splits<T>(setup.batch(0), c.heads, head_dim, gpu.executor.multiprocessors());
      state.counters["blocks"] = static_cast<double>(c.heads) * plan.work;
      state.counters["split_chunk"] = plan.chunk;
    }
  });
}

void register_case(Harness& harness, const AttentionCase& c) {
  benchmark::RegisterBenchmark(c.name().c_str(),
                               [&harness, c](benchmark::State& state) { run_case(state, harness, c); })
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

void register_cases(Harness& harness) {
  for (const int batch : decode_batches)
    for (const int context : decode_contexts) {
      for (const int heads : AttentionHeads::values) register_case(harness, {"decode", batch, context, 1, heads});
      register_case(harness, {"decode_graph", batch, context, 1, AttentionHeads::max});
    }
  for (const int tokens : prefill_tokens)
    for (const int heads : AttentionHeads::values) register_case(harness, {"prefill", 1, tokens, tokens, heads});
}

}  // namespace

int main(int argc, char** argv) {
  return elastic::bench::device_benchmark_main(argc, argv, "elastic_cuda_attention_benchmark", [] {
    Harness harness;
    bench::add_device_context(harness.gpu());
    benchmark::AddCustomContext("attention", detail::concat("bfloat16, head_dim ", head_dim, ", query heads ",
                                                            AttentionHeads::describe(), " in groups of ", group_size));
    benchmark::AddCustomContext("decode_min_chunk", std::to_string(elastic::math::decode_min_chunk));
    register_cases(harness);
    benchmark::RunSpecifiedBenchmarks();
  });
}
