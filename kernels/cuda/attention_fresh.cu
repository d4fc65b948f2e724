// Causal GQA self-attention of a fresh sequence (its whole context is its own n rows: a prompt
// prefilled in one pass) on tensor cores: per head S = scale * Q K^T and O = P V are cuBLAS
// strided-batched GEMMs (fp16 in, fp32 accumulate), with a causal softmax kernel between them.
// The paged kernel (one warp per query row) is right for decode; for a 512-token prompt it does
// 512x the work per key of a GEMM without tensor cores. CPU reference: cpu::attention_cpu.
#include <cmath>

#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels

// s: [rows, n_keys] fp32 scores (already scaled) -> probabilities split in two fp16 parts,
// p = hi + lo with hi = fp16(p), lo = fp16(p - hi): P V is then two tensor-core GEMMs that
// together carry ~22 bits of p, as accurate as the fp32 softmax of the paged kernel (one fp16
// P costs ~1e-2 in the logits of small models with large weights). Row r is query q0 + r % T
// of head r / T; it sees keys 0 .. q0 + r % T (causal), the rest become 0. One warp a row.
__global__ void causal_softmax_kernel(const float* s, __half* hi, __half* lo, int64_t rows, int T,
                                      int q0, int n_keys) {
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  const int last = q0 + int(r % T);  // highest key index this query may see
  const float* row = s + r * n_keys;
  __half* h = hi + r * n_keys;
  __half* l = lo + r * n_keys;
  float mx = -INFINITY;
  for (int k = lane; k <= last; k += 32) mx = fmaxf(mx, row[k]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.f;
  for (int k = lane; k <= last; k += 32) sum += expf(row[k] - mx);
  sum = detail::warp_sum(sum);
  const float inv = 1.f / sum;  // sum >= 1: the maximum contributes exp(0)
  for (int k = lane; k < n_keys; k += 32) {
    const float p = k <= last ? expf(row[k] - mx) * inv : 0.f;
    const __half ph = __float2half(p);
    h[k] = ph;
    l[k] = __float2half(p - __half2float(ph));
  }
}

// ---- launchers

// Per score: fp32 logit + two fp16 parts of its probability.
constexpr std::size_t k_score_bytes = 8;

void attention_fresh(cublasHandle_t handle, const __half* q, int64_t ldq, const __half* k,
                     const __half* v, int64_t ld_kv, __half* out, int64_t ldo, int64_t n,
                     int64_t n_head, int64_t n_kv, int64_t D, float scale, void* scratch,
                     std::size_t scratch_bytes, cudaStream_t stream) {
  if (n <= 0) return;
  detail::require(n_kv > 0 && n_head % n_kv == 0, "attention_fresh: n_head % n_kv != 0");
  detail::require(D > 0 && n < (int64_t(1) << 31), "attention_fresh: bad shape");
  cublasPointerMode_t mode;
  HS_CUBLAS_TRY(cublasGetPointerMode(handle, &mode));
  detail::require(mode == CUBLAS_POINTER_MODE_HOST,
                  "attention_fresh: handle must use host pointer mode");
  // Query rows per tile: the scores of every head for T queries against (at most) n keys fit.
  const int64_t per_row = n_head * n;
  // A multiple of 8 scores, so the fp16 parts that follow the fp32 logits start 16-byte aligned.
  const std::size_t scores_elems = scratch_bytes / k_score_bytes / 8 * 8;
  detail::require(std::size_t(per_row) <= scores_elems, "attention_fresh: scratch too small");
  detail::require(reinterpret_cast<std::uintptr_t>(scratch) % 16 == 0,
                  "attention_fresh: scratch must be 16-byte aligned");
  const int64_t T = std::min<int64_t>(n, int64_t(scores_elems / std::size_t(per_row)));
  float* scores = static_cast<float*>(scratch);
  __half* p_hi = reinterpret_cast<__half*>(scores + scores_elems);
  __half* p_lo = p_hi + scores_elems;
  const int64_t G = n_head / n_kv;
  const float zero = 0.f, one = 1.f;
  for (int64_t q0 = 0; q0 < n; q0 += T) {
    const int64_t t = std::min(T, n - q0), keys = q0 + t;  // causal: later keys are masked
    // scores (fp32) and probs (fp16): [n_head][t][keys], head h at h * t * keys. Column-major view
    // of head h's block: S^T [keys, t] = K_g [keys, D] (K^T stored as [D, keys], OP_T) x Q_h^T [D,
    // t] (OP_N). Query heads g*G + gi share kv head g: one strided batch over g per gi.
    for (int64_t gi = 0; gi < G; ++gi) {
      HS_CUBLAS_TRY(cublasGemmStridedBatchedEx(
          handle, CUBLAS_OP_T, CUBLAS_OP_N, int(keys), int(t), int(D), &scale, k, CUDA_R_16F,
          int(ld_kv), D, q + q0 * ldq + gi * D, CUDA_R_16F, int(ldq), G * D, &zero,
          scores + gi * t * keys, CUDA_R_32F, int(keys), G * t * keys, int(n_kv),
          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    const int64_t rows = n_head * t;
    const int threads = 128;
    causal_softmax_kernel<<<detail::grid_for(rows * 32, threads, int64_t(1) << 31), threads, 0,
                            stream>>>(scores, p_hi, p_lo, rows, int(t), int(q0), int(keys));
    HS_CUDA_CHECK_LAUNCH();
    // out rows q0.. of head h: O^T [D, t] = V_g^T [D, keys] (stored as is, OP_N) x P^T [keys, t],
    // P = hi + lo: the second GEMM adds onto the first (beta = 1).
    for (int part = 0; part < 2; ++part) {
      const __half* P = part == 0 ? p_hi : p_lo;
      const float* beta = part == 0 ? &zero : &one;
      for (int64_t gi = 0; gi < G; ++gi) {
        HS_CUBLAS_TRY(cublasGemmStridedBatchedEx(
            handle, CUBLAS_OP_N, CUBLAS_OP_N, int(D), int(t), int(keys), &one, v, CUDA_R_16F,
            int(ld_kv), D, P + gi * t * keys, CUDA_R_16F, int(keys), G * t * keys, beta,
            out + q0 * ldo + gi * D, CUDA_R_16F, int(ldo), G * D, int(n_kv), CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT));
      }
    }
  }
}

}  // namespace hs::cuda
