// The CUDA executor: the executor primitives on device memory, enqueued on an
// explicit stream.
//
// Decode (1-16 tokens) runs our row-dot kernels, specialised on the token
// bucket and, for linear maps, on the compile-time reduction width; SwiGLU is
// fused into the gate/up pass. Prefill (more tokens) runs cuBLASLt on the
// strided width slices and the in-place SwiGLU epilogue. Scratch memory comes
// from the caller's workspace (device memory, sized by the *_workspace_bytes
// queries); the forward path never allocates device memory and never
// synchronises, so it can be captured in a CUDA graph once each GEMM shape
// has run once (the first call of a shape builds its cuBLASLt plan on the
// host). One executor serves one thread.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <type_traits>

#include "elastic/core/checks.hpp"
#include "elastic/core/executor.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/cuda/gemm.cuh"
#include "elastic/cuda/row_dot_kernel.cuh"
#include "elastic/cuda/swiglu_kernel.cuh"
#include "elastic/math/activation.hpp"

namespace elastic::cuda {

class Executor {
 public:
  static constexpr MemorySpace memory_space = MemorySpace::device;

  // Workspace cuBLASLt may use for one prefill GEMM (NVIDIA's recommendation
  // for Hopper).
  static constexpr std::size_t gemm_workspace_bytes = std::size_t{32} << 20;

  // Uses `handle` if given (the caller keeps ownership), else creates one.
  explicit Executor(cudaStream_t stream = nullptr, cublasLtHandle_t handle = nullptr)
      : stream_(stream), handle_(handle != nullptr ? handle : create_handle(), HandleDeleter{handle == nullptr}),
        gemm_(std::make_unique<GemmPlanCache>(handle_.get())) {}

  cudaStream_t stream() const { return stream_; }
  void set_stream(cudaStream_t stream) { stream_ = stream; }
  cublasLtHandle_t cublaslt() const { return handle_.get(); }

  static bool is_decode(index_t tokens) { return tokens <= decode_max_tokens; }

  template <ElementType T>
  std::size_t linear_workspace_bytes(index_t tokens, index_t /*out*/, index_t /*in*/) const {
    return is_decode(tokens) ? 0 : gemm_workspace_bytes;
  }

  template <ElementType T>
  std::size_t swiglu_workspace_bytes(index_t tokens, index_t out, index_t /*in*/) const {
    if (is_decode(tokens)) return 0;
    WorkspaceCursor cursor;
    carve_swiglu<T>(cursor, tokens, out);
    return cursor.bytes_used();
  }

  template <ElementType T, int StaticLength = dynamic_extent>
  void linear(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x,
              std::type_identity_t<ConstMatrixView<T>> w, Workspace workspace = {},
              Extent<StaticLength> = {}) {
    detail::check_linear(y, x, w, StaticLength);
    const index_t tokens = x.rows();
    check_workspace(workspace, linear_workspace_bytes<T>(tokens, w.rows(), w.cols()), "linear");
    if (y.empty()) return;
    if (is_decode(tokens)) {
      launch_row_dots<T, 1, StaticLength>(row_dot_params<T, 1>(y, x, {w}), math::Identity{}, stream_);
    } else {
      gemm_->run(y, x, w, workspace, stream_);
    }
  }

  template <ElementType T>
  void swiglu(MatrixView<T> h, std::type_identity_t<ConstMatrixView<T>> x,
              std::type_identity_t<ConstMatrixView<T>> gate, std::type_identity_t<ConstMatrixView<T>> up,
              Workspace workspace = {}) {
    detail::check_swiglu(h, x, gate, up);
    const index_t tokens = x.rows();
    check_workspace(workspace, swiglu_workspace_bytes<T>(tokens, gate.rows(), gate.cols()), "swiglu");
    if (h.empty()) return;
    if (is_decode(tokens)) {
      launch_row_dots<T, 2, dynamic_extent>(row_dot_params<T, 2>(h, x, {gate, up}), math::SwiGLU{}, stream_);
      return;
    }
    WorkspaceCursor cursor(workspace);
    const SwigluScratch<T> scratch = carve_swiglu<T>(cursor, tokens, gate.rows());
    gemm_->run(h, x, gate, scratch.gemm, stream_);
    gemm_->run(scratch.up, x, up, scratch.gemm, stream_);
    launch_swiglu_in_place(h, ConstMatrixView<T>(scratch.up), stream_);
  }

 private:
  struct HandleDeleter {
    bool owned = true;
    void operator()(cublasLtHandle_t handle) const {
      if (owned) cublasLtDestroy(handle);
    }
  };

  static cublasLtHandle_t create_handle() {
    cublasLtHandle_t handle = nullptr;
    ELASTIC_CUBLAS_CHECK(cublasLtCreate(&handle));
    return handle;
  }

  static void check_workspace(Workspace workspace, std::size_t needed, const char* op) {
    require<WorkspaceError>(workspace.bytes >= needed, op, ": workspace too small: need at least ",
                            needed, " bytes, found ", workspace.bytes);
    require<WorkspaceError>(workspace.bytes == 0 || workspace.data != nullptr, op,
                            ": workspace of ", workspace.bytes, " bytes has a null pointer");
  }

  template <class T>
  struct SwigluScratch {
    MatrixView<T> up;  // x . W_up^T for prefill
    Workspace gemm;    // cuBLASLt's share
  };

  template <class T>
  static SwigluScratch<T> carve_swiglu(WorkspaceCursor& cursor, index_t tokens, index_t width) {
    const auto stride = static_cast<index_t>(align_up(static_cast<std::size_t>(width), math::vector_width<T>));
    T* up = cursor.take<T>(static_cast<std::size_t>(tokens * stride));
    auto* gemm = cursor.take<std::byte>(gemm_workspace_bytes);
    return {MatrixView<T>(up, tokens, width, stride), Workspace{gemm, gemm_workspace_bytes}};
  }

  template <class T, int NumRows>
  static RowDotParams<T, NumRows> row_dot_params(MatrixView<T> out, ConstMatrixView<T> x,
                                                 const ConstMatrixView<T> (&weights)[NumRows]) {
    RowDotParams<T, NumRows> params{};
    for (int r = 0; r < NumRows; ++r) {
      params.weights[r] = weights[r].data();
      params.weight_strides[r] = weights[r].row_stride();
    }
    params.activations = x.data();
    params.activation_stride = x.row_stride();
    params.output = out.data();
    params.output_stride = out.row_stride();
    params.rows = static_cast<int>(out.cols());
    params.length = static_cast<int>(x.cols());
    params.tokens = static_cast<int>(x.rows());
    return params;
  }

  cudaStream_t stream_;
  std::unique_ptr<std::remove_pointer_t<cublasLtHandle_t>, HandleDeleter> handle_;
  std::unique_ptr<GemmPlanCache> gemm_;
};

static_assert(elastic::Executor<Executor>);

}  // namespace elastic::cuda
