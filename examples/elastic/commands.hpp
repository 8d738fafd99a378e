// The model-running subcommands of the `elastic` CLI and how one runs: every
// subcommand is written once over a runner type (HostRunner, CudaRunner),
// and run_command picks the runner's element type from --dtype.
#pragma once

#include "bench.hpp"
#include "generate.hpp"
#include "logits.hpp"
#include "perplexity.hpp"
#include "run_options.hpp"

namespace elastic::cli {

enum class Command { generate, perplexity, logits, bench };

// Every model-running subcommand's options; `run` has its dtype resolved.
struct CommandOptions {
  RunOptions run;
  GenerateOptions generate;
  PerplexityOptions perplexity;
  LogitsOptions logits;
  BenchOptions bench;
};

template <template <class> class Runner>
int run_command(Command command, const CommandOptions& options) {
  const auto run = [&]<class R>() {
    switch (command) {
      case Command::generate: return run_generate<R>(options.run, options.generate);
      case Command::perplexity: return run_perplexity<R>(options.run, options.perplexity);
      case Command::logits: return run_logits<R>(options.run, options.logits);
      case Command::bench: return run_bench<R>(options.run, options.bench);
    }
    return 2;
  };
  if (options.run.dtype == "bf16") return run.template operator()<Runner<bfloat16_t>>();
  return run.template operator()<Runner<float>>();
}

// Runs `command` with CudaRunner (cuda_commands.cu; only in builds with CUDA).
int run_command_on_cuda(Command command, const CommandOptions& options);

}  // namespace elastic::cli
