// Microbenchmarks of the host executor on GGUF block-quantised weights
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) against the same maps with
// bfloat16 weights:
// decode GEMV / skinny GEMM at 1, 4 and 16 tokens, float32 activations for
// the quantised weights (bfloat16 for the bfloat16 ones), at SmolLM2-135M's
// shapes (the fused gate and up SwiGLU, 1536 x 576 each; the down
// projection, 576 x 1536; the tied LM head, 49152 x 576) and at 4096 x 4096,
// a weight larger than the last-level cache in every format. The K-quants
// need a multiple of 256 inputs, so they skip the 576-input cases, as
// llama.cpp does for SmolLM2's tensors.
//
// Names: elastic_host/<weights>/<op>/out:<O>/in:<I>/tokens:<T>, and
// elastic_host_1thread/... for the 4096 x 4096 map on one thread timed by
// that thread's CPU time (per-core throughput, immune to other load on the
// machine). Calls cycle
// through copies of the weights so that the bytes read between two reads of
// one copy exceed twice the last-level cache (rotation_over_cache). Counters:
// bytes_per_second of weight bytes (the activations are a few KiB) and
// frac_read_bw, that rate over the machine's read bandwidth measured at
// startup with the executor's thread count (host_read_bandwidth.hpp).
// Weight bytes are random, with every float16 scale finite: the kernels'
// speed does not depend on the values.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "benchmark_status.hpp"
#include "elastic/elastic.hpp"
#include "host_read_bandwidth.hpp"
#include "mlp_benchmark.hpp"
#include "support.hpp"

namespace {

using namespace elastic;

constexpr index_t token_counts[] = {1, 4, 16};
constexpr index_t max_tokens = 16;
constexpr double weight_budget_bytes = 512.0 * (1 << 20);

host::Executor& executor() {
  static host::Executor instance(0);
  return instance;
}

// One thread: the calls run on the calling thread, so its CPU time is the
// kernel's own, whatever else the machine runs.
host::Executor& single_thread_executor() {
  static host::Executor instance(1);
  return instance;
}

double read_bytes_per_second() {
  static const double rate = bench::measure_read_bytes_per_second(executor().threads());
  return rate;
}

struct Shape {
  const char* op;  // "linear" or "swiglu" (gate and up, `out` rows each)
  index_t out;
  index_t in;
  int matrices() const { return std::string(op) == "swiglu" ? 2 : 1; }
};

constexpr Shape shapes[] = {
    {"swiglu", 1536, 576}, {"linear", 576, 1536}, {"linear", 49152, 576}, {"linear", 4096, 4096}};

// The weights' storage: a block format, or bfloat16 (nullopt).
using Weights = std::optional<QuantFormat>;
constexpr Weights all_weights[] = {QuantFormat::q4_0, QuantFormat::q4_1, QuantFormat::q5_0, QuantFormat::q5_1,
                                   QuantFormat::q8_0, QuantFormat::q4_k, QuantFormat::q5_k, QuantFormat::q6_k,
                                   std::nullopt};

std::string weights_name(Weights weights) {
  return weights ? std::string(quant_format_info(*weights).name) : "BF16";
}

index_t row_bytes(Weights weights, index_t in) {
  return weights ? QuantizedMatrixView::dense_row_bytes(*weights, in) : in * static_cast<index_t>(sizeof(bfloat16_t));
}

double weight_bytes(Weights weights, const Shape& shape) {
  return static_cast<double>(shape.matrices()) * static_cast<double>(shape.out * row_bytes(weights, shape.in));
}

// Copies of one shape's weights in one storage, with inputs and an output
// for max_tokens tokens in the activation type that goes with them.
class WeightCopies {
 public:
  WeightCopies(Weights weights, const Shape& shape)
      : weights_(weights), shape_(shape),
        matrix_bytes_(static_cast<std::size_t>(shape.out * row_bytes(weights, shape.in))),
        copies_(bench::rotation_copies(weight_bytes(weights, shape), bench::last_level_cache_bytes(),
                                       weight_bytes(weights, shape), weight_budget_bytes)),
        bytes_(copies_ * static_cast<std::size_t>(shape.matrices()) * matrix_bytes_),
        float_x_(static_cast<std::size_t>(max_tokens * shape.in)),
        float_y_(static_cast<std::size_t>(max_tokens * shape.out)),
        bf16_x_(static_cast<std::size_t>(max_tokens * shape.in)),
        bf16_y_(static_cast<std::size_t>(max_tokens * shape.out)) {
    // Random bytes with bits 3 and 7 clear: every float16 read from two of
    // them has an exponent below 0x1F, so every scale is finite.
    std::uint64_t state = 0x9E3779B97F4A7C15ull;
    for (std::size_t i = 0; i < bytes_.size(); ++i) {
      if (i % 8 == 0) state = state * 6364136223846793005ull + 1442695040888963407ull;
      bytes_.data()[i] = static_cast<std::byte>((state >> (8 * (i % 8))) & 0x77u);
    }
    support::fill_random(float_x_.data(), float_x_.size(), 1000, 1.0f);
    support::fill_random(bf16_x_.data(), bf16_x_.size(), 1000, 1.0f);
  }

  bool holds(Weights weights, const Shape& shape) const {
    return weights == weights_ && shape.op == shape_.op && shape.out == shape_.out && shape.in == shape_.in;
  }
  std::size_t copies() const { return copies_; }

  void run(host::Executor& executor, std::size_t copy, index_t tokens) {
    const std::byte* base = bytes_.data() + copy * static_cast<std::size_t>(shape_.matrices()) * matrix_bytes_;
    if (weights_) {
      const ConstMatrixView<float> x(float_x_.data(), tokens, shape_.in);
      const MatrixView<float> y(float_y_.data(), tokens, shape_.out);
      const QuantizedMatrixView first(*weights_, base, shape_.out, shape_.in);
      if (shape_.matrices() == 1) {
        executor.linear(y, x, first);
      } else {
        const QuantizedMatrixView second(*weights_, base + matrix_bytes_, shape_.out, shape_.in);
        executor.swiglu(y, x, first, second);
      }
    } else {
      const ConstMatrixView<bfloat16_t> x(bf16_x_.data(), tokens, shape_.in);
      const MatrixView<bfloat16_t> y(bf16_y_.data(), tokens, shape_.out);
      const auto* weights = reinterpret_cast<const bfloat16_t*>(base);
      const ConstMatrixView<bfloat16_t> first(weights, shape_.out, shape_.in);
      if (shape_.matrices() == 1) {
        executor.linear(y, x, first);
      } else {
        const ConstMatrixView<bfloat16_t> second(weights + shape_.out * shape_.in, shape_.out, shape_.in);
        executor.swiglu(y, x, first, second);
      }
    }
  }

 private:
  Weights weights_;
  Shape shape_;
  std::size_t matrix_bytes_;
  std::size_t copies_;
  support::HostBuffer<std::byte> bytes_;
  support::HostBuffer<float> float_x_;
  support::HostBuffer<float> float_y_;
  support::HostBuffer<bfloat16_t> bf16_x_;
  support::HostBuffer<bfloat16_t> bf16_y_;
};

// The weights of the case running now; cases of one shape and storage run
// back to back, so each set is built once and freed before the next.
WeightCopies& copies_for(Weights weights, const Shape& shape) {
  static std::unique_ptr<WeightCopies> current;
  if (!current || !current->holds(weights, shape)) {
    current.reset();
    current = std::make_unique<WeightCopies>(weights, shape);
  }
  return *current;
}

void run_case(benchmark::State& state, Weights weights, Shape shape, index_t tokens, host::Executor& executor) {
  bench::run_or_skip(state, [&] {
    WeightCopies& set = copies_for(weights, shape);
    std::size_t copy = 0;
    for (auto _ : state) {
      set.run(executor, copy, tokens);
      benchmark::ClobberMemory();
      copy = (copy + 1) % set.copies();
    }
    using benchmark::Counter;
    const double bytes = weight_bytes(weights, shape);
    state.counters["bytes_per_second"] = Counter(bytes, Counter::kIsIterationInvariantRate);
    state.counters["rotation_over_cache"] =
        static_cast<double>(set.copies()) * bytes / bench::last_level_cache_bytes();
    if (&executor == &single_thread_executor()) return;
    bench::set_ceiling_fraction(state, "frac_read_bw", bytes, read_bytes_per_second());
  });
}

std::string case_name(const char* impl, Weights weights, const Shape& shape, index_t tokens) {
  return std::string(impl) + "/" + weights_name(weights) + "/" + shape.op + "/out:" + std::to_string(shape.out) +
         "/in:" + std::to_string(shape.in) + "/tokens:" + std::to_string(tokens);
}

// Every shape on the executor's threads, against wall-clock time; then the
// 4096 x 4096 map on one thread, against that thread's CPU time: the
// kernel's throughput per core, which other work on the machine does not
// disturb (bytes_per_second is then per CPU second, with no frac_read_bw).
void register_cases() {
  for (const Shape& shape : shapes)
    for (const Weights weights : all_weights) {
      if (weights && shape.in % quant_format_info(*weights).block_elements != 0) continue;
      for (const index_t tokens : token_counts)
        benchmark::RegisterBenchmark(case_name("elastic_host", weights, shape, tokens).c_str(),
                                     [weights, shape, tokens](benchmark::State& state) {
                                       run_case(state, weights, shape, tokens, executor());
                                     })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
    }
  const Shape& large = shapes[std::size(shapes) - 1];
  for (const Weights weights : all_weights)
    for (const index_t tokens : token_counts)
      benchmark::RegisterBenchmark(case_name("elastic_host_1thread", weights, large, tokens).c_str(),
                                   [weights, large, tokens](benchmark::State& state) {
                                     run_case(state, weights, large, tokens, single_thread_executor());
                                   })
          ->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::add_host_context(executor().threads(), read_bytes_per_second());
  register_cases();
  benchmark::RunSpecifiedBenchmarks();
  return bench::finish_benchmarks("elastic_host_quantized_benchmark");
}
