// `elastic generate`: text from a prompt (raw, or wrapped in the model's chat
// template with --chat), streamed token by token as the tokenizer completes
// each character, then the timings on stderr the way llama.cpp reports them:
// load time, prefill and decode tokens per second, separately.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "elastic/io/chat_template.hpp"
#include "elastic/model/sampling.hpp"
#include "run_options.hpp"

namespace elastic::cli {

struct GenerateOptions {
  std::string prompt;
  bool chat = false;
  int max_tokens = 64;
  SamplingConfig sampling{};

  void add_to(CLI::App& command) {
    command.add_option("-p,--prompt", prompt, "the prompt text")->required();
    command.add_flag("--chat", chat, "wrap the prompt as a user turn in the model's chat template");
    command.add_option("-n,--n-predict", max_tokens, "tokens to generate at most")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("--temp", sampling.temperature, "temperature (0: greedy)")->capture_default_str();
    command.add_option("--top-k", sampling.top_k, "keep the k most likely tokens (0: off)")->capture_default_str();
    command.add_option("--top-p", sampling.top_p, "keep the smallest set with this probability (1: off)")
        ->capture_default_str();
    command.add_option("--min-p", sampling.min_p, "drop tokens below this share of the top one (0: off)")
        ->capture_default_str();
    command.add_option("-s,--seed", sampling.seed, "sampling seed")->capture_default_str();
  }
};

inline std::vector<int> prompt_tokens(const io::Tokenizer& tokenizer, const GenerateOptions& options) {
  if (!options.chat) return tokenizer.encode(options.prompt);
  const io::TokenizerSpec& spec = tokenizer.spec();
  require(!spec.chat_template.empty(), "--chat: the model has no chat template; give a raw prompt without --chat");
  const auto text_of = [&](std::optional<int> id) {
    return id ? std::string(tokenizer.token_text(*id)) : std::string();
  };
  const io::ChatTemplate chat = io::ChatTemplate::from_text(
      spec.chat_template, text_of(spec.bos_id), spec.eos_ids.empty() ? std::string() : text_of(spec.eos_ids.front()));
  const io::ChatMessage message{"user", options.prompt};
  // The template writes bos itself where the family wants it.
  return tokenizer.encode(chat.apply(std::span(&message, 1), /*add_generation_prompt=*/true), /*add_special=*/false);
}

template <class Runner>
int run_generate(const RunOptions& run, const GenerateOptions& options) {
  Runner runner(run);
  const io::Tokenizer& tokenizer = *runner.loaded.tokenizer;
  const std::vector<int> prompt = prompt_tokens(tokenizer, options);
  require(!prompt.empty(), "the prompt encodes to no tokens");
  require(prompt.size() + static_cast<std::size_t>(options.max_tokens) <= static_cast<std::size_t>(run.context),
          "the prompt (", prompt.size(), " tokens) and -n ", options.max_tokens, " do not fit the context of ",
          run.context, " positions (--ctx)");
  Sampler sampler(options.sampling);
  auto sequence = runner.sequence(run.context, runner.loaded.config);

  const auto prefill_start = std::chrono::steady_clock::now();
  std::span<const float> logits = sequence.append(prompt);
  const double prefill_seconds = seconds_since(prefill_start);

  auto stream = tokenizer.streaming_decoder(/*skip_special=*/true);
  const auto decode_start = std::chrono::steady_clock::now();
  int generated = 0, decode_steps = 0;
  bool stopped_at_eos = false;
  while (generated < options.max_tokens) {
    const int token = sampler.sample(logits);
    ++generated;
    if (tokenizer.is_eos(token)) {
      stopped_at_eos = true;
      break;
    }
    std::fputs(stream.feed(token).c_str(), stdout);
    std::fflush(stdout);
    if (generated == options.max_tokens) break;
    logits = sequence.append(std::span(&token, 1));
    ++decode_steps;
  }
  std::fputs(stream.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  const double decode_seconds = seconds_since(decode_start);
  std::fprintf(stderr, "\nload      %8.2f s (%s, %s weights, %s)\n", runner.load_seconds,
               runner.loaded.source.format_description().c_str(), run.dtype.c_str(), runner.device_name().c_str());
  std::fprintf(stderr, "prefill   %8.2f tok/s (%zu tokens in %.2f s)\n", double(prompt.size()) / prefill_seconds,
               prompt.size(), prefill_seconds);
  std::fprintf(stderr, "decode    %8.2f tok/s (%d steps in %.2f s; %d tokens%s)\n",
               decode_steps > 0 ? double(decode_steps) / decode_seconds : 0.0, decode_steps, decode_seconds, generated,
               stopped_at_eos ? ", stopped at end of sequence" : "");
  return 0;
}

}  // namespace elastic::cli
