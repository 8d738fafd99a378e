// The owner of a model's weights in host memory in the file's own quantised
// blocks: every weight matrix the described model reads is copied as its
// GGUF blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K) into one
// aligned allocation and viewed as a QuantizedMatrixView, which the host
// executor computes on directly (activations quantised to 8 bits per
// block); the norm vectors are dequantised into T. So a 4-bit file runs at
// its own size, not as float32 or bfloat16 copies of it. A matrix stored in
// any other type, or FFN gate and up projections in two formats, are
// refused, naming what was found (HostWeights dequantises those).
#pragma once

#include <cstddef>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/quantized_matrix.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/host/workspace_buffer.hpp"
#include "elastic/io/dequantize.hpp"
#include "elastic/io/model_description.hpp"
#include "elastic/io/quant_format.hpp"
#include "elastic/io/stored_tensor.hpp"
#include "elastic/io/tensor_roles.hpp"
#include "elastic/model/host_weights.hpp"
#include "elastic/model/model_weights.hpp"
#include "elastic/model/weight_binding.hpp"

namespace elastic::model {

// True when every weight matrix `source` holds for its model is in a block
// format the host executor computes on (and each FFN's gate and up share
// one), so QuantizedHostWeights can load it.
template <TensorSource Source>
bool computes_on_blocks(const Source& source) {
  for (const io::TensorSlot& slot : io::required_tensors(source.description())) {
    if (is_norm_role(slot.role)) continue;
    const io::StoredTensor& tensor = source.tensor(slot.role, slot.layer);
    if (!io::quant_format(tensor.type)) return false;
    if (slot.role == io::TensorRole::ffn_gate && source.tensor(io::TensorRole::ffn_up, slot.layer).type != tensor.type)
      return false;
  }
  return true;
}

template <ElementType T>
class QuantizedHostWeights {
 public:
  using matrix_view = QuantizedMatrixView;

  // Copies every required matrix of `source` as blocks and dequantises the
  // norms; the source may be closed afterwards. Throws elastic::Error for a
  // matrix in a type the executor cannot compute on, before allocating.
  template <TensorSource Source>
  explicit QuantizedHostWeights(const Source& source) : description_(source.description()) {
    const std::vector<io::TensorSlot> slots = io::required_tensors(description_);
    WorkspaceCursor measure;
    for (const io::TensorSlot& slot : slots) {
      if (is_norm_role(slot.role)) {
        measure.take<T>(slot_elements(slot));
      } else {
        const io::StoredTensor& tensor = source.tensor(slot.role, slot.layer);
        format_of(tensor);
        measure.take<std::byte>(tensor.bytes.size());
      }
    }
    buffer_ = host::WorkspaceBuffer(measure.bytes_used());
    WorkspaceCursor carve(buffer_.get());
    views_.layers.resize(description_.layers.size());
    for (const io::TensorSlot& slot : slots) {
      const io::StoredTensor& tensor = source.tensor(slot.role, slot.layer);
      const auto cols = static_cast<index_t>(slot.shape.back());
      const auto rows = static_cast<index_t>(slot_elements(slot)) / cols;
      if (is_norm_role(slot.role)) {
        T* data = carve.take<T>(slot_elements(slot));
        io::dequantize_tensor(tensor, std::span<T>(data, slot_elements(slot)));
        bind_weight(views_, slot, ConstMatrixView<T>(data, rows, cols));
      } else {
        std::byte* data = carve.take<std::byte>(tensor.bytes.size());
        std::memcpy(data, tensor.bytes.data(), tensor.bytes.size());
        bind_weight(views_, slot, QuantizedMatrixView(format_of(tensor), data, rows, cols));
      }
    }
    if (description_.tied_embeddings) views_.lm_head = views_.token_embedding;
    for (std::size_t i = 0; i < views_.layers.size(); ++i) {
      const MLPWeights<T, QuantizedMatrixView>& mlp = views_.layers[i].mlp;
      require(mlp.gate.empty() || mlp.gate.format() == mlp.up.format(), "layer ", i,
              ": the FFN gate and up projections must share one block format to compute on the blocks (the fused "
              "kernel reads them together), found ", mlp.gate.describe(), " and ", mlp.up.describe());
    }
  }

  const io::ModelDescription& description() const { return description_; }
  const ModelWeights<T, QuantizedMatrixView>& views() const { return views_; }
  std::size_t bytes() const { return buffer_.bytes(); }

 private:
  static QuantFormat format_of(const io::StoredTensor& tensor) {
    const std::optional<QuantFormat> format = io::quant_format(tensor.type);
    require(format.has_value(), "tensor \"", tensor.name, "\" is ", io::type_name(tensor.type),
            "; computing on quantised blocks needs Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K weight "
            "matrices (dequantise the model instead: f32 or bf16)");
    return *format;
  }

  io::ModelDescription description_;
  host::WorkspaceBuffer buffer_;
  ModelWeights<T, QuantizedMatrixView> views_;
};

}  // namespace elastic::model
