// Owning device allocations for setup time: DeviceBuffer<T> holds weights,
// activations or test data; WorkspaceBuffer is the device workspace handed to
// the CUDA executor, allocated once from a layer's size query and reused for
// every forward (graph captures included). The forward path itself never
// allocates: these exist only because the caller creates them.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "elastic/core/workspace.hpp"
#include "elastic/cuda/error.cuh"

namespace elastic::cuda {

// Device memory for count elements of T, left uninitialised; cudaMalloc
// aligns it to 256 bytes.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) : count_(count) {
    if (count_ > 0) ELASTIC_CUDA_CHECK(cudaMalloc(&data_, count_ * sizeof(T)));
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(data_); }

  T* data() const { return data_; }
  std::size_t size() const { return count_; }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

// The CUDA executor's workspace: the device counterpart of
// host::WorkspaceBuffer.
class WorkspaceBuffer {
 public:
  explicit WorkspaceBuffer(std::size_t bytes = 0) : buffer_(bytes) {}
  Workspace get() const { return {buffer_.data(), buffer_.size()}; }
  std::size_t bytes() const { return buffer_.size(); }

 private:
  DeviceBuffer<std::byte> buffer_;
};

}  // namespace elastic::cuda
