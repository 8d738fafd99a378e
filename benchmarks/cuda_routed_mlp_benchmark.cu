// Microbenchmarks of a routed MLP layer (elastic::RoutedMLP) on the CUDA
// executor: what the layer costs against how much of it the tokens skip and
// against how they spread over the widths, beside the dense ElasticMLP on the
// same tokens. bfloat16, hidden size ELASTIC_BENCH_HIDDEN, the widths of
// ELASTIC_BENCH_WIDTHS (default: Llama-3-8B's 14336 in quarters), at 1, 16
// (decode: the fused row-dot kernels read the tokens by index and add into
// the residual), 64, 256, 1024 and 4096 tokens (gather, cuBLASLt,
// scatter-add), per token count:
//
//   dense_mlp/width:<k>         ElasticMLP::forward at every width
//   routed_mlp/skip:<s>         s = 0, 0.25, 0.5, 0.75 of the tokens skip,
//                               the rest run at the full width; the design
//                               target: time over skip:0 <= (1 - s) + 0.05
//   routed_mlp/widths:<all>     the tokens spread evenly over every width
//   routed_mlp/widths:<min>     every token at the smallest width
//
// and at 1 and 16 tokens routed_mlp/widths:<min>+<full> (two groups) three
// ways: through forward_with_counts (add_to_rows: gather and scatter folded
// into the projections), .../forward_decode (the group sizes stay on the
// device, every group launched at up to the whole batch) and .../unfused
// (gather_rows, ElasticMLP::forward, scatter_add_rows per group); at 16
// tokens skip:0.5/read_counts, the layer through forward(), which reads the
// group sizes back (one stream synchronisation), and skip:0.5/forward_decode.
// Every other routed case calls forward_with_counts, so its timing holds no
// host synchronisation. Names, counters and the reference each
// time_over_reference divides by: mlp_benchmark.hpp (routed MLP cases), e.g.
// elastic_cuda/bfloat16/routed_mlp/skip:0.25/hidden:4096/tokens:16. Decode
// cases also report frac_copy_bw, the others frac_gemm_peak.
// peer_torch_routing.py times torch on the same cases (those without a
// path, and read_counts).
//
// How it measures (cuda_benchmark.cuh, as the MLP benchmark): ceilings once
// at startup; calls cycle through copies of the weights, inputs and
// residuals so the weights one call reads, times the copies, exceed twice
// the L2 size (at hidden 4096 one width's weights already do); data is
// random, never zero; CUDA events bracket batches of calls, reported per
// call as manual time; medians with --benchmark_repetitions=N
// --benchmark_report_aggregates_only=true (gpu/run.sh does). Without a
// usable CUDA device the program says so and exits with status 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "bench_shapes.hpp"
#include "cuda_benchmark.cuh"
#include "mlp_benchmark.hpp"

// Inside the library's namespace, `cuda` names elastic::cuda rather than
// CCCL's top-level cuda namespace.
namespace elastic::bench {
namespace {

using T = bfloat16_t;
using BenchWidths = Widths<ELASTIC_BENCH_WIDTHS>;
constexpr index_t hidden = ELASTIC_BENCH_HIDDEN;
constexpr index_t token_counts[] = {1, 16, 64, 256, 1024, 4096};
constexpr index_t decode_tokens[] = {1, 16};
constexpr index_t read_counts_tokens = 16;
constexpr index_t max_tokens = std::ranges::max(token_counts);
static_assert(std::ranges::max(decode_tokens) <= cuda::Executor::group_max_rows &&
                  read_counts_tokens <= cuda::Executor::group_max_rows,
              "the forward_decode and fused/unfused cases are at decode sizes");

// The device, the routed layers' copies, a workspace that grows to the
// largest case seen, and the times of the cases run.
class Harness {
 public:
  Harness() : copies_(make_copies(gpu_)) {}

  Gpu& gpu() { return gpu_; }
  const RoutedCopies<T, BenchWidths, support::DeviceBuffer>& data() const { return copies_; }
  ReferenceTimes& references() { return references_; }

  Workspace workspace(std::size_t bytes) {
    if (workspace_.bytes() < bytes) {
      workspace_ = cuda::WorkspaceBuffer();  // free the smaller one first
      workspace_ = cuda::WorkspaceBuffer(bytes);
    }
    return workspace_.get();
  }

 private:
  // Measures the ceilings, then fills as many copies as the L2 rotation needs.
  static RoutedCopies<T, BenchWidths, support::DeviceBuffer> make_copies(Gpu& gpu) {
    measure_copy_bandwidth(gpu);
    measure_gemm_rate(gpu);
    const std::size_t weight_count = support::mlp_weight_count(hidden, BenchWidths::max);
    const std::size_t copies = rotation_copies(support::mlp_bytes(hidden, BenchWidths::min, 1, sizeof(T)),
                                               gpu.l2_bytes(), static_cast<double>(weight_count * sizeof(T)),
                                               gpu.free_bytes() / 2);
    RoutedCopies<T, BenchWidths, support::DeviceBuffer> result(
        copies, hidden, max_tokens, [&](T* data, std::size_t count, std::uint64_t seed, float scale) {
          support::fill_random_on_device(data, count, seed, scale, gpu.stream.get());
        });
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(gpu.stream.get()));
    return result;
  }

  Gpu gpu_;
  RoutedCopies<T, BenchWidths, support::DeviceBuffer> copies_;
  cuda::WorkspaceBuffer workspace_;
  ReferenceTimes references_;
};

void run_case(benchmark::State& state, Harness& harness, const RoutedCase& routed_case) {
  run_or_skip(state, [&] {
    Gpu& gpu = harness.gpu();
    const auto& copies = harness.data();
    RoutedLayers<T, BenchWidths> layers(routed_case, copies.mlps());
    layers.bind(gpu.executor, harness.workspace(layers.workspace_bytes(gpu.executor)));
    const index_t tokens = routed_case.tokens;
    const double seconds = time_rotating_calls(state, gpu, copies.copies(), [&](std::size_t copy) {
      layers.call(gpu.executor, copy, copies.residual(copy, tokens), copies.input(copy, tokens));
    });
    set_routed_counters(state, routed_case, seconds, copies.copies(), gpu.l2_bytes(), harness.references());
    if (cuda::Executor::is_decode(tokens))
      set_ceiling_fraction(state, "frac_copy_bw", routed_case.bytes(), gpu.copy_bytes_per_second);
    else
      set_ceiling_fraction(state, "frac_gemm_peak", routed_case.flops(), gpu.gemm_flop_per_second);
  });
}

void register_cases(Harness& harness) {
  const RoutedSeries series{token_counts, decode_tokens, read_counts_tokens};
  for (const RoutedCase& routed_case : routed_cases<BenchWidths>("elastic_cuda", dtype_of<T>, hidden, series))
    benchmark::RegisterBenchmark(routed_case.name().c_str(),
                                 [&harness, routed_case](benchmark::State& state) {
                                   run_case(state, harness, routed_case);
                                 })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
}

}  // namespace
}  // namespace elastic::bench

int main(int argc, char** argv) {
  return elastic::bench::device_benchmark_main(argc, argv, "elastic_cuda_routed_mlp_benchmark", [] {
    elastic::bench::Harness harness;
    elastic::bench::add_device_context(harness.gpu());
    benchmark::AddCustomContext("widths", elastic::bench::BenchWidths::describe());
    benchmark::AddCustomContext("weight_copies", std::to_string(harness.data().copies()));
    elastic::bench::register_cases(harness);
    benchmark::RunSpecifiedBenchmarks();
  });
}
