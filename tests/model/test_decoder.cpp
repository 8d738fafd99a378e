// The heterogeneous decoder against an independent float64 reference.
//
// Each test writes a tiny random checkpoint with the library's writers (from
// support/tiny_checkpoint.hpp a Hugging Face llama folder, tied or not, with
// or without Llama 3 RoPE scaling, or a nemotron-nas folder with every block
// kind; from here a GGUF llama with quantised tensors and interleaved RoPE
// pairs), opens it with
// io::ModelSource, runs it through model::Decoder, and compares the logits
// with a plain-loop float64 model written here (embedding, RMSNorm, RoPE in
// the file's pair layout, causal GQA softmax attention, SwiGLU, linear and
// no-op blocks, final norm, LM head) that reads the same stored weights and
// slices them as a SubnetworkConfig says. Error measure: max|a - b| / max|ref|.
// In the suite "reference", the real default model completes a prompt sanely.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "elastic/io/gguf_writer.hpp"
#include "elastic/io/model_source.hpp"
#include "elastic/io/tokenizer.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/model/quantized_host_weights.hpp"
#include "model/reference_logits.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"
#include "support/test_support.hpp"
#include "support/tiny_checkpoint.hpp"
#include "support/tiny_gguf.hpp"

using namespace elastic;
using elastic::io::AttentionKind;
using elastic::io::FfnKind;
using elastic::io::TensorRole;
using elastic::model::LogitsFor;
using elastic::model::SubnetworkConfig;
using elastic::test::inverse_sqrt;
using elastic::test::nemotron_model;
using elastic::test::random_tokens;
using elastic::test::TinyModel;
using elastic::test::write_llama_folder;
using elastic::test::write_nemotron_folder;
using elastic::test::write_gguf;

namespace {

// ---------------------------------------------------------------- checkpoints

// ------------------------------------------------------- float64 reference

using Vector = std::vector<double>;
using Rows = std::vector<Vector>;  // one row per position

// The stored weights as doubles, by role and layer.
class ReferenceModel {
 public:
  explicit ReferenceModel(const io::ModelSource& source) : model_(source.description()) {
    for (const io::TensorSlot& slot : io::required_tensors(model_)) {
      const io::StoredTensor& tensor = source.tensor(slot.role, slot.layer);
      std::vector<float> values(static_cast<std::size_t>(tensor.elements()));
      io::dequantize_tensor(tensor, std::span(values));
      weights_[{slot.role, slot.layer}] = {tensor.rows(), tensor.cols(), Vector(values.begin(), values.end())};
    }
  }

  // Logits [positions x vocab] of one sequence run whole and causally.
  Rows logits(const SubnetworkConfig& config, const std::vector<int>& tokens) const {
    const Matrix& embedding = weight(TensorRole::token_embedding);
    Rows h;
    for (int token : tokens)
      h.emplace_back(embedding.values.begin() + token * embedding.cols,
                     embedding.values.begin() + (token + 1) * embedding.cols);
    for (std::size_t i = 0; i < model_.layers.size(); ++i) {
      const io::LayerPlan& plan = model_.layers[i];
      const model::LayerChoice& choice = config.layers[i];
      const int layer = static_cast<int>(i);
      const bool linear_attention = choice.linear_attention || plan.attention == AttentionKind::linear;
      const bool linear_ffn = choice.linear_ffn || plan.ffn == FfnKind::linear;
      if (!choice.skip_attention && !linear_attention && plan.attention == AttentionKind::gqa)
        add(h, attention(norm(h, weight(TensorRole::attention_norm, layer)), layer, plan.kv_heads, choice.heads));
      if (!choice.skip_attention && linear_attention)
        add(h, linear(norm(h, weight(TensorRole::attention_norm, layer)), weight(TensorRole::linear_attention, layer)));
      if (!choice.skip_ffn && !linear_ffn && plan.ffn == FfnKind::swiglu)
        add(h, swiglu(norm(h, weight(TensorRole::ffn_norm, layer)), layer, choice.mlp_width));
      if (!choice.skip_ffn && linear_ffn)
        add(h, linear(norm(h, weight(TensorRole::ffn_norm, layer)), weight(TensorRole::linear_ffn, layer)));
    }
    const Matrix& head = model_.tied_embeddings ? embedding : weight(TensorRole::lm_head);
    return linear(norm(h, weight(TensorRole::output_norm)), head);
  }

 private:
  struct Matrix {
    std::int64_t rows = 0, cols = 0;
    Vector values;
    double at(std::int64_t r, std::int64_t c) const { return values[static_cast<std::size_t>(r * cols + c)]; }
  };

  const Matrix& weight(TensorRole role, int layer = -1) const { return weights_.at({role, layer}); }

  static void add(Rows& h, const Rows& block) {
    for (std::size_t t = 0; t < h.size(); ++t)
      for (std::size_t c = 0; c < h[t].size(); ++c) h[t][c] += block[t][c];
  }

  Rows norm(const Rows& h, const Matrix& gain) const {
    Rows out = h;
    for (Vector& row : out) {
      double sum = 0.0;
      for (double v : row) sum += v * v;
      const double scale = 1.0 / std::sqrt(sum / static_cast<double>(row.size()) + model_.rms_epsilon);
      for (std::size_t c = 0; c < row.size(); ++c) row[c] *= scale * gain.values[c];
    }
    return out;
  }

  // x . w[:rows, :cols]^T over the leading block of w (all of it by default).
  static Rows linear(const Rows& x, const Matrix& w, std::int64_t rows = -1, std::int64_t cols = -1) {
    rows = rows < 0 ? w.rows : rows;
    cols = cols < 0 ? w.cols : cols;
    Rows y(x.size(), Vector(static_cast<std::size_t>(rows)));
    for (std::size_t t = 0; t < x.size(); ++t)
      for (std::int64_t o = 0; o < rows; ++o) {
        double sum = 0.0;
        for (std::int64_t i = 0; i < cols; ++i) sum += x[t][static_cast<std::size_t>(i)] * w.at(o, i);
        y[t][static_cast<std::size_t>(o)] = sum;
      }
    return y;
  }

  double inverse_frequency(int pair) const {
    const int d = model_.head_dim;
    const double frequency = std::pow(static_cast<double>(model_.rope.theta), -2.0 * pair / d);
    if (!model_.rope.llama3_scaling) return frequency;
    const Llama3RopeScaling& s = model_.rope.llama3;
    const double wavelength = 2.0 * std::numbers::pi / frequency;
    const double original = s.original_max_positions;
    if (wavelength < original / s.high_freq_factor) return frequency;
    if (wavelength > original / s.low_freq_factor) return frequency / s.factor;
    const double smooth = (original / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    return (1.0 - smooth) * frequency / s.factor + smooth * frequency;
  }

  // Rotates every head of every position in place.
  void rope(Rows& x, int heads) const {
    const int d = model_.head_dim;
    for (std::size_t t = 0; t < x.size(); ++t)
      for (int head = 0; head < heads; ++head)
        for (int pair = 0; pair < d / 2; ++pair) {
          const bool interleaved = model_.rope.layout == RopeLayout::interleaved;
          double& a = x[t][static_cast<std::size_t>(head * d + (interleaved ? 2 * pair : pair))];
          double& b = x[t][static_cast<std::size_t>(head * d + (interleaved ? 2 * pair + 1 : pair + d / 2))];
          const double angle = static_cast<double>(t) * inverse_frequency(pair);
          const double ra = a * std::cos(angle) - b * std::sin(angle);
          const double rb = b * std::cos(angle) + a * std::sin(angle);
          a = ra;
          b = rb;
        }
  }

  // Causal GQA attention over the first `heads` query heads.
  Rows attention(const Rows& x, int layer, int kv_heads, int heads) const {
    const int d = model_.head_dim, group = model_.heads / kv_heads, used_kv = (heads + group - 1) / group;
    Rows q = linear(x, weight(TensorRole::attention_q, layer), std::int64_t{heads} * d);
    Rows k = linear(x, weight(TensorRole::attention_k, layer), std::int64_t{used_kv} * d);
    const Rows v = linear(x, weight(TensorRole::attention_v, layer), std::int64_t{used_kv} * d);
    rope(q, heads);
    rope(k, used_kv);
    Rows attended(x.size(), Vector(static_cast<std::size_t>(heads * d)));
    for (std::size_t t = 0; t < x.size(); ++t)
      for (int head = 0; head < heads; ++head) {
        const int kv = head / group;
        Vector scores(t + 1);
        for (std::size_t s = 0; s <= t; ++s) {
          double dot = 0.0;
          for (int c = 0; c < d; ++c) dot += q[t][static_cast<std::size_t>(head * d + c)] * k[s][static_cast<std::size_t>(kv * d + c)];
          scores[s] = dot / std::sqrt(static_cast<double>(d));
        }
        const double top = *std::max_element(scores.begin(), scores.end());
        double total = 0.0;
        for (double& score : scores) total += (score = std::exp(score - top));
        for (std::size_t s = 0; s <= t; ++s)
          for (int c = 0; c < d; ++c)
            attended[t][static_cast<std::size_t>(head * d + c)] += scores[s] / total * v[s][static_cast<std::size_t>(kv * d + c)];
      }
    return linear(attended, weight(TensorRole::attention_output, layer), -1, std::int64_t{heads} * d);
  }

  Rows swiglu(const Rows& x, int layer, std::int64_t width) const {
    const Rows gate = linear(x, weight(TensorRole::ffn_gate, layer), width);
    Rows up = linear(x, weight(TensorRole::ffn_up, layer), width);
    for (std::size_t t = 0; t < x.size(); ++t)
      for (std::size_t j = 0; j < up[t].size(); ++j) up[t][j] *= gate[t][j] / (1.0 + std::exp(-gate[t][j]));
    return linear(up, weight(TensorRole::ffn_down, layer), -1, width);
  }

  io::ModelDescription model_;
  std::map<std::pair<TensorRole, int>, Matrix> weights_;
};

// ------------------------------------------------------------ the decoder

// One sequence's part of a forward: its slot, what its cache holds, its new tokens.
struct Part {
  int slot = 0;
  int cached = 0;
  std::vector<int> tokens;
};

// Weights: HostWeights<T> (dequantised) or QuantizedHostWeights<T> (blocks).
template <class T, class MlpWidths = AnyWidth, class Weights = model::HostWeights<T>>
class Harness {
  using Matrices = std::remove_cvref_t<decltype(std::declval<const Weights&>().views().lm_head)>;
  using DecoderType = model::Decoder<T, MlpWidths, Matrices>;

 public:
  Harness(const std::filesystem::path& path, int slots = 3, int capacity = 32)
      : source_(io::ModelSource::open(path)),
        weights_(source_),
        decoder_(weights_.description(), weights_.views()),
        cache_memory_(decoder_.cache_shape(slots, capacity).template bytes_required<T>()),
        cache_(cache_memory_.get(), decoder_.cache_shape(slots, capacity)),
        executor_(2) {}

  const io::ModelSource& source() const { return source_; }
  DecoderType& decoder() { return decoder_; }
  const model::ModelKVCache<T>& cache() const { return cache_; }
  host::Executor& executor() { return executor_; }

  // Logits [rows x vocab] of one forward over `parts`; the logits start poisoned.
  Rows forward(const SubnetworkConfig& config, const std::vector<Part>& parts, LogitsFor logits_for) {
    return forward(std::span(&config, 1), parts, logits_for);
  }

  // As above with one configuration per part (or one for all).
  Rows forward(std::span<const SubnetworkConfig> configs, const std::vector<Part>& parts, LogitsFor logits_for) {
    std::vector<int> tokens, slots, cached, fresh;
    for (const Part& part : parts) {
      tokens.insert(tokens.end(), part.tokens.begin(), part.tokens.end());
      slots.push_back(part.slot);
      cached.push_back(part.cached);
      fresh.push_back(static_cast<int>(part.tokens.size()));
    }
    const AttentionBatch batch{slots, cached, fresh, {}};
    const index_t vocab = decoder_.description().vocab;
    test::HostMatrix<float> logits(DecoderType::logit_rows(batch, logits_for), vocab);
    test::fill_poison(logits);
    const std::size_t bytes = decoder_.workspace_bytes(executor_, batch, cache_.shape(), logits_for, configs);
    if (workspace_.bytes() < bytes) workspace_ = host::WorkspaceBuffer(bytes);
    decoder_.forward(executor_, configs, tokens, batch, cache_, logits_for, logits.view(), workspace_.get());
    Rows rows(static_cast<std::size_t>(logits.rows), Vector(static_cast<std::size_t>(vocab)));
    for (index_t r = 0; r < logits.rows; ++r)
      for (index_t c = 0; c < vocab; ++c) rows[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] = logits.at(r, c);
    return rows;
  }

  // One prefill of `tokens` in slot 0, every position's logits.
  Rows prefill(const SubnetworkConfig& config, const std::vector<int>& tokens) {
    return forward(config, {{0, 0, tokens}}, LogitsFor::every_token);
  }

 private:
  io::ModelSource source_;
  Weights weights_;
  DecoderType decoder_;
  host::WorkspaceBuffer cache_memory_;
  model::ModelKVCache<T> cache_;
  host::Executor executor_;
  host::WorkspaceBuffer workspace_;
};

// max|a - b| / max|ref| over all rows; infinity when a value is not finite.
double relative_error(const Rows& out, const Rows& reference) {
  REQUIRE(out.size() == reference.size());
  double diff = 0.0, top = 0.0;
  for (std::size_t r = 0; r < out.size(); ++r)
    for (std::size_t c = 0; c < out[r].size(); ++c) {
      if (!std::isfinite(out[r][c])) return INFINITY;
      diff = std::max(diff, std::abs(out[r][c] - reference[r][c]));
      top = std::max(top, std::abs(reference[r][c]));
    }
  return diff / top;
}

Rows rows_of(const Rows& all, std::size_t first, std::size_t count) {
  return Rows(all.begin() + static_cast<std::ptrdiff_t>(first), all.begin() + static_cast<std::ptrdiff_t>(first + count));
}

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-4 : 2e-2;
}

// The decoder and the reference on one prefill; returns the error.
template <class T>
double prefill_error(const std::filesystem::path& path, const SubnetworkConfig* config = nullptr, int length = 9) {
  Harness<T> harness(path);
  const ReferenceModel reference(harness.source());
  const SubnetworkConfig chosen = config ? *config : SubnetworkConfig::full(harness.decoder().description());
  const std::vector<int> tokens = random_tokens(length, static_cast<int>(harness.decoder().description().vocab), 11);
  return relative_error(harness.prefill(chosen, tokens), reference.logits(chosen, tokens));
}

}  // namespace

// ------------------------------------------------------------------ tests

TEST_CASE("decoder: Hugging Face llama equals the float64 reference (tied and untied, Llama 3 RoPE or none)") {
  for (const bool tied : {false, true})
    for (const bool llama3 : {false, true}) {
      CAPTURE(tied);
      CAPTURE(llama3);
      TinyModel m;
      m.tied = tied;
      m.llama3 = llama3;
      test::TemporaryDirectory folder;
      write_llama_folder(folder.path(), m, 100 + 2 * tied + llama3);
      const double error = prefill_error<float>(folder.path());
      MESSAGE("llama float tied=" << tied << " llama3=" << llama3 << ": " << error);
      CHECK(error < tolerance<float>());
    }
}

TEST_CASE("decoder: head_dim 128 with multi-query attention") {
  TinyModel m;
  m.heads = 2;
  m.head_dim = 128;
  m.kv_heads = 1;
  test::TemporaryDirectory folder;
  write_llama_folder(folder.path(), m, 7);
  const double error = prefill_error<float>(folder.path());
  MESSAGE("llama float head_dim 128: " << error);
  CHECK(error < tolerance<float>());
}

TEST_CASE("decoder: nemotron-nas with every block kind equals the reference, float and bfloat16") {
  test::TemporaryDirectory folder;
  write_nemotron_folder(folder.path(), nemotron_model(), 21);
  const double float_error = prefill_error<float>(folder.path());
  const double bf16_error = prefill_error<bfloat16_t>(folder.path());
  MESSAGE("nemotron-nas float: " << float_error << ", bfloat16: " << bf16_error);
  CHECK(float_error < tolerance<float>());
  CHECK(bf16_error < tolerance<bfloat16_t>());

  test::TemporaryDirectory bf16_folder;
  write_nemotron_folder(bf16_folder.path(), nemotron_model(), 22, io::TensorType::bf16);
  const double stored_bf16_error = prefill_error<bfloat16_t>(bf16_folder.path());
  MESSAGE("nemotron-nas stored as BF16, bfloat16: " << stored_bf16_error);
  CHECK(stored_bf16_error < tolerance<bfloat16_t>());
}

TEST_CASE("decoder: a GGUF llama with quantised tensors and interleaved RoPE equals the reference") {
  TinyModel m;
  m.kv_heads = 1;
  m.intermediate = 160;
  test::TemporaryDirectory folder;
  write_gguf(folder / "tiny.gguf", m, 5);
  Harness<float> harness(folder / "tiny.gguf");
  CHECK(harness.decoder().description().rope.layout == RopeLayout::interleaved);
  CHECK(harness.decoder().description().tied_embeddings);
  const double float_error = prefill_error<float>(folder / "tiny.gguf");
  const double bf16_error = prefill_error<bfloat16_t>(folder / "tiny.gguf");
  MESSAGE("GGUF float: " << float_error << ", bfloat16: " << bf16_error);
  CHECK(float_error < tolerance<float>());
  CHECK(bf16_error < tolerance<bfloat16_t>());
}

// Computing on the blocks quantises each activation row to 8 bits per
// 32-element block, so the logits differ from the dequantised float64
// reference by that rounding, not by float32 round-off.
TEST_CASE("decoder: a GGUF llama run on its quantised blocks equals the reference within 8-bit activation error") {
  TinyModel m;
  m.kv_heads = 1;
  m.intermediate = 160;
  test::TemporaryDirectory folder;
  write_gguf(folder / "tiny.gguf", m, 5, io::TensorType::q4_0, io::TensorType::q4_1);
  Harness<float, AnyWidth, model::QuantizedHostWeights<float>> harness(folder / "tiny.gguf");
  const ReferenceModel reference(harness.source());
  const std::vector<int> tokens = random_tokens(9, m.vocab, 11);
  SubnetworkConfig config = SubnetworkConfig::full(harness.decoder().description());
  const double error = relative_error(harness.prefill(config, tokens), reference.logits(config, tokens));
  MESSAGE("GGUF on quantised blocks: " << error);
  CHECK(error < 1e-2);

  // A sub-network: MLP widths of whole blocks run, others are refused.
  for (model::LayerChoice& layer : config.layers) layer.mlp_width = 96;
  const double narrow_error = relative_error(harness.prefill(config, tokens), reference.logits(config, tokens));
  MESSAGE("GGUF on quantised blocks, MLP width 96: " << narrow_error);
  CHECK(narrow_error < 1e-2);
  for (model::LayerChoice& layer : config.layers) layer.mlp_width = 80;
  CHECK_THROWS_WITH_AS(harness.prefill(config, tokens), doctest::Contains("multiple of the 32-element block"),
                       elastic::Error);

  // A matrix in a type the kernels do not compute on, and gate and up
  // projections in different formats, are refused at load.
  write_gguf(folder / "f16_down.gguf", m, 5, io::TensorType::f16, io::TensorType::q4_1);
  CHECK_THROWS_WITH_AS(model::QuantizedHostWeights<float>(io::ModelSource::open(folder / "f16_down.gguf")),
                       doctest::Contains("is F16; computing on quantised blocks needs"), elastic::Error);
  write_gguf(folder / "mixed_gate_up.gguf", m, 5, io::TensorType::q4_0, io::TensorType::q8_0);
  CHECK_THROWS_WITH_AS(model::QuantizedHostWeights<float>(io::ModelSource::open(folder / "mixed_gate_up.gguf")),
                       doctest::Contains("FFN gate and up projections must share one block format"),
                       elastic::Error);
}

TEST_CASE("decoder: a sub-network (narrower MLPs, fewer heads, skipped halves) equals the reference of the sliced model") {
  test::TemporaryDirectory folder;
  write_nemotron_folder(folder.path(), nemotron_model(), 31);
  const io::ModelDescription model = io::ModelSource::open(folder.path()).description();
  SubnetworkConfig config = SubnetworkConfig::full(model);
  config.layers[0].heads = 3;       // 2 KV heads in groups of 2: both kept, the last group partial
  config.layers[0].mlp_width = 200;
  config.layers[1].skip_attention = true;  // linear attention skipped
  config.layers[1].mlp_width = 64;
  config.layers[3].heads = 1;       // MQA with one query head
  config.layers[4].heads = 2;       // 4 KV heads: 2 of them used
  config.layers[4].skip_ffn = true;
  for (const bool bf16 : {false, true}) {
    CAPTURE(bf16);
    const double error = bf16 ? prefill_error<bfloat16_t>(folder.path(), &config)
                              : prefill_error<float>(folder.path(), &config);
    MESSAGE(std::string(bf16 ? "sub-network bfloat16: " : "sub-network float: ") << error);
    CHECK(error < (bf16 ? tolerance<bfloat16_t>() : tolerance<float>()));
  }
  config.layers[2].skip_ffn = true;  // linear FFN skipped, then every attention skipped
  for (model::LayerChoice& layer : config.layers) layer.skip_attention = true;
  const double error = prefill_error<float>(folder.path(), &config);
  MESSAGE("sub-network without attention: " << error);
  CHECK(error < tolerance<float>());
}

TEST_CASE("decoder: prefill then decode, and chunked prefill, equal one prefill") {
  test::TemporaryDirectory folder;
  write_nemotron_folder(folder.path(), nemotron_model(), 41);
  Harness<float> harness(folder.path());
  const model::Decoder<float>& decoder = harness.decoder();
  const SubnetworkConfig full = SubnetworkConfig::full(decoder.description());
  const std::vector<int> tokens = random_tokens(12, static_cast<int>(decoder.description().vocab), 3);
  const Rows whole = harness.prefill(full, tokens);
  CHECK(relative_error(whole, ReferenceModel(harness.source()).logits(full, tokens)) < tolerance<float>());

  // 5 tokens of prefill, then one token at a time (last-token logits).
  const std::vector<int> head(tokens.begin(), tokens.begin() + 5);
  CHECK(relative_error(harness.prefill(full, head), rows_of(whole, 0, 5)) < 1e-6);
  Rows decoded;
  for (int position = 5; position < 12; ++position) {
    const Rows step = harness.forward(full, {{0, position, {tokens[static_cast<std::size_t>(position)]}}}, LogitsFor::last_token);
    decoded.push_back(step.at(0));
  }
  const double decode_error = relative_error(decoded, rows_of(whole, 5, 7));
  MESSAGE("prefill + decode vs one prefill: " << decode_error);
  CHECK(decode_error < 1e-5);

  // Chunks of 4, 3 and 5 tokens.
  Rows chunked;
  int cached = 0;
  for (const int length : {4, 3, 5}) {
    const std::vector<int> chunk(tokens.begin() + cached, tokens.begin() + cached + length);
    const Rows part = harness.forward(full, {{1, cached, chunk}}, LogitsFor::every_token);
    chunked.insert(chunked.end(), part.begin(), part.end());
    cached += length;
  }
  const double chunk_error = relative_error(chunked, whole);
  MESSAGE("chunked prefill vs one prefill: " << chunk_error);
  CHECK(chunk_error < 1e-5);
}

TEST_CASE("decoder: a ragged batch mixing prefill, chunked prefill and decode equals each sequence alone") {
  test::TemporaryDirectory folder;
  write_nemotron_folder(folder.path(), nemotron_model(), 51);
  for (const bool sub_network : {false, true}) {
    CAPTURE(sub_network);
    Harness<float> harness(folder.path());
    const io::ModelDescription& model = harness.decoder().description();
    SubnetworkConfig config = SubnetworkConfig::full(model);
    if (sub_network) {
      config.layers[0].heads = 2;
      config.layers[4].mlp_width = 128;
      config.layers[2].skip_ffn = true;
    }
    const int vocab = static_cast<int>(model.vocab);
    const std::vector<int> a = random_tokens(6, vocab, 1), b = random_tokens(5, vocab, 2), c = random_tokens(7, vocab, 3);
    // Slots 2 and 0 first hold 4 and 2 tokens of b and c.
    harness.forward(config, {{2, 0, {b.begin(), b.begin() + 4}}, {0, 0, {c.begin(), c.begin() + 2}}},
                    LogitsFor::last_token);
    // a: a whole prefill in slot 1; b: one decode step; c: a chunk of 5.
    const std::vector<Part> parts{{1, 0, a}, {2, 4, {b[4]}}, {0, 2, {c.begin() + 2, c.end()}}};
    const Rows every = harness.forward(config, parts, LogitsFor::every_token);
    const ReferenceModel reference(harness.source());
    const Rows ref_a = reference.logits(config, a), ref_b = reference.logits(config, b), ref_c = reference.logits(config, c);
    const double error = std::max({relative_error(rows_of(every, 0, 6), ref_a), relative_error(rows_of(every, 6, 1), rows_of(ref_b, 4, 1)),
                                   relative_error(rows_of(every, 7, 5), rows_of(ref_c, 2, 5))});
    MESSAGE(std::string(sub_network ? "ragged batch (sub-network): " : "ragged batch: ") << error);
    CHECK(error < tolerance<float>());

    // The same step again from fresh caches, last-token logits only.
    Harness<float> again(folder.path());
    again.forward(config, {{2, 0, {b.begin(), b.begin() + 4}}, {0, 0, {c.begin(), c.begin() + 2}}}, LogitsFor::last_token);
    const Rows last = again.forward(config, parts, LogitsFor::last_token);
    REQUIRE(last.size() == 3);
    CHECK(relative_error(last, {every[5], every[6], every[11]}) < 1e-6);
  }
}

TEST_CASE("decoder: a batch whose sequences run different sub-networks equals each sequence alone") {
  test::TemporaryDirectory folder;
  // Layer 0 also stores linear maps for both halves, layer 4 for its FFN.
  TinyModel elastic = nemotron_model();
  elastic.blocks[0].attention_has_linear = elastic.blocks[0].ffn_has_linear = true;
  elastic.blocks[4].ffn_has_linear = true;
  write_nemotron_folder(folder.path(), elastic, 53);
  const io::ModelDescription model = io::ModelSource::open(folder.path()).description();
  CHECK((model.layers[0].attention_has_linear && model.layers[0].ffn_has_linear && model.layers[4].ffn_has_linear));
  CHECK_FALSE(model.layers[4].attention_has_linear);
  // a: the full model; b and d: narrower MLPs, fewer heads, the linear
  // attention skipped (one group), layer 4's FFN as its stored map; c:
  // other heads and widths, a skipped linear FFN and a skipped GQA
  // attention, layer 0's attention as its stored map (beside a's and b's
  // GQA groups).
  std::vector<SubnetworkConfig> configs(4, SubnetworkConfig::full(model));
  configs[1].layers[0].heads = 2;
  configs[1].layers[0].mlp_width = 128;
  configs[1].layers[1].skip_attention = true;
  configs[1].layers[4].mlp_width = 64;
  configs[1].layers[4].linear_ffn = true;
  configs[3] = configs[1];
  configs[2].layers[0].heads = 3;
  configs[2].layers[2].skip_ffn = true;
  configs[2].layers[3].heads = 1;
  configs[2].layers[4].skip_attention = true;
  configs[2].layers[4].mlp_width = 200;
  configs[2].layers[0].linear_attention = true;
  const int vocab = static_cast<int>(model.vocab);
  std::vector<std::vector<int>> tokens;
  for (int s = 0; s < 4; ++s) tokens.push_back(random_tokens(5 + s, vocab, 70 + static_cast<std::uint64_t>(s)));

  for (const bool bf16 : {false, true}) {
    CAPTURE(bf16);
    const auto check = [&]<class T>() {
      Harness<T> mixed(folder.path(), 4, 32);
      const ReferenceModel reference(mixed.source());
      // Step 1: every sequence's first 3 tokens, in slots 3, 1, 0, 2.
      const int slots[] = {3, 1, 0, 2};
      std::vector<Part> first, second;
      for (std::size_t s = 0; s < 4; ++s) first.push_back({slots[s], 0, {tokens[s].begin(), tokens[s].begin() + 3}});
      const Rows prefill = mixed.forward(configs, first, LogitsFor::every_token);
      // Step 2: a decode step for a and c, the rest of b and d.
      for (std::size_t s = 0; s < 4; ++s) {
        const auto end = (s == 0 || s == 2) ? tokens[s].begin() + 4 : tokens[s].end();
        second.push_back({slots[s], 3, {tokens[s].begin() + 3, end}});
      }
      const Rows step = mixed.forward(configs, second, LogitsFor::every_token);
      double worst = 0.0, worst_alone = 0.0;
      std::size_t first_row = 0, second_row = 0;
      for (std::size_t s = 0; s < 4; ++s) {
        CAPTURE(s);
        const std::size_t fresh = second[s].tokens.size();
        const Rows expected = reference.logits(configs[s], {tokens[s].begin(), tokens[s].begin() + 3 + static_cast<std::ptrdiff_t>(fresh)});
        worst = std::max({worst, relative_error(rows_of(prefill, first_row, 3), rows_of(expected, 0, 3)),
                          relative_error(rows_of(step, second_row, fresh), rows_of(expected, 3, fresh))});
        Harness<T> alone(folder.path(), 4, 32);
        const Rows alone_first = alone.forward(configs[s], {first[s]}, LogitsFor::every_token);
        const Rows alone_second = alone.forward(configs[s], {{first[s].slot, 3, second[s].tokens}}, LogitsFor::every_token);
        worst_alone = std::max({worst_alone, relative_error(rows_of(prefill, first_row, 3), alone_first),
                                relative_error(rows_of(step, second_row, fresh), alone_second)});
        first_row += 3;
        second_row += fresh;
      }
      MESSAGE(std::string(bf16 ? "mixed sub-networks bfloat16: " : "mixed sub-networks float: ") << worst
              << " against the reference, " << worst_alone << " against each sequence alone");
      CHECK(worst < tolerance<T>());
      CHECK(worst_alone == 0.0);  // the host computes every row on its own: bitwise equal
    };
    if (bf16) check.template operator()<bfloat16_t>();
    else check.template operator()<float>();
  }
}

TEST_CASE("decoder: per-sequence configurations are counted and validated") {
  test::TemporaryDirectory folder;
  write_nemotron_folder(folder.path(), nemotron_model(), 57);
  Harness<float> harness(folder.path());
  const io::ModelDescription& model = harness.decoder().description();
  std::vector<SubnetworkConfig> configs(3, SubnetworkConfig::full(model));
  const std::vector<Part> two{{0, 0, {1, 2}}, {1, 0, {3}}};
  CHECK(test::error_of<Error>([&] { harness.forward(configs, two, LogitsFor::every_token); })
            .find("expected one SubnetworkConfig for the whole batch or one per sequence (2), found 3") != std::string::npos);
  configs.resize(2);
  configs[1].layers[0].mlp_width = 100000;
  CHECK(test::error_of<Error>([&] { harness.forward(configs, two, LogitsFor::every_token); })
            .find("layer 0 uses MLP width 100000") != std::string::npos);
}

TEST_CASE("decoder: a deployment's width set runs its widths like any-width and refuses others up front") {
  test::TemporaryDirectory folder;
  write_llama_folder(folder.path(), TinyModel{}, 81);  // SwiGLU 192 in every layer
  using Deployment = Widths<64, 128, 192>;
  const std::vector<int> tokens = random_tokens(7, TinyModel{}.vocab, 5);
  for (const int width : Deployment::values) {
    CAPTURE(width);
    Harness<float> any(folder.path());
    Harness<float, Deployment> deployed(folder.path());
    SubnetworkConfig config = SubnetworkConfig::full(any.decoder().description());
    for (model::LayerChoice& layer : config.layers) layer.mlp_width = width;
    const double error = relative_error(deployed.prefill(config, tokens), any.prefill(config, tokens));
    MESSAGE("width set vs any width at " << width << ": " << error);
    CHECK(error == 0.0);  // the host's specialised loops sum in the same order
    CHECK(relative_error(deployed.prefill(config, tokens),
                         ReferenceModel(deployed.source()).logits(config, tokens)) < tolerance<float>());
  }
  Harness<float, Deployment> deployed(folder.path());
  SubnetworkConfig config = SubnetworkConfig::full(deployed.decoder().description());
  config.layers[1].mlp_width = 96;  // a valid prefix, but not one the deployment serves
  const Workspace cache = deployed.cache().memory();
  const auto* cache_bytes = static_cast<const unsigned char*>(cache.data);
  const std::vector<unsigned char> before(cache_bytes, cache_bytes + cache.bytes);
  CHECK(test::error_of<WidthError>([&] { deployed.prefill(config, tokens); })
            .find("layer 1 asks for MLP width 96, which is not in this decoder's width set {64, 128, 192}") !=
        std::string::npos);
  CHECK(std::equal(before.begin(), before.end(), cache_bytes));  // nothing was written
}

TEST_CASE("decoder: per-layer KV cache bytes, zero for linear and no-op attention") {
  test::TemporaryDirectory folder;
  write_nemotron_folder(folder.path(), nemotron_model(), 61);
  const io::ModelSource source = io::ModelSource::open(folder.path());
  const model::ModelCacheShape shape = model::ModelCacheShape::for_model(source.description(), 3, 40);
  const std::size_t per_kv_head = 2 * 3 * 40 * 64;  // keys and values, slots, capacity, head_dim
  const std::size_t expected[] = {2 * per_kv_head, 0, 0, per_kv_head, 4 * per_kv_head};
  std::size_t total = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    CAPTURE(i);
    CHECK(shape.layer_bytes<float>(i) == expected[i] * sizeof(float));
    CHECK(shape.layer_bytes<bfloat16_t>(i) == expected[i] * sizeof(bfloat16_t));
    total += expected[i] * sizeof(float);
  }
  CHECK(shape.bytes_required<float>() == total);
  CHECK(static_cast<std::size_t>(source.description().kv_bytes_per_token(4)) * 3 * 40 == total);
}

TEST_CASE("decoder: bad inputs throw elastic::Error before anything is written") {
  test::TemporaryDirectory folder;
  write_nemotron_folder(folder.path(), nemotron_model(), 71);
  Harness<float> harness(folder.path(), 2, 8);
  model::Decoder<float>& decoder = harness.decoder();
  const io::ModelDescription& model = decoder.description();
  const SubnetworkConfig full = SubnetworkConfig::full(model);
  const model::ModelKVCache<float>& cache = harness.cache();
  const Workspace cache_memory = cache.memory();
  std::vector<std::byte> cache_before(static_cast<const std::byte*>(cache_memory.data),
                                      static_cast<const std::byte*>(cache_memory.data) + cache_memory.bytes);

  std::vector<int> tokens{1, 2, 3};
  const int slots[] = {0}, cached[] = {0}, fresh[] = {3};
  const AttentionBatch batch{slots, cached, fresh, {}};
  test::HostMatrix<float> logits(3, model.vocab);
  test::fill_poison(logits);
  host::WorkspaceBuffer workspace(decoder.workspace_bytes(harness.executor(), batch, cache.shape(), LogitsFor::every_token));
  const auto run = [&](const SubnetworkConfig& config, std::span<const int> ids, const AttentionBatch& b,
                       MatrixView<float> out, Workspace ws) {
    return test::error_of([&] { decoder.forward(harness.executor(), config, ids, b, cache, LogitsFor::every_token, out, ws); });
  };
  const auto contains = [](const std::string& message, const std::string& part) {
    INFO(message);
    CHECK(message.find(part) != std::string::npos);
  };

  tokens[1] = 96;
  contains(run(full, tokens, batch, logits.view(), workspace.get()), "token 1 has id 96, expected 0 <= id < 96");
  tokens[1] = -1;
  contains(run(full, tokens, batch, logits.view(), workspace.get()), "token 1 has id -1");
  tokens[1] = 2;

  const int long_cached[] = {6};
  contains(run(full, tokens, {slots, long_cached, fresh, {}}, logits.view(), workspace.get()),
           "needs 9 cache positions (6 cached + 3 new), but the cache holds 8");
  const int bad_slot[] = {2};
  contains(run(full, tokens, {bad_slot, cached, fresh, {}}, logits.view(), workspace.get()), "cache slot 2");
  contains(run(full, std::span(tokens).first(2), batch, logits.view(), workspace.get()), "add up to 3 tokens");

  SubnetworkConfig config = full;
  config.layers[0].mlp_width = 1024;
  contains(run(config, tokens, batch, logits.view(), workspace.get()), "layer 0 uses MLP width 1024");
  config = full;
  config.layers[0].mlp_width = 202;
  contains(run(config, tokens, batch, logits.view(), workspace.get()), "a multiple of 4");
  config = full;
  config.layers[4].heads = 5;
  contains(run(config, tokens, batch, logits.view(), workspace.get()), "layer 4 uses 5 query heads, expected 1 to the stored 4");
  config = full;
  config.layers[1].heads = 4;
  contains(run(config, tokens, batch, logits.view(), workspace.get()), "layer 1 has linear attention, so its query heads must be 0");
  config = full;
  config.layers[2].mlp_width = 64;
  contains(run(config, tokens, batch, logits.view(), workspace.get()), "layer 2 has linear FFN, so its MLP width must be 0");
  config.layers.pop_back();
  contains(run(config, tokens, batch, logits.view(), workspace.get()), "one choice per layer (5), found 4");

  test::HostMatrix<float> small(2, model.vocab);
  contains(run(full, tokens, batch, small.view(), workspace.get()), "logits must be [3 x 96]");
  CHECK(test::error_of<WorkspaceError>([&] {
          decoder.forward(harness.executor(), full, tokens, batch, cache, LogitsFor::every_token, logits.view(),
                          {workspace.get().data, workspace.bytes() / 2});
        }).find("workspace too small") != std::string::npos);
  contains(run(full, tokens, batch, {static_cast<float*>(workspace.get().data), 3, model.vocab}, workspace.get()),
           "the logits overlaps the workspace");

  const int empty[] = {0};
  contains(test::error_of([&] {
             decoder.forward(harness.executor(), full, std::span<const int>(), {slots, cached, empty, {}}, cache,
                             LogitsFor::last_token, small.view().first_rows(1), workspace.get());
           }),
           "sequence 0 brings no new token");

  CHECK(test::all_poison(logits));
  CHECK(std::equal(cache_before.begin(), cache_before.end(), static_cast<const std::byte*>(cache_memory.data)));
}

TEST_SUITE("reference") {
  TEST_CASE("decoder: the default model continues \"The capital of France is\" with \" Paris\"") {
    Harness<float> harness(test::default_model_path(), 1, 64);
    const io::Tokenizer tokenizer = io::Tokenizer::from_spec(*harness.source().tokenizer());
    const std::vector<int> prompt = tokenizer.encode("The capital of France is");
    const SubnetworkConfig full = SubnetworkConfig::full(harness.decoder().description());
    const Rows logits = harness.forward(full, {{0, 0, prompt}}, LogitsFor::last_token);
    const auto best = static_cast<int>(std::max_element(logits[0].begin(), logits[0].end()) - logits[0].begin());
    CHECK(tokenizer.decode(std::span(&best, 1)) == " Paris");
  }

  TEST_CASE("decoder: the default model's logits match an independent numpy float64 forward") {
    constexpr int positions = 48;
    Harness<float> harness(test::default_model_path(), 1, positions);
    const io::Tokenizer tokenizer = io::Tokenizer::from_spec(*harness.source().tokenizer());
    const std::vector<int> tokens = test::held_out_tokens(tokenizer, positions);
    const auto vocab = static_cast<std::size_t>(harness.decoder().description().vocab);
    const std::vector<float> reference =
        test::reference_logits("model/reference/llama_numpy.py", test::default_model_path().string(), tokens, vocab);

    const Rows ours = harness.forward(SubnetworkConfig::full(harness.decoder().description()), {{0, 0, tokens}},
                                      LogitsFor::every_token);
    double worst = 0.0;
    int top1_agree = 0;
    for (std::size_t t = 0; t < positions; ++t) {
      const float* ref = reference.data() + t * vocab;
      double max_ref = 0.0, max_diff = 0.0;
      for (std::size_t v = 0; v < vocab; ++v) {
        max_ref = std::max(max_ref, std::abs(double(ref[v])));
        max_diff = std::max(max_diff, std::abs(ours[t][v] - double(ref[v])));
      }
      worst = std::max(worst, max_diff / max_ref);
      top1_agree += std::max_element(ours[t].begin(), ours[t].end()) - ours[t].begin() ==
                    std::max_element(ref, ref + vocab) - ref;
    }
    MESSAGE("SmolLM2 float32 vs numpy float64 over ", positions, " positions: max|a-b|/max|ref| = ", worst,
            ", top-1 agreement ", top1_agree, "/", positions);
    CHECK(worst < 1e-4);
    CHECK(top1_agree == positions);
  }
}
