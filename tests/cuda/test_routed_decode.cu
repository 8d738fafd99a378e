// RoutedMLP::forward_decode on the CUDA executor, in bfloat16: group sizes
// stay in device memory and the decode kernels read them. Checked: parity
// with the host executor for 1 to 16 tokens (every decode bucket) with an
// argmax rule over {skip, every width}, read_counts against the host's plan;
// an argmax-routed decode step captured in a CUDA graph and replayed on new
// logits, inputs and residuals (so the groups change size between replays)
// equals the eager step on those inputs; an out-of-range choice leaves the
// residual as it was and read_counts reports it; a batch past
// group_max_rows is rejected before anything runs; and forward_with_counts
// with group sizes that differ from the plan is flagged on the device and
// reported by read_counts, while the right sizes match forward().
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <random>
#include <string>
#include <span>
#include <vector>

#include "cuda/routing_parity.cuh"

// Inside the library's namespace, `cuda` names elastic::cuda rather than
// CCCL's top-level cuda namespace.
namespace elastic::test {
namespace {

using T = bfloat16_t;
constexpr index_t kHidden = 72;

// Skip, then every width of the test set.
std::vector<int> decode_choice_widths() {
  std::vector<int> widths = {0};
  for (int width : TestWidths::values) widths.push_back(width);
  return widths;
}

// The same routed MLP over host and device copies of one set of weights.
struct RoutedPair {
  RoutedPair()
      : weights(kHidden, TestWidths::max, 77),
        gate(weights.gate),
        up(weights.up),
        down(weights.down),
        widths(decode_choice_widths()),
        host_layer(ElasticMLP<T, TestWidths>(weights.weights()), widths),
        device_layer(ElasticMLP<T, TestWidths>({gate.view(), up.view(), down.view()}), widths) {}

  RandomMLP<T> weights;
  DeviceMatrix<T> gate, up, down;
  std::vector<int> widths;
  RoutedMLP<T, TestWidths> host_layer;
  RoutedMLP<T, TestWidths> device_layer;
};

std::vector<int> random_choices(int tokens, int choices, unsigned seed) {
  std::mt19937 engine(seed);
  std::uniform_int_distribution<int> pick(0, choices - 1);
  std::vector<int> result(static_cast<std::size_t>(tokens));
  for (int& choice : result) choice = pick(engine);
  return result;
}

}  // namespace

TEST_CASE("cuda forward_decode matches the host executor with group sizes read on the device") {
  const RoutedPair pair;
  host::Executor host_executor;
  cuda::Executor device_executor;
  const int choices = static_cast<int>(pair.widths.size());
  for (int tokens : {1, 3, 4, 5, 16}) {
    CAPTURE(tokens);
    const HostMatrix<T> input = random_matrix<T>(tokens, kHidden, 300 + tokens);
    const HostMatrix<T> residual = random_matrix<T>(tokens, kHidden, 400 + tokens);
    const std::vector<int> picks = random_choices(tokens, choices, static_cast<unsigned>(tokens));

    HostMatrix<T> expected = residual;
    host::WorkspaceBuffer host_workspace(pair.host_layer.workspace_bytes(host_executor, tokens));
    pair.host_layer.forward(host_executor, expected.view(), input.view(), picks.data(), host_workspace.get());

    const DeviceMatrix<T> device_input(input);
    DeviceMatrix<T> device_residual(residual);
    const DeviceArray<int> device_picks(picks);
    const cuda::WorkspaceBuffer workspace(pair.device_layer.workspace_bytes(device_executor, tokens));
    pair.device_layer.forward_decode(device_executor, device_residual.view(), device_input.view(),
                                     device_picks.data(), workspace.get());
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(relative_difference(device_residual.to_host(), expected) < tolerance<T>());

    std::vector<int> counts(static_cast<std::size_t>(choices)), expected_counts(static_cast<std::size_t>(choices));
    for (int c : picks) ++expected_counts[static_cast<std::size_t>(c)];
    pair.device_layer.read_counts(device_executor, tokens, workspace.get(), counts);
    CHECK(counts == expected_counts);
  }
}

TEST_CASE("cuda argmax-routed decode step captured in a graph replays on new inputs") {
  const RoutedPair pair;
  cudaStream_t stream = nullptr;
  ELASTIC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cuda::Executor executor(stream);
  const int choices = static_cast<int>(pair.widths.size());
  constexpr int tokens = 16;

  // The step's inputs live in fixed buffers: the graph reads whatever they hold.
  DeviceMatrix<T> logits(random_matrix<T>(tokens, choices, 1));
  DeviceMatrix<T> input(random_matrix<T>(tokens, kHidden, 2));
  DeviceMatrix<T> residual(random_matrix<T>(tokens, kHidden, 3));
  const DeviceArray<int> picks(std::vector<int>(tokens, choice_poison));
  const cuda::WorkspaceBuffer decide_workspace(executor.decide_routes_workspace_bytes<T>(tokens, choices));
  const cuda::WorkspaceBuffer workspace(pair.device_layer.workspace_bytes(executor, tokens));
  const auto step = [&] {
    executor.decide_routes(picks.data(), ConstMatrixView<T>(logits.view()), RouteRule::argmax(),
                           decide_workspace.get());
    pair.device_layer.forward_decode(executor, residual.view(), input.view(), picks.data(), workspace.get());
  };
  const auto load = [&](DeviceMatrix<T>& into, const HostMatrix<T>& values) {
    ELASTIC_CUDA_CHECK(cudaMemcpyAsync(into.buffer.data(), values.values.data(), values.values.size() * sizeof(T),
                                       cudaMemcpyHostToDevice, stream));
  };

  cudaGraph_t graph = nullptr;
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
  ELASTIC_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  step();
  ELASTIC_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  ELASTIC_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));

  std::vector<std::vector<int>> counts_seen;
  for (std::uint64_t seed : {10u, 20u}) {
    CAPTURE(seed);
    const HostMatrix<T> new_logits = random_matrix<T>(tokens, choices, seed);
    const HostMatrix<T> new_input = random_matrix<T>(tokens, kHidden, seed + 1);
    const HostMatrix<T> new_residual = random_matrix<T>(tokens, kHidden, seed + 2);

    load(logits, new_logits);
    load(input, new_input);
    load(residual, new_residual);
    step();
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream));
    const HostMatrix<T> eager = residual.to_host();

    load(residual, new_residual);
    ELASTIC_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream));
    CHECK(bitwise_equal(residual.to_host().values, eager.values));
    CHECK(!all_poison(residual.to_host()));

    std::vector<int> counts(static_cast<std::size_t>(choices));
    pair.device_layer.read_counts(executor, tokens, workspace.get(), counts);
    counts_seen.push_back(counts);
  }
  CHECK(counts_seen[0] != counts_seen[1]);  // the replays routed differently

  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_CASE("cuda forward_decode: an invalid choice changes nothing and read_counts reports it") {
  const RoutedPair pair;
  cuda::Executor executor;
  constexpr int tokens = 5;
  const DeviceMatrix<T> input(random_matrix<T>(tokens, kHidden, 4));
  const HostMatrix<T> residual = random_matrix<T>(tokens, kHidden, 5);
  DeviceMatrix<T> device_residual(residual);
  std::vector<int> picks = random_choices(tokens, static_cast<int>(pair.widths.size()), 6);
  picks[3] = static_cast<int>(pair.widths.size());
  const DeviceArray<int> device_picks(picks);
  const cuda::WorkspaceBuffer workspace(pair.device_layer.workspace_bytes(executor, tokens));
  ELASTIC_CUDA_CHECK(cudaMemset(workspace.get().data, plan_poison, workspace.bytes()));

  pair.device_layer.forward_decode(executor, device_residual.view(), input.view(), device_picks.data(),
                                   workspace.get());
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(bitwise_equal(device_residual.to_host().values, residual.values));
  std::vector<int> counts(pair.widths.size());
  CHECK_THROWS_WITH_AS(pair.device_layer.read_counts(executor, tokens, workspace.get(), counts),
                       "plan_routes: token 3 chose 5, expected 0 <= choice < 5", Error);

  const DeviceMatrix<T> too_many(random_matrix<T>(cuda::Executor::group_max_rows + 1, kHidden, 7));
  DeviceMatrix<T> untouched(residual);
  CHECK_THROWS_WITH_AS(pair.device_layer.forward_decode(executor, untouched.view(), too_many.view(),
                                                        device_picks.data(), workspace.get()),
                       "RoutedMLP::forward_decode: at most 16 tokens on this executor, found 17", Error);
  CHECK(bitwise_equal(untouched.to_host().values, residual.values));
}

TEST_CASE("cuda forward_with_counts: claimed group sizes are checked on the device and read_counts reports a mismatch") {
  const RoutedPair pair;
  cuda::Executor executor;
  const int choices = static_cast<int>(pair.widths.size());
  constexpr int tokens = 40;  // above the decode bucket: the groups run through cuBLASLt
  const DeviceMatrix<T> input(random_matrix<T>(tokens, kHidden, 8));
  const HostMatrix<T> residual = random_matrix<T>(tokens, kHidden, 9);
  const std::vector<int> picks = random_choices(tokens, choices, 10);
  std::vector<int> right(static_cast<std::size_t>(choices));
  for (int c : picks) ++right[static_cast<std::size_t>(c)];
  const DeviceArray<int> device_picks(picks);
  const cuda::WorkspaceBuffer workspace(pair.device_layer.workspace_bytes(executor, tokens));

  DeviceMatrix<T> expected(residual);
  pair.device_layer.forward(executor, expected.view(), input.view(), device_picks.data(), workspace.get());
  DeviceMatrix<T> claimed(residual);
  pair.device_layer.forward_with_counts(executor, claimed.view(), input.view(), device_picks.data(), right,
                                        workspace.get());
  std::vector<int> counts(static_cast<std::size_t>(choices));
  pair.device_layer.read_counts(executor, tokens, workspace.get(), counts);
  CHECK(counts == right);
  CHECK(bitwise_equal(claimed.to_host().values, expected.to_host().values));

  // The right total, split wrongly: the first differing choice is reported.
  std::vector<int> wrong = right;
  const auto moved = static_cast<std::size_t>(std::find_if(wrong.begin(), wrong.end(), [](int n) { return n > 0; }) -
                                              wrong.begin());
  const std::size_t other = (moved + 1) % wrong.size();
  --wrong[moved];
  ++wrong[other];
  DeviceMatrix<T> mismatched(residual);
  pair.device_layer.forward_with_counts(executor, mismatched.view(), input.view(), device_picks.data(), wrong,
                                        workspace.get());
  const std::size_t first = std::min(moved, other);
  const std::string reported = "RoutedMLP::forward_with_counts: " + std::to_string(wrong[first]) +
                               " tokens given for choice " + std::to_string(first) + ", but the plan routed " +
                               std::to_string(right[first]) + " there";
  CHECK_THROWS_WITH_AS(pair.device_layer.read_counts(executor, tokens, workspace.get(), counts),
                       doctest::Contains(reported.c_str()), Error);
}

}  // namespace elastic::test
