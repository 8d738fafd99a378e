// GPT-2's byte-to-character spelling, used by every byte-level BPE
// vocabulary: the 188 printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
// themselves and the other 68 bytes are spelled U+0100, U+0101, ... in byte
// order, so that every token is printable text and a space reads 'Ġ' (U+0120).
// Encoding spells each input byte; decoding maps each character back.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "elastic/io/utf8.hpp"

namespace elastic::io {

class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet() {
    char32_t next_unprintable = 0x100;
    for (unsigned byte = 0; byte < 256; ++byte) {
      const char32_t code_point = stands_for_itself(byte) ? static_cast<char32_t>(byte) : next_unprintable++;
      std::string spelled;
      utf8::append(spelled, code_point);
      spelling_[byte] = spelled;
      byte_of_[code_point] = static_cast<std::uint8_t>(byte);
    }
  }

  static const ByteLevelAlphabet& instance() {
    static const ByteLevelAlphabet alphabet;
    return alphabet;
  }

  std::string_view spell(std::uint8_t byte) const { return spelling_[byte]; }

  std::string spell(std::string_view bytes) const {
    std::string out;
    for (char c : bytes) out += spell(static_cast<std::uint8_t>(c));
    return out;
  }

  std::optional<std::uint8_t> byte_of(char32_t code_point) const {
    const auto found = byte_of_.find(code_point);
    if (found == byte_of_.end()) return std::nullopt;
    return found->second;
  }

  // Appends the bytes a token's spelling stands for; characters outside the
  // alphabet (added tokens spelled literally) are copied as they are.
  void unspell(std::string_view spelled, std::string& out) const {
    for (std::size_t pos = 0; pos < spelled.size();) {
      const std::size_t length = utf8::character_length(spelled, pos);
      const auto byte = byte_of(utf8::decode_at(spelled, pos, length));
      if (byte && (length > 1 || spelled[pos] >= 0)) {
        out += static_cast<char>(*byte);
      } else {
        out.append(spelled.substr(pos, length));
      }
      pos += length;
    }
  }

 private:
  static bool stands_for_itself(unsigned byte) {
    return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
  }

  std::array<std::string, 256> spelling_;
  std::unordered_map<char32_t, std::uint8_t> byte_of_;
};

}  // namespace elastic::io
