// The CUDA side of support.hpp for the examples and the benchmarks: streams,
// the same random values generated on the device and CUDA-event timing
// (device_probe.cuh tells whether a device can be used at all).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "device_probe.cuh"
#include "elastic/elastic.cuh"
#include "support.hpp"

namespace elastic::support {

using cuda::DeviceBuffer;
using cuda::Stream;

namespace kernels {

template <ElementType T>
__global__ void fill_random(T* data, std::size_t count, std::uint64_t seed, float scale) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    data[i] = from_float<T>(random_value(seed, i, scale));
}

}  // namespace kernels

// The values fill_random(data, count, seed, scale) writes on the host.
template <ElementType T>
void fill_random_on_device(T* data, std::size_t count, std::uint64_t seed, float scale, cudaStream_t stream) {
  if (count == 0) return;
  constexpr unsigned threads = 256;
  const std::size_t wanted = (count + threads - 1) / threads;
  const auto blocks = static_cast<unsigned>(wanted < 65535 ? wanted : 65535);
  kernels::fill_random<T><<<blocks, threads, 0, stream>>>(data, count, seed, scale);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

// Times work enqueued on a stream with a pair of CUDA events.
class EventTimer {
 public:
  EventTimer() {
    ELASTIC_CUDA_CHECK(cudaEventCreate(&start_));
    ELASTIC_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }

  // Seconds of device time between the start and the end of what
  // enqueue(stream) puts on the stream; waits for it to finish.
  template <class Enqueue>
  double seconds(cudaStream_t stream, Enqueue&& enqueue) {
    ELASTIC_CUDA_CHECK(cudaEventRecord(start_, stream));
    enqueue();
    ELASTIC_CUDA_CHECK(cudaEventRecord(stop_, stream));
    ELASTIC_CUDA_CHECK(cudaEventSynchronize(stop_));
    float milliseconds = 0.0f;
    ELASTIC_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, start_, stop_));
    return milliseconds * 1e-3;
  }

 private:
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

}  // namespace elastic::support
