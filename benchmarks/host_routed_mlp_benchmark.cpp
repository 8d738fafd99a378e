// Microbenchmarks of a routed MLP layer (elastic::RoutedMLP) on the host
// executor: what the layer costs against how much of it the tokens skip and
// against how they spread over the widths, beside the dense ElasticMLP on the
// same tokens. bfloat16, hidden size ELASTIC_BENCH_HOST_HIDDEN, the widths of
// ELASTIC_BENCH_HOST_WIDTHS, at 1, 16 and 64 tokens (a full-width token
// costs milliseconds here), per token count:
//
//   dense_mlp/width:<k>         ElasticMLP::forward at every width
//   routed_mlp/skip:<s>         s = 0, 0.25, 0.5, 0.75 of the tokens skip,
//                               the rest run at the full width; the design
//                               target: time over skip:0 <= (1 - s) + 0.05
//   routed_mlp/widths:<all>     the tokens spread evenly over every width
//   routed_mlp/widths:<min>     every token at the smallest width
//
// and at 1 and 16 tokens routed_mlp/widths:<min>+<full> (two groups) three
// ways: through forward_with_counts (add_to_rows: the row dots read the
// tokens by index and add into the residual), .../forward_decode (the row
// dots read each group's size from the plan) and .../unfused (gather_rows,
// ElasticMLP::forward, scatter_add_rows per group); at 16 tokens
// skip:0.5/read_counts, the layer through forward(), which reads the group
// sizes back (a copy on the host), and skip:0.5/forward_decode. Every other
// routed case calls forward_with_counts. Names, counters and the reference
// each time_over_reference divides by: mlp_benchmark.hpp (routed MLP cases),
// e.g. elastic_host/bfloat16/routed_mlp/skip:0.25/hidden:1024/tokens:16.
//
// Calls cycle through copies of the weights, inputs and residuals so that,
// within a memory budget, the weight bytes read between two reads of one
// copy exceed twice the last-level cache (as the host MLP benchmark does).
// Each call is timed by the wall clock (the executor computes on a thread
// pool, so the calling thread's CPU time would undercount) and reported as
// manual time.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "bench_shapes.hpp"
#include "mlp_benchmark.hpp"
#include "support.hpp"

namespace elastic::bench {
namespace {

using T = bfloat16_t;
using HostWidths = Widths<ELASTIC_BENCH_HOST_WIDTHS>;
constexpr index_t hidden = ELASTIC_BENCH_HOST_HIDDEN;
constexpr index_t token_counts[] = {1, 16, 64};
constexpr index_t decode_tokens[] = {1, 16};
constexpr index_t read_counts_tokens = 16;
constexpr index_t max_tokens = std::ranges::max(token_counts);
// Host memory the weight copies may take.
constexpr double weight_budget_bytes = 512.0 * (1 << 20);

host::Executor& executor() {
  static host::Executor instance(0);
  return instance;
}

// The routed layers' copies, a workspace that grows to the largest case
// seen, and the times of the cases run.
class HostCopies {
 public:
  HostCopies()
      : copies_(rotation_copies(support::mlp_bytes(hidden, HostWidths::min, 1, sizeof(T)), last_level_cache_bytes(),
                                static_cast<double>(support::mlp_weight_count(hidden, HostWidths::max) * sizeof(T)),
                                weight_budget_bytes),
                hidden, max_tokens, support::fill_random<T>) {}

  static HostCopies& get() {
    static HostCopies instance;
    return instance;
  }

  const RoutedCopies<T, HostWidths, support::HostBuffer>& data() const { return copies_; }
  ReferenceTimes& references() { return references_; }

  Workspace workspace(std::size_t bytes) {
    if (workspace_.bytes() < bytes) workspace_ = host::WorkspaceBuffer(bytes);
    return workspace_.get();
  }

 private:
  RoutedCopies<T, HostWidths, support::HostBuffer> copies_;
  host::WorkspaceBuffer workspace_;
  ReferenceTimes references_;
};

void run_case(benchmark::State& state, const RoutedCase& routed_case) {
  run_or_skip(state, [&] {
    HostCopies& set = HostCopies::get();
    const auto& copies = set.data();
    RoutedLayers<T, HostWidths> layers(routed_case, copies.mlps());
    layers.bind(executor(), set.workspace(layers.workspace_bytes(executor())));
    const index_t tokens = routed_case.tokens;
    double total_seconds = 0.0;
    std::size_t copy = 0;
    for (auto _ : state) {
      const auto start = std::chrono::steady_clock::now();
      layers.call(executor(), copy, copies.residual(copy, tokens), copies.input(copy, tokens));
      benchmark::ClobberMemory();
      const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
      state.SetIterationTime(seconds.count());
      total_seconds += seconds.count();
      copy = (copy + 1) % copies.copies();
    }
    set_routed_counters(state, routed_case, total_seconds / static_cast<double>(state.iterations()), copies.copies(),
                        last_level_cache_bytes(), set.references());
  });
}

void register_cases() {
  const RoutedSeries series{token_counts, decode_tokens, read_counts_tokens};
  for (const RoutedCase& routed_case : routed_cases<HostWidths>("elastic_host", dtype_of<T>, hidden, series))
    benchmark::RegisterBenchmark(routed_case.name().c_str(),
                                 [routed_case](benchmark::State& state) { run_case(state, routed_case); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
}

}  // namespace
}  // namespace elastic::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("executor_threads", std::to_string(elastic::bench::executor().threads()));
  benchmark::AddCustomContext("last_level_cache_bytes",
                              std::to_string(static_cast<long long>(elastic::bench::last_level_cache_bytes())));
  benchmark::AddCustomContext("widths", elastic::bench::HostWidths::describe());
  benchmark::AddCustomContext("weight_copies", std::to_string(elastic::bench::HostCopies::get().data().copies()));
  elastic::bench::register_cases();
  benchmark::RunSpecifiedBenchmarks();
  return elastic::bench::finish_benchmarks("elastic_host_routed_mlp_benchmark");
}
