// nn.Linear on cuBLAS: y[M, N] = x[M, K] @ w[N, K]^T, fp16 storage, fp32 accumulation.
#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels
// (none: cuBLAS picks a tensor-core kernel for fp16 inputs with a 32-bit compute type)

// ---- launchers

void linear(cublasHandle_t handle, const __half* x, const __half* w, __half* y, int64_t M,
            int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  detail::require(
      K > 0 && M < (int64_t(1) << 31) && N < (int64_t(1) << 31) && K < (int64_t(1) << 31),
      "linear: bad shape");
  cublasPointerMode_t mode;
  HS_CUBLAS_TRY(cublasGetPointerMode(handle, &mode));
  detail::require(mode == CUBLAS_POINTER_MODE_HOST, "linear: handle must use host pointer mode");
  // cuBLAS is column-major: row-major y[M, N] is column-major y^T [N, M] = op_T(w) @ x^T, where
  // row-major w[N, K] reads as column-major [K, N] (hence OP_T) and x[M, K] as [K, M] (OP_N).
  const float alpha = 1.f, beta = 0.f;
  HS_CUBLAS_TRY(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w,
                             CUDA_R_16F, int(K), x, CUDA_R_16F, int(K), &beta, y, CUDA_R_16F,
                             int(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace hs::cuda
