// `elastic perplexity`: the perplexity of a model on a text file, over
// non-overlapping windows of --ctx tokens (default 512), each window run
// from an empty cache and scored on every position but its first:
// exp(-mean log p(token t+1 | tokens <= t)). Reports the perplexity and the
// number of scored tokens; progress on stderr.
#pragma once

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "elastic/model/perplexity.hpp"
#include "progress.hpp"
#include "run_options.hpp"

namespace elastic::cli {

struct PerplexityOptions {
  std::string file;
  void add_to(CLI::App& command) {
    command.add_option("-f,--file", file, "the text to score")->required()->check(CLI::ExistingFile);
  }
};

inline std::string read_text_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  require(file.good(), path, ": cannot open");
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

template <class Runner>
int run_perplexity(const RunOptions& run, const PerplexityOptions& options) {
  Runner runner(run);
  const std::vector<int> tokens = runner.loaded.tokenizer->encode(read_text_file(options.file), /*add_special=*/false);
  const auto window = static_cast<std::size_t>(run.context);
  require(tokens.size() >= window, options.file, ": ", tokens.size(), " tokens do not fill one window of ", window,
          " (--ctx); give a longer text or a smaller --ctx");
  const std::size_t windows = model::perplexity_windows(tokens.size(), window);
  auto sequence = runner.sequence(run.context, runner.loaded.config);
  Progress progress("perplexity", static_cast<long>(windows));
  const auto start = std::chrono::steady_clock::now();
  const model::PerplexityScore score =
      model::score_windows(sequence, tokens, window, 0, [&](const model::PerplexityScore& so_far) {
        char detail[64];
        std::snprintf(detail, sizeof detail, "ppl %.4f", so_far.perplexity());
        progress.update(static_cast<long>(so_far.windows), detail);
      });
  const double seconds = seconds_since(start);
  std::printf("perplexity %.4f over %zu tokens (%zu windows of %zu, %s weights)\n", score.perplexity(), score.scored,
              windows, window, run.dtype.c_str());
  std::fprintf(stderr, "load %.2f s, scoring %.2f s (%.1f tok/s)\n", runner.load_seconds, seconds,
               double(windows * window) / seconds);
  return 0;
}

}  // namespace elastic::cli
