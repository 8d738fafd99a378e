// Microbenchmarks of the host executor's prefill GEMM (linear and swiglu
// over many tokens: the register-tiled row-dot kernel over cache-sized
// blocks of neurons) against OpenBLAS sgemm on the same shapes, in one
// process with the same thread count: SmolLM2-135M's
// projections (hidden 576, intermediate 1536, K/V 192) over 128 and 512
// tokens, the down projection at half width (a column slice: strided
// weight rows) and a 1024 x 4096 pair. Our float32 and bfloat16 cases each
// report flop_per_second and x_openblas, the peer's time over ours for the
// same shape in float32 (OpenBLAS has no bfloat16 GEMM; bfloat16 halves
// the weight bytes but computes in float32 like the float32 case). The
// swiglu cases compute gate and up (two GEMMs, the peer's two sgemm calls)
// with the epilogue fused.
#include <benchmark/benchmark.h>

#include <cblas.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "benchmark_status.hpp"
#include "support.hpp"

#include "elastic/elastic.hpp"

namespace {

using namespace elastic;

host::Executor& executor() {
  static host::Executor instance(0);
  return instance;
}

struct GemmShape {
  const char* name;
  index_t tokens;
  index_t outs;
  index_t length;      // the reduction length used
  index_t row_length;  // elements per stored weight row (> length: a column slice)
  int weights;         // 1: linear, 2: swiglu (gate and up)

  std::string label() const {
    return detail::concat(name, "/tokens:", tokens, "/out:", outs, "/in:", length,
                          row_length != length ? detail::concat("_of_", row_length) : std::string(),
                          weights == 2 ? "/swiglu" : "");
  }
  double flops() const { return 2.0 * weights * static_cast<double>(tokens) * outs * length; }
};

constexpr GemmShape shapes[] = {
    {"smollm2_q", 128, 576, 576, 576, 1},    {"smollm2_q", 512, 576, 576, 576, 1},
    {"smollm2_kv", 512, 192, 576, 576, 1},   {"smollm2_gate_up", 128, 1536, 576, 576, 2},
    {"smollm2_gate_up", 512, 1536, 576, 576, 2}, {"smollm2_down", 512, 576, 1536, 1536, 1},
    {"smollm2_down_half", 512, 576, 768, 1536, 1}, {"up_1024x4096", 512, 4096, 1024, 1024, 1},
    {"down_4096x1024", 512, 1024, 4096, 4096, 1},
};

// The operands of one shape in element type T, filled once.
template <class T>
struct Operands {
  explicit Operands(const GemmShape& shape)
      : x(static_cast<std::size_t>(shape.tokens * shape.length)),
        w(static_cast<std::size_t>(2 * shape.outs * shape.row_length)),
        y(static_cast<std::size_t>(shape.tokens * shape.outs)) {
    support::fill_random(x.data(), x.size(), 1, 1.0f);
    support::fill_random(w.data(), w.size(), 2, 0.05f);
  }
  ConstMatrixView<T> input(const GemmShape& s) const { return {x.data(), s.tokens, s.length}; }
  ConstMatrixView<T> weight(const GemmShape& s, int which) const {
    return ConstMatrixView<T>(w.data() + which * s.outs * s.row_length, s.outs, s.row_length, s.row_length)
        .first_cols(s.length);
  }
  MatrixView<T> output(const GemmShape& s) { return {y.data(), s.tokens, s.outs}; }

  support::HostBuffer<T> x;
  support::HostBuffer<T> w;
  support::HostBuffer<T> y;
};

// Seconds per call of OpenBLAS on each shape, for the x_openblas counters.
std::map<std::string, double>& peer_seconds() {
  static std::map<std::string, double> seconds;
  return seconds;
}

void run_openblas(benchmark::State& state, const GemmShape& shape) {
  bench::run_or_skip(state, [&] {
    Operands<float> operands(shape);
    openblas_set_num_threads(static_cast<int>(executor().threads()));
    for (auto _ : state) {
      for (int r = 0; r < shape.weights; ++r)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(shape.tokens),
                    static_cast<int>(shape.outs), static_cast<int>(shape.length), 1.0f, operands.x.data(),
                    static_cast<int>(shape.length), operands.w.data() + r * shape.outs * shape.row_length,
                    static_cast<int>(shape.row_length), 0.0f, operands.y.data(), static_cast<int>(shape.outs));
      benchmark::ClobberMemory();
    }
    state.counters["flop_per_second"] =
        benchmark::Counter(shape.flops() * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  });
}

template <class T>
void run_elastic(benchmark::State& state, const GemmShape& shape) {
  bench::run_or_skip(state, [&] {
    Operands<T> operands(shape);
    std::chrono::steady_clock::duration elapsed{};
    for (auto _ : state) {
      const auto start = std::chrono::steady_clock::now();
      if (shape.weights == 1) {
        executor().linear(operands.output(shape), operands.input(shape), operands.weight(shape, 0));
      } else {
        executor().swiglu(operands.output(shape), operands.input(shape), operands.weight(shape, 0),
                          operands.weight(shape, 1));
      }
      benchmark::ClobberMemory();
      elapsed += std::chrono::steady_clock::now() - start;
    }
    state.counters["flop_per_second"] =
        benchmark::Counter(shape.flops() * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    const auto peer = peer_seconds().find(shape.label());
    if (peer != peer_seconds().end())
      state.counters["x_openblas"] =
          peer->second / std::chrono::duration<double>(elapsed).count() * static_cast<double>(state.iterations());
  });
}

// Records the peer's mean seconds per call after its case has run.
class PeerRecorder : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs)
      if (!run.error_occurred && run.run_name.function_name.rfind("openblas/", 0) == 0 && run.iterations > 0)
        peer_seconds()[run.run_name.function_name.substr(std::string("openblas/float32/").size())] =
            run.real_accumulated_time / static_cast<double>(run.iterations);
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("executor_threads", std::to_string(executor().threads()));
  benchmark::AddCustomContext("kernel_target", host::simd::kernels_target());
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
  for (const GemmShape& shape : shapes) {
    const auto add = [&](const std::string& name, auto body) {
      benchmark::RegisterBenchmark(name.c_str(), body)->UseRealTime()->Unit(benchmark::kMillisecond);
    };
    add("openblas/float32/" + shape.label(), [shape](benchmark::State& state) { run_openblas(state, shape); });
    add("elastic_host/float32/" + shape.label(),
        [shape](benchmark::State& state) { run_elastic<float>(state, shape); });
    add("elastic_host/bfloat16/" + shape.label(),
        [shape](benchmark::State& state) { run_elastic<bfloat16_t>(state, shape); });
  }
  PeerRecorder reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  return bench::finish_benchmarks("elastic_host_gemm_benchmark");
}
