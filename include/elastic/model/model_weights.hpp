// Non-owning views of every weight a heterogeneous Llama-family decoder
// reads, per layer and model-wide. Whoever owns the memory (host/device
// loaders) hands these views to the Decoder, which keeps only views: one
// weight copy serves every sub-network. A half a layer does not compute
// (a no-op block, the other variant of a block) has empty views; a tied LM
// head views the token embedding. W is the view of the matrices:
// ConstMatrixView<T>, or QuantizedMatrixView for GGUF blocks the host
// executor computes on; the norms are always ConstMatrixView<T>.
#pragma once

#include <array>
#include <tuple>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/layers/elastic_attention.hpp"
#include "elastic/layers/elastic_mlp.hpp"

namespace elastic::model {

template <ElementType T, class W = ConstMatrixView<T>>
struct LayerWeights {
  ConstMatrixView<T> attention_norm;  // [1 x hidden]; empty for no-op attention
  AttentionWeights<T, W> attention;   // GQA attention only
  W linear_attention;                 // [hidden x hidden]; linear attention only
  ConstMatrixView<T> ffn_norm;        // [1 x hidden]; empty for a no-op FFN
  MLPWeights<T, W> mlp;               // SwiGLU FFN only
  W linear_ffn;                       // [hidden x hidden]; linear FFN only
};

// References to every view of `layer` (a LayerWeights, const or not), in
// declaration order, for code that treats each weight alike (copies,
// checks); the norms and the matrices may be different view types.
template <class Layer>
constexpr auto layer_view_refs(Layer& layer) {
  return std::tie(layer.attention_norm, layer.attention.q, layer.attention.k, layer.attention.v, layer.attention.o,
                  layer.linear_attention, layer.ffn_norm, layer.mlp.gate, layer.mlp.up, layer.mlp.down,
                  layer.linear_ffn);
}

// Pointers to the same views of a layer whose views share one type.
template <class Layer>
constexpr auto layer_views(Layer& layer) {
  return std::apply([](auto&... views) { return std::array{&views...}; }, layer_view_refs(layer));
}

template <ElementType T, class W = ConstMatrixView<T>>
struct ModelWeights {
  W token_embedding;  // [vocab x hidden]
  std::vector<LayerWeights<T, W>> layers;
  ConstMatrixView<T> output_norm;  // [1 x hidden]
  W lm_head;                       // [vocab x hidden]; the token embedding when tied
};

}  // namespace elastic::model
