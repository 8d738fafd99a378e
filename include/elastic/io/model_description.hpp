// What a model file describes, whichever format it came in (HF config.json,
// Nemotron-NAS block_configs, GGUF metadata): the per-layer plan of a
// heterogeneous Llama-family decoder, its RoPE and norms, and the special
// token ids. The model stack builds its layers from this; `elastic inspect`
// prints it.
//
// Every layer has its own attention block (GQA with its own KV-head count,
// down to one; Puzzle's linear replacement h + W RMSNorm(h); or nothing) and
// its own FFN block (SwiGLU of its own width, a linear replacement, or
// nothing). All attention layers share the query-head count and head size.
// An elastic checkpoint may also store, beside a GQA attention or a SwiGLU
// FFN, a fitted linear map that a sub-network can run in its place (the
// layer's *_has_linear flags; config.json's "elastic" layers say which).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "elastic/io/file_error.hpp"
#include "elastic/math/rope.hpp"

namespace elastic::io {

enum class AttentionKind : std::uint8_t { gqa, linear, none };
enum class FfnKind : std::uint8_t { swiglu, linear, none };

constexpr std::string_view kind_name(AttentionKind kind) {
  return kind == AttentionKind::gqa ? "gqa" : kind == AttentionKind::linear ? "linear" : "none";
}
constexpr std::string_view kind_name(FfnKind kind) {
  return kind == FfnKind::swiglu ? "swiglu" : kind == FfnKind::linear ? "linear" : "none";
}

struct LayerPlan {
  AttentionKind attention = AttentionKind::gqa;
  int kv_heads = 0;                // gqa only: KV heads of this layer (divides the query heads)
  FfnKind ffn = FfnKind::swiglu;
  std::int64_t intermediate = 0;   // swiglu only: the FFN width
  bool attention_has_linear = false;  // gqa only: a linear map is stored to run in its place
  bool ffn_has_linear = false;        // swiglu only: a linear map is stored to run in its place

  // Whether the half can run as a linear map: its block is one, or stores one beside it.
  bool attention_runs_linear() const { return attention == AttentionKind::linear || attention_has_linear; }
  bool ffn_runs_linear() const { return ffn == FfnKind::linear || ffn_has_linear; }
};

struct ModelDescription {
  std::string architecture;        // "llama" or "nemotron-nas"
  std::string name;                // informational (general.name, _name_or_path)
  std::int64_t hidden = 0;
  std::int64_t vocab = 0;
  int heads = 0;                   // query heads of every gqa layer
  int head_dim = 0;
  std::vector<LayerPlan> layers;
  float rms_epsilon = 1e-5f;
  RopeConfig rope{};               // theta, Q/K row layout, Llama 3 scaling, context length
  bool tied_embeddings = false;    // the LM head reads the token embedding
  std::optional<int> bos_id;
  std::vector<int> eos_ids;

  // Bytes of K and V one token adds to the cache, all layers, at `element_bytes`.
  std::int64_t kv_bytes_per_token(std::int64_t element_bytes) const {
    std::int64_t bytes = 0;
    for (const LayerPlan& layer : layers)
      if (layer.attention == AttentionKind::gqa) bytes += 2 * std::int64_t{layer.kv_heads} * head_dim * element_bytes;
    return bytes;
  }

  // The rules every reader's output obeys; `path` names the file in errors.
  void validate(std::string_view path) const {
    require_file(hidden > 0 && vocab > 0 && !layers.empty(), path, "expected a positive hidden size (found ", hidden,
                 "), vocabulary (found ", vocab, ") and layer count (found ", layers.size(), ")");
    require_file(heads > 0 && head_dim > 0 && head_dim % 2 == 0, path,
                 "expected positive query heads and an even head size, found ", heads, " heads of ", head_dim);
    require_file(rms_epsilon > 0.0f && rms_epsilon < 1.0f, path, "RMSNorm epsilon must be in (0, 1), found ",
                 rms_epsilon);
    require_file(rope.theta > 0.0f && rope.max_positions > 0, path,
                 "RoPE theta and the context length must be positive, found ", rope.theta, " and ",
                 rope.max_positions);
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const LayerPlan& layer = layers[i];
      if (layer.attention == AttentionKind::gqa)
        require_file(layer.kv_heads > 0 && heads % layer.kv_heads == 0, path, "layer ", i, ": ", layer.kv_heads,
                     " KV heads do not divide the ", heads, " query heads");
      if (layer.ffn == FfnKind::swiglu)
        require_file(layer.intermediate > 0, path, "layer ", i, ": the FFN width must be positive, found ",
                     layer.intermediate);
      require_file(!layer.attention_has_linear || layer.attention == AttentionKind::gqa, path, "layer ", i,
                   ": only a GQA attention can store a linear map beside it, found ", kind_name(layer.attention));
      require_file(!layer.ffn_has_linear || layer.ffn == FfnKind::swiglu, path, "layer ", i,
                   ": only a SwiGLU FFN can store a linear map beside it, found ", kind_name(layer.ffn));
    }
    for (int id : eos_ids)
      require_file(id >= 0 && id < vocab, path, "end-of-sequence id ", id, " is outside the vocabulary of ", vocab);
    require_file(!bos_id || (*bos_id >= 0 && *bos_id < vocab), path, "beginning-of-sequence id ", bos_id.value_or(0),
                 " is outside the vocabulary of ", vocab);
  }
};

}  // namespace elastic::io
