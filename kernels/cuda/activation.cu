// Element-wise ops: bias + activation (OPT's fc1 + ReLU), SiLU gate (Llama SwiGLU), residual add.
#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels

// x, y: [M, N] (y may alias x); b: [N] or nullptr. Vec: N % 8 == 0, 16-byte aligned pointers,
// the grid strides over packs of 8 halves (a pack never straddles a row since N % 8 == 0).
template <bool Vec, bool Relu>
__global__ void bias_act_kernel(const __half* x, const __half* b, __half* y, int64_t M, int64_t N) {
  constexpr int W = Vec ? 8 : 1;
  const int64_t n = M * N / W;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v[W], bv[W] = {};
    if constexpr (Vec) {
      detail::unpack8(reinterpret_cast<const detail::half8*>(x)[i], v);
      if (b) detail::unpack8(reinterpret_cast<const detail::half8*>(b)[i % (N / 8)], bv);
    } else {
      v[0] = __half2float(x[i]);
      if (b) bv[0] = __half2float(b[i % N]);
    }
#pragma unroll
    for (int k = 0; k < W; ++k) {
      v[k] += bv[k];
      if (Relu) v[k] = v[k] > 0.f ? v[k] : 0.f;
    }
    if constexpr (Vec)
      reinterpret_cast<detail::half8*>(y)[i] = detail::pack8(v);
    else
      y[i] = __float2half_rn(v[0]);
  }
}

// gate, up, out: [n] (out may alias either). Vec: n % 8 == 0 and 16-byte aligned.
template <bool Vec>
__global__ void silu_mul_kernel(const __half* gate, const __half* up, __half* out, int64_t n) {
  constexpr int W = Vec ? 8 : 1;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n / W;
       i += int64_t(gridDim.x) * blockDim.x) {
    float g[W], u[W];
    if constexpr (Vec) {
      detail::unpack8(reinterpret_cast<const detail::half8*>(gate)[i], g);
      detail::unpack8(reinterpret_cast<const detail::half8*>(up)[i], u);
    } else {
      g[0] = __half2float(gate[i]);
      u[0] = __half2float(up[i]);
    }
#pragma unroll
    for (int k = 0; k < W; ++k) g[k] = g[k] / (1.f + expf(-g[k])) * u[k];
    if constexpr (Vec)
      reinterpret_cast<detail::half8*>(out)[i] = detail::pack8(g);
    else
      out[i] = __float2half_rn(g[0]);
  }
}

// x, y: [n]; x += y in fp32, rounded once.
template <bool Vec>
__global__ void add_kernel(__half* x, const __half* y, int64_t n) {
  constexpr int W = Vec ? 8 : 1;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n / W;
       i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (Vec) {
      float a[8], b[8];
      detail::unpack8(reinterpret_cast<const detail::half8*>(x)[i], a);
      detail::unpack8(reinterpret_cast<const detail::half8*>(y)[i], b);
#pragma unroll
      for (int k = 0; k < 8; ++k) a[k] += b[k];
      reinterpret_cast<detail::half8*>(x)[i] = detail::pack8(a);
    } else {
      x[i] = __float2half_rn(__half2float(x[i]) + __half2float(y[i]));
    }
  }
}

// ---- launchers

namespace {
constexpr int kThreads = 256;
}

void bias_act(const __half* x, const __half* b, __half* y, int64_t M, int64_t N, activation act,
              cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const bool vec =
      N % 8 == 0 && detail::aligned16(x) && detail::aligned16(y) && (!b || detail::aligned16(b));
  const unsigned grid = detail::grid_for(M * N / (vec ? 8 : 1), kThreads);
  const bool relu = act == activation::relu;
  if (vec && relu)
    bias_act_kernel<true, true><<<grid, kThreads, 0, stream>>>(x, b, y, M, N);
  else if (vec)
    bias_act_kernel<true, false><<<grid, kThreads, 0, stream>>>(x, b, y, M, N);
  else if (relu)
    bias_act_kernel<false, true><<<grid, kThreads, 0, stream>>>(x, b, y, M, N);
  else
    bias_act_kernel<false, false><<<grid, kThreads, 0, stream>>>(x, b, y, M, N);
  HS_CUDA_CHECK_LAUNCH();
}

void silu_mul(const __half* gate, const __half* up, __half* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec =
      n % 8 == 0 && detail::aligned16(gate) && detail::aligned16(up) && detail::aligned16(out);
  const unsigned grid = detail::grid_for(n / (vec ? 8 : 1), kThreads);
  if (vec)
    silu_mul_kernel<true><<<grid, kThreads, 0, stream>>>(gate, up, out, n);
  else
    silu_mul_kernel<false><<<grid, kThreads, 0, stream>>>(gate, up, out, n);
  HS_CUDA_CHECK_LAUNCH();
}

void add(__half* x, const __half* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  const bool vec = n % 8 == 0 && detail::aligned16(x) && detail::aligned16(y);
  const unsigned grid = detail::grid_for(n / (vec ? 8 : 1), kThreads);
  if (vec)
    add_kernel<true><<<grid, kThreads, 0, stream>>>(x, y, n);
  else
    add_kernel<false><<<grid, kThreads, 0, stream>>>(x, y, n);
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace hs::cuda
