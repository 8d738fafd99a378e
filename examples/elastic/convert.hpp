// `elastic convert`: turns a model into an elastic checkpoint. Runs the
// model in float32 over windows of a calibration text, ranks every SwiGLU
// neuron and query head by Minitron's and FLAP's importance, permutes the
// tied weights into importance order, fits a linear replacement for every
// GQA attention and SwiGLU FFN in closed form (ridge least squares of the
// block's output on its normed input over the first --fit-tokens
// calibration tokens, search/linear_fit.hpp; in turns of at most
// --fit-memory of moments, search/linear_maps.hpp) and writes the Hugging Face
// folder with the maps and the elastic metadata
// (search/elastic_checkpoint.hpp). With a validation
// text (never the calibration text), it compares the two rankings there:
// the perplexity of both permuted models at uniform cuts (every SwiGLU at
// 75% and 50% of its width; every GQA layer with one KV group fewer), and
// --ranking auto ranks neurons by the method whose MLP cuts lose less and
// heads by the method whose head cut loses less. Progress on stderr.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "elastic/host/executor.hpp"
#include "elastic/io/model_source.hpp"
#include "elastic/io/tokenizer.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_sequence.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/model/perplexity.hpp"
#include "elastic/search/calibration_pass.hpp"
#include "elastic/search/elastic_checkpoint.hpp"
#include "elastic/search/importance.hpp"
#include "elastic/search/linear_fit.hpp"
#include "elastic/search/linear_maps.hpp"
#include "elastic/search/permutation.hpp"
#include "format.hpp"
#include "perplexity.hpp"
#include "progress.hpp"
#include "run_options.hpp"

namespace elastic::cli {

struct ConvertOptions {
  std::string calibration;
  std::string validation;
  std::string output;
  std::string ranking = "auto";
  std::string dtype = "f32";
  long tokens = 65536;
  long fit_tokens = 8192;
  std::vector<double> mlp_fractions{std::begin(search::default_mlp_fractions), std::end(search::default_mlp_fractions)};
  bool linear = true;
  double ridge = search::default_relative_ridge;
  std::int64_t fit_memory = std::int64_t{4} << 30;
  int window = 512;
  int validation_windows = 8;
  unsigned threads = 0;

  void add_to(CLI::App& command) {
    command.add_option("--calibration", calibration, "the text importance is collected on")
        ->required()
        ->check(CLI::ExistingFile);
    command.add_option("--validation", validation, "a different text the rankings are compared on (needed by "
                       "--ranking auto)")
        ->check(CLI::ExistingFile);
    command.add_option("-o,--output", output, "the elastic checkpoint folder to create")->required();
    command.add_option("--ranking", ranking, "neuron and head ranking: minitron, flap, or auto (for each kind of "
                       "unit, the one that loses less on --validation)")
        ->check(CLI::IsMember({"auto", "minitron", "flap"}))
        ->capture_default_str();
    command.add_option("--dtype", dtype, "tensor type written: f32 or bf16")
        ->check(CLI::IsMember({"f32", "bf16"}))
        ->capture_default_str();
    command.add_option("--tokens", tokens, "calibration tokens at most (whole windows)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("--fit-tokens", fit_tokens, "calibration tokens the linear replacements are fitted on (the "
                       "first ones, whole windows)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("--ridge", ridge, "relative ridge strength of the linear fits")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    command.add_option("--fit-memory", fit_memory, "bytes the fit moments may hold at once (e.g. 4GiB, 512MiB); "
                       "when every half's do not fit, the halves are fitted in turns, a pass over the fit tokens each")
        ->transform(CLI::AsSizeValue(false))
        ->check(CLI::PositiveNumber)
        ->default_str("4GiB");
    command.add_flag("!--no-linear", linear, "store no linear replacements");
    command.add_option("--mlp-fractions", mlp_fractions, "the MLP widths every SwiGLU layer is meant to run at, as "
                       "fractions of its width, decreasing from 1 (each rounded down to whole 32-neuron blocks)")
        ->delimiter(',')
        ->capture_default_str();
    command.add_option("-c,--ctx", window, "tokens per calibration and validation window")
        ->check(CLI::Range(2, 1 << 20))
        ->capture_default_str();
    command.add_option("--validation-windows", validation_windows, "validation windows per perplexity")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-t,--threads", threads, "host threads (0: every hardware thread)")->capture_default_str();
  }
};

namespace convert_detail {

// The uniform cuts the rankings are compared at, and their names.
struct Cut {
  std::string name;
  model::SubnetworkConfig config;
  bool heads = false;  // a cut of heads rather than of MLP neurons
};

inline std::vector<Cut> uniform_cuts(const io::ModelDescription& model) {
  std::vector<Cut> cuts;
  for (const int quarters : {3, 2}) {
    Cut& cut =
        cuts.emplace_back(Cut{"MLP " + std::to_string(25 * quarters) + "%", model::SubnetworkConfig::full(model), false});
    for (std::size_t i = 0; i < model.layers.size(); ++i)
      if (model.layers[i].ffn == io::FfnKind::swiglu)
        cut.config.layers[i].mlp_width = model.layers[i].intermediate * quarters / 4 / 32 * 32;
  }
  Cut heads{"one KV group fewer", model::SubnetworkConfig::full(model), true};
  bool any = false;
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    const io::LayerPlan& plan = model.layers[i];
    if (plan.attention != io::AttentionKind::gqa || plan.kv_heads < 2) continue;
    heads.config.layers[i].heads = model.heads - model.heads / plan.kv_heads;
    any = true;
  }
  if (any) cuts.push_back(std::move(heads));
  return cuts;
}

inline std::vector<int> read_tokens(const io::Tokenizer& tokenizer, const std::string& path) {
  return tokenizer.encode(read_text_file(path), /*add_special=*/false);
}

}  // namespace convert_detail

inline int run_convert(const std::string& model_path, const ConvertOptions& options) {
  using namespace convert_detail;
  const auto start = std::chrono::steady_clock::now();
  const io::ModelSource source = io::ModelSource::open(model_path);
  require(source.tokenizer().has_value(), model_path, ": the model files carry no tokenizer");
  require(options.validation.empty() ||
              std::filesystem::absolute(options.validation) != std::filesystem::absolute(options.calibration),
          "--validation must be a different text from --calibration");
  require(options.ranking != "auto" || !options.validation.empty(),
          "--ranking auto compares the rankings on a --validation text; give one, or name the ranking");
  std::error_code exists_error;
  require(!std::filesystem::exists(options.output, exists_error), options.output,
          ": already exists; remove it or choose another output folder");
  const io::Tokenizer tokenizer = io::Tokenizer::from_spec(*source.tokenizer());
  const model::HostWeights<float> weights(source);
  const io::ModelDescription& model = weights.description();
  search::default_layer_sets(model, options.mlp_fractions);  // refuses bad fractions before the long pass
  host::Executor executor(options.threads);

  const std::string calibration_text = read_text_file(options.calibration);
  const std::vector<int> tokens = tokenizer.encode(calibration_text, /*add_special=*/false);
  const auto window = static_cast<std::size_t>(options.window);
  require(tokens.size() >= window, options.calibration, ": ", tokens.size(),
          " tokens do not fill one window of ", window, " (--ctx)");
  const std::size_t windows = std::min(tokens.size(), static_cast<std::size_t>(options.tokens)) / window;
  require(windows > 0, "--tokens ", options.tokens, " is less than one window of ", window, " (--ctx)");
  std::fprintf(stderr, "loaded %s in %.1f s; calibrating on %zu windows of %zu tokens of %s\n", model_path.c_str(),
               seconds_since(start), windows, window, options.calibration.c_str());

  // Importance over every calibration window; the moments of the linear
  // fits over the first fit_windows of them.
  const std::size_t fit_windows =
      options.linear ? std::max<std::size_t>(1, std::min(windows, static_cast<std::size_t>(options.fit_tokens) / window))
                     : 0;
  // When the moments of every half fit in --fit-memory, they are gathered in
  // the same pass; else the maps are fitted in turns after it.
  using FitTurns = std::vector<std::vector<search::LayerHalf>>;
  const FitTurns fit_turns = options.linear ? search::plan_fit_turns(model, options.fit_memory) : FitTurns{};
  const bool fit_in_pass = fit_turns.size() == 1;
  search::CalibrationPass pass(model, weights.views(), executor, options.window);
  search::ImportanceCollector collector(model, weights.views(), executor, options.window);
  search::BlockMoments moments = fit_in_pass ? search::BlockMoments::for_model(model) : search::BlockMoments{};
  {
    Progress progress("calibrate", static_cast<long>(windows));
    for (std::size_t w = 0; w < windows; ++w) {
      pass.run(std::span(tokens).subspan(w * window, window), [&](const search::BlockObservation& block) {
        collector(block);
        if (fit_in_pass && w < fit_windows) moments.add(block);
      });
      progress.update(static_cast<long>(w + 1), "");
    }
  }
  // The maps act on the hidden stream, which the permutation below leaves
  // in place, so the ones fitted on the original model serve the permuted one.
  search::LinearMaps maps;
  if (fit_in_pass) {
    maps = search::LinearMaps::fit(moments, options.ridge);
    moments = {};
  } else if (options.linear) {
    std::fprintf(stderr, "the fit moments of every half take %s, more than --fit-memory: fitting in %zu turns\n",
                 bytes_text(static_cast<std::uint64_t>(search::moment_bytes(model)) *
                            search::fittable_halves(model).size())
                     .c_str(),
                 fit_turns.size());
    Progress progress("fit", static_cast<long>(fit_turns.size()));
    maps = search::fit_linear_maps(pass, tokens, window, fit_windows, options.ridge, fit_turns,
                                   [&](long done, long) { progress.update(done, ""); });
  }

  // --ranking names one method for both kinds of unit; auto picks each
  // kind's method on the validation text: neurons by the MLP cuts, heads by
  // the head cut.
  search::Ranking chosen;
  if (options.ranking != "auto") {
    const search::RankingMethod method = search::parse_ranking_method(options.ranking);
    chosen = {method, method};
  }
  if (!options.validation.empty()) {
    const std::vector<int> held_out = read_tokens(tokenizer, options.validation);
    const std::vector<Cut> cuts = uniform_cuts(model);
    const auto perplexity = [&](const model::ModelWeights<float>& views, const model::SubnetworkConfig& config) {
      model::Decoder<float> decoder(model, views);
      model::HostSequence<float> sequence(decoder, executor, options.window, config);
      return model::score_windows(sequence, held_out, window, static_cast<std::size_t>(options.validation_windows),
                                  [](const model::PerplexityScore&) {})
          .perplexity();
    };
    const double parent = perplexity(weights.views(), model::SubnetworkConfig::full(model));
    std::printf("validation perplexity on %s (%d windows of %zu): %.4f at full size\n\n",
                options.validation.c_str(), options.validation_windows, window, parent);
    std::printf("| cut | minitron | flap |\n|---|---:|---:|\n");
    // Per method, the summed log perplexity ratio of the MLP cuts and of the head cut.
    double mlp_loss[2] = {0.0, 0.0}, head_loss[2] = {0.0, 0.0};
    std::vector<std::vector<double>> table(cuts.size());
    for (const search::RankingMethod method : {search::RankingMethod::minitron, search::RankingMethod::flap}) {
      const search::PermutedWeights permuted(
          model, weights.views(), search::ModelPermutation::by_importance(model, collector.layers({method, method})));
      for (std::size_t c = 0; c < cuts.size(); ++c) {
        const double value = perplexity(permuted.views(), cuts[c].config);
        table[c].push_back(value);
        (cuts[c].heads ? head_loss : mlp_loss)[static_cast<int>(method)] += std::log(value / parent);
      }
    }
    for (std::size_t c = 0; c < cuts.size(); ++c)
      std::printf("| %s | %.4f (%+.1f%%) | %.4f (%+.1f%%) |\n", cuts[c].name.c_str(), table[c][0],
                  100.0 * (table[c][0] / parent - 1.0), table[c][1], 100.0 * (table[c][1] / parent - 1.0));
    const auto better = [](const double* loss) {
      return loss[1] < loss[0] ? search::RankingMethod::flap : search::RankingMethod::minitron;
    };
    const search::Ranking best{better(mlp_loss), better(head_loss)};
    std::printf("\non the validation text, %s ranks neurons better and %s ranks heads better\n",
                std::string(search::ranking_name(best.neurons)).c_str(),
                std::string(search::ranking_name(best.heads)).c_str());
    if (options.ranking == "auto") chosen = best;
  }

  const std::vector<search::LayerImportance> importance = collector.layers(chosen);
  const search::PermutedWeights permuted(model, weights.views(),
                                         search::ModelPermutation::by_importance(model, importance));
  const search::CalibrationRecord calibration{std::filesystem::path(options.calibration).filename().string(),
                                              search::fnv1a64_hex(calibration_text),
                                              static_cast<std::int64_t>(windows * window), options.window};
  const search::ModelWithLinearMaps written(model, permuted.views(), maps);
  const search::LinearFitRecord linear_fit{static_cast<std::int64_t>(fit_windows * window),
                                           options.linear ? options.ridge : 0.0};
  if (options.linear)
    std::fprintf(stderr, "fitted the linear replacements on %lld calibration tokens (relative ridge %g)\n",
                 static_cast<long long>(linear_fit.tokens), options.ridge);
  search::write_elastic_checkpoint(
      options.output, written.model, written.weights, *source.tokenizer(),
      search::ElasticMetadata::with_default_sets(written.model, chosen, calibration, importance, linear_fit,
                                                 options.mlp_fractions),
      options.dtype == "bf16" ? io::TensorType::bf16 : io::TensorType::f32);
  std::printf("wrote %s (neurons ranked by %s, heads by %s, %s) in %.1f s\n", options.output.c_str(),
              std::string(search::ranking_name(chosen.neurons)).c_str(),
              std::string(search::ranking_name(chosen.heads)).c_str(), options.dtype.c_str(), seconds_since(start));
  return 0;
}

}  // namespace elastic::cli
