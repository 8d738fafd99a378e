// Umbrella header for CUDA translation units: the host part plus the CUDA
// executor, its kernels (MLP, attention and routing) and cuBLASLt plumbing.
// Compile with nvcc (C++20) and link elastic::cuda (cudart, cuBLASLt).
#pragma once

#include "elastic/elastic.hpp"

#include "elastic/cuda/attention_decode_kernel.cuh"
#include "elastic/cuda/attention_metadata.cuh"
#include "elastic/cuda/attention_prefill_kernel.cuh"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/executor.cuh"
#include "elastic/cuda/gemm.cuh"
#include "elastic/cuda/kv_append_kernel.cuh"
#include "elastic/cuda/route_kernels.cuh"
#include "elastic/cuda/row_dot_kernel.cuh"
#include "elastic/cuda/row_kernels.cuh"
#include "elastic/cuda/swiglu_kernel.cuh"
#include "elastic/cuda/device_buffer.cuh"
#include "elastic/cuda/stream.cuh"
