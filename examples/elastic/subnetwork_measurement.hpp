// The measured side of `elastic search`: sub-networks timed in the rounds
// search/latency_measurement.hpp describes and scored on held-out text
// (perplexity over windows from an empty cache), on one loaded model and
// the executor of its runner (HostRunner, or CudaRunner through
// cuda_subnetwork_meter). Progress on stderr.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "elastic/model/perplexity.hpp"
#include "elastic/search/latency_measurement.hpp"
#include "progress.hpp"
#include "run_options.hpp"

namespace elastic::cli {

// A loaded model that times and scores sub-networks of itself.
class SubnetworkMeter {
 public:
  virtual ~SubnetworkMeter() = default;
  // Times every run of `runs`, appending its timings.
  virtual void time(std::vector<search::detail::TimedRun>& runs, const search::LatencySettings& settings) = 0;
  // The perplexity of `config` on up to `windows` windows of `window` tokens.
  virtual double perplexity(const model::SubnetworkConfig& config, std::span<const int> tokens, int window,
                            int windows) = 0;
};

template <class Runner>
class RunnerMeter final : public SubnetworkMeter {
 public:
  explicit RunnerMeter(const RunOptions& run) : runner_(run) {}

  void time(std::vector<search::detail::TimedRun>& runs, const search::LatencySettings& settings) override {
    std::optional<Progress> timing;
    search::time_subnetworks(
        runner_.loaded.description(),
        [this](int capacity, const model::SubnetworkConfig& config) { return runner_.sequence(capacity, config); },
        runs, settings, [&](long done, long total, const std::string&) {
          if (!timing) timing.emplace("time", total);
          timing->update(done, "");
        });
  }

  double perplexity(const model::SubnetworkConfig& config, std::span<const int> tokens, int window,
                    int windows) override {
    auto sequence = runner_.sequence(window, config);
    return model::score_windows(sequence, tokens, static_cast<std::size_t>(window), static_cast<std::size_t>(windows),
                                [](const model::PerplexityScore&) {})
        .perplexity();
  }

 private:
  Runner runner_;
};

// A RunnerMeter over CudaRunner (cuda_commands.cu; only in builds with CUDA).
std::unique_ptr<SubnetworkMeter> cuda_subnetwork_meter(const RunOptions& run);

// The meter of the runner `run` names (--device and --dtype f32 or bf16).
inline std::unique_ptr<SubnetworkMeter> subnetwork_meter(const RunOptions& run) {
  if (run.device == "cuda") {
#ifdef ELASTIC_CLI_CUDA
    return cuda_subnetwork_meter(run);
#else
    throw cuda_not_built();
#endif
  }
  if (run.dtype == "bf16") return std::make_unique<RunnerMeter<HostRunner<bfloat16_t>>>(run);
  return std::make_unique<RunnerMeter<HostRunner<float>>>(run);
}

}  // namespace elastic::cli
