// Paged causal GQA attention for prefill and decode: one warp per (query row, head), online
// softmax in fp32 (flash-decoding style), K/V read from token blocks with 16-byte loads.
#include <cmath>

#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels

// Warp layout: LPK = D / 8 lanes share one key (8 dims, one 16-byte load, per lane); the warp's
// G = 32 / LPK lane groups walk keys p = grp, grp + G, ... each with its own running max m, sum l
// and accumulator, merged across groups at the end (so no per-key cross-group traffic).
//   q, out: [n_rows, n_head, D]; q_start: [n_seq + 1]; ctx_len, blk_start: [n_seq]
//   k_blocks[blk_start[s] + b], v_blocks[...]: [block_size, n_kv, D]
// scale_log2 = scale * log2(e): scores live in the exp2 domain.
template <int D>
__global__ void __launch_bounds__(128)
    attention_paged_kernel(const __half* q, __half* out, const int32_t* q_start,
                           const int32_t* ctx_len, const int32_t* blk_start,
                           const __half* const* k_blocks, const __half* const* v_blocks, int n_seq,
                           int n_rows, int n_head, int n_kv, int block_size, float scale_log2) {
  constexpr int LPK = D / 8;
  constexpr int G = 32 / LPK;
  const int warp = int(blockIdx.x) * (blockDim.x / 32) + int(threadIdx.x / 32);
  if (warp >= n_rows * n_head) return;  // the whole warp leaves together
  const int lane = threadIdx.x & 31, sub = lane % LPK, grp = lane / LPK;
  const int row = warp / n_head, h = warp % n_head;

  // The sequence owning this row: the last s with q_start[s] <= row.
  int lo = 0, hi = n_seq - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (q_start[mid] <= row)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int s = lo;
  if (ctx_len[s] < 0) return;  // written by another op (attention_fresh); warp-uniform
  const int nq = q_start[s + 1] - q_start[s];
  const int n_keys = ctx_len[s] - nq + (row - q_start[s]) + 1;  // causal: keys 0 .. own position
  const int g = h / (n_head / n_kv);
  const __half* const* kb = k_blocks + blk_start[s];
  const __half* const* vb = v_blocks + blk_start[s];
  const int64_t tok_stride = int64_t(n_kv) * D;
  const int64_t head_off = int64_t(g) * D + sub * 8;

  float qv[8];
  detail::unpack8(reinterpret_cast<const detail::half8*>(q + (int64_t(row) * n_head + h) * D)[sub],
                  qv);
#pragma unroll
  for (int k = 0; k < 8; ++k) qv[k] *= scale_log2;

  float m = -INFINITY, l = 0.f, acc[8] = {};
  for (int p0 = 0; p0 < n_keys; p0 += G) {
    const int p = p0 + grp;
    const bool valid = p < n_keys;
    const int pc = valid ? p : n_keys - 1;  // stay in bounds; the result is discarded
    const int b = pc / block_size, slot = pc - b * block_size;
    const int64_t off = slot * tok_stride + head_off;
    const detail::half8 kr = *reinterpret_cast<const detail::half8*>(kb[b] + off);
    const detail::half8 vr = *reinterpret_cast<const detail::half8*>(vb[b] + off);
    float kf[8];
    detail::unpack8(kr, kf);
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < 8; ++k) dot += qv[k] * kf[k];
#pragma unroll
    for (int o = LPK / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    if (valid) {
      const float m_new = fmaxf(m, dot);
      const float corr = exp2f(m - m_new);  // 0 on the first key (m = -inf)
      const float pe = exp2f(dot - m_new);
      float vf[8];
      detail::unpack8(vr, vf);
      l = l * corr + pe;
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[k] = acc[k] * corr + pe * vf[k];
      m = m_new;
    }
  }

  // Merge the G groups: lanes with the same `sub` hold the same 8 dims.
#pragma unroll
  for (int o = LPK; o < 32; o <<= 1) {
    const float m_o = __shfl_xor_sync(0xffffffffu, m, o);
    const float l_o = __shfl_xor_sync(0xffffffffu, l, o);
    const float mx = fmaxf(m, m_o);
    const float a = m == -INFINITY ? 0.f : exp2f(m - mx);  // a group may have seen no key
    const float c = m_o == -INFINITY ? 0.f : exp2f(m_o - mx);
    l = l * a + l_o * c;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float acc_o = __shfl_xor_sync(0xffffffffu, acc[k], o);
      acc[k] = acc[k] * a + acc_o * c;
    }
    m = mx;
  }
  if (grp == 0) {
    const float inv = l > 0.f ? 1.f / l : 0.f;  // no key at all (bad ctx_len): zeros, not NaN
#pragma unroll
    for (int k = 0; k < 8; ++k) acc[k] *= inv;
    reinterpret_cast<detail::half8*>(out + (int64_t(row) * n_head + h) * D)[sub] =
        detail::pack8(acc);
  }
}

// ---- launchers

void attention_paged(const __half* q, __half* out, const int32_t* q_start, const int32_t* ctx_len,
                     const int32_t* blk_start, const __half* const* k_blocks,
                     const __half* const* v_blocks, int64_t n_seq, int64_t n_rows, int64_t n_head,
                     int64_t n_kv, int64_t D, int64_t block_size, float scale,
                     cudaStream_t stream) {
  if (n_seq <= 0 || n_rows <= 0) return;
  detail::require(n_kv > 0 && n_head % n_kv == 0, "attention_paged: n_head % n_kv != 0");
  detail::require(block_size > 0, "attention_paged: block_size must be > 0");
  detail::require(detail::aligned16(q) && detail::aligned16(out),
                  "attention_paged: q and out must be 16-byte aligned");
  detail::require(n_rows * n_head < (int64_t(1) << 31) && n_seq < (int64_t(1) << 31),
                  "attention_paged: too many rows");
  constexpr int threads = 128;  // 4 warps, 4 (row, head) pairs per block
  const unsigned grid = unsigned((n_rows * n_head + 3) / 4);
  const float scale_log2 = scale * 1.4426950408889634f;
#define HS_ATTN_CASE(DIM)                                                                 \
  case DIM:                                                                               \
    attention_paged_kernel<DIM><<<grid, threads, 0, stream>>>(                            \
        q, out, q_start, ctx_len, blk_start, k_blocks, v_blocks, int(n_seq), int(n_rows), \
        int(n_head), int(n_kv), int(block_size), scale_log2);                             \
    break;
  switch (D) {
    HS_ATTN_CASE(16)
    HS_ATTN_CASE(32)
    HS_ATTN_CASE(64)
    HS_ATTN_CASE(128)
    HS_ATTN_CASE(256)
    default:
      throw hs::error("attention_paged: head dim " + std::to_string(D) +
                      " not supported (16, 32, 64, 128, 256)");
  }
#undef HS_ATTN_CASE
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace hs::cuda
