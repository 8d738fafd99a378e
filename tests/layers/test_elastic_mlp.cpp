// The elastic MLP on the host executor: every width of the set, every dtype,
// 1 to 67 tokens against a float64 reference; nesting (width k equals a dense
// MLP built from copies of the first k neurons); in-place use; the routed form
// add_to_rows against float64; and bad input rejected before anything is
// written.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "support/test_support.hpp"

using namespace elastic;

namespace {

constexpr index_t kHidden = 72;
constexpr index_t kFull = test::TestWidths::max;

template <class T>
using MLP = ElasticMLP<T, test::TestWidths>;

// A dense MLP with copies of the first `width` neurons' weights.
template <class T>
struct DenseCopy {
  DenseCopy(const test::RandomMLP<T>& source, index_t width)
      : gate(width, kHidden), up(width, kHidden), down(kHidden, width) {
    for (index_t j = 0; j < width; ++j)
      for (index_t i = 0; i < kHidden; ++i) {
        gate.values[j * kHidden + i] = source.gate.values[j * kHidden + i];
        up.values[j * kHidden + i] = source.up.values[j * kHidden + i];
        down.values[i * width + j] = source.down.values[i * kFull + j];
      }
  }
  test::HostMatrix<T> gate, up, down;
};

}  // namespace

TEST_CASE_TEMPLATE("elastic MLP matches float64 at every width and token count", T, float, half_t, bfloat16_t) {
  host::Executor executor;
  const test::RandomMLP<T> weights(kHidden, kFull, 42);
  const MLP<T> mlp(weights.weights());
  CHECK(mlp.hidden() == kHidden);
  CHECK(mlp.intermediate() == kFull);
  for (int tokens : test::token_counts) {
    const auto x = test::random_matrix<T>(tokens, kHidden, 1000 + tokens);
    host::WorkspaceBuffer workspace(mlp.workspace_bytes(executor, tokens));
    test::TestWidths::for_each([&]<int Width>() {
      CAPTURE(tokens);
      CAPTURE(Width);
      test::HostMatrix<T> y(tokens, kHidden);
      test::fill_poison(y);
      mlp.forward(executor, Width, y.view(), x.view(), workspace.get());
      const double error = test::relative_error(y, test::reference_mlp(x, weights.gate, weights.up, weights.down, Width));
      CHECK(error < test::tolerance<T>());
    });
  }
}

TEST_CASE_TEMPLATE("width k equals a dense MLP of the first k neurons", T, float, bfloat16_t) {
  host::Executor executor;
  const test::RandomMLP<T> weights(kHidden, kFull, 7);
  const MLP<T> mlp(weights.weights());
  const auto x = test::random_matrix<T>(5, kHidden, 3);
  host::WorkspaceBuffer workspace(mlp.workspace_bytes(executor, x.rows));
  test::TestWidths::for_each([&]<int Width>() {
    CAPTURE(Width);
    const DenseCopy<T> dense(weights, Width);
    const ElasticMLP<T, Widths<Width>> dense_mlp({dense.gate.view(), dense.up.view(), dense.down.view()});
    test::HostMatrix<T> nested(x.rows, kHidden);
    test::HostMatrix<T> reference(x.rows, kHidden);
    mlp.forward(executor, Width, nested.view(), x.view(), workspace.get());
    host::WorkspaceBuffer dense_workspace(dense_mlp.workspace_bytes(executor, x.rows));
    dense_mlp.forward(executor, Width, reference.view(), x.view(), dense_workspace.get());
    for (std::size_t i = 0; i < nested.values.size(); ++i)
      REQUIRE(to_float(nested.values[i]) == to_float(reference.values[i]));  // same sums, same order
  });
}

TEST_CASE("the MLP may run in place") {
  host::Executor executor;
  const test::RandomMLP<float> weights(kHidden, kFull, 9);
  const MLP<float> mlp(weights.weights());
  auto x = test::random_matrix<float>(4, kHidden, 5);
  const auto expected = test::reference_mlp(x, weights.gate, weights.up, weights.down, test::TestWidths::min);
  host::WorkspaceBuffer workspace(mlp.workspace_bytes(executor, 4));
  mlp.forward(executor, test::TestWidths::min, x.view(), x.view(), workspace.get());
  CHECK(test::relative_error(x, expected) < test::tolerance<float>());
}

TEST_CASE_TEMPLATE("add_to_rows adds the MLP of indexed rows into the residual", T, float, half_t, bfloat16_t) {
  host::Executor executor;
  const test::RandomMLP<T> weights(kHidden, kFull, 44);
  const MLP<T> mlp(weights.weights());
  constexpr index_t kTokens = 37;
  const auto x = test::random_matrix<T>(kTokens, kHidden, 5);
  const auto residual_before = test::random_matrix<T>(kTokens, kHidden, 6);
  const std::vector<int> rows = {36, 0, 17, 5, 30, 2, 11, 29, 8, 21, 14, 33, 1, 26, 19, 9, 24, 4};
  test::HostMatrix<T> picked(static_cast<index_t>(rows.size()), kHidden);
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (index_t c = 0; c < kHidden; ++c) picked.values[i * kHidden + c] = x.values[rows[i] * kHidden + c];
  host::WorkspaceBuffer workspace(mlp.add_to_rows_workspace_bytes(executor, kTokens));
  test::TestWidths::for_each([&]<int Width>() {
    CAPTURE(Width);
    const std::vector<double> block = test::reference_mlp(picked, weights.gate, weights.up, weights.down, Width);
    std::vector<double> expected(residual_before.values.size());
    for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = to_float(residual_before.values[i]);
    for (std::size_t i = 0; i < rows.size(); ++i)
      for (index_t c = 0; c < kHidden; ++c) expected[rows[i] * kHidden + c] += block[i * kHidden + c];

    auto residual = residual_before;
    mlp.add_to_rows(executor, Width, residual.view(), x.view(), rows.data(), static_cast<index_t>(rows.size()),
                    workspace.get());
    CHECK(test::relative_error(residual, expected) < test::tolerance<T>());
    for (index_t t = 0; t < kTokens; ++t) {
      if (std::find(rows.begin(), rows.end(), t) != rows.end()) continue;
      REQUIRE(std::memcmp(residual.values.data() + t * kHidden, residual_before.values.data() + t * kHidden,
                          kHidden * sizeof(T)) == 0);
    }
  });

  auto residual = residual_before;
  const std::vector<int> out_of_range = {3, kTokens};
  CHECK_THROWS_WITH_AS(mlp.add_to_rows(executor, kFull, residual.view(), x.view(), out_of_range.data(), 2,
                                       workspace.get()),
                       "gather_swiglu: index 1 is 37, expected 0 <= index < 37", Error);
  CHECK_THROWS_WITH_AS(mlp.add_to_rows(executor, kFull, residual.view(), x.view(), rows.data(), kTokens + 1,
                                       workspace.get()),
                       "ElasticMLP::add_to_rows: 38 rows requested from a batch of 37", Error);
  CHECK_THROWS_AS(mlp.add_to_rows(executor, kFull, residual.view(), ConstMatrixView<T>(residual.view()), rows.data(),
                                  2, workspace.get()),
                  Error);
  CHECK_THROWS_AS(mlp.add_to_rows(executor, kFull, residual.view().first_rows(36), x.view(), rows.data(), 2,
                                  workspace.get()),
                  Error);
  CHECK(test::bitwise_equal(residual.values, residual_before.values));
}

TEST_CASE("bad MLP input is rejected before anything is written") {
  host::Executor executor;
  const test::RandomMLP<bfloat16_t> weights(kHidden, kFull, 11);
  const MLP<bfloat16_t> mlp(weights.weights());
  const auto x = test::random_matrix<bfloat16_t>(3, kHidden, 1);
  test::HostMatrix<bfloat16_t> y(3, kHidden);
  test::fill_poison(y);
  host::WorkspaceBuffer workspace(mlp.workspace_bytes(executor, 3));

  CHECK_THROWS_WITH_AS(mlp.forward(executor, 100, y.view(), x.view(), workspace.get()),
                       ("ElasticMLP width 100 is not in the width set " + test::TestWidths::describe()).c_str(),
                       WidthError);
  CHECK_THROWS_WITH_AS(mlp.forward(executor, test::TestWidths::max, y.view(), x.view().first_rows(2), workspace.get()),
                       "ElasticMLP::forward: output y must be [2 x 72], found [3 x 72, stride 72]", Error);
  CHECK_THROWS_AS(mlp.forward(executor, test::TestWidths::max, y.view().first_cols(64), x.view(), workspace.get()),
                  Error);
  CHECK_THROWS_AS(mlp.forward(executor, test::TestWidths::max, y.view(), ConstMatrixView<bfloat16_t>(nullptr, 3, kHidden),
                              workspace.get()),
                  Error);
  host::WorkspaceBuffer small(mlp.workspace_bytes(executor, 3) - 1);
  CHECK_THROWS_AS(mlp.forward(executor, test::TestWidths::max, y.view(), x.view(), small.get()), WorkspaceError);
  CHECK_THROWS_AS(mlp.forward(executor, test::TestWidths::max, y.view(), x.view(), Workspace{}), WorkspaceError);
  const MatrixView<bfloat16_t> overlapping(y.values.data() + 8, 3, kHidden - 8, kHidden);
  CHECK_THROWS_AS(mlp.forward(executor, test::TestWidths::max, overlapping, ConstMatrixView<bfloat16_t>(y.values.data(), 3, kHidden - 8, kHidden), workspace.get()),
                  Error);
  CHECK(test::all_poison(y));

  // Construction checks: shapes that do not fit together, a set wider than the weights.
  CHECK_THROWS_AS(MLP<bfloat16_t>({weights.gate.view(), weights.up.view().first_rows(64), weights.down.view()}), Error);
  CHECK_THROWS_WITH_AS(
      (ElasticMLP<bfloat16_t, Widths<64, 512>>(weights.weights())),
      "ElasticMLP width 512 exceeds the stored full width 256", WidthError);
}
