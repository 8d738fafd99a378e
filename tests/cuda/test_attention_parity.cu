// CUDA attention vs the host executor for one element type, chosen by the
// build (ELASTIC_TEST_DTYPE): CMake compiles this file once per dtype, as it
// does test_executor_parity.cu, so the instantiations build in parallel. The
// checks themselves live in attention_parity.cuh.
#include "cuda/attention_parity.cuh"

#include "cuda/dtype_under_test.cuh"

using namespace elastic;
using test::TestType;

TEST_CASE("cuda attention primitive matches the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  for (int kv_heads : test::attention_kv_heads) {
    const int group_size = test::attention_stored_heads / kv_heads;
    CAPTURE(group_size);
    test::check_attention_primitive<TestType, 64>(group_size, test::AttentionHeadCounts::values);
    test::check_attention_primitive<TestType, 128>(group_size, test::AttentionHeadCounts::values);
  }
  test::check_attention_primitive<TestType, 64>(test::attention_large_group, test::attention_large_group_heads);
  test::check_attention_primitive<TestType, 128>(test::attention_large_group, test::attention_large_group_heads);
}

TEST_CASE("cuda elastic attention matches the host executor: " ELASTIC_TEST_DTYPE_NAME) {
  for (int kv_heads : test::attention_kv_heads) {
    CAPTURE(kv_heads);
    test::check_attention_layer<TestType, 64>(kv_heads);
    test::check_attention_layer<TestType, 128>(kv_heads);
  }
}

TEST_CASE("cuda decode attention matches the host executor at GQA group sizes 1, 3, 4, 8: " ELASTIC_TEST_DTYPE_NAME) {
  for (int group_size : test::decode_group_sizes) {
    test::check_decode_group<TestType, 64>(group_size);
    test::check_decode_group<TestType, 128>(group_size);
  }
}

TEST_CASE("cuda decode attention replayed from a CUDA graph follows the growing sequences: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_decode_graph<TestType, 64>(3, false);
  test::check_decode_graph<TestType, 128>(4, true);
  test::check_decode_graph<TestType, 128>(1, false);
}

TEST_CASE("cuda attention rejects bad arguments before writing: " ELASTIC_TEST_DTYPE_NAME) {
  test::check_attention_errors<TestType>();
}
