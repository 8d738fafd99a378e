// `elastic search`: the architecture of an elastic checkpoint for each
// latency budget, solved exactly (Puzzle's MIP through COIN-OR CBC,
// search/block_choice.hpp) over the block library (`elastic score`) and the
// measured latency table (`elastic latency`), both read from the
// checkpoint's folder by default. For every budget (a fraction of the full
// model's latency in the --phase, decode by default: --latency, plus a sweep
// for the front), the
// selection of least summed KL divergence within the latency (and
// --memory, KV cache included) budget. Then every selection and the
// baselines — the same width and head count in every layer, and whole
// layers dropped least-contributing first — are measured: latency timed
// directly, perplexity on the --evaluation text (which must be neither
// the calibration nor the validation text), on --device (the executor the
// latency table was measured on); with --refine, the budgets are solved
// again when the selections measure off the table's predictions as a whole
// (fit_budgets_to_measurement). Writes budgets.json (what
// --budget runs), pareto.svg and pareto.md into the checkpoint's folder (or
// --output-dir), and prints the Pareto table with, for each budget, the best
// baseline at no more measured latency.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "elastic/io/model_source.hpp"
#include "elastic/io/temporary_file.hpp"
#include "elastic/io/tokenizer.hpp"
#include "elastic/model/budget_table.hpp"
#include "elastic/search/block_choice.hpp"
#include "elastic/search/block_library.hpp"
#include "elastic/search/budget_problem.hpp"
#include "elastic/search/elastic_checkpoint.hpp"
#include "elastic/search/latency_table.hpp"
#include "elastic/search/pareto_plot.hpp"
#include "perplexity.hpp"
#include "progress.hpp"
#include "run_options.hpp"
#include "subnetwork_measurement.hpp"

namespace elastic::cli {

struct SearchOptions {
  std::vector<double> latency;
  double sweep_from = 0.5;
  double sweep_step = 0.05;
  std::optional<double> memory;
  std::string phase = "decode";
  std::string library;
  std::string latency_table;
  std::string evaluation;
  std::string output_dir;
  int eval_windows = 8;
  int window = 512;
  int repetitions = 3;
  int drop_layers = 0;
  int refine = 0;
  std::string device = "cpu";
  std::string dtype = "f32";
  unsigned threads = 0;

  void add_to(CLI::App& command) {
    command.add_option("--latency", latency, "latency budgets as fractions of the full model's latency in --phase "
                       "(each gets an entry of budgets.json)")
        ->delimiter(',')
        ->check(CLI::Range(0.01, 1.5));
    command.add_option("--sweep-from", sweep_from, "the Pareto sweep's smallest fraction (up to 1 in --sweep-step)")
        ->check(CLI::Range(0.01, 1.0))
        ->capture_default_str();
    command.add_option("--sweep-step", sweep_step, "the Pareto sweep's step")->check(CLI::Range(0.01, 1.0))
        ->capture_default_str();
    command.add_option("--phase", phase, "the latency budgeted: decode (a step at --ctx cached positions, batch 1) "
                       "or prefill (one forward of the table's prompt length)")
        ->check(CLI::IsMember({"decode", "prefill"}))
        ->capture_default_str();
    command.add_option("--memory", memory, "a memory budget in bytes: weights plus the KV cache at --ctx positions");
    command.add_option("--library", library, "the block library (default: block_library.json beside the model)");
    command.add_option("--latency-table", latency_table,
                       "the latency table (default: latency_table.json beside the model)");
    command.add_option("--evaluation", evaluation, "the text perplexities are measured on (held out)")
        ->required()
        ->check(CLI::ExistingFile);
    command.add_option("--output-dir", output_dir, "where budgets.json, pareto.svg and pareto.md go (default: the "
                       "model's folder)");
    command.add_option("--eval-windows", eval_windows, "evaluation windows per perplexity")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("-c,--ctx", window, "tokens per evaluation window, and the context of the memory budget")
        ->check(CLI::Range(2, 1 << 20))
        ->capture_default_str();
    command.add_option("-r,--repetitions", repetitions, "timed rounds of every measured sub-network")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    command.add_option("--drop-layers", drop_layers, "layer-drop baselines up to this many layers (0: half the "
                       "layers)")
        ->check(CLI::NonNegativeNumber);
    command.add_option("--refine", refine, "rounds that solve every budget again with the caps divided by the "
                       "table's measured bias (median measured / predicted fraction of the selections), when it is "
                       "over 3%: for a table timed under other conditions; on a noisy machine it follows the noise")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    command.add_option("--device", device, "the executor the sub-networks are measured on: cpu or cuda (when built "
                       "with CUDA); the latency table's")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
    command.add_option("--dtype", dtype, "weights and activations of the measured sub-networks: f32 or bf16")
        ->check(CLI::IsMember({"f32", "bf16"}))
        ->capture_default_str();
    command.add_option("-t,--threads", threads, "host threads (0: every hardware thread)")->capture_default_str();
  }
};

namespace search_detail {

// One sub-network the search reports: predicted and measured.
struct Point {
  std::string series;  // "searched", "uniform width and heads", "layer drop", "parent"
  std::string name;
  model::SubnetworkConfig config;
  double fraction = 0.0;  // searched: the budget
  double predicted_s = 0.0;
  double predicted_score = 0.0;
  double memory = 0.0;
  double measured_s = 0.0;
  double of_full = 0.0;   // measured, over the parent measured in the same rounds
  double perplexity = 0.0;
};

// The time a run measured in `phase`.
inline double measured_time(const search::detail::TimedRun& run, search::Phase phase) {
  return search::detail::median(phase == search::Phase::decode ? run.decode_s : run.prefill_s);
}

// The parent is timed this many times in every round, at random places in
// the order, and its time is the median of them: every fraction is over it,
// so its noise would move them all.
constexpr int kParentTimings = 5;

// Times `points` (the parent first) in the same rounds: their measured time
// and fraction of the parent's.
inline void time_points(std::span<Point> points, SubnetworkMeter& meter, const search::LatencySettings& settings,
                        search::Phase phase) {
  std::vector<search::detail::TimedRun> runs;
  for (const Point& point : points) runs.push_back({point.name, point.config, {}, {}});
  for (int copy = 1; copy < kParentTimings; ++copy)
    runs.push_back({points.front().name, points.front().config, {}, {}});
  meter.time(runs, settings);
  std::vector<double> parent_times{measured_time(runs.front(), phase)};
  for (std::size_t r = points.size(); r < runs.size(); ++r) parent_times.push_back(measured_time(runs[r], phase));
  const double parent = search::detail::median(parent_times);
  for (std::size_t p = 0; p < points.size(); ++p) {
    points[p].measured_s = p == 0 ? parent : measured_time(runs[p], phase);
    points[p].of_full = points[p].measured_s / parent;
  }
}

// Each searched point's measured fraction of the parent over its predicted
// fraction: a sample of the table's bias.
inline void add_bias_samples(std::span<const Point> searched, double full_predicted, std::vector<double>& samples) {
  for (const Point& point : searched) samples.push_back(point.of_full / (point.predicted_s / full_predicted));
}

// A bias estimate within this of the one the caps use changes nothing. On a
// 2-vCPU VM the median ratio of one round's selections moves by about 3%
// between rounds, and the same sub-network timed twice in one round by up
// to 7%: a smaller correction would follow noise.
constexpr double kBiasTolerance = 0.03;

// Fits the searched points (points[first, end)) to their budgets as
// measured. The table's sums may run faster or slower than the executor
// measures in this run (a table timed on a busier machine or another day,
// or effects the per-block differences miss), which moves every selection's
// measured fraction the same way. The bias is estimated as the median, over
// every searched point timed so far, of measured over predicted fraction;
// while it differs from the one the caps use by more than kBiasTolerance,
// for up to `rounds` rounds, every budget is solved again with its cap
// divided by it and the new selections are timed beside the parent. One
// estimate for all budgets, pooled over the rounds, so no single timing
// decides. The measured time of a point timed in a later round is its
// fraction times the parent's first measurement. Says on stderr what it did.
inline void fit_budgets_to_measurement(std::vector<Point>& points, std::size_t first, std::size_t end,
                                       const search::BudgetProblem& problem, double full_predicted,
                                       std::optional<double> memory, SubnetworkMeter& meter,
                                       const search::LatencySettings& settings, search::Phase phase, int rounds) {
  if (first == end) return;
  double used = 1.0;  // the bias the caps were divided by
  std::vector<double> samples;
  for (int round = 1; round <= rounds; ++round) {
    add_bias_samples(std::span<const Point>(points.data() + first, end - first), full_predicted, samples);
    const double bias = search::detail::median(samples);
    const bool stands = std::abs(bias - used) <= kBiasTolerance;
    std::fprintf(stderr, "search: the selections measured %.3f times their predicted fraction (median of %zu)%s\n",
                 bias, samples.size(), stands ? "; the budgets stand" : "");
    if (stands) return;
    used = bias;
    std::vector<Point> candidates{points.front()};
    std::vector<std::size_t> owners;
    for (std::size_t p = first; p < end; ++p) {
      const Point& point = points[p];
      try {
        const search::BlockSelection selection =
            search::solve_block_choice(problem.problem(), {point.fraction * full_predicted / bias, memory});
        candidates.push_back({point.series, point.name, problem.config_of(selection), point.fraction,
                              selection.latency, selection.score, selection.memory});
        owners.push_back(p);
      } catch (const search::BudgetError& error) {
        std::fprintf(stderr, "search: %s kept: %s\n", point.name.c_str(), error.what());
      }
    }
    std::fprintf(stderr, "search: round %d: %zu budgets solved again with their caps divided by %.3f\n", round,
                 owners.size(), bias);
    time_points(candidates, meter, settings, phase);
    for (std::size_t c = 1; c < candidates.size(); ++c) {
      Point& point = points[owners[c - 1]];
      point = candidates[c];
      point.measured_s = point.of_full * points.front().measured_s;
    }
  }
}

inline std::string percent(double value, double parent) {
  char text[32];
  std::snprintf(text, sizeof text, "%+.1f%%", 100.0 * (value / parent - 1.0));
  return text;
}

}  // namespace search_detail

inline int run_search(const std::string& model_path, const SearchOptions& options) {
  using search_detail::Point;
  const auto start = std::chrono::steady_clock::now();
  const std::filesystem::path folder = model_folder(model_path);
  const std::filesystem::path output = options.output_dir.empty() ? folder : std::filesystem::path(options.output_dir);
  const io::ModelSource source = io::ModelSource::open(model_path);
  require(source.tokenizer().has_value(), model_path, ": the model files carry no tokenizer");
  const io::Tokenizer tokenizer = io::Tokenizer::from_spec(*source.tokenizer());
  const io::ModelDescription& model = source.description();
  const search::BlockLibrary library = search::read_block_library(
      options.library.empty() ? folder / "block_library.json" : std::filesystem::path(options.library), model);
  const search::LatencyTable table = search::read_latency_table(
      options.latency_table.empty() ? folder / "latency_table.json" : std::filesystem::path(options.latency_table),
      model);
  const std::vector<search::ElasticLayerSets> sets =
      search::model_layer_sets(model_path, model).value_or(search::default_layer_sets(model));
  if ((options.device == "cuda") != table.device.starts_with("cuda"))
    std::fprintf(stderr, "search: warning: the latency table was measured on %s, the sub-networks are measured on "
                 "--device %s\n", table.device.c_str(), options.device.c_str());
  // The model on the executor that measures (a missing device fails here,
  // before the search).
  RunOptions run;
  run.model = model_path;
  run.device = options.device;
  run.dtype = options.dtype;
  run.threads = options.threads;
  const std::unique_ptr<SubnetworkMeter> meter = subnetwork_meter(run);
  const search::Phase phase = options.phase == "prefill" ? search::Phase::prefill : search::Phase::decode;
  const search::BudgetProblem problem(model, library, table, phase, options.window);
  const model::SubnetworkConfig full = model::SubnetworkConfig::full(model);
  const double full_predicted = search::predicted(table, full, phase);

  // The budgets: the sweep and the requested ones, each solved exactly.
  std::vector<double> fractions;
  for (double f = options.sweep_from; f < 1.0 + 1e-9; f += options.sweep_step) fractions.push_back(std::min(f, 1.0));
  fractions.insert(fractions.end(), options.latency.begin(), options.latency.end());
  std::sort(fractions.begin(), fractions.end());
  fractions.erase(std::unique(fractions.begin(), fractions.end(),
                              [](double a, double b) { return std::abs(a - b) < 1e-9; }),
                  fractions.end());
  std::vector<Point> points;
  points.push_back({"parent", "full model", full, 1.0, full_predicted, 0.0,
                    static_cast<double>(search::memory_bytes(table, full, options.window))});
  for (const double fraction : fractions) {
    try {
      const search::BlockSelection selection =
          search::solve_block_choice(problem.problem(), {fraction * full_predicted, options.memory});
      char name[32];
      std::snprintf(name, sizeof name, "budget %.2f", fraction);
      points.push_back({"searched", name, problem.config_of(selection), fraction, selection.latency, selection.score,
                        selection.memory});
    } catch (const search::BudgetError& error) {
      const bool requested = std::find(options.latency.begin(), options.latency.end(), fraction) != options.latency.end();
      if (requested) {
        const double smallest = search::smallest_reachable(problem.problem()).latency;
        throw search::BudgetError(elastic::detail::concat("--latency ", fraction, ": ", error.what(), ", ",
                                                          smallest / full_predicted, " of the full model's"));
      }
      std::fprintf(stderr, "search: budget %.2f skipped: %s\n", fraction, error.what());
    }
  }
  const std::size_t searched_end = points.size();
  for (search::NamedConfig& baseline : search::uniform_baselines(model, sets))
    points.push_back({"uniform width and heads", baseline.name, baseline.config});
  const std::size_t drop = options.drop_layers > 0 ? static_cast<std::size_t>(options.drop_layers)
                                                   : model.layers.size() / 2;
  for (search::NamedConfig& baseline : search::layer_drop_baselines(model, sets, drop))
    points.push_back({"layer drop", baseline.name, baseline.config});
  for (Point& point : points)
    if (point.series != "searched" && point.series != "parent") {
      point.predicted_s = search::predicted(table, point.config, phase);
      point.memory = static_cast<double>(search::memory_bytes(table, point.config, options.window));
    }

  // Measured: latency in the phase (the searched points fitted to their
  // budgets as measured), then perplexity on the evaluation text.
  search::LatencySettings settings;
  settings.context = table.decode_context;
  settings.prefill_tokens = table.prefill_tokens;
  settings.decode_steps = table.decode_steps;
  settings.repetitions = options.repetitions;
  search_detail::time_points(points, *meter, settings, phase);
  search_detail::fit_budgets_to_measurement(points, 1, searched_end, problem, full_predicted, options.memory, *meter,
                                            settings, phase, options.refine);
  const std::vector<int> evaluation = tokenizer.encode(read_text_file(options.evaluation), /*add_special=*/false);
  Progress scoring("perplexity", static_cast<long>(points.size()));
  for (std::size_t p = 0; p < points.size(); ++p) {
    points[p].perplexity = meter->perplexity(points[p].config, evaluation, options.window, options.eval_windows);
    scoring.update(static_cast<long>(p + 1), points[p].name);
  }
  const Point& parent = points.front();

  // The budget table, from the searched points in budget order.
  std::vector<model::BudgetEntry> entries;
  for (std::size_t p = 1; p < searched_end; ++p)
    entries.push_back({points[p].fraction, points[p].measured_s, points[p].memory, points[p].config,
                       points[p].predicted_score});
  require(!entries.empty(), "search: no budget from ", options.sweep_from, " to 1 could be met");
  std::filesystem::create_directories(output);
  model::write_budget_table(output / "budgets.json",
                            model::BudgetTable(parent.measured_s, options.phase, entries, model),
                            {{"evaluation", {{"file", std::filesystem::path(options.evaluation).filename().string()},
                                             {"windows", options.eval_windows},
                                             {"window", options.window},
                                             {"parent_perplexity", parent.perplexity}}}});

  // The Pareto table: each searched point beside the best baseline that is
  // measured no slower.
  std::string table_text = "| budget | predicted ms | measured ms | of full | perplexity | vs parent | best baseline "
                           "at no more latency | its ms | its perplexity | increase cut |\n"
                           "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n";
  for (std::size_t p = 1; p < searched_end; ++p) {
    const Point& point = points[p];
    const Point* best = nullptr;
    for (std::size_t b = searched_end; b < points.size(); ++b)
      if (points[b].measured_s <= point.measured_s && (!best || points[b].perplexity < best->perplexity))
        best = &points[b];
    std::string baseline = "| none | | |";
    if (best) {
      const double cut = 1.0 - (point.perplexity - parent.perplexity) / (best->perplexity - parent.perplexity);
      char cell[160];
      std::snprintf(cell, sizeof cell, "| %s | %.2f | %.3f | %s", best->name.c_str(), best->measured_s * 1e3,
                    best->perplexity, best->perplexity > parent.perplexity ? "" : " |");
      baseline = cell;
      if (best->perplexity > parent.perplexity) {
        std::snprintf(cell, sizeof cell, " %.0f%% |", 100.0 * cut);
        baseline += cell;
      }
    } else {
      baseline += " |";
    }
    char row[256];
    std::snprintf(row, sizeof row, "| %.2f | %.2f | %.2f | %.3f | %.3f | %s ", point.fraction, point.predicted_s * 1e3,
                  point.measured_s * 1e3, point.measured_s / parent.measured_s, point.perplexity,
                  search_detail::percent(point.perplexity, parent.perplexity).c_str());
    table_text += row + baseline + "\n";

  }
  std::string baselines_text = "\n| baseline | predicted ms | measured ms | of full | perplexity | vs parent |\n"
                               "|---|---:|---:|---:|---:|---:|\n";
  for (std::size_t b = searched_end; b < points.size(); ++b) {
    char row[256];
    std::snprintf(row, sizeof row, "| %s | %.2f | %.2f | %.3f | %.3f | %s |\n", points[b].name.c_str(),
                  points[b].predicted_s * 1e3, points[b].measured_s * 1e3, points[b].measured_s / parent.measured_s,
                  points[b].perplexity, search_detail::percent(points[b].perplexity, parent.perplexity).c_str());
    baselines_text += row;
  }
  char header[256];
  std::snprintf(header, sizeof header, "parent: %.2f ms per %s (predicted %.2f), perplexity %.3f on %s\n\n",
                parent.measured_s * 1e3, phase == search::Phase::decode ? "decode step" : "prefill",
                parent.predicted_s * 1e3, parent.perplexity, options.evaluation.c_str());
  // The configurations of the requested budgets, layer by layer: query
  // heads and MLP width, "L" for a linear map, "-" for a skipped half.
  std::string configs_text;
  for (std::size_t p = 1; p < searched_end; ++p) {
    const Point& point = points[p];
    if (std::none_of(options.latency.begin(), options.latency.end(),
                     [&](double f) { return std::abs(f - point.fraction) < 1e-9; }))
      continue;
    configs_text += "\n" + point.name + " (attention heads / MLP width per layer; L linear, - skipped):";
    for (std::size_t i = 0; i < point.config.layers.size(); ++i) {
      const auto half = [&](search::Half which) {
        const search::HalfVariant variant = search::chosen_half_variant(model.layers[i], point.config.layers[i], which);
        return variant.kind == search::VariantKind::none     ? std::string("-")
               : variant.kind == search::VariantKind::linear ? std::string("L")
                                                             : std::to_string(variant.size);
      };
      configs_text += (i % 10 == 0 ? "\n  " : " ") + std::to_string(i) + ":" + half(search::Half::attention) + "/" +
                      half(search::Half::ffn);
    }
    configs_text += "\n";
  }
  const std::string report = header + table_text + baselines_text + configs_text;
  std::fputs(report.c_str(), stdout);
  {
    io::TemporaryFile file(output / "pareto.md");
    file.write(std::as_bytes(std::span(report)));
    file.commit();
  }

  search::ParetoPlot plot;
  plot.title = model.name + ": perplexity against measured " + options.phase + " latency";
  plot.x.label = options.phase + " latency (ms)";
  plot.y.logarithmic = true;
  plot.parent = search::PlotPoint{parent.measured_s * 1e3, parent.perplexity, "parent"};
  for (const char* series : {"searched", "uniform width and heads", "layer drop"}) {
    search::PlotSeries& line = plot.series.emplace_back(search::PlotSeries{series, {}});
    for (const Point& point : points)
      if (point.series == series) line.points.push_back({point.measured_s * 1e3, point.perplexity, point.name});
    std::sort(line.points.begin(), line.points.end(),
              [](const search::PlotPoint& a, const search::PlotPoint& b) { return a.x < b.x; });
  }
  search::write_pareto_svg(output / "pareto.svg", plot);
  std::fprintf(stderr, "wrote %s, pareto.md and pareto.svg in %s in %.1f s\n", (output / "budgets.json").string().c_str(),
               output.string().c_str(), seconds_since(start));
  return 0;
}

}  // namespace elastic::cli
