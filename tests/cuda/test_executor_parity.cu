// CUDA executor vs host executor for one element type, chosen by the build
// (ELASTIC_TEST_DTYPE): CMake compiles this file once per dtype so the three
// instantiations build in parallel.
#include "cuda/parity.cuh"

#include "cuda/dtype_under_test.cuh"

using namespace elastic;
using test::TestType;

TEST_CASE("cuda elastic MLP matches the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_mlp_parity<TestType>();
}

TEST_CASE("cuda elastic linear matches the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_linear_parity<TestType>();
}

TEST_CASE("cuda decode row dots match float64 at 1-16 tokens: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_decode_row_dots<TestType>();
}

TEST_CASE("cuda convert widens to float32 like the host: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_convert_parity<TestType>();
}
