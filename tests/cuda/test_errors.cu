// The CUDA executor's argument checks and failure reporting: a workspace that
// is too small, misaligned device pointers and widths outside the set throw
// before any kernel runs (the poisoned output stays poisoned), a workspace
// off cuBLASLt's 256-byte alignment too; a one-row view of any stride goes
// through cuBLASLt; CUDA failures carry the call, file and line. Also: a decode forward captured in a CUDA
// graph replays to the eager result, which shows the path neither allocates
// nor synchronises.
#include <doctest/doctest.h>

#include <cstddef>
#include <string>

#include "cuda/device_buffer.cuh"
#include "elastic/elastic.cuh"

using namespace elastic;

namespace {

constexpr index_t kHidden = 64;

struct Fixture {
  test::RandomMLP<bfloat16_t> weights{kHidden, test::TestWidths::max, 77};
  test::DeviceMatrix<bfloat16_t> gate{weights.gate}, up{weights.up}, down{weights.down};
  ElasticMLP<bfloat16_t, test::TestWidths> mlp{{gate.view(), up.view(), down.view()}};
  elastic::cuda::Executor executor;
};

}  // namespace

TEST_CASE("cuda: bad input throws before any kernel writes") {
  Fixture f;
  for (int tokens : {2, 40}) {  // decode and prefill paths
    CAPTURE(tokens);
    const test::DeviceMatrix<bfloat16_t> x(test::random_matrix<bfloat16_t>(tokens, kHidden, 3));
    test::DeviceMatrix<bfloat16_t> y = test::poisoned_device_matrix<bfloat16_t>(tokens, kHidden);
    const std::size_t needed = f.mlp.workspace_bytes(f.executor, tokens);
    const elastic::cuda::WorkspaceBuffer small(needed - 256);
    const elastic::cuda::WorkspaceBuffer enough(needed);

    CHECK_THROWS_AS(f.mlp.forward(f.executor, test::TestWidths::max, y.view(), x.view(), small.get()), WorkspaceError);
    CHECK_THROWS_AS(f.mlp.forward(f.executor, test::TestWidths::min + 8, y.view(), x.view(), enough.get()), WidthError);
    const ConstMatrixView<bfloat16_t> misaligned(x.buffer.data() + 1, tokens - 1, kHidden);
    CHECK_THROWS_WITH_AS(
        f.mlp.forward(f.executor, test::TestWidths::max, y.view().first_rows(tokens - 1), misaligned, enough.get()),
        doctest::Contains("aligned"), Error);
    if (!elastic::cuda::Executor::is_decode(tokens)) {  // decode needs no workspace
      CHECK_THROWS_AS(f.executor.linear(y.view(), x.view(), f.down.view().first_cols(kHidden), Workspace{}),
                      WorkspaceError);
    }
    ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(test::all_poison(y.to_host()));
  }
}

TEST_CASE("cuda: a workspace that is not 256-byte aligned is refused before any kernel runs") {
  Fixture f;
  constexpr index_t tokens = 40;  // the cuBLASLt path
  const test::DeviceMatrix<bfloat16_t> x(test::random_matrix<bfloat16_t>(tokens, kHidden, 9));
  test::DeviceMatrix<bfloat16_t> y = test::poisoned_device_matrix<bfloat16_t>(tokens, kHidden);
  const std::size_t needed = f.executor.linear_workspace_bytes<bfloat16_t>(tokens, kHidden, kHidden);
  const elastic::cuda::WorkspaceBuffer buffer(needed + 256);
  const Workspace shifted{static_cast<std::byte*>(buffer.get().data) + 16, needed};
  CHECK_THROWS_WITH_AS(f.executor.linear(y.view(), x.view(), f.down.view().first_cols(kHidden), shifted),
                       doctest::Contains("256-byte aligned"), WorkspaceError);
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(test::all_poison(y.to_host()));
}

TEST_CASE("cuda: cuBLASLt plans take a one-row view whatever its row stride") {
  // One token in a row of kHidden + 3 elements: a stride that is no 16-byte
  // multiple, which no check looks at for a single row.
  const test::HostMatrix<bfloat16_t> x_host = test::random_matrix<bfloat16_t>(1, kHidden + 3, 21);
  const test::HostMatrix<bfloat16_t> w_host = test::random_matrix<bfloat16_t>(kHidden, kHidden, 22, 0.125f);
  const test::DeviceMatrix<bfloat16_t> x(x_host), w(w_host);
  test::DeviceMatrix<bfloat16_t> y = test::poisoned_device_matrix<bfloat16_t>(1, kHidden);
  cublasLtHandle_t handle = nullptr;
  ELASTIC_CUBLAS_CHECK(cublasLtCreate(&handle));
  elastic::cuda::GemmPlanCache plans(handle);
  plans.run(y.view(), ConstMatrixView<bfloat16_t>(x.buffer.data(), 1, kHidden, kHidden + 3), w.view(), Workspace{},
            nullptr);
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());
  cublasLtDestroy(handle);

  test::HostMatrix<bfloat16_t> expected(1, kHidden);
  host::Executor(1).linear(expected.view(), ConstMatrixView<bfloat16_t>(x_host.values.data(), 1, kHidden, kHidden + 3),
                           ConstMatrixView<bfloat16_t>(w_host.values.data(), kHidden, kHidden));
  CHECK(test::relative_difference(y.to_host(), expected) < 1e-2);
}

TEST_CASE("cuda: failures carry the call, file and line") {
  try {
    ELASTIC_CUDA_CHECK(cudaSetDevice(1 << 20));
    FAIL("cudaSetDevice on a device that does not exist succeeded");
  } catch (const elastic::cuda::CudaError& error) {
    const std::string message = error.what();
    CHECK(message.find("cudaSetDevice(1 << 20)") != std::string::npos);
    CHECK(message.find("test_errors.cu:") != std::string::npos);
    CHECK(error.status() == cudaErrorInvalidDevice);
  }
}

TEST_CASE("cuda: a decode forward captured in a graph replays to the eager result") {
  Fixture f;
  cudaStream_t stream = nullptr;
  ELASTIC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  f.executor.set_stream(stream);
  const test::DeviceMatrix<bfloat16_t> x(test::random_matrix<bfloat16_t>(1, kHidden, 5));
  const elastic::cuda::WorkspaceBuffer workspace(f.mlp.workspace_bytes(f.executor, 1));
  test::DeviceMatrix<bfloat16_t> eager = test::poisoned_device_matrix<bfloat16_t>(1, kHidden);
  test::DeviceMatrix<bfloat16_t> replayed = test::poisoned_device_matrix<bfloat16_t>(1, kHidden);
  // The uploads above are cudaMemcpy from pageable memory on the legacy
  // stream, which a non-blocking stream does not wait for: finish them.
  ELASTIC_CUDA_CHECK(cudaDeviceSynchronize());

  f.mlp.forward(f.executor, test::TestWidths::max, eager.view(), x.view(), workspace.get());
  cudaGraph_t graph = nullptr;
  ELASTIC_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  f.mlp.forward(f.executor, test::TestWidths::max, replayed.view(), x.view(), workspace.get());
  ELASTIC_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  ELASTIC_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  ELASTIC_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  ELASTIC_CUDA_CHECK(cudaStreamSynchronize(stream));

  const auto a = eager.to_host();
  const auto b = replayed.to_host();
  for (std::size_t i = 0; i < a.values.size(); ++i) REQUIRE(a.values[i].bits == b.values[i].bits);

  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}
