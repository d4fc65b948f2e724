// Helpers shared by the kernel files: argument checks, 16-byte half packs, warp/block reductions.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "hybridserve/cuda_check.hpp"
#include "hybridserve/error.hpp"

namespace hs::cuda::detail {

inline void require(bool ok, const char* what) {
  if (!ok) throw hs::error(std::string("hs::cuda: ") + what);
}

inline bool aligned16(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0;
}

inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = 65536 * 8) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > max_blocks ? max_blocks : b));
}

// ---- device helpers

/// Eight halves: one 16-byte load or store.
struct alignas(16) half8 {
  __half2 h[4];
};

__device__ __forceinline__ void unpack8(const half8& v, float* f) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 t = __half22float2(v.h[i]);
    f[2 * i] = t.x;
    f[2 * i + 1] = t.y;
  }
}

__device__ __forceinline__ half8 pack8(const float* f) {
  half8 v;
#pragma unroll
  for (int i = 0; i < 4; ++i) v.h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ int warp_sum(int v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
/// The order of additions is fixed, so the result is the same run to run.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `part` may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  T t = lane < n_warps ? part[lane] : T(0);
  return warp_sum(t);
}

/// cos and sin of pos * theta^(-2i/D), the frequency in double and the angle rounded to float
/// exactly as rope_cpu does; accurate sincosf (no fast-math), since angles reach thousands.
__device__ __forceinline__ void rope_cos_sin(int32_t pos, int64_t i, int64_t D, float theta,
                                             float* c, float* s) {
  const double inv_freq = pow(double(theta), -2.0 * double(i) / double(D));
  const float angle = float(double(pos) * inv_freq);
  sincosf(angle, s, c);
}

}  // namespace hs::cuda::detail
