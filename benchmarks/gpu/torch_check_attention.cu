// The attention entry points of libelastic_torch_check (see torch_check.cuh):
// the CUDA executor's attention primitive (rotate and append K/V to the
// cache, then causal attention with RoPE on the queries) over torch's device
// tensors, so large_shapes.py can check long prefills, chunked prefills and
// decode at long context against torch. The cache is a torch byte tensor of
// elastic_kv_cache_bytes; the batch description arrives in host arrays.
//
//   elastic_kv_cache_bytes(dtype, slots, kv_heads, capacity, head_dim)
//   elastic_attention_forward(dtype, head_dim, heads, kv_heads, rope_theta,
//       sequences, cache_slots, cached_lengths, new_lengths, q, k, v, out,
//       cache, slots, capacity, stream)
//
// q, out: [tokens x heads*head_dim]; k, v: [tokens x kv_heads*head_dim],
// before RoPE (rotate_half layout, no scaling); the softmax scale is
// 1/sqrt(head_dim). The forward sizes and allocates its own workspace and
// returns 0 once its work has finished on the stream; on failure -1 (0 bytes
// for the size query) and elastic_last_error() says why.
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <span>

#include "torch_check.cuh"

using namespace elastic;
using namespace elastic::torch_check;

namespace {

template <class Run>
auto with_head_dim(int head_dim, Run&& run) {
  require(is_supported_head_dim(head_dim), "head_dim must be 64 or 128, found ", head_dim);
  return head_dim == 64 ? run.template operator()<64>() : run.template operator()<128>();
}

}  // namespace

extern "C" {

std::size_t elastic_kv_cache_bytes(int dtype, int slots, int kv_heads, int capacity, int head_dim) {
  return guarded(
      [&] {
        return with_dtype(dtype, [&]<class T>() {
          return KVCacheShape{slots, kv_heads, capacity, head_dim}.bytes_required<T>();
        });
      },
      std::size_t{0});
}

int elastic_attention_forward(int dtype, int head_dim, int heads, int kv_heads, float rope_theta, int sequences,
                              const int* cache_slots, const int* cached_lengths, const int* new_lengths,
                              const void* q, const void* k, const void* v, void* out, void* cache, int slots,
                              int capacity, void* stream) {
  return guarded(
      [&] {
        return with_dtype(dtype, [&]<class T>() {
          return with_head_dim(head_dim, [&]<int HeadDim>() {
            require(kv_heads > 0 && heads % kv_heads == 0, "heads (", heads, ") must be a multiple of kv_heads (",
                    kv_heads, ")");
            const auto count = static_cast<std::size_t>(sequences);
            const AttentionBatch batch{std::span(cache_slots, count), std::span(cached_lengths, count),
                                       std::span(new_lengths, count), {}};
            const KVCacheShape shape{slots, kv_heads, capacity, HeadDim};
            const KVCacheView<T> cache_view(Workspace{cache, shape.bytes_required<T>()}, shape);
            RopeConfig rope;
            rope.theta = rope_theta;
            rope.max_positions = capacity;
            const auto params = AttentionParams<HeadDim>::make(heads, kv_heads, heads / kv_heads,
                                                               1.0f / std::sqrt(static_cast<float>(HeadDim)), rope);
            const index_t tokens = batch.tokens();
            const index_t q_width = static_cast<index_t>(heads) * HeadDim;
            const index_t kv_width = static_cast<index_t>(kv_heads) * HeadDim;

            elastic::cuda::Executor executor(static_cast<cudaStream_t>(stream));
            const elastic::cuda::WorkspaceBuffer workspace(
                executor.attention_workspace_bytes<T>(batch, heads, HeadDim, shape));
            executor.attention<T, HeadDim>(MatrixView<T>(static_cast<T*>(out), tokens, q_width),
                                           ConstMatrixView<T>(static_cast<const T*>(q), tokens, q_width),
                                           ConstMatrixView<T>(static_cast<const T*>(k), tokens, kv_width),
                                           ConstMatrixView<T>(static_cast<const T*>(v), tokens, kv_width),
                                           cache_view, batch, params, workspace.get());
            ELASTIC_CUDA_CHECK(cudaGetLastError());
            ELASTIC_CUDA_CHECK(cudaStreamSynchronize(executor.stream()));  // before the workspace goes
            return 0;
          });
        });
      },
      -1);
}

}  // extern "C"
