// Argument checks of the executor primitives that take block-quantised
// weights (core/quantized_matrix.hpp): the same shapes, views and overlaps
// as their float twins in core/checks.hpp, with the weight's format and
// byte extent in place of a float view. Each check throws elastic::Error
// naming the call and the offending argument before anything is written.
#pragma once

#include <string_view>

#include "elastic/core/checks.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/quantized_matrix.hpp"

namespace elastic::detail {

// The bytes a quantised weight's rows occupy.
inline Region region(std::string_view name, const QuantizedMatrixView& weight) {
  if (weight.empty()) return {name};
  const index_t used = QuantizedMatrixView::dense_row_bytes(weight.format(), weight.cols());
  return {name, weight.data(), weight.row(weight.rows() - 1) + used};
}

inline void check_quantized_weight(const QuantizedMatrixView& weight, std::string_view op, std::string_view name) {
  require(weight.rows() <= int_max && weight.cols() <= int_max, op, ": the ", name, " ", weight.describe(),
          " has more than ", int_max, " rows or columns");
  require(weight.data() != nullptr || weight.empty(), op, ": the ", name, " ", weight.describe(),
          " has a null data pointer");
}

// The float views' check_view / check_shape for a quantised weight, so the
// layers check either kind of weight with one call.
inline void check_view(const QuantizedMatrixView& weight, std::string_view op, std::string_view name) {
  check_quantized_weight(weight, op, name);
}

inline void check_shape(const QuantizedMatrixView& weight, index_t rows, index_t cols, std::string_view op,
                        std::string_view name) {
  require(weight.rows() == rows && weight.cols() == cols, op, ": ", name, " must be [", rows, " x ", cols,
          "], found ", weight.describe());
}

// y[t, o] = sum_i x[t, i] * w[o, i] with w quantised; output_rows as in
// check_linear_operands.
template <class T>
void check_quantized_linear_operands(const MatrixView<T>& y, const ConstMatrixView<T>& x,
                                     const QuantizedMatrixView& w, std::string_view op, index_t output_rows) {
  check_quantized_weight(w, op, "weight");
  check_shape(y, output_rows, w.rows(), op, "output");
  require(x.cols() == w.cols(), op, ": the input has ", x.cols(), " columns but the weight ", w.describe(),
          " has ", w.cols(), " (expected equal)");
  check_view(y, op, "output");
  check_view(x, op, "input");
  check_disjoint(op, {region("output", y)}, {region("input", x), region("weight", w)});
}

// h[t, j] = silu(x[t] . gate[j]) * (x[t] . up[j]) with gate and up quantised
// in one format.
template <class T>
void check_quantized_swiglu_operands(const MatrixView<T>& h, const ConstMatrixView<T>& x,
                                     const QuantizedMatrixView& gate, const QuantizedMatrixView& up,
                                     std::string_view op, index_t output_rows) {
  check_quantized_weight(gate, op, "gate weight");
  check_quantized_weight(up, op, "up weight");
  require(up.format() == gate.format() && up.rows() == gate.rows() && up.cols() == gate.cols(), op,
          ": the up weight ", up.describe(), " must have the gate weight's format and shape ", gate.describe());
  check_shape(h, output_rows, gate.rows(), op, "output");
  require(x.cols() == gate.cols(), op, ": the input has ", x.cols(), " columns but the gate weight ",
          gate.describe(), " has ", gate.cols(), " (expected equal)");
  check_view(h, op, "output");
  check_view(x, op, "input");
  check_disjoint(op, {region("output", h)},
                 {region("input", x), region("gate weight", gate), region("up weight", up)});
}

// The routed forms: h's rows read x's rows by index; y's rows by index
// receive x's rows' products (as check_gather_swiglu and
// check_linear_scatter_add in core/routing_checks.hpp).
template <class T>
void check_quantized_gather_swiglu(const MatrixView<T>& h, const ConstMatrixView<T>& x, const int* indices,
                                   const QuantizedMatrixView& gate, const QuantizedMatrixView& up) {
  constexpr std::string_view op = "gather_swiglu";
  require(indices != nullptr || h.rows() == 0, op, ": the row indices are a null pointer");
  check_quantized_swiglu_operands(h, x, gate, up, op, h.rows());
  check_disjoint(op, {region("output", h)}, {region("row indices", indices, h.rows())});
}

template <class T>
void check_quantized_linear_scatter_add(const MatrixView<T>& y, const ConstMatrixView<T>& x,
                                        const QuantizedMatrixView& w, const int* indices) {
  constexpr std::string_view op = "linear_scatter_add";
  require(indices != nullptr || x.rows() == 0, op, ": the row indices are a null pointer");
  check_quantized_linear_operands(y, x, w, op, y.rows());
  check_disjoint(op, {region("output", y)}, {region("row indices", indices, x.rows())});
}

}  // namespace elastic::detail
