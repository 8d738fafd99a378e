// Prefill GEMM through cuBLASLt on strided views: y = x . w^T with y, x, w in
// our row-major layout (w is [out x in], possibly a width-k slice of a larger
// weight). Row-major y[T x N] is column-major y^T, so the call is
// D(N x T) = op_T(W)(N x K) * X(K x T) in cuBLASLt's terms.
//
// cuBLASLt descriptors and the heuristic's algorithm choice are cached per
// shape, stride, dtype and workspace size, so after a shape's first call a
// GEMM is one cublasLtMatmul on the caller's stream with the caller's
// workspace: no allocation, no synchronisation. Accumulation is float32 for
// every dtype (no TF32 for float32 inputs). Not thread-safe: one cache per
// executor, one executor per thread.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <type_traits>
#include <unordered_map>

#include "elastic/core/dtype.hpp"
#include "elastic/core/tensor.hpp"
#include "elastic/core/workspace.hpp"
#include "elastic/cuda/error.cuh"
#include "elastic/math/row_dot.hpp"

namespace elastic::cuda {

template <class T>
constexpr cudaDataType_t cuda_data_type() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, half_t>) return CUDA_R_16F;
  else return CUDA_R_16BF;
}

class GemmPlanCache {
 public:
  explicit GemmPlanCache(cublasLtHandle_t handle) : handle_(handle) {}

  template <ElementType T>
  void run(MatrixView<T> y, std::type_identity_t<ConstMatrixView<T>> x, std::type_identity_t<ConstMatrixView<T>> w,
           Workspace workspace,
           cudaStream_t stream) {
    const Key key{cuda_data_type<T>(), w.rows(), x.rows(), w.cols(), leading_dimension(w), leading_dimension(x),
                  leading_dimension(y), workspace.bytes};
    const Plan& plan = find_or_create(key);
    const float alpha = 1.0f;
    const float beta = 0.0f;
    ELASTIC_CUBLAS_CHECK(cublasLtMatmul(handle_, plan.matmul.get(), &alpha, w.data(), plan.a.get(),
                                        x.data(), plan.b.get(), &beta, y.data(), plan.c.get(), y.data(),
                                        plan.c.get(), &plan.algorithm, workspace.data, workspace.bytes,
                                        stream));
  }

  std::size_t cached_plans() const { return plans_.size(); }

 private:
  // cuBLASLt's leading dimension: the row stride, which the executor's
  // checks hold to 16-byte multiples for views of two rows or more. A
  // one-row view's stride addresses nothing and is not checked, so it is
  // replaced by the row's width rounded up to 16 bytes, which satisfies the
  // alignment the plans are chosen for.
  template <class T>
  static index_t leading_dimension(const MatrixView<T>& view) {
    constexpr index_t vector = math::vector_width<std::remove_const_t<T>>;
    return view.rows() > 1 ? view.row_stride() : (view.cols() + vector - 1) / vector * vector;
  }

  struct Key {
    cudaDataType_t type;
    index_t m, n, k;                     // out, tokens, reduction
    index_t lda, ldb, ldc;               // weight, input, output strides
    std::size_t workspace_bytes;
    bool operator==(const Key&) const = default;
  };

  struct KeyHash {
    std::size_t operator()(const Key& key) const {
      std::size_t hash = static_cast<std::size_t>(key.type);
      for (const index_t value : {key.m, key.n, key.k, key.lda, key.ldb, key.ldc,
                                  static_cast<index_t>(key.workspace_bytes)})
        hash = hash * 1000003u ^ std::hash<index_t>{}(value);
      return hash;
    }
  };

  struct DescDeleter {
    void operator()(cublasLtMatmulDescOpaque_t* desc) const { cublasLtMatmulDescDestroy(desc); }
    void operator()(cublasLtMatrixLayoutOpaque_t* layout) const { cublasLtMatrixLayoutDestroy(layout); }
    void operator()(cublasLtMatmulPreferenceOpaque_t* pref) const { cublasLtMatmulPreferenceDestroy(pref); }
  };

  struct Plan {
    std::unique_ptr<cublasLtMatmulDescOpaque_t, DescDeleter> matmul;
    std::unique_ptr<cublasLtMatrixLayoutOpaque_t, DescDeleter> a, b, c;
    cublasLtMatmulAlgo_t algorithm{};
  };

  template <class Attribute, class Value>
  static void set(cublasLtMatmulDesc_t desc, Attribute attribute, const Value& value) {
    ELASTIC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof value));
  }

  static std::unique_ptr<cublasLtMatrixLayoutOpaque_t, DescDeleter> layout(cudaDataType_t type, index_t rows,
                                                                          index_t cols, index_t ld) {
    cublasLtMatrixLayout_t raw = nullptr;
    ELASTIC_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&raw, type, static_cast<std::uint64_t>(rows),
                                                    static_cast<std::uint64_t>(cols), ld));
    return std::unique_ptr<cublasLtMatrixLayoutOpaque_t, DescDeleter>(raw);
  }

  const Plan& find_or_create(const Key& key) {
    if (const auto found = plans_.find(key); found != plans_.end()) return found->second;

    Plan plan;
    cublasLtMatmulDesc_t matmul = nullptr;
    ELASTIC_CUBLAS_CHECK(cublasLtMatmulDescCreate(&matmul, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    plan.matmul.reset(matmul);
    set(matmul, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    set(matmul, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    plan.a = layout(key.type, key.k, key.m, key.lda);
    plan.b = layout(key.type, key.k, key.n, key.ldb);
    plan.c = layout(key.type, key.m, key.n, key.ldc);

    cublasLtMatmulPreference_t raw_pref = nullptr;
    ELASTIC_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw_pref));
    const std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, DescDeleter> pref(raw_pref);
    const std::uint64_t max_workspace = key.workspace_bytes;
    ELASTIC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        raw_pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_workspace, sizeof max_workspace));
    // Our contract guarantees 16-byte aligned rows; ask for algorithms that
    // need no more, so one plan serves every pointer of this shape.
    const std::uint32_t alignment = 16;
    for (const auto attribute : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                 CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      ELASTIC_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_pref, attribute, &alignment, sizeof alignment));

    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    ELASTIC_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, matmul, plan.a.get(), plan.b.get(),
                                                        plan.c.get(), plan.c.get(), raw_pref, 1, &result,
                                                        &found));
    require(found > 0, "cuBLASLt has no algorithm for a ", key.m, " x ", key.n, " x ", key.k,
            " GEMM with strides ", key.lda, "/", key.ldb, "/", key.ldc, " and ", key.workspace_bytes,
            " bytes of workspace");
    plan.algorithm = result.algo;
    return plans_.emplace(key, std::move(plan)).first->second;
  }

  cublasLtHandle_t handle_;
  std::unordered_map<Key, Plan, KeyHash> plans_;
};

}  // namespace elastic::cuda
