// Restricts the host's vector kernels (host/simd/kernels.hpp) to one
// instruction set for the life of the object, so a test can run every set
// Highway compiled on one machine.
#pragma once

#include <hwy/targets.h>

#include <cstdint>

namespace elastic::test {

class ForcedTarget {
 public:
  explicit ForcedTarget(std::int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ForcedTarget(const ForcedTarget&) = delete;
  ForcedTarget& operator=(const ForcedTarget&) = delete;
  ~ForcedTarget() { hwy::SetSupportedTargetsForTest(0); }
};

}  // namespace elastic::test
