// How a benchmark process reports a case that cannot run: run_or_skip turns
// the case's exception into Google Benchmark's error report for that case
// and counts it, and finish_benchmarks, the end of every benchmark's main(),
// makes the process exit 1 when any case failed, so a run that measured
// nothing is never taken for a good one.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <exception>

namespace elastic::bench {

// Cases that failed in this process (run_or_skip counts them).
inline int& failed_cases() {
  static int count = 0;
  return count;
}

// Runs body() and turns an exception into a case reported with its message
// (Google Benchmark's SkipWithError), counted in failed_cases() so the
// process still fails at the end (finish_benchmarks).
template <class Body>
void run_or_skip(benchmark::State& state, Body&& body) {
  try {
    body();
  } catch (const std::exception& error) {
    state.SkipWithError(error.what());
    ++failed_cases();
  }
}

// The end of every benchmark's main(): shuts Google Benchmark down and
// returns the process status, 1 when any case failed.
inline int finish_benchmarks(const char* program) {
  benchmark::Shutdown();
  if (failed_cases() == 0) return 0;
  std::fprintf(stderr, "%s: %d benchmark case(s) failed (see their error messages above)\n", program,
               failed_cases());
  return 1;
}

}  // namespace elastic::bench
