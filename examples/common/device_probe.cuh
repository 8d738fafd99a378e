// Whether this process can use a CUDA device, for the programs that skip or
// fall back to the host without one (the CUDA tests, benchmarks and
// examples), and whether they may: ELASTIC_REQUIRE_DEVICE=1 (the device
// script sets it) turns "no device", or any error of the CUDA runtime or
// driver while probing, into a failure that names the error.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <string>
#include <string_view>

namespace elastic::support {

struct DeviceProbe {
  int count = 0;
  std::string reason;  // why count is 0: the runtime's error name and text, or "no device"
};

inline DeviceProbe probe_devices() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so a host fallback starts clean
    return {0, std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status)};
  }
  if (count == 0) return {0, "the driver reports no device"};
  return {count, {}};
}

// True when ELASTIC_REQUIRE_DEVICE=1: a missing device is a failure.
inline bool device_required() {
  const char* value = std::getenv("ELASTIC_REQUIRE_DEVICE");
  return value != nullptr && std::string_view(value) == "1";
}

}  // namespace elastic::support
