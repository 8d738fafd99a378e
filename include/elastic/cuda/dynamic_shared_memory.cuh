// The opt-in that lets a kernel take more than 48 KB of dynamic shared memory
// per block. cudaFuncSetAttribute is per kernel and device, and the runtime
// may wait for pending copies inside it, so a launcher calls it once per
// kernel and device (here: the first launch on each device), not per launch.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "elastic/cuda/error.cuh"

namespace elastic::cuda {

// Allows Kernel, on the current device, the most dynamic shared memory a
// block can have there beside the kernel's static shared memory, and returns
// that many bytes. Devices 64 and up are set on every call.
template <auto Kernel>
int allow_most_dynamic_shared_memory() {
  static std::atomic<std::uint64_t> devices_done{0};  // bit d: device d is set up
  static std::atomic<int> allowed[64] = {};
  int device = 0;
  ELASTIC_CUDA_CHECK(cudaGetDevice(&device));
  const std::uint64_t bit = device < 64 ? std::uint64_t{1} << device : 0;
  if (bit != 0 && (devices_done.load(std::memory_order_acquire) & bit) != 0)
    return allowed[device].load(std::memory_order_relaxed);
  int limit = 0;
  ELASTIC_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cudaFuncAttributes attributes{};
  ELASTIC_CUDA_CHECK(cudaFuncGetAttributes(&attributes, Kernel));
  const int bytes = limit - static_cast<int>(attributes.sharedSizeBytes);
  ELASTIC_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  if (bit != 0) {
    allowed[device].store(bytes, std::memory_order_relaxed);
    devices_done.fetch_or(bit, std::memory_order_release);
  }
  return bytes;
}

}  // namespace elastic::cuda
