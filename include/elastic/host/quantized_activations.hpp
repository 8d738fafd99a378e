// Activations quantised for the host's quantised row-dot kernel
// (simd/quant_row_dots_call.hpp), once per executor call and shared by
// every weight row: each token's row is cut into 32-element blocks, and a
// block x becomes int8 values a = round(x * 127 / max|x|) with the float32
// scale s = max|x| / 127, so x ~= s * a (llama.cpp's Q8_0 / Q8_1 activation
// blocks, with a float32 rather than float16 scale; for the K-quants this
// is finer than llama.cpp's 256-element Q8_K blocks). Each value is off by at
// most s / 2, a relative error of at most 1/254 of the block's largest
// magnitude. The values are kept widened to int16, the width the kernel
// multiplies at, so no weight row pays for widening them again.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "elastic/core/dtype.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/host/simd/quant_row_dots_call.hpp"
#include "elastic/host/thread_pool.hpp"

namespace elastic::host {

class QuantizedActivationRows {
 public:
  // Quantises `tokens` rows of x: row t is x's row source_rows[t], or t when
  // source_rows is null. x.cols() must be a multiple of 32.
  template <class T>
  void quantize(ThreadPool& pool, ConstMatrixView<T> x, index_t tokens, const int* source_rows) {
    constexpr int block = simd::activation_block;
    blocks_ = static_cast<int>(x.cols() / block);
    const auto block_count = static_cast<std::size_t>(tokens) * static_cast<std::size_t>(blocks_);
    values_.resize(block_count * block);
    scales_.resize(block_count);
    scaled_sums_.resize(block_count);
    pool.parallel_for(0, tokens, 4, [&](index_t first, index_t last) {
      for (index_t t = first; t < last; ++t) {
        const T* row = x.row(source_rows != nullptr ? source_rows[t] : t);
        for (int k = 0; k < blocks_; ++k) {
          const auto at = static_cast<std::size_t>(t) * static_cast<std::size_t>(blocks_) + static_cast<std::size_t>(k);
          quantize_block(row + static_cast<std::ptrdiff_t>(k) * block, values_.data() + at * block, scales_[at],
                         scaled_sums_[at]);
        }
      }
    });
  }

  // The rows from token `first` on, as the kernel reads them.
  simd::QuantizedActivations from_token(index_t first) const {
    const auto offset = static_cast<std::size_t>(first) * static_cast<std::size_t>(blocks_);
    return {values_.data() + offset * simd::activation_block, scales_.data() + offset,
            scaled_sums_.data() + offset, blocks_};
  }

 private:
  template <class T>
  static void quantize_block(const T* x, std::int16_t* values, float& scale, float& scaled_sum) {
    constexpr int block = simd::activation_block;
    float widened[block];
    float largest = 0.0f;
    for (int i = 0; i < block; ++i) {
      widened[i] = to_float(x[i]);
      largest = std::max(largest, std::fabs(widened[i]));
    }
    const float inverse = largest > 0.0f ? 127.0f / largest : 0.0f;
    int sum = 0;
    for (int i = 0; i < block; ++i) {
      // Rounds half away from zero; |widened[i] * inverse| <= 127.
      const float scaled = widened[i] * inverse;
      const auto value = static_cast<int>(scaled + std::copysign(0.5f, scaled));
      values[i] = static_cast<std::int16_t>(value);
      sum += value;
    }
    scale = largest / 127.0f;
    scaled_sum = scale * static_cast<float>(sum);
  }

  std::vector<std::int16_t> values_;
  std::vector<float> scales_;
  std::vector<float> scaled_sums_;
  int blocks_ = 0;
};

}  // namespace elastic::host
