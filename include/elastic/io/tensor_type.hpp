// The element types a model file can store, safetensors' and GGUF's alike:
// plain numbers (F64 ... BOOL, the two FP8 kinds) and ggml's block-quantised
// types (the legacy Q4_0 ... Q8_0 and the K-quants Q2_K ... Q6_K). A tensor
// of a quantised type is a sequence of blocks along its innermost dimension,
// each block `block_elements` values in `block_bytes` bytes; a plain type is
// a block of one. Sizes are computed with overflow checks, since they come
// from files.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace elastic::io {

enum class TensorType : std::uint8_t {
  f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean, f8_e4m3, f8_e5m2,
  q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k,
};

struct TensorTypeInfo {
  TensorType type;
  std::string_view name;  // as GGUF tools print it ("Q4_K") or safetensors spells it ("BF16")
  std::int64_t block_elements;
  std::int64_t block_bytes;
  bool quantized;
};

inline constexpr TensorTypeInfo tensor_type_table[] = {
    {TensorType::f64, "F64", 1, 8, false},         {TensorType::f32, "F32", 1, 4, false},
    {TensorType::f16, "F16", 1, 2, false},         {TensorType::bf16, "BF16", 1, 2, false},
    {TensorType::i64, "I64", 1, 8, false},         {TensorType::i32, "I32", 1, 4, false},
    {TensorType::i16, "I16", 1, 2, false},         {TensorType::i8, "I8", 1, 1, false},
    {TensorType::u8, "U8", 1, 1, false},           {TensorType::boolean, "BOOL", 1, 1, false},
    {TensorType::f8_e4m3, "F8_E4M3", 1, 1, false}, {TensorType::f8_e5m2, "F8_E5M2", 1, 1, false},
    {TensorType::q4_0, "Q4_0", 32, 18, true},      {TensorType::q4_1, "Q4_1", 32, 20, true},
    {TensorType::q5_0, "Q5_0", 32, 22, true},      {TensorType::q5_1, "Q5_1", 32, 24, true},
    {TensorType::q8_0, "Q8_0", 32, 34, true},      {TensorType::q2_k, "Q2_K", 256, 84, true},
    {TensorType::q3_k, "Q3_K", 256, 110, true},    {TensorType::q4_k, "Q4_K", 256, 144, true},
    {TensorType::q5_k, "Q5_K", 256, 176, true},    {TensorType::q6_k, "Q6_K", 256, 210, true},
};

constexpr const TensorTypeInfo& info(TensorType type) { return tensor_type_table[static_cast<int>(type)]; }
constexpr std::string_view type_name(TensorType type) { return info(type).name; }

// The type spelled `name` (case-sensitive, as the tables above), if any.
constexpr std::optional<TensorType> tensor_type_named(std::string_view name) {
  for (const TensorTypeInfo& entry : tensor_type_table)
    if (entry.name == name) return entry.type;
  return std::nullopt;
}

// Bytes of a tensor of `type` with these dimensions (any order), or nullopt
// when a dimension is negative, the innermost one (`innermost`) is not a
// whole number of blocks, or the size overflows 64 bits.
inline std::optional<std::uint64_t> tensor_bytes(TensorType type, std::span<const std::int64_t> dims,
                                                 std::int64_t innermost) {
  const TensorTypeInfo& t = info(type);
  if (innermost < 0 || innermost % t.block_elements != 0) return std::nullopt;
  std::uint64_t elements = 1;
  for (std::int64_t dim : dims) {
    if (dim < 0) return std::nullopt;
    if (dim != 0 && elements > UINT64_MAX / static_cast<std::uint64_t>(dim)) return std::nullopt;
    elements *= static_cast<std::uint64_t>(dim);
  }
  const std::uint64_t blocks = elements / static_cast<std::uint64_t>(t.block_elements);
  if (blocks > UINT64_MAX / static_cast<std::uint64_t>(t.block_bytes)) return std::nullopt;
  return blocks * static_cast<std::uint64_t>(t.block_bytes);
}

}  // namespace elastic::io
