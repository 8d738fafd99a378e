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
//
// The running subcommands share --model, --dtype f32|bf16, --device cpu,
// --threads, --ctx and the sub-network: a --config file and the flags
// --mlp-width, --heads and --skip-layers on top of it (one weight copy, any
// prefix of each layer).
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

#include <CLI/CLI.hpp>

#include "bench.hpp"
#include "generate.hpp"
#include "inspect.hpp"
#include "logits.hpp"
#include "perplexity.hpp"

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

  elastic::cli::RunOptions run;
  elastic::cli::GenerateOptions generate_options;
  CLI::App* generate = app.add_subcommand("generate", "generate text from a prompt");
  elastic::cli::PerplexityOptions perplexity_options;
  CLI::App* perplexity = app.add_subcommand("perplexity", "perplexity of the model on a text file");
  elastic::cli::LogitsOptions logits_options;
  CLI::App* logits = app.add_subcommand("logits", "write every position's logits of a token sequence");
  elastic::cli::BenchOptions bench_options;
  CLI::App* bench = app.add_subcommand("bench", "prompt and generation speed (ppN / tgN tokens per second)");
  for (CLI::App* command : {generate, perplexity, logits, bench}) {
    add_model_option(*command, model);
    run.add_to(*command);
  }
  generate_options.add_to(*generate);
  perplexity_options.add_to(*perplexity);
  logits_options.add_to(*logits);
  bench_options.add_to(*bench);

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
    run.model = model;
    if (perplexity->parsed() && perplexity->count("--ctx") == 0) run.context = 512;
    if (generate->parsed())
      return elastic::cli::with_element_type(run, [&]<class T>() { return elastic::cli::run_generate<T>(run, generate_options); });
    if (perplexity->parsed())
      return elastic::cli::with_element_type(run, [&]<class T>() { return elastic::cli::run_perplexity<T>(run, perplexity_options); });
    if (logits->parsed())
      return elastic::cli::with_element_type(run, [&]<class T>() { return elastic::cli::run_logits<T>(run, logits_options); });
    if (bench->parsed())
      return elastic::cli::with_element_type(run, [&]<class T>() { return elastic::cli::run_bench<T>(run, bench_options); });
  } catch (const std::exception& error) {
    std::fprintf(stderr, "elastic: %s\n", error.what());
    return 1;
  }
  return 0;
}
