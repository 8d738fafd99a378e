// Non-owning matrix views over caller-owned memory.
//
// A MatrixView is a row-major 2-D view with a row stride, so a width-k slice
// of a full-width weight is a view, not a copy: the first k rows of a gate
// projection stay contiguous, the first k columns of a down projection keep
// the full row stride. Layers hold views of weights the engine owns; nothing
// here allocates. The memory may live on the host or on a CUDA device; which
// one is the executor's contract, not the view's.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "elastic/core/error.hpp"

namespace elastic {

using index_t = std::int64_t;

template <class T>
class MatrixView {
 public:
  using element_type = T;
  using value_type = std::remove_const_t<T>;

  MatrixView() = default;

  MatrixView(T* data, index_t rows, index_t cols, index_t row_stride)
      : data_(data), rows_(rows), cols_(cols), row_stride_(row_stride) {
    require(rows >= 0 && cols >= 0, "matrix extents must be non-negative, found [", rows, " x ", cols,
            "]");
    require(row_stride >= cols, "row stride must be at least the column count ", cols, ", found ",
            row_stride);
  }

  // A contiguous rows x cols matrix.
  MatrixView(T* data, index_t rows, index_t cols) : MatrixView(data, rows, cols, cols) {}

  // Views of mutable elements convert to views of const elements.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  MatrixView(const MatrixView<U>& other)  // NOLINT(google-explicit-constructor)
      : data_(other.data()), rows_(other.rows()), cols_(other.cols()), row_stride_(other.row_stride()) {}

  T* data() const { return data_; }
  index_t rows() const { return rows_; }
  index_t cols() const { return cols_; }
  index_t row_stride() const { return row_stride_; }
  index_t size() const { return rows_ * cols_; }
  bool empty() const { return rows_ == 0 || cols_ == 0; }
  bool is_contiguous() const { return row_stride_ == cols_ || rows_ <= 1; }

  T* row(index_t r) const { return data_ + r * row_stride_; }
  T& operator()(index_t r, index_t c) const { return data_[r * row_stride_ + c]; }

  // Rows [begin, begin + count).
  MatrixView row_range(index_t begin, index_t count) const {
    require(begin >= 0 && count >= 0 && begin + count <= rows_, "row range [", begin, ", ",
            begin + count, ") is outside a matrix with ", rows_, " rows");
    return MatrixView(data_ + begin * row_stride_, count, cols_, row_stride_);
  }
  MatrixView first_rows(index_t count) const { return row_range(0, count); }

  // Columns [begin, begin + count), keeping the row stride.
  MatrixView col_range(index_t begin, index_t count) const {
    require(begin >= 0 && count >= 0 && begin + count <= cols_, "column range [", begin, ", ",
            begin + count, ") is outside a matrix with ", cols_, " columns");
    return MatrixView(data_ + begin, rows_, count, row_stride_);
  }
  MatrixView first_cols(index_t count) const { return col_range(0, count); }

  // "[rows x cols, stride s]" for error messages.
  std::string describe() const {
    return detail::concat("[", rows_, " x ", cols_, ", stride ", row_stride_, "]");
  }

 private:
  T* data_ = nullptr;
  index_t rows_ = 0;
  index_t cols_ = 0;
  index_t row_stride_ = 0;
};

template <class T>
using ConstMatrixView = MatrixView<const T>;

// Byte range [first, last) a view touches; empty views touch nothing.
template <class T>
std::pair<const std::byte*, const std::byte*> byte_extent(const MatrixView<T>& view) {
  if (view.empty()) return {nullptr, nullptr};
  const auto* first = reinterpret_cast<const std::byte*>(view.data());
  const auto* last = reinterpret_cast<const std::byte*>(view.row(view.rows() - 1) + view.cols());
  return {first, last};
}

// True when two views share at least one byte of their extents.
template <class T, class U>
bool overlaps(const MatrixView<T>& a, const MatrixView<U>& b) {
  const auto [a_first, a_last] = byte_extent(a);
  const auto [b_first, b_last] = byte_extent(b);
  if (a_first == nullptr || b_first == nullptr) return false;
  return a_first < b_last && b_first < a_last;
}

}  // namespace elastic
