// LayerNorm (OPT) and RMSNorm (Llama) over rows, fp16 in/out, fp32 statistics.
#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels

namespace {

// Row access in packs of 8 halves (Vec) or one half at a time; `f` sees (index, value).
template <bool Vec, class F>
__device__ __forceinline__ void for_row(const __half* r, int64_t H, F&& f) {
  if constexpr (Vec) {
    for (int64_t j = threadIdx.x; j < H / 8; j += blockDim.x) {
      float v[8];
      detail::unpack8(reinterpret_cast<const detail::half8*>(r)[j], v);
#pragma unroll
      for (int k = 0; k < 8; ++k) f(j * 8 + k, v[k]);
    }
  } else {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) f(j, __half2float(r[j]));
  }
}

}  // namespace

// One block per row. x, y: [M, H] (y may alias x: every thread writes only what it read, after
// the block-wide reductions); g, b: [H]. Two passes (mean, then centred variance) for accuracy.
template <bool Vec>
__global__ void layernorm_kernel(const __half* x, const __half* g, const __half* b, __half* y,
                                 int64_t H, float eps) {
  const __half* r = x + int64_t(blockIdx.x) * H;
  __half* o = y + int64_t(blockIdx.x) * H;
  float s = 0;
  for_row<Vec>(r, H, [&](int64_t, float v) { s += v; });
  const float mean = detail::block_sum(s) / float(H);
  float q = 0;
  for_row<Vec>(r, H, [&](int64_t, float v) { q += (v - mean) * (v - mean); });
  const float inv = 1.f / sqrtf(detail::block_sum(q) / float(H) + eps);
  if constexpr (Vec) {
    for (int64_t j = threadIdx.x; j < H / 8; j += blockDim.x) {
      float v[8], gv[8], bv[8] = {};
      detail::unpack8(reinterpret_cast<const detail::half8*>(r)[j], v);
      detail::unpack8(reinterpret_cast<const detail::half8*>(g)[j], gv);
      if (b) detail::unpack8(reinterpret_cast<const detail::half8*>(b)[j], bv);
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = (v[k] - mean) * inv * gv[k] + bv[k];
      reinterpret_cast<detail::half8*>(o)[j] = detail::pack8(v);
    }
  } else {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      const float v = (__half2float(r[j]) - mean) * inv * __half2float(g[j]);
      o[j] = __float2half_rn(v + (b ? __half2float(b[j]) : 0.f));
    }
  }
}

// One block per row; y = x / sqrt(mean(x^2) + eps) * g. Shapes as layernorm_kernel.
template <bool Vec>
__global__ void rmsnorm_kernel(const __half* x, const __half* g, __half* y, int64_t H, float eps) {
  const __half* r = x + int64_t(blockIdx.x) * H;
  __half* o = y + int64_t(blockIdx.x) * H;
  float ss = 0;
  for_row<Vec>(r, H, [&](int64_t, float v) { ss += v * v; });
  const float inv = 1.f / sqrtf(detail::block_sum(ss) / float(H) + eps);
  if constexpr (Vec) {
    for (int64_t j = threadIdx.x; j < H / 8; j += blockDim.x) {
      float v[8], gv[8];
      detail::unpack8(reinterpret_cast<const detail::half8*>(r)[j], v);
      detail::unpack8(reinterpret_cast<const detail::half8*>(g)[j], gv);
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = v[k] * inv * gv[k];
      reinterpret_cast<detail::half8*>(o)[j] = detail::pack8(v);
    }
  } else {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x)
      o[j] = __float2half_rn(__half2float(r[j]) * inv * __half2float(g[j]));
  }
}

// ---- launchers

namespace {
// Enough threads that each handles a few 16-byte packs; at least one warp, at most 1024.
int norm_threads(int64_t H) {
  int t = 32;
  while (t < 1024 && int64_t(t) * 8 * 2 < H) t *= 2;
  return t;
}
}  // namespace

void layernorm(const __half* x, const __half* g, const __half* b, __half* y, int64_t M, int64_t H,
               float eps, cudaStream_t stream) {
  if (M <= 0) return;
  detail::require(H > 0 && M < (int64_t(1) << 31), "layernorm: bad shape");
  const bool vec = H % 8 == 0 && detail::aligned16(x) && detail::aligned16(y) &&
                   detail::aligned16(g) && (!b || detail::aligned16(b));
  const int t = norm_threads(H);
  if (vec)
    layernorm_kernel<true><<<unsigned(M), t, 0, stream>>>(x, g, b, y, H, eps);
  else
    layernorm_kernel<false><<<unsigned(M), t, 0, stream>>>(x, g, b, y, H, eps);
  HS_CUDA_CHECK_LAUNCH();
}

void rmsnorm(const __half* x, const __half* g, __half* y, int64_t M, int64_t H, float eps,
             cudaStream_t stream) {
  if (M <= 0) return;
  detail::require(H > 0 && M < (int64_t(1) << 31), "rmsnorm: bad shape");
  const bool vec =
      H % 8 == 0 && detail::aligned16(x) && detail::aligned16(y) && detail::aligned16(g);
  const int t = norm_threads(H);
  if (vec)
    rmsnorm_kernel<true><<<unsigned(M), t, 0, stream>>>(x, g, y, H, eps);
  else
    rmsnorm_kernel<false><<<unsigned(M), t, 0, stream>>>(x, g, y, H, eps);
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace hs::cuda
