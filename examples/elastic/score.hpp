// `elastic score`: the block library of an elastic checkpoint (Puzzle's
// replace-one scoring, search/block_scoring.hpp). Every variant of every
// layer half — the widths and head counts the checkpoint's "elastic" sets
// name, the linear map it stores for the half (fitted in closed form by
// `elastic convert`, with Puzzle's untrained W_o W_v init beside it for
// attention), and the skipped half — is put into the parent alone and
// scored on calibration windows by KL(parent || variant) and next-token
// loss. The scored windows start after the calibration tokens the maps were
// fitted on, so the maps are scored on rows they did not see. Writes
// block_library.json; prints a per-layer summary and how the fitted maps
// compare with the no-op and the init. Progress on stderr.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "elastic/host/executor.hpp"
#include "elastic/io/model_source.hpp"
#include "elastic/io/tokenizer.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/search/block_library.hpp"
#include "elastic/search/block_scoring.hpp"
#include "elastic/search/elastic_checkpoint.hpp"
#include "perplexity.hpp"
#include "progress.hpp"
#include "run_options.hpp"

namespace elastic::cli {

struct ScoreOptions {
  std::string calibration;
  std::string output;
  int windows = 4;
  int window = 256;
  bool linear_init = true;
  unsigned threads = 0;

  void add_to(CLI::App& command) {
    command.add_option("--calibration", calibration, "the calibration text the variants are scored on")
        ->required()
        ->check(CLI::ExistingFile);
    command.add_option("-o,--output", output, "the block library to write (default: block_library.json in the "
                       "checkpoint's folder)");
    command.add_option("--windows", windows, "windows each variant is scored on")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-c,--ctx", window, "tokens per window")->check(CLI::Range(2, 1 << 20))->capture_default_str();
    command.add_flag("!--no-linear-init", linear_init, "leave out Puzzle's untrained linear attention init");
    command.add_option("-t,--threads", threads, "host threads (0: every hardware thread)")->capture_default_str();
  }
};

namespace score_detail {

// The checkpoint's "elastic" sets, or the default ones for a plain model.
inline std::vector<search::ElasticLayerSets> elastic_sets(const std::string& model_path,
                                                          const io::ModelDescription& model) {
  if (auto sets = search::model_layer_sets(model_path, model)) return *sets;
  std::fprintf(stderr, "%s is not an elastic checkpoint (no \"elastic\" key in config.json): scoring the default "
               "sets on the stored unit order\n", model_path.c_str());
  return search::default_layer_sets(model);
}

}  // namespace score_detail

inline int run_score(const std::string& model_path, const ScoreOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const io::ModelSource source = io::ModelSource::open(model_path);
  require(source.tokenizer().has_value(), model_path, ": the model files carry no tokenizer");
  const io::Tokenizer tokenizer = io::Tokenizer::from_spec(*source.tokenizer());
  const model::HostWeights<float> weights(source);
  const io::ModelDescription& model = weights.description();
  const std::vector<search::ElasticLayerSets> sets = score_detail::elastic_sets(model_path, model);
  const std::string text = read_text_file(options.calibration);
  const std::vector<int> tokens = tokenizer.encode(text, /*add_special=*/false);
  const auto window = static_cast<std::size_t>(options.window);
  // The scored windows follow the tokens the linear maps were fitted on.
  const auto fit_tokens = static_cast<std::size_t>(search::model_linear_fit(model_path).tokens);
  const std::size_t needed = fit_tokens + static_cast<std::size_t>(options.windows) * window;
  require(tokens.size() >= needed, options.calibration, ": ", tokens.size(), " tokens, expected at least ", needed,
          " for the ", fit_tokens, " the linear maps were fitted on and ", options.windows, " scored windows of ",
          window);
  std::vector<std::vector<int>> scored;
  for (std::size_t w = 0; w < static_cast<std::size_t>(options.windows); ++w)
    scored.emplace_back(tokens.begin() + static_cast<std::ptrdiff_t>(fit_tokens + w * window),
                        tokens.begin() + static_cast<std::ptrdiff_t>(fit_tokens + (w + 1) * window));
  host::Executor executor(options.threads);
  std::optional<Progress> progress;
  search::BlockLibrary library = search::score_block_library(
      model, weights.views(), executor, sets, scored, {.linear_init = options.linear_init},
      [&](std::size_t done, std::size_t total) {
        if (!progress) progress.emplace("score", static_cast<long>(total));
        progress->update(static_cast<long>(done), "");
      });
  library.calibration = {std::filesystem::path(options.calibration).filename().string(), search::fnv1a64_hex(text),
                         static_cast<std::int64_t>(needed),
                         options.window};

  const std::filesystem::path output = options.output.empty() ? model_folder(model_path) / "block_library.json"
                                                                : std::filesystem::path(options.output);
  search::write_block_library(output, library);

  // Per layer: KL of the cheapest prefix, the skip, and the linear maps.
  std::printf("parent next-token loss %.4f over %lld positions\n\n", library.parent_lm_loss,
              static_cast<long long>(library.scored_tokens));
  std::printf("| layer | half | variant | KL | loss | fit error |\n|---:|---|---|---:|---:|---:|\n");
  double fitted_better_than_none = 0, fitted_better_than_init = 0, fitted = 0, inits = 0;
  for (std::size_t i = 0; i < library.layers.size(); ++i)
    for (const search::Half half : {search::Half::attention, search::Half::ffn}) {
      const std::vector<search::ScoredVariant>& variants = library.layers[i].of(half);
      double none_kl = NAN, linear_kl = NAN, init_kl = NAN;
      for (const search::ScoredVariant& variant : variants) {
        if (variant.kind == search::VariantKind::none) none_kl = variant.kl;
        if (variant.kind == search::VariantKind::linear) linear_kl = variant.kl;
        if (variant.kind == search::VariantKind::linear_init) init_kl = variant.kl;
        if (variant.kind == search::VariantKind::prefix && variant.kl == 0.0) continue;
        std::printf("| %zu | %s | %s | %.5f | %.4f | %s |\n", i, std::string(search::half_name(half)).c_str(),
                    variant.name(half).c_str(), variant.kl, variant.lm_loss,
                    std::isfinite(variant.fit_error) ? std::to_string(variant.fit_error).c_str() : "");
      }
      if (std::isfinite(linear_kl)) {
        fitted += 1;
        fitted_better_than_none += linear_kl < none_kl;
      }
      if (std::isfinite(init_kl)) {
        inits += 1;
        fitted_better_than_init += linear_kl < init_kl;
      }
    }
  if (fitted > 0)
    std::printf("\nfitted linear maps: lower KL than the no-op in %.0f of %.0f halves, than Puzzle's W_o W_v init in "
                "%.0f of %.0f attention halves\n",
                fitted_better_than_none, fitted, fitted_better_than_init, inits);
  std::printf("wrote %s in %.1f s\n", output.string().c_str(), seconds_since(start));
  return 0;
}

}  // namespace elastic::cli
