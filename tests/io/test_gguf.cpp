// The GGUF reader, writer and model/tokenizer description: tiny llama and
// deci models written by GgufWriter with many tensor types and read back
// tensor by tensor; one corrupt copy of a good file per validation rule
// (FileError naming the path and the key or tensor); a version 2 file; and,
// in the suite "reference", a file from the Python gguf package's own writer
// and the real default model (SmolLM2-135M, Q4_1).
#include <doctest/doctest.h>

#include <bit>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "elastic/io/dequantize.hpp"
#include "elastic/io/gguf.hpp"
#include "elastic/io/gguf_model.hpp"
#include "elastic/io/gguf_writer.hpp"
#include "support/python.hpp"

using namespace elastic;
using namespace elastic::io;

namespace {

constexpr std::int64_t hidden = 256, heads = 4, head_dim = 64, vocab = 32;

struct LayerSpec {
  std::int64_t kv_heads;         // 0: linear attention when `linear_attention`, else none
  std::int64_t ffn;              // 0: linear FFN when `linear_ffn`, else none
  bool linear_attention = false;
  bool linear_ffn = false;
};

// A tiny model under construction: metadata plus tensors of random bytes,
// kept alive here until written.
class TinyModel {
 public:
  explicit TinyModel(std::string architecture) : prefix_(architecture + ".") {
    writer.add("general.architecture", {architecture});
    writer.add("general.name", {std::string("tiny ") + architecture});
    writer.add(prefix_ + "embedding_length", {std::uint32_t{hidden}});
    writer.add(prefix_ + "context_length", {std::uint32_t{512}});
    writer.add(prefix_ + "attention.layer_norm_rms_epsilon", {1e-5f});
    writer.add(prefix_ + "rope.freq_base", {100000.0f});
    writer.add(prefix_ + "rope.dimension_count", {std::uint32_t{head_dim}});
    std::vector<std::string> tokens;
    for (int i = 0; i < vocab; ++i) tokens.push_back(std::string(1, 't').append(std::to_string(i)));
    writer.add("tokenizer.ggml.model", {std::string("gpt2")});
    writer.add("tokenizer.ggml.pre", {std::string("smollm")});
    writer.add("tokenizer.ggml.tokens", gguf_array(tokens));
    writer.add("tokenizer.ggml.token_type", gguf_array(std::vector<std::int32_t>(vocab, 1)));
    writer.add("tokenizer.ggml.merges", gguf_array(std::vector<std::string>{"t 1", "t1 0"}));
    writer.add("tokenizer.ggml.bos_token_id", {std::uint32_t{1}});
    writer.add("tokenizer.ggml.eos_token_id", {std::uint32_t{2}});
    writer.add("tokenizer.ggml.eot_token_id", {std::uint32_t{3}});
    writer.add("tokenizer.chat_template", {std::string("<|im_start|>{{ messages }}")});
    tensor("token_embd.weight", TensorType::q8_0, {vocab, hidden});
    tensor("output_norm.weight", TensorType::f32, {hidden});
  }

  const std::vector<std::byte>& tensor(const std::string& name, TensorType type, std::vector<std::int64_t> shape) {
    const std::uint64_t size = *tensor_bytes(type, shape, shape.back());
    std::vector<std::byte>& bytes = data_.emplace_back(size);
    for (std::byte& b : bytes) b = static_cast<std::byte>(rng_());
    writer.add_tensor(name, type, std::move(shape), bytes);
    return bytes;
  }

  // Adds the layers' metadata (per-layer arrays for deci) and tensors.
  void layers(const std::vector<LayerSpec>& specs) {
    std::vector<std::int32_t> query_heads, kv_heads, widths;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const LayerSpec& layer = specs[i];
      const std::string block = "blk." + std::to_string(i) + ".";
      const bool attention = layer.kv_heads > 0 || layer.linear_attention;
      query_heads.push_back(attention ? heads : 0);
      kv_heads.push_back(static_cast<std::int32_t>(layer.kv_heads));
      widths.push_back(static_cast<std::int32_t>(layer.ffn));
      if (attention) tensor(block + "attn_norm.weight", TensorType::f32, {hidden});
      if (layer.kv_heads > 0) {
        tensor(block + "attn_q.weight", TensorType::q4_k, {heads * head_dim, hidden});
        tensor(block + "attn_k.weight", TensorType::q6_k, {layer.kv_heads * head_dim, hidden});
        tensor(block + "attn_v.weight", TensorType::q4_1, {layer.kv_heads * head_dim, hidden});
        tensor(block + "attn_output.weight", TensorType::f16, {hidden, heads * head_dim});
      } else if (layer.linear_attention) {
        tensor(block + "attn_output.weight", TensorType::bf16, {hidden, hidden});
      }
      if (layer.ffn > 0 || layer.linear_ffn) tensor(block + "ffn_norm.weight", TensorType::f32, {hidden});
      if (layer.ffn > 0) {
        tensor(block + "ffn_gate.weight", TensorType::q8_0, {layer.ffn, hidden});
        tensor(block + "ffn_up.weight", TensorType::q5_k, {layer.ffn, hidden});
        tensor(block + "ffn_down.weight", TensorType::q3_k, {hidden, layer.ffn});
      } else if (layer.linear_ffn) {
        tensor(block + "ffn_down.weight", TensorType::q2_k, {hidden, hidden});
      }
    }
    writer.add(prefix_ + "block_count", {static_cast<std::uint32_t>(specs.size())});
    if (prefix_ == "deci.") {
      writer.add(prefix_ + "attention.head_count", gguf_array(query_heads));
      writer.add(prefix_ + "attention.head_count_kv", gguf_array(kv_heads));
      writer.add(prefix_ + "feed_forward_length", gguf_array(widths));
    } else {
      writer.add(prefix_ + "attention.head_count", {std::uint32_t{heads}});
      writer.add(prefix_ + "attention.head_count_kv", {static_cast<std::uint32_t>(specs.front().kv_heads)});
      writer.add(prefix_ + "feed_forward_length", {static_cast<std::uint32_t>(specs.front().ffn)});
    }
  }

  GgufWriter writer;

 private:
  std::string prefix_;
  std::deque<std::vector<std::byte>> data_;
  std::mt19937 rng_{11};
};

std::vector<std::byte> read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

void write_all(const std::filesystem::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Offset just past the first occurrence of `text` as a length-prefixed GGUF string.
std::size_t after_string(const std::vector<std::byte>& bytes, std::string_view text) {
  std::string prefixed(8, '\0');
  const std::uint64_t length = text.size();
  std::memcpy(prefixed.data(), &length, 8);
  prefixed += text;
  const std::string_view haystack(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const std::size_t at = haystack.find(prefixed);
  REQUIRE(at != std::string_view::npos);
  return at + prefixed.size();
}

template <class T>
void poke(std::vector<std::byte>& bytes, std::size_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof value);
}

template <class T>
T peek(const std::vector<std::byte>& bytes, std::size_t at) {
  T value;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

}  // namespace

TEST_CASE("a tiny llama GGUF reads back tensor by tensor, with its model and tokenizer") {
  test::TemporaryDirectory directory;
  TinyModel tiny("llama");
  tiny.layers({{2, 256}, {2, 256}});
  const std::vector<std::byte>& output = tiny.tensor("output.weight", TensorType::q6_k, {vocab, hidden});
  const auto path = directory / "tiny.gguf";
  tiny.writer.write(path);

  GgufFile gguf(path);
  CHECK(gguf.version() == 3);
  CHECK(gguf.alignment() == 32);
  CHECK(gguf.data_offset() % 32 == 0);
  CHECK(gguf.tensors().size() == 2 + 2 * 9 + 1);
  CHECK(gguf.get_string("general.architecture") == "llama");
  CHECK(gguf.get_int("llama.embedding_length") == hidden);
  CHECK(gguf.get_float("llama.rope.freq_base") == 100000.0);
  CHECK(gguf.find("no.such.key") == nullptr);
  CHECK_THROWS_WITH_AS(gguf.get_int("general.name"),
                       doctest::Contains("tiny.gguf: metadata key 'general.name': expected an integer within int64, found string"),
                       FileError);
  CHECK_THROWS_WITH_AS(gguf.get_string("tokenizer.ggml.tokens"),
                       doctest::Contains("'tokenizer.ggml.tokens': expected string, found array of string"), FileError);
  CHECK_THROWS_WITH_AS(gguf.get_float("no.such.key"), doctest::Contains("missing metadata key 'no.such.key'"), FileError);
  CHECK_THROWS_WITH_AS(gguf.tensor("blk.9.attn_q.weight"), doctest::Contains("missing tensor 'blk.9.attn_q.weight'"),
                       FileError);

  const StoredTensor& q = gguf.tensor("blk.1.attn_q.weight");
  CHECK(q.type == TensorType::q4_k);
  CHECK(q.shape == std::vector<std::int64_t>{heads * head_dim, hidden});
  const StoredTensor& head = gguf.tensor("output.weight");
  CHECK(head.type == TensorType::q6_k);
  REQUIRE(head.bytes.size() == output.size());
  CHECK(std::memcmp(head.bytes.data(), output.data(), output.size()) == 0);
  for (const StoredTensor& tensor : gguf.tensors()) {
    CAPTURE(tensor.name);
    CHECK(tensor.bytes.size() == *tensor_bytes(tensor.type, tensor.shape, tensor.cols()));
    CHECK(reinterpret_cast<std::uintptr_t>(tensor.bytes.data()) % 32 == 0);
    std::vector<float> values(static_cast<std::size_t>(tensor.elements()));
    dequantize_tensor<float>(tensor, values);  // every span is inside the mapping (ASan)
  }

  const ModelDescription model = describe_gguf_model(gguf);
  CHECK(model.architecture == "llama");
  CHECK(model.name == "tiny llama");
  CHECK(model.hidden == hidden);
  CHECK(model.heads == heads);
  CHECK(model.head_dim == head_dim);
  CHECK(model.vocab == vocab);
  REQUIRE(model.layers.size() == 2);
  CHECK(model.layers[1].attention == AttentionKind::gqa);
  CHECK(model.layers[1].kv_heads == 2);
  CHECK(model.layers[1].intermediate == 256);
  CHECK(model.rope.layout == RopeLayout::interleaved);
  CHECK(model.rope.theta == 100000.0f);
  CHECK(model.rope.max_positions == 512);
  CHECK_FALSE(model.rope.llama3_scaling);
  CHECK_FALSE(model.tied_embeddings);
  CHECK(model.bos_id == 1);
  CHECK(model.eos_ids == std::vector<int>{2, 3});

  const TokenizerSpec spec = gguf_tokenizer_spec(gguf);
  CHECK(spec.model == TokenizerModel::byte_level_bpe);
  CHECK(spec.pre == "smollm");
  CHECK(spec.tokens.size() == vocab);
  CHECK(spec.tokens[5] == "t5");
  CHECK(spec.merges == std::vector<std::string>{"t 1", "t1 0"});
  CHECK(spec.kinds.size() == vocab);
  CHECK(spec.bos_id == 1);
  CHECK_FALSE(spec.add_bos);
  CHECK(spec.chat_template.find("<|im_start|>") == 0);
}

TEST_CASE("a tiny deci GGUF gives per-layer attention and FFN kinds") {
  test::TemporaryDirectory directory;
  TinyModel tiny("deci");
  tiny.layers({{2, 512}, {0, 0, true, false}, {0, 0, false, true}, {1, 256}});
  const auto path = directory / "deci.gguf";
  tiny.writer.write(path);
  const ModelDescription model = describe_gguf_model(GgufFile(path));
  CHECK(model.architecture == "nemotron-nas");
  CHECK(model.tied_embeddings);
  REQUIRE(model.layers.size() == 4);
  CHECK(model.layers[0].attention == AttentionKind::gqa);
  CHECK(model.layers[0].kv_heads == 2);
  CHECK(model.layers[0].intermediate == 512);
  CHECK(model.layers[1].attention == AttentionKind::linear);
  CHECK(model.layers[1].ffn == FfnKind::none);
  CHECK(model.layers[2].attention == AttentionKind::none);
  CHECK(model.layers[2].ffn == FfnKind::linear);
  CHECK(model.layers[3].kv_heads == 1);
  CHECK(model.kv_bytes_per_token(2) == 2 * (2 + 1) * head_dim * 2);
}

TEST_CASE("metadata of every type, nested arrays and a custom alignment round-trip") {
  test::TemporaryDirectory directory;
  GgufWriter writer;
  writer.add("general.alignment", {std::uint32_t{64}});
  writer.add("v.u8", {std::uint8_t{200}});
  writer.add("v.i8", {std::int8_t{-100}});
  writer.add("v.u16", {std::uint16_t{60000}});
  writer.add("v.i16", {std::int16_t{-30000}});
  writer.add("v.i32", {std::int32_t{-7}});
  writer.add("v.bool", {true});
  writer.add("v.u64", {std::uint64_t{1} << 63});
  writer.add("v.i64", {std::int64_t{-5}});
  writer.add("v.f64", {0.25});
  writer.add("v.empty", gguf_array(std::vector<float>{}));
  GgufArray nested{GgufType::array, {gguf_array(std::vector<std::int32_t>{1, 2}), gguf_array(std::vector<std::int32_t>{3})}};
  writer.add("v.nested", {nested});
  const std::vector<std::byte> small(4 * 3 * 2, std::byte{1});
  writer.add_tensor("a", TensorType::f32, {3, 2}, small);
  writer.add_tensor("b", TensorType::i8, {1}, std::span(small).first(1));
  const auto path = directory / "types.gguf";
  writer.write(path);

  GgufFile gguf(path);
  CHECK(gguf.alignment() == 64);
  CHECK(gguf.get_int("v.u8") == 200);
  CHECK(gguf.get_int("v.i8") == -100);
  CHECK(gguf.get_int("v.u16") == 60000);
  CHECK(gguf.get_int("v.i16") == -30000);
  CHECK(gguf.get_int("v.i32") == -7);
  CHECK(gguf.get_bool("v.bool"));
  CHECK(gguf.find("v.u64")->type() == GgufType::u64);
  CHECK_THROWS_WITH_AS(gguf.get_int("v.u64"), doctest::Contains("found u64"), FileError);
  CHECK(gguf.get_int("v.i64") == -5);
  CHECK(gguf.get_float("v.f64") == 0.25);
  CHECK(gguf.get_float_array("v.empty").empty());
  CHECK(gguf.get_array("v.empty").element_type == GgufType::f32);
  const GgufArray& read_nested = gguf.get_array("v.nested");
  REQUIRE(read_nested.values.size() == 2);
  CHECK(gguf_describe_type(*gguf.find("v.nested")) == "array of array of i32");
  CHECK(std::get<GgufArray>(read_nested.values[0].value).values.size() == 2);
  CHECK(gguf.tensor("b").bytes.data() - gguf.tensor("a").bytes.data() == 64);
  CHECK(gguf.tensor("a").shape == std::vector<std::int64_t>{3, 2});
  CHECK(gguf.metadata().front().first == "general.alignment");
}

TEST_CASE("a version 2 file reads like version 3") {
  test::TemporaryDirectory directory;
  TinyModel tiny("llama");
  tiny.layers({{2, 256}});
  const auto path = directory / "v2.gguf";
  tiny.writer.write(path);
  std::vector<std::byte> bytes = read_all(path);
  poke<std::uint32_t>(bytes, 4, 2);
  write_all(path, bytes);
  GgufFile gguf(path);
  CHECK(gguf.version() == 2);
  CHECK(describe_gguf_model(gguf).layers.size() == 1);
}

TEST_CASE("writer failures leave no file, and its checks name the problem") {
  test::TemporaryDirectory directory;
  GgufWriter writer;
  CHECK_THROWS_WITH_AS(writer.add("general.alignment", {std::uint32_t{48}}), doctest::Contains("power of two"), Error);
  writer.add("k", {std::uint8_t{1}});
  CHECK_THROWS_WITH_AS(writer.add("k", {std::uint8_t{1}}), doctest::Contains("duplicate metadata key 'k'"), Error);
  const std::vector<std::byte> bytes(10);
  CHECK_THROWS_WITH_AS(writer.add_tensor("t", TensorType::q8_0, {32}, bytes), doctest::Contains("needs 34 bytes, given 10"),
                       Error);
  CHECK_THROWS_WITH_AS(writer.add_tensor("t", TensorType::u8, {10}, bytes), doctest::Contains("cannot store U8"), Error);
  CHECK_THROWS(writer.write(directory / "missing-dir" / "x.gguf"));
  CHECK(std::filesystem::is_empty(directory.path()));
}

namespace {

// One corruption of a good file and the words its FileError must contain.
struct Corruption {
  const char* rule;
  std::function<void(std::vector<std::byte>&)> apply;
  const char* message;
};

std::size_t tensor_info(const std::vector<std::byte>& bytes, std::string_view name) { return after_string(bytes, name); }

}  // namespace

TEST_CASE("each validation rule rejects its corrupt copy with the path and the key or tensor") {
  test::TemporaryDirectory directory;
  TinyModel tiny("llama");
  tiny.writer.add("test.key_a", {std::uint32_t{1}});
  tiny.writer.add("test.key_b", {std::uint32_t{2}});
  tiny.writer.add("test.flag", {false});
  tiny.writer.add("general.alignment", {std::uint32_t{32}});
  GgufValue deep{std::int32_t{0}};
  for (int level = 0; level < gguf_max_array_depth + 1; ++level) deep = GgufValue{GgufArray{deep.type(), {deep}}};
  tiny.layers({{2, 256}});
  const auto good = directory / "good.gguf";
  tiny.writer.write(good);
  const std::vector<std::byte> original = read_all(good);
  REQUIRE_NOTHROW(describe_gguf_model(GgufFile(good)));

  const std::string q = "blk.0.attn_q.weight";  // Q4_K [256, 256], rank 2
  const std::string k = "blk.0.attn_k.weight";
  const std::vector<Corruption> corruptions = {
      {"magic", [](auto& b) { poke<std::uint32_t>(b, 0, 0x46554746); }, "not a GGUF file"},
      {"version", [](auto& b) { poke<std::uint32_t>(b, 4, 1); }, "unsupported GGUF version 1, expected 2 or 3"},
      {"tensor count", [](auto& b) { poke<std::uint64_t>(b, 8, std::uint64_t{1} << 40); }, "tensor count 1099511627776 cannot fit"},
      {"key count", [](auto& b) { poke<std::uint64_t>(b, 16, ~std::uint64_t{0}); }, "metadata key count"},
      {"array length", [](auto& b) { poke<std::uint64_t>(b, after_string(b, "tokenizer.ggml.tokens") + 8, std::uint64_t{1} << 60); },
       "array length 1152921504606846976 at offset"},
      {"string length", [](auto& b) { poke<std::uint64_t>(b, after_string(b, "general.name") + 4, std::uint64_t{1} << 50); },
       "(metadata key 'general.name')"},
      {"duplicate key", [](auto& b) { b[after_string(b, "test.key_b") - 1] = std::byte{'a'}; }, "duplicate metadata key (metadata key 'test.key_a')"},
      {"utf-8 key", [](auto& b) { b[after_string(b, "test.key_b") - 1] = std::byte{0xC3}; }, "metadata key at offset"},
      {"value type", [](auto& b) { poke<std::uint32_t>(b, after_string(b, "test.key_a"), 13); }, "unknown metadata type id 13"},
      {"bool", [](auto& b) { b[after_string(b, "test.flag") + 4] = std::byte{2}; }, "bool value"},
      {"alignment value", [](auto& b) { poke<std::uint32_t>(b, after_string(b, "general.alignment") + 4, 48); },
       "'general.alignment': expected a power of two, found 48"},
      {"alignment type", [](auto& b) { poke<std::uint32_t>(b, after_string(b, "general.alignment"), 5); },
       "'general.alignment': expected u32, found i32"},
      {"rank", [&](auto& b) { poke<std::uint32_t>(b, tensor_info(b, q), 5); }, "tensor 'blk.0.attn_q.weight': expected 1 to 4 dimensions, found 5"},
      {"zero dim", [&](auto& b) { poke<std::uint64_t>(b, tensor_info(b, q) + 4, 0); }, "tensor 'blk.0.attn_q.weight': dimension 0 is 0"},
      {"dim overflow", [&](auto& b) { poke<std::uint64_t>(b, tensor_info(b, q) + 12, std::uint64_t{1} << 62); },
       "tensor 'blk.0.attn_q.weight': dimension 1"},
      {"type id", [&](auto& b) { poke<std::uint32_t>(b, tensor_info(b, q) + 20, 99); }, "tensor 'blk.0.attn_q.weight': unknown or unsupported ggml type id 99"},
      {"block", [&](auto& b) { poke<std::uint64_t>(b, tensor_info(b, q) + 4, 128); }, "tensor 'blk.0.attn_q.weight': innermost dimension 128 is not a multiple"},
      {"misaligned", [&](auto& b) { poke(b, tensor_info(b, q) + 24, peek<std::uint64_t>(b, tensor_info(b, q) + 24) + 8); },
       "tensor 'blk.0.attn_q.weight': offset"},
      {"outside", [&](auto& b) { poke<std::uint64_t>(b, tensor_info(b, q) + 24, std::uint64_t{1} << 40); }, "tensor 'blk.0.attn_q.weight': bytes"},
      {"overlap", [&](auto& b) { poke(b, tensor_info(b, k) + 24, peek<std::uint64_t>(b, tensor_info(b, q) + 24)); }, "overlaps tensor"},
      {"duplicate tensor", [&](auto& b) { b[tensor_info(b, k) - 8] = std::byte{'q'}; }, "duplicate tensor 'blk.0.attn_q.weight'"},
      {"truncated header", [](auto& b) { b.resize(100); }, "truncated"},
      {"truncated data", [](auto& b) { b.resize(b.size() - 1000); }, "lie outside"},
  };
  for (const Corruption& corruption : corruptions) {
    CAPTURE(corruption.rule);
    std::vector<std::byte> bytes = original;
    corruption.apply(bytes);
    const auto path = directory / (std::string("bad-") + corruption.rule + ".gguf");
    write_all(path, bytes);
    std::string message;
    try {
      GgufFile gguf(path);
    } catch (const FileError& error) {
      message = error.what();
    }
    CAPTURE(message);
    CHECK(message.starts_with(path.string() + ": "));
    CHECK(message.find(corruption.message) != std::string::npos);
  }

  GgufWriter nested;
  nested.add("deep", deep);
  nested.write(directory / "deep.gguf");
  CHECK_THROWS_WITH_AS(GgufFile(directory / "deep.gguf"), doctest::Contains("nested deeper than 8"), FileError);
}

TEST_CASE("model and tokenizer descriptions reject wrong shapes, architectures and ids") {
  test::TemporaryDirectory directory;
  const auto check = [&](const char* name, auto&& setup, const char* message, bool tokenizer = false) {
    CAPTURE(name);
    TinyModel tiny(std::string(std::string_view(name) == "architecture" ? "gpt2" : "llama"));
    setup(tiny);
    const auto path = directory / (std::string(name) + ".gguf");
    tiny.writer.write(path);
    GgufFile gguf(path);
    if (tokenizer) CHECK_THROWS_WITH_AS(gguf_tokenizer_spec(gguf), doctest::Contains(message), FileError);
    else CHECK_THROWS_WITH_AS(describe_gguf_model(gguf), doctest::Contains(message), FileError);
  };
  check("architecture", [](TinyModel& t) { t.layers({{2, 256}}); }, "supported: llama, deci; found 'gpt2'");
  check("shape", [](TinyModel& t) {
    t.layers({{2, 256}});
    t.tensor("output.weight", TensorType::f32, {vocab + 1, hidden});
  }, "tensor \"output.weight\" (LM head) must have shape [32, 256] for this model, found [33, 256]");
  check("missing tensor", [](TinyModel& t) {
    t.writer.add("llama.block_count", {std::uint32_t{1}});
    t.writer.add("llama.attention.head_count", {std::uint32_t{heads}});
    t.writer.add("llama.feed_forward_length", {std::uint32_t{256}});
  }, "expected the attention norm tensor \"blk.0.attn_norm.weight\", found none");
  check("kv heads", [](TinyModel& t) {
    t.layers({{3, 256}});
  }, "3 KV heads do not divide the 4 query heads");
  check("token id", [](TinyModel& t) {
    t.writer.add("tokenizer.ggml.unknown_token_id", {std::uint32_t{vocab}});
  }, "'tokenizer.ggml.unknown_token_id': token id 32 is outside the vocabulary of 32", true);
}

TEST_SUITE("reference") {
  TEST_CASE("a GGUF written by the Python gguf package reads back") {
    test::TemporaryDirectory directory;
    const auto path = directory / "python.gguf";
    const std::string listing = test::run_reference_script("gguf_write.py", {path.string()});
    GgufFile gguf(path);
    CHECK(gguf.version() == 3);
    CHECK(gguf.get_string("general.architecture") == "llama");
    CHECK(gguf.get_int("llama.block_count") == 1);
    CHECK(gguf.get_string_array("tokenizer.ggml.tokens") == std::vector<std::string>{"a", "b", "c"});
    CHECK(gguf.get_float_array("tokenizer.ggml.scores") == std::vector<float>{0.5f, -1.0f, 2.0f});
    const StoredTensor& weight = gguf.tensor("weight");
    CHECK(weight.shape == std::vector<std::int64_t>{3, 4});
    std::vector<float> values(12);
    dequantize_tensor<float>(weight, values);
    for (int i = 0; i < 12; ++i) CHECK(values[static_cast<std::size_t>(i)] == static_cast<float>(i) * 0.5f);
    const StoredTensor& q8 = gguf.tensor("q8");
    CHECK(q8.type == TensorType::q8_0);
    CHECK(q8.shape == std::vector<std::int64_t>{2, 64});
  }

  TEST_CASE("the default model's GGUF: SmolLM2-135M facts and dequantised tensors") {
    const auto path = test::default_model_path();
    const auto start = std::chrono::steady_clock::now();
    GgufFile gguf(path);
    const double open_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    MESSAGE("opened and parsed " << path.string() << " in " << open_ms << " ms");
    CHECK(gguf.version() == 3);
    REQUIRE(gguf.tensors().size() == 272);
    int q4_1 = 0, f32 = 0;
    for (const StoredTensor& tensor : gguf.tensors()) {
      q4_1 += tensor.type == TensorType::q4_1;
      f32 += tensor.type == TensorType::f32;
    }
    CHECK(q4_1 == 210);
    CHECK(f32 == 61);
    CHECK(gguf.tensor("token_embd.weight").type == TensorType::q8_0);
    CHECK(gguf.tensor("token_embd.weight").shape == std::vector<std::int64_t>{49152, 576});

    const ModelDescription model = describe_gguf_model(gguf);
    CHECK(model.architecture == "llama");
    CHECK(model.layers.size() == 30);
    CHECK(model.hidden == 576);
    CHECK(model.heads == 9);
    CHECK(model.head_dim == 64);
    for (const LayerPlan& layer : model.layers) {
      CHECK(layer.kv_heads == 3);
      CHECK(layer.intermediate == 1536);
    }
    CHECK(model.rope.theta == 100000.0f);
    CHECK(model.rms_epsilon == 1e-5f);
    CHECK(model.vocab == 49152);
    CHECK(model.tied_embeddings);
    CHECK(model.bos_id == 1);
    CHECK(model.eos_ids == std::vector<int>{2});

    const TokenizerSpec spec = gguf_tokenizer_spec(gguf);
    CHECK(spec.model == TokenizerModel::byte_level_bpe);
    CHECK(spec.pre == "smollm");
    CHECK(spec.tokens.size() == 49152);
    CHECK(spec.merges.size() == 48900);
    CHECK(spec.bos_id == 1);
    CHECK(spec.eos_ids == std::vector<int>{2});
    CHECK(spec.chat_template.find("<|im_start|>") != std::string::npos);

    test::TemporaryDirectory directory;
    const auto expected_file = directory / "expected.f32";
    const std::vector<std::string> names = {"token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight",
                                            "output_norm.weight"};
    test::run_reference_script("gguf_dequantize.py", {path.string(), expected_file.string(), names[0], names[1],
                                                      names[2], names[3]});
    std::ifstream expected(expected_file, std::ios::binary);
    for (const std::string& name : names) {
      CAPTURE(name);
      const StoredTensor& tensor = gguf.tensor(name);
      std::vector<float> ours(static_cast<std::size_t>(tensor.elements())), theirs(ours.size());
      dequantize_tensor<float>(tensor, ours);
      expected.read(reinterpret_cast<char*>(theirs.data()), static_cast<std::streamsize>(theirs.size() * 4));
      REQUIRE(expected);
      std::size_t differing = 0;
      for (std::size_t i = 0; i < ours.size(); ++i)
        differing += std::bit_cast<std::uint32_t>(ours[i]) != std::bit_cast<std::uint32_t>(theirs[i]);
      MESSAGE(name << " (" << type_name(tensor.type) << "): " << ours.size() << " values, " << differing << " differ");
      CHECK(differing == 0);
    }
  }
}
