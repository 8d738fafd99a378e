// Non-owning views of every weight a heterogeneous Llama-family decoder
// reads, per layer and model-wide. Whoever owns the memory (host/device
// loaders) hands these views to the Decoder, which keeps only views: one
// weight copy serves every sub-network. A half a layer does not compute
// (a no-op block, the other variant of a block) has empty views; a tied LM
// head views the token embedding.
#pragma once

#include <array>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/layers/elastic_attention.hpp"
#include "elastic/layers/elastic_mlp.hpp"

namespace elastic::model {

template <ElementType T>
struct LayerWeights {
  ConstMatrixView<T> attention_norm;    // [1 x hidden]; empty for no-op attention
  AttentionWeights<T> attention;        // GQA attention only
  ConstMatrixView<T> linear_attention;  // [hidden x hidden]; linear attention only
  ConstMatrixView<T> ffn_norm;          // [1 x hidden]; empty for a no-op FFN
  MLPWeights<T> mlp;                    // SwiGLU FFN only
  ConstMatrixView<T> linear_ffn;        // [hidden x hidden]; linear FFN only
};

// Pointers to every view of `layer` (a LayerWeights<T>, const or not), in
// declaration order, for code that treats each weight alike (copies, checks).
template <class Layer>
constexpr auto layer_views(Layer& layer) {
  return std::array{&layer.attention_norm, &layer.attention.q, &layer.attention.k, &layer.attention.v,
                    &layer.attention.o, &layer.linear_attention, &layer.ffn_norm, &layer.mlp.gate,
                    &layer.mlp.up, &layer.mlp.down, &layer.linear_ffn};
}

template <ElementType T>
struct ModelWeights {
  ConstMatrixView<T> token_embedding;  // [vocab x hidden]
  std::vector<LayerWeights<T>> layers;
  ConstMatrixView<T> output_norm;      // [1 x hidden]
  ConstMatrixView<T> lm_head;          // [vocab x hidden]; the token embedding when tied
};

}  // namespace elastic::model
