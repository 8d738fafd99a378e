// Microbenchmarks of elastic::ElasticMLP on the CUDA executor, each beside a
// peer: cuBLASLt running the same three sliced GEMMs (gate and up on the first
// k rows, down on the first k columns at the full row stride) and nothing
// else. Decode (1, 4, 16 tokens: our row-dot kernels) and prefill (512, 4096
// tokens: cuBLASLt plus the SwiGLU epilogue) at every width of
// ELASTIC_BENCH_WIDTHS with hidden size ELASTIC_BENCH_HIDDEN, in bfloat16 and
// float16.
//
// How it measures (the device, ceilings and timing loop are shared with the
// attention benchmark, cuda_benchmark.cuh):
//   - ceilings, once at startup: device-to-device copy bandwidth (a 1 GiB
//     cudaMemcpyAsync, bytes read + written) and the bfloat16 8192^3 GEMM rate
//     through cuBLASLt, each the median of several runs. Decode cases report
//     frac_copy_bw, prefill cases frac_gemm_peak, against these.
//   - calls cycle through copies of the weights (and inputs) so the bytes one
//     call reads, times the number of copies, exceed twice the L2 size;
//   - weights and inputs are random (never zero);
//   - CUDA events bracket a batch of calls (whole cycles over the copies, at
//     least 8 calls) and the time per call is reported as manual time, so
//     host launch gaps between calls do not count once per call;
//   - medians: run with --benchmark_repetitions=N
//     --benchmark_report_aggregates_only=true (gpu/run.sh does).
// Without a usable CUDA device the program says so and exits with status 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bench_shapes.hpp"
#include "cuda_benchmark.cuh"
#include "mlp_benchmark.hpp"

namespace {

using namespace elastic;

using BenchWidths = Widths<ELASTIC_BENCH_WIDTHS>;
constexpr index_t hidden = ELASTIC_BENCH_HIDDEN;
constexpr index_t decode_tokens[] = {1, 4, 16};
constexpr index_t prefill_tokens[] = {512, 4096};
constexpr bench::Phase phases[] = {{"decode", decode_tokens}, {"prefill", prefill_tokens}};
constexpr index_t max_tokens = std::ranges::max(prefill_tokens);
static_assert(std::ranges::max(decode_tokens) <= elastic::cuda::decode_max_tokens &&
                  std::ranges::min(prefill_tokens) > elastic::cuda::decode_max_tokens,
              "decode cases must take the executor's decode kernels, prefill cases its cuBLASLt path");
constexpr auto input_count = static_cast<std::size_t>(max_tokens * hidden);

using bench::Gpu;

// Copies of one full-width MLP and of its inputs in device memory, the
// output, the elastic workspace and the peer's intermediate buffers.
template <ElementType T>
class DeviceMlpCopies {
 public:
  explicit DeviceMlpCopies(Gpu& gpu) : workspace_(0), peer_workspace_(elastic::cuda::Executor::gemm_workspace_bytes) {
    constexpr int full = BenchWidths::max;
    const std::size_t weight_count = support::mlp_weight_count(hidden, full);
    copies_ =
        bench::rotation_copies(support::mlp_bytes(hidden, BenchWidths::min, 1, sizeof(T)), gpu.l2_bytes(),
                               static_cast<double>(weight_count * sizeof(T)), gpu.free_bytes() / 2);
    const auto fill = [&](T* data, std::size_t count, std::uint64_t seed, float scale) {
      support::fill_random_on_device(data, count, seed, scale, gpu.stream.get());
    };
    weights_ = support::DeviceBuffer<T>(copies_ * weight_count);
    inputs_ = support::DeviceBuffer<T>(copies_ * input_count);
    for (std::size_t copy = 0; copy < copies_; ++copy) {
      T* base = weights_.data() + copy * weight_count;
      support::fill_mlp_weights(base, hidden, full, 3 * copy + 1, fill);
      mlps_.emplace_back(support::mlp_weights_at<T>(base, hidden, full));
    }
    fill(inputs_.data(), inputs_.size(), 1000, 1.0f);
    output_ = support::DeviceBuffer<T>(input_count);
    workspace_ = elastic::cuda::WorkspaceBuffer(mlps_.front().workspace_bytes(gpu.executor, max_tokens));
    const auto peer_count = static_cast<std::size_t>(max_tokens) * full;
    peer_gate_ = support::DeviceBuffer<T>(peer_count);
    peer_up_ = support::DeviceBuffer<T>(peer_count);
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(gpu.stream.get()));
  }

  std::size_t copies() const { return copies_; }

  void elastic_forward(Gpu& gpu, std::size_t copy, int width, index_t tokens) {
    mlps_[copy].forward(gpu.executor, width, output(tokens), input(copy, tokens), workspace_.get());
  }

  // The peer: the same three sliced GEMMs through cuBLASLt, nothing fused.
  void peer_forward(Gpu& gpu, std::size_t copy, int width, index_t tokens) {
    const MLPWeights<T> weights = mlps_[copy].weights_at(width);
    const MatrixView<T> gate(peer_gate_.data(), tokens, width);
    const MatrixView<T> up(peer_up_.data(), tokens, width);
    const Workspace workspace = peer_workspace_.get();
    gpu.peer.run<T>(gate, input(copy, tokens), weights.gate, workspace, gpu.stream.get());
    gpu.peer.run<T>(up, input(copy, tokens), weights.up, workspace, gpu.stream.get());
    gpu.peer.run<T>(output(tokens), gate, weights.down, workspace, gpu.stream.get());
  }

 private:
  ConstMatrixView<T> input(std::size_t copy, index_t tokens) const {
    return {inputs_.data() + copy * input_count, tokens, hidden};
  }
  MatrixView<T> output(index_t tokens) const { return {output_.data(), tokens, hidden}; }

  std::size_t copies_ = 0;
  support::DeviceBuffer<T> weights_;
  support::DeviceBuffer<T> inputs_;
  support::DeviceBuffer<T> output_;
  elastic::cuda::WorkspaceBuffer workspace_;
  support::DeviceBuffer<T> peer_gate_;
  support::DeviceBuffer<T> peer_up_;
  elastic::cuda::WorkspaceBuffer peer_workspace_;
  std::vector<ElasticMLP<T, BenchWidths>> mlps_;
};

// The device, and the weight copies of each element type built on first use.
class Harness {
 public:
  Harness() {
    bench::measure_copy_bandwidth(gpu_);
    bench::measure_gemm_rate(gpu_);
  }

  Gpu& gpu() { return gpu_; }

  template <ElementType T>
  DeviceMlpCopies<T>& copies() {
    auto& slot = std::get<std::optional<DeviceMlpCopies<T>>>(copies_);
    if (!slot) slot.emplace(gpu_);
    return *slot;
  }

 private:
  Gpu gpu_;
  std::tuple<std::optional<DeviceMlpCopies<bfloat16_t>>, std::optional<DeviceMlpCopies<half_t>>> copies_;
};

enum class Impl { elastic, peer };

template <ElementType T>
void run_case(benchmark::State& state, Harness& harness, const bench::MlpCase& mlp_case, Impl impl) {
  bench::run_or_skip(state, [&] {
    Gpu& gpu = harness.gpu();
    DeviceMlpCopies<T>& set = harness.copies<T>();
    const auto call = [&](std::size_t copy) {
      if (impl == Impl::elastic)
        set.elastic_forward(gpu, copy, mlp_case.width, mlp_case.tokens);
      else
        set.peer_forward(gpu, copy, mlp_case.width, mlp_case.tokens);
    };
    bench::time_rotating_calls(state, gpu, set.copies(), call);
    bench::set_mlp_counters(state, mlp_case, set.copies(), gpu.l2_bytes());
    if (mlp_case.phase == "decode")
      bench::set_ceiling_fraction(state, "frac_copy_bw", mlp_case.bytes(), gpu.copy_bytes_per_second);
    else
      bench::set_ceiling_fraction(state, "frac_gemm_peak", mlp_case.flops(), gpu.gemm_flop_per_second);
  });
}

// Registers elastic_cuda and its cublas peer side by side for every case.
template <ElementType T>
void register_cases(Harness& harness) {
  bench::for_each_case<BenchWidths>(dtype_of<T>, hidden, phases, [&harness](bench::MlpCase mlp_case) {
    for (const auto& [name, impl] :
         {std::pair{"elastic_cuda", Impl::elastic}, std::pair{"cublas", Impl::peer}}) {
      mlp_case.impl = name;
      benchmark::RegisterBenchmark(mlp_case.name().c_str(),
                                   [&harness, mlp_case, impl = impl](benchmark::State& state) {
                                     run_case<T>(state, harness, mlp_case, impl);
                                   })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  return elastic::bench::device_benchmark_main(argc, argv, "elastic_cuda_mlp_benchmark", [] {
    Harness harness;
    bench::add_device_context(harness.gpu());
    benchmark::AddCustomContext("widths", BenchWidths::describe());
    register_cases<bfloat16_t>(harness);
    register_cases<half_t>(harness);
    benchmark::RunSpecifiedBenchmarks();
  });
}
