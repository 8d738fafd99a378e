// `elastic logits`: the raw float32 logits of every position of a token
// sequence, little-endian [tokens x vocab], so any outside implementation
// can be compared with ours. The file is written beside its destination and
// renamed into place (io::TemporaryFile), so a failure never leaves a
// partial file.
#pragma once

#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "elastic/io/temporary_file.hpp"
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

template <class Runner>
int run_logits(const RunOptions& run, const LogitsOptions& options) {
  Runner runner(run);
  require(options.tokens.size() <= static_cast<std::size_t>(run.context), "--tokens: ", options.tokens.size(),
          " tokens do not fit the context of ", run.context, " (--ctx)");
  auto sequence = runner.sequence(run.context, runner.loaded.config);
  const std::span<const float> logits = sequence.append_every(options.tokens);
  io::TemporaryFile file(options.out);
  file.write(std::as_bytes(logits));
  file.commit();
  std::printf("%zu x %d float32 logits written to %s\n", options.tokens.size(), sequence.vocab(), options.out.c_str());
  return 0;
}

}  // namespace elastic::cli
