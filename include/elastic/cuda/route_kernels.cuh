// Route decisions and route plans on the device: the kernels and launchers
// behind the CUDA executor's decide_routes and plan_routes, with the host
// executor's semantics (host/routing.hpp).
//
// decide_routes
//   argmax, threshold  one thread per token runs math::route_choice.
//   capacity           a stable descending sort of the target column's
//                      scores, token indices carried along; the first
//                      `capacity` ranks take `target`, the rest `fallback`.
//                      CUB's float radix sorts are stable and treat -0.0 and
//                      +0.0 as equal, so the order is exactly
//                      math::ranks_before (equal scores: lower token first).
//                      Up to decide_block_max_tokens tokens one block sorts
//                      with cub::BlockRadixSort (128 threads x 4 keys up to
//                      512 tokens, 512 x 8 above); beyond, the scores go
//                      through cub::DeviceRadixSort::SortPairsDescending in
//                      the workspace and one thread per rank writes the
//                      choice. NaN scores sort somewhere: every token still
//                      gets a choice, but which ones take the target is
//                      unspecified (as it is on the host).
//
// plan_routes
//   up to plan_block_max_tokens tokens and plan_block_max_choices choices:
//     one block runs a counting sort (math/counting_sort.hpp): per-thread
//     counters of contiguous token runs, one cub::BlockScan over the counter
//     table, a walk that places each run in token order. Stable without
//     atomics.
//   beyond: plan_sort_inputs turns the choices into sort keys (an invalid
//     choice becomes the key `choices`, one past every group), a stable
//     cub::DeviceRadixSort::SortPairs over just the bits those keys need
//     carries the token indices along, and plan_from_sorted finds each
//     group's start by binary search over the sorted keys and copies the
//     sorted tokens into the plan.
//
// Invalid choices. The host cannot see the choices without a synchronisation,
// so plan_routes checks them on the device: every choice is checked before
// anything is written, and when one lies outside [0, choices) the plan is
// left untouched (counts, offsets and permutation keep whatever they held).
// Either way the last kernel writes a RouteStatus into the call's workspace:
// the call's tag, and the first invalid token with its choice (or -1).
// RouteStatusLog remembers, on the host, where the executor's recent calls
// left their status; read_route_counts, which synchronises anyway, reads it
// back and throws the host executor's error for an invalid choice. A status
// is accepted from any of the logged calls that planned the same plan, so a
// plan_routes call replayed from a CUDA graph (which writes its capture-time
// tag) reads back as well as an eager one. check_route_counts compares group
// sizes a caller claims with the plan in a later kernel and records the
// first mismatch in the same status, which read_route_counts reports too.
#pragma once

#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#include <cub/util_type.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/route_plan.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/math/counting_sort.hpp"
#include "elastic/math/routing.hpp"

namespace elastic::cuda {

// The capacity rule sorts in one block up to this many tokens.
inline constexpr int decide_block_max_tokens = 4096;

// plan_routes runs its one-block counting sort up to these sizes, CUB beyond.
inline constexpr int plan_block_max_tokens = 4096;
inline constexpr int plan_block_max_choices = 16;

// What plan_routes leaves in its workspace: the tag of the call that wrote
// it, and the first token whose choice was out of range with that choice
// (bad_token = -1: every choice was valid and the plan was written); then,
// from check_route_counts, the first choice whose claimed group size differs
// from the plan's, with both sizes (mismatched_choice = -1: none).
struct RouteStatus {
  std::uint64_t tag;
  int bad_token;
  int bad_choice;
  int mismatched_choice = -1;
  int claimed_count = 0;
  int planned_count = 0;
};

// Claimed group sizes for choices [first_choice, first_choice + count),
// passed to the comparing kernel by value (so the launch captures in a graph).
struct ClaimedCounts {
  static constexpr int capacity = 64;
  int first_choice = 0;
  int count = 0;
  int values[capacity] = {};
};

namespace kernels {

inline constexpr int route_threads = 256;
inline constexpr int plan_block_threads = 512;

template <int Threads, int Items>
struct SortShape {
  static constexpr int threads = Threads;
  static constexpr int items = Items;
  static constexpr int tokens = Threads * Items;
};
using SmallCapacitySort = SortShape<128, 4>;
using LargeCapacitySort = SortShape<512, 8>;
static_assert(LargeCapacitySort::tokens == decide_block_max_tokens);

// choices[t] = math::route_choice(logits row t) for the argmax and threshold rules.
template <class T>
__global__ void __launch_bounds__(route_threads)
    choose_routes(int* choices, const T* logits, index_t stride, int tokens, int num_choices, const RouteRule rule) {
  const int token = static_cast<int>(blockIdx.x) * route_threads + static_cast<int>(threadIdx.x);
  if (token < tokens)
    choices[token] = math::route_choice(logits + token * stride, num_choices, rule.mode, rule.skip_choice,
                                        rule.threshold);
}

// The capacity rule in one block: thread i holds tokens i * Items ... (a
// blocked arrangement, so input order is token order), padding sorts last.
template <class T, class Shape>
__global__ void __launch_bounds__(Shape::threads)
    capacity_in_block(int* choices, const T* scores, index_t stride, int tokens, const RouteRule rule) {
  using Sort = cub::BlockRadixSort<float, Shape::threads, Shape::items, int>;
  __shared__ typename Sort::TempStorage storage;
  float keys[Shape::items];
  int order[Shape::items];
  const int first = static_cast<int>(threadIdx.x) * Shape::items;
  ELASTIC_UNROLL
  for (int i = 0; i < Shape::items; ++i) {
    const int token = first + i;
    keys[i] = token < tokens ? to_float(scores[token * stride]) : -INFINITY;
    order[i] = token;
  }
  Sort(storage).SortDescending(keys, order);
  ELASTIC_UNROLL
  for (int i = 0; i < Shape::items; ++i)
    if (order[i] < tokens) choices[order[i]] = first + i < rule.capacity ? rule.target : rule.fallback;
}

template <class T>
__global__ void __launch_bounds__(route_threads)
    capacity_sort_inputs(float* keys, int* order, const T* scores, index_t stride, int tokens) {
  const int token = static_cast<int>(blockIdx.x) * route_threads + static_cast<int>(threadIdx.x);
  if (token >= tokens) return;
  keys[token] = to_float(scores[token * stride]);
  order[token] = token;
}

// sorted_tokens: the tokens by descending score.
template <int Threads>
__global__ void __launch_bounds__(Threads)
    capacity_from_sorted(int* choices, const int* sorted_tokens, int tokens, const RouteRule rule) {
  const int rank = static_cast<int>(blockIdx.x) * Threads + static_cast<int>(threadIdx.x);
  if (rank < tokens) choices[sorted_tokens[rank]] = rank < rule.capacity ? rule.target : rule.fallback;
}

// The one-block plan (math/counting_sort.hpp has the steps).
template <int Threads>
__global__ void __launch_bounds__(Threads)
    plan_in_block(const RoutePlan plan, const int* choices, RouteStatus* status, std::uint64_t tag) {
  constexpr int kItems = plan_block_max_choices;
  using Scan = cub::BlockScan<int, Threads>;
  __shared__ int table[math::counting_table_slots(Threads, kItems)];
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int first_bad;
  const int thread = static_cast<int>(threadIdx.x);
  if (thread == 0) first_bad = INT_MAX;
  __syncthreads();

  const math::TokenRun run = math::token_run(plan.tokens, Threads, thread);
  const int bad = math::count_run(table, choices, run, thread, Threads, plan.choices);
  if (bad >= 0) atomicMin(&first_bad, bad);
  __syncthreads();
  if (first_bad != INT_MAX) {  // the same branch for every thread: nothing is written to the plan
    if (thread == 0) *status = RouteStatus{tag, first_bad, choices[first_bad]};
    return;
  }

  const int entries = plan.choices * Threads;
  int items[kItems];
  math::load_scan_items(items, table, thread, entries);
  Scan(scan_storage).ExclusiveSum(items, items);
  math::store_scan_items(table, items, thread, entries);
  __syncthreads();
  if (thread <= plan.choices) math::write_plan_group(plan, table, thread, Threads);
  if (thread == 0) *status = RouteStatus{tag, -1, 0};
  __syncthreads();  // write_plan_group reads the entries place_run advances
  math::place_run(plan.permutation, table, choices, run, thread, Threads);
}

// Compares one chunk of claimed group sizes with the plan's counts and
// records the first mismatch, unless the plan was not written (invalid
// choice) or an earlier chunk already recorded one. One thread: a chunk is
// at most ClaimedCounts::capacity comparisons.
template <int Threads>
__global__ void __launch_bounds__(Threads)
    compare_claimed_counts(const int* plan_counts, const ClaimedCounts claimed, RouteStatus* status) {
  if (threadIdx.x != 0 || status->bad_token >= 0 || status->mismatched_choice >= 0) return;
  for (int i = 0; i < claimed.count; ++i) {
    const int choice = claimed.first_choice + i;
    if (plan_counts[choice] != claimed.values[i]) {
      status->mismatched_choice = choice;
      status->claimed_count = claimed.values[i];
      status->planned_count = plan_counts[choice];
      return;
    }
  }
}

// keys[t] = choices[t], or num_choices for a choice outside [0, num_choices)
// (so invalid tokens sort after every group, in token order); order[t] = t.
template <int Threads>
__global__ void __launch_bounds__(Threads)
    plan_sort_inputs(unsigned* keys, int* order, const int* choices, int tokens, int num_choices) {
  const int token = static_cast<int>(blockIdx.x) * Threads + static_cast<int>(threadIdx.x);
  if (token >= tokens) return;
  const int choice = choices[token];
  keys[token] = static_cast<unsigned>(choice >= 0 && choice < num_choices ? choice : num_choices);
  order[token] = token;
}

// Writes the plan from the sorted keys and tokens, or, when the last key
// marks an invalid choice, only the status (every block decides alike).
template <int Threads>
__global__ void __launch_bounds__(Threads)
    plan_from_sorted(const RoutePlan plan, const int* choices, const unsigned* sorted_keys, const int* sorted_tokens,
                     RouteStatus* status, std::uint64_t tag) {
  const int tokens = plan.tokens;
  const auto invalid = static_cast<unsigned>(plan.choices);
  const bool first_block = blockIdx.x == 0;
  const int thread = static_cast<int>(threadIdx.x);
  if (tokens > 0 && sorted_keys[tokens - 1] == invalid) {
    if (first_block && thread == 0) {
      const int token = sorted_tokens[math::lower_bound_key(sorted_keys, tokens, invalid)];
      *status = RouteStatus{tag, token, choices[token]};
    }
    return;
  }
  for (int i = static_cast<int>(blockIdx.x) * Threads + thread; i < tokens; i += static_cast<int>(gridDim.x) * Threads)
    plan.permutation[i] = sorted_tokens[i];
  if (!first_block) return;
  for (int c = thread; c <= plan.choices; c += Threads) {
    const int begin = math::lower_bound_key(sorted_keys, tokens, static_cast<unsigned>(c));
    plan.offsets[c] = begin;
    if (c < plan.choices)
      plan.counts[c] = math::lower_bound_key(sorted_keys, tokens, static_cast<unsigned>(c + 1)) - begin;
  }
  if (thread == 0) *status = RouteStatus{tag, -1, 0};
}

}  // namespace kernels

inline unsigned route_blocks(int items, int threads) {
  return static_cast<unsigned>((items + threads - 1) / threads);
}

// ---- decide_routes -----------------------------------------------------------

// The capacity rule's device-sort buffers (all null up to
// decide_block_max_tokens tokens, which sort in one block).
struct CapacityScratch {
  cub::DoubleBuffer<float> keys;
  cub::DoubleBuffer<int> order;
  Workspace sort;
};

inline bool capacity_sorts_in_block(int tokens) { return tokens <= decide_block_max_tokens; }

inline std::size_t capacity_sort_bytes(int tokens) {
  std::size_t bytes = 0;
  cub::DoubleBuffer<float> keys;
  cub::DoubleBuffer<int> order;
  ELASTIC_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, keys, order, tokens));
  return bytes;
}

// The size query and the call carve alike, so they cannot disagree.
inline CapacityScratch carve_capacity(WorkspaceCursor& cursor, int tokens) {
  require(tokens >= 0, "decide_routes: the token count must be non-negative, found ", tokens);
  CapacityScratch scratch;
  if (capacity_sorts_in_block(tokens)) return scratch;
  const auto count = static_cast<std::size_t>(tokens);
  float* keys = cursor.take<float>(count);
  float* keys_alternate = cursor.take<float>(count);
  int* order = cursor.take<int>(count);
  int* order_alternate = cursor.take<int>(count);
  scratch.keys = cub::DoubleBuffer<float>(keys, keys_alternate);
  scratch.order = cub::DoubleBuffer<int>(order, order_alternate);
  const std::size_t sort_bytes = capacity_sort_bytes(tokens);
  scratch.sort = Workspace{cursor.take<std::byte>(sort_bytes), sort_bytes};
  return scratch;
}

// choices[t] for the argmax and threshold rules (tokens >= 1).
template <class T>
void launch_choose_routes(int* choices, ConstMatrixView<T> logits, const RouteRule& rule, cudaStream_t stream) {
  const int tokens = static_cast<int>(logits.rows());
  kernels::choose_routes<T><<<route_blocks(tokens, kernels::route_threads), kernels::route_threads, 0, stream>>>(
      choices, logits.data(), logits.row_stride(), tokens, static_cast<int>(logits.cols()), rule);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

// choices[t] for the capacity rule (tokens >= 1); `scratch` from
// carve_capacity for the same token count.
template <class T>
void launch_capacity_routes(int* choices, ConstMatrixView<T> logits, const RouteRule& rule, CapacityScratch scratch,
                            cudaStream_t stream) {
  const int tokens = static_cast<int>(logits.rows());
  const T* scores = logits.data() + rule.target;
  const index_t stride = logits.row_stride();
  if (tokens <= kernels::SmallCapacitySort::tokens) {
    kernels::capacity_in_block<T, kernels::SmallCapacitySort>
        <<<1, kernels::SmallCapacitySort::threads, 0, stream>>>(choices, scores, stride, tokens, rule);
  } else if (capacity_sorts_in_block(tokens)) {
    kernels::capacity_in_block<T, kernels::LargeCapacitySort>
        <<<1, kernels::LargeCapacitySort::threads, 0, stream>>>(choices, scores, stride, tokens, rule);
  } else {
    constexpr int kThreads = kernels::route_threads;
    kernels::capacity_sort_inputs<T><<<route_blocks(tokens, kThreads), kThreads, 0, stream>>>(
        scratch.keys.Current(), scratch.order.Current(), scores, stride, tokens);
    ELASTIC_CUDA_CHECK_LAUNCH();
    std::size_t sort_bytes = scratch.sort.bytes;
    ELASTIC_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(scratch.sort.data, sort_bytes, scratch.keys,
                                                                 scratch.order, tokens, 0, 32, stream));
    kernels::capacity_from_sorted<kThreads><<<route_blocks(tokens, kThreads), kThreads, 0, stream>>>(
        choices, scratch.order.Current(), tokens, rule);
  }
  ELASTIC_CUDA_CHECK_LAUNCH();
}

// ---- plan_routes -------------------------------------------------------------

// plan_routes' workspace: the status word and, beyond one block, the sort.
struct PlanScratch {
  RouteStatus* status = nullptr;
  cub::DoubleBuffer<unsigned> keys;
  cub::DoubleBuffer<int> order;
  Workspace sort;
};

inline bool plan_in_one_block(int tokens, int choices) {
  return tokens <= plan_block_max_tokens && choices <= plan_block_max_choices;
}

// Key bits of the device sort: keys run up to `choices` (the invalid mark).
inline int plan_sort_bits(int choices) { return std::bit_width(static_cast<unsigned>(choices)); }

inline std::size_t plan_sort_bytes(int tokens, int choices) {
  std::size_t bytes = 0;
  cub::DoubleBuffer<unsigned> keys;
  cub::DoubleBuffer<int> order;
  ELASTIC_CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys, order, tokens, 0, plan_sort_bits(choices)));
  return bytes;
}

inline PlanScratch carve_plan(WorkspaceCursor& cursor, int tokens, int choices) {
  require(tokens >= 0 && choices > 0, "plan_routes: need tokens >= 0 and choices > 0, found ", tokens, " and ",
          choices);
  PlanScratch scratch;
  scratch.status = cursor.take<RouteStatus>(1);
  if (plan_in_one_block(tokens, choices)) return scratch;
  const auto count = static_cast<std::size_t>(tokens);
  unsigned* keys = cursor.take<unsigned>(count);
  unsigned* keys_alternate = cursor.take<unsigned>(count);
  int* order = cursor.take<int>(count);
  int* order_alternate = cursor.take<int>(count);
  scratch.keys = cub::DoubleBuffer<unsigned>(keys, keys_alternate);
  scratch.order = cub::DoubleBuffer<int>(order, order_alternate);
  const std::size_t sort_bytes = plan_sort_bytes(tokens, choices);
  scratch.sort = Workspace{cursor.take<std::byte>(sort_bytes), sort_bytes};
  return scratch;
}

// Enqueues the plan of `choices` (device memory, plan.tokens entries) and
// its status, tagged `tag`; `scratch` from carve_plan for the plan's sizes.
inline void launch_plan_routes(const RoutePlan& plan, const int* choices, PlanScratch scratch, std::uint64_t tag,
                               cudaStream_t stream) {
  if (plan_in_one_block(plan.tokens, plan.choices)) {
    constexpr int kThreads = kernels::plan_block_threads;
    kernels::plan_in_block<kThreads><<<1, kThreads, 0, stream>>>(plan, choices, scratch.status, tag);
    ELASTIC_CUDA_CHECK_LAUNCH();
    return;
  }
  constexpr int kThreads = kernels::route_threads;
  const int tokens = plan.tokens;
  if (tokens > 0) {
    kernels::plan_sort_inputs<kThreads><<<route_blocks(tokens, kThreads), kThreads, 0, stream>>>(
        scratch.keys.Current(), scratch.order.Current(), choices, tokens, plan.choices);
    ELASTIC_CUDA_CHECK_LAUNCH();
    std::size_t sort_bytes = scratch.sort.bytes;
    ELASTIC_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.sort.data, sort_bytes, scratch.keys, scratch.order,
                                                       tokens, 0, plan_sort_bits(plan.choices), stream));
  }
  const unsigned blocks = tokens > 0 ? route_blocks(tokens, kThreads) : 1;
  kernels::plan_from_sorted<kThreads><<<blocks, kThreads, 0, stream>>>(
      plan, choices, scratch.keys.Current(), scratch.order.Current(), scratch.status, tag);
  ELASTIC_CUDA_CHECK_LAUNCH();
}

// Enqueues the comparison of `counts` (one per choice, host memory) with the
// plan's counts, chunk by chunk, into the status of the plan's plan_routes call.
inline void launch_check_route_counts(const RoutePlan& plan, std::span<const int> counts, RouteStatus* status,
                                      cudaStream_t stream) {
  for (int first = 0; first < plan.choices; first += ClaimedCounts::capacity) {
    ClaimedCounts claimed;
    claimed.first_choice = first;
    claimed.count = std::min(ClaimedCounts::capacity, plan.choices - first);
    for (int i = 0; i < claimed.count; ++i) claimed.values[i] = counts[static_cast<std::size_t>(first + i)];
    constexpr int kThreads = 32;
    kernels::compare_claimed_counts<kThreads><<<1, kThreads, 0, stream>>>(plan.counts, claimed, status);
    ELASTIC_CUDA_CHECK_LAUNCH();
  }
}

// Where the executor's most recent plan_routes calls left their status, so
// read_route_counts can find the status of a plan from the plan alone.
class RouteStatusLog {
 public:
  static constexpr int capacity = 8;

  struct Entry {
    const int* counts = nullptr;  // identifies the plan, with its sizes
    int tokens = 0;
    int choices = 0;
    const RouteStatus* status = nullptr;
    std::uint64_t tag = 0;  // 0: unused
    std::string_view counts_caller = {};  // who last claimed the plan's counts (check_route_counts)
  };

  // Notes a plan_routes call for `plan` that writes its status to `status`;
  // returns the tag the call's kernels write.
  std::uint64_t record(const RoutePlan& plan, const RouteStatus* status) {
    const std::uint64_t tag = ++last_tag_;
    entries_[tag % capacity] = Entry{plan.counts, plan.tokens, plan.choices, status, tag};
    return tag;
  }

  // Notes that `caller` (a string with static storage, such as a literal)
  // claimed the counts of the newest logged call that planned `plan`.
  void note_counts_check(const RoutePlan& plan, std::string_view caller) {
    if (const Entry* entry = find(plan)) entries_[entry->tag % capacity].counts_caller = caller;
  }

  // The newest of the last `capacity` calls that planned `plan`, or null.
  const Entry* find(const RoutePlan& plan) const {
    for (std::uint64_t age = 0; age < capacity && age < last_tag_; ++age) {
      const Entry& entry = entries_[(last_tag_ - age) % capacity];
      if (plans(entry, plan)) return &entry;
    }
    return nullptr;
  }

  // Whether the call tagged `tag`, one of the last `capacity`, planned `plan`:
  // a CUDA graph replays a captured call with its capture-time tag, so the
  // status of a replayed plan may carry an older tag than the newest call's.
  bool planned(const RoutePlan& plan, std::uint64_t tag) const {
    if (tag == 0 || tag > last_tag_ || last_tag_ - tag >= capacity) return false;
    return plans(entries_[tag % capacity], plan);
  }

 private:
  static bool plans(const Entry& entry, const RoutePlan& plan) {
    return entry.counts == plan.counts && entry.tokens == plan.tokens && entry.choices == plan.choices;
  }

  std::array<Entry, capacity> entries_{};
  std::uint64_t last_tag_ = 0;
};

// Throws when the status read back for `plan` was not written by one of its
// logged calls (the workspace was reused before the read; `newest` is the
// newest call's tag) or reports an invalid choice or mismatched claimed
// counts (claimed by `counts_caller`).
inline void check_route_status(const RouteStatus& status, const RouteStatusLog& log, std::uint64_t newest,
                               const RoutePlan& plan, std::string_view counts_caller) {
  require(log.planned(plan, status.tag), "read_route_counts: the status plan_routes left in its workspace was ",
          "overwritten (found call ", status.tag, ", expected ", newest,
          "); read a plan's counts before reusing that workspace");
  require(status.bad_token < 0, "plan_routes: token ", status.bad_token, " chose ", status.bad_choice,
          ", expected 0 <= choice < ", plan.choices, " (the plan was left unwritten)");
  require(status.mismatched_choice < 0, counts_caller.empty() ? std::string_view("check_route_counts") : counts_caller,
          ": ", status.claimed_count, " tokens given for choice ", status.mismatched_choice, ", but the plan routed ",
          status.planned_count, " there (the groups ran on the sizes given)");
}

}  // namespace elastic::cuda
