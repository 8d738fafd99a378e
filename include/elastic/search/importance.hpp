// How much each prunable unit of a model matters, from calibration windows
// (a CalibrationPass observer): every SwiGLU neuron, every query head, and
// every half's share of the residual stream. Two published rankings of
// neurons and heads, both activation-based and training-free:
//
//   minitron  Minitron (Muralidharan et al., 2024): a unit's activation
//             magnitude, averaged over each window's tokens, then the L2
//             norm over windows (their best batch / sequence aggregation).
//             A neuron's activation is silu(gate n) * (up n); a head's is
//             the norm of what it adds through the output projection,
//             ||O_h c_h||, so a head whose context the projection ignores
//             ranks low.
//   flap      FLAP (An et al., 2024): the fluctuation of the unit's input
//             to the output projection over all tokens (its sample
//             variance) times the squared norm of the projection's column
//             it feeds, summed over a head's columns.
//
// A KV group ranks by the sum of its query heads' scores (ranking.hpp).
// Each half's contribution is Radial Networks' profile: the mean over
// tokens of ||f(x)|| / ||x + f(x)|| for the block output f(x) added to the
// residual x. Sums are kept in float64.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/host/executor.hpp"
#include "elastic/host/workspace_buffer.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/search/calibration_pass.hpp"

namespace elastic::search {

enum class RankingMethod : std::uint8_t { minitron, flap };

constexpr std::string_view ranking_name(RankingMethod method) {
  return method == RankingMethod::minitron ? "minitron" : "flap";
}

inline RankingMethod parse_ranking_method(std::string_view name) {
  if (name == "minitron") return RankingMethod::minitron;
  require(name == "flap", "expected a ranking method \"minitron\" or \"flap\", found \"", name, "\"");
  return RankingMethod::flap;
}

// Which method ranks each kind of unit (conversion may pick them apart).
struct Ranking {
  RankingMethod neurons = RankingMethod::minitron;
  RankingMethod heads = RankingMethod::minitron;
};

// One layer's scores (higher matters more); empty for a half the layer
// does not compute as GQA / SwiGLU, and a contribution of NaN for a half
// that does not compute at all.
struct LayerImportance {
  std::vector<double> neurons;  // per SwiGLU neuron
  std::vector<double> heads;    // per query head
  double attention_contribution = std::numeric_limits<double>::quiet_NaN();
  double ffn_contribution = std::numeric_limits<double>::quiet_NaN();
};

namespace detail {

// Per-column sums over rows for a column's sample variance.
struct ColumnMoments {
  std::vector<double> sum, sum_squares;
  std::int64_t rows = 0;

  void resize(index_t columns) {
    sum.assign(static_cast<std::size_t>(columns), 0.0);
    sum_squares.assign(static_cast<std::size_t>(columns), 0.0);
  }
  void add(const ConstMatrixView<float>& x) {
    for (index_t t = 0; t < x.rows(); ++t)
      for (index_t c = 0; c < x.cols(); ++c) {
        const double value = x(t, c);
        sum[c] += value;
        sum_squares[c] += value * value;
      }
    rows += x.rows();
  }
  double variance(index_t c) const {
    if (rows < 2) return 0.0;
    const double mean = sum[c] / double(rows);
    return std::max(0.0, (sum_squares[c] - mean * sum[c]) / double(rows - 1));
  }
};

// Squared norms of the columns of `w`.
inline std::vector<double> column_squared_norms(const ConstMatrixView<float>& w) {
  std::vector<double> norms(static_cast<std::size_t>(w.cols()), 0.0);
  for (index_t r = 0; r < w.rows(); ++r)
    for (index_t c = 0; c < w.cols(); ++c) norms[c] += double(w(r, c)) * double(w(r, c));
  return norms;
}

}  // namespace detail

class ImportanceCollector {
 public:
  // Collects over windows of at most `window` tokens of the model `weights`
  // holds (which must outlive the collector); head contributions are
  // projected on `executor`.
  ImportanceCollector(const io::ModelDescription& model, const model::ModelWeights<float>& weights,
                      host::Executor& executor, int window)
      : model_(model), weights_(weights), executor_(executor), window_(window), layers_(model.layers.size()) {
    require(window > 0, "ImportanceCollector: the window must be positive, found ", window);
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const io::LayerPlan& plan = model.layers[i];
      Layer& layer = layers_[i];
      if (plan.attention == io::AttentionKind::gqa) {
        layer.head_windows.assign(static_cast<std::size_t>(model.heads), 0.0);
        layer.context.resize(index_t{model.heads} * model.head_dim);
        layer.output_columns = detail::column_squared_norms(weights.layers[i].attention.o);
      }
      if (plan.ffn == io::FfnKind::swiglu) {
        layer.neuron_windows.assign(static_cast<std::size_t>(plan.intermediate), 0.0);
        layer.neurons.resize(plan.intermediate);
        layer.down_columns = detail::column_squared_norms(weights.layers[i].mlp.down);
      }
    }
    projection_ = host::WorkspaceBuffer(static_cast<std::size_t>(window) * static_cast<std::size_t>(model.hidden) *
                                        sizeof(float));
  }

  // The CalibrationPass observer.
  void operator()(const BlockObservation& block) {
    require(block.layer >= 0 && static_cast<std::size_t>(block.layer) < layers_.size() &&
                block.output.rows() <= window_,
            "ImportanceCollector: an observation of layer ", block.layer, " over ", block.output.rows(),
            " tokens does not fit ", layers_.size(), " layers and windows of ", window_);
    Layer& layer = layers_[static_cast<std::size_t>(block.layer)];
    Contribution& contribution = block.half == Half::attention ? layer.attention : layer.ffn;
    add_contributions(contribution, block);
    const io::LayerPlan& plan = model_.layers[static_cast<std::size_t>(block.layer)];
    if (block.half == Half::attention && plan.attention == io::AttentionKind::gqa)
      observe_heads(layer, weights_.layers[static_cast<std::size_t>(block.layer)].attention.o, block.inner);
    if (block.half == Half::ffn && plan.ffn == io::FfnKind::swiglu) observe_neurons(layer, block.inner);
  }

  // The scores so far of layer `index`: neurons and heads each by its method.
  LayerImportance layer(std::size_t index, Ranking ranking) const {
    const Layer& layer = layers_.at(index);
    LayerImportance importance;
    importance.attention_contribution = layer.attention.mean();
    importance.ffn_contribution = layer.ffn.mean();
    if (ranking.neurons == RankingMethod::minitron) {
      for (double windows : layer.neuron_windows) importance.neurons.push_back(std::sqrt(windows));
    } else {
      for (std::size_t j = 0; j < layer.down_columns.size(); ++j)
        importance.neurons.push_back(layer.neurons.variance(static_cast<index_t>(j)) * layer.down_columns[j]);
    }
    if (ranking.heads == RankingMethod::minitron) {
      for (double windows : layer.head_windows) importance.heads.push_back(std::sqrt(windows));
    } else {
      const auto head_dim = static_cast<std::size_t>(model_.head_dim);
      for (std::size_t h = 0; h < layer.head_windows.size(); ++h) {
        double score = 0.0;
        for (std::size_t c = h * head_dim; c < (h + 1) * head_dim; ++c)
          score += layer.context.variance(static_cast<index_t>(c)) * layer.output_columns[c];
        importance.heads.push_back(score);
      }
    }
    return importance;
  }

  LayerImportance layer(std::size_t index, RankingMethod method) const { return layer(index, Ranking{method, method}); }

  // Every layer's scores.
  std::vector<LayerImportance> layers(Ranking ranking) const {
    std::vector<LayerImportance> all;
    for (std::size_t i = 0; i < layers_.size(); ++i) all.push_back(layer(i, ranking));
    return all;
  }

 private:
  struct Contribution {
    double sum = 0.0;
    std::int64_t tokens = 0;
    double mean() const { return tokens == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / double(tokens); }
  };
  struct Layer {
    std::vector<double> neuron_windows, head_windows;  // minitron: sums over windows of (mean_t |a|)^2
    detail::ColumnMoments neurons, context;            // flap: the projections' inputs
    std::vector<double> down_columns, output_columns;  // flap: the projections' squared column norms
    Contribution attention, ffn;
  };

  void add_contributions(Contribution& contribution, const BlockObservation& block) {
    for (index_t t = 0; t < block.output.rows(); ++t) {
      double block_norm = 0.0, sum_norm = 0.0;
      for (index_t c = 0; c < block.output.cols(); ++c) {
        const double f = block.output(t, c), x = block.residual(t, c);
        block_norm += f * f;
        sum_norm += (x + f) * (x + f);
      }
      contribution.sum += sum_norm > 0.0 ? std::sqrt(block_norm / sum_norm) : 0.0;
    }
    contribution.tokens += block.output.rows();
  }

  void observe_neurons(Layer& layer, const ConstMatrixView<float>& activations) {
    const index_t rows = activations.rows();
    std::vector<double> window_sums(static_cast<std::size_t>(activations.cols()), 0.0);
    for (index_t t = 0; t < rows; ++t)
      for (index_t c = 0; c < activations.cols(); ++c) window_sums[c] += std::abs(double(activations(t, c)));
    for (std::size_t c = 0; c < window_sums.size(); ++c) {
      const double mean = window_sums[c] / double(rows);
      layer.neuron_windows[c] += mean * mean;
    }
    layer.neurons.add(activations);
  }

  // Head h's output is O[:, h] c_h, projected one head at a time.
  void observe_heads(Layer& layer, const ConstMatrixView<float>& o, const ConstMatrixView<float>& context) {
    const index_t rows = context.rows(), head_dim = model_.head_dim;
    const MatrixView<float> projected(static_cast<float*>(projection_.get().data), rows, model_.hidden);
    for (int h = 0; h < model_.heads; ++h) {
      const index_t first = index_t{h} * head_dim;
      executor_.linear(projected, context.col_range(first, head_dim), o.col_range(first, head_dim));
      double window_sum = 0.0;
      for (index_t t = 0; t < rows; ++t) {
        double norm = 0.0;
        for (index_t c = 0; c < projected.cols(); ++c) norm += double(projected(t, c)) * double(projected(t, c));
        window_sum += std::sqrt(norm);
      }
      const double mean = window_sum / double(rows);
      layer.head_windows[static_cast<std::size_t>(h)] += mean * mean;
    }
    layer.context.add(context);
  }

  io::ModelDescription model_;
  const model::ModelWeights<float>& weights_;
  host::Executor& executor_;
  int window_;
  std::vector<Layer> layers_;
  host::WorkspaceBuffer projection_;
};

}  // namespace elastic::search
