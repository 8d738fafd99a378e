// Portability macros shared by host-only and CUDA translation units. Functions
// marked ELASTIC_HOST_DEVICE are the per-element and per-lane maths that both
// executors run, so CPU tests exercise exactly the formulas the kernels use.
#pragma once

#if defined(__CUDACC__)
#define ELASTIC_HOST_DEVICE __host__ __device__
#define ELASTIC_DEVICE __device__
#else
#define ELASTIC_HOST_DEVICE
#define ELASTIC_DEVICE
#endif

#if defined(__CUDACC__) || defined(__GNUC__)
#define ELASTIC_FORCEINLINE __forceinline__
#endif
#if !defined(__CUDACC__)
#undef ELASTIC_FORCEINLINE
#if defined(__GNUC__)
#define ELASTIC_FORCEINLINE inline __attribute__((always_inline))
#else
#define ELASTIC_FORCEINLINE inline
#endif
#endif

// True while compiling device code (the nvcc device pass).
#if defined(__CUDA_ARCH__)
#define ELASTIC_DEVICE_PASS 1
#else
#define ELASTIC_DEVICE_PASS 0
#endif

// Asks the compiler to unroll the next loop: fully where the trip count is
// known in nvcc's device pass, up to 16 iterations under plain GCC; nothing in
// nvcc's host pass (whose front end does not know GCC's pragma).
#if defined(__CUDA_ARCH__) || (defined(__clang__) && !defined(__CUDACC__))
#define ELASTIC_UNROLL _Pragma("unroll")
#elif defined(__GNUC__) && !defined(__CUDACC__)
#define ELASTIC_UNROLL _Pragma("GCC unroll 16")
#else
#define ELASTIC_UNROLL
#endif
