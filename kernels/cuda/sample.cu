// Token sampling on the GPU, one block per row of logits: greedy argmax, and temperature / top-k /
// top-p with a caller-supplied uniform, the threshold algorithm of sample_rows_cpu
// (sample_rows.hpp).
#include <climits>

#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels

namespace {

constexpr int kThreads = 1024;

// The order-preserving key of sample_key(), on the device.
__device__ __forceinline__ uint32_t key_of(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// (value, index) of the row maximum, lowest index among equal maxima; every thread gets it.
__device__ void block_argmax(const float* l, int64_t V, float* best_v, int* best_i) {
  __shared__ float sv[32];
  __shared__ int si[32];
  float v = -INFINITY;
  int bi = INT_MAX;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
    if (l[i] > v || bi == INT_MAX) {  // strided and increasing: first seen wins ties
      v = l[i];
      bi = int(i);
    }
  auto merge = [&](float ov, int oi) {
    if (oi != INT_MAX && (bi == INT_MAX || ov > v || (ov == v && oi < bi))) {
      v = ov;
      bi = oi;
    }
  };
  for (int o = 16; o > 0; o >>= 1)
    merge(__shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, bi, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = bi;
  }
  __syncthreads();
  v = -INFINITY;
  bi = INT_MAX;
  if (lane < int(blockDim.x >> 5)) {
    v = sv[lane];
    bi = si[lane];
  }
  for (int o = 16; o > 0; o >>= 1)
    merge(__shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, bi, o));
  *best_v = v;
  *best_i = bi;
}

}  // namespace

// logits: [rows, V]; out: [rows]. One block per row.
__global__ void argmax_rows_kernel(const float* logits, int64_t V, int32_t* out) {
  float v;
  int i;
  block_argmax(logits + int64_t(blockIdx.x) * V, V, &v, &i);
  if (threadIdx.x == 0) out[blockIdx.x] = i;
}

// logits: [rows, V] f32; params, u, out: [rows]. One block per row. Thresholds are found bit by
// bit on the uint32 key (32 block-wide counts or sums each), so no sort and no atomics on the
// sums: the same inputs give the same token on every run.
__global__ void sample_rows_kernel(const float* logits, int64_t V, const sample_row_params* params,
                                   const float* u, int32_t* out) {
  const float* l = logits + int64_t(blockIdx.x) * V;
  const sample_row_params p = params[blockIdx.x];
  float mx;
  int best;
  block_argmax(l, V, &mx, &best);
  if (!(p.temperature > 0.f)) {
    if (threadIdx.x == 0) out[blockIdx.x] = best;
    return;
  }
  const float T = p.temperature;
  auto prob = [&](int64_t i) { return expf((l[i] - mx) / T); };
  auto count_ge = [&](uint32_t t) {
    int c = 0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) c += key_of(l[i]) >= t;
    return detail::block_sum(c);
  };
  auto mass_ge = [&](uint32_t t) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x)
      if (key_of(l[i]) >= t) s += double(prob(i));
    return detail::block_sum(s);
  };

  // Top-k: the largest key t with count(key >= t) >= k is the k-th largest key.
  uint32_t thr = 0;
  if (p.top_k > 0 && p.top_k < V) {
    for (int b = 31; b >= 0; --b) {
      const uint32_t c = thr | (1u << b);
      if (count_ge(c) >= p.top_k) thr = c;
    }
  }
  // Top-p: the largest key t whose kept mass (key >= max(t, thr)) still reaches top_p of the
  // top-k mass.
  if (p.top_p < 1.f) {
    const double target = double(p.top_p) * mass_ge(thr);
    uint32_t t = 0;
    for (int b = 31; b >= 0; --b) {
      const uint32_t c = t | (1u << b);
      if (mass_ge(c > thr ? c : thr) >= target) t = c;
    }
    thr = t > thr ? t : thr;
  }

  // Draw: each thread owns a contiguous chunk of indices; an exclusive scan of the chunk masses
  // gives each chunk's starting sum, then every thread walks its chunk in index order.
  const int64_t chunk = (V + blockDim.x - 1) / blockDim.x;
  const int64_t i0 = threadIdx.x * chunk, i1 = i0 + chunk < V ? i0 + chunk : V;
  double own = 0;
  for (int64_t i = i0; i < i1; ++i)
    if (key_of(l[i]) >= thr) own += double(prob(i));
  __shared__ double wsum[32];
  __shared__ int found, last;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  double incl = own;
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  double excl = __shfl_up_sync(0xffffffffu, incl, 1);
  if (lane == 0) excl = 0;
  if (lane == 31) wsum[warp] = incl;
  if (threadIdx.x == 0) {
    found = INT_MAX;
    last = -1;
  }
  __syncthreads();
  if (warp == 0) {
    double w = lane < n_warps ? wsum[lane] : 0.0;
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    if (lane < n_warps) wsum[lane] = w;  // inclusive totals of warps 0..lane
  }
  __syncthreads();
  if (warp > 0) excl += wsum[warp - 1];
  const double target = double(u[blockIdx.x]) * wsum[n_warps - 1];
  double acc = excl;
  int my_last = -1;
  for (int64_t i = i0; i < i1; ++i) {
    if (key_of(l[i]) < thr) continue;
    my_last = int(i);
    acc += double(prob(i));
    if (acc > target) {
      atomicMin(&found, int(i));
      break;
    }
  }
  if (my_last >= 0) atomicMax(&last, my_last);
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = found != INT_MAX ? found : last;
}

// ---- launchers

void argmax_rows(const float* logits, int64_t rows, int64_t V, int32_t* out, cudaStream_t stream) {
  if (rows <= 0) return;
  detail::require(V > 0 && V < INT_MAX && rows < (int64_t(1) << 31), "argmax_rows: bad shape");
  argmax_rows_kernel<<<unsigned(rows), kThreads, 0, stream>>>(logits, V, out);
  HS_CUDA_CHECK_LAUNCH();
}

void sample_rows(const float* logits, int64_t rows, int64_t V, const sample_row_params* params,
                 const float* u, int32_t* out, cudaStream_t stream) {
  if (rows <= 0) return;
  detail::require(V > 0 && V < INT_MAX && rows < (int64_t(1) << 31), "sample_rows: bad shape");
  sample_rows_kernel<<<unsigned(rows), kThreads, 0, stream>>>(logits, V, params, u, out);
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace hs::cuda
