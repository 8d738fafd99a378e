// A float64 reference for elastic attention: projections, RoPE with inverse
// frequencies derived independently in double precision (Llama 3 scaling
// included), naive causal softmax attention over a whole sequence, and the
// output projection. Also a random layer fixture shared by the host and CUDA
// attention tests.
#pragma once

#include <cmath>
#include <numbers>
#include <vector>

#include "support/test_support.hpp"

namespace elastic::test {

inline double reference_inverse_frequency(int pair, int head_dim, const RopeConfig& rope) {
  const double frequency = std::pow(static_cast<double>(rope.theta), -2.0 * pair / head_dim);
  if (!rope.llama3_scaling) return frequency;
  const auto& s = rope.llama3;
  const double wavelength = 2.0 * std::numbers::pi / frequency;
  const double low = s.original_max_positions / static_cast<double>(s.low_freq_factor);
  const double high = s.original_max_positions / static_cast<double>(s.high_freq_factor);
  if (wavelength < high) return frequency;
  if (wavelength > low) return frequency / s.factor;
  const double smooth = (s.original_max_positions / wavelength - s.low_freq_factor) /
                        (static_cast<double>(s.high_freq_factor) - s.low_freq_factor);
  return (1.0 - smooth) * frequency / s.factor + smooth * frequency;
}

// Rotates one head of a float64 row in place.
inline void reference_rope(double* head, int head_dim, int position, const RopeConfig& rope) {
  for (int pair = 0; pair < head_dim / 2; ++pair) {
    const int a = rope.layout == RopeLayout::rotate_half ? pair : 2 * pair;
    const int b = rope.layout == RopeLayout::rotate_half ? pair + head_dim / 2 : 2 * pair + 1;
    const double angle = position * reference_inverse_frequency(pair, head_dim, rope);
    const double x0 = head[a], x1 = head[b];
    head[a] = x0 * std::cos(angle) - x1 * std::sin(angle);
    head[b] = x1 * std::cos(angle) + x0 * std::sin(angle);
  }
}

// Random attention weights for `heads` query heads, `kv_heads` KV heads.
template <class T>
struct RandomAttention {
  RandomAttention(index_t hidden, int heads_, int kv_heads_, int head_dim_, std::uint64_t seed)
      : heads(heads_), kv_heads(kv_heads_), head_dim(head_dim_),
        q(random_matrix<T>(index_t{heads_} * head_dim_, hidden, seed, 1.0f / std::sqrt(float(hidden)))),
        k(random_matrix<T>(index_t{kv_heads_} * head_dim_, hidden, seed + 1, 1.0f / std::sqrt(float(hidden)))),
        v(random_matrix<T>(index_t{kv_heads_} * head_dim_, hidden, seed + 2, 1.0f / std::sqrt(float(hidden)))),
        o(random_matrix<T>(hidden, index_t{heads_} * head_dim_, seed + 3,
                           1.0f / std::sqrt(float(heads_ * head_dim_)))) {}

  AttentionWeights<T> weights() const { return {q.view(), k.view(), v.view(), o.view()}; }

  int heads, kv_heads, head_dim;
  HostMatrix<T> q, k, v, o;
};

// float64 attention of a whole sequence over its first `heads` query heads;
// row t has RoPE position positions[t] (default: t) and attends to rows
// 0..t. Returns [n x hidden].
template <class T>
std::vector<double> reference_attention(const HostMatrix<T>& x, const RandomAttention<T>& layer, int heads,
                                        const RopeConfig& rope, double scale, const std::vector<int>& positions = {}) {
  const index_t n = x.rows;
  const index_t hidden = x.cols;
  const int d = layer.head_dim;
  const int group = layer.heads / layer.kv_heads;
  const int kv_heads = (heads - 1) / group + 1;
  std::vector<double> q = reference_linear(x, layer.q, index_t{heads} * d, hidden);
  std::vector<double> k = reference_linear(x, layer.k, index_t{kv_heads} * d, hidden);
  const std::vector<double> v = reference_linear(x, layer.v, index_t{kv_heads} * d, hidden);
  for (index_t t = 0; t < n; ++t) {
    const int position = positions.empty() ? static_cast<int>(t) : positions[static_cast<std::size_t>(t)];
    for (int h = 0; h < heads; ++h) reference_rope(&q[(t * heads + h) * d], d, position, rope);
    for (int g = 0; g < kv_heads; ++g) reference_rope(&k[(t * kv_heads + g) * d], d, position, rope);
  }
  std::vector<double> attended(static_cast<std::size_t>(n * heads * d), 0.0);
  std::vector<double> scores(static_cast<std::size_t>(n));
  for (index_t t = 0; t < n; ++t)
    for (int h = 0; h < heads; ++h) {
      const int g = h / group;
      double max = -INFINITY;
      for (index_t p = 0; p <= t; ++p) {
        double dot = 0.0;
        for (int i = 0; i < d; ++i) dot += q[(t * heads + h) * d + i] * k[(p * kv_heads + g) * d + i];
        scores[p] = dot * scale;
        max = std::max(max, scores[p]);
      }
      double sum = 0.0;
      for (index_t p = 0; p <= t; ++p) sum += (scores[p] = std::exp(scores[p] - max));
      for (index_t p = 0; p <= t; ++p)
        for (int i = 0; i < d; ++i)
          attended[(t * heads + h) * d + i] += scores[p] / sum * v[(p * kv_heads + g) * d + i];
    }
  std::vector<double> y(static_cast<std::size_t>(n * hidden), 0.0);
  for (index_t t = 0; t < n; ++t)
    for (index_t o = 0; o < hidden; ++o) {
      double sum = 0.0;
      for (index_t i = 0; i < index_t{heads} * d; ++i) sum += attended[t * heads * d + i] * layer.o.at(o, i);
      y[t * hidden + o] = sum;
    }
  return y;
}

// Relative-error budget for attention outputs against float64: q, k, v, the
// rotated cached keys and the attended heads are each rounded to T.
template <class T>
constexpr double attention_tolerance() {
  if constexpr (std::is_same_v<T, float>) return 1e-5;
  else if constexpr (std::is_same_v<T, half_t>) return 4e-3;
  else return 2.5e-2;
}

}  // namespace elastic::test
