// `elastic latency`: measures the latency and memory table the budget search
// reads (search/latency_table.hpp, measured as search/latency_measurement.hpp
// says) on the executor the model will run on (--device cpu or cuda) and
// writes it as JSON. The variants are the
// elastic checkpoint's sets (config.json's "elastic" key) when the model is
// one, else the default sets (MLP widths at 100/75/50/25%, whole KV groups).
// Progress on stderr; on stdout a summary: the fixed cost, each group of
// layers that share their measurement with its variants, and the checks
// (sub-networks measured directly beside the table's prediction).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "elastic/search/elastic_checkpoint.hpp"
#include "elastic/search/latency_measurement.hpp"
#include "elastic/search/latency_table.hpp"
#include "format.hpp"
#include "progress.hpp"
#include "run_options.hpp"

namespace elastic::cli {

struct LatencyOptions {
  std::string device = "cpu";
  std::string dtype = "f32";
  unsigned threads = 0;
  // More steps and rounds than the library's defaults: a decode step of a
  // small model is short enough that the table's error follows them.
  search::LatencySettings settings{.decode_steps = 64, .repetitions = 5};
  std::string output;

  void add_to(CLI::App& command) {
    command.add_option("--device", device, "executor: cpu or cuda (when built with CUDA)")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
    command.add_option("--dtype", dtype, "weights and activations: f32, bf16, or quant (the GGUF file's blocks; "
                       "cpu only)")
        ->check(CLI::IsMember({"f32", "bf16", "quant"}))
        ->capture_default_str();
    command.add_option("-t,--threads", threads, "host threads (0: every hardware thread)")->capture_default_str();
    command.add_option("-c,--ctx", settings.context, "cached positions when the timed decode steps start")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("--steps", settings.decode_steps, "decode steps timed per run (the context grows by them)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-p,--n-prompt", settings.prefill_tokens, "tokens of the timed prefill")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-r,--repetitions", settings.repetitions, "timed rounds of every run, after one warm-up round")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-o,--output", output, "the latency table to write (default: latency_table.json in the "
                       "model's folder)");
  }
};

// The elastic sets of the checkpoint at `model_path` when it is a folder
// whose config.json has them, else the default sets.
inline std::vector<search::ElasticLayerSets> latency_variant_sets(const std::string& model_path,
                                                                  const io::ModelDescription& model) {
  if (std::optional<std::vector<search::ElasticLayerSets>> sets = search::model_layer_sets(model_path, model)) {
    std::fprintf(stderr, "latency: variants from %s's elastic sets\n", model_path.c_str());
    return *sets;
  }
  std::fprintf(stderr, "latency: no elastic sets in the model files; default variants\n");
  return search::default_layer_sets(model);
}

inline std::string milliseconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", seconds * 1e3);
  return text;
}

inline void print_latency_table(const search::LatencyTable& table, const std::string& dtype) {
  std::printf("latency table: %s, %u threads, %s; decode at context %d (%d steps), prefill of %d tokens\n",
              dtype.c_str(), table.threads, table.device.c_str(), table.decode_context, table.decode_steps,
              table.prefill_tokens);
  std::printf("fixed (embedding, final norm, LM head): decode %s ms, prefill %s ms, %s\n\n",
              milliseconds_text(table.fixed.decode_s).c_str(), milliseconds_text(table.fixed.prefill_s).c_str(),
              bytes_text(static_cast<std::uint64_t>(table.fixed.weight_bytes)).c_str());
  // Layers measured together have equal rows; print each distinct layer once.
  const auto same = [](const search::LayerCosts& a, const search::LayerCosts& b) {
    const auto equal = [](const std::vector<search::VariantCost>& x, const std::vector<search::VariantCost>& y) {
      return std::equal(x.begin(), x.end(), y.begin(), y.end(), [](const auto& u, const auto& v) {
        return u.variant == v.variant && u.decode_s == v.decode_s && u.prefill_s == v.prefill_s &&
               u.weight_bytes == v.weight_bytes;
      });
    };
    return equal(a.attention, b.attention) && equal(a.ffn, b.ffn);
  };
  std::vector<bool> printed(table.layers.size(), false);
  std::printf("| layers | half | variant | decode ms | prefill ms | weights | KV bytes/token |\n");
  std::printf("| --- | --- | --- | ---: | ---: | ---: | ---: |\n");
  for (std::size_t i = 0; i < table.layers.size(); ++i) {
    if (printed[i]) continue;
    std::string layers;
    for (std::size_t j = i; j < table.layers.size(); ++j)
      if (!printed[j] && same(table.layers[i], table.layers[j])) {
        printed[j] = true;
        layers += (layers.empty() ? "" : ",") + std::to_string(j);
      }
    if (layers.size() > 24) layers = layers.substr(0, 21) + "...";
    for (const search::Half half : {search::Half::attention, search::Half::ffn})
      for (const search::VariantCost& cost : table.layers[i].of(half))
        std::printf("| %s | %s | %s | %s | %s | %s | %lld |\n", layers.c_str(),
                    std::string(search::half_name(half)).c_str(), cost.variant.name(half).c_str(),
                    milliseconds_text(cost.decode_s).c_str(), milliseconds_text(cost.prefill_s).c_str(),
                    bytes_text(static_cast<std::uint64_t>(cost.weight_bytes)).c_str(),
                    static_cast<long long>(cost.kv_bytes_per_token));
  }
  std::printf("\n| check | decode ms predicted | measured | error | prefill ms predicted | measured | error |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  const auto error = [](double predicted, double measured) {
    char text[32];
    std::snprintf(text, sizeof text, "%+.1f%%", measured > 0 ? 100.0 * (predicted - measured) / measured : 0.0);
    return std::string(text);
  };
  for (const search::LatencyCheck& check : table.checks)
    std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", check.name.c_str(),
                milliseconds_text(check.predicted_decode_s).c_str(), milliseconds_text(check.measured_decode_s).c_str(),
                error(check.predicted_decode_s, check.measured_decode_s).c_str(),
                milliseconds_text(check.predicted_prefill_s).c_str(),
                milliseconds_text(check.measured_prefill_s).c_str(),
                error(check.predicted_prefill_s, check.measured_prefill_s).c_str());
}

// Where `runner` times: the GPU's name for a CUDA runner, else the CPU's.
template <class Runner>
search::TimingDevice timing_device(const Runner& runner) {
  if constexpr (requires { runner.gpu; }) return {runner.device_name(), runner.threads()};
  else return {search::host_cpu_name(), runner.threads()};
}

template <class Runner>
int measure_and_write_latency(const std::string& model_path, const LatencyOptions& options) {
  RunOptions run;
  run.model = model_path;
  run.dtype = options.dtype;
  run.threads = options.threads;
  run.context = std::max(options.settings.prefill_tokens, options.settings.context + options.settings.decode_steps);
  Runner runner(run);
  const io::ModelDescription& model = runner.loaded.description();
  const std::vector<search::ElasticLayerSets> sets = latency_variant_sets(model_path, model);
  std::fprintf(stderr, "latency: loaded %s in %.1f s (%s, %u threads)\n", model_path.c_str(), runner.load_seconds,
               options.dtype.c_str(), runner.threads());
  std::optional<Progress> progress;
  const search::LatencyTable table = search::measure_latency_table(
      model, runner.loaded.weights.views(),
      [&runner](int capacity, const model::SubnetworkConfig& config) { return runner.sequence(capacity, config); },
      timing_device(runner), sets, options.settings, [&](long done, long total, const std::string& what) {
        if (!progress) progress.emplace("latency", total);
        progress->update(done, what);
      });
  const std::filesystem::path output =
      options.output.empty() ? model_folder(model_path) / "latency_table.json" : std::filesystem::path(options.output);
  search::write_latency_table(output, table);
  print_latency_table(table, options.dtype);
  std::printf("\nwritten to %s\n", output.string().c_str());
  return 0;
}

// run_latency with --device cuda (cuda_commands.cu; only in builds with CUDA).
int run_latency_on_cuda(const std::string& model_path, const LatencyOptions& options);

inline int run_latency(const std::string& model_path, const LatencyOptions& options) {
  if (options.device == "cuda") {
    require_quant_on_host(options.dtype, options.device);
#ifdef ELASTIC_CLI_CUDA
    return run_latency_on_cuda(model_path, options);
#else
    throw cuda_not_built();
#endif
  }
  if (options.dtype == "quant") return measure_and_write_latency<QuantizedHostRunner<float>>(model_path, options);
  if (options.dtype == "bf16") return measure_and_write_latency<HostRunner<bfloat16_t>>(model_path, options);
  return measure_and_write_latency<HostRunner<float>>(model_path, options);
}

}  // namespace elastic::cli
