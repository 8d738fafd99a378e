// Microbenchmarks of elastic::ElasticMLP on the host executor: decode (1, 4
// and 16 tokens) and a small prefill (64 tokens; a CPU prefill at Llama-3-8B
// size takes seconds per call) at every width of ELASTIC_BENCH_HOST_WIDTHS
// with hidden size ELASTIC_BENCH_HOST_HIDDEN, in float32 and bfloat16.
//
// Calls cycle through copies of the weights so that, within a memory budget,
// the bytes read between two reads of one copy exceed twice the last-level
// cache (the rotation_over_cache counter says how far that got). Decode cases
// are read against the machine's read bandwidth, measured at startup with
// the executor's thread count (host_read_bandwidth.hpp; context
// read_bytes_per_second, counter frac_read_bw). Times are wall clock: the
// executor computes on a thread pool, so the calling thread's CPU time would
// undercount.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "bench_shapes.hpp"
#include "host_read_bandwidth.hpp"
#include "mlp_benchmark.hpp"
#include "support.hpp"

namespace {

using namespace elastic;

using HostWidths = Widths<ELASTIC_BENCH_HOST_WIDTHS>;
constexpr index_t hidden = ELASTIC_BENCH_HOST_HIDDEN;
constexpr index_t decode_tokens[] = {1, 4, 16};
constexpr index_t prefill_tokens[] = {64};
constexpr bench::Phase phases[] = {{"decode", decode_tokens}, {"prefill", prefill_tokens}};
constexpr index_t max_tokens = std::ranges::max(prefill_tokens);
constexpr auto input_count = static_cast<std::size_t>(max_tokens * hidden);
// Host memory the weight copies of one element type may take.
constexpr double weight_budget_bytes = 512.0 * (1 << 20);

host::Executor& executor() {
  static host::Executor instance(0);
  return instance;
}

// The read bandwidth decode cases are compared with, measured once.
double read_bytes_per_second() {
  static const double rate = bench::measure_read_bytes_per_second(executor().threads());
  return rate;
}

// Copies of one full-width MLP and of its inputs in host memory, one output
// and one workspace, built on first use.
template <ElementType T>
class HostMlpCopies {
 public:
  HostMlpCopies() : workspace_(0) {
    constexpr int full = HostWidths::max;
    const std::size_t weight_count = support::mlp_weight_count(hidden, full);
    copies_ = bench::rotation_copies(support::mlp_bytes(hidden, HostWidths::min, 1, sizeof(T)),
                                     bench::last_level_cache_bytes(), static_cast<double>(weight_count * sizeof(T)),
                                     weight_budget_bytes);
    weights_ = support::HostBuffer<T>(copies_ * weight_count);
    inputs_ = support::HostBuffer<T>(copies_ * input_count);
    output_ = support::HostBuffer<T>(input_count);
    for (std::size_t copy = 0; copy < copies_; ++copy) {
      T* base = weights_.data() + copy * weight_count;
      support::fill_mlp_weights(base, hidden, full, 3 * copy + 1, support::fill_random<T>);
      mlps_.emplace_back(support::mlp_weights_at<T>(base, hidden, full));
    }
    support::fill_random(inputs_.data(), inputs_.size(), 1000, 1.0f);
    workspace_ = host::WorkspaceBuffer(mlps_.front().workspace_bytes(executor(), max_tokens));
  }

  static HostMlpCopies& get() {
    static HostMlpCopies instance;
    return instance;
  }

  std::size_t copies() const { return copies_; }

  void forward(std::size_t copy, int width, index_t tokens) {
    const ConstMatrixView<T> x(inputs_.data() + copy * input_count, tokens, hidden);
    const MatrixView<T> y(output_.data(), tokens, hidden);
    mlps_[copy].forward(executor(), width, y, x, workspace_.get());
  }

 private:
  std::size_t copies_ = 0;
  support::HostBuffer<T> weights_;
  support::HostBuffer<T> inputs_;
  support::HostBuffer<T> output_;
  host::WorkspaceBuffer workspace_;
  std::vector<ElasticMLP<T, HostWidths>> mlps_;
};

template <ElementType T>
void run_case(benchmark::State& state, const bench::MlpCase& mlp_case) {
  bench::run_or_skip(state, [&] {
    HostMlpCopies<T>& set = HostMlpCopies<T>::get();
    std::size_t copy = 0;
    for (auto _ : state) {
      set.forward(copy, mlp_case.width, mlp_case.tokens);
      benchmark::ClobberMemory();
      copy = (copy + 1) % set.copies();
    }
    bench::set_mlp_counters(state, mlp_case, set.copies(), bench::last_level_cache_bytes());
    if (mlp_case.phase == "decode")
      bench::set_ceiling_fraction(state, "frac_read_bw", mlp_case.bytes(), read_bytes_per_second());
  });
}

template <ElementType T>
void register_cases() {
  bench::for_each_case<HostWidths>(dtype_of<T>, hidden, phases, [](bench::MlpCase mlp_case) {
    mlp_case.impl = "elastic_host";
    benchmark::RegisterBenchmark(mlp_case.name().c_str(),
                                 [mlp_case](benchmark::State& state) { run_case<T>(state, mlp_case); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  });
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::add_host_context(executor().threads(), read_bytes_per_second());
  benchmark::AddCustomContext("widths", HostWidths::describe());
  register_cases<float>();
  register_cases<bfloat16_t>();
  benchmark::RunSpecifiedBenchmarks();
  return bench::finish_benchmarks("elastic_host_mlp_benchmark");
}
