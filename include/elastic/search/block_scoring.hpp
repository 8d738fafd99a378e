// Puzzle's replace-one scoring, and the block library it fills
// (block_library.hpp). Each variant of one layer half is put into the parent
// alone and run over calibration windows; its cost is the mean KL divergence
// KL(parent || variant) of the next-token distributions and its mean
// next-token loss. Variants that are sub-networks of the elastic checkpoint
// (fewer heads, a narrower MLP, a skipped half, the linear map it stores for
// a half) run the parent's decoder with a SubnetworkConfig; Puzzle's
// untrained linear init, scored for comparison, runs a decoder over a copy
// of the model description whose half is linear, with the init as its
// weight.
//
// The parent's next-token probabilities are computed once per window and
// kept, with each row's sum p log p, so a variant's KL per row is
// sum p log p - sum p l + logsumexp(l) over its logits l: one exponential
// per vocabulary entry.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/host/executor.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_sequence.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "elastic/search/block_library.hpp"
#include "elastic/search/calibration_pass.hpp"
#include "elastic/search/linear_fit.hpp"
#include "elastic/search/linear_maps.hpp"

namespace elastic::search {

struct VariantScore {
  double kl = 0.0;       // mean KL(parent || variant) per scored position
  double lm_loss = 0.0;  // mean next-token loss
};

class ReplaceOneScorer {
 public:
  // Scores over `windows` (each at least 2 tokens) of the model `weights`
  // holds, which must outlive the scorer.
  ReplaceOneScorer(const io::ModelDescription& model, const model::ModelWeights<float>& weights,
                   host::Executor& executor, std::vector<std::vector<int>> windows)
      : model_(model), decoder_(model_, weights), executor_(executor), windows_(std::move(windows)) {
    require(!windows_.empty(), "ReplaceOneScorer: expected at least one window");
    for (const std::vector<int>& window : windows_) {
      require(window.size() >= 2, "ReplaceOneScorer: every window needs at least 2 tokens, found ", window.size());
      capacity_ = std::max(capacity_, static_cast<int>(window.size()));
    }
    const auto vocab = static_cast<std::size_t>(model.vocab);
    model::HostSequence<float> sequence(decoder_, executor_, capacity_, model::SubnetworkConfig::full(model_));
    for (const std::vector<int>& window : windows_) {
      sequence.reset();
      const std::span<const float> logits = sequence.append_every(window);
      std::vector<float>& probabilities = parent_probabilities_.emplace_back();
      std::vector<double>& negative_entropy = parent_negative_entropy_.emplace_back();
      for (std::size_t t = 0; t + 1 < window.size(); ++t) {
        const std::span<const float> row = logits.subspan(t * vocab, vocab);
        const double normaliser = log_sum_exp(row);
        double sum = 0.0;
        for (const float logit : row) {
          const double log_p = double(logit) - normaliser;
          const float p = static_cast<float>(std::exp(log_p));
          probabilities.push_back(p);
          sum += double(p) * log_p;
        }
        negative_entropy.push_back(sum);
        parent_loss_ += normaliser - double(row[static_cast<std::size_t>(window[t + 1])]);
        ++positions_;
      }
    }
    parent_loss_ /= double(positions_);
  }

  double parent_lm_loss() const { return parent_loss_; }
  std::int64_t scored_positions() const { return positions_; }

  // The parent run as `config`.
  VariantScore score(const model::SubnetworkConfig& config) { return score_decoder(decoder_, config); }

  // Another model over the same tokens (a half replaced by a linear map).
  VariantScore score(const io::ModelDescription& model, const model::ModelWeights<float>& weights) {
    require(model.vocab == model_.vocab, "ReplaceOneScorer::score: the variant's vocabulary ", model.vocab,
            " differs from the parent's ", model_.vocab);
    model::Decoder<float> decoder(model, weights);
    return score_decoder(decoder, model::SubnetworkConfig::full(model));
  }

 private:
  static double log_sum_exp(std::span<const float> row) {
    float top = row[0];
    for (const float logit : row) top = std::max(top, logit);
    double sum = 0.0;
    for (const float logit : row) sum += std::exp(logit - top);
    return double(top) + std::log(sum);
  }

  VariantScore score_decoder(model::Decoder<float>& decoder, const model::SubnetworkConfig& config) {
    const auto vocab = static_cast<std::size_t>(model_.vocab);
    model::HostSequence<float> sequence(decoder, executor_, capacity_, config);
    double kl = 0.0, loss = 0.0;
    for (std::size_t w = 0; w < windows_.size(); ++w) {
      const std::vector<int>& window = windows_[w];
      sequence.reset();
      const std::span<const float> logits = sequence.append_every(window);
      for (std::size_t t = 0; t + 1 < window.size(); ++t) {
        const std::span<const float> row = logits.subspan(t * vocab, vocab);
        const float* p = parent_probabilities_[w].data() + t * vocab;
        const double normaliser = log_sum_exp(row);
        double expected_logit = 0.0;
        for (std::size_t v = 0; v < vocab; ++v) expected_logit += double(p[v]) * double(row[v]);
        kl += parent_negative_entropy_[w][t] - expected_logit + normaliser;
        loss += normaliser - double(row[static_cast<std::size_t>(window[t + 1])]);
      }
    }
    return {kl / double(positions_), loss / double(positions_)};
  }

  io::ModelDescription model_;
  model::Decoder<float> decoder_;  // the parent's
  host::Executor& executor_;
  std::vector<std::vector<int>> windows_;
  int capacity_ = 0;
  std::vector<std::vector<float>> parent_probabilities_;   // per window [positions x vocab]
  std::vector<std::vector<double>> parent_negative_entropy_;  // per window, per position: sum p log p
  double parent_loss_ = 0.0;
  std::int64_t positions_ = 0;
};

// A copy of `model` and `weights` with one half of layer `layer` replaced by
// the linear map `w` (which must outlive the weights).
struct LinearReplacement {
  io::ModelDescription model;
  model::ModelWeights<float> weights;

  LinearReplacement(const io::ModelDescription& parent, const model::ModelWeights<float>& parent_weights,
                    std::size_t layer, Half half, const LinearWeight& w)
      : model(parent), weights(parent_weights) {
    io::LayerPlan& plan = model.layers.at(layer);
    model::LayerWeights<float>& layer_weights = weights.layers.at(layer);
    if (half == Half::attention) {
      plan.attention = io::AttentionKind::linear;
      plan.attention_has_linear = false;
      plan.kv_heads = 0;
      layer_weights.attention = {};
      layer_weights.linear_attention = w.view();
    } else {
      plan.ffn = io::FfnKind::linear;
      plan.ffn_has_linear = false;
      plan.intermediate = 0;
      layer_weights.mlp = {};
      layer_weights.linear_ffn = w.view();
    }
  }
};

// What the block library scores besides the checkpoint's own variants.
struct BlockScoringOptions {
  bool linear_init = true;  // Puzzle's untrained W_o W_v init for every GQA attention, for comparison
};

// Scores every variant of every half of `model`: the prefixes of `sets`
// (the elastic checkpoint's sets; the stored size scores 0 without a run),
// the linear map the checkpoint stores for the half (a linear block scores
// 0 likewise), the skipped half, and with options.linear_init Puzzle's
// untrained init for each GQA attention. Linear variants carry the relative
// error of their map on the scored windows (fit_error; held out when the
// maps were fitted on other tokens). on_variant(done, total) reports
// progress.
template <class OnVariant>
BlockLibrary score_block_library(const io::ModelDescription& model, const model::ModelWeights<float>& weights,
                                 host::Executor& executor, const std::vector<ElasticLayerSets>& sets,
                                 const std::vector<std::vector<int>>& score_windows, const BlockScoringOptions& options,
                                 OnVariant&& on_variant) {
  require(sets.size() == model.layers.size(), "score_block_library: expected the sets of ", model.layers.size(),
          " layers, found ", sets.size());
  ReplaceOneScorer scorer(model, weights, executor, score_windows);
  BlockLibrary library;
  library.parent_lm_loss = scorer.parent_lm_loss();
  library.scored_tokens = scorer.scored_positions();

  // Each variant is a job: its half, its entry, and how to score it.
  struct Job {
    std::size_t layer;
    Half half;
    ScoredVariant variant;
  };
  std::vector<Job> jobs;
  bool any_linear = false;
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    const io::LayerPlan& plan = model.layers[i];
    const bool gqa = plan.attention == io::AttentionKind::gqa, swiglu = plan.ffn == io::FfnKind::swiglu;
    if (gqa)
      for (const int heads : sets[i].heads) jobs.push_back({i, Half::attention, {VariantKind::prefix, heads, 0}});
    if (swiglu)
      for (const std::int64_t width : sets[i].mlp_widths) jobs.push_back({i, Half::ffn, {VariantKind::prefix, 0, width}});
    for (const Half half : {Half::attention, Half::ffn}) {
      const bool linear = runs_linear(plan, half);
      const bool computes = half == Half::attention ? plan.attention != io::AttentionKind::none
                                                    : plan.ffn != io::FfnKind::none;
      if (linear) jobs.push_back({i, half, {VariantKind::linear}});
      if (computes) jobs.push_back({i, half, {VariantKind::none}});
      any_linear = any_linear || linear;
    }
    if (options.linear_init && gqa) jobs.push_back({i, Half::attention, {VariantKind::linear_init}});
  }
  std::optional<BlockMoments> held_moments;
  if (any_linear || options.linear_init) {
    int window = 0;
    for (const auto& tokens : score_windows) window = std::max(window, static_cast<int>(tokens.size()));
    CalibrationPass pass(model, weights, executor, window);
    held_moments = collect_block_moments(pass, score_windows);
  }

  library.layers.resize(model.layers.size());
  const model::SubnetworkConfig full = model::SubnetworkConfig::full(model);
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    Job& job = jobs[j];
    ScoredVariant& variant = job.variant;
    const io::LayerPlan& plan = model.layers[job.layer];
    const model::LayerWeights<float>& layer = weights.layers[job.layer];
    const bool attention = job.half == Half::attention;
    const bool stored = variant.variant(job.half) == chosen_half_variant(plan, full.layers[job.layer], job.half);
    VariantScore score{0.0, library.parent_lm_loss};
    if (variant.runs_as_subnetwork() && !stored) {
      model::SubnetworkConfig config = full;
      variant.apply(job.half, config.layers[job.layer]);
      score = scorer.score(config);
    } else if (!variant.runs_as_subnetwork()) {
      const LinearWeight w = attention_value_output_init(layer.attention.o, layer.attention.v, model.heads,
                                                         plan.kv_heads, model.head_dim);
      const LinearReplacement replaced(model, weights, job.layer, job.half, w);
      score = scorer.score(replaced.model, replaced.weights);
      variant.fit_error = held_moments->of(job.half, job.layer)->relative_error(w);
    }
    if (variant.kind == VariantKind::linear && held_moments->of(job.half, job.layer))
      variant.fit_error =
          held_moments->of(job.half, job.layer)->relative_error(attention ? layer.linear_attention : layer.linear_ffn);
    variant.kl = std::max(score.kl, 0.0);
    variant.lm_loss = score.lm_loss;
    library.layers[job.layer].of(job.half).push_back(variant);
    on_variant(j + 1, jobs.size());
  }
  return library;
}

}  // namespace elastic::search
