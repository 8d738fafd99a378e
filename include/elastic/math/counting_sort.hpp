// The per-thread steps of the route plan's one-block counting sort (the CUDA
// executor's plan_routes for decode-sized batches), and the group-boundary
// search of its multi-kernel path for large batches.
//
// One block of `threads` threads. Thread i owns the contiguous run of tokens
// token_run(tokens, threads, i), so the runs in thread order are the tokens
// in token order. A table in shared memory holds one counter per (choice,
// thread), choice-major:
//
//   1. count_run: each thread zeroes its counters, then counts its run's
//      choices (and reports the first token whose choice is out of range).
//   2. an exclusive prefix sum over the whole table in entry order (the block
//      scan; entry (c, i) = c * threads + i). Entry (c, i) then holds the
//      number of tokens that chose a smaller choice, plus the tokens of choice
//      c in the runs of threads before i: the plan position of thread i's
//      first token of choice c. Entry (c, 0) is offsets[c].
//   3. place_run: each thread walks its run in token order and puts token t
//      at position table[(choices[t], i)]++.
//
// Tokens of one choice therefore land in token order — thread order across
// runs, walk order within a run — which is the plan's stability, with no
// atomics. Shared-memory slots are skewed by one every 32 entries
// (counting_slot), so neither a warp's column access in steps 1 and 3 (one
// choice, consecutive threads) nor the scan's blocked access in step 2
// (consecutive entries per thread) hits a bank twice. Host tests run the
// steps for every thread in a loop with a sequential scan in between.
#pragma once

#include "elastic/core/macros.hpp"
#include "elastic/core/route_plan.hpp"

namespace elastic::math {

// Tokens [first, last) of one thread's run.
struct TokenRun {
  int first = 0;
  int last = 0;
};

// Thread `thread`'s run: runs of ceil(tokens / threads) tokens, in thread
// order; trailing threads may get an empty run.
ELASTIC_HOST_DEVICE constexpr TokenRun token_run(int tokens, int threads, int thread) {
  const int length = (tokens + threads - 1) / threads;
  const long long first = static_cast<long long>(thread) * length;
  const int begin = first < tokens ? static_cast<int>(first) : tokens;
  const int end = tokens - begin < length ? tokens : begin + length;
  return {begin, end};
}

// The table entry of the counter (choice, thread).
ELASTIC_HOST_DEVICE constexpr int counting_entry(int choice, int thread, int threads) {
  return choice * threads + thread;
}

// The shared-memory slot of table entry `entry`.
ELASTIC_HOST_DEVICE constexpr int counting_slot(int entry) { return entry + entry / 32; }

// Slots of a table for `threads` threads and up to `max_choices` choices.
constexpr int counting_table_slots(int threads, int max_choices) {
  return counting_slot(threads * max_choices - 1) + 1;
}

// Step 1: zeroes thread `thread`'s counters of choices [0, num_choices) and
// counts its run. Returns the run's first token whose choice is outside
// [0, num_choices) (its counting stops there), or -1.
ELASTIC_HOST_DEVICE inline int count_run(int* table, const int* choices, TokenRun run, int thread, int threads,
                                         int num_choices) {
  for (int c = 0; c < num_choices; ++c) table[counting_slot(counting_entry(c, thread, threads))] = 0;
  for (int t = run.first; t < run.last; ++t) {
    const int c = choices[t];
    if (c < 0 || c >= num_choices) return t;
    ++table[counting_slot(counting_entry(c, thread, threads))];
  }
  return -1;
}

// Step 2, around the block scan: thread `thread` scans the Items consecutive
// entries starting at thread * Items (a blocked arrangement over the table);
// entries past `entries` (= num_choices * threads) read as zero and are not
// stored back.
template <int Items>
ELASTIC_HOST_DEVICE inline void load_scan_items(int (&items)[Items], const int* table, int thread, int entries) {
  ELASTIC_UNROLL
  for (int i = 0; i < Items; ++i) {
    const int entry = thread * Items + i;
    items[i] = entry < entries ? table[counting_slot(entry)] : 0;
  }
}

template <int Items>
ELASTIC_HOST_DEVICE inline void store_scan_items(int* table, const int (&items)[Items], int thread, int entries) {
  ELASTIC_UNROLL
  for (int i = 0; i < Items; ++i) {
    const int entry = thread * Items + i;
    if (entry < entries) table[counting_slot(entry)] = items[i];
  }
}

// After step 2: writes offsets[choice] and, for choice < plan.choices,
// counts[choice]; choice runs over [0, plan.choices] (the last one writes
// offsets[choices] = tokens).
ELASTIC_HOST_DEVICE inline void write_plan_group(const RoutePlan& plan, const int* table, int choice, int threads) {
  const auto group_begin = [&](int c) {
    return c < plan.choices ? table[counting_slot(counting_entry(c, 0, threads))] : plan.tokens;
  };
  const int begin = group_begin(choice);
  plan.offsets[choice] = begin;
  if (choice < plan.choices) plan.counts[choice] = group_begin(choice + 1) - begin;
}

// Step 3: places thread `thread`'s run (whose choices are all valid).
ELASTIC_HOST_DEVICE inline void place_run(int* permutation, int* table, const int* choices, TokenRun run, int thread,
                                          int threads) {
  for (int t = run.first; t < run.last; ++t)
    permutation[table[counting_slot(counting_entry(choices[t], thread, threads))]++] = t;
}

// The first position of `sorted` (ascending, `count` keys) whose key is not
// below `key`: where group `key` starts after a sort of the choices.
ELASTIC_HOST_DEVICE inline int lower_bound_key(const unsigned* sorted, int count, unsigned key) {
  int low = 0;
  int high = count;
  while (low < high) {
    const int middle = low + (high - low) / 2;
    if (sorted[middle] < key) low = middle + 1;
    else high = middle;
  }
  return low;
}

}  // namespace elastic::math
