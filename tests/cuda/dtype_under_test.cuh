// The element type a per-dtype parity file tests: CMake compiles each such
// file once per dtype with ELASTIC_TEST_DTYPE set (float, half_t or
// bfloat16_t), so the instantiations build in parallel; test case names carry
// ELASTIC_TEST_DTYPE_NAME so the three builds register distinct cases.
#pragma once

#include "elastic/core/dtype.hpp"

#ifndef ELASTIC_TEST_DTYPE
#define ELASTIC_TEST_DTYPE bfloat16_t
#endif
#define ELASTIC_TEST_STRINGIFY_(x) #x
#define ELASTIC_TEST_STRINGIFY(x) ELASTIC_TEST_STRINGIFY_(x)
#define ELASTIC_TEST_DTYPE_NAME ELASTIC_TEST_STRINGIFY(ELASTIC_TEST_DTYPE)

namespace elastic::test {
using TestType = ELASTIC_TEST_DTYPE;
}  // namespace elastic::test
