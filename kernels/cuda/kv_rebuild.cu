// The HybridServe op: rebuild a layer's K/V from activation checkpoints (norm -> one GEMM against
// [Wk; Wv] -> bias, RoPE on K, scatter into paged blocks) instead of streaming the cache in.
#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels

// One block per row m. kv: [M, 2 * kv_dim] (K columns, then V), kv_dim = n_kv * D; b_kv:
// [2 * kv_dim] or nullptr; pos: [M] or nullptr (no RoPE). Row m lands in token slot slot[m] of
// the blocks k_dst[m], v_dst[m] ([block_size, n_kv, D], i.e. offset slot * kv_dim).
// Bias, rotation and the final rounding happen in fp32 on the GEMM's fp16 output.
// `vec`: the launcher found kv and b_kv 16-byte aligned and kv_dim, D / 2 multiples of 8, so
// rows move 8 halves (16 bytes) at a time where the destinations are aligned too; the scalar
// loop below gives the same bits and serves every other case.
namespace {
struct f8 {
  float v[8];
};
__device__ __forceinline__ f8 load8(const __half* p) {
  const int4 raw = *reinterpret_cast<const int4*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
  f8 o;
  for (int k = 0; k < 4; ++k) {
    const float2 f = __half22float2(h[k]);
    o.v[2 * k] = f.x;
    o.v[2 * k + 1] = f.y;
  }
  return o;
}
__device__ __forceinline__ void store8(__half* p, const f8& x) {
  int4 raw;
  __half2* h = reinterpret_cast<__half2*>(&raw);
  for (int k = 0; k < 4; ++k) h[k] = __floats2half2_rn(x.v[2 * k], x.v[2 * k + 1]);
  *reinterpret_cast<int4*>(p) = raw;
}
__device__ __forceinline__ void add8(f8& x, const __half* b) {
  if (!b) return;
  const f8 y = load8(b);
  for (int k = 0; k < 8; ++k) x.v[k] += y.v[k];
}
}  // namespace

__global__ void kv_bias_rope_scatter_kernel(const __half* kv, const __half* b_kv, int64_t n_kv,
                                            int64_t D, const int32_t* pos, float theta,
                                            __half* const* k_dst, __half* const* v_dst,
                                            const int32_t* slot, bool vec) {
  extern __shared__ float cos_sin[];  // [2 * D / 2] when pos (the vector path)
  const int64_t m = blockIdx.x, kv_dim = n_kv * D, half = D / 2;
  const __half* r = kv + m * 2 * kv_dim;
  const int64_t off = int64_t(slot[m]) * kv_dim;
  __half* kd = k_dst[m] + off;
  __half* vd = v_dst[m] + off;
  vec = vec &&
        ((reinterpret_cast<std::uintptr_t>(kd) | reinterpret_cast<std::uintptr_t>(vd)) & 15) == 0;
  if (vec) {  // the same for the whole block: no thread skips the barrier
    if (pos) {
      for (int64_t i = threadIdx.x; i < half; i += blockDim.x)
        detail::rope_cos_sin(pos[m], i, D, theta, &cos_sin[i], &cos_sin[half + i]);
      __syncthreads();
      const int64_t groups = half / 8;
      for (int64_t t = threadIdx.x; t < n_kv * groups; t += blockDim.x) {
        const int64_t i0 = (t % groups) * 8, j = (t / groups) * D + i0;
        f8 a = load8(r + j), b = load8(r + j + half), lo, hi;
        add8(a, b_kv ? b_kv + j : nullptr);
        add8(b, b_kv ? b_kv + j + half : nullptr);
        for (int k = 0; k < 8; ++k) {
          const float c = cos_sin[i0 + k], s = cos_sin[half + i0 + k];
          lo.v[k] = a.v[k] * c - b.v[k] * s;
          hi.v[k] = b.v[k] * c + a.v[k] * s;
        }
        store8(kd + j, lo);
        store8(kd + j + half, hi);
      }
    } else {
      for (int64_t j = 8 * threadIdx.x; j < kv_dim; j += 8 * blockDim.x) {
        f8 a = load8(r + j);
        add8(a, b_kv ? b_kv + j : nullptr);
        store8(kd + j, a);
      }
    }
    for (int64_t j = 8 * threadIdx.x; j < kv_dim; j += 8 * blockDim.x) {
      f8 a = load8(r + kv_dim + j);
      add8(a, b_kv ? b_kv + kv_dim + j : nullptr);
      store8(vd + j, a);
    }
    return;
  }
  // K: thread per pair (i, i + D/2), the angle computed once for all heads.
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    float c = 1.f, s = 0.f;
    if (pos) detail::rope_cos_sin(pos[m], i, D, theta, &c, &s);
    for (int64_t h = 0; h < n_kv; ++h) {
      const int64_t j = h * D + i;
      float a = __half2float(r[j]), b = __half2float(r[j + half]);
      if (b_kv) {
        a += __half2float(b_kv[j]);
        b += __half2float(b_kv[j + half]);
      }
      kd[j] = __float2half_rn(a * c - b * s);
      kd[j + half] = __float2half_rn(b * c + a * s);
    }
  }
  // V: copied through (plus bias).
  for (int64_t j = threadIdx.x; j < kv_dim; j += blockDim.x) {
    float v = __half2float(r[kv_dim + j]);
    if (b_kv) v += __half2float(b_kv[kv_dim + j]);
    vd[j] = __float2half_rn(v);
  }
}

// ---- launchers

namespace {
std::size_t align256(std::size_t n) {
  return (n + 255) & ~std::size_t(255);
}
}  // namespace

std::size_t kv_rebuild_workspace_bytes(int64_t M, int64_t H, int64_t n_kv, int64_t D) {
  return align256(std::size_t(M * H) * sizeof(__half)) +
         align256(std::size_t(M * 2 * n_kv * D) * sizeof(__half));
}

void kv_bias_rope_scatter(const __half* kv, const __half* b_kv, int64_t M, int64_t n_kv, int64_t D,
                          const int32_t* pos, float rope_theta, __half* const* k_dst,
                          __half* const* v_dst, const int32_t* slot, cudaStream_t stream) {
  if (M <= 0) return;
  detail::require(n_kv > 0 && D > 0 && D % 2 == 0 && M < (int64_t(1) << 31),
                  "kv_bias_rope_scatter: bad shape");
  int threads = 32;
  while (threads < 256 && threads < n_kv * D / 4) threads *= 2;
  const auto bits = reinterpret_cast<std::uintptr_t>(kv) | reinterpret_cast<std::uintptr_t>(b_kv);
  const bool vec = bits % 16 == 0 && (n_kv * D) % 8 == 0 && (!pos || (D / 2) % 8 == 0);
  const std::size_t shared = vec && pos ? std::size_t(D) * sizeof(float) : 0;
  kv_bias_rope_scatter_kernel<<<unsigned(M), threads, shared, stream>>>(
      kv, b_kv, n_kv, D, pos, rope_theta, k_dst, v_dst, slot, vec);
  HS_CUDA_CHECK_LAUNCH();
}

void kv_rebuild(const kv_rebuild_args& a, cublasHandle_t handle, cudaStream_t stream) {
  if (a.M <= 0) return;
  detail::require(a.x && a.w_kv && a.k_dst && a.v_dst && a.slot && a.workspace,
                  "kv_rebuild: missing input");
  detail::require(a.norm == norm_kind::none || a.norm_w, "kv_rebuild: missing norm weight");
  cudaStream_t hs_stream;
  HS_CUBLAS_TRY(cublasGetStream(handle, &hs_stream));
  detail::require(hs_stream == stream, "kv_rebuild: cuBLAS handle is bound to another stream");
  const int64_t kv2 = 2 * a.n_kv * a.D;
  auto* xn = static_cast<__half*>(a.workspace);  // [M, H]
  auto* kv =
      reinterpret_cast<__half*>(static_cast<char*>(a.workspace) +
                                align256(std::size_t(a.M * a.H) * sizeof(__half)));  // [M, kv2]
  const __half* gemm_in = a.x;
  if (a.norm == norm_kind::layernorm) {
    layernorm(a.x, a.norm_w, a.norm_b, xn, a.M, a.H, a.eps, stream);
    gemm_in = xn;
  } else if (a.norm == norm_kind::rmsnorm) {
    rmsnorm(a.x, a.norm_w, xn, a.M, a.H, a.eps, stream);
    gemm_in = xn;
  }
  // The bias as the layer's own K/V projection adds it, so rebuilt and stored K/V round alike.
  linear_bias_act(a.lt, handle, gemm_in, a.w_kv, a.b_kv, kv, a.M, kv2, a.H, activation::none, false,
                  stream);
  kv_bias_rope_scatter(kv, nullptr, a.M, a.n_kv, a.D, a.pos, a.rope_theta, a.k_dst, a.v_dst, a.slot,
                       stream);
}

}  // namespace hs::cuda
