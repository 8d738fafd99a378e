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
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <exception>
#include <span>
#include <string>
#include <string_view>

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

// Runs body() and turns an exception into a skipped benchmark with its message.
template <class Body>
void run_or_skip(benchmark::State& state, Body&& body) {
  try {
    body();
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
  }
}

}  // namespace elastic::bench
