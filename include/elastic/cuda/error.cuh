// CUDA and cuBLAS failures as exceptions that carry the failing call, the file
// and the line. Every runtime call and every kernel launch in the CUDA backend
// goes through these macros, so no error is swallowed into a status code.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

#include "elastic/core/error.hpp"

namespace elastic::detail {

inline const char* library_name(cudaError_t) { return "CUDA"; }
inline const char* library_name(cublasStatus_t) { return "cuBLAS"; }

inline std::string describe_status(cudaError_t code) {
  return concat(cudaGetErrorName(code), " (", cudaGetErrorString(code), ")");
}
inline std::string describe_status(cublasStatus_t status) {
  return concat(cublasLtGetStatusName(status), " (", cublasLtGetStatusString(status), ")");
}

}  // namespace elastic::detail

namespace elastic::cuda {

// A failed CUDA runtime or cuBLAS call: which call, where, and the status.
template <class Status>
class StatusError : public Error {
 public:
  StatusError(Status status, const char* call, const char* file, int line)
      : Error(elastic::detail::concat(detail::library_name(status), " call `", call, "` failed at ", file, ":",
                                      line, ": ", detail::describe_status(status))),
        status_(status) {}

  Status status() const { return status_; }

 private:
  Status status_;
};

using CudaError = StatusError<cudaError_t>;
using CublasError = StatusError<cublasStatus_t>;

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
