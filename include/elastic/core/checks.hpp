// Argument checks shared by both executors, so the host and CUDA paths accept
// exactly the same inputs and reject bad ones with the same messages, before
// anything is written.
//
// The data contract of every primitive: views are non-null when non-empty;
// every row starts on a 16-byte boundary (the data pointer and the row stride
// in bytes are multiples of 16), and every reduction length is a whole number
// of 16-byte vectors; outputs overlap no input, weight or index array
// (core/overlap.hpp). The kernels index rows and reduction lengths with int,
// so weights are checked to have at most INT_MAX rows and columns.
#pragma once

#include <cstdint>
#include <string_view>

#include "elastic/core/counts.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/error.hpp"
#include "elastic/core/overlap.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::detail {

inline constexpr std::size_t row_alignment = 16;

template <class T>
void check_view(const MatrixView<T>& view, std::string_view op, std::string_view name) {
  if (view.empty()) return;
  require(view.data() != nullptr, op, ": ", name, " ", view.describe(), " has a null data pointer");
  require(reinterpret_cast<std::uintptr_t>(view.data()) % row_alignment == 0, op, ": ", name,
          " data pointer must be ", row_alignment, "-byte aligned, found address ",
          static_cast<const void*>(view.data()));
  require(view.rows() <= 1 || (view.row_stride() * sizeof(T)) % row_alignment == 0, op, ": ", name,
          " row stride must be a multiple of ", row_alignment, " bytes, found ", view.row_stride(),
          " elements of ", sizeof(T), " bytes");
}

template <class T>
void check_shape(const MatrixView<T>& view, index_t rows, index_t cols, std::string_view op,
                 std::string_view name) {
  require(view.rows() == rows && view.cols() == cols, op, ": ", name, " must be [", rows, " x ", cols,
          "], found ", view.describe());
}

template <class T>
void check_reduction_length(index_t length, std::string_view op) {
  require(length % math::vector_width<T> == 0, op, ": the reduction length must be a multiple of ",
          math::vector_width<T>, " ", dtype_name(dtype_of<T>), " elements (16 bytes), found ", length);
}

// A weight the kernels index with int rows and reduction positions.
template <class T>
void check_weight_extents(const MatrixView<T>& weight, std::string_view op, std::string_view name) {
  require(weight.rows() <= int_max && weight.cols() <= int_max, op, ": the ", name, " ", weight.describe(),
          " has more than ", int_max, " rows or columns");
}

// static_length is the Extent a caller promised for a reduction length (0: none).
inline void check_static_length(index_t length, int static_length, std::string_view op) {
  require(static_length == 0 || static_length == length, op, ": Extent<", static_length,
          "> does not match the reduction length ", length);
}

// y[t, o] = sum_i x[t, i] * w[o, i]; static_length as above. output_rows is
// the row count y must have: x's for a plain linear map, any for one that
// scatters its rows.
template <class T>
void check_linear_operands(const MatrixView<T>& y, const ConstMatrixView<T>& x, const ConstMatrixView<T>& w,
                           int static_length, std::string_view op, index_t output_rows) {
  check_static_length(w.cols(), static_length, op);
  check_shape(y, output_rows, w.rows(), op, "output");
  require(x.cols() == w.cols(), op, ": the input has ", x.cols(), " columns but the weight has ",
          w.cols(), " (expected equal)");
  check_reduction_length<T>(w.cols(), op);
  check_weight_extents(w, op, "weight");
  check_view(y, op, "output");
  check_view(x, op, "input");
  check_view(w, op, "weight");
  check_disjoint(op, {region("output", y)}, {region("input", x), region("weight", w)});
}

template <class T>
void check_linear(const MatrixView<T>& y, const ConstMatrixView<T>& x, const ConstMatrixView<T>& w,
                  int static_length) {
  check_linear_operands(y, x, w, static_length, "linear", x.rows());
}

// h[t, j] = silu(x[t] . gate[j]) * (x[t] . up[j]); output_rows as for linear.
template <class T>
void check_swiglu_operands(const MatrixView<T>& h, const ConstMatrixView<T>& x, const ConstMatrixView<T>& gate,
                           const ConstMatrixView<T>& up, std::string_view op, index_t output_rows) {
  check_shape(up, gate.rows(), gate.cols(), op, "up weight");
  check_shape(h, output_rows, gate.rows(), op, "output");
  require(x.cols() == gate.cols(), op, ": the input has ", x.cols(),
          " columns but the gate weight has ", gate.cols(), " (expected equal)");
  check_reduction_length<T>(gate.cols(), op);
  check_weight_extents(gate, op, "gate weight");
  check_view(h, op, "output");
  check_view(x, op, "input");
  check_view(gate, op, "gate weight");
  check_view(up, op, "up weight");
  check_disjoint(op, {region("output", h)}, {region("input", x), region("gate weight", gate), region("up weight", up)});
}

template <class T>
void check_swiglu(const MatrixView<T>& h, const ConstMatrixView<T>& x, const ConstMatrixView<T>& gate,
                  const ConstMatrixView<T>& up) {
  check_swiglu_operands(h, x, gate, up, "swiglu", x.rows());
}

// dst = src widened to float32, element for element.
template <class T>
void check_convert(const MatrixView<float>& dst, const ConstMatrixView<T>& src) {
  constexpr std::string_view op = "convert";
  check_shape(dst, src.rows(), src.cols(), op, "destination");
  check_view(dst, op, "destination");
  check_view(src, op, "source");
  check_disjoint(op, {region("destination", dst)}, {region("source", src)});
}

}  // namespace elastic::detail
