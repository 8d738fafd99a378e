// The owner of a model's weights in host memory: every tensor the described
// model reads (io::required_tensors), fetched by role from an io::ModelSource
// (GGUF or Hugging Face folder; any TensorSource) and dequantised once into
// one aligned allocation as T (float or bfloat16_t, the caller's choice). The Decoder
// and any sub-network of it read these through non-owning views, so the
// weights exist once. Q/K rows are kept in the file's RoPE pair layout
// (ModelDescription::rope.layout tells the attention which one).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/host/workspace_buffer.hpp"
#include "elastic/io/dequantize.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/stored_tensor.hpp"
#include "elastic/io/tensor_roles.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/model/weight_binding.hpp"

namespace elastic::model {

// What weights are loaded from: a model description and its tensors by role
// (io::ModelSource is one).
template <class S>
concept TensorSource = requires(const S& source, io::TensorRole role, int layer) {
  { source.description() } -> std::convertible_to<const io::ModelDescription&>;
  { source.tensor(role, layer) } -> std::convertible_to<const io::StoredTensor&>;
};

// Elements of the tensor a slot describes (the source checked the sizes).
inline std::size_t slot_elements(const io::TensorSlot& slot) {
  std::size_t count = 1;
  for (std::int64_t dim : slot.shape) count *= static_cast<std::size_t>(dim);
  return count;
}

template <ElementType T>
class HostWeights {
 public:
  // Dequantises every required tensor of `source`; the source may be closed
  // afterwards. Throws elastic::Error for a tensor type that cannot be
  // dequantised.
  template <TensorSource Source>
  explicit HostWeights(const Source& source) : description_(source.description()) {
    const std::vector<io::TensorSlot> slots = io::required_tensors(description_);
    WorkspaceCursor measure;
    for (const io::TensorSlot& slot : slots) measure.take<T>(slot_elements(slot));
    buffer_ = host::WorkspaceBuffer(measure.bytes_used());
    WorkspaceCursor carve(buffer_.get());
    views_.layers.resize(description_.layers.size());
    for (const io::TensorSlot& slot : slots) {
      const std::size_t count = slot_elements(slot);
      T* data = carve.take<T>(count);
      io::dequantize_tensor(source.tensor(slot.role, slot.layer), std::span<T>(data, count));
      const index_t cols = slot.shape.back();
      bind_weight(views_, slot, ConstMatrixView<T>(data, static_cast<index_t>(count) / cols, cols));
    }
    if (description_.tied_embeddings) views_.lm_head = views_.token_embedding;
  }

  const io::ModelDescription& description() const { return description_; }
  const ModelWeights<T>& views() const { return views_; }
  std::size_t bytes() const { return buffer_.bytes(); }

 private:
  io::ModelDescription description_;
  host::WorkspaceBuffer buffer_;
  ModelWeights<T> views_;
};

}  // namespace elastic::model
