// Writes a tiny Hugging Face llama folder with a tokenizer (random weights
// of trained size, the small byte-level BPE vocabulary of the tokenizer
// tests), for the CLI's end-to-end test of the conversion and search
// pipeline: convert, score, latency, search, then a run at a budget.
//
//   elastic_write_tiny_model FOLDER
#include <cstdio>
#include <exception>
#include <filesystem>

#include "elastic/io/tokenizer_json_writer.hpp"
#include "io/tokenizer_fixtures.hpp"
#include "support/tiny_checkpoint.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: elastic_write_tiny_model FOLDER\n");
    return 2;
  }
  try {
    const std::filesystem::path folder(argv[1]);
    std::filesystem::create_directories(folder);
    const elastic::io::TokenizerSpec tokenizer = elastic::test::small_byte_level_spec();
    elastic::test::TinyModel model;
    model.vocab = static_cast<int>(tokenizer.tokens.size() + 7) / 8 * 8;  // whole vectors
    model.layers = 3;
    elastic::test::write_llama_folder(folder, model, 7);
    elastic::io::write_tokenizer_files(folder, tokenizer);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "elastic_write_tiny_model: %s\n", error.what());
    return 1;
  }
  return 0;
}
