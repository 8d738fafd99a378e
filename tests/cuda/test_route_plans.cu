// Route plans on the CUDA executor, which do not depend on the element type
// (compiled once): plans equal to the host executor's on both paths (one
// block, CUB) for every token count and spread, 1 to 8 choices and a choice
// count past the one-block limit, and empty batches; the invalid-choice
// contract (the plan stays as it was, read_route_counts throws the host's
// error, a later valid call on the same workspace succeeds);
// read_route_counts' own checks; load_indices; rejected plans; and a whole
// routed step (capacity decision, plan, gather, scatter-add) captured in a
// CUDA graph, which replays to the eager result: none of it allocates or
// synchronises.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "cuda/routing_parity.cuh"

// Inside the library's namespace, `cuda` names elastic::cuda rather than
// CCCL's top-level cuda namespace.
namespace elastic::test {
namespace {

std::vector<int> plan_choice_counts() {
  std::vector<int> counts;
  for (int c = 1; c <= routing_max_choices; ++c) counts.push_back(c);
  counts.push_back(routing_wide_choices);
  return counts;
}

}  // namespace

TEST_CASE("cuda route plans match the host executor") {
  host::Executor host_executor;
  cuda::Executor device_executor;
  for (int tokens : routing_token_counts)
    for (int choices : plan_choice_counts())
      for (Spread spread : spreads) {
        CAPTURE(tokens);
        CAPTURE(choices);
        CAPTURE(describe(spread));
        const std::vector<int> picks = spread_choices(tokens, choices, spread, 5 * tokens + choices);
        const DeviceArray<int> device_picks(picks);
        plan_on_both(host_executor, device_executor, PlanPair(tokens, choices), picks,
                           device_picks.data());
      }
  for (int choices : {1, routing_max_choices, routing_wide_choices}) {  // empty batches
    CAPTURE(choices);
    plan_on_both(host_executor, device_executor, PlanPair(0, choices), {}, nullptr);
  }
}

TEST_CASE("cuda plan_routes leaves the plan untouched on an invalid choice") {
  cuda::Executor executor;
  host::Executor host_executor;
  for (int tokens : {67, routing_large_tokens})
    for (int choices : {4, routing_wide_choices}) {
      CAPTURE(tokens);
      CAPTURE(choices);
      std::vector<int> picks = spread_choices(tokens, choices, Spread::uniform, 3);
      const int first_bad = tokens / 2;
      picks[static_cast<std::size_t>(first_bad)] = choices;
      picks[static_cast<std::size_t>(first_bad + 5)] = -1;
      picks[static_cast<std::size_t>(tokens - 1)] = choices + 7;
      const DeviceArray<int> device_picks(picks);
      const PlanPair plans(tokens, choices);
      const cuda::WorkspaceBuffer workspace(executor.plan_routes_workspace_bytes(tokens, choices));

      executor.plan_routes(plans.device(), device_picks.data(), workspace.get());
      std::vector<int> counts(static_cast<std::size_t>(choices), -1);
      const std::string expected =
          detail::concat("plan_routes: token ", first_bad, " chose ", choices, ", expected 0 <= choice < ", choices);
      CHECK_THROWS_WITH_AS(executor.read_route_counts(plans.device(), counts),
                           doctest::Contains(expected.c_str()), Error);
      CHECK(plans.device_untouched());
      CHECK(counts == std::vector<int>(static_cast<std::size_t>(choices), -1));

      // The same plan and workspace with the choices fixed.
      picks[static_cast<std::size_t>(first_bad)] = 0;
      picks[static_cast<std::size_t>(first_bad + 5)] = 0;
      picks[static_cast<std::size_t>(tokens - 1)] = 0;
      const DeviceArray<int> fixed(picks);
      host_executor.plan_routes(plans.host(), picks.data());
      executor.plan_routes(plans.device(), fixed.data(), workspace.get());
      executor.read_route_counts(plans.device(), counts);
      CHECK(bitwise_equal(counts, std::span<const int>(plans.host().counts, counts.size())));
      host::WorkspaceBuffer downloaded(plans.bytes());
      CHECK(same_plan(plans.download(downloaded), plans.host()));
    }
}

TEST_CASE("cuda read_route_counts needs the plan's own, unreused status") {
  cuda::Executor executor;
  constexpr int tokens = 67;
  constexpr int choices = 3;
  const std::vector<int> picks = spread_choices(tokens, choices, Spread::uniform, 9);
  const DeviceArray<int> device_picks(picks);
  const PlanPair first(tokens, choices), second(tokens, choices), never_planned(tokens, choices);
  const std::size_t bytes = executor.plan_routes_workspace_bytes(tokens, choices);
  const cuda::WorkspaceBuffer shared(bytes), own(bytes);
  std::vector<int> counts(choices);

  executor.plan_routes(first.device(), device_picks.data(), shared.get());
  executor.plan_routes(second.device(), device_picks.data(), own.get());
  executor.read_route_counts(first.device(), counts);  // several plans in flight
  executor.read_route_counts(second.device(), counts);

  executor.plan_routes(second.device(), device_picks.data(), shared.get());  // overwrites first's status
  CHECK_THROWS_WITH_AS(executor.read_route_counts(first.device(), counts), doctest::Contains("was overwritten"),
                       Error);
  executor.read_route_counts(second.device(), counts);
  CHECK_THROWS_WITH_AS(executor.read_route_counts(never_planned.device(), counts),
                       doctest::Contains("was not built by any of this executor's last"), Error);
  std::vector<int> too_few(choices - 1);
  CHECK_THROWS_WITH_AS(executor.read_route_counts(second.device(), too_few),
                       doctest::Contains("2 entries given for 3 choices"), Error);
}

TEST_CASE("cuda load_indices copies host indices to the device") {
  cuda::Executor executor;
  std::vector<int> indices = {5, 0, 3, 9, 1};
  const DeviceArray<int> device(std::vector<int>(indices.size(), choice_poison));
  executor.load_indices(device.data(), indices);
  indices.assign(indices.size(), -1);  // the staged values are already the driver's
  CHECK(device.to_host() == std::vector<int>{5, 0, 3, 9, 1});
  executor.load_indices(nullptr, {});
  CHECK_THROWS_WITH_AS(executor.load_indices(nullptr, indices), doctest::Contains("the destination is a null pointer"),
                       Error);
}

TEST_CASE("cuda plan_routes rejects bad plans before writing") {
  cuda::Executor executor;
  constexpr int tokens = 67;
  constexpr int choices = 3;
  const DeviceArray<int> device_picks(spread_choices(tokens, choices, Spread::uniform, 4));
  const PlanPair plans(tokens, choices);
  const cuda::WorkspaceBuffer workspace(executor.plan_routes_workspace_bytes(tokens, choices));

  RoutePlan unallocated;
  unallocated.tokens = tokens;
  unallocated.choices = choices;
  CHECK_THROWS_WITH_AS(executor.plan_routes(unallocated, device_picks.data(), workspace.get()),
                       doctest::Contains("null arrays"), Error);
  CHECK_THROWS_WITH_AS(executor.plan_routes(plans.device(), nullptr, workspace.get()),
                       doctest::Contains("the choices are a null pointer"), Error);
  CHECK_THROWS_WITH_AS(executor.plan_routes(plans.device(), device_picks.data(), Workspace{}),
                       doctest::Contains("workspace too small"), WorkspaceError);
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(plans.device_untouched());
}

TEST_CASE("cuda routing captured in a CUDA graph replays to the eager result") {
  using T = bfloat16_t;
  constexpr int choices = 4;
  cudaStream_t stream = nullptr;
  ELASTIC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cuda::Executor executor(stream);
  for (int tokens : {67, routing_large_tokens}) {
    CAPTURE(tokens);
    const RouteRule rule = RouteRule::top_k(1, 3, tokens / 4);
    const DeviceMatrix<T> logits(random_matrix<T>(tokens, choices, 21));
    const DeviceMatrix<T> input(random_matrix<T>(tokens, routing_stride, 22));
    const HostMatrix<T> residual = random_matrix<T>(tokens, routing_stride, 23);
    const cuda::WorkspaceBuffer decide_workspace(executor.decide_routes_workspace_bytes<T>(tokens, choices));
    const cuda::WorkspaceBuffer plan_workspace(executor.plan_routes_workspace_bytes(tokens, choices));

    // One routed step's outputs, poisoned (the residual starts as `residual`).
    struct Step {
      Step(int tokens, const HostMatrix<T>& residual)
          : picks(std::vector<int>(static_cast<std::size_t>(tokens), choice_poison)),
            plans(tokens, choices),
            gathered(poisoned_device_matrix<T>(tokens, routing_stride)),
            sums(residual) {}
      DeviceArray<int> picks;
      PlanPair plans;
      DeviceMatrix<T> gathered;
      DeviceMatrix<T> sums;
    };
    const auto run = [&](Step& step) {
      executor.decide_routes(step.picks.data(), logits.view(), rule, decide_workspace.get());
      executor.plan_routes(step.plans.device(), step.picks.data(), plan_workspace.get());
      executor.gather_rows(step.gathered.view(), input.view(), step.plans.device().permutation);
      executor.scatter_add_rows(step.sums.view(), ConstMatrixView<T>(step.gathered.view()),
                                step.plans.device().permutation);
    };

    Step eager(tokens, residual), replayed(tokens, residual);
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());  // the uploads and poison fills ran on the default stream
    run(eager);
    cudaGraph_t graph = nullptr;
    ELASTIC_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    run(replayed);
    ELASTIC_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    ELASTIC_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    ELASTIC_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream));

    std::vector<int> counts(choices);
    executor.read_route_counts(replayed.plans.device(), counts);
    CHECK(counts == std::vector<int>{0, tokens / 4, 0, tokens - tokens / 4});
    CHECK(eager.picks.to_host() == replayed.picks.to_host());
    CHECK(eager.plans.device_bytes() == replayed.plans.device_bytes());
    CHECK(bitwise_equal(eager.gathered.to_host().values, replayed.gathered.to_host().values));
    CHECK(bitwise_equal(eager.sums.to_host().values, replayed.sums.to_host().values));
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  cudaStreamDestroy(stream);
}

}  // namespace elastic::test
