// What the tests that compare a model with an outside implementation
// share: the first tokens of the held-out text
// (tests/model/reference/perplexity_text.txt), and the logits a reference
// script computes for them, read from the raw float32 [tokens x vocab] file
// the script writes.
#pragma once

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "elastic/io/tokenizer.hpp"
#include "support/python.hpp"

namespace elastic::test {

inline std::vector<int> held_out_tokens(const io::Tokenizer& tokenizer, std::size_t count) {
  std::ifstream file(std::filesystem::path(ELASTIC_SOURCE_DIR) / "tests/model/reference/perplexity_text.txt");
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<int> tokens = tokenizer.encode(text, /*add_special=*/false);
  REQUIRE(tokens.size() >= count);
  tokens.resize(count);
  return tokens;
}

// Runs tests/<script> MODEL --tokens ... --out FILE and returns the logits
// it wrote, [tokens x vocab] row-major.
inline std::vector<float> reference_logits(const std::string& script, const std::string& model,
                                           std::span<const int> tokens, std::size_t vocab) {
  TemporaryDirectory directory;
  std::string ids;
  for (int token : tokens) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(token);
  }
  const std::filesystem::path out = directory.path() / "logits.bin";
  run_python_script(script, {model, "--tokens", ids, "--out", out.string()});
  std::vector<float> logits(tokens.size() * vocab);
  std::ifstream file(out, std::ios::binary);
  file.read(reinterpret_cast<char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
  REQUIRE(file.gcount() == static_cast<std::streamsize>(logits.size() * sizeof(float)));
  return logits;
}

}  // namespace elastic::test
