// CUDA executor vs host executor for one element type, chosen by the build
// (ELASTIC_TEST_DTYPE): CMake compiles this file once per dtype so the three
// instantiations build in parallel.
#include "cuda/parity.cuh"

#ifndef ELASTIC_TEST_DTYPE
#define ELASTIC_TEST_DTYPE bfloat16_t
#endif
#define ELASTIC_TEST_STRINGIFY_(x) #x
#define ELASTIC_TEST_STRINGIFY(x) ELASTIC_TEST_STRINGIFY_(x)

using namespace elastic;
using TestType = ELASTIC_TEST_DTYPE;

TEST_CASE("cuda elastic MLP matches the host executor: " ELASTIC_TEST_STRINGIFY(ELASTIC_TEST_DTYPE)) {
  test::check_mlp_parity<TestType>();
}

TEST_CASE("cuda elastic linear matches the host executor: " ELASTIC_TEST_STRINGIFY(ELASTIC_TEST_DTYPE)) {
  test::check_linear_parity<TestType>();
}
