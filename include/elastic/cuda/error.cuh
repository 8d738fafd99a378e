// CUDA and cuBLAS failures as exceptions that carry the failing call, the file
// and the line. Every runtime call and every kernel launch in the CUDA backend
// goes through these macros, so no error is swallowed into a status code.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "elastic/core/error.hpp"

namespace elastic::cuda {

class CudaError : public Error {
 public:
  CudaError(cudaError_t code, const char* call, const char* file, int line)
      : Error(detail::concat("CUDA call `", call, "` failed at ", file, ":", line, ": ",
                             cudaGetErrorName(code), " (", cudaGetErrorString(code), ")")),
        code_(code) {}

  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

class CublasError : public Error {
 public:
  CublasError(cublasStatus_t status, const char* call, const char* file, int line)
      : Error(detail::concat("cuBLAS call `", call, "` failed at ", file, ":", line, ": ",
                             cublasLtGetStatusName(status), " (", cublasLtGetStatusString(status), ")")),
        status_(status) {}

  cublasStatus_t status() const { return status_; }

 private:
  cublasStatus_t status_;
};

}  // namespace elastic::cuda

#define ELASTIC_CUDA_CHECK(call)                                                \
  do {                                                                          \
    const cudaError_t elastic_cuda_status_ = (call);                            \
    if (elastic_cuda_status_ != cudaSuccess)                                    \
      throw ::elastic::cuda::CudaError(elastic_cuda_status_, #call, __FILE__, __LINE__); \
  } while (false)

#define ELASTIC_CUBLAS_CHECK(call)                                              \
  do {                                                                          \
    const cublasStatus_t elastic_cublas_status_ = (call);                       \
    if (elastic_cublas_status_ != CUBLAS_STATUS_SUCCESS)                        \
      throw ::elastic::cuda::CublasError(elastic_cublas_status_, #call, __FILE__, __LINE__); \
  } while (false)

// Checks the launch that was just enqueued (bad configuration, missing image).
#define ELASTIC_CUDA_CHECK_LAUNCH() ELASTIC_CUDA_CHECK(cudaGetLastError())
