// Measuring a LatencyTable (latency_table.hpp) on the executor the model
// will run on (the host's, or CUDA's through a DeviceSequence, whose append
// waits for the device), the
// way Puzzle measures a block: inside a real forward of the whole model,
// minus a baseline. Layers with the same plan and the same elastic sets form
// a group (a Llama model is one group); for each group, half and variant v,
//
//   cost(v) = (T(the group's half at v) - T(the group's half skipped)) / group size,
//
// every other half of the model at its stored size in both runs, and the
// fixed cost is T(every half of every layer skipped): the embedding, final
// norm and LM head alone. A difference that noise makes negative is stored
// as 0. The variants are the GQA head counts and SwiGLU widths of the sets,
// the linear map of every half that has one (a Nemotron-NAS linear block,
// or the fitted map an elastic checkpoint stores beside the block), and
// "none".
//
// T at decode: after a prefill of `context` tokens, the median time of
// `decode_steps` single-token steps (batch 1; the context grows by the
// steps). T at prefill: one forward of `prefill_tokens` tokens from an empty
// cache. Every run is timed in each of `repetitions` rounds after one
// warm-up round, the runs in a new random order each round (so drift spreads
// over all of them), and the median over the rounds is kept. Finally a few
// sub-networks (the full model, every half at its middle variant, a random
// mix) are measured in the same rounds beside the table's prediction for
// them: LatencyTable::checks, the table's error.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "elastic/core/error.hpp"
#include "elastic/core/quantized_matrix.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/host/executor.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/model/decoder.hpp"
#include "elastic/model/host_sequence.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/model/subnetwork_config.hpp"
#include "elastic/search/calibration_pass.hpp"
#include "elastic/search/elastic_checkpoint.hpp"
#include "elastic/search/half_variant.hpp"
#include "elastic/search/latency_table.hpp"

namespace elastic::search {

struct LatencySettings {
  int context = 512;         // cached positions when the timed decode steps start
  int decode_steps = 32;     // decode steps timed per run
  int prefill_tokens = 512;  // tokens of the timed prefill forward
  int repetitions = 3;       // timed rounds, after one warm-up round
  std::uint64_t seed = 1234; // token ids, run order and the random check

  // Throws elastic::Error naming `op` unless every count is at least 1.
  void validate(std::string_view op) const {
    require(context >= 1 && decode_steps >= 1 && prefill_tokens >= 1 && repetitions >= 1, op,
            ": context, decode steps, prefill tokens and repetitions must be at least 1, found ", context, ", ",
            decode_steps, ", ", prefill_tokens, " and ", repetitions);
  }
};

// Called after each run: (runs done, runs in all, what ran and its times).
using LatencyProgress = std::function<void(long done, long total, const std::string& what)>;

// Bytes of the first `rows` x `cols` of a weight matrix, as the host reads it.
template <ElementType T>
std::int64_t prefix_bytes(const ConstMatrixView<T>&, std::int64_t rows, std::int64_t cols) {
  return rows * cols * static_cast<std::int64_t>(sizeof(T));
}
inline std::int64_t prefix_bytes(const QuantizedMatrixView& matrix, std::int64_t rows, std::int64_t cols) {
  const QuantFormatInfo info = quant_format_info(matrix.format());
  return rows * (cols / info.block_elements) * info.block_bytes;
}

// KV heads a GQA layer runs with `heads` query heads: the first ceil(heads / group).
inline int kv_heads_used(const io::ModelDescription& model, const io::LayerPlan& plan, int heads) {
  const int group = model.heads / plan.kv_heads;
  return (heads + group - 1) / group;
}

// Weight bytes layer `i`'s GQA attention reads with `heads` query heads:
// its norm, the Q rows, the K and V rows of the KV heads used, the O columns.
template <ElementType T, class W>
std::int64_t attention_weight_bytes(const io::ModelDescription& model, const model::LayerWeights<T, W>& layer,
                                    std::size_t i, int heads) {
  const std::int64_t q_rows = std::int64_t{heads} * model.head_dim;
  const std::int64_t kv_rows = std::int64_t{kv_heads_used(model, model.layers[i], heads)} * model.head_dim;
  return prefix_bytes(layer.attention_norm, 1, model.hidden) + prefix_bytes(layer.attention.q, q_rows, model.hidden) +
         prefix_bytes(layer.attention.k, kv_rows, model.hidden) + prefix_bytes(layer.attention.v, kv_rows, model.hidden) +
         prefix_bytes(layer.attention.o, model.hidden, q_rows);
}

// Weight bytes a SwiGLU FFN reads at `width` neurons: its norm, the gate
// and up rows, the down columns.
template <ElementType T, class W>
std::int64_t ffn_weight_bytes(const io::ModelDescription& model, const model::LayerWeights<T, W>& layer,
                              std::int64_t width) {
  return prefix_bytes(layer.ffn_norm, 1, model.hidden) + prefix_bytes(layer.mlp.gate, width, model.hidden) +
         prefix_bytes(layer.mlp.up, width, model.hidden) + prefix_bytes(layer.mlp.down, model.hidden, width);
}

// Weight bytes every sub-network holds: the embedding, the final norm and
// the LM head unless it is the embedding (tied).
template <ElementType T, class W>
std::int64_t fixed_weight_bytes(const io::ModelDescription& model, const model::ModelWeights<T, W>& weights) {
  const std::int64_t embedding = prefix_bytes(weights.token_embedding, model.vocab, model.hidden);
  return embedding + prefix_bytes(weights.output_norm, 1, model.hidden) +
         (model.tied_embeddings ? 0 : prefix_bytes(weights.lm_head, model.vocab, model.hidden));
}

// The processor's name from /proc/cpuinfo, or "cpu".
inline std::string host_cpu_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      const std::size_t start = line.find_first_not_of(" \t", line.find(':') + 1);
      if (start != std::string::npos) return line.substr(start);
    }
  return "cpu";
}

namespace detail {

inline double median(std::vector<double> values) {
  require(!values.empty(), "median: no values");
  std::sort(values.begin(), values.end());
  const std::size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

// The variants of layer `i`'s half that the table measures: the prefixes
// of the sets (after checking they hold the stored size), the linear map
// if the layer has one for the half, and "none" last.
inline std::vector<HalfVariant> measured_variants(const io::ModelDescription& model, std::size_t i, Half half,
                                                  const ElasticLayerSets& sets) {
  const io::LayerPlan& plan = model.layers[i];
  constexpr auto op = "measure_latency_table";
  std::vector<HalfVariant> variants;
  if (half == Half::attention && plan.attention == io::AttentionKind::gqa) {
    require(std::find(sets.heads.begin(), sets.heads.end(), model.heads) != sets.heads.end(), op, ": layer ", i,
            "'s head set must hold all ", model.heads, " heads (the stored attention)");
    for (const int heads : sets.heads) variants.push_back(HalfVariant::prefix(heads));
  }
  if (half == Half::ffn && plan.ffn == io::FfnKind::swiglu) {
    require(std::find(sets.mlp_widths.begin(), sets.mlp_widths.end(), plan.intermediate) != sets.mlp_widths.end(),
            op, ": layer ", i, "'s width set must hold its stored width ", plan.intermediate);
    for (const std::int64_t width : sets.mlp_widths) variants.push_back(HalfVariant::prefix(width));
  }
  if (runs_linear(plan, half))
    variants.push_back(HalfVariant::linear());
  variants.push_back(HalfVariant::none());
  return variants;
}

// Layers with the same plan and sets, which one measurement serves.
inline std::vector<std::vector<std::size_t>> layer_groups(const io::ModelDescription& model,
                                                          const std::vector<ElasticLayerSets>& sets) {
  std::vector<std::vector<std::size_t>> groups;
  const auto same = [&](std::size_t a, std::size_t b) {
    const io::LayerPlan &x = model.layers[a], &y = model.layers[b];
    return x.attention == y.attention && x.kv_heads == y.kv_heads && x.ffn == y.ffn &&
           x.intermediate == y.intermediate && x.attention_has_linear == y.attention_has_linear &&
           x.ffn_has_linear == y.ffn_has_linear && sets[a].heads == sets[b].heads &&
           sets[a].mlp_widths == sets[b].mlp_widths;
  };
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    auto group = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return same(g.front(), i); });
    if (group == groups.end()) groups.push_back({i});
    else group->push_back(i);
  }
  return groups;
}

// One sub-network the measurement runs, with its timings per round.
struct TimedRun {
  std::string name;
  model::SubnetworkConfig config;
  std::vector<double> decode_s;   // per round: the median step
  std::vector<double> prefill_s;  // per round
};

// The runs to time; a configuration asked for twice is run once, except
// for the checks, which always get runs of their own.
class RunList {
 public:
  std::size_t add(std::string name, model::SubnetworkConfig config, bool shared = true) {
    if (shared)
      for (std::size_t r = 0; r < runs_.size(); ++r)
        if (shareable_[r] && runs_[r].config == config) return r;
    runs_.push_back({std::move(name), std::move(config), {}, {}});
    shareable_.push_back(shared);
    return runs_.size() - 1;
  }
  std::vector<TimedRun>& runs() { return runs_; }
  double decode(std::size_t r) const { return median(runs_[r].decode_s); }
  double prefill(std::size_t r) const { return median(runs_[r].prefill_s); }

 private:
  std::vector<TimedRun> runs_;
  std::vector<bool> shareable_;
};

}  // namespace detail

// A maker of host sequences over the model `decoder` runs on `executor`.
template <ElementType T, class W>
auto host_sequences(model::Decoder<T, AnyWidth, W>& decoder, host::Executor& executor) {
  return [&decoder, &executor](int capacity, const model::SubnetworkConfig& config) {
    return model::HostSequence<T, AnyWidth, W>(decoder, executor, capacity, config);
  };
}

// The sequences a measurement runs, made by `make(capacity, config)`
// (a HostSequence, or a DeviceSequence on CUDA), held in place.
template <class MakeSequence>
struct MadeSequence {
  using Sequence = std::invoke_result_t<MakeSequence&, int, const model::SubnetworkConfig&>;
  MadeSequence(MakeSequence& make, int capacity, const model::SubnetworkConfig& config)
      : sequence(make(capacity, config)) {}
  Sequence sequence;
};

// Times every run of `runs` (their configs over the model `model`
// describes, run by the sequences `make_sequence` makes) as the header says:
// a warm-up round, then settings.repetitions rounds in a new random order
// each, appending each round's prefill time and median decode step to the
// run. The sequences' append must return once its work is done.
template <class MakeSequence>
void time_subnetworks(const io::ModelDescription& model, MakeSequence make_sequence,
                      std::vector<detail::TimedRun>& runs, const LatencySettings& settings,
                      const LatencyProgress& progress = {}) {
  settings.validate("time_subnetworks");
  std::mt19937_64 random(settings.seed + 1);
  const int capacity = std::max(settings.prefill_tokens, settings.context + settings.decode_steps);
  std::uniform_int_distribution<int> token_id(0, static_cast<int>(model.vocab) - 1);
  std::vector<int> tokens(static_cast<std::size_t>(capacity));
  for (int& token : tokens) token = token_id(random);
  const std::span<const int> prompt(tokens.data(), static_cast<std::size_t>(settings.prefill_tokens));
  const std::span<const int> context(tokens.data(), static_cast<std::size_t>(settings.context));
  std::deque<MadeSequence<MakeSequence>> sequences;
  for (const detail::TimedRun& run : runs) sequences.emplace_back(make_sequence, capacity, run.config);

  const auto seconds_since = [](std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<std::size_t> order(runs.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  const long total = static_cast<long>(order.size()) * (settings.repetitions + 1);
  long done = 0;
  for (int round = 0; round <= settings.repetitions; ++round) {
    std::shuffle(order.begin(), order.end(), random);
    for (const std::size_t r : order) {
      auto& sequence = sequences[r].sequence;
      sequence.reset();
      auto start = std::chrono::steady_clock::now();
      sequence.append(prompt, settings.prefill_tokens);
      const double prefill = seconds_since(start);
      if (settings.prefill_tokens != settings.context) {
        sequence.reset();
        sequence.append(context, settings.context);
      }
      std::vector<double> steps;
      for (int s = 0; s < settings.decode_steps; ++s) {
        const int& token = tokens[static_cast<std::size_t>(settings.context + s)];
        start = std::chrono::steady_clock::now();
        sequence.append(std::span(&token, 1));
        steps.push_back(seconds_since(start));
      }
      detail::TimedRun& run = runs[r];
      const double decode = detail::median(std::move(steps));
      if (round > 0) {
        run.prefill_s.push_back(prefill);
        run.decode_s.push_back(decode);
      }
      if (progress)
        progress(++done, total,
                 elastic::detail::concat(round == 0 ? "warm-up " : "", run.name, ": prefill ", prefill * 1e3,
                                         " ms, decode step ", decode * 1e3, " ms"));
    }
  }
}

// time_subnetworks on the host executor.
template <ElementType T, class W>
void time_subnetworks(model::Decoder<T, AnyWidth, W>& decoder, host::Executor& executor,
                      std::vector<detail::TimedRun>& runs, const LatencySettings& settings,
                      const LatencyProgress& progress = {}) {
  time_subnetworks(decoder.description(), host_sequences(decoder, executor), runs, settings, progress);
}

// Where a table is measured: the device's name and the threads it ran on.
struct TimingDevice {
  std::string name;
  unsigned threads = 1;
};

// Measures the latency table of the model `model` describes, run by the
// sequences `make_sequence` makes on `device`, for the variants of `sets`
// (one entry per layer; read_elastic_layer_sets or default_layer_sets).
// `weights` (host views of the same weights) give the bytes. Throws
// elastic::Error before timing anything when the sets leave out a layer's
// stored size.
template <ElementType T, class W, class MakeSequence>
LatencyTable measure_latency_table(const io::ModelDescription& model, const model::ModelWeights<T, W>& weights,
                                   MakeSequence make_sequence, const TimingDevice& device,
                                   const std::vector<ElasticLayerSets>& sets, const LatencySettings& settings,
                                   const LatencyProgress& progress = {}) {
  constexpr auto op = "measure_latency_table";
  require(sets.size() == model.layers.size(), op, ": expected elastic sets for ", model.layers.size(),
          " layers, found ", sets.size());
  settings.validate(op);

  LatencyTable table;
  table.threads = device.threads;
  table.device = device.name;
  table.decode_context = settings.context;
  table.decode_steps = settings.decode_steps;
  table.prefill_tokens = settings.prefill_tokens;
  table.kv_element_bytes = static_cast<int>(sizeof(T));
  table.fixed.weight_bytes = fixed_weight_bytes(model, weights);
  for (std::size_t i = 0; i < model.layers.size(); ++i) {
    LayerCosts& layer = table.layers.emplace_back();
    const model::LayerWeights<T, W>& layer_weights = weights.layers[i];
    for (const HalfVariant& variant : detail::measured_variants(model, i, Half::attention, sets[i])) {
      VariantCost& cost = layer.attention.emplace_back(VariantCost{variant});
      if (variant.kind == VariantKind::linear) {
        cost.weight_bytes = prefix_bytes(layer_weights.attention_norm, 1, model.hidden) +
                            prefix_bytes(layer_weights.linear_attention, model.hidden, model.hidden);
      } else if (variant.kind == VariantKind::prefix) {
        const int heads = static_cast<int>(variant.size);
        cost.weight_bytes = attention_weight_bytes(model, layer_weights, i, heads);
        cost.kv_bytes_per_token =
            2 * std::int64_t{kv_heads_used(model, model.layers[i], heads)} * model.head_dim * table.kv_element_bytes;
      }
    }
    for (const HalfVariant& variant : detail::measured_variants(model, i, Half::ffn, sets[i])) {
      VariantCost& cost = layer.ffn.emplace_back(VariantCost{variant});
      if (variant.kind == VariantKind::linear)
        cost.weight_bytes = prefix_bytes(layer_weights.ffn_norm, 1, model.hidden) +
                            prefix_bytes(layer_weights.linear_ffn, model.hidden, model.hidden);
      else if (variant.kind == VariantKind::prefix)
        cost.weight_bytes = ffn_weight_bytes(model, layer_weights, variant.size);
    }
  }

  // The runs: per group, half and variant, and the baselines.
  const model::SubnetworkConfig full = model::SubnetworkConfig::full(model);
  detail::RunList runs;
  model::SubnetworkConfig nothing = full;
  for (model::LayerChoice& choice : nothing.layers) choice.skip_attention = choice.skip_ffn = true;
  const std::size_t fixed_run = runs.add("every half skipped", nothing);
  struct VariantRun {
    std::vector<std::size_t> layers;
    Half half;
    std::size_t variant;  // index in the layers' variant list
    std::size_t run, baseline;
  };
  std::vector<VariantRun> variant_runs;
  for (const std::vector<std::size_t>& group : detail::layer_groups(model, sets))
    for (const Half half : {Half::attention, Half::ffn}) {
      const std::vector<VariantCost>& variants = table.layers[group.front()].of(half);
      if (variants.size() == 1) continue;  // a no-op half: "none" only
      model::SubnetworkConfig skipped = full;
      for (const std::size_t i : group) choose_half_variant(skipped.layers[i], half, HalfVariant::none());
      const auto name = [&](const HalfVariant& variant) {
        return std::string(half_name(half)) + " " + variant.name(half) + " in " + std::to_string(group.size()) +
               " layers";
      };
      const std::size_t baseline = runs.add(name(HalfVariant::none()), skipped);
      for (std::size_t v = 0; v + 1 < variants.size(); ++v) {
        model::SubnetworkConfig at_variant = full;
        for (const std::size_t i : group) choose_half_variant(at_variant.layers[i], half, variants[v].variant);
        variant_runs.push_back({group, half, v, runs.add(name(variants[v].variant), at_variant), baseline});
      }
    }

  // The checks: the full model, every half at its middle variant, a random mix.
  std::mt19937_64 random(settings.seed);
  model::SubnetworkConfig middle = full, mixed = full;
  for (std::size_t i = 0; i < model.layers.size(); ++i)
    for (const Half half : {Half::attention, Half::ffn}) {
      const std::vector<VariantCost>& variants = table.layers[i].of(half);
      choose_half_variant(middle.layers[i], half, variants[(variants.size() - 1) / 2].variant);
      std::uniform_int_distribution<std::size_t> pick(0, variants.size() - 1);
      choose_half_variant(mixed.layers[i], half, variants[pick(random)].variant);
    }
  const std::size_t checks[] = {runs.add("full", full, false), runs.add("middle", middle, false),
                                runs.add("random", mixed, false)};

  time_subnetworks(model, make_sequence, runs.runs(), settings, progress);

  table.fixed.decode_s = runs.decode(fixed_run);
  table.fixed.prefill_s = runs.prefill(fixed_run);
  for (const VariantRun& measured : variant_runs) {
    const double group_size = static_cast<double>(measured.layers.size());
    const double decode = std::max(0.0, (runs.decode(measured.run) - runs.decode(measured.baseline)) / group_size);
    const double prefill = std::max(0.0, (runs.prefill(measured.run) - runs.prefill(measured.baseline)) / group_size);
    for (const std::size_t i : measured.layers) {
      LayerCosts& layer = table.layers[i];
      VariantCost& cost = (measured.half == Half::attention ? layer.attention : layer.ffn)[measured.variant];
      cost.decode_s = decode;
      cost.prefill_s = prefill;
    }
  }
  for (const std::size_t r : checks) {
    const detail::TimedRun& run = runs.runs()[r];
    table.checks.push_back({run.name, predicted(table, run.config, Phase::decode), runs.decode(r),
                            predicted(table, run.config, Phase::prefill), runs.prefill(r)});
  }
  return table;
}

// measure_latency_table on the host executor, over the model `decoder`
// runs (`weights`: the views it was built from).
template <ElementType T, class W>
LatencyTable measure_latency_table(model::Decoder<T, AnyWidth, W>& decoder, const model::ModelWeights<T, W>& weights,
                                   host::Executor& executor, const std::vector<ElasticLayerSets>& sets,
                                   const LatencySettings& settings, const LatencyProgress& progress = {}) {
  return measure_latency_table(decoder.description(), weights, host_sequences(decoder, executor),
                               TimingDevice{host_cpu_name(), executor.threads()}, sets, settings, progress);
}

}  // namespace elastic::search
