// How a host vector kernel reaches every translation unit of a program.
// Highway compiles each kernel for every instruction set it targets and
// dispatches at run time through tables that nvcc's front end cannot build,
// so a CUDA translation unit compiles its kernels for the baseline
// instruction set only. Both kinds of unit may end up in one program (a
// CUDA test with a host reference, a CLI with both executors), and the
// linker keeps one copy of each inline function, so kernels are not called
// directly: each kernel header declares a table of entry points, every
// host-compiled unit stores its dispatched table in one shared pointer
// during static initialisation, and calls go through that pointer, falling
// back to the unit's own table only in a program without a host-compiled
// unit (or before static initialisation has run).
//
// A kernel header uses, after including its -inl file per target:
//   ELASTIC_HWY_EXPORT(Entry);                       // per entry point
//   inline constexpr Table ELASTIC_OWN_TABLE(name){  // the unit's table,
//       [](...) { ELASTIC_HWY_DISPATCH(Entry)(...); }, ...};
//   ELASTIC_SHARE_TABLE(name);                       // stored when host-built
//   ... kernel_table(ELASTIC_OWN_TABLE(name)).entry(...)
#pragma once

#include <atomic>

#include <hwy/highway.h>

namespace elastic::host::simd {

// The table every translation unit calls; null until a host-compiled unit
// has stored its dispatched one.
template <class Table>
std::atomic<const Table*>& shared_kernel_table() {
  static std::atomic<const Table*> table{nullptr};
  return table;
}

template <class Table>
bool share_kernel_table(const Table& table) {
  shared_kernel_table<Table>().store(&table, std::memory_order_release);
  return true;
}

// The shared table, or this translation unit's own before any is stored.
template <class Table>
const Table& kernel_table(const Table& own) {
  const Table* shared = shared_kernel_table<Table>().load(std::memory_order_acquire);
  return shared != nullptr ? *shared : own;
}

}  // namespace elastic::host::simd

#if !defined(__CUDACC__)
#define ELASTIC_HWY_EXPORT(entry) HWY_EXPORT(entry)
#define ELASTIC_HWY_DISPATCH(entry) HWY_DYNAMIC_DISPATCH(entry)
#define ELASTIC_OWN_TABLE(name) dispatched_##name
#define ELASTIC_SHARE_TABLE(name) \
  inline const bool name##_shared = ::elastic::host::simd::share_kernel_table(dispatched_##name)
#else
#define ELASTIC_HWY_EXPORT(entry) static_assert(true)
#define ELASTIC_HWY_DISPATCH(entry) HWY_STATIC_DISPATCH(entry)
#define ELASTIC_OWN_TABLE(name) baseline_##name
#define ELASTIC_SHARE_TABLE(name) static_assert(true)
#endif
