// `elastic logits`: the raw float32 logits of every position of a token
// sequence, little-endian [tokens x vocab], so any outside implementation
// can be compared with ours. The file is written beside its destination and
// renamed into place, so a failure never leaves a partial file.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "run_options.hpp"

namespace elastic::cli {

struct LogitsOptions {
  std::vector<int> tokens;
  std::string out;
  void add_to(CLI::App& command) {
    command.add_option("--tokens", tokens, "token ids, comma-separated")->required()->delimiter(',');
    command.add_option("-o,--out", out, "where to write the logits")->required();
  }
};

inline void write_file_atomically(const std::filesystem::path& path, std::span<const float> values) {
  const std::filesystem::path temporary = path.string() + ".partial";
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  require(file != nullptr, path.string(), ": cannot create ", temporary.string());
  const bool written = std::fwrite(values.data(), sizeof(float), values.size(), file) == values.size();
  const bool closed = std::fclose(file) == 0;
  std::error_code error;
  if (written && closed) std::filesystem::rename(temporary, path, error);
  if (!written || !closed || error) {
    std::filesystem::remove(temporary, error);
    throw Error(path.string() + ": could not write the logits");
  }
}

template <class Runner>
int run_logits(const RunOptions& run, const LogitsOptions& options) {
  Runner runner(run);
  require(options.tokens.size() <= static_cast<std::size_t>(run.context), "--tokens: ", options.tokens.size(),
          " tokens do not fit the context of ", run.context, " (--ctx)");
  auto sequence = runner.sequence(run.context, runner.loaded.config);
  const std::span<const float> logits = sequence.append_every(options.tokens);
  write_file_atomically(options.out, logits);
  std::printf("%zu x %d float32 logits written to %s\n", options.tokens.size(), sequence.vocab(), options.out.c_str());
  return 0;
}

}  // namespace elastic::cli
