// CUDA consumer: proves that elastic/elastic.cuh compiles in a downstream
// CUDA translation unit and that elastic::cuda brings cudart and cuBLASLt to
// the link. With a CUDA device it runs the small MLP on the CUDA executor and
// checks it against the host executor; without one it says so and exits 0
// (building and linking was the test).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <vector>

#include "elastic/elastic.cuh"
#include "small_mlp.hpp"

namespace {

elastic::cuda::DeviceBuffer<float> to_device(const std::vector<float>& values) {
  elastic::cuda::DeviceBuffer<float> buffer(values.size());
  ELASTIC_CUDA_CHECK(cudaMemcpy(buffer.data(), values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice));
  return buffer;
}

int run_on_device() {
  using namespace consumer;
  const HostData data;
  const std::vector<float> expected = host_forward(data);

  const auto gate = to_device(data.gate), up = to_device(data.up), down = to_device(data.down), x = to_device(data.x);
  const elastic::cuda::DeviceBuffer<float> y(expected.size());
  const MLP mlp = make_mlp(gate.data(), up.data(), down.data());
  elastic::cuda::Executor executor;  // default stream
  const elastic::cuda::WorkspaceBuffer workspace(mlp.workspace_bytes(executor, tokens));
  mlp.forward(executor, width, {y.data(), tokens, hidden}, {x.data(), tokens, hidden}, workspace.get());
  std::vector<float> actual(expected.size());
  ELASTIC_CUDA_CHECK(cudaMemcpy(actual.data(), y.data(), actual.size() * sizeof(float), cudaMemcpyDeviceToHost));

  double max_error = 0.0;
  for (std::size_t i = 0; i < actual.size(); ++i)
    max_error = std::fmax(max_error, std::fabs(static_cast<double>(actual[i]) - expected[i]));
  std::printf("elastic CUDA consumer: ElasticMLP<float, Widths%s> at width %d, max |cuda - host| = %.3g\n",
              Widths::describe().c_str(), width, max_error);
  if (!(max_error <= 1e-4)) {
    std::fprintf(stderr, "elastic CUDA consumer: the CUDA result differs from the host result\n");
    return 1;
  }
  return 0;
}

}  // namespace

int main() {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    std::printf("elastic CUDA consumer: no CUDA device (%s); built and linked only\n",
                status != cudaSuccess ? cudaGetErrorString(status) : "0 devices");
    return 0;
  }
  try {
    return run_on_device();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "elastic CUDA consumer: %s\n", error.what());
    return 1;
  }
}
