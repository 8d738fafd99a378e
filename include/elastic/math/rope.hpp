// Rotary position embedding (RoPE) maths shared by both executors.
//
// A head of D dimensions is rotated as D/2 pairs; pair i turns by the angle
// position * inv_freq[i]. Two weight layouts place the pairs differently:
// rotate-half (Hugging Face checkpoints) pairs dimension i with i + D/2,
// interleaved (GGUF / Meta checkpoints) pairs 2i with 2i + 1. The inverse
// frequencies are theta^(-2i/D), optionally rescaled by Llama 3's rule:
// wavelengths longer than original_context / low_freq_factor are divided by
// `factor`, those shorter than original_context / high_freq_factor are kept,
// and the band between is interpolated smoothly.
#pragma once

#include <cmath>

#include "elastic/core/macros.hpp"

namespace elastic {

enum class RopeLayout { rotate_half, interleaved };

struct Llama3RopeScaling {
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_positions = 8192;
};

struct RopeConfig {
  float theta = 10000.0f;
  RopeLayout layout = RopeLayout::rotate_half;
  bool llama3_scaling = false;
  Llama3RopeScaling llama3{};
  int max_positions = 8192;  // positions must lie in [0, max_positions)
};

}  // namespace elastic

namespace elastic::math {

// inv_freq[i] for pair i of a head of head_dim dimensions, in float32 as the
// reference implementations compute it.
inline float rope_inverse_frequency(int pair, int head_dim, const RopeConfig& config) {
  const float exponent = static_cast<float>(2 * pair) / static_cast<float>(head_dim);
  const float frequency = 1.0f / std::pow(config.theta, exponent);
  if (!config.llama3_scaling) return frequency;
  const Llama3RopeScaling& s = config.llama3;
  const float original = static_cast<float>(s.original_max_positions);
  const float low_freq_wavelength = original / s.low_freq_factor;
  const float high_freq_wavelength = original / s.high_freq_factor;
  const float wavelength = 2.0f * static_cast<float>(M_PI) / frequency;
  if (wavelength < high_freq_wavelength) return frequency;
  if (wavelength > low_freq_wavelength) return frequency / s.factor;
  const float smooth = (original / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  return (1.0f - smooth) * frequency / s.factor + smooth * frequency;
}

// The two dimensions of pair i in a head of HeadDim dimensions.
template <int HeadDim>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void rope_pair_dims(RopeLayout layout, int pair, int& first, int& second) {
  if (layout == RopeLayout::rotate_half) {
    first = pair;
    second = pair + HeadDim / 2;
  } else {
    first = 2 * pair;
    second = 2 * pair + 1;
  }
}

// The cosine and sine of pair i's angle at `position`: position * inv_freq[i].
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void rope_cos_sin(int position, float inverse_frequency, float& cosine,
                                                         float& sine) {
  const float angle = static_cast<float>(position) * inverse_frequency;
#if ELASTIC_DEVICE_PASS
  sincosf(angle, &sine, &cosine);
#else
  sine = std::sin(angle);
  cosine = std::cos(angle);
#endif
}

// Rotates (x0, x1) by the angle whose cosine and sine are given.
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void rotate_pair_by(float& x0, float& x1, float cosine, float sine) {
  const float r0 = x0 * cosine - x1 * sine;
  const float r1 = x1 * cosine + x0 * sine;
  x0 = r0;
  x1 = r1;
}

// Rotates (x0, x1) by angle position * inverse_frequency.
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void rotate_pair(float& x0, float& x1, int position, float inverse_frequency) {
  float cosine, sine;
  rope_cos_sin(position, inverse_frequency, cosine, sine);
  rotate_pair_by(x0, x1, cosine, sine);
}

}  // namespace elastic::math

namespace elastic::math {

// Rotates one head (HeadDim float32 values) in place for `position`.
template <int HeadDim>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void rotate_head(float (&head)[HeadDim], int position, RopeLayout layout,
                                                        const float* inverse_frequencies) {
  ELASTIC_UNROLL
  for (int pair = 0; pair < HeadDim / 2; ++pair) {
    int first, second;
    rope_pair_dims<HeadDim>(layout, pair, first, second);
    rotate_pair(head[first], head[second], position, inverse_frequencies[pair]);
  }
}

}  // namespace elastic::math
