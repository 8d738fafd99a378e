// A per-layer key/value cache in caller-owned memory.
//
// Layout, for keys and for values alike: [slot][kv_head][position][head_dim],
// row-major. A slot holds one sequence; one (slot, head) pair is a contiguous
// block of capacity x head_dim elements, so decode attention streams it with
// 16-byte loads. The size query (bytes_required) comes first; the view then
// splits the caller's block into keys and values. A layer with zero KV heads
// (linear or no-op attention) needs zero bytes and owns no cache. The cache
// stores no lengths: the batch description says how many positions of each
// slot are filled (see AttentionBatch).
#pragma once

#include <cstddef>
#include <cstdint>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"

namespace elastic {

struct KVCacheShape {
  int slots = 0;      // sequences the cache can hold at once
  int kv_heads = 0;   // this layer's KV heads (0: no cache)
  int capacity = 0;   // positions per sequence
  int head_dim = 0;

  // Elements of the keys (or of the values); throws WorkspaceError when the
  // count does not fit in std::size_t, and Error for a negative extent.
  std::size_t elements_per_tensor() const {
    require(slots >= 0 && kv_heads >= 0 && capacity >= 0 && head_dim >= 0,
            "KV cache shape must be non-negative, found slots ", slots, ", kv_heads ", kv_heads, ", capacity ",
            capacity, ", head_dim ", head_dim);
    constexpr auto what = "KV cache size";
    return detail::checked_product(
        detail::checked_product(static_cast<std::size_t>(slots), static_cast<std::size_t>(kv_heads), what),
        detail::checked_product(static_cast<std::size_t>(capacity), static_cast<std::size_t>(head_dim), what),
        what);
  }

  // Bytes of keys plus values, each part aligned to workspace_alignment.
  template <ElementType T>
  std::size_t bytes_required() const {
    const std::size_t elements = elements_per_tensor();
    if (kv_heads == 0) return 0;
    WorkspaceCursor cursor;
    cursor.take<T>(elements);
    cursor.take<T>(elements);
    return cursor.bytes_used();
  }
};

template <ElementType T>
class KVCacheView {
 public:
  KVCacheView() = default;

  // Splits `memory` (host or device, as the executor expects) into keys and
  // values for `shape`.
  KVCacheView(Workspace memory, const KVCacheShape& shape) : shape_(shape) {
    const std::size_t needed = shape.bytes_required<T>();
    require<WorkspaceError>(memory.bytes >= needed, "KV cache memory too small: need at least ", needed,
                            " bytes, found ", memory.bytes);
    if (needed == 0) return;
    WorkspaceCursor cursor(memory);
    keys_ = cursor.take<T>(shape.elements_per_tensor());
    values_ = cursor.take<T>(shape.elements_per_tensor());
  }

  const KVCacheShape& shape() const { return shape_; }
  bool empty() const { return shape_.kv_heads == 0; }
  T* keys() const { return keys_; }
  T* values() const { return values_; }

  // Offset of (slot, head, position, 0) in keys() or values().
  std::size_t offset(int slot, int head, int position) const {
    return ((static_cast<std::size_t>(slot) * shape_.kv_heads + head) * shape_.capacity + position) *
           static_cast<std::size_t>(shape_.head_dim);
  }

 private:
  KVCacheShape shape_{};
  T* keys_ = nullptr;
  T* values_ = nullptr;
};

}  // namespace elastic
