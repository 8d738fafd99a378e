// What every model-running subcommand of the `elastic` CLI shares: the model
// path, element type, device, threads, context and sub-network (a --config
// file, then per-flag overrides), their CLI11 registration, and the loaded
// model they produce: the files, the weights dequantised once into the
// chosen type, the decoder and the tokenizer, with the load time. A flag that does not fit the model is one
// clear error before anything runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "elastic/core/error.hpp"
#include "elastic/host/executor.hpp"
#include "elastic/io/model_source.hpp"
#include "elastic/io/tokenizer.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "elastic/model/subnetwork_config_file.hpp"

namespace elastic::cli {

struct RunOptions {
  std::string model;
  std::string dtype = "f32";
  std::string device = "cpu";
  unsigned threads = 0;
  int context = 2048;
  int mlp_width = 0;  // 0: every SwiGLU layer at its stored width
  int heads = 0;      // 0: every GQA layer with all its query heads
  std::vector<int> skip_layers;
  std::string config_file;  // a SubnetworkConfig JSON file; the flags above apply on top of it

  void add_to(CLI::App& command) {
    command.add_option("--dtype", dtype, "weights and activations: f32 or bf16 (computed in f32 either way)")
        ->check(CLI::IsMember({"f32", "bf16"}))
        ->capture_default_str();
    command.add_option("--device", device, "executor: cpu (cuda: not yet in the CLI)")
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
    command.add_option("--config", config_file, "a sub-network file: {\"layers\": [{\"heads\", \"mlp_width\", "
                       "\"skip_attention\", \"skip_ffn\"}, ...]}")
        ->check(CLI::ExistingFile);
  }

  // The sub-network the flags describe, for `description`.
  model::SubnetworkConfig subnetwork(const io::ModelDescription& description) const {
    model::SubnetworkConfig config = config_file.empty() ? model::SubnetworkConfig::full(description)
                                                         : model::read_subnetwork_config(config_file, description);
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

// A model ready to run on the host: T is the element type --dtype chose.
template <ElementType T>
struct LoadedModel {
  explicit LoadedModel(const RunOptions& options)
      : start(std::chrono::steady_clock::now()),
        source(io::ModelSource::open(options.model)),
        weights(source),
        decoder(weights.description(), weights.views()),
        executor(options.threads),
        config(options.subnetwork(weights.description())) {
    require(source.tokenizer().has_value(), options.model, ": the model files carry no tokenizer");
    tokenizer.emplace(io::Tokenizer::from_spec(*source.tokenizer()));
    config.validate(weights.description(), math::vector_width<T>);
    load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  std::chrono::steady_clock::time_point start;
  io::ModelSource source;
  model::HostWeights<T> weights;
  model::Decoder<T> decoder;
  host::Executor executor;
  model::SubnetworkConfig config;
  std::optional<io::Tokenizer> tokenizer;
  double load_seconds = 0.0;
};

// Calls run.template operator()<T>() with T the element type of --dtype,
// after checking the device.
template <class Run>
int with_element_type(const RunOptions& options, Run&& run) {
  require(options.device == "cpu", "--device ", options.device,
          ": the CLI runs models on the host executor only for now (use --device cpu)");
  if (options.dtype == "bf16") return run.template operator()<bfloat16_t>();
  return run.template operator()<float>();
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace elastic::cli
