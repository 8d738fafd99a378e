// CUDA routed layers vs the host executor for one element type, chosen by
// the build (ELASTIC_TEST_DTYPE): CMake compiles this file once per dtype, as
// it does the other parity files, so the instantiations build in parallel.
// The checks live in routed_layers_parity.cuh.
#include "cuda/routed_layers_parity.cuh"

#include "cuda/dtype_under_test.cuh"

using namespace elastic;
using test::TestType;

TEST_CASE("cuda gather_swiglu, linear_scatter_add and add_to_rows match the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_indexed_mlp_parity<TestType>();
}

TEST_CASE("cuda gather_swiglu and linear_scatter_add skip out-of-range tokens: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_indexed_out_of_range<TestType>();
}

TEST_CASE("cuda routed MLP matches the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_routed_mlp_parity<TestType>();
}

TEST_CASE("cuda router logits match the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_router_parity<TestType>();
}

TEST_CASE("cuda capacity-routed layer captured in a CUDA graph replays new inputs to the eager result: "
          ELASTIC_TEST_DTYPE_NAME) {
  test::check_capacity_layer_graph<TestType>();
}

TEST_CASE("cuda skippable attention matches the host executor under both KV policies: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_skippable_attention_parity<TestType>();
}

TEST_CASE("cuda skippable attention sizes its workspace for kept tokens that form a decode batch: "
          ELASTIC_TEST_DTYPE_NAME) {
  test::check_skippable_attention_kept_decode<TestType>();
}

TEST_CASE("cuda routed MLP calls reject bad arguments before writing: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_routed_argument_errors<TestType>();
}
