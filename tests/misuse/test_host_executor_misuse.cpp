// Misuse of the host executor's primitives, the entry points an engine calls
// when it composes its own layers: null, misaligned, mis-shaped and
// overlapping arguments, NaN configuration and out-of-range indices are
// rejected with elastic::Error, a message naming the primitive and the
// argument, and every buffer the call could write left bit-identical. Each
// family of bad calls stands next to a good one whose result is checked, so
// the checks cannot pass by rejecting everything.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "support/misuse.hpp"

using namespace elastic;
using test::bytes_of;
using test::check_rejected;

namespace {

constexpr index_t kCols = 32;
constexpr index_t kRows = 4;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// y[t, o] = sum_i x[t, i] w[o, i] in float64.
double dot_row(const test::HostMatrix<float>& x, index_t t, const test::HostMatrix<float>& w, index_t o) {
  double sum = 0.0;
  for (index_t i = 0; i < x.cols; ++i)
    sum += double(x.values[std::size_t(t * x.cols + i)]) * double(w.values[std::size_t(o * w.cols + i)]);
  return sum;
}

struct Operands {
  host::Executor executor{2};
  test::HostMatrix<float> x = test::random_matrix<float>(kRows, kCols, 11);
  test::HostMatrix<float> w = test::random_matrix<float>(kRows * 2, kCols, 12);
  test::HostMatrix<float> w2 = test::random_matrix<float>(kRows * 2, kCols, 13);
  test::HostMatrix<float> y = test::random_matrix<float>(kRows, kRows * 2, 14);
};

}  // namespace

TEST_CASE("linear and swiglu reject null, misaligned, mis-shaped and overlapping operands") {
  Operands f;
  const auto untouched = {bytes_of(f.y), bytes_of(f.w), bytes_of(f.x)};
  const MatrixView<float> null_output(nullptr, kRows, kRows * 2);
  check_rejected([&] { f.executor.linear(null_output, f.x.view(), f.w.view()); }, {"linear", "output", "null"},
                 untouched);
  // One float past an aligned address: 4 bytes off the 16-byte contract.
  const ConstMatrixView<float> misaligned(f.x.values.data() + 1, kRows - 1, kCols - 4, kCols);
  check_rejected([&] { f.executor.linear(f.y.view().first_rows(kRows - 1), misaligned, f.w.view().first_cols(kCols - 4)); },
                 {"linear", "input", "aligned"}, untouched);
  check_rejected([&] { f.executor.linear(f.y.view().first_rows(2), f.x.view(), f.w.view()); },
                 {"linear", "output must be [4 x 8]"}, untouched);
  check_rejected([&] { f.executor.linear(f.y.view(), f.x.view().first_cols(30), f.w.view().first_cols(30)); },
                 {"linear", "reduction length", "multiple of 4", "found 30"}, untouched);
  check_rejected([&] { f.executor.linear(f.y.view(), f.x.view(), f.w.view(), {}, Extent<64>{}); },
                 {"linear", "Extent<64>"}, untouched);
  // The output laid over the weight it reads.
  const MatrixView<float> over_weight(f.w.values.data(), kRows, kRows * 2);
  check_rejected([&] { f.executor.linear(over_weight, f.x.view(), f.w.view()); },
                 {"linear", "output", "overlaps the weight"}, {bytes_of(f.w), bytes_of(f.x)});
  const MatrixView<float> h_over_up(f.w2.values.data(), kRows, kRows * 2);
  check_rejected([&] { f.executor.swiglu(h_over_up, f.x.view(), f.w.view(), f.w2.view()); },
                 {"swiglu", "output", "overlaps the up weight"}, {bytes_of(f.w2), bytes_of(f.w)});
  check_rejected([&] { f.executor.swiglu(f.y.view(), f.x.view(), f.w.view(), f.w2.view().first_rows(3)); },
                 {"swiglu", "up weight must be [8 x 32]"}, untouched);

  f.executor.linear(f.y.view(), f.x.view(), f.w.view());
  for (index_t t = 0; t < kRows; ++t)
    for (index_t o = 0; o < kRows * 2; ++o) CHECK(f.y.values[std::size_t(t * 8 + o)] == doctest::Approx(dot_row(f.x, t, f.w, o)).epsilon(1e-5));
}

TEST_CASE("gather_rows, scatter_add_rows and the indexed row dots reject bad indices before writing") {
  Operands f;
  test::HostMatrix<float> dst = test::random_matrix<float>(2, kCols, 21);
  const std::vector<int> good = {3, 1};
  const std::vector<int> out_of_range = {3, 4};
  const std::vector<int> negative = {-1, 0};
  const auto untouched = {bytes_of(dst), bytes_of(f.x)};
  check_rejected([&] { f.executor.gather_rows(dst.view(), f.x.view(), nullptr); },
                 {"gather_rows", "row indices", "null"}, untouched);
  check_rejected([&] { f.executor.gather_rows(dst.view(), f.x.view(), out_of_range.data()); },
                 {"gather_rows", "is 4"}, untouched);
  check_rejected([&] { f.executor.gather_rows(dst.view(), f.x.view(), negative.data()); },
                 {"gather_rows", "is -1"}, untouched);
  check_rejected([&] { f.executor.gather_rows(dst.view().first_cols(16), f.x.view(), good.data()); },
                 {"gather_rows", "destination has 16 columns"}, untouched);
  // Indices stored inside the destination they steer.
  auto* indices_in_dst = reinterpret_cast<int*>(dst.values.data());
  check_rejected([&] { f.executor.gather_rows(dst.view(), f.x.view(), indices_in_dst); },
                 {"gather_rows", "destination", "row indices"}, untouched);
  check_rejected([&] { f.executor.scatter_add_rows(f.x.view(), dst.view(), out_of_range.data()); },
                 {"scatter_add_rows", "is 4"}, untouched);

  test::HostMatrix<float> h = test::random_matrix<float>(2, kRows * 2, 22);
  check_rejected([&] { f.executor.gather_swiglu(h.view(), f.x.view(), out_of_range.data(), f.w.view(), f.w2.view()); },
                 {"gather_swiglu", "is 4"}, {bytes_of(h)});
  test::HostMatrix<float> residual = test::random_matrix<float>(kRows, kRows * 2, 23);
  check_rejected([&] { f.executor.linear_scatter_add(residual.view(), dst.view(), f.w.view(), out_of_range.data()); },
                 {"linear_scatter_add", "is 4"}, {bytes_of(residual)});
  check_rejected([&] { f.executor.linear_scatter_add(residual.view(), dst.view(), f.w.view(), nullptr); },
                 {"linear_scatter_add", "null"}, {bytes_of(residual)});

  f.executor.gather_rows(dst.view(), f.x.view(), good.data());
  for (index_t c = 0; c < kCols; ++c) {
    CHECK(dst.values[std::size_t(c)] == f.x.values[std::size_t(3 * kCols + c)]);
    CHECK(dst.values[std::size_t(kCols + c)] == f.x.values[std::size_t(kCols + c)]);
  }
}

TEST_CASE("rms_norm rejects NaN and negative epsilon, wrong weights and partial overlaps") {
  Operands f;
  test::HostMatrix<float> weight = test::random_matrix<float>(1, kCols, 31);
  test::HostMatrix<float> y = test::random_matrix<float>(kRows, kCols, 32);
  const auto untouched = {bytes_of(y), bytes_of(weight), bytes_of(f.x)};
  check_rejected([&] { f.executor.rms_norm(y.view(), f.x.view(), weight.view(), kNaN); }, {"rms_norm", "epsilon", "nan"},
                 untouched);
  check_rejected([&] { f.executor.rms_norm(y.view(), f.x.view(), weight.view(), -1e-5f); }, {"rms_norm", "epsilon"},
                 untouched);
  check_rejected([&] { f.executor.rms_norm(y.view(), f.x.view(), weight.view().first_cols(16), 1e-5f); },
                 {"rms_norm", "weight must be [1 x 32]"}, untouched);
  test::HostMatrix<float> rows = test::random_matrix<float>(kRows + 1, kCols, 33);
  const MatrixView<float> shifted(rows.values.data() + kCols, kRows, kCols);
  check_rejected([&] { f.executor.rms_norm(shifted, rows.view().first_rows(kRows), weight.view(), 1e-5f); },
                 {"rms_norm", "output", "overlaps the input", "in-place"}, {bytes_of(rows)});
  const MatrixView<float> over_weight(weight.values.data(), 1, kCols);
  check_rejected([&] { f.executor.rms_norm(over_weight, f.x.view().first_rows(1), weight.view(), 1e-5f); },
                 {"rms_norm", "output", "overlaps the weight"}, {bytes_of(weight)});

  f.executor.rms_norm(y.view(), f.x.view(), weight.view(), 1e-5f);
  for (index_t t = 0; t < kRows; ++t) {
    double sum = 0.0;
    for (index_t c = 0; c < kCols; ++c) sum += std::pow(double(f.x.values[std::size_t(t * kCols + c)]), 2);
    const double scale = 1.0 / std::sqrt(sum / kCols + 1e-5);
    for (index_t c = 0; c < kCols; ++c)
      CHECK(y.values[std::size_t(t * kCols + c)] ==
            doctest::Approx(f.x.values[std::size_t(t * kCols + c)] * scale * weight.values[std::size_t(c)]).epsilon(1e-5));
  }
}

TEST_CASE("decide_routes and plan_routes reject bad rules, choices and plans before writing") {
  host::Executor executor(1);
  test::HostMatrix<float> logits = test::random_matrix<float>(kRows, 3, 41);
  std::vector<int> choices(kRows, -7);
  const auto untouched = {bytes_of(choices), bytes_of(logits)};
  check_rejected([&] { executor.decide_routes(choices.data(), std::as_const(logits).view(), RouteRule::skip_above(0, kNaN)); },
                 {"threshold", "NaN"}, untouched);
  check_rejected([&] { executor.decide_routes(choices.data(), std::as_const(logits).view(), RouteRule::skip_above(3, 0.0f)); },
                 {"route rule", "3"}, untouched);
  check_rejected([&] { executor.decide_routes(choices.data(), std::as_const(logits).view(), RouteRule::top_k(0, 1, kRows + 1)); },
                 {"route rule", "capacity"}, untouched);
  check_rejected([&] { executor.decide_routes(nullptr, std::as_const(logits).view(), RouteRule::argmax()); },
                 {"decide_routes", "choices output", "null"}, untouched);
  auto* choices_in_logits = reinterpret_cast<int*>(logits.values.data());
  check_rejected([&] { executor.decide_routes(choices_in_logits, std::as_const(logits).view(), RouteRule::argmax()); },
                 {"decide_routes", "choices output", "overlaps the logits"}, untouched);

  host::WorkspaceBuffer memory(RoutePlan::bytes_required(kRows, 3));
  const RoutePlan plan = RoutePlan::carve(memory.get(), kRows, 3);
  const std::vector<int> bad_choices = {0, 1, 3, 2};
  check_rejected([&] { executor.plan_routes(plan, bad_choices.data()); }, {"plan_routes", "3"}, {bytes_of(memory)});
  check_rejected([&] { executor.plan_routes(plan, plan.permutation); }, {"plan_routes", "permutation", "choices"},
                 {bytes_of(memory)});

  executor.decide_routes(choices.data(), std::as_const(logits).view(), RouteRule::argmax());
  for (index_t t = 0; t < kRows; ++t) {
    const float* row = logits.values.data() + t * 3;
    CHECK(choices[std::size_t(t)] == int(std::max_element(row, row + 3) - row));
  }
  executor.plan_routes(plan, choices.data());
  std::array<int, 3> counts{};
  executor.read_route_counts(plan, counts);
  CHECK(counts[0] + counts[1] + counts[2] == kRows);
  // A claim that moves one token between groups keeps the total and is still caught.
  std::array<int, 3> claimed = counts;
  const int from = counts[0] > 0 ? 0 : counts[1] > 0 ? 1 : 2;
  --claimed[std::size_t(from)];
  ++claimed[std::size_t((from + 1) % 3)];
  check_rejected([&] { executor.check_route_counts(plan, claimed, {}, "Caller::method"); },
                 {"Caller::method", "tokens given for choice"}, {bytes_of(memory)});
  check_rejected([&] { executor.read_route_counts(plan, std::span(counts).first(2)); },
                 {"read_route_counts", "2 entries given for 3 choices"}, {});
}

TEST_CASE("load_indices and contribution_ratios reject null and overlapping arguments") {
  host::Executor executor(1);
  std::vector<int> destination(4, -3);
  const std::vector<int> source = {1, 2, 3, 4};
  std::vector<int> no_memory;  // data() is null, as the compiler cannot tell
  check_rejected([&] { executor.load_indices(no_memory.data(), source); }, {"load_indices", "destination", "null"},
                 {bytes_of(destination)});
  std::vector<int> both = {1, 2, 3, 4, 5};
  check_rejected([&] { executor.load_indices(both.data() + 1, std::span<const int>(both).first(4)); },
                 {"load_indices", "destination", "overlaps the host indices"}, {bytes_of(both)});
  executor.load_indices(destination.data(), source);
  CHECK(destination == source);

  test::HostMatrix<float> block = test::random_matrix<float>(kRows, kCols, 51);
  test::HostMatrix<float> residual = test::random_matrix<float>(kRows, kCols, 52);
  std::vector<float> ratios(kRows, -1.0f);
  check_rejected([&] { executor.contribution_ratios(ratios.data(), std::as_const(block).view(), std::as_const(residual).view().first_rows(2)); },
                 {"contribution_ratios", "residual must be [4 x 32]"}, {bytes_of(ratios)});
  check_rejected([&] { executor.contribution_ratios(block.values.data(), std::as_const(block).view(), std::as_const(residual).view()); },
                 {"contribution_ratios", "ratios output", "overlaps the block output"}, {bytes_of(block)});
  executor.contribution_ratios(ratios.data(), std::as_const(block).view(), std::as_const(residual).view());
  for (float ratio : ratios) CHECK((ratio > 0.0f && std::isfinite(ratio)));
}
