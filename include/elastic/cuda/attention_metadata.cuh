// What the attention kernels receive: the batch description in the caller's
// device workspace, and one plain parameter struct with the tensors, the head
// counts and the RoPE frequencies, passed by value to every launch.
//
// AttentionBatch lives in host memory. The kernels need, per sequence, its
// cache slot, cached length, new length and first packed token, per packed
// token its sequence and RoPE position, for prefill the query tiles and the
// (tile, split) work items of the call's split plan (PrefillSplitPlan: a
// tile's K/V range is cut into splits when the tiles alone would leave the
// GPU idle), and for decode the split chunk and where each sequence's split
// partials start. AttentionStaging packs the host part into one int array in
// pinned host memory the executor owns (PinnedStaging) and moves it into the
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
#include "elastic/math/attention_tiles.hpp"
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
  // Prefill: [4 * tile_count] query tiles (sequence, first new row, splits,
  // first partial slot), longest first; [2 * work_count] work items (tile,
  // split), one block row each, longest first. Split s of a tile covers
  // math::prefill_split_range(limit, key_chunk, s); a tile of one split
  // writes its output directly, the others write partial slots first
  // partial slot + s.
  const int* tiles = nullptr;
  const int* work = nullptr;
  // Decode, written on the device before the attention kernel runs: sequence
  // s owns split partials [first_splits[s], first_splits[s + 1]); every split
  // but a sequence's last covers *split_chunk positions.
  const int* first_splits = nullptr;  // [sequences + 1]
  const int* split_chunk = nullptr;   // [1]
  int sequences = 0;
  int tokens = 0;
  int tile_count = 0;
  int work_count = 0;
  int key_chunk = 0;  // prefill: K/V positions per split, a whole number of K/V tiles
};

// Calls f(sequence, first new row, limit) for every query tile of tile_rows
// rows, limit being what the tile's last row sees: [0, limit).
template <class F>
void for_each_query_tile(const AttentionBatch& batch, int tile_rows, F&& f) {
  for (std::size_t s = 0; s < batch.sequences(); ++s)
    for (int row = 0; row < batch.new_lengths[s]; row += tile_rows)
      f(static_cast<int>(s), row, batch.cached_lengths[s] + std::min(row + tile_rows, batch.new_lengths[s]));
}

// How a prefill call cuts its query tiles' K/V ranges into splits
// (math/attention_tiles.hpp), and the workspace that takes: exact counts
// for this call and bounds, from the lengths alone, that size the workspace
// for every head count up to the call's.
struct PrefillSplitPlan {
  int chunk = 0;          // K/V positions per split
  int tiles = 0;          // query tiles
  int work = 0;           // (tile, split) items: blocks per head
  int partial_slots = 0;  // per head: the splits of tiles with more than one
  long long work_bound = 0;          // work items, whatever the head count
  long long partial_slot_bound = 0;  // partial slots of all heads, non-decreasing in heads
};

// The plan of a validated prefill batch for query tiles of tile_rows rows,
// K/V tiles of `columns` positions and `heads` heads, on a device that holds
// target_blocks blocks at once.
inline PrefillSplitPlan make_prefill_split_plan(const AttentionBatch& batch, int tile_rows, int columns, int heads,
                                                long long target_blocks) {
  PrefillSplitPlan plan;
  long long key_tiles = 0;
  int longest = 0;
  for_each_query_tile(batch, tile_rows, [&](int, int, int limit) {
    const int tiles = math::key_tile_count(limit, columns);
    ++plan.tiles;
    key_tiles += tiles;
    longest = std::max(longest, tiles);
  });
  plan.chunk = math::prefill_split_chunk(plan.tiles, key_tiles, longest, heads, target_blocks, columns);
  for_each_query_tile(batch, tile_rows, [&](int, int, int limit) {
    const int splits = math::prefill_splits(limit, plan.chunk);
    plan.work += splits;
    if (splits > 1) plan.partial_slots += splits;
  });
  plan.work_bound = math::prefill_work_bound(plan.tiles, key_tiles, target_blocks);
  plan.partial_slot_bound = math::prefill_partial_slot_bound(plan.tiles, key_tiles, heads, target_blocks);
  return plan;
}

// Ints of workspace the metadata of a prefill (or mixed) batch takes under
// `plan`, for any head count.
inline std::size_t prefill_metadata_ints(const AttentionBatch& batch, const PrefillSplitPlan& plan) {
  const std::size_t sequences = batch.sequences();
  return 3 * sequences + (sequences + 1) + 2 * static_cast<std::size_t>(batch.tokens()) +
         4 * static_cast<std::size_t>(plan.tiles) + 2 * static_cast<std::size_t>(plan.work_bound);
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
  // the work items of `plan` (made for this batch and tile_rows) and
  // enqueues its copy into `device` (prefill_metadata_ints ints) on
  // `stream`. The batch must have passed AttentionBatch::validate.
  AttentionMetadata upload_prefill(int* device, const AttentionBatch& batch, int tile_rows,
                                   const PrefillSplitPlan& plan, cudaStream_t stream) {
    const int sequences = static_cast<int>(batch.sequences());
    const int tokens = static_cast<int>(batch.tokens());
    const std::size_t count = prefill_metadata_ints(batch, plan);
    Packer pack{device, staging_.reserve(count)};
    AttentionMetadata metadata;
    metadata.sequences = sequences;
    metadata.tokens = tokens;
    metadata.key_chunk = plan.chunk;
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

    list_work(batch, tile_rows, plan.chunk);
    metadata.tile_count = static_cast<int>(tiles_.size());
    metadata.work_count = static_cast<int>(work_.size());
    int* tile_out = pack(metadata.tiles, 4 * tiles_.size());
    int first_partial = 0;
    for (const Tile& tile : tiles_) {
      const int splits = math::prefill_splits(tile.limit, plan.chunk);
      *tile_out++ = tile.sequence;
      *tile_out++ = tile.first_row;
      *tile_out++ = splits;
      *tile_out++ = splits > 1 ? first_partial : -1;
      if (splits > 1) first_partial += splits;
    }
    int* work_out = pack(metadata.work, 2 * work_.size());
    for (const Work& item : work_) {
      *work_out++ = item.tile;
      *work_out++ = item.split;
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
    int limit;  // KV positions the tile's last row attends to
    int sequence;
    int first_row;
  };
  struct Work {
    int positions;  // KV positions of the split
    int tile;
    int split;
  };

  // The query tiles, the longest first, and their splits of `chunk`
  // positions, the longest first, so the blocks that run longest start first
  // and the short ones fill the tail of the grid.
  void list_work(const AttentionBatch& batch, int tile_rows, int chunk) {
    tiles_.clear();
    for_each_query_tile(batch, tile_rows,
                        [&](int sequence, int row, int limit) { tiles_.push_back({limit, sequence, row}); });
    std::stable_sort(tiles_.begin(), tiles_.end(), [](const Tile& a, const Tile& b) { return a.limit > b.limit; });
    work_.clear();
    for (std::size_t t = 0; t < tiles_.size(); ++t)
      for (int split = 0; split < math::prefill_splits(tiles_[t].limit, chunk); ++split) {
        const math::KeyRange range = math::prefill_split_range(tiles_[t].limit, chunk, split);
        work_.push_back({range.end - range.begin, static_cast<int>(t), split});
      }
    std::stable_sort(work_.begin(), work_.end(),
                     [](const Work& a, const Work& b) { return a.positions > b.positions; });
  }

  PinnedStaging staging_;
  std::vector<Tile> tiles_;
  std::vector<Work> work_;
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
