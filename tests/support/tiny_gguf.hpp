// A tiny GGUF llama for the model tests, written with the library's GGUF
// writer: tied Q8_0 embeddings, Q4_0 / Q4_1 / Q8_0 attention matrices, the
// FFN gate in Q4_1 and its up and down projections in the caller's types,
// F32 norms, and Q/K rows in GGUF's interleaved RoPE pair order (random
// values, so any order). The decoder tests check it against a float64
// reference; the conversion tests convert it to a Hugging Face folder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/io/gguf_writer.hpp"
#include "elastic/io/tensor_type.hpp"
#include "support/tiny_checkpoint.hpp"

namespace elastic::test {

// GGUF blocks with random quants and small random scales (Q8_0: d; Q4_0: d;
// Q4_1: d, m), so the dequantised values are of weight size.
inline std::vector<std::byte> random_quantised(io::TensorType type, std::int64_t elements, float scale, std::mt19937_64& engine) {
  const io::TensorTypeInfo& info = io::info(type);
  std::vector<std::byte> bytes(static_cast<std::size_t>(elements / info.block_elements * info.block_bytes));
  for (std::byte& b : bytes) b = static_cast<std::byte>(engine() & 0xff);
  std::uniform_real_distribution<float> uniform(0.5f, 1.0f);
  const auto put_half = [&](std::size_t at, float value) {
    const half_t half = from_float<half_t>(value);
    std::memcpy(bytes.data() + at, &half, sizeof half);
  };
  const float levels = type == io::TensorType::q8_0 ? 127.0f : 8.0f;
  for (std::size_t block = 0; block < bytes.size(); block += static_cast<std::size_t>(info.block_bytes)) {
    const float d = scale * uniform(engine) / levels;
    put_half(block, d);
    if (type == io::TensorType::q4_1) put_half(block + 2, -8.0f * d);
  }
  return bytes;
}

// The GGUF llama of `m` (its layers, widths and heads) at `path`.
inline void write_gguf(const std::filesystem::path& path, const TinyModel& m, std::uint64_t seed,
                       io::TensorType down_type = io::TensorType::f16, io::TensorType up_type = io::TensorType::q8_0) {
  io::GgufWriter writer;
  const auto u32 = [](int v) { return io::GgufValue{static_cast<std::uint32_t>(v)}; };
  writer.add("general.architecture", {std::string("llama")});
  writer.add("llama.block_count", u32(m.layers));
  writer.add("llama.embedding_length", u32(m.hidden));
  writer.add("llama.feed_forward_length", u32(m.intermediate));
  writer.add("llama.attention.head_count", u32(m.heads));
  writer.add("llama.attention.head_count_kv", u32(m.kv_heads));
  writer.add("llama.attention.layer_norm_rms_epsilon", {1e-5f});
  writer.add("llama.context_length", u32(256));
  writer.add("llama.vocab_size", u32(m.vocab));
  writer.add("llama.rope.freq_base", {10000.0f});
  std::mt19937_64 engine(seed);
  std::vector<std::vector<std::byte>> storage;  // alive until write(); moving keeps each buffer in place
  const auto add = [&](const std::string& name, io::TensorType type, std::vector<std::int64_t> shape, float scale) {
    std::int64_t count = 1;
    for (std::int64_t dim : shape) count *= dim;
    std::vector<std::byte>& bytes = storage.emplace_back();
    if (io::info(type).quantized) {
      bytes = random_quantised(type, count, scale, engine);
    } else {
      std::uniform_real_distribution<float> uniform(1.0f - scale, 1.0f + scale);
      for (std::int64_t i = 0; i < count; ++i) {
        const float value = uniform(engine);
        if (type == io::TensorType::f16) {
          const half_t half = from_float<half_t>(value - 1.0f);
          bytes.insert(bytes.end(), reinterpret_cast<const std::byte*>(&half), reinterpret_cast<const std::byte*>(&half) + 2);
        } else {
          bytes.insert(bytes.end(), reinterpret_cast<const std::byte*>(&value), reinterpret_cast<const std::byte*>(&value) + 4);
        }
      }
    }
    writer.add_tensor(name, type, std::move(shape), bytes);
  };
  const float in_scale = inverse_sqrt(m.hidden);
  const std::int64_t q_rows = std::int64_t{m.heads} * m.head_dim, kv_rows = std::int64_t{m.kv_heads} * m.head_dim;
  add("token_embd.weight", io::TensorType::q8_0, {m.vocab, m.hidden}, 1.0f);
  add("output_norm.weight", io::TensorType::f32, {m.hidden}, 0.25f);
  for (int i = 0; i < m.layers; ++i) {
    const std::string block = "blk." + std::to_string(i) + ".";
    add(block + "attn_norm.weight", io::TensorType::f32, {m.hidden}, 0.25f);
    add(block + "attn_q.weight", io::TensorType::q4_0, {q_rows, m.hidden}, 2 * in_scale);
    add(block + "attn_k.weight", io::TensorType::q4_1, {kv_rows, m.hidden}, 2 * in_scale);
    add(block + "attn_v.weight", io::TensorType::q8_0, {kv_rows, m.hidden}, in_scale);
    add(block + "attn_output.weight", io::TensorType::q4_0, {m.hidden, q_rows}, inverse_sqrt(static_cast<int>(q_rows)));
    add(block + "ffn_norm.weight", io::TensorType::f32, {m.hidden}, 0.25f);
    add(block + "ffn_gate.weight", io::TensorType::q4_1, {m.intermediate, m.hidden}, 2 * in_scale);
    add(block + "ffn_up.weight", up_type, {m.intermediate, m.hidden}, 2 * in_scale);
    add(block + "ffn_down.weight", down_type, {m.hidden, m.intermediate}, inverse_sqrt(m.intermediate));
  }
  writer.write(path);
}

}  // namespace elastic::test
