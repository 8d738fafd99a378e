// A small fixed-size thread pool for the host executor. parallel_for splits an
// index range into grains that the workers and the calling thread take from a
// shared counter; it returns when every grain is done and rethrows the first
// exception a grain threw. Calls from inside a grain run inline (no nested
// parallelism, no deadlock); calls from several threads at once take turns.
//
// A decode step is hundreds of short calls in a row, so waking sleeping
// threads for each (a futex round trip, tens of microseconds) would cost
// more than the work. Instead a worker that finishes a job, and a caller
// waiting for its workers, spin on an atomic for up to spin_duration before
// falling back to the condition variable: back-to-back calls hand over work
// in well under a microsecond, and an idle pool (or one on a machine other
// programs need) sleeps after a short spin.
//
// A caller never waits for a worker that has not joined its call: workers
// join a call through its ticket (the call's generation and a count of the
// workers that joined), and once the caller has run out of grains it closes
// the ticket and waits only for the workers that joined. A worker the
// operating system has not scheduled (a busy machine, more threads than
// cores) costs a call nothing; it finds the ticket closed and waits for the
// next one.
// A thread count outside [1, max_threads], or a worker thread that cannot
// start, makes the constructor throw elastic::Error; the workers already
// started are stopped and joined first.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "elastic/core/error.hpp"

namespace elastic::host {

class ThreadPool {
 public:
  // The most threads a pool accepts: more than the hardware threads of the
  // hosts this library targets, and few enough that a wrong count (such as
  // a negative number converted to unsigned) is rejected instead of trying
  // to start billions of threads.
  static constexpr unsigned max_threads = 1024;

  // threads counts the calling thread: ThreadPool(2) starts one worker.
  explicit ThreadPool(unsigned threads) : size_(threads) {
    require(threads >= 1 && threads <= max_threads, "host::ThreadPool(threads = ", threads, "): expected 1 to ",
            max_threads);
    workers_.reserve(size_ - 1);
    for (unsigned i = 1; i < size_; ++i) {
      try {
        workers_.emplace_back([this] { worker_loop(); });
      } catch (const std::exception& failure) {  // std::system_error, std::bad_alloc
        stop_workers();
        throw Error(elastic::detail::concat("host::ThreadPool: could not start worker thread ", i, " of ", size_ - 1,
                                            ": ", failure.what()));
      }
    }
  }

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  ~ThreadPool() { stop_workers(); }

  unsigned size() const { return size_; }

  // Calls body(lo, hi) over [begin, end) in chunks of at most grain indices.
  template <class Body>
  void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain, Body&& body) {
    if (begin >= end) return;
    grain = std::max<std::int64_t>(1, grain);
    if (size_ == 1 || inside_pool() || end - begin <= grain) {
      for (std::int64_t lo = begin; lo < end; lo += grain) body(lo, std::min(lo + grain, end));
      return;
    }
    std::lock_guard submit(submit_mutex_);
    Job job(&body,
            [](void* context, std::int64_t lo, std::int64_t hi) {
              (*static_cast<std::remove_reference_t<Body>*>(context))(lo, hi);
            },
            begin, end, grain);
    job_.store(&job, std::memory_order_relaxed);
    finished_workers_.store(0, std::memory_order_relaxed);
    {
      std::lock_guard lock(mutex_);  // a worker checks the ticket under it before sleeping
      ticket_.store(++generation_ << generation_shift, std::memory_order_release);
    }
    if (sleeping_workers_.load(std::memory_order_acquire) > 0) work_ready_.notify_all();
    run_grains(job);
    const std::uint64_t joined = ticket_.fetch_or(closed_bit, std::memory_order_acq_rel) & joined_mask;
    const auto workers_done = [&] { return finished_workers_.load(std::memory_order_acquire) == joined; };
    if (!spin_until(workers_done)) {
      std::unique_lock lock(mutex_);
      workers_done_.wait(lock, workers_done);
    }
    if (job.error) std::rethrow_exception(job.error);
  }

  // How long an idle worker, or a caller waiting for its workers, spins
  // before it sleeps.
  static constexpr std::chrono::microseconds spin_duration{50};

 private:
  struct Job {
    Job(void* context_, void (*call_)(void*, std::int64_t, std::int64_t), std::int64_t begin,
        std::int64_t end_, std::int64_t grain_)
        : context(context_), call(call_), end(end_), grain(grain_), next(begin) {}

    void* context;
    void (*call)(void*, std::int64_t, std::int64_t);
    std::int64_t end;
    std::int64_t grain;
    std::atomic<std::int64_t> next;
    std::mutex error_mutex;
    std::exception_ptr error;
  };

  static bool& inside_flag() {
    thread_local bool inside = false;
    return inside;
  }
  static bool inside_pool() { return inside_flag(); }

  static void run_grains(Job& job) {
    inside_flag() = true;
    for (;;) {
      const std::int64_t lo = job.next.fetch_add(job.grain);
      if (lo >= job.end) break;
      try {
        job.call(job.context, lo, std::min(lo + job.grain, job.end));
      } catch (...) {
        std::lock_guard lock(job.error_mutex);
        if (!job.error) job.error = std::current_exception();
        job.next.store(job.end);  // stop handing out grains
      }
    }
    inside_flag() = false;
  }

  // Spins until done() or spin_duration has passed; returns done().
  template <class Done>
  static bool spin_until(const Done& done) {
    const auto deadline = std::chrono::steady_clock::now() + spin_duration;
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (done()) return true;
        pause();
      }
      if (std::chrono::steady_clock::now() >= deadline) return done();
    }
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  // Wakes every started worker to return, and joins them.
  void stop_workers() {
    {
      std::lock_guard lock(mutex_);
      stopping_.store(true, std::memory_order_relaxed);
      ticket_.store(++generation_ << generation_shift | closed_bit, std::memory_order_release);
    }
    work_ready_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  // Joins the open call of ticket `ticket`: true when this worker counted
  // itself in before the caller closed it.
  bool join(std::uint64_t ticket) {
    const std::uint64_t generation = ticket >> generation_shift;
    while ((ticket & closed_bit) == 0 && ticket >> generation_shift == generation) {
      if (ticket_.compare_exchange_weak(ticket, ticket + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        return true;
    }
    return false;
  }

  void worker_loop() {
    std::uint64_t seen = 0;
    for (;;) {
      const auto new_call = [&] { return ticket_.load(std::memory_order_acquire) >> generation_shift != seen; };
      if (!spin_until(new_call)) {
        std::unique_lock lock(mutex_);
        sleeping_workers_.fetch_add(1, std::memory_order_acq_rel);
        work_ready_.wait(lock, new_call);
        sleeping_workers_.fetch_sub(1, std::memory_order_acq_rel);
      }
      if (stopping_.load(std::memory_order_acquire)) return;
      const std::uint64_t ticket = ticket_.load(std::memory_order_acquire);
      seen = ticket >> generation_shift;
      if (!join(ticket)) continue;
      run_grains(*job_.load(std::memory_order_relaxed));
      finished_workers_.fetch_add(1, std::memory_order_acq_rel);
      std::lock_guard lock(mutex_);  // the caller checks the count under it before sleeping
      workers_done_.notify_one();
    }
  }

  // A call's ticket: its generation above generation_shift, then the closed
  // bit, then the count of workers that joined it.
  static constexpr int generation_shift = 16;
  static constexpr std::uint64_t closed_bit = std::uint64_t{1} << 15;
  static constexpr std::uint64_t joined_mask = closed_bit - 1;
  static_assert(max_threads <= joined_mask);

  unsigned size_;
  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable workers_done_;
  std::atomic<Job*> job_{nullptr};
  std::atomic<std::uint64_t> ticket_{0};
  std::uint64_t generation_ = 0;  // of the last call (or the stop); written under mutex_
  std::atomic<unsigned> finished_workers_{0};
  std::atomic<unsigned> sleeping_workers_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace elastic::host
