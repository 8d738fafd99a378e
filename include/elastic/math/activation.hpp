// Per-element activations shared by the host executor and the CUDA kernels.
// Both evaluate in float32; callers round to the storage type once, at store.
#pragma once

#include <cmath>

#include "elastic/core/macros.hpp"

namespace elastic::math {

// silu(x) = x * sigmoid(x) = x / (1 + e^-x)
ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float silu(float x) { return x / (1.0f + expf(-x)); }

// Passes a dot product through unchanged (a plain linear map).
struct Identity {
  ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float operator()(float value) const { return value; }
};

// Llama's gated unit: silu(gate) * up.
struct SwiGLU {
  ELASTIC_HOST_DEVICE ELASTIC_FORCEINLINE float operator()(float gate, float up) const {
    return silu(gate) * up;
  }
};

}  // namespace elastic::math
