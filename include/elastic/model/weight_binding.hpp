// Where each tensor role of a model file lands in ModelWeights: one switch
// that every weight owner (dequantised host weights, quantised host
// weights) binds its views through. A view whose type the role's member
// cannot take (a quantised view for a norm, say) is refused with an error
// naming the role.
#pragma once

#include <type_traits>

#include "elastic/core/error.hpp"
#include "elastic/io/tensor_roles.hpp"
#include "elastic/model/model_weights.hpp"

namespace elastic::model {

template <class T, class W, class View>
void bind_weight(ModelWeights<T, W>& weights, const io::TensorSlot& slot, const View& view) {
  using io::TensorRole;
  const auto set = [&](auto& member) {
    if constexpr (std::is_assignable_v<decltype(member), const View&>) {
      member = view;
    } else {
      throw Error(elastic::detail::concat("the ", io::role_name(slot.role), " of layer ", slot.layer,
                                 " cannot take this kind of weight view"));
    }
  };
  if (slot.layer < 0) {
    if (slot.role == TensorRole::token_embedding) set(weights.token_embedding);
    if (slot.role == TensorRole::output_norm) set(weights.output_norm);
    if (slot.role == TensorRole::lm_head) set(weights.lm_head);
    return;
  }
  LayerWeights<T, W>& layer = weights.layers.at(static_cast<std::size_t>(slot.layer));
  switch (slot.role) {
    case TensorRole::attention_norm: set(layer.attention_norm); break;
    case TensorRole::attention_q: set(layer.attention.q); break;
    case TensorRole::attention_k: set(layer.attention.k); break;
    case TensorRole::attention_v: set(layer.attention.v); break;
    case TensorRole::attention_output: set(layer.attention.o); break;
    case TensorRole::linear_attention: set(layer.linear_attention); break;
    case TensorRole::ffn_norm: set(layer.ffn_norm); break;
    case TensorRole::ffn_gate: set(layer.mlp.gate); break;
    case TensorRole::ffn_up: set(layer.mlp.up); break;
    case TensorRole::ffn_down: set(layer.mlp.down); break;
    case TensorRole::linear_ffn: set(layer.linear_ffn); break;
    default: break;  // the model-wide roles come without a layer
  }
}

// True for the roles that hold a norm's weight vector rather than a matrix.
constexpr bool is_norm_role(io::TensorRole role) {
  return role == io::TensorRole::attention_norm || role == io::TensorRole::ffn_norm ||
         role == io::TensorRole::output_norm;
}

}  // namespace elastic::model
