// The KV cache of a whole heterogeneous decoder in one block of caller
// memory (host or device, as the executor expects): per layer its own
// KVCacheShape, sized by that layer's KV heads, zero bytes for linear and
// no-op attention layers; every layer has the same slots (sequences held at
// once) and capacity (positions per sequence). Size query first
// (bytes_required), then ModelKVCache splits the block into per-layer views.
// The cache keeps no lengths: each forward's AttentionBatch says them.
#pragma once

#include <cstddef>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/kv_cache.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/io/model_description.hpp"

namespace elastic::model {

struct ModelCacheShape {
  int slots = 0;
  int capacity = 0;
  std::vector<KVCacheShape> layers;

  static ModelCacheShape for_model(const io::ModelDescription& model, int slots, int capacity) {
    require(slots > 0 && capacity > 0, "ModelCacheShape: expected positive slots and capacity, found ", slots,
            " and ", capacity);
    ModelCacheShape shape{slots, capacity, {}};
    for (const io::LayerPlan& plan : model.layers) shape.layers.push_back(layer_shape(model, plan, slots, capacity));
    return shape;
  }

  // One layer's cache: its KV heads for GQA attention, none otherwise.
  static KVCacheShape layer_shape(const io::ModelDescription& model, const io::LayerPlan& plan, int slots,
                                  int capacity) {
    return {slots, plan.attention == io::AttentionKind::gqa ? plan.kv_heads : 0, capacity, model.head_dim};
  }

  // Bytes of layer `layer`'s keys and values (0 without GQA attention).
  template <ElementType T>
  std::size_t layer_bytes(std::size_t layer) const {
    return layers.at(layer).bytes_required<T>();
  }

  // Bytes of the whole block, each layer's part aligned to workspace_alignment.
  template <ElementType T>
  std::size_t bytes_required() const {
    WorkspaceCursor cursor;
    for (const KVCacheShape& layer : layers) cursor.take_workspace(layer.bytes_required<T>());
    return cursor.bytes_used();
  }
};

template <ElementType T>
class ModelKVCache {
 public:
  // Splits `memory` (at least shape.bytes_required<T>() bytes, aligned to
  // workspace_alignment) into one KVCacheView per layer.
  ModelKVCache(Workspace memory, const ModelCacheShape& shape) : memory_(memory), shape_(shape) {
    const std::size_t needed = shape.bytes_required<T>();
    require<WorkspaceError>(memory.bytes >= needed, "ModelKVCache: memory too small: need at least ", needed,
                            " bytes, found ", memory.bytes);
    WorkspaceCursor cursor(memory);
    for (const KVCacheShape& layer : shape.layers)
      layers_.emplace_back(cursor.take_workspace(layer.bytes_required<T>()), layer);
  }

  const ModelCacheShape& shape() const { return shape_; }
  const KVCacheView<T>& layer(std::size_t index) const { return layers_.at(index); }
  std::size_t layer_count() const { return layers_.size(); }
  Workspace memory() const { return memory_; }

 private:
  Workspace memory_;
  ModelCacheShape shape_;
  std::vector<KVCacheView<T>> layers_;
};

}  // namespace elastic::model
