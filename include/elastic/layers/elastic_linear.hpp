// Elastic linear map: one full-width weight [out x in] stored once; a forward
// may use only the first k output rows (elastic output width, e.g. the query
// heads kept) and/or the first k input columns (elastic input width, e.g. the
// output projection after fewer heads). Each elastic dimension has its own
// width set; use AnyWidth for a dimension that is not specialised. The input
// width is the reduction length and is passed to the executor as a
// compile-time Extent.
#pragma once

#include <cstddef>

#include "elastic/core/checks.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/quantized_checks.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/widths.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/layers/width_checks.hpp"

namespace elastic {

// W: the weight's view, ConstMatrixView<T> or QuantizedMatrixView (GGUF
// blocks, on an executor that computes on them).
template <ElementType T, WidthSet OutWidths, WidthSet InWidths, class W = ConstMatrixView<T>>
class ElasticLinear {
 public:
  using element_type = T;
  using out_widths = OutWidths;
  using in_widths = InWidths;

  explicit ElasticLinear(W weight) : weight_(weight) {
    detail::check_view(weight, "ElasticLinear", "weight");
    detail::check_width_set<OutWidths, T>(weight.rows(), "ElasticLinear output width");
    detail::check_width_set<InWidths, T>(weight.cols(), "ElasticLinear input width");
  }

  index_t out_features() const { return weight_.rows(); }
  index_t in_features() const { return weight_.cols(); }

  // The weight a forward at these widths reads: a strided view, not a copy.
  W weight_at(int out_width, int in_width) const {
    return weight_.first_rows(out_width).first_cols(in_width);
  }

  template <ExecutorFor<T> E>
  std::size_t workspace_bytes(const E& executor, index_t tokens) const {
    return executor.template linear_workspace_bytes<T>(tokens, out_features(), in_features());
  }

  // y[t, :out_width] = x[t, :in_width] . W[:out_width, :in_width]^T; neither y
  // nor the workspace may overlap x or the weight.
  template <ExecutorFor<T> E>
  void forward(E& executor, int out_width, int in_width, MatrixView<T> y, ConstMatrixView<T> x,
               Workspace workspace) const {
    constexpr auto op = "ElasticLinear::forward";
    detail::check_width<OutWidths, T>(out_width, out_features(), "ElasticLinear output width");
    detail::check_width<InWidths, T>(in_width, in_features(), "ElasticLinear input width");
    detail::check_shape(x, x.rows(), in_width, op, "input x");
    detail::check_shape(y, x.rows(), out_width, op, "output y");
    const W weight = weight_at(out_width, in_width);
    const std::size_t used = executor.template linear_workspace_bytes<T>(x.rows(), out_width, in_width);
    require<WorkspaceError>(workspace.bytes >= used, op, ": workspace too small: need at least ", used,
                            " bytes, found ", workspace.bytes);
    detail::check_disjoint(op, {detail::region("output y", y), detail::region("workspace", workspace, used)},
                           {detail::region("input x", x), detail::region("weight", weight_)});
    InWidths::dispatch(in_width, [&]<int InWidth>() {
      executor.linear(y, x, weight, workspace, Extent<InWidth>{});
    });
  }

 private:
  W weight_;
};

}  // namespace elastic
