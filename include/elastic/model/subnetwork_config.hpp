// Which sub-network of a heterogeneous decoder one forward call runs: per
// layer, how many SwiGLU neurons (a prefix, in the stored importance order),
// how many query heads (a prefix; the KV heads follow as ElasticAttention
// groups them: the first ceil(heads / group) of the layer's), and whether
// to skip its attention or FFN half (the residual passes through), and
// whether to run a half as the linear map an elastic checkpoint stores
// beside it. The weights exist once; the configuration is chosen per call.
//
// A sequence keeps its configuration for as long as its KV cache lives: a
// layer run with fewer heads writes only the KV heads it uses, and a skipped
// attention writes none, so a later call with more of them would read
// positions that were never written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/io/model_description.hpp"

namespace elastic::model {

struct LayerChoice {
  int heads = 0;                // query heads used; 0 for a layer without GQA attention
  std::int64_t mlp_width = 0;   // SwiGLU neurons used; 0 for a layer without a SwiGLU FFN
  bool skip_attention = false;  // the attention half (of any kind) passes the residual through
  bool skip_ffn = false;        // the FFN half (of any kind) passes the residual through
  bool linear_attention = false;  // run the attention half as its linear map (the layer must have one)
  bool linear_ffn = false;        // run the FFN half as its linear map (the layer must have one)

  friend bool operator==(const LayerChoice&, const LayerChoice&) = default;
};

struct SubnetworkConfig {
  std::vector<LayerChoice> layers;

  friend bool operator==(const SubnetworkConfig&, const SubnetworkConfig&) = default;

  // Every layer at its stored size, nothing skipped: the model as published.
  static SubnetworkConfig full(const io::ModelDescription& model) {
    SubnetworkConfig config;
    for (const io::LayerPlan& plan : model.layers)
      config.layers.push_back({plan.attention == io::AttentionKind::gqa ? model.heads : 0,
                               plan.ffn == io::FfnKind::swiglu ? plan.intermediate : 0, false, false});
    return config;
  }

  // Throws elastic::Error naming the layer and the value unless this fits
  // `model`: one choice per layer; for a GQA layer that runs, 1 to the
  // stored heads; for a SwiGLU FFN that runs, 1 to the stored width and a
  // multiple of `width_multiple` (the element type's 16-byte vector); 0
  // heads / width for layers without GQA / SwiGLU; a linear half only where
  // the layer has a linear map for it, and not also skipped. A half run
  // linear ignores its heads / width.
  void validate(const io::ModelDescription& model, int width_multiple = 1) const {
    require(layers.size() == model.layers.size(), "SubnetworkConfig: expected one choice per layer (",
            model.layers.size(), "), found ", layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const LayerChoice& choice = layers[i];
      const io::LayerPlan& plan = model.layers[i];
      require(!choice.linear_attention || plan.attention_runs_linear(), "SubnetworkConfig: layer ", i,
              " asks for linear attention, but its ", io::kind_name(plan.attention),
              " attention has no linear map stored");
      require(!choice.linear_ffn || plan.ffn_runs_linear(), "SubnetworkConfig: layer ", i,
              " asks for a linear FFN, but its ", io::kind_name(plan.ffn), " FFN has no linear map stored");
      require(!(choice.linear_attention && choice.skip_attention) && !(choice.linear_ffn && choice.skip_ffn),
              "SubnetworkConfig: layer ", i, " asks to run a half as a linear map and to skip it");
      if (plan.attention != io::AttentionKind::gqa)
        require(choice.heads == 0, "SubnetworkConfig: layer ", i, " has ", io::kind_name(plan.attention),
                " attention, so its query heads must be 0, found ", choice.heads);
      else if (!choice.skip_attention && !choice.linear_attention)
        require(choice.heads >= 1 && choice.heads <= model.heads, "SubnetworkConfig: layer ", i,
                " uses ", choice.heads, " query heads, expected 1 to the stored ", model.heads);
      if (plan.ffn != io::FfnKind::swiglu)
        require(choice.mlp_width == 0, "SubnetworkConfig: layer ", i, " has ", io::kind_name(plan.ffn),
                " FFN, so its MLP width must be 0, found ", choice.mlp_width);
      else if (!choice.skip_ffn && !choice.linear_ffn)
        require(choice.mlp_width >= 1 && choice.mlp_width <= plan.intermediate &&
                    choice.mlp_width % width_multiple == 0,
                "SubnetworkConfig: layer ", i, " uses MLP width ", choice.mlp_width, ", expected a multiple of ",
                width_multiple, " from ", width_multiple, " to the stored ", plan.intermediate);
    }
  }
};

}  // namespace elastic::model
