// The host executor's vector kernel for row dot products on block-quantised
// weights, compiled once per instruction set by Highway (see
// kernels.hpp, which includes this file through hwy/foreach_target.h
// and dispatches at run time): for one weight row (or the gate and up rows
// of a fused SwiGLU) and up to 16 tokens whose activations arrive quantised
// to int8 per 32-element block (quant_row_dots_call.hpp), float32 sums of
// w . x_t.
//
// Each weight block is unpacked in registers to int16 lanes, in two halves
// of 16 elements (the low and high nibbles of a Q4 block's 16 bytes, with a
// Q5 block's fifth bits, or the two halves of a Q8_0 block), then multiplied
// by the activation block's int16 lanes with widening pairwise multiply-adds
// into int32 (AVX2 / AVX-512's vpmaddwd). The integer sum of a block is
// converted once to float and added into a float32 accumulator times the
// product of the two blocks' scales; a format with a per-block minimum
// (Q4_1, Q5_1, Q4_K, Q5_K) adds the minimum times the activation block's
// scaled sum, a scalar per block. The K-quants' integer sub-block scales (6
// bits in Q4_K / Q5_K, 8 in Q6_K) multiply the unpacked weights in int16
// (|q * sc| <= 4096), so each 16-element half still takes one multiply-add
// per token. Halves are 16 lanes (256 bits) on
// AVX2 and AVX-512 alike: Zen 4 runs 512-bit integer operations as two
// 256-bit halves, so wider vectors would only add shuffles to split a block.
//
// Tokens run in groups of up to four against the same unpacked block, as in
// row_dots-inl.hpp. The per-target toggle below lets foreach_target.h
// include this file once for every instruction set.
#if defined(ELASTIC_HOST_SIMD_QUANT_ROW_DOTS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef ELASTIC_HOST_SIMD_QUANT_ROW_DOTS_INL_H_
#undef ELASTIC_HOST_SIMD_QUANT_ROW_DOTS_INL_H_
#else
#define ELASTIC_HOST_SIMD_QUANT_ROW_DOTS_INL_H_
#endif

#include <hwy/highway.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "elastic/core/dtype.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/host/simd/quant_row_dots_call.hpp"

HWY_BEFORE_NAMESPACE();
namespace elastic::host::simd {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

// int16 lanes of (up to) one 16-element half block, the int32 lanes their
// pairwise products sum into, and float32 lanes of the same count.
#if HWY_TARGET == HWY_SCALAR
using HalfTag = hn::Sisd<std::int16_t>;
using SumTag = hn::Sisd<std::int32_t>;
#else
using HalfTag = hn::CappedTag<std::int16_t, 16>;
using SumTag = hn::RepartitionToWide<HalfTag>;
#endif
using ScaleTag = hn::Rebind<float, SumTag>;
using HalfVector = hn::Vec<HalfTag>;
using SumVector = hn::Vec<SumTag>;
using ScaleVector = hn::Vec<ScaleTag>;
using ByteTag = hn::Rebind<std::uint8_t, HalfTag>;
using SignedByteTag = hn::Rebind<std::int8_t, HalfTag>;

// A block's float16 scale, converted by the vector unit where it can
// (x86's F16C): a scalar conversion's branches cost as much as the rest of a
// Q4 block's work.
HWY_INLINE float half_scale(const std::byte* at) {
  const hn::CappedTag<hwy::float16_t, 1> half_tag;
  const hn::Rebind<float, decltype(half_tag)> float_tag;
  return hn::GetLane(hn::PromoteTo(float_tag, hn::LoadU(half_tag, reinterpret_cast<const hwy::float16_t*>(at))));
}

inline unsigned byte_value(const std::byte* at, int index) { return std::to_integer<unsigned>(at[index]); }

HWY_INLINE HalfVector splat(int value) { return hn::Set(HalfTag(), static_cast<std::int16_t>(value)); }

// Lanes of bytes at `bytes`, zero-extended to int16.
HWY_INLINE HalfVector load_bytes(const std::byte* bytes) {
  return hn::PromoteTo(HalfTag(), hn::LoadU(ByteTag(), reinterpret_cast<const std::uint8_t*>(bytes)));
}

// The float factors of one 32-element weight block: its integer dot product
// with an activation block counts `scale` times, the activation block's
// scaled sum `min` times.
struct BlockScales {
  float scale;
  float min;
};

// Each format: blocks of 32 elements grouped in units (the K-quants'
// 256-element super-blocks) of `unit_bytes`. A Unit, made once per unit of
// a weight row, holds what its blocks share (the K-quants' decoded scales);
// unit.scales(b) gives block b's float factors, and unit.unpack(b, c, low,
// high) the int16 lanes of its elements [c, c + lanes) and [16 + c, 16 + c +
// lanes), sub-block scales applied.

// 16 in each lane whose bit is set in the low 16 bits of `bits` (lane i:
// bit i): a Q5 block's fifth bits.
HWY_INLINE HalfVector fifth_bits(std::uint32_t bits) {
  alignas(32) static constexpr std::int16_t lane_bits[16] = {
      0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800, 0x1000, 0x2000, 0x4000,
      static_cast<std::int16_t>(0x8000)};
  const HalfVector word = hn::Set(HalfTag(), static_cast<std::int16_t>(bits & 0xFFFFu));
  return hn::IfThenElseZero(hn::TestBit(word, hn::LoadU(HalfTag(), lane_bits)), splat(16));
}

// The legacy 32-element blocks of nibbles: d (Q4_1, Q5_1: and m), (Q5: a
// 32-bit mask of fifth bits, bit i for element i), 16 bytes of nibbles (low:
// elements 0-15, high: 16-31). Q4_0 and Q5_0 centre their values,
// w = d * (q - 8) or d * (q - 16); Q4_1 and Q5_1 add the min, w = d * q + m.
template <int UnitBytes, bool HasMin, bool FifthBit>
struct NibbleBlock {
  static constexpr int blocks_per_unit = 1;
  static constexpr int unit_bytes = UnitBytes;
  static constexpr bool has_min = HasMin;
  static constexpr int centre = HasMin ? 0 : FifthBit ? 16 : 8;
  static constexpr int scale_bytes = HasMin ? 4 : 2;
  static constexpr int nibbles_at = scale_bytes + (FifthBit ? 4 : 0);
  struct Unit {
    const std::byte* bytes;
    BlockScales scales(int) const { return {half_scale(bytes), HasMin ? half_scale(bytes + 2) : 0.0f}; }
    HWY_INLINE void unpack(int, std::size_t c, HalfVector& low, HalfVector& high) const {
      const HalfVector nibbles = load_bytes(bytes + nibbles_at + c);
      low = hn::And(nibbles, splat(0xF));
      high = hn::ShiftRight<4>(nibbles);
      if constexpr (FifthBit) {
        std::uint32_t mask;
        std::memcpy(&mask, bytes + scale_bytes, sizeof mask);
        low = hn::Or(low, fifth_bits(mask >> c));
        high = hn::Or(high, fifth_bits(mask >> (16 + c)));
      }
      if constexpr (centre != 0) {
        low = hn::Sub(low, splat(centre));
        high = hn::Sub(high, splat(centre));
      }
    }
  };
};

using Q4_0 = NibbleBlock<18, false, false>;
using Q4_1 = NibbleBlock<20, true, false>;
using Q5_0 = NibbleBlock<22, false, true>;
using Q5_1 = NibbleBlock<24, true, true>;

// Q8_0: d, 32 signed bytes; w = d * q.
struct Q8_0 {
  static constexpr int blocks_per_unit = 1;
  static constexpr int unit_bytes = 34;
  static constexpr bool has_min = false;
  struct Unit {
    const std::byte* bytes;
    BlockScales scales(int) const { return {half_scale(bytes), 0.0f}; }
    HWY_INLINE void unpack(int, std::size_t c, HalfVector& low, HalfVector& high) const {
      const auto* values = reinterpret_cast<const std::int8_t*>(bytes + 2);
      low = hn::PromoteTo(HalfTag(), hn::LoadU(SignedByteTag(), values + c));
      high = hn::PromoteTo(HalfTag(), hn::LoadU(SignedByteTag(), values + 16 + c));
    }
  };
};

// Q4_K and Q5_K: d, dmin, 12 bytes of 6-bit sub-block scales and mins,
// (Q5_K: 32 bytes of fifth bits, bit b of byte i for element i of sub-block
// b), 128 bytes of nibbles (sub-blocks 2i and 2i + 1 in the low and high
// nibbles of bytes 32i .. 32i + 31); w = d * sc * q - dmin * m per
// 32-element sub-block.
template <bool FifthBit>
struct KNibbleBlock {
  static constexpr int blocks_per_unit = 8;
  static constexpr int unit_bytes = FifthBit ? 176 : 144;
  static constexpr bool has_min = true;
  static constexpr int nibbles_at = FifthBit ? 48 : 16;
  struct Unit {
    // Decodes the eight scales and mins at once, four to a 32-bit word
    // (io/quant_blocks.hpp's k_quant_scale_min spells out one at a time):
    // sub-blocks 0-3 in the low six bits of bytes 0-3 (scales) and 4-7
    // (mins), sub-blocks 4-7 in the nibbles of bytes 8-11 with their top two
    // bits in the top bits of bytes 0-7.
    explicit Unit(const std::byte* bytes_) : bytes(bytes_), d(half_scale(bytes_)), dmin(half_scale(bytes_ + 2)) {
      std::uint32_t packed[3];
      std::memcpy(packed, bytes + 4, sizeof packed);
      words[0] = packed[0] & 0x3F3F3F3Fu;
      words[1] = (packed[2] & 0x0F0F0F0Fu) | ((packed[0] >> 6) & 0x03030303u) << 4;
      words[2] = packed[1] & 0x3F3F3F3Fu;
      words[3] = ((packed[2] >> 4) & 0x0F0F0F0Fu) | ((packed[1] >> 6) & 0x03030303u) << 4;
    }
    int sub_scale(int b) const { return static_cast<int>((words[b / 4] >> (8 * (b % 4))) & 0xFFu); }
    int sub_min(int b) const { return static_cast<int>((words[2 + b / 4] >> (8 * (b % 4))) & 0xFFu); }
    BlockScales scales(int b) const { return {d, -dmin * static_cast<float>(sub_min(b))}; }
    HWY_INLINE void unpack(int b, std::size_t c, HalfVector& low, HalfVector& high) const {
      const std::byte* nibbles = bytes + nibbles_at + b / 2 * 32 + c;
      const auto value = [&](int h) {
        const HalfVector v = load_bytes(nibbles + 16 * h);
        HalfVector q = b % 2 == 0 ? hn::And(v, splat(0xF)) : hn::ShiftRight<4>(v);
        if constexpr (FifthBit) {
          const HalfVector high_bits = load_bytes(bytes + 16 + 16 * h + c);
          q = hn::Or(q, hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(high_bits, b), splat(1))));
        }
        return hn::Mul(q, splat(sub_scale(b)));
      };
      low = value(0);
      high = value(1);
    }

    const std::byte* bytes;
    float d;
    float dmin;
    std::uint32_t words[4];  // bytes: scales 0-3, scales 4-7, mins 0-3, mins 4-7
  };
};

using Q4_K = KNibbleBlock<false>;
using Q5_K = KNibbleBlock<true>;

// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 signed
// 8-bit scales (one per 16 elements), d; w = d * sc * (q - 32). Element e's
// low nibble is in byte e / 128 * 64 + e % 64 at shift 4 * (e / 64 % 2),
// its high pair in byte e / 128 * 32 + e % 32 at shift 2 * (e / 32 % 4).
struct Q6_K {
  static constexpr int blocks_per_unit = 8;
  static constexpr int unit_bytes = 210;
  static constexpr bool has_min = false;
  struct Unit {
    explicit Unit(const std::byte* bytes_) : bytes(bytes_), d(half_scale(bytes_ + 208)) {}
    BlockScales scales(int) const { return {d, 0.0f}; }
    HWY_INLINE void unpack(int b, std::size_t c, HalfVector& low, HalfVector& high) const {
      const std::byte* low_nibbles = bytes + b / 4 * 64 + b % 2 * 32 + c;
      const std::byte* high_pairs = bytes + 128 + b / 4 * 32 + c;
      const int low_shift = 4 * (b / 2 % 2);
      const int high_shift = 2 * (b % 4);
      const auto half = [&](int h) {
        const HalfVector nibbles =
            hn::And(hn::ShiftRightSame(load_bytes(low_nibbles + 16 * h), low_shift), splat(0xF));
        const HalfVector pairs = hn::And(hn::ShiftRightSame(load_bytes(high_pairs + 16 * h), high_shift), splat(3));
        const HalfVector q = hn::Sub(hn::Or(nibbles, hn::ShiftLeft<4>(pairs)), splat(32));
        return hn::Mul(q, splat(static_cast<std::int8_t>(byte_value(bytes + 192, 2 * b + h))));
      };
      low = half(0);
      high = half(1);
    }

    const std::byte* bytes;
    float d;
  };
};

// Unit `offset` bytes into each of the call's weight rows.
template <class Format, int NumRows>
HWY_INLINE std::array<typename Format::Unit, NumRows> units_at(const QuantRowDotsCall& call, std::size_t offset) {
  using Unit = typename Format::Unit;
  if constexpr (NumRows == 1) return {Unit{call.weight_rows[0] + offset}};
  else return {Unit{call.weight_rows[0] + offset}, Unit{call.weight_rows[1] + offset}};
}

// partials[r][first + j] += w_r . x_j for tokens first .. first + Tokens.
template <class Format, int NumRows, int Tokens>
HWY_INLINE void token_group_dots(const QuantRowDotsCall& call, int first) {
  const HalfTag half_tag;
  const SumTag sum_tag;
  const ScaleTag scale_tag;
  const std::size_t lanes = hn::Lanes(half_tag);
  const QuantizedActivations& x = call.activations;
  const std::int16_t* values[Tokens];
  const float* scales[Tokens];
  const float* scaled_sums[Tokens];
  for (int j = 0; j < Tokens; ++j) {
    const std::size_t token = static_cast<std::size_t>(first + j);
    values[j] = x.values + token * static_cast<std::size_t>(x.blocks) * activation_block;
    scales[j] = x.scales + token * static_cast<std::size_t>(x.blocks);
    scaled_sums[j] = x.scaled_sums + token * static_cast<std::size_t>(x.blocks);
  }

  ScaleVector sums[NumRows][Tokens];
  float min_terms[NumRows][Tokens] = {};
  for (int r = 0; r < NumRows; ++r)
    for (int j = 0; j < Tokens; ++j) sums[r][j] = hn::Zero(scale_tag);
  const int units = x.blocks / Format::blocks_per_unit;
  for (int u = 0; u < units; ++u) {
    const auto unit = units_at<Format, NumRows>(call, static_cast<std::size_t>(u) * Format::unit_bytes);
    // Unrolled, a K-quant's sub-block b is a constant: its scale's byte and
    // its nibbles' shift resolve at compile time (Q4_K 2.2 -> 1.5 ns a block).
    ELASTIC_UNROLL
    for (int b = 0; b < Format::blocks_per_unit; ++b) {
      const int block = u * Format::blocks_per_unit + b;
      const std::size_t offset = static_cast<std::size_t>(block) * activation_block;
      SumVector dots[NumRows][Tokens];
      SumVector odd_dots[NumRows][Tokens];  // what targets without pairwise sums keep apart
      for (int r = 0; r < NumRows; ++r)
        for (int j = 0; j < Tokens; ++j) dots[r][j] = odd_dots[r][j] = hn::Zero(sum_tag);
      for (std::size_t c = 0; c < activation_block / 2; c += lanes) {
        HalfVector low[NumRows], high[NumRows];
        for (int r = 0; r < NumRows; ++r) unit[r].unpack(b, c, low[r], high[r]);
        for (int j = 0; j < Tokens; ++j) {
          const HalfVector x_low = hn::LoadU(half_tag, values[j] + offset + c);
          const HalfVector x_high = hn::LoadU(half_tag, values[j] + offset + activation_block / 2 + c);
          for (int r = 0; r < NumRows; ++r) {
            dots[r][j] = hn::ReorderWidenMulAccumulate(sum_tag, low[r], x_low, dots[r][j], odd_dots[r][j]);
            dots[r][j] = hn::ReorderWidenMulAccumulate(sum_tag, high[r], x_high, dots[r][j], odd_dots[r][j]);
          }
        }
      }
      for (int r = 0; r < NumRows; ++r) {
        const BlockScales weight = unit[r].scales(b);
        for (int j = 0; j < Tokens; ++j) {
          const ScaleVector dot = hn::ConvertTo(scale_tag, hn::RearrangeToOddPlusEven(dots[r][j], odd_dots[r][j]));
          sums[r][j] = hn::MulAdd(dot, hn::Set(scale_tag, weight.scale * scales[j][block]), sums[r][j]);
          if constexpr (Format::has_min) min_terms[r][j] += weight.min * scaled_sums[j][block];
        }
      }
    }
  }
  for (int r = 0; r < NumRows; ++r)
    for (int j = 0; j < Tokens; ++j)
      call.partials[r][first + j] += hn::GetLane(hn::SumOfLanes(scale_tag, sums[r][j])) + min_terms[r][j];
}

template <class Format, int NumRows>
HWY_INLINE void quant_row_dots_typed(const QuantRowDotsCall& call) {
  for (int first = 0; first < call.tokens; first += 4) {
    switch (std::min(4, call.tokens - first)) {
      case 1: token_group_dots<Format, NumRows, 1>(call, first); break;
      case 2: token_group_dots<Format, NumRows, 2>(call, first); break;
      case 3: token_group_dots<Format, NumRows, 3>(call, first); break;
      default: token_group_dots<Format, NumRows, 4>(call, first); break;
    }
  }
}

// The exported entry: picks the weight format and row count of the call.
inline void QuantRowDots(const QuantRowDotsCall& call) {
  const auto with_rows = [&]<class Format>() {
    if (call.num_rows == 1) quant_row_dots_typed<Format, 1>(call);
    else quant_row_dots_typed<Format, 2>(call);
  };
  switch (call.format) {
    case QuantFormat::q4_0: with_rows.template operator()<Q4_0>(); break;
    case QuantFormat::q4_1: with_rows.template operator()<Q4_1>(); break;
    case QuantFormat::q5_0: with_rows.template operator()<Q5_0>(); break;
    case QuantFormat::q5_1: with_rows.template operator()<Q5_1>(); break;
    case QuantFormat::q8_0: with_rows.template operator()<Q8_0>(); break;
    case QuantFormat::q4_k: with_rows.template operator()<Q4_K>(); break;
    case QuantFormat::q5_k: with_rows.template operator()<Q5_K>(); break;
    case QuantFormat::q6_k: with_rows.template operator()<Q6_K>(); break;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace elastic::host::simd
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
