// libFuzzer harness for the tokenizers and the tokenizer.json reader. Each
// input is encoded, as arbitrary bytes (invalid UTF-8 included), by a small
// byte-level BPE tokenizer and a small SentencePiece one, with and without
// added-token matching; then:
//   - byte-level BPE is lossless: decode(encode(x)) == x for every x;
//   - SentencePiece round-trips valid UTF-8 text (its byte fallback covers
//     every character) up to the space prefix it adds and removes;
//   - streaming decode, fed one id at a time, concatenates to decode();
//   - parse_tokenizer_json on the bytes returns or throws elastic::Error,
//     and a spec it returns builds a tokenizer or throws elastic::Error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "elastic/io/tokenizer.hpp"
#include "elastic/io/tokenizer_json.hpp"
#include "io/tokenizer_fixtures.hpp"

namespace {

using elastic::io::Tokenizer;

void check(bool condition) {
  if (!condition) std::abort();
}

bool is_valid_utf8(std::string_view text) {
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t length = elastic::io::utf8::character_length(text, pos);
    if (length == 1 && static_cast<unsigned char>(text[pos]) >= 0x80) return false;
    // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
    const char32_t code_point = elastic::io::utf8::decode_at(text, pos, length);
    if ((length == 3 && (code_point < 0x800 || (code_point >= 0xD800 && code_point <= 0xDFFF))) ||
        (length == 4 && (code_point < 0x10000 || code_point > 0x10FFFF)))
      return false;
    pos += length;
  }
  return true;
}

std::string streamed(const Tokenizer& tokenizer, const std::vector<int>& ids) {
  elastic::io::StreamingDecoder decoder = tokenizer.streaming_decoder();
  std::string text;
  for (int id : ids) text += decoder.feed(id);
  return text + decoder.flush();
}

void check_tokenizer(const Tokenizer& tokenizer, std::string_view text, bool lossless) {
  for (const bool parse_special : {false, true}) {
    const std::vector<int> ids = tokenizer.encode(text, false, parse_special);
    for (int id : ids) check(id >= 0 && id < tokenizer.vocab_size());
    const std::string decoded = tokenizer.decode(ids);
    if (lossless) check(decoded == text);
    check(streamed(tokenizer, ids) == decoded);
  }
}

void check_tokenizer_json(std::string_view bytes) {
  try {
    const elastic::io::TokenizerSpec spec = elastic::io::parse_tokenizer_json(bytes, "fuzz/tokenizer.json");
    const Tokenizer tokenizer = Tokenizer::from_spec(spec);
    (void)tokenizer.encode("Hello 123 <|x|>");
  } catch (const elastic::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Tokenizer byte_level = Tokenizer::from_spec(elastic::test::small_byte_level_spec());
  static const Tokenizer sentencepiece = Tokenizer::from_spec(elastic::test::small_sentencepiece_spec());
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_tokenizer(byte_level, text, true);
  // The SentencePiece round trip holds for valid UTF-8 without the pieces it
  // treats specially ("▁" reads back as a space, added tokens as themselves).
  const bool sentencepiece_lossless = is_valid_utf8(text) && text.find("\xE2\x96\x81") == std::string_view::npos &&
                                      text.find('<') == std::string_view::npos && !text.starts_with(' ');
  check_tokenizer(sentencepiece, text, sentencepiece_lossless);
  check_tokenizer_json(text);
  return 0;
}
