// What the CUDA benchmarks share: the device with a stream, the elastic CUDA
// executor on it, a cuBLASLt plan cache of its own (the GEMM peer) and an
// event timer; the ceilings every figure is a fraction of, measured once per
// run; the timing loop over rotated copies; and the device lines of the
// benchmark context.
//
// Ceilings, each the median of several runs after warm-up: device-to-device
// copy bandwidth (a 1 GiB cudaMemcpyAsync, bytes read + written) and the
// bfloat16 8192^3 GEMM rate through cuBLASLt. Timing: CUDA events bracket a
// batch of calls (whole cycles over the copies, at least min_batch calls) and
// the time per call is reported as manual time, so host launch gaps between
// calls do not count once per call.
#pragma once

#include <benchmark/benchmark.h>
#include <cublasLt.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "benchmark_status.hpp"
#include "cuda_support.cuh"

namespace elastic::bench {

inline constexpr std::size_t min_batch = 8;  // calls between a pair of events
inline constexpr int ceiling_runs = 15;      // timed runs per ceiling, after warm-up
inline constexpr index_t ceiling_gemm_size = 8192;

class CublasLtHandle {
 public:
  CublasLtHandle() { ELASTIC_CUBLAS_CHECK(cublasLtCreate(&handle_)); }
  CublasLtHandle(const CublasLtHandle&) = delete;
  CublasLtHandle& operator=(const CublasLtHandle&) = delete;
  ~CublasLtHandle() { cublasLtDestroy(handle_); }
  cublasLtHandle_t get() const { return handle_; }

 private:
  cublasLtHandle_t handle_ = nullptr;
};

struct Gpu {
  Gpu() : executor(stream.get()), peer(peer_handle.get()) {
    int device = 0;
    ELASTIC_CUDA_CHECK(cudaGetDevice(&device));
    ELASTIC_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  }

  double l2_bytes() const { return static_cast<double>(properties.l2CacheSize); }

  double free_bytes() const {
    std::size_t free = 0;
    std::size_t total = 0;
    ELASTIC_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    return static_cast<double>(free);
  }

  // Median seconds of `runs` timed calls of enqueue(), after two untimed ones.
  template <class Enqueue>
  double median_seconds(int runs, Enqueue&& enqueue) {
    for (int warm_up = 0; warm_up < 2; ++warm_up) enqueue();
    std::vector<double> times;
    for (int run = 0; run < runs; ++run) times.push_back(timer.seconds(stream.get(), enqueue));
    return support::median(std::move(times));
  }

  cudaDeviceProp properties{};
  support::Stream stream;
  cuda::Executor executor;
  CublasLtHandle peer_handle;
  cuda::GemmPlanCache peer;
  support::EventTimer timer;
  double copy_bytes_per_second = 0.0;
  double gemm_flop_per_second = 0.0;
};

inline void measure_copy_bandwidth(Gpu& gpu) {
  const auto bytes =
      static_cast<std::size_t>(std::min(static_cast<double>(std::size_t{1} << 30), gpu.free_bytes() / 4));
  support::DeviceBuffer<std::byte> source(bytes);
  support::DeviceBuffer<std::byte> destination(bytes);
  ELASTIC_CUDA_CHECK(cudaMemsetAsync(source.data(), 0x5a, bytes, gpu.stream.get()));
  const double seconds = gpu.median_seconds(ceiling_runs, [&] {
    ELASTIC_CUDA_CHECK(cudaMemcpyAsync(destination.data(), source.data(), bytes, cudaMemcpyDeviceToDevice,
                                       gpu.stream.get()));
  });
  gpu.copy_bytes_per_second = 2.0 * static_cast<double>(bytes) / seconds;
}

inline void measure_gemm_rate(Gpu& gpu) {
  constexpr index_t n = ceiling_gemm_size;
  constexpr auto count = static_cast<std::size_t>(n * n);
  support::DeviceBuffer<bfloat16_t> a(count);
  support::DeviceBuffer<bfloat16_t> b(count);
  support::DeviceBuffer<bfloat16_t> c(count);
  const cuda::WorkspaceBuffer workspace(cuda::Executor::gemm_workspace_bytes);
  const float scale = 1.0f / static_cast<float>(n);
  support::fill_random_on_device(a.data(), count, 7, 1.0f, gpu.stream.get());
  support::fill_random_on_device(b.data(), count, 8, scale, gpu.stream.get());
  const double seconds = gpu.median_seconds(ceiling_runs, [&] {
    gpu.peer.run<bfloat16_t>(MatrixView<bfloat16_t>(c.data(), n, n),
                             ConstMatrixView<bfloat16_t>(a.data(), n, n),
                             ConstMatrixView<bfloat16_t>(b.data(), n, n), workspace.get(), gpu.stream.get());
  });
  gpu.gemm_flop_per_second = 2.0 * static_cast<double>(n) * n * n / seconds;
}

// Times call(copy) for the benchmark's iterations: a warm-up over every copy
// (which also builds any cuBLASLt plans of the shape), then batches of whole
// cycles over the copies between a pair of events, reported per call.
// Returns the mean seconds per call over the iterations.
template <class Call>
double time_rotating_calls(benchmark::State& state, Gpu& gpu, std::size_t copies, Call&& call) {
  for (std::size_t copy = 0; copy < copies; ++copy) call(copy);
  const std::size_t batch = (min_batch + copies - 1) / copies * copies;
  double total = 0.0;
  for (auto _ : state) {
    const double seconds = gpu.timer.seconds(gpu.stream.get(), [&] {
      for (std::size_t i = 0; i < batch; ++i) call(i % copies);
    });
    state.SetIterationTime(seconds / static_cast<double>(batch));
    total += seconds / static_cast<double>(batch);
  }
  return total / static_cast<double>(state.iterations());
}

inline std::string format_rate(double value, const char* unit) {
  char text[64];
  std::snprintf(text, sizeof text, "%.4g %s", value, unit);
  return text;
}

// The device and the measured ceilings, for the benchmark context.
inline void add_device_context(const Gpu& gpu) {
  const cudaDeviceProp& properties = gpu.properties;
  benchmark::AddCustomContext("device", properties.name);
  benchmark::AddCustomContext("compute_capability",
                              std::to_string(properties.major) + "." + std::to_string(properties.minor));
  benchmark::AddCustomContext("multiprocessors", std::to_string(properties.multiProcessorCount));
  benchmark::AddCustomContext("l2_cache_bytes", std::to_string(properties.l2CacheSize));
  benchmark::AddCustomContext("copy_bytes_per_second", std::to_string(gpu.copy_bytes_per_second));
  benchmark::AddCustomContext("gemm_bf16_8192_flop_per_second", std::to_string(gpu.gemm_flop_per_second));
  benchmark::AddCustomContext("copy_bandwidth", format_rate(gpu.copy_bytes_per_second * 1e-9, "GB/s"));
  benchmark::AddCustomContext("gemm_bf16_8192", format_rate(gpu.gemm_flop_per_second * 1e-12, "TFLOP/s"));
}

// The body of a CUDA benchmark's main(): parses Google Benchmark's flags,
// exits 0 with a message when no device can be used (1 under
// ELASTIC_REQUIRE_DEVICE=1), otherwise runs run() — which builds the
// harness, registers the cases and calls benchmark::RunSpecifiedBenchmarks()
// — and turns an exception, or any case that failed, into exit 1.
template <class Run>
int device_benchmark_main(int argc, char** argv, const char* program, Run&& run) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const support::DeviceProbe probe = support::probe_devices();
  if (probe.count == 0) {
    const bool required = support::device_required();
    std::fprintf(required ? stderr : stdout, "%s: no usable CUDA device (%s); %s\n", program, probe.reason.c_str(),
                 required ? "ELASTIC_REQUIRE_DEVICE=1 makes that a failure." : "nothing to measure.");
    return required ? 1 : 0;
  }
  try {
    run();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: %s\n", program, error.what());
    return 1;
  }
  return finish_benchmarks(program);
}

}  // namespace elastic::bench
