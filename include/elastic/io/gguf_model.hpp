// Reading a model description and a tokenizer spec out of GGUF metadata, for
// the two architectures the model stack runs: `llama` and `deci` (NVIDIA's
// Nemotron-NAS models as llama.cpp converts them). Every tensor the
// description implies is checked against its expected shape, so a file that
// parses but does not describe a runnable model fails here, naming the
// tensor, the expected and the found shape.
//
// Per-layer choices of a `deci` file: `deci.attention.head_count_kv` and
// `deci.feed_forward_length` are per-layer arrays (a scalar is accepted for
// either and repeated). A layer with KV heads runs GQA. With 0 KV heads the
// tensors decide: `blk.N.attn_output.weight` alone (hidden x hidden, how
// llama.cpp stores Puzzle's linear attention) means linear attention, no
// attention tensor at all means none, and attn_q/k/v are an error. Likewise
// an FFN width of 0 with `blk.N.ffn_down.weight` alone (hidden x hidden)
// means a linear FFN, no FFN tensor means none, and ffn_gate/ffn_up are an
// error.
//
// RoPE: GGUF's Llama Q/K rows hold interleaved pairs (llama.cpp permutes them
// at conversion), so rope.layout is interleaved. Llama 3 scaling comes from
// `{arch}.rope.scaling.type == "llama3"` with its factor keys, or from a
// `rope_freqs.weight` tensor (how llama.cpp stores it), which must match the
// frequency factors of the standard Llama 3.1 parameters (factor 8, low 1,
// high 4, original context 8192); any other scaling is an error.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "elastic/io/dequantize.hpp"
#include "elastic/io/file_error.hpp"
#include "elastic/io/gguf.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/tensor_roles.hpp"
#include "elastic/io/tokenizer_spec.hpp"
#include "elastic/math/rope.hpp"

namespace elastic::io {

namespace gguf_model_parts {

inline constexpr std::int64_t max_layers = 100000;

inline int checked_int(const GgufContents& gguf, std::string_view key, std::int64_t value) {
  require_file(value >= 0 && value <= std::numeric_limits<int>::max(), gguf.path(), "metadata key '", key,
               "': expected a non-negative int, found ", value);
  return static_cast<int>(value);
}

// `key` as one value per layer: an array of `layers` integers, or a scalar
// repeated; `fallback` when the key is missing (FileError without one).
inline std::vector<std::int64_t> per_layer(const GgufContents& gguf, const std::string& key, std::size_t layers,
                                           std::optional<std::int64_t> fallback = std::nullopt) {
  const GgufValue* value = gguf.find(key);
  std::vector<std::int64_t> values;
  if (value == nullptr && fallback) values.assign(layers, *fallback);
  else if (value == nullptr || value->is_integer()) values.assign(layers, gguf.get_int(key));
  else values = gguf.get_int_array(key);
  require_file(values.size() == layers, gguf.path(), "metadata key '", key, "': expected ", layers,
               " per-layer values, found ", values.size());
  for (std::int64_t v : values) checked_int(gguf, key, v);
  return values;
}

inline bool has(const GgufContents& gguf, const std::string& name) { return gguf.find_tensor(name) != nullptr; }

inline AttentionKind attention_kind(const GgufContents& gguf, const std::string& block, std::int64_t kv_heads) {
  if (kv_heads > 0) return AttentionKind::gqa;
  for (const char* part : {"attn_q", "attn_k", "attn_v"})
    require_file(!has(gguf, block + part + ".weight"), gguf.path(), "tensor '", block, part,
                 ".weight' belongs to a layer with 0 KV heads");
  return has(gguf, block + "attn_output.weight") ? AttentionKind::linear : AttentionKind::none;
}

inline FfnKind ffn_kind(const GgufContents& gguf, const std::string& block, std::int64_t width) {
  if (width > 0) return FfnKind::swiglu;
  for (const char* part : {"ffn_gate", "ffn_up"})
    require_file(!has(gguf, block + part + ".weight"), gguf.path(), "tensor '", block, part,
                 ".weight' belongs to a layer with FFN width 0");
  return has(gguf, block + "ffn_down.weight") ? FfnKind::linear : FfnKind::none;
}

// Llama 3 scaling from metadata keys, or from the rope_freqs.weight factors.
inline void read_rope_scaling(const GgufContents& gguf, const std::string& prefix, ModelDescription& model) {
  const std::string type_key = prefix + "rope.scaling.type";
  const std::string* type = gguf.find_string(type_key);
  if (type != nullptr && *type != "none") {
    require_file(*type == "llama3", gguf.path(), "metadata key '", type_key, "': supported: none, llama3; found '",
                 *type, "'");
    model.rope.llama3_scaling = true;
    Llama3RopeScaling& s = model.rope.llama3;
    s.factor = static_cast<float>(gguf.find_float(prefix + "rope.scaling.factor").value_or(s.factor));
    s.low_freq_factor = static_cast<float>(gguf.find_float(prefix + "rope.scaling.low_freq_factor").value_or(s.low_freq_factor));
    s.high_freq_factor = static_cast<float>(gguf.find_float(prefix + "rope.scaling.high_freq_factor").value_or(s.high_freq_factor));
    const std::string original_key = prefix + "rope.scaling.original_context_length";
    s.original_max_positions =
        checked_int(gguf, original_key, gguf.find_int(original_key).value_or(s.original_max_positions));
    return;
  }
  const StoredTensor* factors = gguf.find_tensor("rope_freqs.weight");
  if (factors == nullptr) return;
  const int pairs = model.head_dim / 2;
  require_file(factors->shape == std::vector<std::int64_t>{pairs} && dequantizable(factors->type), gguf.path(),
               "tensor 'rope_freqs.weight': expected shape [", pairs, "] of floats, found ",
               shape_text(factors->shape), " of ", type_name(factors->type));
  std::vector<float> stored(static_cast<std::size_t>(pairs));
  dequantize_tensor<float>(*factors, stored);
  RopeConfig unscaled = model.rope;
  model.rope.llama3_scaling = true;
  model.rope.llama3 = Llama3RopeScaling{};
  for (int pair = 0; pair < pairs; ++pair) {
    const float implied = math::rope_inverse_frequency(pair, model.head_dim, unscaled) /
                          math::rope_inverse_frequency(pair, model.head_dim, model.rope);
    require_file(std::fabs(implied - stored[static_cast<std::size_t>(pair)]) <= 1e-3f * implied, gguf.path(),
                 "tensor 'rope_freqs.weight': factor ", pair, " is ", stored[static_cast<std::size_t>(pair)],
                 ", but the Llama 3.1 scaling (8, 1, 4, 8192) implies ", implied,
                 "; other frequency factors are not supported");
  }
}

// Special ids in [0, vocab): the key's value, or nullopt when it is missing.
inline std::optional<int> token_id(const GgufContents& gguf, const std::string& key, std::int64_t vocab) {
  const std::optional<std::int64_t> id = gguf.find_int(key);
  if (!id) return std::nullopt;
  require_file(*id >= 0 && *id < vocab, gguf.path(), "metadata key '", key, "': token id ", *id,
               " is outside the vocabulary of ", vocab);
  return static_cast<int>(*id);
}

// eos, then eot and eom when present and different.
inline std::vector<int> end_ids(const GgufContents& gguf, std::int64_t vocab) {
  std::vector<int> ids;
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (const auto id = token_id(gguf, key, vocab); id && std::find(ids.begin(), ids.end(), *id) == ids.end())
      ids.push_back(*id);
  return ids;
}

}  // namespace gguf_model_parts

// The model a `llama` or `deci` GGUF describes, its tensors' shapes checked.
inline ModelDescription describe_gguf_model(const GgufContents& gguf) {
  using namespace gguf_model_parts;
  const std::string& architecture = gguf.get_string("general.architecture");
  require_file(architecture == "llama" || architecture == "deci", gguf.path(),
               "metadata key 'general.architecture': supported: llama, deci; found '", architecture, "'");
  const std::string prefix = architecture + ".";
  ModelDescription model;
  model.architecture = architecture == "deci" ? "nemotron-nas" : "llama";
  if (const std::string* name = gguf.find_string("general.name")) model.name = *name;

  const std::int64_t block_count = gguf.get_int(prefix + "block_count");
  require_file(block_count > 0 && block_count <= max_layers, gguf.path(), "metadata key '", prefix,
               "block_count': expected 1 to ", max_layers, " layers, found ", block_count);
  const auto layers = static_cast<std::size_t>(block_count);
  model.hidden = checked_int(gguf, prefix + "embedding_length", gguf.get_int(prefix + "embedding_length"));

  const std::vector<std::int64_t> heads = per_layer(gguf, prefix + "attention.head_count", layers);
  const std::int64_t query_heads = *std::max_element(heads.begin(), heads.end());
  for (std::size_t i = 0; i < layers; ++i)
    require_file(heads[i] == 0 || heads[i] == query_heads, gguf.path(), "metadata key '", prefix,
                 "attention.head_count': layer ", i, " has ", heads[i], " query heads, other layers ", query_heads);
  model.heads = checked_int(gguf, prefix + "attention.head_count", query_heads);
  const std::vector<std::int64_t> kv_heads = per_layer(gguf, prefix + "attention.head_count_kv", layers, query_heads);
  const std::vector<std::int64_t> widths = per_layer(gguf, prefix + "feed_forward_length", layers);

  const std::optional<std::int64_t> key_length = gguf.find_int(prefix + "attention.key_length");
  const std::optional<std::int64_t> rope_dims = gguf.find_int(prefix + "rope.dimension_count");
  require_file(!key_length || !rope_dims || *key_length == *rope_dims, gguf.path(), "head size ", key_length.value_or(0),
               " differs from the RoPE dimension count ", rope_dims.value_or(0), " (partial RoPE is not supported)");
  const std::int64_t head_dim = key_length.value_or(rope_dims.value_or(model.heads > 0 ? model.hidden / model.heads : 0));
  model.head_dim = checked_int(gguf, prefix + "attention.key_length", head_dim);

  model.rms_epsilon = static_cast<float>(gguf.get_float(prefix + "attention.layer_norm_rms_epsilon"));
  model.rope.theta = static_cast<float>(gguf.find_float(prefix + "rope.freq_base").value_or(10000.0));
  model.rope.layout = RopeLayout::interleaved;
  model.rope.max_positions = checked_int(gguf, prefix + "context_length", gguf.get_int(prefix + "context_length"));
  read_rope_scaling(gguf, prefix, model);

  const std::int64_t vocab = gguf.find_int(prefix + "vocab_size").value_or(
      gguf.contains("tokenizer.ggml.tokens") ? static_cast<std::int64_t>(gguf.get_array("tokenizer.ggml.tokens").values.size()) : 0);
  model.vocab = vocab;
  model.tied_embeddings = gguf.find_tensor("output.weight") == nullptr;
  model.bos_id = token_id(gguf, "tokenizer.ggml.bos_token_id", vocab);
  model.eos_ids = end_ids(gguf, vocab);

  for (std::size_t i = 0; i < layers; ++i) {
    const std::string block = "blk." + std::to_string(i) + ".";
    LayerPlan layer;
    layer.attention = attention_kind(gguf, block, kv_heads[i]);
    require_file(layer.attention != AttentionKind::gqa || heads[i] > 0, gguf.path(), "layer ", i, " has ", kv_heads[i],
                 " KV heads but no query heads");
    layer.kv_heads = layer.attention == AttentionKind::gqa ? checked_int(gguf, prefix + "attention.head_count_kv", kv_heads[i]) : 0;
    layer.ffn = ffn_kind(gguf, block, widths[i]);
    layer.intermediate = layer.ffn == FfnKind::swiglu ? widths[i] : 0;
    model.layers.push_back(layer);
  }
  model.validate(gguf.path());

  bind_required_tensors(model, TensorNaming::gguf, [&](const std::string& name) { return gguf.find_tensor(name); },
                        gguf.path());
  return model;
}

// The tokenizer a GGUF file describes (tokenizer.ggml.* and tokenizer.chat_template).
inline TokenizerSpec gguf_tokenizer_spec(const GgufContents& gguf) {
  using namespace gguf_model_parts;
  TokenizerSpec spec;
  const std::string& model = gguf.get_string("tokenizer.ggml.model");
  require_file(model == "gpt2" || model == "llama", gguf.path(),
               "metadata key 'tokenizer.ggml.model': supported: gpt2 (byte-level BPE), llama (SentencePiece); found '",
               model, "'");
  spec.model = model == "gpt2" ? TokenizerModel::byte_level_bpe : TokenizerModel::sentencepiece;
  const std::string* pre = gguf.find_string("tokenizer.ggml.pre");
  spec.pre = pre != nullptr ? *pre : "default";
  spec.tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  const auto vocab = static_cast<std::int64_t>(spec.tokens.size());
  require_file(vocab > 0, gguf.path(), "metadata key 'tokenizer.ggml.tokens': expected at least one token");
  const auto require_per_token = [&](std::string_view key, std::size_t found_count) {
    require_file(found_count == spec.tokens.size(), gguf.path(), "metadata key '", key, "': expected ",
                 spec.tokens.size(), " values (one per token), found ", found_count);
  };
  if (gguf.contains("tokenizer.ggml.scores")) {
    spec.scores = gguf.get_float_array("tokenizer.ggml.scores");
    require_per_token("tokenizer.ggml.scores", spec.scores.size());
  }
  if (gguf.contains("tokenizer.ggml.token_type")) {
    const std::vector<std::int64_t> kinds = gguf.get_int_array("tokenizer.ggml.token_type");
    require_per_token("tokenizer.ggml.token_type", kinds.size());
    spec.kinds.reserve(kinds.size());
    for (std::size_t i = 0; i < kinds.size(); ++i) {
      require_file(kinds[i] >= 1 && kinds[i] <= 6, gguf.path(), "metadata key 'tokenizer.ggml.token_type': token ", i,
                   " has kind ", kinds[i], ", expected 1 to 6");
      spec.kinds.push_back(static_cast<TokenKind>(kinds[i]));
    }
  }
  if (gguf.contains("tokenizer.ggml.merges")) spec.merges = gguf.get_string_array("tokenizer.ggml.merges");
  spec.bos_id = token_id(gguf, "tokenizer.ggml.bos_token_id", vocab);
  spec.eos_ids = end_ids(gguf, vocab);
  spec.unknown_id = token_id(gguf, "tokenizer.ggml.unknown_token_id", vocab);
  spec.padding_id = token_id(gguf, "tokenizer.ggml.padding_token_id", vocab);
  const bool sentencepiece = spec.model == TokenizerModel::sentencepiece;
  spec.add_bos = gguf.find_bool("tokenizer.ggml.add_bos_token").value_or(sentencepiece);
  spec.add_eos = gguf.find_bool("tokenizer.ggml.add_eos_token").value_or(false);
  spec.add_space_prefix = gguf.find_bool("tokenizer.ggml.add_space_prefix").value_or(sentencepiece);
  if (const std::string* chat_template = gguf.find_string("tokenizer.chat_template")) spec.chat_template = *chat_template;
  return spec;
}

}  // namespace elastic::io
