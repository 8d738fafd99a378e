// `elastic inspect`: what a model file holds, without running it. Prints the
// architecture and per-layer plan (consecutive identical layers as one
// range), the tensor types with their counts and bytes, parameter count, KV
// cache bytes per token, the tokenizer and its special tokens, and the chat
// template family. Reads headers and metadata only (the tensor data stays
// mapped, untouched), so it is quick even on large files.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "elastic/io/chat_template.hpp"
#include "elastic/io/model_source.hpp"
#include "format.hpp"

namespace elastic::cli {

inline std::string describe_layer(const io::ModelDescription& model, const io::LayerPlan& layer) {
  std::string attention(io::kind_name(layer.attention));
  if (layer.attention == io::AttentionKind::gqa)
    attention = "gqa " + std::to_string(model.heads) + "q/" + std::to_string(layer.kv_heads) + "kv";
  if (layer.attention_has_linear) attention += " +linear";
  std::string ffn(io::kind_name(layer.ffn));
  if (layer.ffn == io::FfnKind::swiglu) ffn = "swiglu " + std::to_string(layer.intermediate);
  if (layer.ffn_has_linear) ffn += " +linear";
  return pad(attention, 24) + ffn;
}

inline void print_layer_plan(const io::ModelDescription& model) {
  std::printf("  %-9s %-24s %s\n", "layers", "attention", "ffn");
  std::size_t first = 0;
  for (std::size_t i = 1; i <= model.layers.size(); ++i) {
    const std::string current = describe_layer(model, model.layers[first]);
    if (i < model.layers.size() && describe_layer(model, model.layers[i]) == current) continue;
    const std::string range = i - 1 == first ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(i - 1);
    std::printf("  %-9s %s\n", range.c_str(), current.c_str());
    first = i;
  }
}

inline void print_tensor_types(const io::ModelSource& source) {
  struct Totals {
    int tensors = 0;
    std::int64_t elements = 0;
    std::uint64_t bytes = 0;
  };
  std::map<std::string, Totals> by_type;
  Totals all;
  for (const io::StoredTensor* tensor : source.tensors()) {
    Totals& totals = by_type[std::string(io::type_name(tensor->type))];
    for (Totals* t : {&totals, &all}) {
      ++t->tensors;
      t->elements += tensor->elements();
      t->bytes += tensor->bytes.size();
    }
  }
  std::printf("parameters %s in %d tensors, %s\n", count_text(all.elements).c_str(), all.tensors,
              bytes_text(all.bytes).c_str());
  for (const auto& [name, totals] : by_type)
    std::printf("  %-8s %4d tensors  %10s parameters  %10s  %.2f bits/weight\n", name.c_str(), totals.tensors,
                count_text(totals.elements).c_str(), bytes_text(totals.bytes).c_str(),
                8.0 * double(totals.bytes) / double(totals.elements));
}

inline std::string token_label(const io::TokenizerSpec& spec, int id) {
  const std::string text = id >= 0 && std::size_t(id) < spec.tokens.size() ? spec.tokens[std::size_t(id)] : "?";
  return std::to_string(id) + " " + quoted_token(text);
}

inline std::string chat_template_text(const io::TokenizerSpec& spec) {
  if (spec.chat_template.empty()) return "no template (raw prompts only)";
  try {
    return std::string(io::family_name(io::ChatTemplate::from_text(spec.chat_template).family())) + " template";
  } catch (const Error&) {
    return "unrecognised template (raw prompts only)";
  }
}

inline void print_tokenizer(const io::TokenizerSpec& spec) {
  const bool bpe = spec.model == io::TokenizerModel::byte_level_bpe;
  std::printf("tokenizer  %s", bpe ? "byte-level BPE" : "SentencePiece");
  if (bpe) std::printf(" (pre-tokenizer %s), %zu merges", spec.pre.c_str(), spec.merges.size());
  std::printf(", %zu tokens\n", spec.tokens.size());
  std::string special;
  if (spec.bos_id) special += "bos " + token_label(spec, *spec.bos_id) + (spec.add_bos ? " (added)" : "") + "; ";
  for (int id : spec.eos_ids) special += "eos " + token_label(spec, id) + "; ";
  if (spec.unknown_id) special += "unk " + token_label(spec, *spec.unknown_id) + "; ";
  if (spec.padding_id) special += "pad " + token_label(spec, *spec.padding_id) + "; ";
  if (!special.empty()) special.resize(special.size() - 2);
  std::printf("special    %s\n", special.empty() ? "none" : special.c_str());
  std::printf("chat       %s\n", chat_template_text(spec).c_str());
}

inline int run_inspect(const std::string& model_path) {
  const io::ModelSource source = io::ModelSource::open(model_path);
  const io::ModelDescription& model = source.description();
  std::printf("model      %s\n", source.path().c_str());
  std::printf("format     %s, %s\n", source.format_description().c_str(), bytes_text(source.file_bytes()).c_str());
  if (!model.name.empty()) std::printf("name       %s\n", model.name.c_str());
  std::printf("arch       %s: %zu layers, hidden %lld, vocabulary %lld, %d query heads of %d\n",
              model.architecture.c_str(), model.layers.size(), static_cast<long long>(model.hidden),
              static_cast<long long>(model.vocab), model.heads, model.head_dim);
  std::printf("rope       theta %g, %s pairs, context %d%s\n", double(model.rope.theta),
              model.rope.layout == RopeLayout::rotate_half ? "rotate-half" : "interleaved", model.rope.max_positions,
              model.rope.llama3_scaling ? ", Llama 3 scaling" : "");
  std::printf("norms      RMSNorm, epsilon %g\n", double(model.rms_epsilon));
  std::printf("embedding  %s\n", model.tied_embeddings ? "tied to the LM head" : "separate LM head");
  print_layer_plan(model);
  print_tensor_types(source);
  std::printf("KV cache   %s per token in float16, %s in float32\n", bytes_text(model.kv_bytes_per_token(2)).c_str(),
              bytes_text(model.kv_bytes_per_token(4)).c_str());
  if (source.tokenizer())
    print_tokenizer(*source.tokenizer());
  else
    std::printf("tokenizer  none in the model files\n");
  return 0;
}

}  // namespace elastic::cli
