// The small elastic MLP both consumer programs build: random float weights on
// the host and a host-executor forward at the narrower width, through the
// public umbrella header only.
#pragma once

#include <random>
#include <vector>

#include "elastic/elastic.hpp"

namespace consumer {

using Widths = elastic::Widths<64, 128>;
using MLP = elastic::ElasticMLP<float, Widths>;

inline constexpr elastic::index_t hidden = 32;
inline constexpr elastic::index_t intermediate = Widths::max;
inline constexpr elastic::index_t tokens = 3;
inline constexpr int width = Widths::min;

struct HostData {
  HostData() {
    std::mt19937 engine(1234);
    std::uniform_real_distribution<float> uniform(-0.5f, 0.5f);
    for (auto* values : {&gate, &up, &down, &x})
      for (float& value : *values) value = uniform(engine);
  }
  std::vector<float> gate = std::vector<float>(intermediate * hidden);
  std::vector<float> up = std::vector<float>(intermediate * hidden);
  std::vector<float> down = std::vector<float>(hidden * intermediate);
  std::vector<float> x = std::vector<float>(tokens * hidden);
};

inline MLP make_mlp(const float* gate, const float* up, const float* down) {
  return MLP({{gate, intermediate, hidden}, {up, intermediate, hidden}, {down, hidden, intermediate}});
}

// y = MLP(x) at `width` on the host executor.
inline std::vector<float> host_forward(const HostData& data) {
  const MLP mlp = make_mlp(data.gate.data(), data.up.data(), data.down.data());
  elastic::host::Executor executor(2);
  elastic::host::WorkspaceBuffer workspace(mlp.workspace_bytes(executor, tokens));
  std::vector<float> y(tokens * hidden);
  mlp.forward(executor, width, {y.data(), tokens, hidden}, {data.x.data(), tokens, hidden}, workspace.get());
  return y;
}

}  // namespace consumer
