// Compiles every host Highway kernel (host_kernels-inl.hpp) once per
// instruction set Highway targets on this architecture, in the translation
// unit's single pass of hwy/foreach_target.h; row_dots.hpp and
// quant_row_dots.hpp export and dispatch them. A CUDA translation unit
// (nvcc cannot build Highway's dispatch tables) compiles the baseline
// instruction set only.
#pragma once

#if !defined(__CUDACC__)
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "elastic/host/simd/host_kernels-inl.hpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#endif

#include <hwy/highway.h>

#include "elastic/host/simd/host_kernels-inl.hpp"
