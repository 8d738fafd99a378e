// doctest entry point of the CUDA test suite. Without a CUDA device the whole
// suite reports "skipped" to CTest (exit code 77, SKIP_RETURN_CODE) instead of
// passing vacuously; with ELASTIC_REQUIRE_DEVICE=1 (the device script) a
// missing device or a CUDA error while probing fails the run, naming the error.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "device_probe.cuh"

int main(int argc, char** argv) {
  const elastic::support::DeviceProbe probe = elastic::support::probe_devices();
  if (probe.count == 0) {
    if (elastic::support::device_required()) {
      std::fprintf(stderr, "ELASTIC_REQUIRE_DEVICE=1 but no CUDA device can be used: %s\n", probe.reason.c_str());
      return 1;
    }
    std::printf("no CUDA device (%s): skipping the CUDA tests\n", probe.reason.c_str());
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
