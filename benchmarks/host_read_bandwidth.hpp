// The host benchmarks' memory ceiling: the read bandwidth of this machine,
// measured in the same run as the kernels it is compared with. `threads`
// threads each sum their share of a buffer far larger than the last-level
// cache (64-bit words, four independent sums per thread, so the loads are
// not chained); the median of several passes over the whole buffer, in
// bytes read per second. add_host_context records it, with the rest of what
// a host benchmark's numbers depend on, in the run's context.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "elastic/host/simd/kernels.hpp"
#include "mlp_benchmark.hpp"

namespace elastic::bench {

inline double measure_read_bytes_per_second(unsigned threads, std::size_t bytes = std::size_t{1} << 30,
                                            int passes = 7) {
  const std::size_t words = bytes / sizeof(std::uint64_t);
  std::vector<std::uint64_t> buffer(words);
  std::iota(buffer.begin(), buffer.end(), std::uint64_t{1});  // touch every page: no zero-page reads
  std::vector<std::uint64_t> sums(threads);
  const auto sum_share = [&](unsigned thread) {
    const std::size_t first = words * thread / threads, last = words * (thread + 1) / threads;
    std::uint64_t a = 0, b = 0, c = 0, d = 0;
    std::size_t i = first;
    for (; i + 4 <= last; i += 4) {
      a += buffer[i];
      b += buffer[i + 1];
      c += buffer[i + 2];
      d += buffer[i + 3];
    }
    for (; i < last; ++i) a += buffer[i];
    sums[thread] = a + b + c + d;
  };
  std::vector<double> seconds;
  for (int pass = 0; pass < passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (unsigned thread = 1; thread < threads; ++thread) workers.emplace_back(sum_share, thread);
    sum_share(0);
    for (std::thread& worker : workers) worker.join();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  // The sums are used, so the reads cannot be optimised away.
  volatile std::uint64_t sink = std::accumulate(sums.begin(), sums.end(), std::uint64_t{0});
  (void)sink;
  std::nth_element(seconds.begin(), seconds.begin() + passes / 2, seconds.end());
  return static_cast<double>(words * sizeof(std::uint64_t)) / seconds[static_cast<std::size_t>(passes / 2)];
}

// The context of a host benchmark run: the executor's threads, the
// last-level cache, the read bandwidth its cases are compared with and the
// instruction set the host kernels run on.
inline void add_host_context(unsigned threads, double read_bytes_per_second) {
  benchmark::AddCustomContext("executor_threads", std::to_string(threads));
  benchmark::AddCustomContext("last_level_cache_bytes", std::to_string(static_cast<long long>(last_level_cache_bytes())));
  benchmark::AddCustomContext("read_bytes_per_second", std::to_string(read_bytes_per_second));
  benchmark::AddCustomContext("kernel_target", host::simd::kernels_target());
}

}  // namespace elastic::bench
