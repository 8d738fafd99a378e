// The host thread pool: every index exactly once, exceptions reach the caller,
// nested calls run inline, and concurrent callers take turns.
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "elastic/host/thread_pool.hpp"

using elastic::host::ThreadPool;

TEST_CASE("parallel_for visits every index exactly once") {
  for (unsigned threads : {1u, 2u, 4u}) {
    ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    for (std::int64_t grain : {1, 7, 1000}) {
      std::vector<std::atomic<int>> visits(997);
      pool.parallel_for(0, 997, grain, [&](std::int64_t lo, std::int64_t hi) {
        CHECK(hi - lo <= grain);
        for (std::int64_t i = lo; i < hi; ++i) visits[i].fetch_add(1);
      });
      for (const auto& count : visits) REQUIRE(count.load() == 1);
    }
  }
}

TEST_CASE("exceptions from a grain reach the caller and the pool stays usable") {
  ThreadPool pool(3);
  CHECK_THROWS_WITH_AS(pool.parallel_for(0, 100, 1,
                                         [](std::int64_t lo, std::int64_t) {
                                           if (lo == 42) throw std::runtime_error("grain 42 failed");
                                         }),
                       "grain 42 failed", std::runtime_error);
  std::atomic<std::int64_t> sum = 0;
  pool.parallel_for(0, 100, 3, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t i = lo; i < hi; ++i) sum += i;
  });
  CHECK(sum.load() == 4950);
}

TEST_CASE("nested and concurrent calls complete") {
  ThreadPool pool(2);
  std::atomic<int> inner = 0;
  pool.parallel_for(0, 8, 1, [&](std::int64_t, std::int64_t) {
    pool.parallel_for(0, 10, 1, [&](std::int64_t lo, std::int64_t hi) { inner += static_cast<int>(hi - lo); });
  });
  CHECK(inner.load() == 80);

  std::atomic<int> total = 0;
  std::vector<std::thread> callers;
  for (int c = 0; c < 3; ++c)
    callers.emplace_back([&] {
      for (int round = 0; round < 20; ++round)
        pool.parallel_for(0, 50, 4, [&](std::int64_t lo, std::int64_t hi) { total += static_cast<int>(hi - lo); });
    });
  for (auto& caller : callers) caller.join();
  CHECK(total.load() == 3 * 20 * 50);
}
