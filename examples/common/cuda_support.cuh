// The CUDA side of support.hpp for the examples and the benchmarks: streams,
// the same random values generated on the device, CUDA-event timing and a probe that tells whether a device can be used at
// all (so programs can fall back or exit cleanly on machines without one).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "elastic/elastic.cuh"
#include "support.hpp"

namespace elastic::support {

using cuda::DeviceBuffer;

class Stream {
 public:
  Stream() { ELASTIC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { cudaStreamDestroy(stream_); }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

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

// Whether this process can use a CUDA device; `reason` says why not.
struct DeviceProbe {
  int count = 0;
  std::string reason;
};

inline DeviceProbe probe_devices() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so a host fallback starts clean
    return {0, detail::concat(cudaGetErrorName(status), ": ", cudaGetErrorString(status))};
  }
  if (count == 0) return {0, "the driver reports no device"};
  return {count, {}};
}

}  // namespace elastic::support
