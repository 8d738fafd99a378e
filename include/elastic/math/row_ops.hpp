// The per-lane loops of the row primitives the CUDA executor runs with one
// block per row: row copy (gather), row add (scatter-add), widening to
// float32, RMSNorm's sum of squares and scaling, ReLU, and the sums behind a
// residual contribution ratio. Lane l of `lanes` owns the 16-byte vectors l,
// l + lanes, ... of the row and, when the row length is not a whole number of
// vectors, the tail elements l, l + lanes, ... past the last whole vector;
// the lanes together cover every element once. The kernels pass their thread
// index and block size; host tests drive every lane from a loop and compare
// with the host executor. Arithmetic is the host executor's, element for
// element: float32, one rounding to the storage type per stored element.
#pragma once

#include "elastic/core/dtype.hpp"
#include "elastic/core/macros.hpp"
#include "elastic/math/row_dot.hpp"

namespace elastic::math {

// Whole vectors a lane loads before it uses any of them, so its loads are in
// flight together.
inline constexpr int row_unroll = 4;

// Visits what lane `lane` of `lanes` owns of a row of `cols` elements: its
// whole vectors in batches of row_unroll — load(v) for every vector v of a
// batch, then use(v, loaded) for each — and then its tail elements e through
// tail(e).
template <class T, class Load, class Use, class Tail>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE void for_lane_vectors(int cols, int lane, int lanes, Load&& load, Use&& use,
                                                             Tail&& tail) {
  constexpr int kWidth = vector_width<T>;
  const int vectors = cols / kWidth;
  using Loaded = decltype(load(0));
  for (int base = lane; base < vectors; base += lanes * row_unroll) {
    Loaded loaded[row_unroll] = {};
    ELASTIC_UNROLL
    for (int u = 0; u < row_unroll; ++u)
      if (base + u * lanes < vectors) loaded[u] = load(base + u * lanes);
    ELASTIC_UNROLL
    for (int u = 0; u < row_unroll; ++u)
      if (base + u * lanes < vectors) use(base + u * lanes, loaded[u]);
  }
  for (int e = vectors * kWidth + lane; e < cols; e += lanes) tail(e);
}

template <class T>
struct VectorPair {
  Vector16<T> first;
  Vector16<T> second;
};

// dst = src. The two rows must not overlap.
template <class T>
ELASTIC_HOST_DEVICE inline void copy_row_lane(T* dst, const T* src, int cols, int lane, int lanes) {
  constexpr int kWidth = vector_width<T>;
  for_lane_vectors<T>(
      cols, lane, lanes, [&](int v) { return load_vector(src + v * kWidth); },
      [&](int v, const Vector16<T>& vector) { store_vector(dst + v * kWidth, vector); },
      [&](int e) { dst[e] = src[e]; });
}

// dst = src widened to float32 (exact for every T). The rows must not
// overlap; dst starts on a 16-byte boundary like src.
template <class T>
ELASTIC_HOST_DEVICE inline void widen_row_lane(float* dst, const T* src, int cols, int lane, int lanes) {
  constexpr int kWidth = vector_width<T>;
  constexpr int kFloats = vector_width<float>;
  for_lane_vectors<T>(
      cols, lane, lanes, [&](int v) { return load_vector(src + v * kWidth); },
      [&](int v, const Vector16<T>& vector) {
        ELASTIC_UNROLL
        for (int part = 0; part < kWidth / kFloats; ++part) {
          Vector16<float> wide;
          ELASTIC_UNROLL
          for (int e = 0; e < kFloats; ++e) wide.elements[e] = to_float(vector.elements[part * kFloats + e]);
          store_vector(dst + v * kWidth + part * kFloats, wide);
        }
      },
      [&](int e) { dst[e] = to_float(src[e]); });
}

// dst = dst + src, added in float32 and rounded once to T. The rows must not
// overlap.
template <class T>
ELASTIC_HOST_DEVICE inline void add_row_lane(T* dst, const T* src, int cols, int lane, int lanes) {
  constexpr int kWidth = vector_width<T>;
  for_lane_vectors<T>(
      cols, lane, lanes,
      [&](int v) { return VectorPair<T>{load_mutable_vector(dst + v * kWidth), load_vector(src + v * kWidth)}; },
      [&](int v, const VectorPair<T>& pair) {
        Vector16<T> sum;
        ELASTIC_UNROLL
        for (int e = 0; e < kWidth; ++e)
          sum.elements[e] = from_float<T>(to_float(pair.first.elements[e]) + to_float(pair.second.elements[e]));
        store_vector(dst + v * kWidth, sum);
      },
      [&](int e) { dst[e] = from_float<T>(to_float(dst[e]) + to_float(src[e])); });
}

// The lane's share of sum(x^2) over a row. x is read with plain loads: the
// RMSNorm kernel may overwrite it (y = x).
template <class T>
ELASTIC_HOST_DEVICE inline float sum_of_squares_lane(const T* x, int cols, int lane, int lanes) {
  constexpr int kWidth = vector_width<T>;
  float sum = 0.0f;
  for_lane_vectors<T>(
      cols, lane, lanes, [&](int v) { return load_mutable_vector(x + v * kWidth); },
      [&](int, const Vector16<T>& vector) {
        ELASTIC_UNROLL
        for (int e = 0; e < kWidth; ++e) sum += to_float(vector.elements[e]) * to_float(vector.elements[e]);
      },
      [&](int e) { sum += to_float(x[e]) * to_float(x[e]); });
  return sum;
}

// y = x * scale * weight (RMSNorm once the row's scale is known), rounded
// once to T. y may be x itself.
template <class T>
ELASTIC_HOST_DEVICE inline void scale_row_lane(T* y, const T* x, const T* weight, float scale, int cols, int lane,
                                               int lanes) {
  constexpr int kWidth = vector_width<T>;
  for_lane_vectors<T>(
      cols, lane, lanes,
      [&](int v) { return VectorPair<T>{load_mutable_vector(x + v * kWidth), load_vector(weight + v * kWidth)}; },
      [&](int v, const VectorPair<T>& pair) {
        Vector16<T> out;
        ELASTIC_UNROLL
        for (int e = 0; e < kWidth; ++e)
          out.elements[e] = from_float<T>(to_float(pair.first.elements[e]) * scale * to_float(pair.second.elements[e]));
        store_vector(y + v * kWidth, out);
      },
      [&](int e) { y[e] = from_float<T>(to_float(x[e]) * scale * to_float(weight[e])); });
}

// The host executor's ReLU on one element: negative values become zero;
// zeros of either sign and NaN stay as they are.
template <class T>
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE T relu_element(T value) {
  return to_float(value) < 0.0f ? from_float<T>(0.0f) : value;
}

// x = max(x, 0) over a row, in place.
template <class T>
ELASTIC_HOST_DEVICE inline void relu_row_lane(T* x, int cols, int lane, int lanes) {
  constexpr int kWidth = vector_width<T>;
  for_lane_vectors<T>(
      cols, lane, lanes, [&](int v) { return load_mutable_vector(x + v * kWidth); },
      [&](int v, Vector16<T> vector) {
        ELASTIC_UNROLL
        for (int e = 0; e < kWidth; ++e) vector.elements[e] = relu_element(vector.elements[e]);
        store_vector(x + v * kWidth, vector);
      },
      [&](int e) { x[e] = relu_element(x[e]); });
}

// Sums of f^2 and (x + f)^2 over (a lane's share of) a row, f the block's
// output and x the residual; math::contribution_ratio turns the row's totals
// into ||f|| / ||x + f||.
struct ContributionSums {
  float block = 0.0f;
  float output = 0.0f;

  ELASTIC_HOST_DEVICE ContributionSums operator+(const ContributionSums& other) const {
    return {block + other.block, output + other.output};
  }
};

template <class T>
ELASTIC_HOST_DEVICE inline ContributionSums contribution_sums_lane(const T* block, const T* residual, int cols,
                                                                   int lane, int lanes) {
  constexpr int kWidth = vector_width<T>;
  ContributionSums sums;
  const auto add = [&](float f, float x) {
    const float out = x + f;
    sums.block += f * f;
    sums.output += out * out;
  };
  for_lane_vectors<T>(
      cols, lane, lanes,
      [&](int v) { return VectorPair<T>{load_vector(block + v * kWidth), load_vector(residual + v * kWidth)}; },
      [&](int, const VectorPair<T>& pair) {
        ELASTIC_UNROLL
        for (int e = 0; e < kWidth; ++e) add(to_float(pair.first.elements[e]), to_float(pair.second.elements[e]));
      },
      [&](int e) { add(to_float(block[e]), to_float(residual[e])); });
  return sums;
}

}  // namespace elastic::math
