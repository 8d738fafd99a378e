// The importance order an elastic checkpoint stores its units in, so that
// every smaller sub-network is a prefix (Flextron's nested widths): per
// layer, the SwiGLU neurons by score, the KV groups by the summed score of
// their query heads, and the query heads inside each group by score. A
// ModelPermutation says where each unit comes from; PermutedWeights applies
// it to every tensor that is tied to the unit, consistently, so the model
// computes the same function:
//
//   neuron j      gate and up row j, down column j
//   KV head g     k and v rows [g d, (g + 1) d)
//   query head h  q rows [h d, (h + 1) d), o columns [h d, (h + 1) d)
//
// with d = head_dim. Query heads stay grouped with their KV head (the new
// query heads g * group ... (g + 1) * group - 1 read new KV head g, as
// ElasticAttention groups them), and whole heads move, so the RoPE pair
// layout inside each head (rotate-half or interleaved) is kept as it is.
#pragma once

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/search/importance.hpp"

namespace elastic::search {

struct LayerPermutation {
  std::vector<int> neurons;      // SwiGLU: new neuron j is old neuron neurons[j]; empty otherwise
  std::vector<int> kv_heads;     // GQA: new KV head g is old KV head kv_heads[g]; empty otherwise
  std::vector<int> query_heads;  // GQA: new query head h is old query head query_heads[h]; empty otherwise
};

// Indices 0 .. scores.size() - 1, highest score first (ties: lower index first).
inline std::vector<int> order_by_score(const std::vector<double>& scores) {
  std::vector<int> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  return order;
}

struct ModelPermutation {
  std::vector<LayerPermutation> layers;

  // Every unit where it is.
  static ModelPermutation identity(const io::ModelDescription& model) {
    ModelPermutation permutation;
    for (const io::LayerPlan& plan : model.layers) {
      LayerPermutation& layer = permutation.layers.emplace_back();
      if (plan.ffn == io::FfnKind::swiglu) layer.neurons = identity_order(plan.intermediate);
      if (plan.attention == io::AttentionKind::gqa) {
        layer.kv_heads = identity_order(plan.kv_heads);
        layer.query_heads = identity_order(model.heads);
      }
    }
    return permutation;
  }

  // Most important first: neurons by score, KV groups by the sum of their
  // query heads' scores, query heads by score inside their group.
  // importance[i] is layer i's (ImportanceCollector::layer).
  static ModelPermutation by_importance(const io::ModelDescription& model,
                                        const std::vector<LayerImportance>& importance) {
    require(importance.size() == model.layers.size(), "ModelPermutation::by_importance: expected scores for ",
            model.layers.size(), " layers, found ", importance.size());
    ModelPermutation permutation;
    for (std::size_t i = 0; i < model.layers.size(); ++i) {
      const io::LayerPlan& plan = model.layers[i];
      const LayerImportance& scores = importance[i];
      LayerPermutation& layer = permutation.layers.emplace_back();
      if (plan.ffn == io::FfnKind::swiglu) {
        require(scores.neurons.size() == static_cast<std::size_t>(plan.intermediate), "layer ", i, ": expected ",
                plan.intermediate, " neuron scores, found ", scores.neurons.size());
        layer.neurons = order_by_score(scores.neurons);
      }
      if (plan.attention != io::AttentionKind::gqa) continue;
      require(scores.heads.size() == static_cast<std::size_t>(model.heads), "layer ", i, ": expected ", model.heads,
              " head scores, found ", scores.heads.size());
      const int group = model.heads / plan.kv_heads;
      std::vector<double> group_scores(static_cast<std::size_t>(plan.kv_heads), 0.0);
      for (int h = 0; h < model.heads; ++h) group_scores[static_cast<std::size_t>(h / group)] += scores.heads[h];
      layer.kv_heads = order_by_score(group_scores);
      for (int g : layer.kv_heads) {
        const auto first = scores.heads.begin() + g * group;
        for (int h : order_by_score(std::vector<double>(first, first + group))) layer.query_heads.push_back(g * group + h);
      }
    }
    return permutation;
  }

  // Throws elastic::Error naming the layer unless every list is a
  // permutation of its units and each query head stays with its KV head.
  void validate(const io::ModelDescription& model) const {
    require(layers.size() == model.layers.size(), "ModelPermutation: expected ", model.layers.size(),
            " layers, found ", layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const io::LayerPlan& plan = model.layers[i];
      const LayerPermutation& layer = layers[i];
      check_order(layer.neurons, plan.ffn == io::FfnKind::swiglu ? plan.intermediate : 0, i, "neurons");
      const bool gqa = plan.attention == io::AttentionKind::gqa;
      check_order(layer.kv_heads, gqa ? plan.kv_heads : 0, i, "KV heads");
      check_order(layer.query_heads, gqa ? model.heads : 0, i, "query heads");
      if (!gqa) continue;
      const int group = model.heads / plan.kv_heads;
      for (int h = 0; h < model.heads; ++h)
        require(layer.query_heads[h] / group == layer.kv_heads[h / group], "ModelPermutation: layer ", i,
                ": new query head ", h, " (old ", layer.query_heads[h], ") must read new KV head ", h / group,
                " (old ", layer.kv_heads[h / group], "), but its old KV head is ", layer.query_heads[h] / group);
    }
  }

 private:
  static std::vector<int> identity_order(std::int64_t count) {
    std::vector<int> order(static_cast<std::size_t>(count));
    std::iota(order.begin(), order.end(), 0);
    return order;
  }

  static void check_order(const std::vector<int>& order, std::int64_t count, std::size_t layer, const char* what) {
    require(order.size() == static_cast<std::size_t>(count), "ModelPermutation: layer ", layer, ": expected ", count,
            " ", what, ", found ", order.size());
    std::vector<bool> seen(order.size(), false);
    for (int index : order) {
      require(index >= 0 && static_cast<std::size_t>(index) < order.size() && !seen[index], "ModelPermutation: layer ",
              layer, ": the ", what, " are not a permutation of 0 .. ", count - 1, " (", index,
              " is out of range or repeated)");
      seen[index] = true;
    }
  }
};

// A model's weights with a ModelPermutation applied: owned float32 copies
// of the tensors tied to permuted units (q, k, v, o, gate, up, down), views
// of the source for everything else (embedding, norms, linear blocks, LM
// head), so the source must outlive it.
class PermutedWeights {
 public:
  PermutedWeights(const io::ModelDescription& model, const model::ModelWeights<float>& source,
                  const ModelPermutation& permutation)
      : views_(source) {
    permutation.validate(model);
    const index_t head_dim = model.head_dim;
    for (std::size_t i = 0; i < model.layers.size(); ++i) {
      const LayerPermutation& order = permutation.layers[i];
      model::LayerWeights<float>& layer = views_.layers[i];
      if (!order.query_heads.empty()) {
        layer.attention.q = permute_rows(layer.attention.q, order.query_heads, head_dim);
        layer.attention.k = permute_rows(layer.attention.k, order.kv_heads, head_dim);
        layer.attention.v = permute_rows(layer.attention.v, order.kv_heads, head_dim);
        layer.attention.o = permute_cols(layer.attention.o, order.query_heads, head_dim);
      }
      if (!order.neurons.empty()) {
        layer.mlp.gate = permute_rows(layer.mlp.gate, order.neurons, 1);
        layer.mlp.up = permute_rows(layer.mlp.up, order.neurons, 1);
        layer.mlp.down = permute_cols(layer.mlp.down, order.neurons, 1);
      }
    }
  }

  PermutedWeights(const PermutedWeights&) = delete;
  PermutedWeights& operator=(const PermutedWeights&) = delete;

  const model::ModelWeights<float>& views() const { return views_; }

 private:
  // Rows in groups of `group`: new group j is old group order[j].
  ConstMatrixView<float> permute_rows(const ConstMatrixView<float>& w, const std::vector<int>& order, index_t group) {
    std::vector<float>& data = storage_.emplace_back(static_cast<std::size_t>(w.rows() * w.cols()));
    for (std::size_t j = 0; j < order.size(); ++j)
      for (index_t r = 0; r < group; ++r) {
        const float* from = w.row(index_t{order[j]} * group + r);
        std::copy(from, from + w.cols(), data.data() + (static_cast<index_t>(j) * group + r) * w.cols());
      }
    return {data.data(), w.rows(), w.cols()};
  }

  // Columns in groups of `group`: new group j is old group order[j].
  ConstMatrixView<float> permute_cols(const ConstMatrixView<float>& w, const std::vector<int>& order, index_t group) {
    std::vector<float>& data = storage_.emplace_back(static_cast<std::size_t>(w.rows() * w.cols()));
    for (index_t r = 0; r < w.rows(); ++r)
      for (std::size_t j = 0; j < order.size(); ++j) {
        const float* from = w.row(r) + index_t{order[j]} * group;
        std::copy(from, from + group, data.data() + r * w.cols() + static_cast<index_t>(j) * group);
      }
    return {data.data(), w.rows(), w.cols()};
  }

  model::ModelWeights<float> views_;
  std::vector<std::vector<float>> storage_;
};

}  // namespace elastic::search
