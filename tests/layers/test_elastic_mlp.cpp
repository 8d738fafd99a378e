// The elastic MLP on the host executor: every width of the set, every dtype,
// 1 to 67 tokens against a float64 reference; nesting (width k equals a dense
// MLP built from copies of the first k neurons); in-place use; and bad input
// rejected before anything is written.
#include <doctest/doctest.h>

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
                       "ElasticMLP: output must be [2 x 72], found [3 x 72, stride 72]", Error);
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
