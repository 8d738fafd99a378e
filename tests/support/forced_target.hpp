// Restricts the host's vector kernels (host/simd/kernels.hpp) to one
// instruction set for the life of the object, so a test can run every set
// Highway compiled on one machine; for_each_compiled_target runs a test body
// once per set.
#pragma once

#include <hwy/targets.h>

#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "elastic/host/simd/kernels.hpp"

namespace elastic::test {

class ForcedTarget {
 public:
  explicit ForcedTarget(std::int64_t target) { hwy::SetSupportedTargetsForTest(target); }
  ForcedTarget(const ForcedTarget&) = delete;
  ForcedTarget& operator=(const ForcedTarget&) = delete;
  ~ForcedTarget() { hwy::SetSupportedTargetsForTest(0); }
};

// Calls body() once for every instruction set Highway compiled that this
// CPU runs, with the kernels restricted to it (and checked to dispatch to
// it); returns the sets, best first.
template <class Body>
std::vector<std::int64_t> for_each_compiled_target(Body&& body) {
  const std::vector<std::int64_t> targets = hwy::SupportedAndGeneratedTargets();
  REQUIRE(!targets.empty());
  for (const std::int64_t target : targets) {
    const ForcedTarget forced(target);
    CAPTURE(std::string(hwy::TargetName(target)));
    REQUIRE(std::string(host::simd::kernels_target()) == hwy::TargetName(target));
    body();
  }
  return targets;
}

}  // namespace elastic::test
