// What the attention kernels receive: the batch description uploaded into the
// caller's device workspace, and one plain parameter struct with the tensors,
// the head counts and the RoPE frequencies, passed by value to every launch.
//
// AttentionBatch lives in host memory. The kernels need, per sequence, its
// cache slot, cached length, new length and first packed token (plus, for
// decode, where its split partials start), per packed token its sequence and
// RoPE position, and for prefill the list of query tiles. AttentionStaging
// packs all of it into one int array in a host staging vector that the
// executor owns, then moves it into the workspace with one cudaMemcpyAsync on
// the executor's stream.
//
// The staging vector is ordinary pageable memory, and we rely on what that
// means for a host-to-device cudaMemcpyAsync: the call returns once the driver
// has taken the bytes into its own pinned staging memory (it may wait for the
// stream to do so); the transfer to the device then runs in stream order. So
// the caller's AttentionBatch arrays need not outlive the call, and the next
// call may refill the staging vector at once. The price: the upload may block
// the host briefly, and an attention call is not meant to be captured into a
// CUDA graph (a captured copy would re-read the staging vector at replay); a
// captured decode step needs the upload done outside the graph. No device
// memory is allocated and the device is never synchronised.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "elastic/core/attention_batch.hpp"
#include "elastic/core/attention_params.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/math/rope.hpp"

namespace elastic::cuda {

// The batch description in device memory (pointers into the workspace).
struct AttentionMetadata {
  const int* cache_slots = nullptr;      // [sequences]
  const int* cached_lengths = nullptr;   // [sequences]
  const int* new_lengths = nullptr;      // [sequences]
  // [sequences + 1] each: sequence s owns packed rows [first_tokens[s], first_tokens[s + 1]) and, for
  // decode, split partials [first_splits[s], first_splits[s + 1]).
  const int* first_tokens = nullptr;
  const int* first_splits = nullptr;
  const int* token_sequences = nullptr;  // [tokens]
  const int* token_positions = nullptr;  // [tokens]: RoPE position
  const int* tiles = nullptr;            // [2 * tile_count]: prefill tiles (sequence, first new row), longest first
  int sequences = 0;
  int tokens = 0;
  int tile_count = 0;
  int max_splits = 0;  // decode: the most splits any sequence has
};

// How a call divides its work. Decode splits each sequence's KV range into
// chunks of split_chunk positions; prefill cuts each sequence's new tokens
// into query tiles of tile_rows rows. Exactly one of the two is non-zero.
struct AttentionPlan {
  int split_chunk = 0;
  int tile_rows = 0;
};

// Query tiles of tile_rows rows that cover every sequence's new tokens (0 when
// tile_rows is 0).
inline int query_tile_count(const AttentionBatch& batch, int tile_rows) {
  if (tile_rows == 0) return 0;
  int tiles = 0;
  for (int length : batch.new_lengths) tiles += (length + tile_rows - 1) / tile_rows;
  return tiles;
}

// Ints of workspace the metadata of `batch` takes under a plan with tile_rows.
inline std::size_t metadata_ints(const AttentionBatch& batch, int tile_rows) {
  const std::size_t sequences = batch.sequences();
  return 3 * sequences + 2 * (sequences + 1) + 2 * static_cast<std::size_t>(batch.tokens()) +
         2 * static_cast<std::size_t>(query_tile_count(batch, tile_rows));
}

class AttentionStaging {
 public:
  // Packs `batch` under `plan` and enqueues its copy into `device` (at least
  // metadata_ints(batch, plan.tile_rows) ints) on `stream`. The batch must
  // have passed AttentionBatch::validate.
  AttentionMetadata upload(int* device, const AttentionBatch& batch, const AttentionPlan& plan, cudaStream_t stream) {
    const int sequences = static_cast<int>(batch.sequences());
    const int tokens = static_cast<int>(batch.tokens());
    AttentionMetadata metadata;
    metadata.sequences = sequences;
    metadata.tokens = tokens;

    ints_.assign(metadata_ints(batch, plan.tile_rows), 0);
    std::size_t used = 0;
    // The next `count` staged ints; `field` points at their device copy.
    const auto region = [&](const int*& field, std::size_t count) {
      field = device + used;
      int* host = ints_.data() + used;
      used += count;
      return host;
    };
    std::copy(batch.cache_slots.begin(), batch.cache_slots.end(), region(metadata.cache_slots, sequences));
    std::copy(batch.cached_lengths.begin(), batch.cached_lengths.end(), region(metadata.cached_lengths, sequences));
    std::copy(batch.new_lengths.begin(), batch.new_lengths.end(), region(metadata.new_lengths, sequences));

    int* first_tokens = region(metadata.first_tokens, sequences + 1);
    int* first_splits = region(metadata.first_splits, sequences + 1);
    for (int s = 0; s < sequences; ++s) {
      first_tokens[s + 1] = first_tokens[s] + batch.new_lengths[s];
      const int visible = batch.cached_lengths[s] + batch.new_lengths[s];
      const int splits = plan.split_chunk == 0 ? 0 : (visible + plan.split_chunk - 1) / plan.split_chunk;
      first_splits[s + 1] = first_splits[s] + splits;
      metadata.max_splits = std::max(metadata.max_splits, splits);
    }

    int* token_sequences = region(metadata.token_sequences, tokens);
    int* token_positions = region(metadata.token_positions, tokens);
    for (int s = 0; s < sequences; ++s)
      for (int j = 0; j < batch.new_lengths[s]; ++j) {
        const int token = first_tokens[s] + j;
        token_sequences[token] = s;
        token_positions[token] = batch.position(static_cast<std::size_t>(s), first_tokens[s], j);
      }

    if (plan.tile_rows > 0) {
      const std::vector<Tile>& tiles = longest_first_tiles(batch, plan.tile_rows);
      metadata.tile_count = static_cast<int>(tiles.size());
      int* out = region(metadata.tiles, 2 * tiles.size());
      for (const Tile& tile : tiles) {
        *out++ = tile.sequence;
        *out++ = tile.first_row;
      }
    }

    ELASTIC_CUDA_CHECK(
        cudaMemcpyAsync(device, ints_.data(), ints_.size() * sizeof(int), cudaMemcpyHostToDevice, stream));
    return metadata;
  }

 private:
  struct Tile {
    int work;  // KV positions the tile's last row attends to
    int sequence;
    int first_row;
  };

  // The query tiles, the longest first, so the blocks that run longest start
  // first and the short ones fill the tail of the grid.
  const std::vector<Tile>& longest_first_tiles(const AttentionBatch& batch, int tile_rows) {
    tiles_.clear();
    for (std::size_t s = 0; s < batch.sequences(); ++s)
      for (int row = 0; row < batch.new_lengths[s]; row += tile_rows) {
        const int last_row = std::min(row + tile_rows, batch.new_lengths[s]) - 1;
        tiles_.push_back({batch.cached_lengths[s] + last_row + 1, static_cast<int>(s), row});
      }
    std::stable_sort(tiles_.begin(), tiles_.end(), [](const Tile& a, const Tile& b) { return a.work > b.work; });
    return tiles_;
  }

  std::vector<int> ints_;
  std::vector<Tile> tiles_;
};

// Everything one attention launch reads besides the metadata: the
// activations, the output, the cache and the layer's parameters. Trivially
// copyable, passed by value (HeadDim / 2 frequencies: at most 256 bytes).
template <class T, int HeadDim>
struct AttentionArgs {
  AttentionMetadata batch;
  const T* q;  // [tokens x heads*HeadDim], row stride q_stride
  const T* k;  // [tokens x kv_heads*HeadDim]
  const T* v;
  T* out;  // [tokens x heads*HeadDim]
  index_t q_stride, k_stride, v_stride, out_stride;
  T* cache_keys;
  T* cache_values;
  int cache_kv_heads;
  int cache_capacity;
  int heads;
  int kv_heads;
  int group_size;
  float scale;
  RopeLayout rope_layout;
  float rope_inverse_frequencies[HeadDim / 2];

  // Offset of (slot, head, position, 0) in cache_keys or cache_values: the
  // layout of KVCacheView::offset.
  ELASTIC_HOST_DEVICE std::size_t cache_offset(int slot, int head, int position) const {
    return ((static_cast<std::size_t>(slot) * cache_kv_heads + head) * cache_capacity + position) *
           static_cast<std::size_t>(HeadDim);
  }
};

template <class T, int HeadDim>
AttentionArgs<T, HeadDim> make_attention_args(MatrixView<T> out, ConstMatrixView<T> q, ConstMatrixView<T> k,
                                              ConstMatrixView<T> v, const KVCacheView<T>& cache,
                                              const AttentionParams<HeadDim>& params,
                                              const AttentionMetadata& metadata) {
  AttentionArgs<T, HeadDim> args{};
  args.batch = metadata;
  args.q = q.data();
  args.k = k.data();
  args.v = v.data();
  args.out = out.data();
  args.q_stride = q.row_stride();
  args.k_stride = k.row_stride();
  args.v_stride = v.row_stride();
  args.out_stride = out.row_stride();
  args.cache_keys = cache.keys();
  args.cache_values = cache.values();
  args.cache_kv_heads = cache.shape().kv_heads;
  args.cache_capacity = cache.shape().capacity;
  args.heads = params.heads;
  args.kv_heads = params.kv_heads;
  args.group_size = params.group_size;
  args.scale = params.scale;
  args.rope_layout = params.rope_layout;
  std::copy(params.rope_inverse_frequencies.begin(), params.rope_inverse_frequencies.end(),
            args.rope_inverse_frequencies);
  return args;
}

}  // namespace elastic::cuda
