// Widening the LM head's output to the float32 logits callers read. The
// layers compute in the storage type T; for T = float the LM head writes the
// caller's logits directly and this is not needed. For 16-bit T the values
// are widened here: by the executor's own `convert` primitive when it has
// one (device executors), else, on an executor of host memory, by a loop.
#pragma once


#include "elastic/core/checks.hpp"
#include "elastic/core/dtype.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/tensor.hpp"

namespace elastic::model {

template <class E, ElementType T>
void widen_logits(E& executor, MatrixView<float> logits, ConstMatrixView<T> values) {
  elastic::detail::check_shape(logits, values.rows(), values.cols(), "widen_logits", "logits");
  if constexpr (requires { executor.convert(logits, values); }) {
    executor.convert(logits, values);
  } else {
    static_assert(E::memory_space == MemorySpace::host,
                  "float32 logits from a 16-bit model on a device executor need the executor primitive "
                  "convert(MatrixView<float>, ConstMatrixView<T>)");
    for (index_t r = 0; r < values.rows(); ++r)
      for (index_t c = 0; c < values.cols(); ++c) logits(r, c) = to_float(values(r, c));
  }
}

}  // namespace elastic::model
