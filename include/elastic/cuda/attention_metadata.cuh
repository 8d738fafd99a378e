// What the attention kernels receive: the batch description in the caller's
// device workspace, and one plain parameter struct with the tensors, the head
// counts and the RoPE frequencies, passed by value to every launch.
//
// AttentionBatch lives in host memory. The kernels need, per sequence, its
// cache slot, cached length, new length and first packed token, per packed
// token its sequence and RoPE position, for prefill the list of query tiles,
// and for decode the split chunk and where each sequence's split partials
// start. AttentionStaging packs the host part into one int array in pinned
// host memory the executor owns (PinnedStaging) and moves it into the
// workspace with one cudaMemcpyAsync on the executor's stream; decode's split
// chunk and offsets are then computed on the device from the uploaded lengths
// (attention_decode_kernel.cuh), so a captured decode step that advances the
// lengths on the device keeps them right.
//
// Pinned memory makes the copy truly asynchronous: a staging slot is refilled
// only after the upload made from it has read it (an event recorded behind
// each copy; the ring's 64 slots let the host run a whole decode step of
// layers ahead), so the caller's AttentionBatch arrays need not outlive the
// call and the host never waits on a pageable-memory staging copy. An upload is made at plan time, outside any
// CUDA graph; the decode run step reads only device memory (the capture
// contract is in executor.cuh). No device memory is allocated; pinned host
// memory grows only when a batch needs more than any before it.
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
#include "elastic/cuda/device_buffer.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/math/rope.hpp"

namespace elastic::cuda {

// The batch description in device memory (pointers into the workspace).
struct AttentionMetadata {
  const int* cache_slots = nullptr;      // [sequences]
  const int* cached_lengths = nullptr;   // [sequences]
  const int* new_lengths = nullptr;      // [sequences]
  // [sequences + 1]: sequence s owns packed rows [first_tokens[s], first_tokens[s + 1]).
  const int* first_tokens = nullptr;
  const int* token_sequences = nullptr;  // [tokens]
  const int* token_positions = nullptr;  // [tokens]: RoPE position
  const int* tiles = nullptr;            // [2 * tile_count]: prefill tiles (sequence, first new row), longest first
  // Decode, written on the device before the attention kernel runs: sequence
  // s owns split partials [first_splits[s], first_splits[s + 1]); every split
  // but a sequence's last covers *split_chunk positions.
  const int* first_splits = nullptr;  // [sequences + 1]
  const int* split_chunk = nullptr;   // [1]
  int sequences = 0;
  int tokens = 0;
  int tile_count = 0;
};

// Query tiles of tile_rows rows that cover every sequence's new tokens.
inline int query_tile_count(const AttentionBatch& batch, int tile_rows) {
  int tiles = 0;
  for (int length : batch.new_lengths) tiles += (length + tile_rows - 1) / tile_rows;
  return tiles;
}

// Ints of workspace the metadata of a prefill (or mixed) batch takes.
inline std::size_t prefill_metadata_ints(const AttentionBatch& batch, int tile_rows) {
  const std::size_t sequences = batch.sequences();
  return 3 * sequences + (sequences + 1) + 2 * static_cast<std::size_t>(batch.tokens()) +
         2 * static_cast<std::size_t>(query_tile_count(batch, tile_rows));
}

// Ints of workspace the metadata of a decode batch of `sequences` takes: the
// uploaded part (slots, lengths, first tokens, token sequences, positions)
// followed by first_splits and split_chunk, written on the device.
inline std::size_t decode_uploaded_ints(std::size_t sequences) { return 6 * sequences + 1; }
inline std::size_t decode_metadata_ints(std::size_t sequences) { return decode_uploaded_ints(sequences) + sequences + 2; }

// Pinned host ints for copies to the device: a ring of staging slots, each
// refilled only once the copy made from it `slots` uploads ago has read it
// (an event behind each copy), so the host can run up to `slots` attention
// calls ahead of the device without waiting.
class PinnedStaging {
 public:
  static constexpr std::size_t slots = 64;

  PinnedStaging() = default;
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;
  ~PinnedStaging() {
    for (Slot& slot : ring_)
      if (slot.event != nullptr) cudaEventDestroy(slot.event);
  }

  // `count` host ints to fill, in the next slot of the ring.
  int* reserve(std::size_t count) {
    Slot& slot = ring_[next_];
    if (slot.pending) ELASTIC_CUDA_CHECK(cudaEventSynchronize(slot.event));
    slot.pending = false;
    if (count > slot.buffer.size())
      slot.buffer = PinnedBuffer<int>(std::max(count, 2 * slot.buffer.size()), "attention metadata");
    return slot.buffer.data();
  }

  // Copies the first `count` ints of the slot reserve() returned to `device`
  // on `stream`, and moves to the next slot.
  void upload(int* device, std::size_t count, cudaStream_t stream) {
    Slot& slot = ring_[next_];
    next_ = (next_ + 1) % slots;
    if (count == 0) return;
    if (slot.event == nullptr) ELASTIC_CUDA_CHECK(cudaEventCreateWithFlags(&slot.event, cudaEventDisableTiming));
    ELASTIC_CUDA_CHECK(
        cudaMemcpyAsync(device, slot.buffer.data(), count * sizeof(int), cudaMemcpyHostToDevice, stream));
    ELASTIC_CUDA_CHECK(cudaEventRecord(slot.event, stream));
    slot.pending = true;
  }

 private:
  struct Slot {
    PinnedBuffer<int> buffer;
    cudaEvent_t event = nullptr;
    bool pending = false;
  };
  Slot ring_[slots];
  std::size_t next_ = 0;
};

// The parts of a decode batch's device description that the device itself
// writes (the same memory as AttentionMetadata's fields, writable): the
// lengths a captured step advances, and the split plan computed from them.
struct DecodeDeviceFields {
  int* cached_lengths = nullptr;   // [sequences]
  int* token_positions = nullptr;  // [sequences]
  int* first_splits = nullptr;     // [sequences + 1]
  int* split_chunk = nullptr;      // [1]
};

// A decode batch's device description and its device-written fields.
struct DecodeMetadata {
  AttentionMetadata metadata;
  DecodeDeviceFields fields;
};

class AttentionStaging {
 public:
  // Packs a prefill (or mixed) batch with query tiles of tile_rows rows and
  // enqueues its copy into `device` (prefill_metadata_ints ints) on `stream`.
  // The batch must have passed AttentionBatch::validate.
  AttentionMetadata upload_prefill(int* device, const AttentionBatch& batch, int tile_rows, cudaStream_t stream) {
    const int sequences = static_cast<int>(batch.sequences());
    const int tokens = static_cast<int>(batch.tokens());
    const std::size_t count = prefill_metadata_ints(batch, tile_rows);
    Packer pack{device, staging_.reserve(count)};
    AttentionMetadata metadata;
    metadata.sequences = sequences;
    metadata.tokens = tokens;
    std::copy(batch.cache_slots.begin(), batch.cache_slots.end(), pack(metadata.cache_slots, sequences));
    std::copy(batch.cached_lengths.begin(), batch.cached_lengths.end(), pack(metadata.cached_lengths, sequences));
    std::copy(batch.new_lengths.begin(), batch.new_lengths.end(), pack(metadata.new_lengths, sequences));

    int* first_tokens = pack(metadata.first_tokens, sequences + 1);
    first_tokens[0] = 0;
    for (int s = 0; s < sequences; ++s) first_tokens[s + 1] = first_tokens[s] + batch.new_lengths[s];

    int* token_sequences = pack(metadata.token_sequences, tokens);
    int* token_positions = pack(metadata.token_positions, tokens);
    for (int s = 0; s < sequences; ++s)
      for (int j = 0; j < batch.new_lengths[s]; ++j) {
        const int token = first_tokens[s] + j;
        token_sequences[token] = s;
        token_positions[token] = batch.position(static_cast<std::size_t>(s), first_tokens[s], j);
      }

    const std::vector<Tile>& tiles = longest_first_tiles(batch, tile_rows);
    metadata.tile_count = static_cast<int>(tiles.size());
    int* out = pack(metadata.tiles, 2 * tiles.size());
    for (const Tile& tile : tiles) {
      *out++ = tile.sequence;
      *out++ = tile.first_row;
    }
    staging_.upload(device, pack.used, stream);
    return metadata;
  }

  // Packs a decode batch (one new token per sequence) and enqueues its copy
  // into `device` (decode_metadata_ints ints) on `stream`; first_splits and
  // split_chunk point at the rest, which the decode planner fills on the
  // device. Token s is sequence s's, at position positions[s] or, without
  // explicit positions, cached_lengths[s]. The batch must have passed
  // AttentionBatch::validate.
  DecodeMetadata upload_decode(int* device, const AttentionBatch& batch, cudaStream_t stream) {
    const int sequences = static_cast<int>(batch.sequences());
    Packer pack{device, staging_.reserve(decode_uploaded_ints(batch.sequences()))};
    AttentionMetadata metadata;
    DecodeDeviceFields fields;
    metadata.sequences = sequences;
    metadata.tokens = sequences;
    std::copy(batch.cache_slots.begin(), batch.cache_slots.end(), pack(metadata.cache_slots, sequences));
    fields.cached_lengths = device + pack.used;
    std::copy(batch.cached_lengths.begin(), batch.cached_lengths.end(), pack(metadata.cached_lengths, sequences));
    std::fill_n(pack(metadata.new_lengths, sequences), sequences, 1);
    int* first_tokens = pack(metadata.first_tokens, sequences + 1);
    int* token_sequences = pack(metadata.token_sequences, sequences);
    fields.token_positions = device + pack.used;
    int* token_positions = pack(metadata.token_positions, sequences);
    for (int s = 0; s < sequences; ++s) {
      token_sequences[s] = first_tokens[s] = s;
      token_positions[s] = batch.position(static_cast<std::size_t>(s), s, 0);
    }
    first_tokens[sequences] = sequences;
    staging_.upload(device, pack.used, stream);
    fields.first_splits = device + pack.used;
    fields.split_chunk = fields.first_splits + sequences + 1;
    metadata.first_splits = fields.first_splits;
    metadata.split_chunk = fields.split_chunk;
    return {metadata, fields};
  }

 private:
  // Hands out consecutive regions of the staged ints; `field` points at the
  // region's device copy.
  struct Packer {
    int* device;
    int* host;
    std::size_t used = 0;
    int* operator()(const int*& field, std::size_t count) {
      field = device + used;
      int* region = host + used;
      used += count;
      return region;
    }
  };

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

  PinnedStaging staging_;
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
