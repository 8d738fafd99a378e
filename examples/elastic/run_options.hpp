// What every model-running subcommand of the `elastic` CLI shares: the model
// path, element type, device, threads, context and sub-network (a budget
// table's entry for --budget, or a --config file, then per-flag overrides),
// their CLI11 registration, the loaded model
// (the files, the weights dequantised once into the chosen type, the
// tokenizer) and the host runner that pairs it with an executor and a
// decoder (cuda_runner.cuh is the CUDA one). A flag that does not fit the model is one
// clear error before anything runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "elastic/core/error.hpp"
#include "elastic/host/executor.hpp"
#include "elastic/io/model_source.hpp"
#include "elastic/io/tokenizer.hpp"
#include "elastic/model/budget_table.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_sequence.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/model/quantized_host_weights.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "elastic/model/subnetwork_config_file.hpp"

namespace elastic::cli {

// The folder of a model: the path itself when it is a folder, else the
// folder holding the file (a GGUF file, or a checkpoint's config.json); the
// search's files (block library, latency table, budget table) live there.
inline std::filesystem::path model_folder(const std::string& model_path) {
  const std::filesystem::path path(model_path);
  return std::filesystem::is_directory(path) ? path : path.parent_path();
}

// Refuses --dtype quant off the host executor, the only one that computes
// on quantised blocks.
inline void require_quant_on_host(const std::string& dtype, const std::string& device) {
  require(dtype != "quant" || device == "cpu", "--dtype quant computes on the file's quantised blocks on the "
          "host executor only: use --device cpu, or --dtype bf16 or f32 with --device cuda");
}

// What --device cuda fails with in a build without CUDA.
inline Error cuda_not_built() {
  return Error("--device cuda: this elastic was built without CUDA (configure with nvcc and ELASTIC_ENABLE_CUDA=ON); "
               "use --device cpu");
}

struct RunOptions {
  std::string model;
  std::string dtype = "auto";
  std::string device = "cpu";
  unsigned threads = 0;
  int context = 2048;
  int mlp_width = 0;  // 0: every SwiGLU layer at its stored width
  int heads = 0;      // 0: every GQA layer with all its query heads
  std::vector<int> skip_layers;
  std::string config_file;  // a SubnetworkConfig JSON file; the flags above apply on top of it
  std::optional<double> budget;  // instead of config_file: the budget table's entry for this fraction
  std::string budget_table;      // the table --budget reads; empty: budgets.json beside the model

  void add_to(CLI::App& command) {
    command.add_option("--dtype", dtype, "weights and activations: f32, bf16, quant (cpu: the file's quantised "
                       "blocks, 8-bit activations), or auto (cpu: quant for a file whose matrices all are Q4_0, "
                       "Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K, else f32; cuda: bf16); f32 and bf16 compute in f32")
        ->check(CLI::IsMember({"auto", "f32", "bf16", "quant"}))
        ->capture_default_str();
    command.add_option("--device", device, "executor: cpu or cuda (when built with CUDA)")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
    command.add_option("-t,--threads", threads, "host threads (0: every hardware thread)")->capture_default_str();
    command.add_option("-c,--ctx", context, "context positions the KV cache holds")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("--mlp-width", mlp_width, "run every SwiGLU FFN at its first N neurons (0: stored width)")
        ->check(CLI::NonNegativeNumber);
    command.add_option("--heads", heads, "run every GQA layer with its first N query heads (0: all)")
        ->check(CLI::NonNegativeNumber);
    command.add_option("--skip-layers", skip_layers, "layers whose attention and FFN are skipped")->delimiter(',');
    CLI::Option* config_option =
        command.add_option("--config", config_file, "a sub-network file: {\"layers\": [{\"heads\", \"mlp_width\", "
                           "\"skip_attention\", \"skip_ffn\"}, ...]}")
            ->check(CLI::ExistingFile);
    CLI::Option* budget_option =
        command.add_option("--budget", budget, "start from the budget table's sub-network for this fraction of the "
                           "full model's latency (the entry with the largest fraction not above it)")
            ->excludes(config_option);
    command.add_option("--budget-table", budget_table, "the budget table --budget reads (default: budgets.json in "
                       "the model's folder, or beside the model file)")
        ->needs(budget_option);
  }

  // The table --budget reads: --budget-table, else budgets.json in the
  // model's folder (a folder or its config.json) or beside the model file.
  std::filesystem::path budget_table_path() const {
    if (!budget_table.empty()) return budget_table;
    return model_folder(model) / "budgets.json";
  }

  // --dtype auto: on the host, the file's own blocks when every weight
  // matrix is in a format the host computes on (a quantised GGUF file runs
  // at its own size, as llama.cpp runs it), else float32 (the host computes
  // in float32 and pays a conversion per bfloat16 load); bfloat16 on CUDA
  // (half the bytes). --dtype quant runs on the host executor only.
  void resolve_dtype() {
    if (dtype == "auto")
      dtype = device == "cuda" ? "bf16" : model::computes_on_blocks(io::ModelSource::open(model)) ? "quant" : "f32";
    require_quant_on_host(dtype, device);
  }

  // The sub-network the per-layer flags start from, for `description`: the
  // budget table's entry for --budget (which one is said on stderr), the
  // --config file, or the model as stored.
  model::SubnetworkConfig starting_subnetwork(const io::ModelDescription& description) const {
    if (!budget) {
      return config_file.empty() ? model::SubnetworkConfig::full(description)
                                 : model::read_subnetwork_config(config_file, description);
    }
    const std::filesystem::path path = budget_table_path();
    require(std::filesystem::is_regular_file(path), "--budget: no budget table at ", path.string(), " (",
            budget_table.empty() ? "budgets.json beside the model" : "--budget-table",
            "); `elastic search` writes one, or give its path with --budget-table FILE");
    const model::BudgetTable table = model::read_budget_table(path, description);
    const model::BudgetEntry& entry = table.entry_for(*budget);
    std::fprintf(stderr, "budget %g: the entry for fraction %g of %s, %s latency %.3f ms of the full %.3f ms\n",
                 *budget, entry.fraction, path.string().c_str(), table.phase().c_str(), entry.latency_s * 1e3,
                 table.full_latency_s() * 1e3);
    return entry.config;
  }

  // `config` with --heads, --mlp-width and --skip-layers applied on top.
  model::SubnetworkConfig with_layer_flags(model::SubnetworkConfig config) const {
    for (std::size_t i = 0; i < config.layers.size(); ++i) {
      model::LayerChoice& layer = config.layers[i];
      if (heads > 0 && layer.heads > 0) layer.heads = heads;
      if (mlp_width > 0 && layer.mlp_width > 0) layer.mlp_width = mlp_width;
    }
    for (int layer : skip_layers) {
      require(layer >= 0 && static_cast<std::size_t>(layer) < config.layers.size(), "--skip-layers: layer ", layer,
              " is not in [0, ", config.layers.size(), ")");
      config.layers[static_cast<std::size_t>(layer)].skip_attention = true;
      config.layers[static_cast<std::size_t>(layer)].skip_ffn = true;
    }
    return config;
  }
};

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A model's files loaded for running: the source, its weights (Weights:
// dequantised once into T, the element type --dtype chose, or kept in the
// file's quantised blocks), the tokenizer and the sub-network of the flags
// (and the one the per-layer flags started from), with the time loading
// started. The starting sub-network is read before the weights, so a
// missing or wrong budget table fails at once.
template <ElementType T, class Weights = model::HostWeights<T>>
struct LoadedModel {
  explicit LoadedModel(const RunOptions& options)
      : start(std::chrono::steady_clock::now()),
        source(io::ModelSource::open(options.model)),
        starting_config(options.starting_subnetwork(source.description())),
        weights(source),
        config(options.with_layer_flags(starting_config)) {
    require(source.tokenizer().has_value(), options.model, ": the model files carry no tokenizer");
    tokenizer.emplace(io::Tokenizer::from_spec(*source.tokenizer()));
    config.validate(weights.description(), math::vector_width<T>);
  }

  const io::ModelDescription& description() const { return weights.description(); }

  std::chrono::steady_clock::time_point start;
  io::ModelSource source;
  model::SubnetworkConfig starting_config;  // --budget's entry, --config's file or the stored model
  Weights weights;
  model::SubnetworkConfig config;
  std::optional<io::Tokenizer> tokenizer;
};

// A loaded model on the host executor. Every runner (this one, CudaRunner)
// offers what the subcommands use: Element (T), `loaded` (the
// LoadedModel), sequence(capacity, config), device_name(), threads()
// and load_seconds.
template <ElementType T, class Weights = model::HostWeights<T>>
struct HostRunnerOf {
  using Element = T;
  using MatrixView = std::remove_cvref_t<decltype(std::declval<const Weights&>().views().lm_head)>;
  explicit HostRunnerOf(const RunOptions& options)
      : loaded(options),
        executor(options.threads),
        decoder(loaded.description(), loaded.weights.views()),
        load_seconds(seconds_since(loaded.start)) {}

  using Sequence = model::HostSequence<T, AnyWidth, MatrixView>;
  Sequence sequence(int capacity, const model::SubnetworkConfig& config) {
    return Sequence(decoder, executor, capacity, config);
  }
  std::string device_name() const { return "cpu"; }
  unsigned threads() const { return executor.threads(); }

  LoadedModel<T, Weights> loaded;
  host::Executor executor;
  model::Decoder<T, AnyWidth, MatrixView> decoder;
  double load_seconds;
};

// Weights dequantised into T (--dtype f32 / bf16).
template <ElementType T>
using HostRunner = HostRunnerOf<T>;

// Weights kept in the file's quantised blocks (--dtype quant). The kernels
// quantise the activations to 8 bits per block whatever their storage, so
// they are kept in float32 for every T the command dispatch asks for.
template <ElementType>
using QuantizedHostRunner = HostRunnerOf<float, model::QuantizedHostWeights<float>>;

}  // namespace elastic::cli
