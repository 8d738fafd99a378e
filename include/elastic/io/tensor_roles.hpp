// The tensors of a Llama-family decoder by role, and where each format keeps
// them: Hugging Face names (model.layers.{i}.self_attn.q_proj.weight, ...)
// and GGUF names (blk.{i}.attn_q.weight, ...). From a ModelDescription this
// lists every tensor a model needs, with the shape it must have (outermost
// first, as StoredTensor gives it), and binds them, so one check serves both
// formats.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "elastic/io/file_error.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/stored_tensor.hpp"

namespace elastic::io {

enum class TensorRole : std::uint8_t {
  token_embedding,
  output_norm,
  lm_head,
  attention_norm,
  attention_q,
  attention_k,
  attention_v,
  attention_output,
  linear_attention,  // Puzzle's h + W RMSNorm(h) in place of attention
  ffn_norm,
  ffn_gate,
  ffn_up,
  ffn_down,
  linear_ffn,  // Puzzle's h + W RMSNorm(h) in place of the FFN
};

enum class TensorNaming : std::uint8_t { hugging_face, gguf };

constexpr std::string_view role_name(TensorRole role) {
  constexpr std::string_view names[] = {"token embedding", "output norm", "LM head", "attention norm",
                                        "attention q", "attention k", "attention v", "attention output",
                                        "linear attention", "FFN norm", "FFN gate", "FFN up", "FFN down",
                                        "linear FFN"};
  return names[static_cast<int>(role)];
}

// The tensor's name in a file of that naming; layer is ignored for the
// model-wide roles.
inline std::string tensor_name(TensorNaming naming, TensorRole role, int layer = 0) {
  const bool hf = naming == TensorNaming::hugging_face;
  const std::string block = hf ? "model.layers." + std::to_string(layer) + "." : "blk." + std::to_string(layer) + ".";
  switch (role) {
    case TensorRole::token_embedding: return hf ? "model.embed_tokens.weight" : "token_embd.weight";
    case TensorRole::output_norm: return hf ? "model.norm.weight" : "output_norm.weight";
    case TensorRole::lm_head: return hf ? "lm_head.weight" : "output.weight";
    case TensorRole::attention_norm: return block + (hf ? "input_layernorm.weight" : "attn_norm.weight");
    case TensorRole::attention_q: return block + (hf ? "self_attn.q_proj.weight" : "attn_q.weight");
    case TensorRole::attention_k: return block + (hf ? "self_attn.k_proj.weight" : "attn_k.weight");
    case TensorRole::attention_v: return block + (hf ? "self_attn.v_proj.weight" : "attn_v.weight");
    case TensorRole::attention_output: return block + (hf ? "self_attn.o_proj.weight" : "attn_output.weight");
    // GGUF's deci graph keeps a linear attention's matrix as the output projection.
    case TensorRole::linear_attention: return block + (hf ? "self_attn.linear_attn.weight" : "attn_output.weight");
    case TensorRole::ffn_norm: return block + (hf ? "post_attention_layernorm.weight" : "ffn_norm.weight");
    case TensorRole::ffn_gate: return block + (hf ? "mlp.gate_proj.weight" : "ffn_gate.weight");
    case TensorRole::ffn_up: return block + (hf ? "mlp.up_proj.weight" : "ffn_up.weight");
    case TensorRole::ffn_down: return block + (hf ? "mlp.down_proj.weight" : "ffn_down.weight");
    case TensorRole::linear_ffn: return block + (hf ? "mlp.linear_mlp.weight" : "ffn_down.weight");
  }
  return {};
}

struct TensorSlot {
  TensorRole role;
  int layer;                         // -1 for the model-wide roles
  std::vector<std::int64_t> shape;   // outermost first
};

// Every tensor the described model reads, in file order (embedding, layers,
// final norm, LM head unless tied), with its expected shape. A linear map
// stored beside a GQA attention or SwiGLU FFN follows that block's tensors.
inline std::vector<TensorSlot> required_tensors(const ModelDescription& model) {
  const std::int64_t hidden = model.hidden;
  const std::int64_t q_rows = std::int64_t{model.heads} * model.head_dim;
  std::vector<TensorSlot> slots{{TensorRole::token_embedding, -1, {model.vocab, hidden}}};
  for (int i = 0; i < static_cast<int>(model.layers.size()); ++i) {
    const LayerPlan& layer = model.layers[static_cast<std::size_t>(i)];
    const std::int64_t kv_rows = std::int64_t{layer.kv_heads} * model.head_dim;
    if (layer.attention != AttentionKind::none) slots.push_back({TensorRole::attention_norm, i, {hidden}});
    if (layer.attention == AttentionKind::gqa) {
      slots.push_back({TensorRole::attention_q, i, {q_rows, hidden}});
      slots.push_back({TensorRole::attention_k, i, {kv_rows, hidden}});
      slots.push_back({TensorRole::attention_v, i, {kv_rows, hidden}});
      slots.push_back({TensorRole::attention_output, i, {hidden, q_rows}});
    }
    if (layer.attention_runs_linear()) {
      slots.push_back({TensorRole::linear_attention, i, {hidden, hidden}});
    }
    if (layer.ffn != FfnKind::none) slots.push_back({TensorRole::ffn_norm, i, {hidden}});
    if (layer.ffn == FfnKind::swiglu) {
      slots.push_back({TensorRole::ffn_gate, i, {layer.intermediate, hidden}});
      slots.push_back({TensorRole::ffn_up, i, {layer.intermediate, hidden}});
      slots.push_back({TensorRole::ffn_down, i, {hidden, layer.intermediate}});
    }
    if (layer.ffn_runs_linear()) {
      slots.push_back({TensorRole::linear_ffn, i, {hidden, hidden}});
    }
  }
  slots.push_back({TensorRole::output_norm, -1, {hidden}});
  if (!model.tied_embeddings) slots.push_back({TensorRole::lm_head, -1, {model.vocab, hidden}});
  return slots;
}

struct BoundTensor {
  TensorSlot slot;
  const StoredTensor* tensor;
};

// Every required tensor found by `find_named(name) -> const StoredTensor*`
// and checked against its expected shape; FileError naming `path`, the
// tensor, its role and both shapes otherwise.
template <class Find>
std::vector<BoundTensor> bind_required_tensors(const ModelDescription& model, TensorNaming naming, Find&& find_named,
                                               std::string_view path) {
  std::vector<BoundTensor> bound;
  for (TensorSlot& slot : required_tensors(model)) {
    const std::string name = tensor_name(naming, slot.role, slot.layer);
    const StoredTensor* tensor = find_named(name);
    require_file(tensor != nullptr, path, "expected the ", role_name(slot.role), " tensor \"", name, "\", found none");
    require_file(tensor->shape == slot.shape, path, "tensor \"", name, "\" (", role_name(slot.role),
                 ") must have shape ", shape_text(slot.shape), " for this model, found ", shape_text(tensor->shape));
    bound.push_back({std::move(slot), tensor});
  }
  return bound;
}

}  // namespace elastic::io
