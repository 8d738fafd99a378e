// Helpers the examples and the benchmarks share: aligned host buffers, random
// data that is never zero, the single-allocation layout of an MLP's weights,
// the bytes and FLOPs an MLP forward costs, and a median. The random values
// come from a counter-based hash, so the host loop here and the device kernel
// in cuda_support.cuh produce the same values for the same seed and index.
// Plain C++20; CUDA translation units include cuda_support.cuh instead.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <vector>

#include "elastic/elastic.hpp"

namespace elastic::support {

// splitmix64's finaliser: a well-mixed 64-bit hash of a counter.
ELASTIC_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Element `index` of the random stream `seed`: magnitude uniform in
// [scale/16, scale] with a random sign, so no element is zero in any storage
// type (scale/16 stays a normal float16 for every scale used here).
ELASTIC_HOST_DEVICE inline float random_value(std::uint64_t seed, std::uint64_t index, float scale) {
  const std::uint64_t bits = mix64(mix64(seed) ^ index);
  const float unit = static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);  // [0, 1)
  const float magnitude = scale * (0.0625f + 0.9375f * unit);
  return (bits & 1u) != 0 ? -magnitude : magnitude;
}

template <ElementType T>
void fill_random(T* data, std::size_t count, std::uint64_t seed, float scale) {
  for (std::size_t i = 0; i < count; ++i) data[i] = from_float<T>(random_value(seed, i, scale));
}

// Host memory for count elements of T, aligned for the library's 16-byte
// rows (to workspace_alignment, as host::WorkspaceBuffer is). Elements are
// left uninitialised.
template <class T>
class HostBuffer {
 public:
  HostBuffer() = default;
  explicit HostBuffer(std::size_t count)
      : data_(count == 0 ? nullptr
                         : static_cast<T*>(
                               ::operator new(count * sizeof(T), std::align_val_t{workspace_alignment}))),
        count_(count) {}

  T* data() const { return data_.get(); }
  std::size_t size() const { return count_; }

 private:
  struct Free {
    void operator()(T* pointer) const { ::operator delete(pointer, std::align_val_t{workspace_alignment}); }
  };
  std::unique_ptr<T, Free> data_;
  std::size_t count_ = 0;
};

// An MLP's full-width weights in one allocation: gate [I x H], then up
// [I x H], then down [H x I] (H = hidden, I = intermediate).
constexpr std::size_t mlp_weight_count(index_t hidden, index_t intermediate) {
  return 3 * static_cast<std::size_t>(hidden) * static_cast<std::size_t>(intermediate);
}

template <ElementType T>
MLPWeights<T> mlp_weights_at(const T* base, index_t hidden, index_t intermediate) {
  const index_t block = hidden * intermediate;
  return {ConstMatrixView<T>(base, intermediate, hidden),
          ConstMatrixView<T>(base + block, intermediate, hidden),
          ConstMatrixView<T>(base + 2 * block, hidden, intermediate)};
}

// Fills one MLP's weights laid out as above, scaled like a trained layer so
// activations stay O(1) in every storage type: gate and up in 1/sqrt(H), down
// in 1/sqrt(I). fill(T* data, std::size_t count, std::uint64_t seed, float scale)
// is fill_random or its device counterpart.
template <ElementType T, class Fill>
void fill_mlp_weights(T* base, index_t hidden, index_t intermediate, std::uint64_t seed, Fill&& fill) {
  const auto block = static_cast<std::size_t>(hidden * intermediate);
  const float in_scale = 1.0f / std::sqrt(static_cast<float>(hidden));
  const float out_scale = 1.0f / std::sqrt(static_cast<float>(intermediate));
  fill(base, block, seed, in_scale);
  fill(base + block, block, seed + 1, in_scale);
  fill(base + 2 * block, block, seed + 2, out_scale);
}

// What a forward at width k over `tokens` tokens must move and compute, the
// basis of every bytes/s and FLOP/s figure we print: the weights it reads
// (gate and up: first k rows; down: first k columns) plus reading x and
// writing y. The intermediate activation is not counted (a fully fused MLP
// need not move it).
constexpr double mlp_bytes(index_t hidden, index_t width, index_t tokens, std::size_t element_bytes) {
  return static_cast<double>(element_bytes) *
         (3.0 * static_cast<double>(hidden) * static_cast<double>(width) +
          2.0 * static_cast<double>(tokens) * static_cast<double>(hidden));
}

// Three GEMMs of [tokens x hidden] by [hidden x width] (or its transpose).
constexpr double mlp_flops(index_t hidden, index_t width, index_t tokens) {
  return 2.0 * static_cast<double>(tokens) * 3.0 * static_cast<double>(hidden) * static_cast<double>(width);
}

// The median of a non-empty sample (the mean of the middle two for even sizes).
inline double median(std::vector<double> values) {
  if (values.empty()) throw std::invalid_argument("median of an empty sample");
  const auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), middle, values.end());
  if (values.size() % 2 == 1) return *middle;
  return (*middle + *std::max_element(values.begin(), middle)) / 2.0;
}

}  // namespace elastic::support
