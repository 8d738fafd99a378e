// An owned CUDA stream: created non-blocking (it does not wait on the legacy
// default stream, and work on it can be captured into a CUDA graph, which
// the legacy stream cannot), destroyed with its owner. For callers that hand
// the CUDA executor a stream of their own; the executor never owns one.
#pragma once

#include <cuda_runtime.h>

#include "elastic/cuda/error.cuh"

namespace elastic::cuda {

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

}  // namespace elastic::cuda
