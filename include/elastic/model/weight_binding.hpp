// Where each tensor role of a model file lands in ModelWeights: one switch
// that every weight owner (dequantised host weights, quantised host
// weights) binds its views through, and that writers read them back by. A
// view whose type the role's member cannot take (a quantised view for a
// norm, say) is refused with an error naming the role.
#pragma once

#include <type_traits>

#include "elastic/core/error.hpp"
#include "elastic/io/tensor_roles.hpp"
#include "elastic/model/model_weights.hpp"

namespace elastic::model {

// Calls visit(member) with the member of `weights` (a ModelWeights, const
// or not) that holds the slot's tensor; nothing for a role without a member.
template <class Weights, class Visit>
void visit_weight(Weights& weights, const io::TensorSlot& slot, Visit&& visit) {
  using io::TensorRole;
  if (slot.layer < 0) {
    if (slot.role == TensorRole::token_embedding) visit(weights.token_embedding);
    if (slot.role == TensorRole::output_norm) visit(weights.output_norm);
    if (slot.role == TensorRole::lm_head) visit(weights.lm_head);
    return;
  }
  auto& layer = weights.layers.at(static_cast<std::size_t>(slot.layer));
  switch (slot.role) {
    case TensorRole::attention_norm: visit(layer.attention_norm); break;
    case TensorRole::attention_q: visit(layer.attention.q); break;
    case TensorRole::attention_k: visit(layer.attention.k); break;
    case TensorRole::attention_v: visit(layer.attention.v); break;
    case TensorRole::attention_output: visit(layer.attention.o); break;
    case TensorRole::linear_attention: visit(layer.linear_attention); break;
    case TensorRole::ffn_norm: visit(layer.ffn_norm); break;
    case TensorRole::ffn_gate: visit(layer.mlp.gate); break;
    case TensorRole::ffn_up: visit(layer.mlp.up); break;
    case TensorRole::ffn_down: visit(layer.mlp.down); break;
    case TensorRole::linear_ffn: visit(layer.linear_ffn); break;
    default: break;  // the model-wide roles come without a layer
  }
}

template <class T, class W, class View>
void bind_weight(ModelWeights<T, W>& weights, const io::TensorSlot& slot, const View& view) {
  visit_weight(weights, slot, [&](auto& member) {
    if constexpr (std::is_assignable_v<decltype(member), const View&>) {
      member = view;
    } else {
      throw Error(elastic::detail::concat("the ", io::role_name(slot.role), " of layer ", slot.layer,
                                          " cannot take this kind of weight view"));
    }
  });
}

// True for the roles that hold a norm's weight vector rather than a matrix.
constexpr bool is_norm_role(io::TensorRole role) {
  return role == io::TensorRole::attention_norm || role == io::TensorRole::ffn_norm ||
         role == io::TensorRole::output_norm;
}

}  // namespace elastic::model
