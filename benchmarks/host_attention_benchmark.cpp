// Microbenchmarks of the host executor's attention primitive at two head
// layouts: Llama-3-8B's (32 query heads, 8 KV heads, head_dim 128; decode of
// one new token per sequence against 1k and 4k positions, batch 1 and 4,
// causal prefill of 128 and 512 tokens) and SmolLM2-135M's (9 query heads,
// 3 KV heads, head_dim 64; decode against 512 and 2k positions, batch 1,
// prefill of 512 tokens), in float32 and bfloat16.
//
// Decode reports bytes_per_second over the K/V bytes one call must read
// (2 * kv_heads * context * head_dim per sequence) and frac_read_bw, that
// rate over the machine's read bandwidth measured at startup with the
// executor's thread count (host_read_bandwidth.hpp; context
// read_bytes_per_second). Decode calls cycle through cache slots so that the
// K/V bytes read between two reads of one slot exceed twice the last-level
// cache (counter rotation_over_cache): the keys and values come from memory.
// Prefill reports flop_per_second over the causal attention FLOPs
// (2 * 2 * heads * head_dim * n(n+1)/2). The cache is filled with random
// values once; every call appends its tokens at the same positions, so the
// cache stays the same size. Times are wall clock (the executor computes on
// a thread pool).
#include <benchmark/benchmark.h>

#include <cmath>
#include <string>
#include <vector>

#include "host_read_bandwidth.hpp"
#include "mlp_benchmark.hpp"
#include "support.hpp"

namespace {

using namespace elastic;

// Host memory the rotated caches of one case may take.
constexpr double cache_budget_bytes = 1024.0 * (1 << 20);

host::Executor& executor() {
  static host::Executor instance(0);
  return instance;
}

// The read bandwidth decode cases are compared with, measured once.
double read_bytes_per_second() {
  static const double rate = bench::measure_read_bytes_per_second(executor().threads());
  return rate;
}

struct HeadLayout {
  std::string_view model;
  int heads;
  int kv_heads;
  int head_dim;
};

constexpr HeadLayout llama3_8b{"llama3_8b", 32, 8, 128};
constexpr HeadLayout smollm2{"smollm2", 9, 3, 64};

struct AttentionCase {
  HeadLayout layout;
  std::string_view phase;  // decode or prefill
  int sequences;
  int context;     // positions visible to the last token of each sequence
  int new_tokens;  // per sequence

  std::string name(DType dtype) const {
    return detail::concat("elastic_host/", dtype_name(dtype), "/", phase, "/", layout.model, "/heads:", layout.heads,
                          "/kv_heads:", layout.kv_heads, "/head_dim:", layout.head_dim, "/batch:", sequences,
                          "/context:", context);
  }
  bool is_decode() const { return phase == "decode"; }
  double kv_bytes(std::size_t element_bytes) const {
    return 2.0 * layout.kv_heads * static_cast<double>(context) * layout.head_dim * element_bytes * sequences;
  }
  double causal_flops() const {
    const double n = new_tokens;
    return 4.0 * layout.heads * layout.head_dim * n * (n + 1) / 2 * sequences;
  }
};

template <ElementType T, int HeadDim>
void run_case(benchmark::State& state, const AttentionCase& c) {
  bench::run_or_skip(state, [&] {
    const HeadLayout& layout = c.layout;
    // Copies of the batch's slots to cycle through (decode reads memory-bound
    // K/V; prefill is compute-bound and reuses one copy).
    const std::size_t copies =
        c.is_decode() ? bench::rotation_copies(c.kv_bytes(sizeof(T)), bench::last_level_cache_bytes(),
                                               c.kv_bytes(sizeof(T)), cache_budget_bytes)
                      : 1;
    const KVCacheShape shape{static_cast<int>(copies) * c.sequences, layout.kv_heads, c.context, HeadDim};
    support::HostBuffer<std::byte> cache_memory(shape.bytes_required<T>());
    const KVCacheView<T> cache(Workspace{cache_memory.data(), cache_memory.size()}, shape);
    support::fill_random(cache.keys(), shape.elements_per_tensor(), 1, 1.0f);
    support::fill_random(cache.values(), shape.elements_per_tensor(), 2, 1.0f);

    const int tokens = c.sequences * c.new_tokens;
    const index_t q_width = index_t{layout.heads} * HeadDim, kv_width = index_t{layout.kv_heads} * HeadDim;
    support::HostBuffer<T> q(static_cast<std::size_t>(tokens * q_width));
    support::HostBuffer<T> kv(2 * static_cast<std::size_t>(tokens * kv_width));
    support::HostBuffer<T> out(q.size());
    support::fill_random(q.data(), q.size(), 3, 1.0f);
    support::fill_random(kv.data(), kv.size(), 4, 1.0f);
    const ConstMatrixView<T> k(kv.data(), tokens, kv_width);
    const ConstMatrixView<T> v(kv.data() + kv.size() / 2, tokens, kv_width);

    std::vector<std::vector<int>> slots(copies);
    std::vector<int> cached, fresh;
    for (int s = 0; s < c.sequences; ++s) {
      cached.push_back(c.context - c.new_tokens);
      fresh.push_back(c.new_tokens);
    }
    for (std::size_t copy = 0; copy < copies; ++copy)
      for (int s = 0; s < c.sequences; ++s) slots[copy].push_back(static_cast<int>(copy) * c.sequences + s);
    RopeConfig rope;
    rope.max_positions = c.context;
    const auto params = AttentionParams<HeadDim>::make(layout.heads, layout.kv_heads, layout.heads / layout.kv_heads,
                                                       1.0f / std::sqrt(static_cast<float>(HeadDim)), rope);
    std::size_t copy = 0;
    for (auto _ : state) {
      const AttentionBatch batch{slots[copy], cached, fresh, {}};
      executor().attention(MatrixView<T>(out.data(), tokens, q_width), ConstMatrixView<T>(q.data(), tokens, q_width),
                           k, v, cache, batch, params);
      benchmark::ClobberMemory();
      copy = (copy + 1) % copies;
    }
    using benchmark::Counter;
    if (c.is_decode()) {
      state.counters["bytes_per_second"] = Counter(c.kv_bytes(sizeof(T)), Counter::kIsIterationInvariantRate);
      bench::set_ceiling_fraction(state, "frac_read_bw", c.kv_bytes(sizeof(T)), read_bytes_per_second());
      state.counters["rotation_over_cache"] =
          static_cast<double>(copies) * c.kv_bytes(sizeof(T)) / bench::last_level_cache_bytes();
    } else {
      state.counters["flop_per_second"] = Counter(c.causal_flops(), Counter::kIsIterationInvariantRate);
    }
  });
}

template <ElementType T>
void register_cases() {
  const AttentionCase cases[] = {
      {llama3_8b, "decode", 1, 1024, 1},    {llama3_8b, "decode", 1, 4096, 1},   {llama3_8b, "decode", 4, 1024, 1},
      {llama3_8b, "decode", 4, 4096, 1},    {llama3_8b, "prefill", 1, 128, 128}, {llama3_8b, "prefill", 1, 512, 512},
      {smollm2, "decode", 1, 512, 1},       {smollm2, "decode", 1, 2048, 1},     {smollm2, "prefill", 1, 512, 512}};
  for (const AttentionCase& c : cases) {
    const auto run = c.layout.head_dim == 64 ? &run_case<T, 64> : &run_case<T, 128>;
    benchmark::RegisterBenchmark(c.name(dtype_of<T>).c_str(), [c, run](benchmark::State& state) { run(state, c); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  bench::add_host_context(executor().threads(), read_bytes_per_second());
  register_cases<float>();
  register_cases<bfloat16_t>();
  benchmark::RunSpecifiedBenchmarks();
  return bench::finish_benchmarks("elastic_host_attention_benchmark");
}
