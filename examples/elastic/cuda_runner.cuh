// The CUDA runner of the `elastic` CLI: a loaded model whose weights are
// dequantised on the host, uploaded once (DeviceWeights), and run by a
// Decoder over the device copy on the CUDA executor, one DeviceSequence per
// sequence. The device is checked first, so a machine without one fails
// before the model is read.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "device_probe.cuh"
#include "elastic/cuda/executor.cuh"
#include "elastic/model/device_sequence.cuh"
#include "elastic/model/device_weights.cuh"
#include "run_options.hpp"

namespace elastic::cli {

// The current CUDA device's name, or an error saying why there is none.
inline std::string cuda_device_name() {
  const support::DeviceProbe probe = support::probe_devices();
  require(probe.count > 0, "--device cuda: no CUDA device is available (", probe.reason, "); use --device cpu");
  int device = 0;
  ELASTIC_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp properties{};
  ELASTIC_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  return properties.name;
}

template <ElementType T>
struct CudaRunner {
  using Element = T;
  explicit CudaRunner(const RunOptions& options)
      : gpu(cuda_device_name()),
        loaded(options),
        weights(loaded.weights.views()),
        decoder(loaded.description(), weights.views()),
        load_seconds(seconds_since(loaded.start)) {}

  using Sequence = model::DeviceSequence<T>;
  Sequence sequence(int capacity, const model::SubnetworkConfig& config) {
    return Sequence(decoder, executor, capacity, config);
  }
  std::string device_name() const { return "cuda (" + gpu + ")"; }
  unsigned threads() const { return 1; }

  std::string gpu;
  LoadedModel<T> loaded;
  model::DeviceWeights<T> weights;
  cuda::Executor executor;
  model::Decoder<T> decoder;
  double load_seconds;
};

}  // namespace elastic::cli
