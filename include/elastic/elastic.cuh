// Umbrella header for CUDA translation units: the host part plus the CUDA
// executor, its kernels and cuBLASLt plumbing. Compile with nvcc (C++20) and
// link elastic::cuda (cudart, cuBLASLt).
#pragma once

#include "elastic/elastic.hpp"

#include "elastic/cuda/error.cuh"
#include "elastic/cuda/executor.cuh"
#include "elastic/cuda/gemm.cuh"
#include "elastic/cuda/row_dot_kernel.cuh"
#include "elastic/cuda/swiglu_kernel.cuh"
#include "elastic/cuda/device_buffer.cuh"
