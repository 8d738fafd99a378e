// Test helpers for device memory: device copies of host matrices with host
// round trips, and a relative difference of two host matrices.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "elastic/cuda/device_buffer.cuh"
#include "elastic/cuda/error.cuh"
#include "support/test_support.hpp"

namespace elastic::test {

using cuda::DeviceBuffer;

// A device copy of a host matrix, same shape, contiguous.
template <class T>
struct DeviceMatrix {
  explicit DeviceMatrix(const HostMatrix<T>& host) : rows(host.rows), cols(host.cols), buffer(host.values.size()) {
    ELASTIC_CUDA_CHECK(cudaMemcpy(buffer.data(), host.values.data(), host.values.size() * sizeof(T),
                                  cudaMemcpyHostToDevice));
  }
  MatrixView<T> view() { return {buffer.data(), rows, cols}; }
  ConstMatrixView<T> view() const { return {buffer.data(), rows, cols}; }

  HostMatrix<T> to_host() const {
    HostMatrix<T> host(rows, cols);
    ELASTIC_CUDA_CHECK(cudaMemcpy(host.values.data(), buffer.data(), host.values.size() * sizeof(T),
                                  cudaMemcpyDeviceToHost));
    return host;
  }

  index_t rows;
  index_t cols;
  DeviceBuffer<T> buffer;
};

// A poisoned device matrix for outputs.
template <class T>
DeviceMatrix<T> poisoned_device_matrix(index_t rows, index_t cols) {
  return DeviceMatrix<T>(poisoned_matrix<T>(rows, cols));
}

// ||a - b|| / ||b|| over two host matrices of the same shape.
template <class T>
double relative_difference(const HostMatrix<T>& a, const HostMatrix<T>& b) {
  std::vector<double> reference(b.values.size());
  for (std::size_t i = 0; i < reference.size(); ++i) reference[i] = to_float(b.values[i]);
  return relative_error(a, reference);
}

}  // namespace elastic::test
