// CUDA-vs-host parity checks shared by the per-dtype test files (one file per
// dtype so the three instantiations compile in parallel): the elastic MLP and
// the elastic linear map at every width of the set and token counts covering
// every decode bucket and the prefill path, and the widening to float32.
// Outputs start poisoned, so an unwritten element fails. The decode row dots
// (linear, fused SwiGLU, gathered and scatter-add forms at 1-16 tokens, on
// tensor cores for 2-16 tokens of half and bfloat16) are checked element by
// element against float64 on sliced weights and strided activations and
// outputs, with row counts and lengths that leave tails.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

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

// --- decode row dots -------------------------------------------------------

// Row counts (not multiples of 16, one tile and several) and reduction lengths
// (0: outputs epilogue(0); 8: one vector; 40 and 200: partial groups of 64;
// 7000: two staged pieces at 16 tokens) the decode kernels are checked over.
inline constexpr int decode_rows[] = {45, 200};
inline constexpr int decode_lengths[] = {0, 8, 40, 200};
inline constexpr int decode_long_length = 7000;

// Budget for max|got - expected| / max|expected|: one rounding to T of each
// output; float32 sums of up to 7000 products for float.
template <class T>
constexpr double decode_tolerance() {
  return std::is_same_v<T, float> ? 2e-5 : tolerance<T>();
}

// A [rows x cols] view into a poisoned (or random) allocation with `extra`
// columns more per row, so the view is strided and an element written past
// its columns shows. extra keeps rows 16-byte aligned for cols % 8 == 0.
template <class T>
struct PaddedDeviceMatrix {
  PaddedDeviceMatrix(const HostMatrix<T>& full, index_t cols_) : cols(cols_), matrix(full) {}
  MatrixView<T> view() { return matrix.view().first_cols(cols); }
  ConstMatrixView<T> view() const { return matrix.view().first_cols(cols); }
  index_t cols;
  DeviceMatrix<T> matrix;
};

inline index_t padded_cols(index_t cols) { return (cols + 7) / 8 * 8 + 8; }

// float64 dot of row `row` of x (its first `length` columns) with row `o` of w.
template <class T>
double reference_dot(const HostMatrix<T>& x, index_t row, const HostMatrix<T>& w, index_t o, index_t length) {
  double sum = 0.0;
  for (index_t i = 0; i < length; ++i) sum += x.at(row, i) * w.at(o, i);
  return sum;
}

// Compares a device output (its whole allocation) with the expected one:
// NaN in `expected` means "left as it was" and must match `before` bit for
// bit; every other element within decode_tolerance of max|expected|.
template <class T>
void check_decode_output(const HostMatrix<T>& got, const HostMatrix<T>& before, const std::vector<double>& expected) {
  double scale = 0.0, worst = 0.0;
  int unchanged_mismatches = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (std::isnan(expected[i])) {
      if (std::memcmp(&got.values[i], &before.values[i], sizeof(T)) != 0) ++unchanged_mismatches;
      continue;
    }
    scale = std::max(scale, std::abs(expected[i]));
    const double value = to_float(got.values[i]);
    worst = std::max(worst, std::isfinite(value) ? std::abs(value - expected[i]) : std::numeric_limits<double>::infinity());
  }
  CHECK(unchanged_mismatches == 0);
  CHECK(worst <= decode_tolerance<T>() * scale);
}

// Activations [tokens x length] (strided) against weights sliced out of a
// larger matrix: linear and SwiGLU at every decode token count.
template <class T>
void check_decode_linear_and_swiglu(int rows, int length) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  const float scale = 1.0f / std::sqrt(static_cast<float>(std::max(length, 1)));
  const HostMatrix<T> gate = random_matrix<T>(rows + 3, padded_cols(length), 11 + rows, scale);
  const HostMatrix<T> up = random_matrix<T>(rows + 3, padded_cols(length), 12 + rows, scale);
  const PaddedDeviceMatrix<T> device_gate(gate, length), device_up(up, length);
  cuda::Executor executor;
  for (int tokens = 1; tokens <= cuda::decode_max_tokens; ++tokens) {
    CAPTURE(tokens);
    const HostMatrix<T> x = random_matrix<T>(tokens, padded_cols(length), 300 + tokens);
    const PaddedDeviceMatrix<T> device_x(x, length);
    const HostMatrix<T> before = poisoned_matrix<T>(tokens, padded_cols(rows));
    std::vector<double> linear_expected(before.values.size(), nan), swiglu_expected(before.values.size(), nan);
    for (index_t t = 0; t < tokens; ++t)
      for (index_t o = 0; o < rows; ++o) {
        const double g = reference_dot(x, t, gate, o, length);
        linear_expected[t * before.cols + o] = g;
        swiglu_expected[t * before.cols + o] = reference_silu(g) * reference_dot(x, t, up, o, length);
      }

    PaddedDeviceMatrix<T> y(before, rows);
    executor.linear(y.view(), device_x.view(), device_gate.view().first_rows(rows));
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
    check_decode_output(y.matrix.to_host(), before, linear_expected);

    PaddedDeviceMatrix<T> h(before, rows);
    executor.swiglu(h.view(), device_x.view(), device_gate.view().first_rows(rows), device_up.view().first_rows(rows));
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
    check_decode_output(h.matrix.to_host(), before, swiglu_expected);
  }
}

// The indexed forms at every decode token count: gather_swiglu reads token
// t's activations from row indices[t] of a larger batch, linear_scatter_add
// adds token t's result into row indices[t] of y. From 3 tokens on, one index
// lies past the end and one is negative: those tokens are skipped.
template <class T>
void check_decode_indexed(int rows, int length) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  constexpr index_t batch_rows = 24;
  const float scale = 1.0f / std::sqrt(static_cast<float>(std::max(length, 1)));
  const HostMatrix<T> gate = random_matrix<T>(rows, padded_cols(length), 21 + rows, scale);
  const HostMatrix<T> up = random_matrix<T>(rows, padded_cols(length), 22 + rows, scale);
  const PaddedDeviceMatrix<T> device_gate(gate, length), device_up(up, length);
  const HostMatrix<T> batch = random_matrix<T>(batch_rows, padded_cols(length), 23);
  const PaddedDeviceMatrix<T> device_batch(batch, length);
  cuda::Executor executor;
  for (int tokens = 1; tokens <= cuda::decode_max_tokens; ++tokens) {
    CAPTURE(tokens);
    std::vector<int> indices(batch_rows);
    std::iota(indices.begin(), indices.end(), 0);
    std::shuffle(indices.begin(), indices.end(), std::mt19937(static_cast<unsigned>(tokens)));
    indices.resize(static_cast<std::size_t>(tokens));
    if (tokens >= 3) {
      indices[1] = static_cast<int>(batch_rows);
      indices[tokens - 1] = -1;
    }
    const DeviceBuffer<int> device_indices(indices.size());
    ELASTIC_CUDA_CHECK(cudaMemcpy(device_indices.data(), indices.data(), indices.size() * sizeof(int),
                                  cudaMemcpyHostToDevice));
    const auto in_range = [&](int t) { return indices[t] >= 0 && indices[t] < batch_rows; };

    // gather_swiglu: h[t] = swiglu(batch[indices[t]]); skipped tokens keep the poison.
    const HostMatrix<T> h_before = poisoned_matrix<T>(tokens, padded_cols(rows));
    std::vector<double> h_expected(h_before.values.size(), nan);
    for (int t = 0; t < tokens; ++t)
      if (in_range(t))
        for (index_t o = 0; o < rows; ++o)
          h_expected[t * h_before.cols + o] = reference_silu(reference_dot(batch, indices[t], gate, o, length)) *
                                              reference_dot(batch, indices[t], up, o, length);
    PaddedDeviceMatrix<T> h(h_before, rows);
    executor.gather_swiglu(h.view(), device_batch.view(), device_indices.data(), device_gate.view(),
                           device_up.view());
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
    check_decode_output(h.matrix.to_host(), h_before, h_expected);

    // linear_scatter_add: y[indices[t]] += x[t] . w; other rows keep their values.
    const HostMatrix<T> x = random_matrix<T>(tokens, padded_cols(length), 400 + tokens);
    const PaddedDeviceMatrix<T> device_x(x, length);
    const HostMatrix<T> y_before = random_matrix<T>(batch_rows, padded_cols(rows), 500 + tokens);
    std::vector<double> y_expected(y_before.values.size(), nan);
    for (int t = 0; t < tokens; ++t)
      if (in_range(t))
        for (index_t o = 0; o < rows; ++o)
          y_expected[indices[t] * y_before.cols + o] = y_before.at(indices[t], o) + reference_dot(x, t, gate, o, length);
    PaddedDeviceMatrix<T> y(y_before, rows);
    executor.linear_scatter_add(y.view(), device_x.view(), device_gate.view(), device_indices.data());
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
    check_decode_output(y.matrix.to_host(), y_before, y_expected);
  }
}

template <class T>
void check_decode_row_dots() {
  for (int rows : decode_rows)
    for (int length : decode_lengths) {
      CAPTURE(rows);
      CAPTURE(length);
      check_decode_linear_and_swiglu<T>(rows, length);
      check_decode_indexed<T>(rows, length);
    }
  CAPTURE(decode_long_length);
  check_decode_linear_and_swiglu<T>(decode_rows[0], decode_long_length);
  check_decode_indexed<T>(decode_rows[0], decode_long_length);
}

}  // namespace elastic::test
