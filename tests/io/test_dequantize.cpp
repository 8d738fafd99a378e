// Dequantisation of F32, F16, BF16 and ggml's block-quantised types: hand-made
// blocks with known values, the size and overlap checks, unaligned input,
// half/bfloat16 output as one rounding of the float result, and (suite
// "reference") random blocks of every type compared bit-exactly in float32
// with the PyPI gguf package's dequantiser.
#include <doctest/doctest.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "elastic/io/dequantize.hpp"
#include "elastic/io/gguf.hpp"
#include "elastic/io/gguf_writer.hpp"
#include "support/python.hpp"

using namespace elastic;
using namespace elastic::io;

namespace {

std::vector<std::byte> bytes_of(std::initializer_list<unsigned> values) {
  std::vector<std::byte> bytes;
  for (unsigned v : values) bytes.push_back(static_cast<std::byte>(v));
  return bytes;
}

void put_half(std::vector<std::byte>& bytes, std::size_t at, float value) {
  const std::uint16_t bits = from_float<half_t>(value).bits;
  std::memcpy(bytes.data() + at, &bits, sizeof bits);
}

// Byte offsets of the f16 scale fields (d, dmin, m) in one block of `type`.
std::vector<std::size_t> scale_fields(TensorType type) {
  switch (type) {
    case TensorType::q4_1: case TensorType::q5_1: case TensorType::q4_k: case TensorType::q5_k: return {0, 2};
    case TensorType::q2_k: return {80, 82};
    case TensorType::q3_k: return {108};
    case TensorType::q6_k: return {208};
    default: return {0};
  }
}

std::uint16_t random_finite_half(std::mt19937& rng) {
  const auto bits = static_cast<std::uint16_t>(rng());
  return (bits & 0x7C00u) == 0x7C00u ? static_cast<std::uint16_t>(bits & 0xBFFFu) : bits;
}

// `blocks` random blocks of `type` whose scales (and every F16/BF16/F32
// value) are finite, so a comparison can be bit-exact.
std::vector<std::byte> random_blocks(TensorType type, std::size_t blocks, std::mt19937& rng) {
  const TensorTypeInfo& t = info(type);
  std::vector<std::byte> bytes(blocks * static_cast<std::size_t>(t.block_bytes));
  for (std::byte& b : bytes) b = static_cast<std::byte>(rng());
  const auto patch = [&](std::size_t at, std::uint16_t bits) { std::memcpy(bytes.data() + at, &bits, 2); };
  for (std::size_t block = 0; block < blocks; ++block) {
    const std::size_t base = block * static_cast<std::size_t>(t.block_bytes);
    if (type == TensorType::f32) {
      const float value = std::uniform_real_distribution<float>(-4.0f, 4.0f)(rng);
      std::memcpy(bytes.data() + base, &value, sizeof value);
    } else if (type == TensorType::bf16) {
      patch(base, static_cast<std::uint16_t>(random_finite_half(rng) & 0xBFFFu));  // exponent below all-ones
    } else {
      for (std::size_t field : scale_fields(type)) patch(base + field, random_finite_half(rng));
    }
  }
  return bytes;
}

constexpr TensorType dequantized_types[] = {TensorType::f32,  TensorType::f16,  TensorType::bf16, TensorType::q4_0,
                                            TensorType::q4_1, TensorType::q5_0, TensorType::q5_1, TensorType::q8_0,
                                            TensorType::q2_k, TensorType::q3_k, TensorType::q4_k, TensorType::q5_k,
                                            TensorType::q6_k};

}  // namespace

TEST_CASE("Q8_0 and Q4_0 blocks decode to d times their values") {
  std::vector<std::byte> q8(34);
  put_half(q8, 0, 0.5f);
  for (int i = 0; i < 32; ++i) q8[2 + static_cast<std::size_t>(i)] = static_cast<std::byte>(static_cast<std::int8_t>(i - 16));
  std::vector<float> out(32);
  dequantize<float>(TensorType::q8_0, q8, out);
  for (int i = 0; i < 32; ++i) CHECK(out[static_cast<std::size_t>(i)] == 0.5f * static_cast<float>(i - 16));

  std::vector<std::byte> q4(18);
  put_half(q4, 0, 2.0f);
  q4[2] = static_cast<std::byte>(0xF1);  // element 0: 1 - 8, element 16: 15 - 8
  dequantize<float>(TensorType::q4_0, q4, out);
  CHECK(out[0] == -14.0f);
  CHECK(out[16] == 14.0f);
  CHECK(out[1] == -16.0f);
}

TEST_CASE("Q4_1 adds the block minimum after scaling") {
  std::vector<std::byte> block(20);
  put_half(block, 0, 0.25f);
  put_half(block, 2, -1.0f);
  block[4] = static_cast<std::byte>(0x3A);  // element 0: 10, element 16: 3
  std::vector<float> out(32);
  dequantize<float>(TensorType::q4_1, block, out);
  CHECK(out[0] == 1.5f);
  CHECK(out[16] == -0.25f);
  CHECK(out[1] == -1.0f);
}

TEST_CASE("F16 and BF16 widen exactly") {
  const auto f16 = bytes_of({0x00, 0x3C, 0x00, 0xC0});  // 1, -2
  std::vector<float> out(2);
  dequantize<float>(TensorType::f16, f16, out);
  CHECK(out == std::vector<float>{1.0f, -2.0f});
  const auto bf16 = bytes_of({0x80, 0x3F, 0x40, 0xC0});  // 1, -3
  dequantize<float>(TensorType::bf16, bf16, out);
  CHECK(out == std::vector<float>{1.0f, -3.0f});
}

TEST_CASE("wrong sizes, overlaps and unsupported types are errors naming the type and sizes") {
  std::vector<std::byte> block(34);
  std::vector<float> out(32);
  std::vector<float> too_many(64);
  CHECK_THROWS_WITH_AS(dequantize<float>(TensorType::q8_0, block, too_many),
                       doctest::Contains("64 Q8_0 elements take 68 bytes, but 34 bytes were given"), Error);
  std::vector<float> ragged(31);
  CHECK_THROWS_WITH_AS(dequantize<float>(TensorType::q8_0, block, ragged), doctest::Contains("Q8_0"), Error);
  CHECK_THROWS_WITH_AS(dequantize<float>(TensorType::i32, std::span<const std::byte>(block).first(4), std::span(out).first(1)),
                       doctest::Contains("cannot dequantize I32"), Error);
  std::vector<float> storage(32);
  const auto storage_bytes = std::as_bytes(std::span(storage));
  CHECK_THROWS_WITH_AS(dequantize<float>(TensorType::f32, storage_bytes.subspan(0, 4), std::span(storage).first(1)),
                       doctest::Contains("overlap"), Error);

  StoredTensor tensor{"blk.0.attn_q.weight", TensorType::q8_0, {2, 32}, block};
  CHECK_THROWS_WITH_AS(dequantize_tensor<float>(tensor, too_many),
                       doctest::Contains("tensor 'blk.0.attn_q.weight' (Q8_0 [2, 32]): expected 68 bytes of data, found 34"),
                       Error);
}

TEST_CASE("unaligned blocks decode like aligned ones, and narrow types round the float result once") {
  std::mt19937 rng(7);
  for (TensorType type : dequantized_types) {
    CAPTURE(type_name(type));
    const std::size_t elements = static_cast<std::size_t>(info(type).block_elements) * 3;
    const std::vector<std::byte> blocks = random_blocks(type, elements / static_cast<std::size_t>(info(type).block_elements), rng);
    std::vector<std::byte> shifted(blocks.size() + 1);
    std::memcpy(shifted.data() + 1, blocks.data(), blocks.size());
    std::vector<float> aligned(elements), unaligned(elements);
    dequantize<float>(type, blocks, aligned);
    dequantize<float>(type, std::span<const std::byte>(shifted).subspan(1), unaligned);
    CHECK(std::memcmp(aligned.data(), unaligned.data(), elements * sizeof(float)) == 0);
    std::vector<half_t> halves(elements);
    std::vector<bfloat16_t> bfloats(elements);
    dequantize<half_t>(type, blocks, halves);
    dequantize<bfloat16_t>(type, blocks, bfloats);
    for (std::size_t i = 0; i < elements; ++i) {
      CHECK(halves[i].bits == from_float<half_t>(aligned[i]).bits);
      CHECK(bfloats[i].bits == from_float<bfloat16_t>(aligned[i]).bits);
    }
  }
}

TEST_SUITE("reference") {
  TEST_CASE("every type dequantises bit-exactly like the PyPI gguf package") {
    test::TemporaryDirectory directory;
    std::mt19937 rng(2024);
    GgufWriter writer;
    std::vector<std::vector<std::byte>> data;
    for (TensorType type : dequantized_types) {
      const std::int64_t cols = info(type).block_elements * 4;
      const std::int64_t rows = 16;
      data.push_back(random_blocks(type, static_cast<std::size_t>(rows * 4), rng));
      writer.add_tensor(std::string(type_name(type)), type, {rows, cols}, data.back());
    }
    const auto file = directory / "random_blocks.gguf";
    const auto expected_file = directory / "expected.f32";
    writer.write(file);
    test::run_reference_script("gguf_dequantize.py", {file.string(), expected_file.string()});

    GgufFile gguf(file);
    std::ifstream expected_stream(expected_file, std::ios::binary);
    for (const StoredTensor& tensor : gguf.tensors()) {
      CAPTURE(tensor.name);
      std::vector<float> ours(static_cast<std::size_t>(tensor.elements()));
      std::vector<float> theirs(ours.size());
      dequantize_tensor<float>(tensor, ours);
      expected_stream.read(reinterpret_cast<char*>(theirs.data()), static_cast<std::streamsize>(theirs.size() * 4));
      REQUIRE(expected_stream);
      std::size_t differing = 0;
      for (std::size_t i = 0; i < ours.size(); ++i)
        differing += std::bit_cast<std::uint32_t>(ours[i]) != std::bit_cast<std::uint32_t>(theirs[i]);
      MESSAGE(tensor.name << ": " << ours.size() << " values, " << differing << " differ in any bit");
      CHECK(differing == 0);
    }
  }
}
