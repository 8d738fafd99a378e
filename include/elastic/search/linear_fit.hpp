// Linear replacement blocks fitted in closed form. A Nemotron-NAS decoder may
// replace a layer half (attention or FFN), h += f(RMSNorm(h)), by a single
// hidden x hidden matrix, h += W RMSNorm(h). Instead of training W, the
// search fits it by ridge least squares on calibration rows: x_t the block's
// normed input, y_t its output before the residual add,
//
//   W = argmin  sum_t ||W x_t - y_t||^2 + lambda' ||W||_F^2.
//
// The problem depends on the rows only through the moments X^T X, Y^T X and
// sum ||y||^2, so LinearFitMoments accumulates those (in float64, one batch
// of float rows at a time, mergeable across threads or calibration windows)
// and never keeps the rows. The same moments score any W, so a fit, the
// no-op (W = 0) and the untrained initialisation
// (attention_value_output_init) are compared on held-out moments with one
// call each. Weights come out as LinearWeight: float, row-major [out x in],
// the layout of `mlp.linear_mlp.weight` / `self_attn.linear_attn.weight`.
//
// Needs Eigen 3.3 or later (Debian: libeigen3-dev), which elastic::search
// links.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic::search {

// A dense float weight, row-major [out_features x in_features]: y = W x.
struct LinearWeight {
  index_t out_features = 0;
  index_t in_features = 0;
  std::vector<float> values;

  ConstMatrixView<float> view() const { return {values.data(), out_features, in_features}; }
};

namespace detail {

using FloatRows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using FloatRowsMap = Eigen::Map<const FloatRows, Eigen::Unaligned, Eigen::OuterStride<>>;

inline FloatRowsMap float_rows(ConstMatrixView<float> m) {
  return {m.data(), m.rows(), m.cols(), Eigen::OuterStride<>(m.row_stride())};
}

inline LinearWeight to_weight(const Eigen::MatrixXd& w) {
  LinearWeight weight{w.rows(), w.cols(), std::vector<float>(static_cast<std::size_t>(w.size()))};
  Eigen::Map<FloatRows>(weight.values.data(), w.rows(), w.cols()) = w.cast<float>();
  return weight;
}

}  // namespace detail

// The ridge strength, relative to the mean diagonal of X^T X (the mean
// squared input feature times the row count): lambda' = lambda * trace / in.
// Relative, it means the same for every layer whatever its activation scale
// and row count. The fit scales each eigendirection of X^T X, of energy mu,
// by mu / (mu + lambda'): with 1e-3, by 0.1% at the average energy and by
// half at a thousandth of it. The normed hidden states of LLMs have a few
// very large feature dimensions and a badly conditioned X^T X; plain least
// squares would fit noise along its near-null directions, which this damps,
// while leaving the directions that carry the signal all but untouched.
inline constexpr double default_relative_ridge = 1e-3;

class LinearFitMoments {
 public:
  // Rows are added in chunks of this many, so the float64 copies stay small
  // however large the batch.
  static constexpr index_t chunk_rows = 512;

  LinearFitMoments(index_t in_features, index_t out_features)
      : in_features_(checked_features(in_features, out_features)),
        out_features_(out_features),
        input_gram_(Eigen::MatrixXd::Zero(in_features, in_features)),
        output_input_(Eigen::MatrixXd::Zero(out_features, in_features)) {}

  index_t in_features() const { return in_features_; }
  index_t out_features() const { return out_features_; }
  index_t rows() const { return rows_; }
  // sum_t ||y_t||^2: the squared error of the no-op, W = 0.
  double output_energy() const { return output_energy_; }

  // Adds calibration rows: x [rows x in] (the block's normed input) and
  // y [rows x out] (its output before the residual add). Views may be strided.
  // Two float64 GEMMs per chunk, rows * in * (in / 2 + out) multiply-adds:
  // Eigen vectorises them for the instruction set it is compiled for, so an
  // AVX2/FMA build runs them about 4x faster than a baseline x86-64 one.
  void add(ConstMatrixView<float> x, ConstMatrixView<float> y) {
    require(x.cols() == in_features_ && y.cols() == out_features_ && x.rows() == y.rows(),
            "LinearFitMoments::add: expected x [rows x ", in_features_, "] and y [rows x ",
            out_features_, "] with the same rows, found x [", x.rows(), " x ", x.cols(), "] and y [",
            y.rows(), " x ", y.cols(), "]");
    for (index_t begin = 0; begin < x.rows(); begin += chunk_rows) {
      const index_t count = std::min(chunk_rows, x.rows() - begin);
      // Transposed float64 copies, [features x rows] column-major, so the
      // products below are plain GEMMs over contiguous columns.
      x_chunk_ = detail::float_rows(x.row_range(begin, count)).transpose().cast<double>();
      y_chunk_ = detail::float_rows(y.row_range(begin, count)).transpose().cast<double>();
      input_gram_.selfadjointView<Eigen::Lower>().rankUpdate(x_chunk_);
      output_input_.noalias() += y_chunk_ * x_chunk_.transpose();
      output_energy_ += y_chunk_.squaredNorm();
    }
    rows_ += x.rows();
  }

  // Adds the rows another accumulator has seen (the same block, other
  // threads or calibration windows).
  void merge(const LinearFitMoments& other) {
    require(other.in_features_ == in_features_ && other.out_features_ == out_features_,
            "LinearFitMoments::merge: expected moments of [", out_features_, " x ", in_features_,
            "] maps, found [", other.out_features_, " x ", other.in_features_, "]");
    input_gram_ += other.input_gram_;
    output_input_ += other.output_input_;
    output_energy_ += other.output_energy_;
    rows_ += other.rows_;
  }

  // The ridge solution in float64, [out x in]: (X^T X + lambda' I) W^T = X^T Y
  // by Cholesky, lambda' = relative_ridge * trace(X^T X) / in. A zero ridge
  // is plain least squares and needs X^T X positive definite.
  Eigen::MatrixXd ridge_solution(double relative_ridge = default_relative_ridge) const {
    require(std::isfinite(relative_ridge) && relative_ridge >= 0,
            "LinearFitMoments::fit: expected a finite relative ridge >= 0, found ", relative_ridge);
    require(rows_ > 0, "LinearFitMoments::fit: expected calibration rows, found 0");
    const double trace = input_gram_.trace();
    require(trace > 0, "LinearFitMoments::fit: expected inputs with nonzero energy, found trace(X^T X) ",
            trace, " over ", rows_, " rows");
    Eigen::MatrixXd regularised = input_gram_;
    regularised.diagonal().array() += relative_ridge * trace / static_cast<double>(in_features_);
    const Eigen::LLT<Eigen::MatrixXd, Eigen::Lower> cholesky(regularised);
    require(cholesky.info() == Eigen::Success,
            "LinearFitMoments::fit: expected X^T X + ridge I positive definite, found it singular (",
            rows_, " rows, ", in_features_, " inputs, relative ridge ", relative_ridge,
            "); use a positive ridge");
    return cholesky.solve(output_input_.transpose()).transpose();
  }

  // The ridge solution as a float weight, ready to store as a tensor.
  LinearWeight fit(double relative_ridge = default_relative_ridge) const {
    return detail::to_weight(ridge_solution(relative_ridge));
  }

  // sum_t ||W x_t - y_t||^2 / sum_t ||y_t||^2 over the rows these moments
  // saw, from the moments alone: (tr(W X^T X W^T) - 2 tr(W X^T Y) +
  // sum ||y||^2) / sum ||y||^2. Rounding can leave a perfect fit a hair
  // below zero; the result is clamped at 0. The no-op scores 1.
  double relative_error(const Eigen::MatrixXd& w) const {
    require(w.rows() == out_features_ && w.cols() == in_features_,
            "LinearFitMoments::relative_error: expected W [", out_features_, " x ", in_features_,
            "], found [", w.rows(), " x ", w.cols(), "]");
    require(output_energy_ > 0,
            "LinearFitMoments::relative_error: expected outputs with nonzero energy, found ", output_energy_,
            " over ", rows_, " rows");
    const Eigen::MatrixXd w_gram = w * input_gram_.selfadjointView<Eigen::Lower>();
    const double squared_error =
        w_gram.cwiseProduct(w).sum() - 2 * w.cwiseProduct(output_input_).sum() + output_energy_;
    return std::max(0.0, squared_error / output_energy_);
  }
  double relative_error(ConstMatrixView<float> w) const {
    return relative_error(Eigen::MatrixXd(detail::float_rows(w).cast<double>()));
  }
  double relative_error(const LinearWeight& w) const { return relative_error(w.view()); }
  double no_op_relative_error() const {
    return relative_error(Eigen::MatrixXd::Zero(out_features_, in_features_));
  }

 private:
  // Checked before the moments are allocated.
  static index_t checked_features(index_t in_features, index_t out_features) {
    require(in_features > 0 && out_features > 0,
            "LinearFitMoments: expected positive feature counts, found in ", in_features, ", out ",
            out_features);
    return in_features;
  }

  index_t in_features_;
  index_t out_features_;
  index_t rows_ = 0;
  Eigen::MatrixXd input_gram_;    // X^T X [in x in]; only the lower triangle is kept
  Eigen::MatrixXd output_input_;  // Y^T X [out x in]
  double output_energy_ = 0;      // sum ||y||^2
  Eigen::MatrixXd x_chunk_;       // scratch: one chunk of x, transposed, float64
  Eigen::MatrixXd y_chunk_;       // scratch: one chunk of y, transposed, float64
};

// Puzzle's untrained linear attention: if every position attended only to
// itself, the attention output would be sum_h O_h V_g(h) n, with O_h the
// o_proj columns of query head h ([hidden x head_dim]) and V_g(h) the v_proj
// rows of its KV group ([head_dim x hidden]); query head h belongs to group
// h / (heads / kv_heads). Returns that W [hidden x hidden].
//   o: o_proj [hidden x heads * head_dim];  v: v_proj [kv_heads * head_dim x hidden]
inline LinearWeight attention_value_output_init(ConstMatrixView<float> o, ConstMatrixView<float> v,
                                                int heads, int kv_heads, int head_dim) {
  require(heads > 0 && kv_heads > 0 && head_dim > 0 && heads % kv_heads == 0,
          "attention_value_output_init: expected positive head counts with heads a multiple of kv_heads, "
          "found heads ",
          heads, ", kv_heads ", kv_heads, ", head_dim ", head_dim);
  const index_t hidden = o.rows();
  require(o.cols() == index_t{heads} * head_dim && v.rows() == index_t{kv_heads} * head_dim &&
              v.cols() == hidden && hidden > 0,
          "attention_value_output_init: expected o [hidden x ", index_t{heads} * head_dim, "] and v [",
          index_t{kv_heads} * head_dim, " x hidden] with the same hidden > 0, found o [", o.rows(), " x ",
          o.cols(), "] and v [", v.rows(), " x ", v.cols(), "]");
  const detail::FloatRowsMap o_map = detail::float_rows(o);
  const detail::FloatRowsMap v_map = detail::float_rows(v);
  // The query heads of a group share its V rows: sum their O columns first.
  const int group = heads / kv_heads;
  Eigen::MatrixXd w = Eigen::MatrixXd::Zero(hidden, hidden);
  for (int g = 0; g < kv_heads; ++g) {
    Eigen::MatrixXd group_o = Eigen::MatrixXd::Zero(hidden, head_dim);
    for (int h = g * group; h < (g + 1) * group; ++h)
      group_o += o_map.middleCols(index_t{h} * head_dim, head_dim).cast<double>();
    w.noalias() += group_o * v_map.middleRows(index_t{g} * head_dim, head_dim).cast<double>();
  }
  return detail::to_weight(w);
}

}  // namespace elastic::search
