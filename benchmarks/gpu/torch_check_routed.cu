// The routed-layer entry point of libelastic_torch_check (see
// torch_check.cuh): a linear Router over torch's device tensors picks, per
// token, one of {skip, each width of the benchmarks' set} (argmax, or the
// capacity rule: the `capacity` tokens with the highest full-width logit run
// at full width, the rest skip), and RoutedMLP adds each token's MLP at its
// width into the residual, all on the CUDA executor. large_shapes.py reads
// the choices back, checks them against torch's own routing, and checks the
// residual against torch's per-token MLP.
//
//   elastic_routed_mlp_forward(dtype, rule, capacity, tokens, hidden,
//       intermediate, x, gate, up, down, router, residual, choices, stream)
//
// rule: 0 argmax, 1 capacity. router: [1 + widths x hidden]; choices:
// [tokens] int32 on the device. Returns 0 once its work has finished on the
// stream (it sizes and allocates its own workspace), -1 on failure with
// elastic_last_error() saying why.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "torch_check.cuh"

using namespace elastic;
using namespace elastic::torch_check;

namespace {

constexpr int kChoices = static_cast<int>(CheckWidths::count) + 1;

// Choice 0 skips the MLP, choice c runs it at the c-th width of the set.
constexpr std::array<int, kChoices> choice_widths() {
  std::array<int, kChoices> widths{};
  for (std::size_t c = 0; c < CheckWidths::count; ++c) widths[c + 1] = CheckWidths::values[c];
  return widths;
}

}  // namespace

extern "C" {

int elastic_routed_mlp_forward(int dtype, int rule, int capacity, std::int64_t tokens, std::int64_t hidden,
                               std::int64_t intermediate, const void* x, const void* gate, const void* up,
                               const void* down, const void* router, void* residual, int* choices, void* stream) {
  return guarded(
      [&] {
        return with_dtype(dtype, [&]<class T>() {
          require(rule == 0 || rule == 1, "rule must be 0 (argmax) or 1 (capacity), found ", rule);
          const RouteRule route_rule =
              rule == 0 ? RouteRule::argmax() : RouteRule::top_k(kChoices - 1, 0, capacity);
          const Router<T, kChoices> token_router(
              RouterWeights<T>{{}, {}, ConstMatrixView<T>(static_cast<const T*>(router), kChoices, hidden)});
          constexpr std::array<int, kChoices> widths = choice_widths();
          const RoutedMLP<T, CheckWidths> routed(make_mlp<T>(hidden, intermediate, gate, up, down), widths);
          const ConstMatrixView<T> input(static_cast<const T*>(x), tokens, hidden);

          elastic::cuda::Executor executor(static_cast<cudaStream_t>(stream));
          const elastic::cuda::WorkspaceBuffer workspace(std::max(token_router.route_workspace_bytes(executor, tokens),
                                                                  routed.workspace_bytes(executor, tokens)));
          token_router.route(executor, choices, input, route_rule, workspace.get());
          routed.forward(executor, MatrixView<T>(static_cast<T*>(residual), tokens, hidden), input, choices,
                         workspace.get());
          ELASTIC_CUDA_CHECK(cudaGetLastError());
          ELASTIC_CUDA_CHECK(cudaStreamSynchronize(executor.stream()));  // before the workspace goes
          return 0;
        });
      },
      -1);
}

}  // extern "C"
