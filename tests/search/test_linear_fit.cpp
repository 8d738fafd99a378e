// Closed-form linear replacement blocks (elastic/search/linear_fit.hpp): the
// ridge fit from accumulated moments against a float64 least-squares
// reference solved another way (Householder QR of the stacked rows), the
// moment-based relative error against the residual over the rows, merging,
// held-out scoring on planted data, the W_o W_v initialisation against a
// direct loop, and the argument checks.
#include <doctest/doctest.h>

#include <Eigen/QR>

#include <cmath>
#include <random>
#include <vector>

#include "elastic/search/linear_fit.hpp"
#include "support/error_message.hpp"
#include "support/test_support.hpp"

using namespace elastic;
using search::LinearFitMoments;

namespace {

// Rows y_t = W_true x_t + noise_t: a planted linear map, uniform inputs and
// outputs of about unit scale.
struct PlantedRows {
  test::HostMatrix<float> x;
  test::HostMatrix<float> y;
};

PlantedRows planted_rows(const test::HostMatrix<float>& w_true, index_t rows, std::uint64_t seed,
                         float noise) {
  PlantedRows planted{test::random_matrix<float>(rows, w_true.cols, seed),
                      test::HostMatrix<float>(rows, w_true.rows)};
  const auto noise_rows = test::random_matrix<float>(rows, w_true.rows, seed + 1, noise);
  for (index_t t = 0; t < rows; ++t)
    for (index_t i = 0; i < w_true.rows; ++i) {
      double sum = noise_rows.view()(t, i);
      for (index_t j = 0; j < w_true.cols; ++j) sum += double(w_true.view()(i, j)) * planted.x.view()(t, j);
      planted.y.view()(t, i) = float(sum);
    }
  return planted;
}

Eigen::MatrixXd to_eigen(ConstMatrixView<float> m) {
  Eigen::MatrixXd out(m.rows(), m.cols());
  for (index_t r = 0; r < m.rows(); ++r)
    for (index_t c = 0; c < m.cols(); ++c) out(r, c) = m(r, c);
  return out;
}

// The ridge solution solved another way: least squares of the stacked
// [X; sqrt(lambda') I] against [Y; 0] by Householder QR, lambda' from a plain
// loop over the squared inputs.
Eigen::MatrixXd reference_ridge(ConstMatrixView<float> x, ConstMatrixView<float> y, double relative_ridge) {
  double trace = 0;
  for (index_t t = 0; t < x.rows(); ++t)
    for (index_t j = 0; j < x.cols(); ++j) trace += double(x(t, j)) * x(t, j);
  const double ridge = relative_ridge * trace / double(x.cols());
  Eigen::MatrixXd a = Eigen::MatrixXd::Zero(x.rows() + x.cols(), x.cols());
  Eigen::MatrixXd b = Eigen::MatrixXd::Zero(x.rows() + x.cols(), y.cols());
  a.topRows(x.rows()) = to_eigen(x);
  b.topRows(x.rows()) = to_eigen(y);
  a.bottomRows(x.cols()) = std::sqrt(ridge) * Eigen::MatrixXd::Identity(x.cols(), x.cols());
  return a.householderQr().solve(b).transpose();  // [out x in]
}

// sum_t ||W x_t - y_t||^2 / sum_t ||y_t||^2 over the rows, directly.
double direct_relative_error(const Eigen::MatrixXd& w, ConstMatrixView<float> x, ConstMatrixView<float> y) {
  double error = 0;
  double energy = 0;
  for (index_t t = 0; t < x.rows(); ++t)
    for (index_t i = 0; i < y.cols(); ++i) {
      double predicted = 0;
      for (index_t j = 0; j < x.cols(); ++j) predicted += w(i, j) * x(t, j);
      error += (predicted - y(t, i)) * (predicted - y(t, i));
      energy += double(y(t, i)) * y(t, i);
    }
  return error / energy;
}

double relative_difference(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  return (a - b).norm() / b.norm();
}

// Adds the rows in uneven batches, the last ones through a strided view (the
// leading columns of a wider matrix), as calibration windows would come.
void add_in_batches(LinearFitMoments& moments, const PlantedRows& rows) {
  const index_t in = rows.x.cols;
  const index_t out = rows.y.cols;
  const index_t split = rows.x.rows / 3;
  moments.add(rows.x.view().row_range(0, 1), rows.y.view().row_range(0, 1));
  moments.add(rows.x.view().row_range(1, split - 1), rows.y.view().row_range(1, split - 1));
  const index_t rest = rows.x.rows - split;
  test::HostMatrix<float> wide_x(rest, in + 5);
  test::HostMatrix<float> wide_y(rest, out + 3);
  for (index_t t = 0; t < rest; ++t) {
    for (index_t j = 0; j < in + 5; ++j) wide_x.view()(t, j) = j < in ? rows.x.view()(split + t, j) : 1e6f;
    for (index_t i = 0; i < out + 3; ++i) wide_y.view()(t, i) = i < out ? rows.y.view()(split + t, i) : -1e6f;
  }
  moments.add(wide_x.view().first_cols(in), wide_y.view().first_cols(out));
}

}  // namespace

TEST_CASE("ridge fit from moments matches Householder QR of the stacked rows") {
  const index_t in = 24;
  const index_t out = 16;
  const auto w_true = test::random_matrix<float>(out, in, 3, 0.5f);
  // More rows than one accumulation chunk, so chunking is exercised too.
  const PlantedRows rows = planted_rows(w_true, LinearFitMoments::chunk_rows + 300, 11, 0.1f);
  LinearFitMoments moments(in, out);
  add_in_batches(moments, rows);
  CHECK(moments.rows() == rows.x.rows);
  for (double relative_ridge : {0.0, 1e-3, 0.3}) {
    CAPTURE(relative_ridge);
    const Eigen::MatrixXd fitted = moments.ridge_solution(relative_ridge);
    const Eigen::MatrixXd reference = reference_ridge(rows.x.view(), rows.y.view(), relative_ridge);
    CHECK(relative_difference(fitted, reference) < 1e-9);
    // The float weight is the same map, rounded, row-major [out x in].
    const search::LinearWeight weight = moments.fit(relative_ridge);
    REQUIRE(weight.out_features == out);
    REQUIRE(weight.in_features == in);
    CHECK(relative_difference(to_eigen(weight.view()), reference) < 1e-6);
  }
  // The default ridge recovers the planted map (noise 0.1 against outputs of
  // about unit scale); a heavy ridge shrinks it visibly.
  CHECK(relative_difference(moments.ridge_solution(), to_eigen(w_true.view())) < 0.05);
  CHECK(relative_difference(moments.ridge_solution(0.3), to_eigen(w_true.view())) > 0.1);
}

TEST_CASE("relative error from moments equals the residual over the rows") {
  const index_t in = 20;
  const index_t out = 12;
  const auto w_true = test::random_matrix<float>(out, in, 5, 0.5f);
  const PlantedRows rows = planted_rows(w_true, 700, 21, 0.3f);
  LinearFitMoments moments(in, out);
  add_in_batches(moments, rows);
  const Eigen::MatrixXd fitted = moments.ridge_solution();
  const auto unrelated = test::random_matrix<float>(out, in, 99, 0.5f);
  const Eigen::MatrixXd maps[] = {fitted, to_eigen(unrelated.view()), Eigen::MatrixXd::Zero(out, in)};
  for (const Eigen::MatrixXd& w : maps) {
    const double direct = direct_relative_error(w, rows.x.view(), rows.y.view());
    CHECK(std::abs(moments.relative_error(w) - direct) < 1e-9 * direct);
  }
  CHECK(moments.no_op_relative_error() == doctest::Approx(1.0).epsilon(1e-12));
  // The float overloads score the float weight.
  const search::LinearWeight weight = moments.fit();
  const double direct = direct_relative_error(to_eigen(weight.view()), rows.x.view(), rows.y.view());
  CHECK(std::abs(moments.relative_error(weight) - direct) < 1e-9 * direct);
  CHECK(std::abs(moments.relative_error(unrelated.view()) -
                 direct_relative_error(to_eigen(unrelated.view()), rows.x.view(), rows.y.view())) < 1e-9);
  // Uniform noise of variance 0.03 against a signal of about in / 36 = 0.56
  // per output: the fitted error sits near 5%, far below the no-op's 1.
  CHECK(moments.relative_error(fitted) > 0.02);
  CHECK(moments.relative_error(fitted) < 0.1);
}

TEST_CASE("merged moments equal one accumulator over all rows") {
  const index_t in = 18;
  const index_t out = 10;
  const auto w_true = test::random_matrix<float>(out, in, 7, 0.5f);
  const PlantedRows rows = planted_rows(w_true, 900, 31, 0.2f);
  LinearFitMoments all(in, out);
  all.add(rows.x.view(), rows.y.view());
  LinearFitMoments first(in, out);
  LinearFitMoments second(in, out);
  first.add(rows.x.view().row_range(0, 250), rows.y.view().row_range(0, 250));
  second.add(rows.x.view().row_range(250, 650), rows.y.view().row_range(250, 650));
  first.merge(second);
  CHECK(first.rows() == all.rows());
  CHECK(first.output_energy() == doctest::Approx(all.output_energy()).epsilon(1e-13));
  CHECK(relative_difference(first.ridge_solution(), all.ridge_solution()) < 1e-12);
  const auto unrelated = test::random_matrix<float>(out, in, 41, 0.5f);
  CHECK(first.relative_error(unrelated.view()) ==
        doctest::Approx(all.relative_error(unrelated.view())).epsilon(1e-12));
  // Each half alone is a different problem: the check above can tell.
  CHECK(relative_difference(second.ridge_solution(), all.ridge_solution()) > 1e-6);
}

TEST_CASE("a fitted map beats the no-op on held-out rows") {
  const index_t in = 32;
  const index_t out = 32;
  const auto w_true = test::random_matrix<float>(out, in, 9, 0.3f);
  const PlantedRows train = planted_rows(w_true, 2000, 51, 0.2f);
  const PlantedRows held_out = planted_rows(w_true, 600, 61, 0.2f);
  LinearFitMoments train_moments(in, out);
  LinearFitMoments held_out_moments(in, out);
  train_moments.add(train.x.view(), train.y.view());
  held_out_moments.add(held_out.x.view(), held_out.y.view());
  const search::LinearWeight fitted = train_moments.fit();
  const double held_out_error = held_out_moments.relative_error(fitted);
  CHECK(held_out_error < 0.1 * held_out_moments.no_op_relative_error());
  CHECK(held_out_error == doctest::Approx(direct_relative_error(to_eigen(fitted.view()), held_out.x.view(),
                                                                held_out.y.view()))
                              .epsilon(1e-9));
  // Rows the fit never saw score no better than the ones it did.
  CHECK(held_out_error > 0.9 * train_moments.relative_error(fitted));
}

TEST_CASE("W_o W_v initialisation matches a direct loop over query heads") {
  const int heads = 6;
  const int kv_heads = 2;
  const int head_dim = 4;
  const index_t hidden = 10;
  const auto o = test::random_matrix<float>(hidden, heads * head_dim, 71);
  const auto v = test::random_matrix<float>(kv_heads * head_dim, hidden, 72);
  const search::LinearWeight w =
      search::attention_value_output_init(o.view(), v.view(), heads, kv_heads, head_dim);
  REQUIRE(w.out_features == hidden);
  REQUIRE(w.in_features == hidden);
  // Query head h reads KV group h / (heads / kv_heads): heads 0-2 group 0,
  // heads 3-5 group 1 (h % kv_heads would interleave them instead).
  Eigen::MatrixXd reference = Eigen::MatrixXd::Zero(hidden, hidden);
  for (int h = 0; h < heads; ++h) {
    const int g = h / (heads / kv_heads);
    for (index_t i = 0; i < hidden; ++i)
      for (index_t j = 0; j < hidden; ++j)
        for (int d = 0; d < head_dim; ++d)
          reference(i, j) += double(o.view()(i, h * head_dim + d)) * v.view()(g * head_dim + d, j);
  }
  CHECK(relative_difference(to_eigen(w.view()), reference) < 1e-6);
  // With one KV head per query head, the init is the full product o v.
  const auto v_full = test::random_matrix<float>(heads * head_dim, hidden, 73);
  const search::LinearWeight mha =
      search::attention_value_output_init(o.view(), v_full.view(), heads, heads, head_dim);
  CHECK(relative_difference(to_eigen(mha.view()), to_eigen(o.view()) * to_eigen(v_full.view())) < 1e-6);
}

TEST_CASE("linear fit argument checks name what was expected and found") {
  LinearFitMoments moments(8, 6);
  const auto x = test::random_matrix<float>(5, 8, 1);
  const auto y = test::random_matrix<float>(5, 6, 2);
  const auto y_short = test::random_matrix<float>(4, 6, 3);
  const auto x_wide = test::random_matrix<float>(5, 9, 4);
  CHECK(test::error_of([&] { moments.add(x_wide.view(), y.view()); }) ==
        "LinearFitMoments::add: expected x [rows x 8] and y [rows x 6] with the same rows, found x [5 x 9] "
        "and y [5 x 6]");
  CHECK(test::error_of([&] { moments.add(x.view(), y_short.view()); }) ==
        "LinearFitMoments::add: expected x [rows x 8] and y [rows x 6] with the same rows, found x [5 x 8] "
        "and y [4 x 6]");
  CHECK(moments.rows() == 0);
  CHECK(test::error_of([&] { moments.fit(); }) ==
        "LinearFitMoments::fit: expected calibration rows, found 0");
  CHECK(test::error_of([&] { moments.no_op_relative_error(); }) ==
        "LinearFitMoments::relative_error: expected outputs with nonzero energy, found 0 over 0 rows");
  moments.add(x.view(), y.view());
  CHECK(test::error_of([&] { moments.fit(-1e-3); }) ==
        "LinearFitMoments::fit: expected a finite relative ridge >= 0, found -0.001");
  CHECK(test::error_of([&] { moments.fit(std::nan("")); }).find("expected a finite relative ridge >= 0") !=
        std::string::npos);
  // An input that is always zero leaves X^T X singular: plain least squares
  // is refused, a ridge makes the fit well-posed.
  auto x_dead = test::random_matrix<float>(5, 8, 8);
  for (index_t t = 0; t < 5; ++t) x_dead.view()(t, 3) = 0.0f;
  LinearFitMoments dead_input(8, 6);
  dead_input.add(x_dead.view(), y.view());
  CHECK(test::error_of([&] { dead_input.fit(0.0); }) ==
        "LinearFitMoments::fit: expected X^T X + ridge I positive definite, found it singular (5 rows, 8 "
        "inputs, relative ridge 0); use a positive ridge");
  CHECK(dead_input.fit().values.size() == 48);
  const auto w_wrong = test::random_matrix<float>(8, 6, 5);
  CHECK(test::error_of([&] { moments.relative_error(w_wrong.view()); }) ==
        "LinearFitMoments::relative_error: expected W [6 x 8], found [8 x 6]");
  LinearFitMoments other(8, 7);
  CHECK(test::error_of([&] { moments.merge(other); }) ==
        "LinearFitMoments::merge: expected moments of [6 x 8] maps, found [7 x 8]");
  CHECK(test::error_of([] { LinearFitMoments(0, 4); }) ==
        "LinearFitMoments: expected positive feature counts, found in 0, out 4");

  const auto o = test::random_matrix<float>(10, 24, 6);
  const auto v = test::random_matrix<float>(8, 10, 7);
  CHECK(test::error_of([&] { search::attention_value_output_init(o.view(), v.view(), 6, 4, 4); }) ==
        "attention_value_output_init: expected positive head counts with heads a multiple of kv_heads, found "
        "heads 6, kv_heads 4, head_dim 4");
  CHECK(test::error_of([&] { search::attention_value_output_init(o.view(), v.view(), 6, 3, 4); }) ==
        "attention_value_output_init: expected o [hidden x 24] and v [12 x hidden] with the same hidden > 0, "
        "found o [10 x 24] and v [8 x 10]");
}
