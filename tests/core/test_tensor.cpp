// Matrix views: strided slices are views of the same memory, and bad extents
// or ranges are rejected.
#include <doctest/doctest.h>

#include <numeric>
#include <vector>

#include "elastic/core/tensor.hpp"

using namespace elastic;

TEST_CASE("slices keep the row stride and alias the parent") {
  std::vector<int> storage(6 * 10);
  std::iota(storage.begin(), storage.end(), 0);
  MatrixView<int> full(storage.data(), 6, 10);
  CHECK(full.is_contiguous());

  const MatrixView<int> left = full.first_cols(4);
  CHECK(left.rows() == 6);
  CHECK(left.cols() == 4);
  CHECK(left.row_stride() == 10);
  CHECK_FALSE(left.is_contiguous());
  CHECK(left(2, 3) == 23);

  const MatrixView<int> block = full.row_range(1, 3).col_range(5, 2);
  CHECK(block(0, 0) == 15);
  CHECK(block(2, 1) == 36);
  block(1, 1) = -1;
  CHECK(storage[26] == -1);

  const ConstMatrixView<int> read_only = block;
  CHECK(read_only.data() == block.data());
  CHECK(block.describe() == "[3 x 2, stride 10]");
}

TEST_CASE("bad extents and ranges throw") {
  std::vector<float> storage(12);
  CHECK_THROWS_AS(MatrixView<float>(storage.data(), 3, 4, 3), Error);
  CHECK_THROWS_AS(MatrixView<float>(storage.data(), -1, 4), Error);
  const MatrixView<float> view(storage.data(), 3, 4);
  CHECK_THROWS_WITH(view.first_rows(4), "row range [0, 4) is outside a matrix with 3 rows");
  CHECK_THROWS_AS(view.col_range(2, 3), Error);
}

TEST_CASE("overlap detection follows the byte extents of strided views") {
  std::vector<float> storage(4 * 8);
  const MatrixView<float> full(storage.data(), 4, 8);
  CHECK(overlaps(full.first_cols(4), full.col_range(2, 4)));
  CHECK(overlaps(full.first_rows(2), full.row_range(1, 2)));
  CHECK_FALSE(overlaps(full.first_rows(2), full.row_range(2, 2)));
  CHECK_FALSE(overlaps(full.first_rows(0), full));
}
