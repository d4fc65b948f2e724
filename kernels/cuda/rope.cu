// Rotary position embedding in place, HF rotate_half convention (element i pairs with i + D/2).
#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels

// One thread per (row m, pair i < D/2): the angle is computed once and applied to every head.
// x: rows `ld` halves apart, each [n_heads, D]; pos: [M].
__global__ void rope_kernel(__half* x, int64_t ld, const int32_t* pos, int64_t M, int64_t n_heads,
                            int64_t D, float theta) {
  const int64_t half = D / 2;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < M * half;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = t / half, i = t % half;
    float c, s;
    detail::rope_cos_sin(pos[m], i, D, theta, &c, &s);
    __half* r = x + m * ld;
    for (int64_t h = 0; h < n_heads; ++h, r += D) {
      const float a = __half2float(r[i]), b = __half2float(r[i + half]);
      r[i] = __float2half_rn(a * c - b * s);
      r[i + half] = __float2half_rn(b * c + a * s);
    }
  }
}

// ---- launchers

void rope_strided(__half* x, int64_t ld, const int32_t* pos, int64_t M, int64_t n_heads, int64_t D,
                  float theta, cudaStream_t stream) {
  if (M <= 0 || n_heads <= 0) return;
  detail::require(D > 0 && D % 2 == 0, "rope: head dim must be even");
  detail::require(ld >= n_heads * D, "rope: row stride smaller than n_heads * D");
  const int threads = 128;
  rope_kernel<<<detail::grid_for(M * (D / 2), threads), threads, 0, stream>>>(x, ld, pos, M,
                                                                              n_heads, D, theta);
  HS_CUDA_CHECK_LAUNCH();
}

void rope(__half* x, const int32_t* pos, int64_t M, int64_t n_heads, int64_t D, float theta,
          cudaStream_t stream) {
  rope_strided(x, n_heads * D, pos, M, n_heads, D, theta, stream);
}

}  // namespace hs::cuda
