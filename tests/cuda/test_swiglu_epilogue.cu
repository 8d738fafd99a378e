// The prefill SwiGLU path of the CUDA executor (two cuBLASLt products, then
// the in-place epilogue of cuda/swiglu_kernel.cuh) on shapes the MLP parity
// tests do not reach: an output width that is not a whole number of 16-byte
// vectors (the epilogue's element-by-element tail), an output that is a
// column slice of a wider padded matrix (the tail must not write past the
// slice), and more rows than one grid dimension holds (the row loop).
// Checked against float64 for every element type.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "cuda/device_buffer.cuh"
#include "elastic/cuda/executor.cuh"

namespace elastic::test {
namespace {

constexpr index_t kInputs = 16;
constexpr index_t kWidth = 101;          // 12 vectors of bfloat16 and 5 elements; 25 of float32 and 1
constexpr index_t kPaddedWidth = 112;    // the output's row stride: whole 16-byte vectors
constexpr int kTokenCounts[] = {17, 65539};

template <class T>
void check_swiglu_epilogue() {
  const HostMatrix<T> gate = random_matrix<T>(kWidth, kInputs, 11, 0.2f);
  const HostMatrix<T> up = random_matrix<T>(kWidth, kInputs, 12, 0.2f);
  const DeviceMatrix<T> device_gate(gate);
  const DeviceMatrix<T> device_up(up);
  cuda::Executor executor;
  for (int tokens : kTokenCounts) {
    CAPTURE(tokens);
    const HostMatrix<T> x = random_matrix<T>(tokens, kInputs, 13 + tokens);
    const DeviceMatrix<T> device_x(x);
    DeviceMatrix<T> h = poisoned_device_matrix<T>(tokens, kPaddedWidth);
    const cuda::WorkspaceBuffer workspace(executor.swiglu_workspace_bytes<T>(tokens, kWidth, kInputs));
    executor.swiglu<T>(h.view().first_cols(kWidth), device_x.view(), device_gate.view(), device_up.view(),
                       workspace.get());
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
    const HostMatrix<T> padded = h.to_host();

    const std::vector<double> g = reference_linear(x, gate, kWidth, kInputs);
    const std::vector<double> u = reference_linear(x, up, kWidth, kInputs);
    std::vector<double> expected(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) expected[i] = reference_silu(g[i]) * u[i];
    HostMatrix<T> got(tokens, kWidth);
    bool padding_untouched = true;
    for (index_t t = 0; t < tokens; ++t)
      for (index_t j = 0; j < kPaddedWidth; ++j) {
        const T value = padded.values[t * kPaddedWidth + j];
        if (j < kWidth) got.values[t * kWidth + j] = value;
        else padding_untouched = padding_untouched && std::isnan(to_float(value));
      }
    CHECK(padding_untouched);
    CHECK(relative_error(got, expected) < tolerance<T>());
  }
}

TEST_CASE_TEMPLATE("cuda swiglu: prefill epilogue on a width with a partial vector", T, float, half_t, bfloat16_t) {
  check_swiglu_epilogue<T>();
}

}  // namespace
}  // namespace elastic::test
