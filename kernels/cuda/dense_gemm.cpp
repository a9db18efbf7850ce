// Dense BF16 GEMM through cuBLASLt (contract: ops.hpp, launch_dense_bf16_gemm). Row-major
// y[m, n] = a[m, k] · w[n, k]ᵀ is the column-major yᵀ[n, m] = w · aᵀ: cuBLASLt's A is w read
// transposed (op T, K × N column-major with ld ldw), B is a (op N, K × M with ld lda).

#include <cublasLt.h>

#include "cuda/ops.hpp"

namespace troupe::kernels::cuda {

namespace {

/// Owns the cuBLASLt descriptors of one call.
struct lt_call {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  lt_call() = default;
  lt_call(const lt_call&) = delete;
  lt_call& operator=(const lt_call&) = delete;
  ~lt_call() {
    if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
    if (lc != nullptr) cublasLtMatrixLayoutDestroy(lc);
    if (lb != nullptr) cublasLtMatrixLayoutDestroy(lb);
    if (la != nullptr) cublasLtMatrixLayoutDestroy(la);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

}  // namespace

status launch_dense_bf16_gemm(void* cublaslt_handle, const uint16_t* a, int64_t lda,
                              const uint16_t* w, int64_t ldw, float* y, int64_t ldy, int64_t m,
                              int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) noexcept {
  if (m < 0 || n < 0 || k < 1 || lda < k || ldw < k || ldy < n) return status::bad_size;
  if (m == 0 || n == 0) return status::ok;
  if (cublaslt_handle == nullptr || a == nullptr || w == nullptr || y == nullptr ||
      (workspace == nullptr && workspace_bytes > 0))
    return status::null_pointer;
  auto handle = static_cast<cublasLtHandle_t>(cublaslt_handle);
  lt_call c;
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  bool ok = cublasLtMatmulDescCreate(&c.op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                            sizeof trans_a) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                            sizeof trans_b) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatrixLayoutCreate(&c.la, CUDA_R_16BF, static_cast<uint64_t>(k),
                                        static_cast<uint64_t>(n), ldw) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatrixLayoutCreate(&c.lb, CUDA_R_16BF, static_cast<uint64_t>(k),
                                        static_cast<uint64_t>(m), lda) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatrixLayoutCreate(&c.lc, CUDA_R_32F, static_cast<uint64_t>(n),
                                        static_cast<uint64_t>(m), ldy) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulPreferenceCreate(&c.pref) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cublasLtMatmulPreferenceSetAttribute(c.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &workspace_bytes,
                                                  sizeof workspace_bytes) == CUBLAS_STATUS_SUCCESS;
  if (!ok) return status::library_failed;
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  if (cublasLtMatmulAlgoGetHeuristic(handle, c.op, c.la, c.lb, c.lc, c.lc, c.pref, 1, &heuristic,
                                     &found) != CUBLAS_STATUS_SUCCESS ||
      found == 0)
    return status::library_failed;
  const float alpha = 1.0f, beta = 0.0f;
  if (cublasLtMatmul(handle, c.op, &alpha, w, c.la, a, c.lb, &beta, y, c.lc, y, c.lc,
                     &heuristic.algo, workspace, workspace_bytes, stream) != CUBLAS_STATUS_SUCCESS)
    return status::library_failed;
  return status::ok;
}

}  // namespace troupe::kernels::cuda
