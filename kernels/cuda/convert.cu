// Element-wise dtype conversions: f32 -> f16, f16 -> f32, bf16 -> f16 (checkpoint loading).
#include <cuda_bf16.h>

#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels

// in, out: [n]. Grid-stride; consecutive threads touch consecutive elements (coalesced).
__global__ void convert_f32_to_f16_kernel(const float* in, __half* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2half_rn(in[i]);
}

__global__ void convert_f16_to_f32_kernel(const __half* in, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __half2float(in[i]);
}

__global__ void convert_bf16_to_f16_kernel(const __nv_bfloat16* in, __half* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2half_rn(__bfloat162float(in[i]));
}

// ---- launchers

namespace {
constexpr int kThreads = 256;
}

void convert_f32_to_f16(const float* in, __half* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  convert_f32_to_f16_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(in, out, n);
  HS_CUDA_CHECK_LAUNCH();
}

void convert_f16_to_f32(const __half* in, float* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  convert_f16_to_f32_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(in, out, n);
  HS_CUDA_CHECK_LAUNCH();
}

void convert_bf16_to_f16(const __nv_bfloat16* in, __half* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  convert_bf16_to_f16_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(in, out, n);
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace hs::cuda
