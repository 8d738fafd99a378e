// The bit layouts of ggml's block-quantised types, one decoder per type that
// turns one block (32 values for Q4_0 ... Q8_0, 256 for the K-quants) into
// float32. The layouts follow ggml's published format; every field is read
// byte by byte or through memcpy, so a block may sit at any address.
//
// All packed integer fields share one shape: a plane of `Group` bytes holds
// 8 / Bits fields per byte, element e taking bits from byte
// (e / (Group * 8 / Bits)) * Group + e % Group at shift Bits * ((e / Group) %
// (8 / Bits)). packed_field() reads that shape for every plane of every type
// (nibbles, 2-bit pairs, high-bit masks, Q3_K's split scales).
//
// The float arithmetic is written in the order ggml's reference dequantiser
// uses (the sub-block scale d * sc first, then times q, then minus
// dmin * m), one rounding per operation, so results are bit-exact with it.
// Every product and sum is its own statement, so no compiler contracts them
// into a fused multiply-add under the ISO language modes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "elastic/core/dtype.hpp"
#include "elastic/io/tensor_type.hpp"

namespace elastic::io::quant {

inline constexpr int k_block_elements = 256;  // elements of a K-quant super-block

inline unsigned byte_at(const std::byte* bytes, int index) { return std::to_integer<unsigned>(bytes[index]); }

inline float half_at(const std::byte* bytes) {
  std::uint16_t bits;
  std::memcpy(&bits, bytes, sizeof bits);
  return elastic::detail::half_bits_to_float(bits);
}

// Field `element` of a plane of Group bytes holding Bits-wide fields (see above).
template <int Bits, int Group>
unsigned packed_field(const std::byte* plane, int element) {
  constexpr int fields_per_byte = 8 / Bits;
  const int byte = element / (Group * fields_per_byte) * Group + element % Group;
  const int shift = Bits * (element / Group % fields_per_byte);
  return (byte_at(plane, byte) >> shift) & ((1u << Bits) - 1u);
}

inline float scaled_minus(float scale, float q, float offset) {
  const float product = scale * q;
  return product - offset;
}

inline float scaled_plus(float scale, float q, float offset) {
  const float product = scale * q;
  return product + offset;
}

// ---- The legacy 32-element blocks: an f16 scale d (and min m), then the values.

// Q4_0: d, 16 bytes of nibbles; x = d * (q - 8).
inline void decode_q4_0(const std::byte* block, float* out) {
  const float d = half_at(block);
  for (int i = 0; i < 32; ++i) out[i] = d * static_cast<float>(static_cast<int>(packed_field<4, 16>(block + 2, i)) - 8);
}

// Q4_1: d, m, 16 bytes of nibbles; x = d * q + m.
inline void decode_q4_1(const std::byte* block, float* out) {
  const float d = half_at(block);
  const float m = half_at(block + 2);
  for (int i = 0; i < 32; ++i) out[i] = scaled_plus(d, static_cast<float>(packed_field<4, 16>(block + 4, i)), m);
}

// The 5-bit value of a Q5 block: a nibble plus bit `i` of a 32-bit mask.
inline unsigned five_bit_value(const std::byte* high_bits, const std::byte* nibbles, int i) {
  return packed_field<4, 16>(nibbles, i) | packed_field<1, 1>(high_bits, i) << 4;
}

// Q5_0: d, 4 bytes of fifth bits, 16 bytes of nibbles; x = d * (q - 16).
inline void decode_q5_0(const std::byte* block, float* out) {
  const float d = half_at(block);
  for (int i = 0; i < 32; ++i)
    out[i] = d * static_cast<float>(static_cast<int>(five_bit_value(block + 2, block + 6, i)) - 16);
}

// Q5_1: d, m, 4 bytes of fifth bits, 16 bytes of nibbles; x = d * q + m.
inline void decode_q5_1(const std::byte* block, float* out) {
  const float d = half_at(block);
  const float m = half_at(block + 2);
  for (int i = 0; i < 32; ++i) out[i] = scaled_plus(d, static_cast<float>(five_bit_value(block + 4, block + 8, i)), m);
}

// Q8_0: d, 32 signed bytes; x = d * q.
inline void decode_q8_0(const std::byte* block, float* out) {
  const float d = half_at(block);
  for (int i = 0; i < 32; ++i) out[i] = d * static_cast<float>(static_cast<std::int8_t>(byte_at(block + 2, i)));
}

// ---- The K-quants: 256-element super-blocks of 16- or 32-element sub-blocks.

// Q2_K: 16 bytes of (scale nibble | min nibble << 4) per 16 elements, 64
// bytes of 2-bit values, d, dmin; x = (d * sc) * q - dmin * m.
inline void decode_q2_k(const std::byte* block, float* out) {
  const std::byte* scales = block;
  const std::byte* values = block + 16;
  const float d = half_at(block + 80);
  const float dmin = half_at(block + 82);
  for (int sub = 0; sub < 16; ++sub) {
    const float scale = d * static_cast<float>(byte_at(scales, sub) & 0xFu);
    const float offset = dmin * static_cast<float>(byte_at(scales, sub) >> 4);
    for (int e = sub * 16; e < sub * 16 + 16; ++e)
      out[e] = scaled_minus(scale, static_cast<float>(packed_field<2, 32>(values, e)), offset);
  }
}

// Q3_K: 32 bytes of high-bit masks (a set bit means no -4 offset), 64 bytes
// of 2-bit values, 12 bytes of 6-bit signed scales (low nibbles in bytes
// 0-7, high pairs in bytes 8-11), d; x = (d * (sc - 32)) * q.
inline void decode_q3_k(const std::byte* block, float* out) {
  const std::byte* high_mask = block;
  const std::byte* values = block + 32;
  const std::byte* scales = block + 96;
  const float d = half_at(block + 108);
  for (int sub = 0; sub < 16; ++sub) {
    const unsigned packed = packed_field<4, 8>(scales, sub) | packed_field<2, 4>(scales + 8, sub) << 4;
    const float scale = d * static_cast<float>(static_cast<int>(packed) - 32);
    for (int e = sub * 16; e < sub * 16 + 16; ++e) {
      const int q = static_cast<int>(packed_field<2, 32>(values, e)) - (packed_field<1, 32>(high_mask, e) != 0u ? 0 : 4);
      out[e] = scale * static_cast<float>(q);
    }
  }
}

// The 6-bit scale and min of sub-block j (0..7) of Q4_K and Q5_K, packed in
// 12 bytes: j < 4 in the low six bits of bytes j and j + 4; j >= 4 in the
// nibbles of byte j + 4 with their top two bits in bytes j - 4 and j.
struct ScaleMin {
  unsigned scale;
  unsigned min;
};

inline ScaleMin k_quant_scale_min(const std::byte* packed, int j) {
  if (j < 4) return {byte_at(packed, j) & 0x3Fu, byte_at(packed, j + 4) & 0x3Fu};
  const unsigned low_bits = byte_at(packed, j + 4);
  return {(low_bits & 0xFu) | (byte_at(packed, j - 4) >> 6) << 4, (low_bits >> 4) | (byte_at(packed, j) >> 6) << 4};
}

// Q4_K and Q5_K: d, dmin, 12 bytes of scales and mins, (Q5_K: 32 bytes of
// fifth bits), 128 bytes of nibbles; x = (d * sc) * q - dmin * m per
// 32-element sub-block.
template <bool FifthBit>
void decode_q4_k_or_q5_k(const std::byte* block, float* out) {
  const float d = half_at(block);
  const float dmin = half_at(block + 2);
  const std::byte* scales = block + 4;
  const std::byte* high_bits = block + 16;
  const std::byte* nibbles = FifthBit ? block + 48 : block + 16;
  for (int sub = 0; sub < 8; ++sub) {
    const ScaleMin packed = k_quant_scale_min(scales, sub);
    const float scale = d * static_cast<float>(packed.scale);
    const float offset = dmin * static_cast<float>(packed.min);
    for (int e = sub * 32; e < sub * 32 + 32; ++e) {
      unsigned q = packed_field<4, 32>(nibbles, e);
      if constexpr (FifthBit) q |= packed_field<1, 32>(high_bits, e) << 4;
      out[e] = scaled_minus(scale, static_cast<float>(q), offset);
    }
  }
}

inline void decode_q4_k(const std::byte* block, float* out) { decode_q4_k_or_q5_k<false>(block, out); }
inline void decode_q5_k(const std::byte* block, float* out) { decode_q4_k_or_q5_k<true>(block, out); }

// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 signed
// scales, d; x = (d * sc) * (q - 32) per 16-element sub-block.
inline void decode_q6_k(const std::byte* block, float* out) {
  const std::byte* low = block;
  const std::byte* high = block + 128;
  const std::byte* scales = block + 192;
  const float d = half_at(block + 208);
  for (int sub = 0; sub < 16; ++sub) {
    const float scale = d * static_cast<float>(static_cast<std::int8_t>(byte_at(scales, sub)));
    for (int e = sub * 16; e < sub * 16 + 16; ++e) {
      const unsigned q = packed_field<4, 64>(low, e) | packed_field<2, 32>(high, e) << 4;
      out[e] = scale * static_cast<float>(static_cast<int>(q) - 32);
    }
  }
}

// ---- Plain floating-point types, as blocks of one element.

inline void decode_f32(const std::byte* block, float* out) { std::memcpy(out, block, sizeof(float)); }
inline void decode_f16(const std::byte* block, float* out) { *out = half_at(block); }
inline void decode_bf16(const std::byte* block, float* out) {
  std::uint16_t bits;
  std::memcpy(&bits, block, sizeof bits);
  *out = elastic::detail::bfloat16_bits_to_float(bits);
}

using BlockDecoder = void (*)(const std::byte* block, float* out);

// The decoder of one block of `type`, or nullptr for types that are not
// dequantised (integers, booleans, FP8, F64).
constexpr BlockDecoder block_decoder(TensorType type) {
  switch (type) {
    case TensorType::f32: return decode_f32;
    case TensorType::f16: return decode_f16;
    case TensorType::bf16: return decode_bf16;
    case TensorType::q4_0: return decode_q4_0;
    case TensorType::q4_1: return decode_q4_1;
    case TensorType::q5_0: return decode_q5_0;
    case TensorType::q5_1: return decode_q5_1;
    case TensorType::q8_0: return decode_q8_0;
    case TensorType::q2_k: return decode_q2_k;
    case TensorType::q3_k: return decode_q3_k;
    case TensorType::q4_k: return decode_q4_k;
    case TensorType::q5_k: return decode_q5_k;
    case TensorType::q6_k: return decode_q6_k;
    default: return nullptr;
  }
}

}  // namespace elastic::io::quant
