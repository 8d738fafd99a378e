// UTF-8 helpers the tokenizers share: walking text one character at a time
// (invalid bytes count as one-byte characters, so no input can stall a
// loop), encoding code points, and finding where the last complete
// character ends, which lets a streaming decoder hold back half a character
// until its remaining bytes arrive.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace elastic::io::utf8 {

inline bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// The length a lead byte announces: 1..4, or 0 for a byte that cannot start a character.
inline std::size_t announced_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// The byte length of the character at `pos`: its full length when it is a
// complete, well-formed sequence, else 1 (the byte stands alone).
inline std::size_t character_length(std::string_view text, std::size_t pos) {
  const std::size_t length = announced_length(static_cast<unsigned char>(text[pos]));
  if (length <= 1 || pos + length > text.size()) return 1;
  for (std::size_t i = 1; i < length; ++i)
    if (!is_continuation(static_cast<unsigned char>(text[pos + i]))) return 1;
  return length;
}

inline void append(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

// Decodes the character at `pos` (which must be well formed, see character_length).
inline char32_t decode_at(std::string_view text, std::size_t pos, std::size_t length) {
  const auto byte = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(text[pos + i])); };
  switch (length) {
    case 2: return ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
    case 3: return ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
    case 4: return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
    default: return byte(0);
  }
}

// The length of the longest prefix of `bytes` that does not end inside a
// character that more bytes could still complete. Bytes that can never
// become part of a valid character are not held back.
inline std::size_t complete_prefix_length(std::string_view bytes) {
  const std::size_t size = bytes.size();
  for (std::size_t back = 1; back <= 3 && back <= size; ++back) {
    const auto byte = static_cast<unsigned char>(bytes[size - back]);
    if (is_continuation(byte)) continue;
    const std::size_t length = announced_length(byte);
    return length > back ? size - back : size;
  }
  return size;
}

}  // namespace elastic::io::utf8
