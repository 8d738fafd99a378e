// Microbenchmarks of the CUDA executor's token routing: what one routed
// layer spends besides its dense work. At hidden 4096 in bfloat16 with 4
// choices drawn uniformly per token, for 1, 16, 256, 1024 and 4096 tokens
// (the design target: plan + gather + scatter at most 5 us per layer up to
// 4k tokens) and 16384 (past the one-block plan: the CUB path):
//
//   plan                 plan_routes alone
//   gather               gather_rows of each non-empty group into its slice
//                        of a dense [tokens x hidden] buffer
//   scatter_add          scatter_add_rows of each group's rows back into the
//                        residual
//   plan_gather_scatter  the three in sequence, as RoutedMLP runs them
//
// bytes: a gather reads and writes every row once (2 x tokens x hidden x 2
// bytes), a scatter-add reads the rows and the residual and writes the
// residual (3x); bytes_per_second and, for the row steps, frac_copy_bw
// against the measured device-to-device copy bandwidth. Names:
// elastic_cuda/bfloat16/route/<step>/hidden:4096/choices:4/tokens:<n>;
// peer_torch_routing.py times torch (argsort(stable=True), index_select,
// index_add_) under the same names with impl torch.
//
// How it measures (cuda_benchmark.cuh): ceilings once at startup; calls
// cycle through copies of the inputs, residuals and choices (each with its
// own plan, built once at setup so the row steps can run alone) so the rows
// one call reads, times the copies, exceed twice the L2 size where memory
// allows; data is random, never zero; CUDA events bracket batches of calls,
// reported per call as manual time; medians with --benchmark_repetitions=N
// --benchmark_report_aggregates_only=true. Without a usable CUDA device the
// program says so and exits with status 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "cuda_benchmark.cuh"
#include "mlp_benchmark.hpp"

// Inside the library's namespace, `cuda` names elastic::cuda rather than
// CCCL's top-level cuda namespace.
namespace elastic::bench {
namespace {

using T = bfloat16_t;
constexpr index_t hidden = 4096;
constexpr int choices = 4;
constexpr int token_counts[] = {1, 16, 256, 1024, 4096, 16384};
static_assert(token_counts[4] <= cuda::plan_block_max_tokens && token_counts[5] > cuda::plan_block_max_tokens,
              "4096 tokens must take the one-block plan, 16384 the CUB path");

enum class Step { plan, gather, scatter_add, plan_gather_scatter };
constexpr Step steps[] = {Step::plan, Step::gather, Step::scatter_add, Step::plan_gather_scatter};

constexpr std::string_view step_name(Step step) {
  switch (step) {
    case Step::plan: return "plan";
    case Step::gather: return "gather";
    case Step::scatter_add: return "scatter_add";
    case Step::plan_gather_scatter: return "plan_gather_scatter";
  }
  return "?";
}

struct RouteCase {
  Step step;
  int tokens;

  double row_bytes() const { return static_cast<double>(tokens) * hidden * sizeof(T); }

  // Bytes the step must move: rows, plus the choices and plan for a plan.
  double bytes() const {
    const double plan = static_cast<double>(tokens) * 2 * sizeof(int);
    switch (step) {
      case Step::plan: return plan;
      case Step::gather: return 2 * row_bytes();
      case Step::scatter_add: return 3 * row_bytes();
      case Step::plan_gather_scatter: return plan + 5 * row_bytes();
    }
    return 0;
  }

  std::string name() const {
    return detail::concat("elastic_cuda/bfloat16/route/", step_name(step), "/hidden:", hidden, "/choices:", choices,
                          "/tokens:", tokens);
  }
};

// `copies` inputs, residuals, choice vectors and plans for one token count,
// the dense buffer the groups are gathered into, and the plan workspace.
class RouteSetup {
 public:
  RouteSetup(Gpu& gpu, int tokens, std::size_t copies)
      : tokens_(tokens),
        copies_(copies),
        rows_(static_cast<std::size_t>(tokens) * hidden),
        plan_bytes_(RoutePlan::bytes_required(tokens, choices)),
        inputs_(copies * rows_),
        residuals_(copies * rows_),
        gathered_(rows_),
        choices_(copies * static_cast<std::size_t>(tokens)),
        plan_memory_(copies * plan_bytes_),
        workspace_(gpu.executor.plan_routes_workspace_bytes(tokens, choices)) {
    support::fill_random_on_device(inputs_.data(), inputs_.size(), 1, 1.0f, gpu.stream.get());
    support::fill_random_on_device(residuals_.data(), residuals_.size(), 2, 1.0f, gpu.stream.get());
    std::mt19937 engine(3);
    std::uniform_int_distribution<int> pick(0, choices - 1);
    std::vector<int> picks(choices_.size());
    for (int& choice : picks) choice = pick(engine);
    ELASTIC_CUDA_CHECK(cudaMemcpyAsync(choices_.data(), picks.data(), picks.size() * sizeof(int),
                                       cudaMemcpyHostToDevice, gpu.stream.get()));
    for (std::size_t copy = 0; copy < copies; ++copy) {
      const Workspace memory{plan_memory_.data() + copy * plan_bytes_, plan_bytes_};
      plans_.push_back(RoutePlan::carve(memory, tokens, choices));
      gpu.executor.plan_routes(plans_.back(), choices_of(copy), workspace_.get());
      std::vector<int> counts(choices);
      gpu.executor.read_route_counts(plans_.back(), counts);
      counts_.push_back(std::move(counts));
    }
  }

  int tokens() const { return tokens_; }
  std::size_t copies() const { return copies_; }

  void call(Gpu& gpu, Step step, std::size_t copy) {
    const RoutePlan& plan = plans_[copy];
    if (step == Step::plan || step == Step::plan_gather_scatter)
      gpu.executor.plan_routes(plan, choices_of(copy), workspace_.get());
    const ConstMatrixView<T> input(inputs_.data() + copy * rows_, tokens_, hidden);
    const MatrixView<T> residual(residuals_.data() + copy * rows_, tokens_, hidden);
    const MatrixView<T> gathered(gathered_.data(), tokens_, hidden);
    const auto for_each_group = [&](auto&& run) {
      int first = 0;
      for (const int count : counts_[copy]) {
        if (count > 0) run(gathered.row_range(first, count), plan.permutation + first);
        first += count;
      }
    };
    if (step == Step::gather || step == Step::plan_gather_scatter)
      for_each_group([&](MatrixView<T> rows, const int* indices) { gpu.executor.gather_rows(rows, input, indices); });
    if (step == Step::scatter_add || step == Step::plan_gather_scatter)
      for_each_group([&](MatrixView<T> rows, const int* indices) {
        gpu.executor.scatter_add_rows(residual, ConstMatrixView<T>(rows), indices);
      });
  }

 private:
  const int* choices_of(std::size_t copy) const { return choices_.data() + copy * static_cast<std::size_t>(tokens_); }

  int tokens_;
  std::size_t copies_;
  std::size_t rows_;
  std::size_t plan_bytes_;
  support::DeviceBuffer<T> inputs_, residuals_, gathered_;
  support::DeviceBuffer<int> choices_;
  support::DeviceBuffer<std::byte> plan_memory_;
  cuda::WorkspaceBuffer workspace_;
  std::vector<RoutePlan> plans_;
  std::vector<std::vector<int>> counts_;  // each plan's group sizes
};

// The device and the setup of the token count being measured (the cases of
// one token count are registered together, so each setup is built once).
class Harness {
 public:
  Harness() {
    measure_copy_bandwidth(gpu_);
    measure_gemm_rate(gpu_);
  }

  Gpu& gpu() { return gpu_; }

  RouteSetup& setup(int tokens) {
    if (!setup_ || setup_->tokens() != tokens) {
      setup_.reset();  // free the previous token count's buffers first
      const RouteCase largest{Step::plan_gather_scatter, tokens};
      const double copy_bytes = 2 * largest.row_bytes();  // an input and a residual
      setup_.emplace(gpu_, tokens, rotation_copies(copy_bytes, gpu_.l2_bytes(), copy_bytes, gpu_.free_bytes() / 4));
    }
    return *setup_;
  }

 private:
  Gpu gpu_;
  std::optional<RouteSetup> setup_;
};

void run_case(benchmark::State& state, Harness& harness, const RouteCase& c) {
  run_or_skip(state, [&] {
    Gpu& gpu = harness.gpu();
    RouteSetup& setup = harness.setup(c.tokens);
    time_rotating_calls(state, gpu, setup.copies(), [&](std::size_t copy) { setup.call(gpu, c.step, copy); });
    using benchmark::Counter;
    state.counters["bytes_per_second"] = Counter(c.bytes(), Counter::kIsIterationInvariantRate);
    state.counters["rotation_over_cache"] =
        static_cast<double>(setup.copies()) * 2 * c.row_bytes() / std::max(gpu.l2_bytes(), 1.0);
    if (c.step != Step::plan) set_ceiling_fraction(state, "frac_copy_bw", c.bytes(), gpu.copy_bytes_per_second);
  });
}

void register_cases(Harness& harness) {
  for (const int tokens : token_counts)
    for (const Step step : steps) {
      const RouteCase c{step, tokens};
      benchmark::RegisterBenchmark(c.name().c_str(),
                                   [&harness, c](benchmark::State& state) { run_case(state, harness, c); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace
}  // namespace elastic::bench

int main(int argc, char** argv) {
  return elastic::bench::device_benchmark_main(argc, argv, "elastic_cuda_routing_benchmark", [] {
    elastic::bench::Harness harness;
    elastic::bench::add_device_context(harness.gpu());
    benchmark::AddCustomContext(
        "routing", elastic::detail::concat("bfloat16, hidden ", elastic::bench::hidden, ", ",
                                           elastic::bench::choices, " choices drawn uniformly, one-block plan up to ",
                                           elastic::cuda::plan_block_max_tokens, " tokens"));
    elastic::bench::register_cases(harness);
    benchmark::RunSpecifiedBenchmarks();
  });
}
