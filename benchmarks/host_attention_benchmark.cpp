// Microbenchmarks of the host executor's attention primitive at Llama-3-8B's
// head layout (32 query heads, 8 KV heads, head_dim 128): decode (one new
// token per sequence against 1k and 4k cached positions, batch 1 and 4) and
// causal prefill (128 and 512 tokens), in float32 and bfloat16.
//
// Decode reports bytes_per_second over the K/V bytes one call must read
// (2 * kv_heads * context * head_dim per sequence); prefill reports
// flop_per_second over the causal attention FLOPs (2 * 2 * heads * head_dim *
// n(n+1)/2). The cache is filled with random values once; every call appends
// its token at the same position, so the cache stays the same size. Times are
// wall clock (the executor computes on a thread pool).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "mlp_benchmark.hpp"
#include "support.hpp"

namespace {

using namespace elastic;

constexpr int kHeads = 32;
constexpr int kKvHeads = 8;
constexpr int kHeadDim = 128;

host::Executor& executor() {
  static host::Executor instance(0);
  return instance;
}

struct AttentionCase {
  std::string_view phase;  // decode or prefill
  int sequences;
  int context;     // positions visible to the last token of each sequence
  int new_tokens;  // per sequence

  std::string name(DType dtype) const {
    return detail::concat("elastic_host/", dtype_name(dtype), "/", phase, "/heads:", kHeads, "/kv_heads:", kKvHeads,
                          "/head_dim:", kHeadDim, "/batch:", sequences, "/context:", context);
  }
  double kv_bytes(std::size_t element_bytes) const {
    return 2.0 * kKvHeads * static_cast<double>(context) * kHeadDim * element_bytes * sequences;
  }
  double causal_flops() const {
    const double n = new_tokens;
    return 4.0 * kHeads * kHeadDim * n * (n + 1) / 2 * sequences;
  }
};

template <ElementType T>
void run_case(benchmark::State& state, const AttentionCase& c) {
  bench::run_or_skip(state, [&] {
    const KVCacheShape shape{c.sequences, kKvHeads, c.context, kHeadDim};
    support::HostBuffer<std::byte> cache_memory(shape.bytes_required<T>());
    const KVCacheView<T> cache(Workspace{cache_memory.data(), cache_memory.size()}, shape);
    support::fill_random(cache.keys(), shape.elements_per_tensor(), 1, 1.0f);
    support::fill_random(cache.values(), shape.elements_per_tensor(), 2, 1.0f);

    const int tokens = c.sequences * c.new_tokens;
    support::HostBuffer<T> q(static_cast<std::size_t>(tokens) * kHeads * kHeadDim);
    support::HostBuffer<T> kv(2 * static_cast<std::size_t>(tokens) * kKvHeads * kHeadDim);
    support::HostBuffer<T> out(q.size());
    support::fill_random(q.data(), q.size(), 3, 1.0f);
    support::fill_random(kv.data(), kv.size(), 4, 1.0f);
    const ConstMatrixView<T> k(kv.data(), tokens, kKvHeads * kHeadDim);
    const ConstMatrixView<T> v(kv.data() + kv.size() / 2, tokens, kKvHeads * kHeadDim);

    std::vector<int> slots, cached, fresh;
    for (int s = 0; s < c.sequences; ++s) {
      slots.push_back(s);
      cached.push_back(c.context - c.new_tokens);
      fresh.push_back(c.new_tokens);
    }
    const AttentionBatch batch{slots, cached, fresh, {}};
    RopeConfig rope;
    rope.max_positions = c.context;
    const auto params = AttentionParams<kHeadDim>::make(kHeads, kKvHeads, kHeads / kKvHeads, 0.0883883f, rope);
    for (auto _ : state) {
      executor().attention(MatrixView<T>(out.data(), tokens, kHeads * kHeadDim),
                           ConstMatrixView<T>(q.data(), tokens, kHeads * kHeadDim), k, v, cache, batch, params);
      benchmark::ClobberMemory();
    }
    using benchmark::Counter;
    state.counters["bytes_per_second"] = Counter(c.kv_bytes(sizeof(T)), Counter::kIsIterationInvariantRate);
    state.counters["flop_per_second"] = Counter(c.causal_flops(), Counter::kIsIterationInvariantRate);
  });
}

template <ElementType T>
void register_cases() {
  const AttentionCase cases[] = {{"decode", 1, 1024, 1}, {"decode", 1, 4096, 1}, {"decode", 4, 1024, 1},
                                 {"decode", 4, 4096, 1}, {"prefill", 1, 128, 128}, {"prefill", 1, 512, 512}};
  for (const AttentionCase& c : cases)
    benchmark::RegisterBenchmark(c.name(dtype_of<T>).c_str(), [c](benchmark::State& state) { run_case<T>(state, c); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("executor_threads", std::to_string(executor().threads()));
  register_cases<float>();
  register_cases<bfloat16_t>();
  benchmark::RunSpecifiedBenchmarks();
  return bench::finish_benchmarks("elastic_host_attention_benchmark");
}
