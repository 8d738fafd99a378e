// What the C entry points of libelastic_torch_check share (the library
// benchmarks/gpu/large_shapes.py drives to check the CUDA executor at real
// model sizes against PyTorch on the same device tensors): exceptions become
// a status and a message elastic_last_error() returns, and the dtype code
// the Python side passes picks the element type.
#pragma once

#include <cstdint>
#include <exception>
#include <string>

#include "bench_shapes.hpp"
#include "elastic/elastic.cuh"

namespace elastic::torch_check {

// The message of the last failed call on this thread ("" after a success).
std::string& last_error();

// body(), or on_error with the exception's message kept for elastic_last_error().
template <class Body>
auto guarded(Body&& body, decltype(body()) on_error) noexcept {
  try {
    last_error().clear();
    return body();
  } catch (const std::exception& error) {
    last_error() = error.what();
    return on_error;
  }
}

// dtype: 0 bfloat16, 1 float16.
template <class Run>
auto with_dtype(int dtype, Run&& run) {
  require(dtype == 0 || dtype == 1, "dtype must be 0 (bfloat16) or 1 (float16), found ", dtype);
  return dtype == 0 ? run.template operator()<bfloat16_t>() : run.template operator()<half_t>();
}

// The width set the MLP checks run over: the benchmarks' (ELASTIC_BENCH_WIDTHS).
using CheckWidths = Widths<ELASTIC_BENCH_WIDTHS>;

// An MLP over torch's contiguous row-major device tensors.
template <ElementType T>
ElasticMLP<T, CheckWidths> make_mlp(std::int64_t hidden, std::int64_t intermediate, const void* gate, const void* up,
                                    const void* down) {
  return ElasticMLP<T, CheckWidths>({ConstMatrixView<T>(static_cast<const T*>(gate), intermediate, hidden),
                                     ConstMatrixView<T>(static_cast<const T*>(up), intermediate, hidden),
                                     ConstMatrixView<T>(static_cast<const T*>(down), hidden, intermediate)});
}

}  // namespace elastic::torch_check
