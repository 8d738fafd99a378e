// The measured side of `elastic search`: every sub-network of a list timed
// in the rounds search/latency_measurement.hpp describes, then scored on
// held-out text (perplexity over windows from an empty cache), on the
// executor of a runner (HostRunner, or CudaRunner through
// measure_subnetworks_on_cuda). Progress on stderr.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "elastic/model/perplexity.hpp"
#include "elastic/search/latency_measurement.hpp"
#include "progress.hpp"
#include "run_options.hpp"

namespace elastic::cli {

// How the sub-networks are measured.
struct SubnetworkMeasurement {
  search::LatencySettings settings;  // the latency table's context, steps and prefill; the rounds
  std::vector<int> evaluation;       // the held-out tokens
  int window = 512;                  // tokens per perplexity window
  int windows = 8;                   // windows per perplexity
};

// Times every run of `runs` (its timings appended) and returns the
// perplexity of each run's sub-network, on `runner`'s executor.
template <class Runner>
std::vector<double> measure_subnetworks(Runner& runner, std::vector<search::detail::TimedRun>& runs,
                                        const SubnetworkMeasurement& measurement) {
  std::optional<Progress> timing;
  search::time_subnetworks(
      runner.loaded.description(),
      [&runner](int capacity, const model::SubnetworkConfig& config) { return runner.sequence(capacity, config); },
      runs, measurement.settings, [&](long done, long total, const std::string&) {
        if (!timing) timing.emplace("time", total);
        timing->update(done, "");
      });
  std::vector<double> perplexities;
  Progress scoring("perplexity", static_cast<long>(runs.size()));
  for (const search::detail::TimedRun& run : runs) {
    auto sequence = runner.sequence(measurement.window, run.config);
    perplexities.push_back(model::score_windows(sequence, std::span<const int>(measurement.evaluation),
                                                static_cast<std::size_t>(measurement.window),
                                                static_cast<std::size_t>(measurement.windows),
                                                [](const model::PerplexityScore&) {})
                               .perplexity());
    scoring.update(static_cast<long>(perplexities.size()), run.name);
  }
  return perplexities;
}

// measure_subnetworks on a Runner loaded as `run` says.
template <class Runner>
std::vector<double> load_and_measure_subnetworks(const RunOptions& run, std::vector<search::detail::TimedRun>& runs,
                                                 const SubnetworkMeasurement& measurement) {
  Runner runner(run);
  return measure_subnetworks(runner, runs, measurement);
}

// load_and_measure_subnetworks with CudaRunner (cuda_commands.cu; only in
// builds with CUDA).
std::vector<double> measure_subnetworks_on_cuda(const RunOptions& run, std::vector<search::detail::TimedRun>& runs,
                                                const SubnetworkMeasurement& measurement);

}  // namespace elastic::cli
