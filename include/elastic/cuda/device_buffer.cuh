// Owning allocations for setup time: DeviceBuffer<T> holds weights,
// activations or test data; WorkspaceBuffer is the device workspace handed to
// the CUDA executor, allocated once from a layer's size query and reused for
// every forward (graph captures included); PinnedBuffer<T> is page-locked
// host memory that device-to-host copies can fill asynchronously. The
// forward path itself never allocates: these exist only because the caller
// creates them. A failed allocation throws cuda::CudaError naming the
// allocator, the bytes and what they were for.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "elastic/core/counts.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/cuda/error.cuh"

namespace elastic::cuda {

// Where an OwnedBuffer's memory comes from.
struct DeviceMemory {
  static constexpr const char* allocator = "cudaMalloc";
  static cudaError_t allocate(void** data, std::size_t bytes) { return cudaMalloc(data, bytes); }
  static void release(void* data) { cudaFree(data); }
};

struct PinnedHostMemory {
  static constexpr const char* allocator = "cudaMallocHost";
  static cudaError_t allocate(void** data, std::size_t bytes) { return cudaMallocHost(data, bytes); }
  static void release(void* data) { cudaFreeHost(data); }
};

// count elements of T in Memory, left uninitialised (both allocators align
// to at least 256 bytes); move-only, freed on destruction.
template <class T, class Memory>
class OwnedBuffer {
 public:
  OwnedBuffer() = default;
  OwnedBuffer(std::size_t count, const char* purpose) : count_(count) {
    if (count_ == 0) return;
    const std::size_t bytes = elastic::detail::checked_product(count_, sizeof(T), "buffer size");
    void* data = nullptr;
    const cudaError_t status = Memory::allocate(&data, bytes);
    if (status != cudaSuccess)
      throw CudaError(status, elastic::detail::concat(Memory::allocator, " of ", bytes, " bytes for ", purpose).c_str(),
                      __FILE__, __LINE__);
    data_ = static_cast<T*>(data);
  }
  OwnedBuffer(OwnedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  OwnedBuffer& operator=(OwnedBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    return *this;
  }
  OwnedBuffer(const OwnedBuffer&) = delete;
  OwnedBuffer& operator=(const OwnedBuffer&) = delete;
  ~OwnedBuffer() { Memory::release(data_); }

  T* data() const { return data_; }
  std::size_t size() const { return count_; }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

template <class T>
class DeviceBuffer : public OwnedBuffer<T, DeviceMemory> {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count, const char* purpose = "a device buffer")
      : OwnedBuffer<T, DeviceMemory>(count, purpose) {}
};

template <class T>
class PinnedBuffer : public OwnedBuffer<T, PinnedHostMemory> {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(std::size_t count, const char* purpose = "a pinned host buffer")
      : OwnedBuffer<T, PinnedHostMemory>(count, purpose) {}
};

// The CUDA executor's workspace: the device counterpart of
// host::WorkspaceBuffer.
class WorkspaceBuffer {
 public:
  explicit WorkspaceBuffer(std::size_t bytes = 0, const char* purpose = "a workspace") : buffer_(bytes, purpose) {}
  Workspace get() const { return {buffer_.data(), buffer_.size()}; }
  std::size_t bytes() const { return buffer_.size(); }

 private:
  DeviceBuffer<std::byte> buffer_;
};

}  // namespace elastic::cuda
