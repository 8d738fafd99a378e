// CUDA-vs-host parity checks shared by the per-dtype test files (one file per
// dtype so the three instantiations compile in parallel): the elastic MLP and
// the elastic linear map at every width of the set and token counts covering
// every decode bucket and the prefill path, and the widening to float32.
// Outputs start poisoned, so an unwritten element fails.
#pragma once

#include <doctest/doctest.h>

#include "cuda/device_buffer.cuh"
#include "elastic/elastic.cuh"
#include "elastic/model/float_logits.hpp"
#include "support/error_message.hpp"

namespace elastic::test {

// 1, 3-4, 5-16 hit the three decode buckets; 17 and 67 take cuBLASLt.
inline constexpr int cuda_token_counts[] = {1, 3, 4, 5, 16, 17, 67};

inline constexpr index_t parity_hidden = 72;

template <class T>
void check_mlp_parity() {
  constexpr index_t full = TestWidths::max;
  const RandomMLP<T> weights(parity_hidden, full, 2024);
  const DeviceMatrix<T> gate(weights.gate), up(weights.up), down(weights.down);
  const ElasticMLP<T, TestWidths> host_mlp(weights.weights());
  const ElasticMLP<T, TestWidths> device_mlp({gate.view(), up.view(), down.view()});
  host::Executor host_executor;
  cuda::Executor device_executor;

  for (int tokens : cuda_token_counts) {
    const HostMatrix<T> x = random_matrix<T>(tokens, parity_hidden, 500 + tokens);
    const DeviceMatrix<T> device_x(x);
    host::WorkspaceBuffer host_workspace(host_mlp.workspace_bytes(host_executor, tokens));
    const cuda::WorkspaceBuffer device_workspace(device_mlp.workspace_bytes(device_executor, tokens));
    TestWidths::for_each([&]<int Width>() {
      CAPTURE(tokens);
      CAPTURE(Width);
      HostMatrix<T> expected(tokens, parity_hidden);
      host_mlp.forward(host_executor, Width, expected.view(), x.view(), host_workspace.get());
      DeviceMatrix<T> y = poisoned_device_matrix<T>(tokens, parity_hidden);
      device_mlp.forward(device_executor, Width, y.view(), device_x.view(), device_workspace.get());
      ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
      const HostMatrix<T> got = y.to_host();
      CHECK(relative_difference(got, expected) < tolerance<T>());
      CHECK(relative_error(got, reference_mlp(x, weights.gate, weights.up, weights.down, Width)) < tolerance<T>());
    });
  }
}

template <class T>
void check_linear_parity() {
  using OutSet = Widths<32, 64, 96>;
  const HostMatrix<T> weight = random_matrix<T>(96, TestWidths::max, 31, 0.1f);
  const DeviceMatrix<T> device_weight(weight);
  const ElasticLinear<T, OutSet, TestWidths> host_linear(weight.view());
  const ElasticLinear<T, OutSet, TestWidths> device_linear(device_weight.view());
  host::Executor host_executor;
  cuda::Executor device_executor;
  for (int tokens : cuda_token_counts) {
    const HostMatrix<T> x_full = random_matrix<T>(tokens, TestWidths::max, 900 + tokens);
    const DeviceMatrix<T> device_x(x_full);
    const cuda::WorkspaceBuffer workspace(device_linear.workspace_bytes(device_executor, tokens));
    for (int out : OutSet::values)
      TestWidths::for_each([&]<int In>() {
        CAPTURE(tokens);
        CAPTURE(out);
        CAPTURE(In);
        HostMatrix<T> expected(tokens, out);
        host_linear.forward(host_executor, out, In, expected.view(), x_full.view().first_cols(In), {});
        DeviceMatrix<T> y = poisoned_device_matrix<T>(tokens, out);
        device_linear.forward(device_executor, out, In, y.view(), device_x.view().first_cols(In), workspace.get());
        ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
        CHECK(relative_difference(y.to_host(), expected) < tolerance<T>());
      });
  }
}

// convert against the host's widening of a 16-bit model's logits
// (model::widen_logits on the host executor), bit for bit, on strided views
// whose rows end in a scalar tail; nothing outside the view is written.
template <class T>
void check_convert_parity() {
  constexpr index_t rows = 5, cols = 37, source_stride = 40, wide_stride = 44;
  const HostMatrix<T> source = random_matrix<T>(rows, source_stride, 77);
  const DeviceMatrix<T> device_source(source);
  HostMatrix<float> expected(rows, wide_stride);
  fill_poison(expected);
  host::Executor host_executor;
  model::widen_logits(host_executor, MatrixView<float>(expected.values.data(), rows, cols, wide_stride),
                      ConstMatrixView<T>(source.values.data(), rows, cols, source_stride));
  DeviceMatrix<float> wide = poisoned_device_matrix<float>(rows, wide_stride);
  const MatrixView<float> wide_view(wide.buffer.data(), rows, cols, wide_stride);
  const ConstMatrixView<T> source_view(device_source.buffer.data(), rows, cols, source_stride);
  cuda::Executor executor;
  executor.convert(wide_view, source_view);
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(bitwise_equal(wide.to_host().values, expected.values));

  CHECK(error_of([&] { executor.convert(wide_view.first_cols(36), source_view); }) ==
        "convert: destination must be [5 x 37], found [5 x 36, stride 44]");
  const MatrixView<float> over_source(reinterpret_cast<float*>(device_source.buffer.data()), 1, 4);
  CHECK(error_of([&] { executor.convert(over_source, source_view.first_rows(1).first_cols(4)); }) ==
        "convert: the destination overlaps the source");
}

}  // namespace elastic::test
