// `elastic bench`: prompt-processing and generation speed in the manner of
// llama-bench. For each sub-network (the shared flags, or each width of
// --mlp-widths) and each test:
//   ppN  one forward of N prompt tokens into an empty cache (chunked prefill
//        in one chunk), logits for the last token only;
//   tgN  N single-token decode steps from an empty cache.
// Token ids are drawn from a fixed seed, so runs are comparable. Each test
// runs once to warm up, then --repetitions times; the table gives tokens per
// second as mean ± sample standard deviation over the repetitions. Output
// is a markdown table, or JSON (one object per row, with every sample) for
// scripts such as benchmarks/model_bench.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "elastic/io/tensor_roles.hpp"
#include "format.hpp"
#include "run_options.hpp"

namespace elastic::cli {

struct BenchOptions {
  std::vector<int> prompt_lengths{512};
  std::vector<int> generate_lengths{128};
  std::vector<int> mlp_widths;  // empty: the sub-network of the shared flags only
  int repetitions = 5;
  std::string output = "md";

  void add_to(CLI::App& command) {
    command.add_option("-p,--n-prompt", prompt_lengths, "prompt lengths to time (ppN; 0 skips)")
        ->delimiter(',')
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    command.add_option("-n,--n-gen", generate_lengths, "generation lengths to time (tgN; 0 skips)")
        ->delimiter(',')
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    command.add_option("--mlp-widths", mlp_widths,
                       "one row group per MLP width, every SwiGLU layer at its first N neurons (0: stored width)")
        ->delimiter(',')
        ->check(CLI::NonNegativeNumber);
    command.add_option("-r,--repetitions", repetitions, "timed runs of each test, after one warm-up")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-o,--output", output, "md or json")->check(CLI::IsMember({"md", "json"}))->capture_default_str();
  }
};

struct BenchRow {
  std::string config;
  std::string test;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  std::vector<double> tokens_per_second;

  double mean() const {
    return std::accumulate(tokens_per_second.begin(), tokens_per_second.end(), 0.0) /
           double(tokens_per_second.size());
  }
  double standard_deviation() const {
    if (tokens_per_second.size() < 2) return 0.0;
    const double average = mean();
    double sum = 0.0;
    for (double value : tokens_per_second) sum += (value - average) * (value - average);
    return std::sqrt(sum / double(tokens_per_second.size() - 1));
  }
};

// A short name of a sub-network for the table: "full", or what differs.
inline std::string config_label(const model::SubnetworkConfig& config, const io::ModelDescription& model) {
  const model::SubnetworkConfig full = model::SubnetworkConfig::full(model);
  std::vector<std::int64_t> widths;
  std::vector<int> heads;
  int skipped_halves = 0, linear_halves = 0;
  for (std::size_t i = 0; i < config.layers.size(); ++i) {
    const model::LayerChoice &choice = config.layers[i], &stored = full.layers[i];
    if (choice.mlp_width != stored.mlp_width && !choice.skip_ffn && !choice.linear_ffn)
      widths.push_back(choice.mlp_width);
    if (choice.heads != stored.heads && !choice.skip_attention && !choice.linear_attention)
      heads.push_back(choice.heads);
    skipped_halves += int(choice.skip_attention) + int(choice.skip_ffn);
    linear_halves += int(choice.linear_attention && model.layers[i].attention_has_linear) +
                     int(choice.linear_ffn && model.layers[i].ffn_has_linear);
  }
  std::string label;
  const auto append = [&](const std::string& part) { label += (label.empty() ? "" : ", ") + part; };
  if (!widths.empty()) {
    const bool uniform = std::all_of(widths.begin(), widths.end(), [&](auto w) { return w == widths[0]; });
    append(uniform ? "mlp " + std::to_string(widths[0]) : "mlp mixed");
  }
  if (!heads.empty()) {
    const bool uniform = std::all_of(heads.begin(), heads.end(), [&](int h) { return h == heads[0]; });
    append(uniform ? "heads " + std::to_string(heads[0]) : "heads mixed");
  }
  if (skipped_halves > 0) append(std::to_string(skipped_halves) + " halves skipped");
  if (linear_halves > 0) append(std::to_string(linear_halves) + " halves linear");
  return label.empty() ? "full" : label;
}

inline std::int64_t parameter_count(const io::ModelDescription& model) {
  std::int64_t count = 0;
  for (const io::TensorSlot& slot : io::required_tensors(model))
    count += std::accumulate(slot.shape.begin(), slot.shape.end(), std::int64_t{1}, std::multiplies<>());
  return count;
}

template <class Sequence>
double timed_tokens_per_second(Sequence& sequence, std::span<const int> tokens, bool one_by_one) {
  sequence.reset();
  const auto start = std::chrono::steady_clock::now();
  if (one_by_one) {
    for (const int& token : tokens) sequence.append(std::span(&token, 1));
  } else {
    sequence.append(tokens, static_cast<int>(tokens.size()));
  }
  return double(tokens.size()) / seconds_since(start);
}

template <class Runner>
std::vector<BenchRow> bench_config(Runner& runner, const model::SubnetworkConfig& config, const BenchOptions& options,
                                   int capacity) {
  const io::ModelDescription& model = runner.loaded.description();
  auto sequence = runner.sequence(capacity, config);
  std::mt19937 random(1234);
  std::uniform_int_distribution<int> token_id(0, static_cast<int>(model.vocab) - 1);
  std::vector<int> tokens(static_cast<std::size_t>(capacity));
  for (int& token : tokens) token = token_id(random);

  std::vector<BenchRow> rows;
  const auto run = [&](const char* prefix, int length, bool one_by_one) {
    if (length == 0) return;
    BenchRow row{config_label(config, model), prefix + std::to_string(length), one_by_one ? 0 : length,
                 one_by_one ? length : 0, {}};
    const std::span<const int> input(tokens.data(), static_cast<std::size_t>(length));
    timed_tokens_per_second(sequence, input, one_by_one);  // warm-up
    for (int r = 0; r < options.repetitions; ++r)
      row.tokens_per_second.push_back(timed_tokens_per_second(sequence, input, one_by_one));
    std::fprintf(stderr, "bench: %s %s %.2f t/s\n", row.config.c_str(), row.test.c_str(), row.mean());
    rows.push_back(std::move(row));
  };
  for (int length : options.prompt_lengths) run("pp", length, false);
  for (int length : options.generate_lengths) run("tg", length, true);
  return rows;
}

template <class Runner>
void print_bench(const Runner& runner, const RunOptions& run, const BenchOptions& options,
                 const std::vector<BenchRow>& rows) {
  const auto& loaded = runner.loaded;
  const io::ModelDescription& model = loaded.description();
  const std::string name = model.name.empty() ? std::string(loaded.source.format_description()) : model.name;
  const unsigned threads = runner.threads();
  const std::string device = runner.device_name();
  if (options.output == "json") {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const BenchRow& row : rows)
      out.push_back({{"model", name},
                     {"model_file", loaded.source.path()},
                     {"model_bytes", loaded.source.file_bytes()},
                     {"weights_bytes", loaded.weights.bytes()},
                     {"parameters", parameter_count(model)},
                     {"dtype", run.dtype},
                     {"device", device},
                     {"threads", threads},
                     {"config", row.config},
                     {"test", row.test},
                     {"n_prompt", row.prompt_tokens},
                     {"n_gen", row.generated_tokens},
                     {"avg_ts", row.mean()},
                     {"stddev_ts", row.standard_deviation()},
                     {"samples_ts", row.tokens_per_second}});
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf("| model | size | params | dtype | device | threads | config | test | t/s |\n");
  std::printf("| --- | ---: | ---: | --- | --- | ---: | --- | ---: | ---: |\n");
  for (const BenchRow& row : rows)
    std::printf("| %s | %s | %s | %s | %s | %u | %s | %s | %.2f ± %.2f |\n", name.c_str(),
                bytes_text(loaded.source.file_bytes()).c_str(), count_text(parameter_count(model)).c_str(),
                run.dtype.c_str(), device.c_str(), threads, row.config.c_str(), row.test.c_str(), row.mean(),
                row.standard_deviation());
}

template <class Runner>
int run_bench(const RunOptions& run, const BenchOptions& options) {
  Runner runner(run);
  const auto& loaded = runner.loaded;
  int capacity = 1;
  for (int length : options.prompt_lengths) capacity = std::max(capacity, length);
  for (int length : options.generate_lengths) capacity = std::max(capacity, length);

  std::vector<model::SubnetworkConfig> configs;
  if (options.mlp_widths.empty()) configs.push_back(loaded.config);
  for (int width : options.mlp_widths) {
    RunOptions at_width = run;
    at_width.mlp_width = width;
    configs.push_back(at_width.with_layer_flags(loaded.starting_config));
    configs.back().validate(loaded.description(), math::vector_width<typename Runner::Element>);
  }
  std::vector<BenchRow> rows;
  for (const model::SubnetworkConfig& config : configs) {
    std::vector<BenchRow> measured = bench_config(runner, config, options, capacity);
    rows.insert(rows.end(), measured.begin(), measured.end());
  }
  print_bench(runner, run, options, rows);
  return 0;
}

}  // namespace elastic::cli
