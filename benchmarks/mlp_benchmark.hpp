// What the host and CUDA MLP benchmarks share: the cases they walk, how a
// case is named, the counters it reports and how many weight copies it
// rotates through so a call never finds its weights in cache from the last.
//
// Names: <impl>/<dtype>/<phase>/hidden:<H>/tokens:<T>/width:<k>, for example
// elastic_cuda/bfloat16/decode/hidden:4096/tokens:1/width:3584. Names that
// differ only in width:<k> are a width-scaling series, time(k)/time(K) with K
// the largest width; names that differ only in <impl> are one shape on two
// implementations (elastic_cuda against its cuBLAS peer, cublas).
// mlp_table.py turns a --benchmark_out JSON file into both views.
//
// Further down, what the host and CUDA routed-MLP benchmarks share: their
// cases (RoutedCase, routed_cases), how a case runs on either executor
// (RoutedLayers) and the counters it reports, with the time over a reference
// case measured earlier in the same run (ReferenceTimes).
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <exception>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "benchmark_status.hpp"
#include "support.hpp"

namespace elastic::bench {

struct MlpCase {
  std::string_view impl;  // elastic_host, elastic_cuda, cublas
  DType dtype;
  std::string_view phase;  // decode or prefill
  index_t hidden;
  index_t tokens;
  int width;
  int full_width;

  double bytes() const { return support::mlp_bytes(hidden, width, tokens, dtype_size(dtype)); }
  double flops() const { return support::mlp_flops(hidden, width, tokens); }

  std::string name() const {
    return detail::concat(impl, "/", dtype_name(dtype), "/", phase, "/hidden:", hidden, "/tokens:", tokens,
                          "/width:", width);
  }
};

// A phase and the token counts it is measured at.
struct Phase {
  std::string_view name;
  std::span<const index_t> tokens;
};

// Calls visit(MlpCase) for every phase, token count and width of the set
// WidthSet (impl left empty), widths innermost so a scaling series is
// registered, and listed, together.
template <class WidthSet, class Visit>
void for_each_case(DType dtype, index_t hidden, std::span<const Phase> phases, Visit&& visit) {
  for (const Phase& phase : phases)
    for (const index_t tokens : phase.tokens)
      for (const int width : WidthSet::values)
        visit(MlpCase{{}, dtype, phase.name, hidden, tokens, width, WidthSet::max});
}

// The counters every MLP benchmark reports. The rates divide by the
// benchmark's own time (wall clock or manual). rotation_over_cache is the
// weight bytes read between two reads of the same copy over the cache size:
// above 2 the weights come from memory, not from cache.
inline void set_mlp_counters(benchmark::State& state, const MlpCase& mlp_case, std::size_t copies,
                             double cache_bytes) {
  using benchmark::Counter;
  state.counters["bytes_per_second"] = Counter(mlp_case.bytes(), Counter::kIsIterationInvariantRate);
  state.counters["flop_per_second"] = Counter(mlp_case.flops(), Counter::kIsIterationInvariantRate);
  state.counters["width_fraction"] = static_cast<double>(mlp_case.width) / mlp_case.full_width;
  state.counters["rotation_over_cache"] =
      static_cast<double>(copies) * mlp_case.bytes() / std::max(cache_bytes, 1.0);
}

// counters[name] = (per_call * iterations / time) / ceiling_rate: the share of
// a measured ceiling (bytes/s or FLOP/s) one call reaches.
inline void set_ceiling_fraction(benchmark::State& state, const char* name, double per_call,
                                 double ceiling_rate) {
  state.counters[name] =
      benchmark::Counter(per_call / ceiling_rate, benchmark::Counter::kIsIterationInvariantRate);
}

// Copies of the weights to cycle through: the fewest with
// copies * bytes_per_call > 2 * cache_bytes (at least 2), but no more than
// budget_bytes holds at bytes_per_copy each (at least 1).
inline std::size_t rotation_copies(double bytes_per_call, double cache_bytes, double bytes_per_copy,
                                   double budget_bytes) {
  const double wanted = std::max(2.0, std::floor(2.0 * cache_bytes / bytes_per_call) + 1.0);
  const double affordable = std::max(1.0, std::floor(budget_bytes / bytes_per_copy));
  return static_cast<std::size_t>(std::min(wanted, affordable));
}


// The largest CPU cache, as Google Benchmark reads it (sysfs on Linux): what
// host weight copies rotate past.
inline double last_level_cache_bytes() {
  int largest = 0;
  for (const auto& cache : benchmark::CPUInfo::Get().caches) largest = std::max(largest, cache.size);
  return largest > 0 ? largest : 32.0 * (1 << 20);  // not reported: assume a typical desktop L3
}

// ---------------------------------------------------------------------------
// Routed MLP cases: a RoutedMLP layer over a mix of choices, the older
// unfused composition of the same layer, and the dense ElasticMLP it is
// compared with. Names:
//
//   <impl>/<dtype>/<layer>/<mix>[/<path>]/hidden:<H>/tokens:<T>
//
//   layer  routed_mlp (RoutedMLP) or dense_mlp (ElasticMLP::forward over
//          every token at one width: mix width:<k>)
//   mix    skip:<s>             choices {skip, the full width}; lround(s * T)
//                               of the tokens, at random positions, skip
//                               (at 1 token skip:0.5 and skip:0.75 skip it)
//          widths:<a>+<b>+...   the tokens spread evenly over these widths
//                               (the remainder to the widest), at random
//                               positions; widths:<k> sends every token to k
//   path   none: forward_with_counts (group sizes given, no host sync);
//          read_counts: forward (reads the group sizes back);
//          forward_decode: forward_decode (the sizes stay in executor
//          memory, where the decode kernels read them; no host sync);
//          unfused: plan_routes, then per group gather_rows into a dense
//          buffer, ElasticMLP::forward on it and scatter_add_rows back (the
//          composition add_to_rows replaced)
//
// e.g. elastic_cuda/bfloat16/routed_mlp/skip:0.25/hidden:4096/tokens:16.
// Counters: bytes_per_second and flop_per_second over the work done, each
// non-empty group counted as an MLP call at its width over its tokens
// (support::mlp_bytes, mlp_flops; skipped tokens cost nothing);
// work_fraction, that work's share of the full width over every token
// (1 - s for skip:<s>); rotation_over_cache as for the MLP cases; and
// time_over_reference, the time over the reference case's:
//
//   dense_mlp/width:<k>, k below full      dense_mlp/width:<full>
//   routed_mlp/skip:0, routed_mlp/widths:*  dense_mlp/width:<full>
//   routed_mlp/skip:<s>, s > 0              routed_mlp/skip:0
//   .../<path>                              the same mix without the path
//
// so the design target reads time_over_reference <= work_fraction + 0.05
// on every case without a path; with a path the ratio is that path's cost.
enum class RoutedPath { given_counts, read_counts, forward_decode, unfused, dense };

struct RoutedCase {
  std::string_view impl;  // elastic_host, elastic_cuda
  DType dtype;
  std::string mix;
  RoutedPath path;
  index_t hidden;
  index_t tokens;
  int full_width;
  std::vector<int> choice_widths;  // per choice: its width, 0 to skip (dense: the one width)
  std::vector<int> counts;         // per choice: how many tokens take it
  std::string reference;           // name of the case time_over_reference divides by, or empty

  std::string name() const {
    const std::string_view layer = path == RoutedPath::dense ? "dense_mlp" : "routed_mlp";
    const std::string_view suffix = path == RoutedPath::read_counts      ? "/read_counts"
                                    : path == RoutedPath::forward_decode ? "/forward_decode"
                                    : path == RoutedPath::unfused        ? "/unfused"
                                                                         : "";
    return detail::concat(impl, "/", dtype_name(dtype), "/", layer, "/", mix, suffix, "/hidden:", hidden,
                          "/tokens:", tokens);
  }

  template <class PerGroup>
  double sum_over_groups(PerGroup&& per_group) const {
    double sum = 0.0;
    for (std::size_t c = 0; c < counts.size(); ++c)
      if (choice_widths[c] > 0 && counts[c] > 0) sum += per_group(choice_widths[c], counts[c]);
    return sum;
  }

  double bytes() const {
    return sum_over_groups(
        [&](int width, int count) { return support::mlp_bytes(hidden, width, count, dtype_size(dtype)); });
  }
  double flops() const {
    return sum_over_groups([&](int width, int count) { return support::mlp_flops(hidden, width, count); });
  }
  double work_fraction() const {
    return sum_over_groups([](int width, int count) { return static_cast<double>(width) * count; }) /
           (static_cast<double>(tokens) * full_width);
  }

  // Each token's choice: counts[c] tokens take c, at positions drawn with a
  // fixed seed.
  std::vector<int> token_choices() const {
    std::vector<int> choices;
    for (std::size_t c = 0; c < counts.size(); ++c)
      choices.insert(choices.end(), static_cast<std::size_t>(counts[c]), static_cast<int>(c));
    std::shuffle(choices.begin(), choices.end(), std::mt19937(static_cast<unsigned>(tokens)));
    return choices;
  }
};

inline constexpr double routed_skip_fractions[] = {0.0, 0.25, 0.5, 0.75};

// The token counts a routed benchmark walks.
struct RoutedSeries {
  std::span<const index_t> tokens;         // every mix and the dense references
  std::span<const index_t> decode_tokens;  // where widths:<min>+<full> also runs forward_decode and unfused
  index_t read_counts_tokens;              // where skip:0.5 also runs read_counts and forward_decode
};

// Every case of the series, each after its reference: per token count the
// dense MLP at the full width, then at the other widths, skip:0 to skip:0.75
// (skip:0.5 also through read_counts and forward_decode at
// read_counts_tokens), widths:<all>, widths:<min>, then at decode_tokens
// widths:<min>+<full> without a path, through forward_decode and unfused.
template <class WidthSet>
std::vector<RoutedCase> routed_cases(std::string_view impl, DType dtype, index_t hidden, const RoutedSeries& series) {
  constexpr int full = WidthSet::max;
  std::vector<RoutedCase> cases;
  for (const index_t tokens : series.tokens) {
    const auto add = [&](std::string mix, RoutedPath path, std::vector<int> choice_widths, std::vector<int> counts,
                         std::string reference) {
      cases.push_back({impl, dtype, std::move(mix), path, hidden, tokens, full, std::move(choice_widths),
                       std::move(counts), std::move(reference)});
      return cases.back().name();
    };
    const auto dense = [&](int width, std::string reference) {
      return add(detail::concat("width:", width), RoutedPath::dense, {width}, {static_cast<int>(tokens)},
                 std::move(reference));
    };
    // The tokens spread evenly over `widths`, the remainder to the widest.
    const auto spread = [&](std::vector<int> widths, RoutedPath path, std::string reference) {
      std::string mix = "widths:";
      const auto groups = static_cast<index_t>(widths.size());
      std::vector<int> counts;
      for (index_t group = 0; group < groups; ++group) {
        mix += detail::concat(group > 0 ? "+" : "", widths[static_cast<std::size_t>(group)]);
        counts.push_back(static_cast<int>(tokens / groups + (group >= groups - tokens % groups ? 1 : 0)));
      }
      return add(std::move(mix), path, std::move(widths), std::move(counts), std::move(reference));
    };

    const std::string dense_full = dense(full, "");
    for (const int width : WidthSet::values)
      if (width != full) dense(width, dense_full);
    std::string skip_none;
    for (const double fraction : routed_skip_fractions) {
      const auto skipped = static_cast<int>(std::lround(fraction * static_cast<double>(tokens)));
      const std::vector<int> counts{skipped, static_cast<int>(tokens) - skipped};
      const std::string mix = detail::concat("skip:", fraction);
      const std::string given = add(mix, RoutedPath::given_counts, {0, full}, counts,
                                    fraction == 0.0 ? dense_full : skip_none);
      if (fraction == 0.0) skip_none = given;
      if (fraction == 0.5 && tokens == series.read_counts_tokens)
        for (const RoutedPath path : {RoutedPath::read_counts, RoutedPath::forward_decode})
          add(mix, path, {0, full}, counts, given);
    }
    spread({WidthSet::values.begin(), WidthSet::values.end()}, RoutedPath::given_counts, dense_full);
    spread({WidthSet::min}, RoutedPath::given_counts, dense_full);
    if (std::ranges::find(series.decode_tokens, tokens) != series.decode_tokens.end()) {
      const std::string fused = spread({WidthSet::min, full}, RoutedPath::given_counts, dense_full);
      for (const RoutedPath path : {RoutedPath::forward_decode, RoutedPath::unfused})
        spread({WidthSet::min, full}, path, fused);
    }
  }
  return cases;
}

// Per-call times of the cases run so far in this process, so that a case can
// report its time over its reference's: over the median of every run of the
// reference (Google Benchmark's trial runs included). Without the reference
// in the run (a filter left it out) the counter is left out.
class ReferenceTimes {
 public:
  void record(const std::string& name, double seconds) { times_[name].push_back(seconds); }

  std::optional<double> median(const std::string& name) const {
    const auto found = times_.find(name);
    if (found == times_.end()) return std::nullopt;
    return support::median(found->second);
  }

 private:
  std::map<std::string, std::vector<double>> times_;
};

// The routed counters (see above) for a run whose calls took
// seconds_per_call on average; records that time for later cases.
inline void set_routed_counters(benchmark::State& state, const RoutedCase& routed_case, double seconds_per_call,
                                std::size_t copies, double cache_bytes, ReferenceTimes& references) {
  using benchmark::Counter;
  state.counters["bytes_per_second"] = Counter(routed_case.bytes(), Counter::kIsIterationInvariantRate);
  state.counters["flop_per_second"] = Counter(routed_case.flops(), Counter::kIsIterationInvariantRate);
  state.counters["work_fraction"] = routed_case.work_fraction();
  state.counters["rotation_over_cache"] =
      static_cast<double>(copies) * routed_case.bytes() / std::max(cache_bytes, 1.0);
  if (const std::optional<double> reference = references.median(routed_case.reference))
    state.counters["time_over_reference"] = seconds_per_call / *reference;
  references.record(routed_case.name(), seconds_per_call);
}

// What one routed case runs on an executor: a RoutedMLP per weight copy (for
// the routed paths), and its buffers carved from one workspace of the
// executor's memory (workspace_bytes, then bind): the token choices, the
// layer's or the MLP's scratch and, for the unfused path, the route plan and
// the gathered and computed rows; for the dense path, the output.
template <ElementType T, WidthSet WidthsT>
class RoutedLayers {
 public:
  RoutedLayers(const RoutedCase& routed_case, std::span<const ElasticMLP<T, WidthsT>> mlps)
      : case_(routed_case), mlps_(mlps) {
    if (routed_case.path != RoutedPath::dense && routed_case.path != RoutedPath::unfused)
      for (const ElasticMLP<T, WidthsT>& mlp : mlps) layers_.emplace_back(mlp, routed_case.choice_widths);
  }

  template <RoutingExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor) const {
    WorkspaceCursor cursor;
    carve(cursor, executor);
    return cursor.bytes_used();
  }

  // Carves the buffers from `workspace` and loads the choices into it.
  template <RoutingExecutorFor<T> E>
  void bind(E& executor, Workspace workspace) {
    WorkspaceCursor cursor(workspace);
    buffers_ = carve(cursor, executor);
    if (case_.path != RoutedPath::dense) executor.load_indices(buffers_.choices, case_.token_choices());
  }

  // One call of the case on weight copy `copy`; residual, input: [tokens x hidden].
  template <RoutingExecutorFor<T> E>
  void call(E& executor, std::size_t copy, MatrixView<T> residual, ConstMatrixView<T> input) const {
    switch (case_.path) {
      case RoutedPath::given_counts:
        layers_[copy].forward_with_counts(executor, residual, input, buffers_.choices, case_.counts,
                                          buffers_.scratch);
        break;
      case RoutedPath::read_counts:
        layers_[copy].forward(executor, residual, input, buffers_.choices, buffers_.scratch);
        break;
      case RoutedPath::forward_decode:
        layers_[copy].forward_decode(executor, residual, input, buffers_.choices, buffers_.scratch);
        break;
      case RoutedPath::unfused: unfused(executor, mlps_[copy], residual, input); break;
      case RoutedPath::dense:
        mlps_[copy].forward(executor, case_.choice_widths.front(), buffers_.rows, input, buffers_.scratch);
        break;
    }
  }

 private:
  struct Buffers {
    int* choices = nullptr;  // [tokens], the routed paths
    RoutePlan plan;          // unfused
    MatrixView<T> gathered;  // unfused: [tokens x hidden]
    MatrixView<T> rows;      // unfused: the computed rows; dense: the output
    Workspace scratch;
  };

  template <class E>
  Buffers carve(WorkspaceCursor& cursor, const E& executor) const {
    const index_t tokens = case_.tokens;
    const auto take_rows = [&] {
      return MatrixView<T>(cursor.take<T>(static_cast<std::size_t>(tokens * case_.hidden)), tokens, case_.hidden);
    };
    const ElasticMLP<T, WidthsT>& mlp = mlps_.front();
    Buffers buffers;
    std::size_t scratch = 0;
    if (case_.path == RoutedPath::dense) {
      buffers.rows = take_rows();
      scratch = mlp.workspace_bytes(executor, tokens);
    } else {
      buffers.choices = cursor.take<int>(static_cast<std::size_t>(tokens));
      if (case_.path == RoutedPath::unfused) {
        const int n = static_cast<int>(tokens);
        const auto choices = static_cast<int>(case_.choice_widths.size());
        const std::size_t plan_bytes = RoutePlan::bytes_required(n, choices);
        auto* plan_memory = cursor.take<std::byte>(plan_bytes);
        if (plan_memory != nullptr) buffers.plan = RoutePlan::carve(Workspace{plan_memory, plan_bytes}, n, choices);
        buffers.gathered = take_rows();
        buffers.rows = take_rows();
        scratch = std::max(executor.plan_routes_workspace_bytes(n, choices), mlp.workspace_bytes(executor, tokens));
      } else {
        scratch = layers_.front().workspace_bytes(executor, tokens);
      }
    }
    buffers.scratch = Workspace{cursor.take<std::byte>(scratch), scratch};
    return buffers;
  }

  // plan_routes, then per non-empty group: gather its rows, run the dense MLP
  // on them, scatter-add the result (RoutedMLP's composition before
  // add_to_rows).
  template <class E>
  void unfused(E& executor, const ElasticMLP<T, WidthsT>& mlp, MatrixView<T> residual,
               ConstMatrixView<T> input) const {
    executor.plan_routes(buffers_.plan, buffers_.choices, buffers_.scratch);
    index_t first = 0;
    for (std::size_t c = 0; c < case_.counts.size(); ++c) {
      const index_t count = case_.counts[c];
      const int* indices = buffers_.plan.permutation + first;
      first += count;
      if (case_.choice_widths[c] == 0 || count == 0) continue;
      const MatrixView<T> gathered = buffers_.gathered.first_rows(count);
      const MatrixView<T> computed = buffers_.rows.first_rows(count);
      executor.gather_rows(gathered, input, indices);
      mlp.forward(executor, case_.choice_widths[c], computed, ConstMatrixView<T>(gathered), buffers_.scratch);
      executor.scatter_add_rows(residual, ConstMatrixView<T>(computed), indices);
    }
  }

  RoutedCase case_;
  std::span<const ElasticMLP<T, WidthsT>> mlps_;
  std::vector<RoutedMLP<T, WidthsT>> layers_;
  Buffers buffers_;
};

// Copies of one full-width MLP and of a routed layer's inputs and residuals
// (max_tokens rows each) in Buffer memory, host or device, filled by
// fill(data, count, seed, scale): what a routed benchmark cycles through.
template <ElementType T, WidthSet WidthsT, template <class> class Buffer>
class RoutedCopies {
 public:
  template <class Fill>
  RoutedCopies(std::size_t copies, index_t hidden, index_t max_tokens, Fill&& fill)
      : copies_(copies),
        hidden_(hidden),
        activation_count_(static_cast<std::size_t>(max_tokens * hidden)),
        weights_(copies * support::mlp_weight_count(hidden, WidthsT::max)),
        inputs_(copies * activation_count_),
        residuals_(copies * activation_count_) {
    const std::size_t weight_count = support::mlp_weight_count(hidden, WidthsT::max);
    for (std::size_t copy = 0; copy < copies_; ++copy) {
      T* base = weights_.data() + copy * weight_count;
      support::fill_mlp_weights(base, hidden, WidthsT::max, 3 * copy + 1, fill);
      mlps_.emplace_back(support::mlp_weights_at<T>(base, hidden, WidthsT::max));
    }
    fill(inputs_.data(), inputs_.size(), 1000, 1.0f);
    fill(residuals_.data(), residuals_.size(), 2000, 1.0f);
  }

  std::size_t copies() const { return copies_; }
  std::span<const ElasticMLP<T, WidthsT>> mlps() const { return mlps_; }

  ConstMatrixView<T> input(std::size_t copy, index_t tokens) const {
    return {inputs_.data() + copy * activation_count_, tokens, hidden_};
  }
  MatrixView<T> residual(std::size_t copy, index_t tokens) const {
    return {residuals_.data() + copy * activation_count_, tokens, hidden_};
  }

 private:
  std::size_t copies_;
  index_t hidden_;
  std::size_t activation_count_;
  Buffer<T> weights_, inputs_, residuals_;
  std::vector<ElasticMLP<T, WidthsT>> mlps_;
};

}  // namespace elastic::bench
