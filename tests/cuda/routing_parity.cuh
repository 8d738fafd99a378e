// CUDA-vs-host parity of the routing primitives, shared by the per-dtype
// test file (test_routing_parity.cu, compiled once per element type) and the
// element-type-free plan tests (test_route_plans.cu).
//
// Token counts 1 to 4096 take the one-block kernels (decide's block sort,
// plan's counting sort); 10000 takes the CUB paths, as do 20 choices at any
// token count. Choices come in three spreads: uniform, with empty groups, and
// all in one group. Device outputs start poisoned: choices hold
// choice_poison, plan memory plan_poison bytes, matrices NaN, including the
// padding of rows that have a scalar tail (routing_cols elements inside rows
// of routing_stride), which must stay poisoned. Routing results are exact —
// choices, plans, gathered rows and sums with one rounding match the host
// executor bit for bit — except the row reductions (RMSNorm, contribution
// ratios), whose summation order differs.
#pragma once

#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "cuda/device_buffer.cuh"
#include "elastic/elastic.cuh"
#include "support/route_plan_checks.hpp"

namespace elastic::test {

inline constexpr int routing_token_counts[] = {1, 3, 16, 67, 1000, 4096, 10000};
inline constexpr int routing_large_tokens = 10000;
static_assert(routing_large_tokens > cuda::plan_block_max_tokens &&
                  routing_large_tokens > cuda::decide_block_max_tokens,
              "the largest token count must take the CUB paths");
inline constexpr int routing_min_choices = 2;
inline constexpr int routing_max_choices = 8;
// Past the one-block plan's choice limit: the CUB path at any token count.
inline constexpr int routing_wide_choices = cuda::plan_block_max_choices + 4;

// Rows of routing_cols elements inside rows of routing_stride: whole 16-byte
// vectors plus a scalar tail in every element type, and poisoned padding.
inline constexpr index_t routing_cols = 75;
inline constexpr index_t routing_stride = 80;

inline constexpr int choice_poison = -12345;
inline constexpr unsigned char plan_poison = 0x5a;

enum class Spread { uniform, empty_groups, one_group };
inline constexpr Spread spreads[] = {Spread::uniform, Spread::empty_groups, Spread::one_group};

inline const char* describe(Spread spread) {
  switch (spread) {
    case Spread::uniform: return "uniform";
    case Spread::empty_groups: return "empty groups";
    case Spread::one_group: return "one group";
  }
  return "?";
}

// Per-token choices in [0, choices): uniform; uniform over the choices c with
// c % 3 != 1 (choices 1, 4, 7, ... stay empty); or every token the last one.
inline std::vector<int> spread_choices(int tokens, int choices, Spread spread, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::uniform_int_distribution<int> pick(0, choices - 1);
  std::vector<int> result(static_cast<std::size_t>(tokens));
  for (int& choice : result) {
    switch (spread) {
      case Spread::uniform: choice = pick(engine); break;
      case Spread::empty_groups:
        do choice = pick(engine);
        while (choice % 3 == 1);
        break;
      case Spread::one_group: choice = choices - 1; break;
    }
  }
  return result;
}

// A device copy of a host vector, and back.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host) : buffer_(host.size()) {
    if (!host.empty())
      ELASTIC_CUDA_CHECK(cudaMemcpy(buffer_.data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  T* data() const { return buffer_.data(); }
  std::vector<T> to_host() const {
    std::vector<T> host(buffer_.size());
    if (!host.empty())
      ELASTIC_CUDA_CHECK(cudaMemcpy(host.data(), buffer_.data(), host.size() * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  DeviceBuffer<T> buffer_;
};

// One plan shape in host memory (for the host executor) and in device memory
// that starts as plan_poison bytes.
class PlanPair {
 public:
  PlanPair(int tokens, int choices)
      : bytes_(RoutePlan::bytes_required(tokens, choices)),
        host_memory_(bytes_),
        device_memory_(bytes_),
        host_(RoutePlan::carve(host_memory_.get(), tokens, choices)),
        device_(RoutePlan::carve(device_memory_.get(), tokens, choices)) {
    poison();
  }

  void poison() const { ELASTIC_CUDA_CHECK(cudaMemset(device_memory_.get().data, plan_poison, bytes_)); }

  const RoutePlan& host() const { return host_; }
  const RoutePlan& device() const { return device_; }

  // The device plan's bytes, and a host view of them laid out as the plan.
  std::vector<unsigned char> device_bytes() const {
    std::vector<unsigned char> bytes(bytes_);
    ELASTIC_CUDA_CHECK(cudaMemcpy(bytes.data(), device_memory_.get().data, bytes_, cudaMemcpyDeviceToHost));
    return bytes;
  }
  RoutePlan download(host::WorkspaceBuffer& into) const {
    ELASTIC_CUDA_CHECK(cudaMemcpy(into.get().data, device_memory_.get().data, bytes_, cudaMemcpyDeviceToHost));
    return RoutePlan::carve(into.get(), host_.tokens, host_.choices);
  }

  bool device_untouched() const {
    for (const unsigned char byte : device_bytes())
      if (byte != plan_poison) return false;
    return true;
  }

  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t bytes_;
  host::WorkspaceBuffer host_memory_;
  cuda::WorkspaceBuffer device_memory_;
  RoutePlan host_;
  RoutePlan device_;
};

inline bool same_plan(const RoutePlan& a, const RoutePlan& b) {
  const auto equal = [](const int* x, const int* y, int count) {
    return bitwise_equal(std::span<const int>(x, static_cast<std::size_t>(count)),
                         std::span<const int>(y, static_cast<std::size_t>(count)));
  };
  return a.tokens == b.tokens && a.choices == b.choices && equal(a.counts, b.counts, a.choices) &&
         equal(a.offsets, b.offsets, a.choices + 1) && equal(a.permutation, b.permutation, a.tokens);
}

// Plans `choices` on both executors into `plans` (the device plan from
// `device_choices`, a device copy) and checks the device plan against the
// host's and against the plan properties; the device counts come back
// through read_route_counts.
inline void plan_on_both(host::Executor& host_executor, cuda::Executor& device_executor, const PlanPair& plans,
                         const std::vector<int>& choices, const int* device_choices) {
  const int tokens = plans.host().tokens;
  const int num_choices = plans.host().choices;
  const cuda::WorkspaceBuffer workspace(device_executor.plan_routes_workspace_bytes(tokens, num_choices));
  host_executor.plan_routes(plans.host(), choices.data());
  device_executor.plan_routes(plans.device(), device_choices, workspace.get());

  std::vector<int> counts(static_cast<std::size_t>(num_choices), -1);
  device_executor.read_route_counts(plans.device(), counts);
  CHECK(bitwise_equal(counts, std::span<const int>(plans.host().counts, counts.size())));
  host::WorkspaceBuffer downloaded(plans.bytes());
  const RoutePlan device_plan = plans.download(downloaded);
  CHECK(route_plan_violation(device_plan, choices) == "");
  CHECK(same_plan(device_plan, plans.host()));
}

// A random [rows x routing_cols] matrix inside rows of routing_stride whose
// padding is poison.
template <class T>
HostMatrix<T> padded_random(index_t rows, std::uint64_t seed) {
  HostMatrix<T> matrix = random_matrix<T>(rows, routing_stride, seed);
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = routing_cols; c < routing_stride; ++c) matrix.values[r * routing_stride + c] = poison<T>();
  return matrix;
}

template <class T>
MatrixView<T> routed_view(HostMatrix<T>& matrix) {
  return matrix.view().first_cols(routing_cols);
}
template <class T>
ConstMatrixView<T> routed_view(const HostMatrix<T>& matrix) {
  return matrix.view().first_cols(routing_cols);
}
template <class T>
MatrixView<T> routed_view(DeviceMatrix<T>& matrix) {
  return matrix.view().first_cols(routing_cols);
}
template <class T>
ConstMatrixView<T> routed_view(const DeviceMatrix<T>& matrix) {
  return matrix.view().first_cols(routing_cols);
}

// decide_routes under every rule on random logits, and the capacity rule on
// scores with many ties (signed zeros among them), twice: the device choices
// equal the host's exactly, and repeat.
template <class T>
void check_decide_parity() {
  host::Executor host_executor;
  cuda::Executor device_executor;
  for (int tokens : routing_token_counts)
    for (int choices = routing_min_choices; choices <= routing_max_choices; ++choices) {
      HostMatrix<T> logits = random_matrix<T>(tokens, choices, 7000 + tokens * 16 + choices);
      // Column 1 takes a few values only: the capacity rule's ties.
      const float tied[] = {0.5f, 0.0f, -0.0f, -0.25f, 0.25f};
      std::mt19937 engine(static_cast<unsigned>(tokens + choices));
      for (index_t t = 0; t < tokens; ++t) logits.values[t * choices + 1] = from_float<T>(tied[engine() % 5]);
      const DeviceMatrix<T> device_logits(logits);
      const cuda::WorkspaceBuffer workspace(device_executor.decide_routes_workspace_bytes<T>(tokens, choices));

      const RouteRule rules[] = {RouteRule::argmax(),
                                 RouteRule::skip_above(choices - 1, 0.25f),
                                 RouteRule::skip_above(0, -0.5f),
                                 RouteRule::top_k(0, choices - 1, tokens / 3),
                                 RouteRule::top_k(1, 0, tokens / 2),
                                 RouteRule::top_k(1, 0, 0),
                                 RouteRule::top_k(choices - 1, 0, tokens)};
      for (std::size_t r = 0; r < std::size(rules); ++r) {
        CAPTURE(tokens);
        CAPTURE(choices);
        CAPTURE(r);
        std::vector<int> expected(static_cast<std::size_t>(tokens), choice_poison);
        host_executor.decide_routes(expected.data(), ConstMatrixView<T>(logits.view()), rules[r]);
        for (int repeat = 0; repeat < 2; ++repeat) {
          const DeviceArray<int> got(std::vector<int>(static_cast<std::size_t>(tokens), choice_poison));
          device_executor.decide_routes(got.data(), device_logits.view(), rules[r], workspace.get());
          ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
          CHECK(got.to_host() == expected);
        }
      }
    }
}

// A batch routed the way a layer routes it: plan the choices, gather each
// group's rows into its slice of a dense buffer, scatter-add the dense rows
// back into a residual. Every step bit for bit equal to the host executor's;
// the padding of every row stays poisoned.
template <class T>
void check_routed_rows_parity() {
  host::Executor host_executor;
  cuda::Executor device_executor;
  for (int tokens : routing_token_counts)
    for (int choices : {routing_min_choices, 5, routing_max_choices})
      for (Spread spread : spreads) {
        CAPTURE(tokens);
        CAPTURE(choices);
        CAPTURE(describe(spread));
        const std::vector<int> picks = spread_choices(tokens, choices, spread, 11 * tokens + choices);
        const DeviceArray<int> device_picks(picks);
        const PlanPair plans(tokens, choices);
        plan_on_both(host_executor, device_executor, plans, picks, device_picks.data());

        const HostMatrix<T> input = padded_random<T>(tokens, 300 + tokens);
        HostMatrix<T> residual = padded_random<T>(tokens, 400 + tokens);
        HostMatrix<T> gathered(tokens, routing_stride);
        fill_poison(gathered);
        const DeviceMatrix<T> device_input(input);
        DeviceMatrix<T> device_residual(residual);
        DeviceMatrix<T> device_gathered(gathered);
        for (int c = 0; c < choices; ++c) {
          const int first = plans.host().offsets[c];
          const int count = plans.host().counts[c];
          host_executor.gather_rows(routed_view(gathered).row_range(first, count), routed_view(input),
                                    plans.host().permutation + first);
          device_executor.gather_rows(routed_view(device_gathered).row_range(first, count),
                                      routed_view(device_input), plans.device().permutation + first);
        }
        for (int c = 0; c < choices; ++c) {
          const int first = plans.host().offsets[c];
          const int count = plans.host().counts[c];
          host_executor.scatter_add_rows(routed_view(residual),
                                         ConstMatrixView<T>(routed_view(gathered).row_range(first, count)),
                                         plans.host().permutation + first);
          device_executor.scatter_add_rows(routed_view(device_residual),
                                           ConstMatrixView<T>(routed_view(device_gathered).row_range(first, count)),
                                           plans.device().permutation + first);
        }
        ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
        CHECK(bitwise_equal(device_gathered.to_host().values, gathered.values));
        CHECK(bitwise_equal(device_residual.to_host().values, residual.values));
      }
}

// Rows whose index lies outside the indexed matrix are skipped: a gather
// leaves their destination rows poisoned, a scatter-add leaves the residual
// as it was; the other rows are the host executor's.
template <class T>
void check_out_of_range_indices() {
  host::Executor host_executor;
  cuda::Executor device_executor;
  constexpr int rows = 6;
  const std::vector<int> indices = {4, -1, 0, rows, 2, std::numeric_limits<int>::min()};
  const std::vector<int> valid = {4, 0, 2};
  const std::vector<index_t> valid_rows = {0, 2, 4};
  const DeviceArray<int> device_indices(indices);

  const HostMatrix<T> source = padded_random<T>(rows, 90);
  const DeviceMatrix<T> device_source(source);
  DeviceMatrix<T> gathered = poisoned_device_matrix<T>(rows, routing_stride);
  device_executor.gather_rows(routed_view(gathered), routed_view(device_source), device_indices.data());
  HostMatrix<T> residual = padded_random<T>(rows, 91);
  DeviceMatrix<T> device_residual(residual);
  device_executor.scatter_add_rows(routed_view(device_residual), routed_view(device_source), device_indices.data());
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());

  // The expected results: the host executor on the valid rows only.
  HostMatrix<T> expected_gather(rows, routing_stride);
  fill_poison(expected_gather);
  for (std::size_t i = 0; i < valid.size(); ++i)
    host_executor.gather_rows(routed_view(expected_gather).row_range(valid_rows[i], 1), routed_view(source),
                              &valid[i]);
  for (std::size_t i = 0; i < valid.size(); ++i)
    host_executor.scatter_add_rows(routed_view(residual), routed_view(source).row_range(valid_rows[i], 1),
                                   &valid[i]);
  CHECK(bitwise_equal(gathered.to_host().values, expected_gather.values));
  CHECK(bitwise_equal(device_residual.to_host().values, residual.values));
}

// ||got - expected|| / ||expected|| over float arrays.
inline double relative_difference(const std::vector<float>& got, const std::vector<float>& expected) {
  double diff = 0.0;
  double norm = 0.0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    diff += (double{got[i]} - expected[i]) * (double{got[i]} - expected[i]);
    norm += double{expected[i]} * expected[i];
  }
  return std::sqrt(diff / norm);
}

// RMSNorm (into a poisoned output, and in place), ReLU (padded rows) and the
// contribution ratios (padded rows, one row whose output is zero).
template <class T>
void check_row_ops_parity() {
  host::Executor host_executor;
  cuda::Executor device_executor;
  for (int tokens : routing_token_counts)
    for (index_t cols : {index_t{72}, index_t{4096}}) {
      if (tokens * cols > index_t{1} << 24) continue;  // the large rows at small batches only
      CAPTURE(tokens);
      CAPTURE(cols);
      const HostMatrix<T> x = random_matrix<T>(tokens, cols, 50 + tokens);
      const HostMatrix<T> weight = random_matrix<T>(1, cols, 51);
      HostMatrix<T> expected(tokens, cols);
      host_executor.rms_norm(expected.view(), x.view(), weight.view(), 1e-5f);
      DeviceMatrix<T> device_x(x);
      const DeviceMatrix<T> device_weight(weight);
      DeviceMatrix<T> y = poisoned_device_matrix<T>(tokens, cols);
      device_executor.rms_norm(y.view(), device_x.view(), device_weight.view(), 1e-5f);
      device_executor.rms_norm(device_x.view(), device_x.view(), device_weight.view(), 1e-5f);
      ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
      CHECK(relative_difference(y.to_host(), expected) < tolerance<T>());
      CHECK(relative_difference(device_x.to_host(), expected) < tolerance<T>());
    }

  for (int tokens : routing_token_counts) {
    CAPTURE(tokens);
    HostMatrix<T> x = padded_random<T>(tokens, 60 + tokens);
    DeviceMatrix<T> device_x(x);
    host_executor.relu_in_place(routed_view(x));
    device_executor.relu_in_place(routed_view(device_x));

    const HostMatrix<T> block = padded_random<T>(tokens, 70 + tokens);
    HostMatrix<T> residual = padded_random<T>(tokens, 80 + tokens);
    for (index_t c = 0; c < routing_cols; ++c)  // row 0's output x + f is exactly zero
      residual.values[c] = from_float<T>(-to_float(block.values[c]));
    const DeviceMatrix<T> device_block(block), device_residual(residual);
    std::vector<float> expected(static_cast<std::size_t>(tokens));
    host_executor.contribution_ratios(expected.data(), routed_view(block), routed_view(residual));
    const DeviceArray<float> ratios(std::vector<float>(static_cast<std::size_t>(tokens), poison<float>()));
    device_executor.contribution_ratios(ratios.data(), routed_view(device_block), routed_view(device_residual));
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());

    CHECK(bitwise_equal(device_x.to_host().values, x.values));
    const std::vector<float> got = ratios.to_host();
    CHECK(got[0] == 0.0f);
    CHECK(relative_difference(got, expected) < 1e-5);
  }
}

// Rejected calls throw before anything is written: the outputs stay poisoned.
template <class T>
void check_routing_argument_errors() {
  cuda::Executor executor;
  constexpr int tokens = routing_large_tokens;  // the capacity rule needs workspace here
  const DeviceMatrix<T> logits(random_matrix<T>(tokens, 4, 5));
  const DeviceArray<int> choices(std::vector<int>(tokens, choice_poison));
  const std::size_t needed = executor.decide_routes_workspace_bytes<T>(tokens, 4);
  const cuda::WorkspaceBuffer small(needed - 256);
  const cuda::WorkspaceBuffer enough(needed);
  CHECK_THROWS_WITH_AS(executor.decide_routes(choices.data(), logits.view(), RouteRule::top_k(1, 0, 10), small.get()),
                       doctest::Contains("workspace too small"), WorkspaceError);
  CHECK_THROWS_WITH_AS(
      executor.decide_routes(choices.data(), logits.view(), RouteRule::top_k(1, 0, tokens + 1), enough.get()),
      doctest::Contains("must be between 0 and the batch's"), Error);
  CHECK_THROWS_WITH_AS(executor.decide_routes(choices.data(), logits.view(), RouteRule::skip_above(4, 0.0f)),
                       doctest::Contains("skip choice 4 is not in [0, 4)"), Error);
  CHECK_THROWS_AS(executor.decide_routes(static_cast<int*>(nullptr), logits.view(), RouteRule::argmax()), Error);

  constexpr int rows = 8;
  const DeviceMatrix<T> source(padded_random<T>(rows, 3));
  DeviceMatrix<T> output = poisoned_device_matrix<T>(rows, routing_stride);
  const DeviceArray<int> indices(std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK_THROWS_WITH_AS(executor.gather_rows(output.view().first_cols(8), routed_view(source), indices.data()),
                       doctest::Contains("expected equal"), Error);
  CHECK_THROWS_WITH_AS(executor.gather_rows(routed_view(output), routed_view(source), nullptr),
                       doctest::Contains("null pointer"), Error);
  const MatrixView<T> misaligned(output.buffer.data() + 1, rows, routing_cols - 1, routing_stride);
  CHECK_THROWS_WITH_AS(executor.scatter_add_rows(misaligned, source.view().first_cols(routing_cols - 1),
                                                 indices.data()),
                       doctest::Contains("aligned"), Error);
  CHECK_THROWS_WITH_AS(executor.relu_in_place(misaligned), doctest::Contains("aligned"), Error);
  CHECK_THROWS_WITH_AS(executor.rms_norm(routed_view(output), routed_view(source), routed_view(source), 1e-5f),
                       doctest::Contains("weight must be [1 x 75]"), Error);
  CHECK_THROWS_WITH_AS(executor.rms_norm(routed_view(output), routed_view(source),
                                         routed_view(source).row_range(0, 1), 1e-5f),
                       doctest::Contains("reduction length must be a multiple"), Error);
  CHECK_THROWS_WITH_AS(executor.contribution_ratios(nullptr, routed_view(source), routed_view(source)),
                       doctest::Contains("null pointer"), Error);
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(all_poison(output.to_host()));
  CHECK(choices.to_host() == std::vector<int>(tokens, choice_poison));
}

}  // namespace elastic::test
