// elastic: the example command-line tool built only from the public headers,
// one binary with subcommands in the manner of llama.cpp's tools.
//
//   elastic inspect [--model PATH]    what a model file holds: layer plan,
//                                     tensor types, sizes, tokenizer
//   elastic generate -p TEXT [--chat] [-n N] [--temp/--top-k/--top-p/--min-p/--seed]
//                                     streamed text, then load, prefill and
//                                     decode timings
//   elastic perplexity -f FILE [--ctx 512]
//   elastic logits --tokens 1,2,3 -o FILE   raw float32 logits [tokens x vocab]
//   elastic bench [-p 512] [-n 128] [-r 5] [--mlp-widths ...] [-o md|json]
//                                     prompt and generation tokens per second
//   elastic convert --calibration FILE [--validation FILE] -o FOLDER
//                                     an elastic checkpoint: neurons and heads
//                                     ranked on the text and stored in that order
//   elastic score --calibration FILE  the block library: every layer half's
//                                     variants scored by replace-one KL
//   elastic search --evaluation FILE [--latency 0.8]
//                                     the exact architecture per latency budget
//                                     (CBC), budgets.json, the Pareto front
//                                     (score and search build with elastic::search)
//   elastic latency [--ctx 512] [--steps 32] [-p 512] [-r 3] -o FILE
//                                     the measured latency and memory table
//                                     of every layer variant (budget search)
//
// The running subcommands share --model, --dtype auto|f32|bf16|quant, --device
// cpu|cuda (cuda in builds with CUDA), --threads, --ctx and the sub-network:
// a --config file, or --budget F (the budget table's entry for F, a
// fraction of the full model's latency, from budgets.json beside the model or
// --budget-table FILE), and the flags --mlp-width, --heads and --skip-layers
// on top of it (one weight copy, any prefix of each layer).
//
// --model takes a .gguf file, or a folder (or its config.json) with
// safetensors weights and tokenizer.json. Without it, $ELASTIC_MODEL, else
// the default model the set-up step installs (SmolLM2-135M-Instruct GGUF).
// Any failure is one line on stderr, "elastic: <what went wrong>", and a
// non-zero exit status.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "convert.hpp"
#ifdef ELASTIC_CLI_SEARCH
#include "score.hpp"
#include "search.hpp"
#endif
#include "inspect.hpp"
#include "latency.hpp"

namespace {

std::string default_model() {
  if (const char* from_environment = std::getenv("ELASTIC_MODEL"); from_environment && *from_environment)
    return from_environment;
  return ELASTIC_DEFAULT_MODEL;
}

void add_model_option(CLI::App& command, std::string& model) {
  command.add_option("-m,--model", model, "a .gguf file, or a folder with config.json, safetensors and tokenizer.json")
      ->default_str(model.empty() ? "(none installed: run cmake/setup-machine.sh)" : model);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"elastic: run and inspect elastic LLMs", "elastic"};
  app.require_subcommand(1);
  std::string model = default_model();

  CLI::App* inspect = app.add_subcommand("inspect", "print what a model file holds");
  add_model_option(*inspect, model);
  CLI::App* convert = app.add_subcommand("convert", "rank neurons and heads on a text and write an elastic checkpoint");
  add_model_option(*convert, model);
  elastic::cli::ConvertOptions convert_options;
  convert_options.add_to(*convert);
#ifdef ELASTIC_CLI_SEARCH
  CLI::App* score = app.add_subcommand("score", "score every block variant of an elastic checkpoint (replace-one KL)");
  add_model_option(*score, model);
  elastic::cli::ScoreOptions score_options;
  score_options.add_to(*score);
  CLI::App* search = app.add_subcommand("search", "the exact architecture for each latency budget, its Pareto front and "
                                        "budget table");
  add_model_option(*search, model);
  elastic::cli::SearchOptions search_options;
  search_options.add_to(*search);
#endif
  CLI::App* latency = app.add_subcommand("latency", "measure every layer variant's time and bytes for the budget search");
  add_model_option(*latency, model);
  elastic::cli::LatencyOptions latency_options;
  latency_options.add_to(*latency);

  using elastic::cli::Command;
  elastic::cli::CommandOptions options;
  const std::pair<Command, CLI::App*> commands[] = {
      {Command::generate, app.add_subcommand("generate", "generate text from a prompt")},
      {Command::perplexity, app.add_subcommand("perplexity", "perplexity of the model on a text file")},
      {Command::logits, app.add_subcommand("logits", "write every position's logits of a token sequence")},
      {Command::bench, app.add_subcommand("bench", "prompt and generation speed (ppN / tgN tokens per second)")}};
  for (const auto& [command, subcommand] : commands) {
    add_model_option(*subcommand, model);
    options.run.add_to(*subcommand);
  }
  options.generate.add_to(*commands[0].second);
  options.perplexity.add_to(*commands[1].second);
  options.logits.add_to(*commands[2].second);
  options.bench.add_to(*commands[3].second);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    if (error.get_exit_code() == 0) return app.exit(error);  // --help
    std::fprintf(stderr, "elastic: %s (see elastic --help)\n", error.what());
    return error.get_exit_code();
  }
  try {
    if (model.empty()) {
      std::fprintf(stderr, "elastic: no model given and no default model installed (--model PATH)\n");
      return 2;
    }
    if (inspect->parsed()) return elastic::cli::run_inspect(model);
    if (convert->parsed()) return elastic::cli::run_convert(model, convert_options);
#ifdef ELASTIC_CLI_SEARCH
    if (score->parsed()) return elastic::cli::run_score(model, score_options);
    if (search->parsed()) return elastic::cli::run_search(model, search_options);
#endif
    if (latency->parsed()) return elastic::cli::run_latency(model, latency_options);
    for (const auto& [command, subcommand] : commands) {
      if (!subcommand->parsed()) continue;
      options.run.model = model;
      options.run.resolve_dtype();
      if (command == Command::perplexity && subcommand->count("--ctx") == 0) options.run.context = 512;
      if (options.run.device == "cpu" && options.run.dtype == "quant")
        return elastic::cli::run_command<elastic::cli::QuantizedHostRunner>(command, options);
      if (options.run.device == "cpu") return elastic::cli::run_command<elastic::cli::HostRunner>(command, options);
#ifdef ELASTIC_CLI_CUDA
      return elastic::cli::run_command_on_cuda(command, options);
#else
      throw elastic::cli::cuda_not_built();
#endif
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "elastic: %s\n", error.what());
    return 1;
  }
  return 0;
}
