// One copy of a runtime-dispatched host kernel for the whole program.
//
// nvcc's front end cannot build Highway's dispatch tables, so a CUDA
// translation unit compiles a Highway kernel for its baseline instruction set
// only. Both kinds of translation unit may end up in one program (a CUDA test
// with a host reference, a CLI with both executors), and the linker keeps one
// copy of each inline function, so the kernel is not called directly: every
// translation unit the host compiler builds stores its runtime dispatcher in
// one shared pointer per call type during static initialisation, and calls
// go through that pointer, falling back to the translation unit's own build
// only in a program without a host-compiled unit (or before static
// initialisation has run). row_dots.hpp spells the same scheme out for the
// float kernel.
#pragma once

#include <atomic>

namespace elastic::host::simd {

// A kernel taking one Call, and the name of the instruction set it runs on.
template <class Call>
struct HostKernel {
  void (*run)(const Call&);
  const char* (*target)();
};

// The kernel every translation unit calls; null until a host-compiled unit
// has stored its runtime dispatcher.
template <class Call>
std::atomic<const HostKernel<Call>*>& shared_host_kernel() {
  static std::atomic<const HostKernel<Call>*> kernel{nullptr};
  return kernel;
}

// Stores a host-compiled unit's runtime dispatcher; returns true, so that it
// can initialise an inline variable.
template <class Call>
bool share_host_kernel(const HostKernel<Call>& dispatcher) {
  shared_host_kernel<Call>().store(&dispatcher, std::memory_order_release);
  return true;
}

// The shared kernel, or `own` (this translation unit's build) before any is stored.
template <class Call>
const HostKernel<Call>& host_kernel(const HostKernel<Call>& own) {
  const HostKernel<Call>* shared = shared_host_kernel<Call>().load(std::memory_order_acquire);
  return shared != nullptr ? *shared : own;
}

}  // namespace elastic::host::simd
