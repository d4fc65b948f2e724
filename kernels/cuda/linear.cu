// nn.Linear on cuBLAS: y[M, N] = x[M, K] @ w[N, K]^T, fp16 storage, fp32 accumulation; and the
// same on cuBLASLt with the bias, the ReLU and the residual add done by the GEMM's epilogue
// (y = [relu](x w^T + b) or y += x w^T + b), so none of them is a pass of its own over y (at
// prefill, 16k rows of 20480 FFN features are 671 MB a pass).
#include <cublasLt.h>

#include <cstring>

#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {
namespace {

#define HS_LT_TRY(expr)                                                                          \
  do {                                                                                           \
    const cublasStatus_t st_ = (expr);                                                           \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                            \
      throw hs::error(std::string("cuBLASLt: " #expr " failed: ") + cublasGetStatusString(st_)); \
  } while (0)

// Owns cuBLASLt descriptors for one call.
struct lt_call {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~lt_call() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

uint32_t alignment_of(const void* p) {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  uint32_t al = 256;
  while (al > 2 && v % al != 0) al /= 2;
  return al;
}

}  // namespace

// ---- CUDA kernels
// (none: cuBLAS picks a tensor-core kernel for fp16 inputs with a 32-bit compute type)

// ---- launchers

void linear(cublasHandle_t handle, const __half* x, const __half* w, __half* y, int64_t M,
            int64_t N, int64_t K, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  detail::require(
      K > 0 && M < (int64_t(1) << 31) && N < (int64_t(1) << 31) && K < (int64_t(1) << 31),
      "linear: bad shape");
  cublasPointerMode_t mode;
  HS_CUBLAS_TRY(cublasGetPointerMode(handle, &mode));
  detail::require(mode == CUBLAS_POINTER_MODE_HOST, "linear: handle must use host pointer mode");
  // cuBLAS is column-major: row-major y[M, N] is column-major y^T [N, M] = op_T(w) @ x^T, where
  // row-major w[N, K] reads as column-major [K, N] (hence OP_T) and x[M, K] as [K, M] (OP_N).
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  HS_CUBLAS_TRY(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, w,
                             CUDA_R_16F, int(K), x, CUDA_R_16F, int(K), &beta, y, CUDA_R_16F,
                             int(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

bool linear_lt(lt_context& ctx, const __half* x, const __half* w, const __half* bias, __half* y,
               int64_t M, int64_t N, int64_t K, bool relu, bool accumulate, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return true;
  detail::require(
      K > 0 && M < (int64_t(1) << 31) && N < (int64_t(1) << 31) && K < (int64_t(1) << 31),
      "linear_lt: bad shape");
  const cublasLtEpilogue_t epi = bias
                                     ? (relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                     : (relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
  const uint32_t al_w = alignment_of(w), al_x = alignment_of(x), al_y = alignment_of(y);
  const uint32_t al_b = bias ? alignment_of(bias) : 256;
  // Same layout as linear(): column-major D^T [N, M] = op_T(w [K, N]) x [K, M], C = D (in place).
  lt_call call;
  HS_LT_TRY(cublasLtMatmulDescCreate(&call.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  HS_LT_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  HS_LT_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  HS_LT_TRY(
      cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  if (bias)
    HS_LT_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                             sizeof bias));
  HS_LT_TRY(cublasLtMatrixLayoutCreate(&call.a, CUDA_R_16F, uint64_t(K), uint64_t(N), int64_t(K)));
  HS_LT_TRY(cublasLtMatrixLayoutCreate(&call.b, CUDA_R_16F, uint64_t(K), uint64_t(M), int64_t(K)));
  HS_LT_TRY(cublasLtMatrixLayoutCreate(&call.c, CUDA_R_16F, uint64_t(N), uint64_t(M), int64_t(N)));

  // The algorithm for this shape, epilogue and alignment, found once.
  lt_context::key k{M, N, K, int(epi), accumulate, al_w, al_x, al_y, al_b};
  auto it = ctx.algos.find(k);
  if (it == ctx.algos.end()) {
    if (ctx.algos.size() >= 4096) ctx.algos.clear();  // row counts vary when serving: bounded
    HS_LT_TRY(cublasLtMatmulPreferenceCreate(&call.pref));
    const std::size_t ws = 0;  // no workspace: nothing outside the device budget
    HS_LT_TRY(cublasLtMatmulPreferenceSetAttribute(
        call.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al_w},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al_x},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al_y},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al_y}};
    for (const auto& [attr, v] : aligns)
      HS_LT_TRY(cublasLtMatmulPreferenceSetAttribute(call.pref, attr, &v, sizeof v));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
        ctx.handle, call.op, call.a, call.b, call.c, call.c, call.pref, 1, &res, &found);
    lt_context::choice ch;
    ch.ok = st == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS;
    if (ch.ok) ch.algo = res.algo;
    it = ctx.algos.emplace(k, ch).first;
  }
  if (!it->second.ok) return false;  // the caller takes the GEMM-then-kernel path
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const cublasStatus_t st =
      cublasLtMatmul(ctx.handle, call.op, &alpha, w, call.a, x, call.b, &beta, y, call.c, y, call.c,
                     &it->second.algo, nullptr, 0, stream);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) {  // refused before launching: the other path instead
    it->second.ok = false;
    return false;
  }
  if (st != CUBLAS_STATUS_SUCCESS)
    throw hs::error(std::string("cuBLASLt: cublasLtMatmul failed: ") + cublasGetStatusString(st));
  return true;
}

void linear_bias_act(lt_context* lt, cublasHandle_t handle, const __half* x, const __half* w,
                     const __half* bias, __half* y, int64_t M, int64_t N, int64_t K, activation act,
                     bool accumulate, cudaStream_t stream) {
  detail::require(!accumulate || act == activation::none,
                  "linear_bias_act: accumulate takes no activation");
  const bool relu = act == activation::relu;
  if (lt && (bias || relu) && linear_lt(*lt, x, w, bias, y, M, N, K, relu, accumulate, stream))
    return;
  linear(handle, x, w, y, M, N, K, accumulate);
  if (bias || relu) bias_act(y, bias, y, M, N, act, stream);
}

}  // namespace hs::cuda
