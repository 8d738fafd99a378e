// CUDA routing primitives vs the host executor for one element type, chosen
// by the build (ELASTIC_TEST_DTYPE): CMake compiles this file once per dtype,
// as it does the MLP and attention parity tests, so the instantiations build
// in parallel. The checks live in routing_parity.cuh; the plan tests, which
// do not depend on the element type, in test_route_plans.cu.
#include "cuda/routing_parity.cuh"

#include "cuda/dtype_under_test.cuh"

using namespace elastic;
using test::TestType;

TEST_CASE("cuda route decisions match the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_decide_parity<TestType>();
}

TEST_CASE("cuda plan, gather and scatter-add match the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_routed_rows_parity<TestType>();
}

TEST_CASE("cuda gather and scatter-add skip out-of-range rows: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_out_of_range_indices<TestType>();
}

TEST_CASE("cuda RMSNorm, ReLU and contribution ratios match the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_row_ops_parity<TestType>();
}

TEST_CASE("cuda routing rejects bad arguments before writing: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_routing_argument_errors<TestType>();
}
