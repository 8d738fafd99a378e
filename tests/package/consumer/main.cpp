// Host consumer: builds a small elastic SwiGLU MLP over random weights and
// runs it at its narrower width on the CPU executor. It uses only the public
// umbrella header and the elastic::elastic target, as a downstream engine
// would.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <new>
#include <random>
#include <vector>

#include "elastic/elastic.hpp"

namespace {

// Caller-owned workspace memory, aligned as elastic::Workspace requires.
struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t bytes)
      : data(bytes != 0 ? ::operator new(bytes, std::align_val_t{elastic::workspace_alignment})
                        : nullptr),
        bytes(bytes) {}
  ~AlignedBuffer() {
    if (data != nullptr) ::operator delete(data, std::align_val_t{elastic::workspace_alignment});
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  void* data;
  std::size_t bytes;
};

}  // namespace

int main() {
  try {
    using Widths = elastic::Widths<64, 128>;
    constexpr elastic::index_t hidden = 32;
    constexpr elastic::index_t intermediate = Widths::max;
    constexpr elastic::index_t tokens = 3;
    constexpr int width = 64;

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
    std::vector<float> y(static_cast<std::size_t>(tokens * hidden), 0.0f);

    using MLP = elastic::ElasticMLP<float, Widths>;
    const MLP mlp(MLP::Weights{
        elastic::ConstMatrixView<float>(gate.data(), intermediate, hidden),
        elastic::ConstMatrixView<float>(up.data(), intermediate, hidden),
        elastic::ConstMatrixView<float>(down.data(), hidden, intermediate)});

    elastic::host::Executor executor(2);
    AlignedBuffer workspace(mlp.workspace_bytes(executor, tokens));
    mlp.forward(executor, width, elastic::MatrixView<float>(y.data(), tokens, hidden),
                elastic::ConstMatrixView<float>(x.data(), tokens, hidden),
                elastic::Workspace{workspace.data, workspace.bytes});

    double checksum = 0.0;
    for (float value : y) {
      if (!std::isfinite(value)) {
        std::fprintf(stderr, "elastic consumer: non-finite output\n");
        return 1;
      }
      checksum += std::fabs(value);
    }
    if (checksum == 0.0) {
      std::fprintf(stderr, "elastic consumer: the output is all zero\n");
      return 1;
    }
    std::printf("elastic %d.%d.%d: ElasticMLP<float, Widths%s> at width %d over %lld tokens, "
                "workspace %zu bytes, sum |y| = %.6f\n",
                ELASTIC_VERSION_MAJOR, ELASTIC_VERSION_MINOR, ELASTIC_VERSION_PATCH,
                Widths::describe().c_str(), width, static_cast<long long>(tokens),
                workspace.bytes, checksum);
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "elastic consumer: %s\n", error.what());
    return 1;
  }
}
