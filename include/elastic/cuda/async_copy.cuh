// Asynchronous global-to-shared copies (PTX cp.async, sm_80 and later): the
// three instructions a multi-stage load ring is built from. A thread starts
// 16-byte copies, commits them as a group, and later waits until at most N of
// its groups are still in flight; the copies it waited for are then visible
// to that thread (other threads need a barrier as well).
#pragma once

#include <cuda_runtime.h>

namespace elastic::cuda::async_copy {

// 16 bytes from `source` (global) to `destination` (shared), both 16-byte
// aligned; source_bytes 0 fills the destination with zeros and reads
// nothing. .cg caches the source in L2 only (data read once).
__device__ __forceinline__ void copy_16(void* destination, const void* source, int source_bytes) {
  const auto address = static_cast<unsigned>(__cvta_generic_to_shared(destination));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(source), "r"(source_bytes)
               : "memory");
}

// Closes the group of this thread's copies started since the last commit
// (possibly none: an empty group still counts in wait()).
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most `Pending` of this thread's committed groups are in flight.
template <int Pending>
__device__ __forceinline__ void wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

}  // namespace elastic::cuda::async_copy
