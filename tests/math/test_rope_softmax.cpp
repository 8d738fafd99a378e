// RoPE frequencies and rotations, and the online softmax: the shared maths of
// both executors against float64 formulas.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "support/attention_reference.hpp"

using namespace elastic;

TEST_CASE("inverse frequencies follow theta^(-2i/D) and Llama 3's three bands") {
  RopeConfig rope;
  rope.theta = 500000.0f;
  for (bool llama3 : {false, true}) {
    rope.llama3_scaling = llama3;
    rope.llama3 = {8.0f, 1.0f, 4.0f, 8192};
    for (int i = 0; i < 64; ++i) {
      const double expected = test::reference_inverse_frequency(i, 128, rope);
      CHECK(math::rope_inverse_frequency(i, 128, rope) == doctest::Approx(expected).epsilon(2e-6));
    }
  }
  // The bands: the highest frequency is kept, the lowest divided by the factor.
  CHECK(math::rope_inverse_frequency(0, 128, rope) == 1.0f);
  CHECK(math::rope_inverse_frequency(63, 128, rope) ==
        doctest::Approx(std::pow(500000.0, -126.0 / 128) / 8.0).epsilon(1e-5));
}

TEST_CASE("rotating a head matches the float64 rotation in both layouts") {
  std::mt19937 engine(3);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (RopeLayout layout : {RopeLayout::rotate_half, RopeLayout::interleaved}) {
    RopeConfig rope;
    rope.layout = layout;
    float frequencies[32];
    for (int i = 0; i < 32; ++i) frequencies[i] = math::rope_inverse_frequency(i, 64, rope);
    for (int position : {0, 1, 17, 4000}) {
      float head[64];
      double reference[64];
      for (int d = 0; d < 64; ++d) reference[d] = head[d] = uniform(engine);
      math::rotate_head(head, position, layout, frequencies);
      test::reference_rope(reference, 64, position, rope);
      for (int d = 0; d < 64; ++d) CHECK(head[d] == doctest::Approx(reference[d]).epsilon(1e-3).scale(1.0));
    }
  }
}

TEST_CASE("online softmax in blocks, merged in any grouping, equals the direct softmax") {
  std::mt19937 engine(5);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<float> scores(300), values(300);
  for (std::size_t i = 0; i < scores.size(); ++i) {
    scores[i] = normal(engine);
    values[i] = normal(engine);
  }
  double max = -INFINITY, sum = 0.0, weighted = 0.0;
  for (float s : scores) max = std::max(max, double(s));
  for (std::size_t i = 0; i < scores.size(); ++i) {
    sum += std::exp(scores[i] - max);
    weighted += std::exp(scores[i] - max) * values[i];
  }
  const double expected = weighted / sum;

  for (std::size_t block : {1u, 7u, 64u, 300u}) {
    math::SoftmaxState total;
    float total_value = 0.0f;
    for (std::size_t begin = 0; begin < scores.size(); begin += block) {
      math::SoftmaxState state;
      float value = 0.0f;
      for (std::size_t i = begin; i < std::min(begin + block, scores.size()); ++i) {
        float rescale, weight;
        math::softmax_push(state, scores[i], rescale, weight);
        value = value * rescale + weight * values[i];
      }
      float scale_total, scale_block;
      math::softmax_merge(total, state, scale_total, scale_block);
      total_value = total_value * scale_total + value * scale_block;
    }
    CHECK(total_value / total.sum == doctest::Approx(expected).epsilon(1e-5));
  }
  math::SoftmaxState empty_a, empty_b;
  float a, b;
  math::softmax_merge(empty_a, empty_b, a, b);
  CHECK(a == 0.0f);
  CHECK(b == 0.0f);
}

TEST_CASE("online softmax: masked (-inf) scores before the first finite one add nothing and no NaN") {
  math::SoftmaxState state;
  float value = 0.0f, rescale = 0.0f, weight = 0.0f;
  for (const float score : {-INFINITY, -INFINITY}) {
    math::softmax_push(state, score, rescale, weight);
    value = value * rescale + weight * 5.0f;
    CHECK(weight == 0.0f);
    CHECK(state.max == -INFINITY);
    CHECK(state.sum == 0.0f);
  }
  for (const auto& [score, v] : {std::pair{1.0f, 2.0f}, std::pair{-INFINITY, 7.0f}, std::pair{3.0f, 4.0f}}) {
    math::softmax_push(state, score, rescale, weight);
    value = value * rescale + weight * v;
  }
  const double e1 = std::exp(1.0 - 3.0), e3 = 1.0;
  CHECK(value / state.sum == doctest::Approx((e1 * 2.0 + e3 * 4.0) / (e1 + e3)).epsilon(1e-6));
  CHECK(std::isfinite(state.sum));
}
