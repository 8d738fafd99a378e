// Tokenizer tests: byte-level BPE and SentencePiece on small vocabularies the
// tests build, added tokens, streaming decode, tokenizer.json reading and
// errors; in the "reference" suite, agreement with HF tokenizers on the
// default model's real vocabulary and with the sentencepiece package on a
// model it trains.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "elastic/io/tokenizer.hpp"
#include "elastic/io/tokenizer_json.hpp"
#include "io/tokenizer_fixtures.hpp"
#include "support/error_message.hpp"
#include "support/python.hpp"

#if __has_include("elastic/io/gguf_model.hpp")
#include "elastic/io/gguf.hpp"
#include "elastic/io/gguf_model.hpp"
#define ELASTIC_TEST_HAVE_GGUF_TOKENIZER 1
#endif

using elastic::io::StreamingDecoder;
using elastic::io::Tokenizer;
using elastic::io::TokenizerSpec;
using nlohmann::json;

namespace {

int id_of(const Tokenizer& tokenizer, std::string_view text) {
  const auto id = tokenizer.token_id(text);
  REQUIRE_MESSAGE(id.has_value(), "no token '" << std::string(text) << "'");
  return *id;
}

std::string streamed(const Tokenizer& tokenizer, const std::vector<int>& ids, bool skip_special = false) {
  StreamingDecoder decoder = tokenizer.streaming_decoder(skip_special);
  std::string text;
  for (int id : ids) {
    const std::string piece = decoder.feed(id);
    CHECK(elastic::io::utf8::complete_prefix_length(piece) == piece.size());
    text += piece;
  }
  return text + decoder.flush();
}

using elastic::test::error_of;

std::string slurp(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("byte-level BPE merges by rank inside pre-tokenizer pieces") {
  const Tokenizer tokenizer = Tokenizer::from_spec(elastic::test::small_byte_level_spec());
  CHECK(tokenizer.encode("hello world") == std::vector<int>{id_of(tokenizer, "hello"), id_of(tokenizer, "Ġworld")});
  CHECK(tokenizer.encode(" the") == std::vector<int>{id_of(tokenizer, "Ġthe")});
  // "123" is one GPT-2 piece; only "1 2" merges.
  CHECK(tokenizer.encode("123") == std::vector<int>{id_of(tokenizer, "12"), '3'});
  // Two spaces before a word: the first stays alone, the second joins the word.
  CHECK(tokenizer.encode("a  world") == std::vector<int>{'a', id_of(tokenizer, "Ġ"), id_of(tokenizer, "Ġworld")});
  CHECK(tokenizer.encode("😀") == std::vector<int>{id_of(tokenizer, tokenizer.token_text(tokenizer.vocab_size() - 4))});
  CHECK(tokenizer.decode(tokenizer.encode("hello world 😀")) == "hello world 😀");
}

TEST_CASE("every named pre-tokenizer compiles and splits as its family does") {
  const auto pieces = [](std::string_view name, std::string_view text) {
    std::vector<std::string> out;
    for (const elastic::io::TextSpan& span : elastic::io::Pretokenizer::named(name).split(text))
      out.emplace_back(text.substr(span.begin, span.size));
    return out;
  };
  using Pieces = std::vector<std::string>;
  CHECK(pieces("gpt2", "I'm 12345  ok") == Pieces{"I", "'m", " 12345", " ", " ok"});
  CHECK(pieces("smollm", "x 123") == Pieces{"x", " ", "1", "2", "3"});
  CHECK(pieces("llama-bpe", "I'M 12345\n\nok") == Pieces{"I", "'M", " ", "123", "45", "\n\n", "ok"});
  CHECK(pieces("qwen2", "ab 12") == Pieces{"ab", " ", "1", "2"});
  CHECK(pieces("default", "a+b 1234") == Pieces{"a", "+", "b", " ", "123", "4"});
}

TEST_CASE("byte-level BPE is lossless on any bytes, invalid UTF-8 included") {
  const Tokenizer tokenizer = Tokenizer::from_spec(elastic::test::small_byte_level_spec());
  const std::vector<std::string> texts = {"", "\xff\xfe", "a\x80" "b", "\xF0\x9F\x98", "\xE2\x82", "x\xC3(y",
                                          std::string("\0\x01 nul", 6), "  \t\n\r\n  ", "ñ\xed\xa0\x80z"};
  for (const std::string& text : texts) {
    const std::vector<int> ids = tokenizer.encode(text, false, false);
    CHECK(tokenizer.decode(ids) == text);
    CHECK(streamed(tokenizer, ids) == text);
  }
}

TEST_CASE("added tokens are matched whole, longest first, and never split") {
  const Tokenizer tokenizer = Tokenizer::from_spec(elastic::test::small_byte_level_spec());
  const int start = *tokenizer.bos_id();
  const int end = tokenizer.eos_ids()[0];
  const int think = id_of(tokenizer, "<think>");
  CHECK(tokenizer.encode("<|start|>hello<|end|>") == std::vector<int>{start, id_of(tokenizer, "hello"), end});
  CHECK(tokenizer.encode("a<think>b") == std::vector<int>{'a', think, 'b'});
  CHECK(tokenizer.encode("<|end|><|end|>") == std::vector<int>{end, end});
  const std::vector<int> incomplete = tokenizer.encode("<|end");
  CHECK(std::find(incomplete.begin(), incomplete.end(), end) == incomplete.end());
  CHECK(tokenizer.decode(incomplete) == "<|end");
  const std::vector<int> literal = tokenizer.encode("<|end|>", true, false);
  CHECK(std::find(literal.begin(), literal.end(), end) == literal.end());
  CHECK(tokenizer.decode(literal) == "<|end|>");
  CHECK(tokenizer.is_special(end));
  CHECK(tokenizer.is_eos(end));
  CHECK_FALSE(tokenizer.is_special(think));
  CHECK(tokenizer.decode(std::vector<int>{start, id_of(tokenizer, "hello"), think, end}, true) == "hello<think>");
}

TEST_CASE("bos and eos are added as the spec asks") {
  TokenizerSpec spec = elastic::test::small_byte_level_spec();
  spec.add_bos = true;
  spec.add_eos = true;
  const Tokenizer tokenizer = Tokenizer::from_spec(spec);
  const std::vector<int> ids = tokenizer.encode("hello");
  CHECK(ids == std::vector<int>{*tokenizer.bos_id(), id_of(tokenizer, "hello"), tokenizer.eos_ids()[0]});
  CHECK(tokenizer.encode("hello", false) == std::vector<int>{id_of(tokenizer, "hello")});
  CHECK(tokenizer.decode(ids, true) == "hello");
}

TEST_CASE("streaming decode never emits half a character") {
  const Tokenizer tokenizer = Tokenizer::from_spec(elastic::test::small_byte_level_spec());
  // Byte tokens one at a time: é (2 bytes), € (3), 🎉 (4), then an emoji as one token.
  const std::string text = "é€🎉😀!";
  std::vector<int> ids;
  for (char c : std::string("é€🎉")) ids.push_back(static_cast<unsigned char>(c));
  ids.push_back(tokenizer.encode("😀")[0]);
  ids.push_back('!');
  StreamingDecoder decoder(tokenizer);
  std::vector<std::string> outputs;
  for (int id : ids) outputs.push_back(decoder.feed(id));
  CHECK(outputs[0].empty());
  CHECK(outputs[1] == "é");
  CHECK(outputs[2].empty());
  CHECK(outputs[3].empty());
  CHECK(outputs[4] == "€");
  CHECK(outputs[8] == "🎉");
  CHECK(outputs[9] == "😀");
  CHECK(outputs[10] == "!");
  CHECK(decoder.flush().empty());
  CHECK(streamed(tokenizer, ids) == text);
  // An unfinished character comes out at the flush.
  StreamingDecoder cut(tokenizer);
  CHECK(cut.feed(0xF0).empty());
  CHECK(cut.flush() == "\xF0");
}

TEST_CASE("SentencePiece merges best score first, with space prefix and byte fallback") {
  const Tokenizer tokenizer = Tokenizer::from_spec(elastic::test::small_sentencepiece_spec());
  const int bos = 1;
  CHECK(tokenizer.encode("hello world") == std::vector<int>{bos, id_of(tokenizer, "▁hello"), id_of(tokenizer, "▁world")});
  CHECK(tokenizer.encode("the", false) == std::vector<int>{id_of(tokenizer, "▁the")});
  // Not in the vocabulary: 'z' and '中' fall back to their bytes.
  CHECK(tokenizer.encode("z中", false) ==
        std::vector<int>{id_of(tokenizer, "▁"), id_of(tokenizer, "<0x7A>"), id_of(tokenizer, "<0xE4>"),
                         id_of(tokenizer, "<0xB8>"), id_of(tokenizer, "<0xAD>")});
  for (const std::string text : {"hello world", "the  world", " leading", "z中é hello\n"}) {
    const std::vector<int> ids = tokenizer.encode(text);
    CHECK(tokenizer.decode(ids, true) == text);
    CHECK(streamed(tokenizer, ids, true) == text);
  }
  CHECK(tokenizer.decode(tokenizer.encode("hello")) == "<s>hello");
}

TEST_CASE("SentencePiece without byte tokens uses the unknown token") {
  TokenizerSpec spec = elastic::test::small_sentencepiece_spec();
  spec.tokens.erase(spec.tokens.begin() + 3, spec.tokens.begin() + 259);
  spec.kinds.erase(spec.kinds.begin() + 3, spec.kinds.begin() + 259);
  spec.scores.erase(spec.scores.begin() + 3, spec.scores.begin() + 259);
  const Tokenizer tokenizer = Tokenizer::from_spec(spec);
  CHECK(tokenizer.encode("hz", false) == std::vector<int>{id_of(tokenizer, "▁h"), 0});
}

TEST_CASE("tokenizer errors say what is wrong") {
  const Tokenizer tokenizer = Tokenizer::from_spec(elastic::test::small_byte_level_spec());
  const int size = tokenizer.vocab_size();
  CHECK(error_of([&] { (void)tokenizer.decode(std::vector<int>{size}); }) ==
        "token id " + std::to_string(size) + " is outside the vocabulary (size " + std::to_string(size) + ")");
  CHECK(error_of([&] { (void)tokenizer.token_text(-1); }).find("token id -1") != std::string::npos);
  CHECK(error_of([&] { tokenizer.streaming_decoder().feed(size + 5); }).find("outside the vocabulary") !=
        std::string::npos);

  TokenizerSpec unknown_pre = elastic::test::small_byte_level_spec();
  unknown_pre.pre = "klingon";
  const std::string pre_error = error_of([&] { Tokenizer::from_spec(unknown_pre); });
  CHECK(pre_error.find("unknown pre-tokenizer 'klingon'") != std::string::npos);
  CHECK(pre_error.find("smollm, llama-bpe, qwen2, default") != std::string::npos);

  TokenizerSpec bad_merge = elastic::test::small_byte_level_spec();
  bad_merge.merges.push_back("hello xyz");
  CHECK(error_of([&] { Tokenizer::from_spec(bad_merge); }).find("'xyz', which is not in the vocabulary") !=
        std::string::npos);
  TokenizerSpec bad_eos = elastic::test::small_byte_level_spec();
  bad_eos.eos_ids = {100000};
  CHECK(error_of([&] { Tokenizer::from_spec(bad_eos); }).find("eos id 100000") != std::string::npos);
  TokenizerSpec no_scores = elastic::test::small_sentencepiece_spec();
  no_scores.scores.pop_back();
  CHECK(error_of([&] { Tokenizer::from_spec(no_scores); }).find("one score per token") != std::string::npos);
}

TEST_CASE("tokenizer.json: vocab, both merge spellings, added tokens, pre-tokenizer names") {
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  json file = {
      {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}, {"Ġ", 3}, {"Ġab", 4}}},
                 {"merges", json::array({"a b", json::array({"Ġ", "ab"})})}}},
      {"added_tokens", json::array({{{"id", 5}, {"content", "<|eot|>"}, {"special", true}},
                                    {{"id", 6}, {"content", "<tool>"}, {"special", false}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}}, byte_level})}}},
      {"decoder", {{"type", "ByteLevel"}}}};
  TokenizerSpec spec = elastic::io::parse_tokenizer_json(file.dump());
  CHECK(spec.pre == "smollm");
  CHECK(spec.merges == std::vector<std::string>{"a b", "Ġ ab"});
  CHECK(spec.tokens.size() == 7);
  CHECK(spec.kinds[5] == elastic::io::TokenKind::control);
  CHECK(spec.kinds[6] == elastic::io::TokenKind::user_defined);
  const Tokenizer tokenizer = Tokenizer::from_spec(spec);
  CHECK(tokenizer.encode("ab ab<|eot|>") == std::vector<int>{2, 4, 5});

  file["pre_tokenizer"] = byte_level;
  CHECK(elastic::io::parse_tokenizer_json(file.dump()).pre == "gpt2");
  file["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({
      {{"type", "Split"}, {"pattern", {{"Regex", std::string(elastic::io::pretokenizer_patterns::llama3)}}},
       {"behavior", "Isolated"}, {"invert", false}},
      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  CHECK(elastic::io::parse_tokenizer_json(file.dump()).pre == "llama-bpe");

  elastic::io::apply_tokenizer_config_json(
      R"({"bos_token": "a", "eos_token": {"content": "<|eot|>"}, "add_bos_token": true, "chat_template": "{{x}}"})",
      spec);
  CHECK(spec.bos_id == 0);
  CHECK(spec.eos_ids == std::vector<int>{5});
  CHECK(spec.add_bos);
  CHECK(spec.chat_template == "{{x}}");
}

TEST_CASE("tokenizer.json errors name the file and what is supported") {
  const auto message = [](std::string_view text) {
    return error_of([&] { (void)elastic::io::parse_tokenizer_json(text, "m/tokenizer.json"); });
  };
  CHECK(message("{").starts_with("m/tokenizer.json: expected well-formed UTF-8 JSON"));
  CHECK(message(std::string(100, '[') + std::string(100, ']')).find("nested deeper than") != std::string::npos);
  CHECK(message(R"({"model": {"type": "WordPiece", "vocab": {}}})").find("unsupported tokenizer model 'WordPiece'; supported: model BPE") != std::string::npos);
  CHECK(message(R"({"model": {"type": "Unigram", "vocab": []}})").find("'Unigram'") != std::string::npos);
  CHECK(message(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Whitespace"}})")
            .find("unsupported pre_tokenizer") != std::string::npos);
  CHECK(message(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 5}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}})")
            .find("token id 5") != std::string::npos);
  CHECK(message(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}})")
            .find("must be an integer id") != std::string::npos);
  CHECK(message(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}, "pre_tokenizer": {"type": "ByteLevel"}})")
            .find("a merge must be") != std::string::npos);
  CHECK(error_of([] { (void)elastic::io::read_tokenizer_json("/nonexistent/tokenizer.json"); })
            .starts_with("/nonexistent/tokenizer.json: cannot open"));
}

namespace {

struct Agreement {
  int matched = 0;
  int total = 0;
};

Agreement compare_with_reference(const Tokenizer& tokenizer, const json& cases, std::string_view what) {
  Agreement agreement;
  for (const json& entry : cases) {
    const std::string text = entry["text"].get<std::string>();
    const std::vector<int> expected = entry["ids"].get<std::vector<int>>();
    const std::vector<int> ids = tokenizer.encode(text, false, true);
    ++agreement.total;
    if (ids == expected) {
      ++agreement.matched;
    } else {
      FAIL_CHECK(what << ": ids differ for " << json(text).dump());
    }
    CHECK(tokenizer.decode(ids) == text);
  }
  MESSAGE(what << ": " << agreement.matched << " / " << agreement.total << " strings encode to the reference ids");
  return agreement;
}

TokenizerSpec spec_from_gguf_fields(const json& fields) {
  TokenizerSpec spec;
  spec.model = elastic::io::TokenizerModel::byte_level_bpe;
  spec.pre = fields["pre"].get<std::string>();
  spec.tokens = fields["tokens"].get<std::vector<std::string>>();
  for (int kind : fields["token_type"].get<std::vector<int>>()) spec.kinds.push_back(static_cast<elastic::io::TokenKind>(kind));
  spec.merges = fields["merges"].get<std::vector<std::string>>();
  spec.bos_id = fields["bos_token_id"].get<int>();
  spec.eos_ids = {fields["eos_token_id"].get<int>()};
  spec.unknown_id = fields["unknown_token_id"].get<int>();
  spec.add_bos = fields["add_bos_token"].get<bool>();
  spec.add_space_prefix = false;
  spec.chat_template = fields["chat_template"].get<std::string>();
  return spec;
}

}  // namespace

TEST_SUITE("reference") {
  TEST_CASE("SmolLM2 vocabulary: same ids as HF tokenizers") {
    const elastic::test::TemporaryDirectory directory("elastic-tokenizer");
    const std::filesystem::path model = elastic::test::default_model_path();
    const json reference = json::parse(
        elastic::test::run_reference_script("tokenizer_reference.py", {model.string(), directory.path().string()}));
    const json& cases = reference["cases"];
    REQUIRE(cases.size() >= 300);

    const Tokenizer from_json = Tokenizer::from_spec(elastic::io::read_tokenizer_json(directory / "tokenizer.json"));
    CHECK(from_json.vocab_size() == 49152);
    CHECK(from_json.spec().pre == "smollm");
    CHECK(from_json.bos_id() == 1);
    CHECK(from_json.is_eos(2));
    CHECK(from_json.spec().chat_template.find("<|im_start|>") != std::string::npos);
    const Agreement json_agreement = compare_with_reference(from_json, cases, "SmolLM2 from tokenizer.json");
    CHECK(json_agreement.matched == json_agreement.total);

    const Tokenizer from_fields = Tokenizer::from_spec(spec_from_gguf_fields(json::parse(slurp(directory / "gguf_spec.json"))));
    const Agreement fields_agreement = compare_with_reference(from_fields, cases, "SmolLM2 from GGUF fields");
    CHECK(fields_agreement.matched == fields_agreement.total);
#ifdef ELASTIC_TEST_HAVE_GGUF_TOKENIZER
    const Tokenizer from_gguf =
        Tokenizer::from_spec(elastic::io::gguf_tokenizer_spec(elastic::io::GgufFile(model)));
    const Agreement gguf_agreement = compare_with_reference(from_gguf, cases, "SmolLM2 from the GGUF reader");
    CHECK(gguf_agreement.matched == gguf_agreement.total);
#endif
  }

  TEST_CASE("SentencePiece: same ids as the sentencepiece package on a model it trained") {
    const elastic::test::TemporaryDirectory directory("elastic-sentencepiece");
    const json reference =
        json::parse(elastic::test::run_reference_script("sentencepiece_reference.py", {directory.path().string()}));
    TokenizerSpec spec;
    spec.model = elastic::io::TokenizerModel::sentencepiece;
    spec.add_space_prefix = true;
    for (const json& piece : reference["pieces"]) {
      spec.tokens.push_back(piece["piece"].get<std::string>());
      spec.scores.push_back(piece["score"].get<float>());
      spec.kinds.push_back(static_cast<elastic::io::TokenKind>(piece["type"].get<int>()));
    }
    spec.unknown_id = reference["unk_id"].get<int>();
    spec.bos_id = reference["bos_id"].get<int>();
    spec.eos_ids = {reference["eos_id"].get<int>()};
    const Tokenizer tokenizer = Tokenizer::from_spec(spec);
    const Agreement agreement = compare_with_reference(tokenizer, reference["cases"], "SentencePiece BPE");
    CHECK(agreement.matched == agreement.total);
  }
}
