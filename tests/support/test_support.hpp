// Shared test helpers: the width set the tests walk, the element types, random
// inputs (never zeros), aligned host buffers, float64 references and the
// relative-error measure with per-dtype tolerances.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <vector>

#include "elastic/elastic.hpp"
#include "support/test_config.hpp"

namespace elastic::test {

// The MLP widths every test walks (CMake: ELASTIC_TEST_WIDTHS).
using TestWidths = Widths<ELASTIC_TEST_WIDTHS>;

// Token counts the issue asks for: one, a few, a full decode bucket, prefill.
inline constexpr int token_counts[] = {1, 3, 16, 67};

template <class T, std::size_t Alignment = 64>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, Alignment>&) {}  // NOLINT
  template <class U>
  struct rebind {
    using other = AlignedAllocator<U, Alignment>;
  };
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{Alignment}));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t{Alignment}); }
  bool operator==(const AlignedAllocator&) const = default;
};

// A dense row-major host matrix that owns its (64-byte aligned) elements.
template <class T>
struct HostMatrix {
  HostMatrix(index_t rows_, index_t cols_) : rows(rows_), cols(cols_), values(rows_ * cols_) {}
  MatrixView<T> view() { return {values.data(), rows, cols}; }
  ConstMatrixView<T> view() const { return {values.data(), rows, cols}; }
  double at(index_t r, index_t c) const { return to_float(values[r * cols + c]); }

  index_t rows;
  index_t cols;
  std::vector<T, AlignedAllocator<T>> values;
};

// Uniform values in [-scale, scale] rounded to T, with no exact zeros.
template <class T>
HostMatrix<T> random_matrix(index_t rows, index_t cols, std::uint64_t seed, float scale = 1.0f) {
  HostMatrix<T> matrix(rows, cols);
  std::mt19937_64 engine(seed);
  std::uniform_real_distribution<float> uniform(-scale, scale);
  for (auto& value : matrix.values) {
    float drawn = uniform(engine);
    if (drawn == 0.0f) drawn = scale * 0.5f;
    value = from_float<T>(drawn);
  }
  return matrix;
}

// `count` token ids drawn uniformly from [0, vocab).
inline std::vector<int> random_tokens(int count, int vocab, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::vector<int> tokens(static_cast<std::size_t>(count));
  for (int& token : tokens) token = static_cast<int>(engine() % static_cast<std::uint64_t>(vocab));
  return tokens;
}

// A value that marks "not written": NaN in every element type.
template <class T>
T poison() {
  return from_float<T>(std::numeric_limits<float>::quiet_NaN());
}

template <class T>
void fill_poison(HostMatrix<T>& matrix) {
  for (auto& value : matrix.values) value = poison<T>();
}

template <class T>
HostMatrix<T> poisoned_matrix(index_t rows, index_t cols) {
  HostMatrix<T> matrix(rows, cols);
  fill_poison(matrix);
  return matrix;
}

// True when every element still holds the poison bits.
template <class T>
bool all_poison(const HostMatrix<T>& matrix) {
  for (const T& value : matrix.values)
    if (!std::isnan(to_float(value))) return false;
  return true;
}

// True when two element sequences hold exactly the same bits.
template <class A, class B>
bool bitwise_equal(const A& a, const B& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0;
}

// ||out - ref|| / ||ref||; infinity when any output is not finite.
template <class T>
double relative_error(const HostMatrix<T>& out, const std::vector<double>& reference) {
  double diff = 0.0;
  double norm = 0.0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    const double value = to_float(out.values[i]);
    if (!std::isfinite(value)) return std::numeric_limits<double>::infinity();
    diff += (value - reference[i]) * (value - reference[i]);
    norm += reference[i] * reference[i];
  }
  return std::sqrt(diff / norm);
}

// Relative-error budget against a float64 reference: storage rounding of the
// output and of the intermediate activation, float32 accumulation.
template <class T>
constexpr double tolerance() {
  if constexpr (std::is_same_v<T, float>) return 2e-6;
  else if constexpr (std::is_same_v<T, half_t>) return 2e-3;
  else return 1.2e-2;
}

// float64 y = x . w[:out, :in]^T over the leading block of w.
template <class T>
std::vector<double> reference_linear(const HostMatrix<T>& x, const HostMatrix<T>& w, index_t out, index_t in) {
  std::vector<double> y(static_cast<std::size_t>(x.rows * out));
  for (index_t t = 0; t < x.rows; ++t)
    for (index_t o = 0; o < out; ++o) {
      double sum = 0.0;
      for (index_t i = 0; i < in; ++i) sum += x.at(t, i) * w.at(o, i);
      y[t * out + o] = sum;
    }
  return y;
}

inline double reference_silu(double x) { return x / (1.0 + std::exp(-x)); }

// float64 SwiGLU MLP over the first `width` neurons.
template <class T>
std::vector<double> reference_mlp(const HostMatrix<T>& x, const HostMatrix<T>& gate, const HostMatrix<T>& up,
                                  const HostMatrix<T>& down, index_t width) {
  const index_t hidden = x.cols;
  const std::vector<double> g = reference_linear(x, gate, width, hidden);
  const std::vector<double> u = reference_linear(x, up, width, hidden);
  std::vector<double> y(static_cast<std::size_t>(x.rows * hidden));
  for (index_t t = 0; t < x.rows; ++t)
    for (index_t o = 0; o < hidden; ++o) {
      double sum = 0.0;
      for (index_t j = 0; j < width; ++j)
        sum += reference_silu(g[t * width + j]) * u[t * width + j] * down.at(o, j);
      y[t * hidden + o] = sum;
    }
  return y;
}

// A Llama-shaped MLP with random weights scaled like a trained layer.
template <class T>
struct RandomMLP {
  RandomMLP(index_t hidden, index_t intermediate, std::uint64_t seed)
      : gate(random_matrix<T>(intermediate, hidden, seed, 1.0f / std::sqrt(float(hidden)))),
        up(random_matrix<T>(intermediate, hidden, seed + 1, 1.0f / std::sqrt(float(hidden)))),
        down(random_matrix<T>(hidden, intermediate, seed + 2, 1.0f / std::sqrt(float(intermediate)))) {}

  MLPWeights<T> weights() const { return {gate.view(), up.view(), down.view()}; }

  HostMatrix<T> gate, up, down;
};

}  // namespace elastic::test
