// The MLP entry points of libelastic_torch_check (see torch_check.cuh):
// torch allocates and fills every tensor, this library runs ElasticMLP over
// them (device pointers, row-major, contiguous) on the caller's stream, and
// torch computes the reference. The MLP runs over the benchmarks' width set
// (ELASTIC_BENCH_WIDTHS), so the decode kernels (CUDA cores for one token,
// tensor cores for 2-16) and cuBLASLt's sliced GEMMs are the code under test.
//
//   elastic_mlp_workspace_bytes(dtype, tokens, hidden, intermediate, gate, up, down)
//   elastic_mlp_forward(dtype, width, tokens, hidden, intermediate, x, gate,
//                       up, down, y, workspace, workspace_bytes, stream)
//
// The forward returns 0 once its work has finished on the stream, the size
// query the byte count; on failure they return -1 / 0 and
// elastic_last_error() says why.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "torch_check.cuh"

using namespace elastic;
using namespace elastic::torch_check;

extern "C" {

std::size_t elastic_mlp_workspace_bytes(int dtype, std::int64_t tokens, std::int64_t hidden, std::int64_t intermediate,
                                        const void* gate, const void* up, const void* down) {
  return guarded(
      [&] {
        return with_dtype(dtype, [&]<class T>() {
          elastic::cuda::Executor executor;
          return make_mlp<T>(hidden, intermediate, gate, up, down).workspace_bytes(executor, tokens);
        });
      },
      std::size_t{0});
}

int elastic_mlp_forward(int dtype, int width, std::int64_t tokens, std::int64_t hidden, std::int64_t intermediate,
                        const void* x, const void* gate, const void* up, const void* down, void* y, void* workspace,
                        std::size_t workspace_bytes, void* stream) {
  return guarded(
      [&] {
        return with_dtype(dtype, [&]<class T>() {
          elastic::cuda::Executor executor(static_cast<cudaStream_t>(stream));
          const auto mlp = make_mlp<T>(hidden, intermediate, gate, up, down);
          mlp.forward(executor, width, MatrixView<T>(static_cast<T*>(y), tokens, hidden),
                      ConstMatrixView<T>(static_cast<const T*>(x), tokens, hidden), Workspace{workspace, workspace_bytes});
          ELASTIC_CUDA_CHECK(cudaGetLastError());
          ELASTIC_CUDA_CHECK(cudaStreamSynchronize(executor.stream()));  // before the executor's plans go
          return 0;
        });
      },
      -1);
}

}  // extern "C"
