// CUDA consumer: proves that elastic/elastic.cuh compiles in a downstream
// CUDA translation unit and that elastic::cuda brings cudart and cuBLASLt to
// the link. With a CUDA device it runs a small elastic MLP on the CUDA
// executor and checks it against the host executor; without one it says so
// and exits 0 (building and linking was the test).
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <new>
#include <random>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

#include "elastic/elastic.cuh"

namespace {

using Widths = elastic::Widths<64, 128>;
using MLP = elastic::ElasticMLP<float, Widths>;

constexpr elastic::index_t hidden = 32;
constexpr elastic::index_t intermediate = Widths::max;
constexpr elastic::index_t tokens = 3;
constexpr int width = 64;

// Device memory released on scope exit (cudaMalloc aligns to 256 bytes).
struct DeviceBuffer {
  explicit DeviceBuffer(std::size_t bytes) : bytes(bytes) {
    if (bytes != 0) ELASTIC_CUDA_CHECK(cudaMalloc(&data, bytes));
  }
  ~DeviceBuffer() {
    if (data != nullptr) cudaFree(data);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data(std::exchange(other.data, nullptr)), bytes(other.bytes) {}
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;

  float* floats() const { return static_cast<float*>(data); }

  void* data = nullptr;
  std::size_t bytes;
};

DeviceBuffer to_device(const std::vector<float>& values) {
  DeviceBuffer buffer(values.size() * sizeof(float));
  ELASTIC_CUDA_CHECK(cudaMemcpy(buffer.data, values.data(), buffer.bytes, cudaMemcpyHostToDevice));
  return buffer;
}

MLP make_mlp(const float* gate, const float* up, const float* down) {
  return MLP(MLP::Weights{elastic::ConstMatrixView<float>(gate, intermediate, hidden),
                          elastic::ConstMatrixView<float>(up, intermediate, hidden),
                          elastic::ConstMatrixView<float>(down, hidden, intermediate)});
}

int run_on_device() {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uniform(-0.5f, 0.5f);
  auto random_vector = [&](elastic::index_t n) {
    std::vector<float> values(static_cast<std::size_t>(n));
    for (float& value : values) value = uniform(rng);
    return values;
  };
  const std::vector<float> gate = random_vector(intermediate * hidden);
  const std::vector<float> up = random_vector(intermediate * hidden);
  const std::vector<float> down = random_vector(hidden * intermediate);
  const std::vector<float> x = random_vector(tokens * hidden);

  // Reference on the host executor.
  std::vector<float> expected(static_cast<std::size_t>(tokens * hidden), 0.0f);
  {
    const MLP mlp = make_mlp(gate.data(), up.data(), down.data());
    elastic::host::Executor executor(1);
    const std::size_t bytes = mlp.workspace_bytes(executor, tokens);
    void* workspace =
        bytes != 0 ? ::operator new(bytes, std::align_val_t{elastic::workspace_alignment}) : nullptr;
    mlp.forward(executor, width, elastic::MatrixView<float>(expected.data(), tokens, hidden),
                elastic::ConstMatrixView<float>(x.data(), tokens, hidden),
                elastic::Workspace{workspace, bytes});
    if (workspace != nullptr) ::operator delete(workspace, std::align_val_t{elastic::workspace_alignment});
  }

  // The same forward on the CUDA executor.
  const DeviceBuffer d_gate = to_device(gate);
  const DeviceBuffer d_up = to_device(up);
  const DeviceBuffer d_down = to_device(down);
  const DeviceBuffer d_x = to_device(x);
  const DeviceBuffer d_y(expected.size() * sizeof(float));
  const MLP mlp = make_mlp(d_gate.floats(), d_up.floats(), d_down.floats());
  cudaStream_t stream = nullptr;
  ELASTIC_CUDA_CHECK(cudaStreamCreate(&stream));
  {
    elastic::cuda::Executor executor(stream);
    const DeviceBuffer workspace(mlp.workspace_bytes(executor, tokens));
    mlp.forward(executor, width, elastic::MatrixView<float>(d_y.floats(), tokens, hidden),
                elastic::ConstMatrixView<float>(d_x.floats(), tokens, hidden),
                elastic::Workspace{workspace.data, workspace.bytes});
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  ELASTIC_CUDA_CHECK(cudaStreamDestroy(stream));
  std::vector<float> actual(expected.size());
  ELASTIC_CUDA_CHECK(cudaMemcpy(actual.data(), d_y.data, d_y.bytes, cudaMemcpyDeviceToHost));

  double max_error = 0.0;
  for (std::size_t i = 0; i < actual.size(); ++i)
    max_error = std::fmax(max_error, std::fabs(static_cast<double>(actual[i]) - expected[i]));
  std::printf("elastic %d.%d.%d CUDA consumer: ElasticMLP<float, Widths%s> at width %d, "
              "max |cuda - host| = %.3g\n",
              ELASTIC_VERSION_MAJOR, ELASTIC_VERSION_MINOR, ELASTIC_VERSION_PATCH,
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
    std::printf("elastic %d.%d.%d CUDA consumer: no CUDA device (%s); built and linked only\n",
                ELASTIC_VERSION_MAJOR, ELASTIC_VERSION_MINOR, ELASTIC_VERSION_PATCH,
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
