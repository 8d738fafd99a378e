// elastic_mlp_demo: builds one SwiGLU MLP with random weights, runs it at
// every width of a compile-time width set and prints the median time per
// width next to its ratio to the full width. A forward at width k reads only
// the first k neurons, so the ratio should follow k/K (the "ideal" column).
//
// One source, two programs. Compiled as C++ this is elastic_mlp_demo (host
// executor only); elastic_mlp_demo.cu includes this file to build
// elastic_mlp_demo_cuda, which adds the CUDA executor and uses it when a
// device is present (--executor auto), else falls back to the host.
//
//   elastic_mlp_demo [--tokens 4] [--runs 15] [--executor auto|host|cuda]
//                    [--dtype bfloat16|float16|float32] [--hidden 1024]
//                    [--threads 0] [--seed 1]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#if defined(__CUDACC__)
#include "cuda_support.cuh"
#else
#include "support.hpp"
#endif

namespace {

using namespace elastic;

// The widths the demo walks; the weights are stored once at the largest.
using DemoWidths = Widths<1024, 2048, 3072, 4096>;

#if defined(__CUDACC__)
constexpr const char* program_name = "elastic_mlp_demo_cuda";
#else
constexpr const char* program_name = "elastic_mlp_demo";
#endif

struct Options {
  index_t hidden = 1024;
  index_t tokens = 4;
  int runs = 15;
  std::string executor = "auto";
  std::string dtype = "bfloat16";
  unsigned threads = 0;
  std::uint64_t seed = 1;
};

class HostBackend {
 public:
  template <class T>
  using Buffer = support::HostBuffer<T>;
  using WorkspaceBuffer = host::WorkspaceBuffer;

  explicit HostBackend(unsigned threads) : executor(threads) {}

  template <class T>
  void upload(T* destination, const T* source, std::size_t count) {
    std::copy_n(source, count, destination);
  }
  template <class T>
  void download(T* destination, const T* source, std::size_t count) {
    std::copy_n(source, count, destination);
  }

  template <class Run>
  double seconds(Run&& run) {
    const auto start = std::chrono::steady_clock::now();
    run();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  std::string describe() const {
    return detail::concat("host, ", executor.threads(), executor.threads() == 1 ? " thread" : " threads");
  }

  host::Executor executor;
};

#if defined(__CUDACC__)
class CudaBackend {
 public:
  template <class T>
  using Buffer = support::DeviceBuffer<T>;
  using WorkspaceBuffer = elastic::cuda::WorkspaceBuffer;

  CudaBackend() : executor(stream.get()) {}

  template <class T>
  void upload(T* destination, const T* source, std::size_t count) {
    ELASTIC_CUDA_CHECK(
        cudaMemcpyAsync(destination, source, count * sizeof(T), cudaMemcpyHostToDevice, stream.get()));
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  }
  template <class T>
  void download(T* destination, const T* source, std::size_t count) {
    ELASTIC_CUDA_CHECK(
        cudaMemcpyAsync(destination, source, count * sizeof(T), cudaMemcpyDeviceToHost, stream.get()));
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  }

  template <class Run>
  double seconds(Run&& run) {
    return timer.seconds(stream.get(), run);
  }

  std::string describe() const {
    int device = 0;
    ELASTIC_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp properties{};
    ELASTIC_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
    return detail::concat("CUDA, ", properties.name);
  }

  support::Stream stream;
  elastic::cuda::Executor executor;
  support::EventTimer timer;
};
#endif

struct Row {
  int width;
  double seconds;   // median over the runs
  double mean_abs;  // mean |y|: the output changes with the width
};

template <ElementType T, class Backend>
std::vector<Row> measure(Backend& backend, const Options& options) {
  constexpr int full = DemoWidths::max;
  const index_t hidden = options.hidden;
  const index_t tokens = options.tokens;
  const std::size_t weight_count = support::mlp_weight_count(hidden, full);
  const auto activation_count = static_cast<std::size_t>(tokens * hidden);

  support::HostBuffer<T> host_weights(weight_count);
  support::fill_mlp_weights(host_weights.data(), hidden, full, options.seed, support::fill_random<T>);
  support::HostBuffer<T> host_x(activation_count);
  support::fill_random(host_x.data(), activation_count, options.seed + 3, 1.0f);

  typename Backend::template Buffer<T> weights(weight_count);
  typename Backend::template Buffer<T> x(activation_count);
  typename Backend::template Buffer<T> y(activation_count);
  backend.upload(weights.data(), host_weights.data(), weight_count);
  backend.upload(x.data(), host_x.data(), activation_count);

  const ElasticMLP<T, DemoWidths> mlp(support::mlp_weights_at<T>(weights.data(), hidden, full));
  const typename Backend::WorkspaceBuffer workspace(mlp.workspace_bytes(backend.executor, tokens));
  const ConstMatrixView<T> x_view(x.data(), tokens, hidden);
  const MatrixView<T> y_view(y.data(), tokens, hidden);

  std::vector<Row> rows;
  support::HostBuffer<T> host_y(activation_count);
  for (const int width : DemoWidths::values) {
    // NaN in every output element first, so the check below proves each one was written.
    std::fill_n(host_y.data(), activation_count, from_float<T>(std::numeric_limits<float>::quiet_NaN()));
    backend.upload(y.data(), host_y.data(), activation_count);
    const auto forward = [&] { mlp.forward(backend.executor, width, y_view, x_view, workspace.get()); };
    forward();  // warm-up: first touch of the weights, cuBLASLt plans
    std::vector<double> times;
    for (int run = 0; run < options.runs; ++run) times.push_back(backend.seconds(forward));

    backend.download(host_y.data(), y.data(), activation_count);
    double sum_abs = 0.0;
    for (std::size_t i = 0; i < activation_count; ++i) {
      const double value = to_float(host_y.data()[i]);
      require(std::isfinite(value), "width ", width, ": output element ", i, " is ", value,
              " (not written?)");
      sum_abs += std::abs(value);
    }
    rows.push_back(
        {width, support::median(std::move(times)), sum_abs / static_cast<double>(activation_count)});
  }
  return rows;
}

template <ElementType T, class Backend>
void run_demo(Backend& backend, const Options& options, const std::string& note) {
  const std::vector<Row> rows = measure<T>(backend, options);

  std::printf("elastic MLP: hidden %lld, widths %s, %lld tokens, %s\n",
              static_cast<long long>(options.hidden), DemoWidths::describe().c_str(),
              static_cast<long long>(options.tokens), std::string(dtype_name(dtype_of<T>)).c_str());
  std::printf("executor: %s%s\n", backend.describe().c_str(), note.c_str());
  std::printf("median of %d runs per width\n\n", options.runs);
  const double full_seconds = rows.back().seconds;
  std::printf("%7s %12s %9s %11s %9s %11s %10s\n", "width", "time (us)", "vs full", "ideal k/K", "GB/s",
              "GFLOP/s", "mean |y|");
  for (const Row& row : rows) {
    std::printf("%7d %12.1f %9.3f %11.3f %9.1f %11.1f %10.4f\n", row.width, row.seconds * 1e6,
                row.seconds / full_seconds, static_cast<double>(row.width) / DemoWidths::max,
                support::mlp_bytes(options.hidden, row.width, options.tokens, sizeof(T)) / row.seconds * 1e-9,
                support::mlp_flops(options.hidden, row.width, options.tokens) / row.seconds * 1e-9,
                row.mean_abs);
  }
}

template <class Backend>
void run_for_dtype(Backend& backend, const Options& options, const std::string& note) {
  if (options.dtype == "float32")
    run_demo<float>(backend, options, note);
  else if (options.dtype == "float16")
    run_demo<half_t>(backend, options, note);
  else
    run_demo<bfloat16_t>(backend, options, note);
}

// Runs on the executor the options ask for; returns the process status.
int run(const Options& options) {
#if defined(__CUDACC__)
  const support::DeviceProbe probe = support::probe_devices();
  require(options.executor != "cuda" || probe.count > 0, "--executor cuda: no usable CUDA device (",
          probe.reason, ")");
  require(options.executor == "host" || probe.count > 0 || !support::device_required(),
          "ELASTIC_REQUIRE_DEVICE=1 but no CUDA device can be used (", probe.reason, ")");
  if (options.executor != "host" && probe.count > 0) {
    CudaBackend backend;
    run_for_dtype(backend, options, "");
    return 0;
  }
  const std::string note =
      options.executor == "auto" ? detail::concat(" (no usable CUDA device: ", probe.reason, ")") : "";
#else
  require(options.executor != "cuda",
          "--executor cuda: this build has no CUDA executor (build elastic_mlp_demo_cuda with nvcc)");
  const std::string note = options.executor == "auto" ? " (built without CUDA)" : "";
#endif
  HostBackend backend(options.threads);
  run_for_dtype(backend, options, note);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"Runs one elastic SwiGLU MLP at every width of " + DemoWidths::describe() +
                   " and prints the median time per width.",
               program_name};
  app.add_option("--hidden", options.hidden, "Hidden size (a multiple of 8)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--tokens", options.tokens, "Tokens per forward")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--runs", options.runs, "Timed runs per width (the median is printed)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--executor", options.executor, "Executor: auto picks CUDA when a device is present")
      ->check(CLI::IsMember({"auto", "host", "cuda"}))
      ->capture_default_str();
  app.add_option("--dtype", options.dtype, "Element type")
      ->check(CLI::IsMember({"bfloat16", "float16", "float32"}))
      ->capture_default_str();
  app.add_option("--threads", options.threads, "Host executor threads (0: every hardware thread)")
      ->capture_default_str();
  app.add_option("--seed", options.seed, "Seed of the random weights and inputs")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    return run(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: %s\n", program_name, error.what());
    return 1;
  }
}
