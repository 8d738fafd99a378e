// The owner of a model's weights in device memory: one cudaMalloc holding a
// copy of every view of a host ModelWeights<T> (HostWeights::views() or any
// loader's), uploaded once at construction, so a Decoder<T> on the CUDA
// executor reads them through views() and the host copy may be released.
// Each matrix is stored with its rows padded to whole 16-byte vectors (as the
// workspace carves matrices) and copied with cudaMemcpy2D from its host row
// stride, so strided host views need no packing; a tied LM head (the same
// view as the token embedding) shares the embedding's copy; empty views stay
// empty. The copies are complete when the constructor returns. A failed
// allocation throws cuda::CudaError naming the bytes.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/cuda/device_buffer.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/model/model_weights.hpp"

namespace elastic::model {

template <ElementType T>
class DeviceWeights {
 public:
  // Copies every weight `host` views (host memory) to the device.
  explicit DeviceWeights(const ModelWeights<T>& host) {
    WorkspaceCursor measure;
    ModelWeights<T> measured;
    for_each_weight(host, measured, [&](const ConstMatrixView<T>& source, ConstMatrixView<T>& copy) {
      copy = place(measure, source);
    });
    memory_ = cuda::WorkspaceBuffer(measure.bytes_used(), "the model weights");
    WorkspaceCursor carve(memory_.get());
    for_each_weight(host, views_, [&](const ConstMatrixView<T>& source, ConstMatrixView<T>& copy) {
      const MatrixView<T> placed = place(carve, source);
      if (!placed.empty())
        ELASTIC_CUDA_CHECK(cudaMemcpy2D(placed.data(), static_cast<std::size_t>(placed.row_stride()) * sizeof(T),
                                        source.data(), static_cast<std::size_t>(source.row_stride()) * sizeof(T),
                                        static_cast<std::size_t>(source.cols()) * sizeof(T),
                                        static_cast<std::size_t>(source.rows()), cudaMemcpyHostToDevice));
      copy = placed;
    });
    if (is_tied(host)) views_.lm_head = views_.token_embedding;
  }

  // The device copies, laid out as the host views were.
  const ModelWeights<T>& views() const { return views_; }
  std::size_t bytes() const { return memory_.bytes(); }

 private:
  static bool is_tied(const ModelWeights<T>& weights) {
    const ConstMatrixView<T>& head = weights.lm_head;
    const ConstMatrixView<T>& embedding = weights.token_embedding;
    return head.data() == embedding.data() && head.rows() == embedding.rows() && head.cols() == embedding.cols() &&
           head.row_stride() == embedding.row_stride();
  }

  // Calls visit(host view, its copy in `device`) for every weight, but for a
  // tied LM head (the caller points it at the embedding's copy).
  template <class Visit>
  static void for_each_weight(const ModelWeights<T>& host, ModelWeights<T>& device, Visit&& visit) {
    visit(host.token_embedding, device.token_embedding);
    visit(host.output_norm, device.output_norm);
    if (!is_tied(host)) visit(host.lm_head, device.lm_head);
    device.layers.resize(host.layers.size());
    for (std::size_t i = 0; i < host.layers.size(); ++i) {
      const auto sources = layer_views(host.layers[i]);
      const auto copies = layer_views(device.layers[i]);
      for (std::size_t v = 0; v < sources.size(); ++v) visit(*sources[v], *copies[v]);
    }
  }

  // Where the copy of `source` goes: a matrix of its shape taken from the
  // cursor (null while measuring), or an empty view for an empty one.
  static MatrixView<T> place(WorkspaceCursor& cursor, const ConstMatrixView<T>& source) {
    if (source.empty()) return MatrixView<T>(nullptr, source.rows(), source.cols());
    require(source.data() != nullptr, "DeviceWeights: a weight ", source.describe(), " has a null data pointer");
    return cursor.take_matrix<T>(source.rows(), source.cols());
  }

  cuda::WorkspaceBuffer memory_;
  ModelWeights<T> views_;
};

}  // namespace elastic::model
