// Causal GQA self-attention of fresh sequences (each one's whole context is its own rows: prompts
// prefilled in one pass), fused FlashAttention-2 style: one block takes 64 query rows of one head
// of one sequence (4 warps x 16 rows), walks the key tiles up to its diagonal through shared
// memory, and keeps scores, the online softmax and the output in registers (mma.sync m16n8k16,
// fp16 in, fp32 accumulate; fragments from shared memory by ldmatrix). Every sequence of the pass
// goes in one launch, so 32 prompts of 512 tokens make 10k blocks rather than 32 launches of 320.
// Nothing of size n x n touches memory: the cuBLAS path (attention_fresh.cu) wrote and re-read 8
// bytes per score, ~3 ms a layer for 32 prompts of 512 tokens on an H100.
// CPU reference: cpu::attention_cpu.
#include <cmath>

#include "common.cuh"
#include "hybridserve/backend.hpp"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {
namespace {

constexpr int k_rows = 64;  // query rows per block (16 per warp)
constexpr int k_keys = 64;  // keys per shared-memory tile

__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_h2(__half lo, __half hi) {
  return uint32_t(__half_as_ushort(lo)) | (uint32_t(__half_as_ushort(hi)) << 16);
}

__device__ __forceinline__ uint32_t ld32(const __half* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Four 8x8 fp16 matrices from shared memory, lane l giving the address of row l % 8 of matrix
// l / 8; register i of every lane receives its fragment of matrix i (row lane / 4, columns
// 2 (lane % 4), +1), or with .trans of its transpose.
__device__ __forceinline__ void ldsm_x4(uint32_t* r, const __half* p) {
  const auto a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t* r, const __half* p) {
  const auto a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// p (two probabilities of one row) -> the fp16 pair hi and the pair of what hi misses (lo):
// P V is then two tensor-core products that together carry ~22 bits of p, as accurate as an fp32
// softmax (one fp16 P costs ~1e-2 in the logits of small models with large weights).
__device__ __forceinline__ void split2(float p0, float p1, uint32_t& hi, uint32_t& lo) {
  const __half h0 = __float2half_rn(p0), h1 = __float2half_rn(p1);
  hi = pack_h2(h0, h1);
  lo = pack_h2(__float2half_rn(p0 - __half2float(h0)), __float2half_rn(p1 - __half2float(h1)));
}

// Fragment layouts of m16n8k16 (g = lane / 4, t = lane % 4):
//   A 16x16 row-major: a0 (row g, cols 2t, 2t+1), a1 (row g+8, same), a2 (row g, cols 2t+8, +9),
//   a3 (row g+8, cols 2t+8, +9);  B 16x8 "col": b0 (rows 2t, 2t+1 of col g), b1 (rows 2t+8, +9);
//   C 16x8: c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, same).
// S = Q K^T: A = Q rows, B[d][key] = K[key][d], so b0 is a contiguous pair of a K row.
// O = P V: A = P, rebuilt from two adjacent S tiles in registers; B[key][d] = V[key][d] (two rows).
// Grid: x = query tile (of the longest sequence), y = head, z = sequence; sequence z's rows start
// at row0[z] of q, k, v and out and number len[z].
template <int D>
__global__ void __launch_bounds__(128)
    attention_flash_kernel(const __half* __restrict__ q, int64_t ldq, const __half* __restrict__ k,
                           const __half* __restrict__ v, int64_t ld_kv, __half* __restrict__ out,
                           int64_t ldo, const int32_t* __restrict__ row0,
                           const int32_t* __restrict__ len, int group, float scale_log2) {
  constexpr int LDS = D + 8;  // padded shared row (halves): ldmatrix rows hit different banks
  __shared__ __align__(16) __half Ks[k_keys * LDS];
  __shared__ __align__(16) __half Vs[k_keys * LDS];
  const int n = len[blockIdx.z];
  const int tiles = (n + k_rows - 1) / k_rows;
  if (int(blockIdx.x) >= tiles) return;  // a shorter sequence: whole block, before any barrier
  const int64_t base = row0[blockIdx.z];
  const int h = blockIdx.y, kvh = h / group;
  const int tile = tiles - 1 - blockIdx.x;  // the longest (last) query tiles start first
  const int q0 = tile * k_rows;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int ra = q0 + warp * 16 + g, rb = ra + 8;  // the two query rows this thread holds
  const __half* qh = q + base * ldq + int64_t(h) * D;
  const __half* kh = k + base * ld_kv + int64_t(kvh) * D;
  const __half* vh = v + base * ld_kv + int64_t(kvh) * D;
  out += base * ldo;
  // ldmatrix rows this lane addresses: matrix lane / 8, row lane % 8.
  const int lm = lane >> 3, lr = lane & 7;

  uint32_t qa[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int c = kk * 16 + 2 * t;
    qa[kk][0] = ra < n ? ld32(qh + int64_t(ra) * ldq + c) : 0u;
    qa[kk][1] = rb < n ? ld32(qh + int64_t(rb) * ldq + c) : 0u;
    qa[kk][2] = ra < n ? ld32(qh + int64_t(ra) * ldq + c + 8) : 0u;
    qa[kk][3] = rb < n ? ld32(qh + int64_t(rb) * ldq + c + 8) : 0u;
  }
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_a = -INFINITY, m_b = -INFINITY;  // running maxima (log2 units) of rows ra, rb
  float l_a = 0.f, l_b = 0.f;              // this thread's part of the running sums

  const int last_key = min(n, q0 + k_rows) - 1;  // causal: no row of the block sees beyond
  const int warp_last_row = q0 + warp * 16 + 15;
  for (int j0 = 0; j0 <= last_key; j0 += k_keys) {
    __syncthreads();               // the previous tile is no longer read
    constexpr int chunks = D / 8;  // 16-byte pieces a row
    for (int i = threadIdx.x; i < k_keys * chunks; i += blockDim.x) {
      const int r = i / chunks, c = (i % chunks) * 8, key = j0 + r;
      detail::half8 kv8{}, vv8{};
      if (key < n) {
        kv8 = *reinterpret_cast<const detail::half8*>(kh + int64_t(key) * ld_kv + c);
        vv8 = *reinterpret_cast<const detail::half8*>(vh + int64_t(key) * ld_kv + c);
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) kv8.h[e] = vv8.h[e] = __float2half2_rn(0.f);
      }
      *reinterpret_cast<detail::half8*>(Ks + r * LDS + c) = kv8;
      *reinterpret_cast<detail::half8*>(Vs + r * LDS + c) = vv8;
    }
    __syncthreads();
    if (j0 > warp_last_row) continue;  // every key of the tile is after this warp's rows

    float s[k_keys / 8][4];
#pragma unroll
    for (int nt = 0; nt < k_keys / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      // K fragments, two key tiles at a time: matrices (keys nt*8.., d +0..7), (same keys, d
      // +8..15), then the same for nt + 1: b0, b1 of nt and of nt + 1.
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
      for (int nt = 0; nt < k_keys / 8; nt += 2) {
        uint32_t b[4];
        ldsm_x4(b, Ks + ((nt + (lm >> 1)) * 8 + lr) * LDS + kk * 16 + (lm & 1) * 8);
        mma16816(s[nt], qa[kk], b[0], b[1]);
        mma16816(s[nt + 1], qa[kk], b[2], b[3]);
      }
    // Scale into log2 units and mask keys after the row (and past n: those rows are zeros).
    float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < k_keys / 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = j0 + nt * 8 + 2 * t + (e & 1), row = e < 2 ? ra : rb;
        const float x = key <= row && key < n ? s[nt][e] * scale_log2 : -INFINITY;
        s[nt][e] = x;
        if (e < 2)
          mx_a = fmaxf(mx_a, x);
        else
          mx_b = fmaxf(mx_b, x);
      }
      // The four threads of a quad hold one row between them.
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {
      mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, o2));
      mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, o2));
    }
    // Key 0 is in the first tile and every row sees it, so the maxima are finite from then on;
    // a row whose keys in this tile are all masked keeps its maximum (its p are exp2(-inf) = 0).
    const float new_a = fmaxf(m_a, mx_a), new_b = fmaxf(m_b, mx_b);
    const float alpha_a = exp2f(m_a - new_a), alpha_b = exp2f(m_b - new_b);
    m_a = new_a;
    m_b = new_b;
    l_a *= alpha_a;
    l_b *= alpha_b;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= alpha_a;
      o[i][1] *= alpha_a;
      o[i][2] *= alpha_b;
      o[i][3] *= alpha_b;
    }
#pragma unroll
    for (int nt = 0; nt < k_keys / 8; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - m_a);
      s[nt][1] = exp2f(s[nt][1] - m_a);
      s[nt][2] = exp2f(s[nt][2] - m_b);
      s[nt][3] = exp2f(s[nt][3] - m_b);
      l_a += s[nt][0] + s[nt][1];
      l_b += s[nt][2] + s[nt][3];
    }
    // O += P V, 16 keys a step; P's A fragment is S tiles 2ks (keys +0..7) and 2ks+1 (+8..15).
#pragma unroll
    for (int ks = 0; ks < k_keys / 16; ++ks) {
      uint32_t hi[4], lo[4];
      split2(s[2 * ks][0], s[2 * ks][1], hi[0], lo[0]);
      split2(s[2 * ks][2], s[2 * ks][3], hi[1], lo[1]);
      split2(s[2 * ks + 1][0], s[2 * ks + 1][1], hi[2], lo[2]);
      split2(s[2 * ks + 1][2], s[2 * ks + 1][3], hi[3], lo[3]);
      // V fragments, transposed, two d tiles at a time: matrices (keys +0..7, d dt*8..),
      // (keys +8..15, same d), then the same for dt + 1: b0, b1 of dt and of dt + 1.
#pragma unroll
      for (int dt = 0; dt < D / 8; dt += 2) {
        uint32_t b[4];
        ldsm_x4_trans(b, Vs + (ks * 16 + (lm & 1) * 8 + lr) * LDS + (dt + (lm >> 1)) * 8);
        mma16816(o[dt], hi, b[0], b[1]);
        mma16816(o[dt], lo, b[0], b[1]);
        mma16816(o[dt + 1], hi, b[2], b[3]);
        mma16816(o[dt + 1], lo, b[2], b[3]);
      }
    }
  }
  // Whole-row sums, then O / l. Rows past n are not written.
#pragma unroll
  for (int o2 = 1; o2 <= 2; o2 <<= 1) {
    l_a += __shfl_xor_sync(0xffffffffu, l_a, o2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, o2);
  }
  const float inv_a = 1.f / l_a, inv_b = 1.f / l_b;  // l >= 1: the maximum contributes exp2(0)
  __half* oh = out + int64_t(h) * D + 2 * t;
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
    if (ra < n)
      *reinterpret_cast<__half2*>(oh + int64_t(ra) * ldo + dt * 8) =
          __floats2half2_rn(o[dt][0] * inv_a, o[dt][1] * inv_a);
    if (rb < n)
      *reinterpret_cast<__half2*>(oh + int64_t(rb) * ldo + dt * 8) =
          __floats2half2_rn(o[dt][2] * inv_b, o[dt][3] * inv_b);
  }
}

template <int D>
void launch(const __half* q, int64_t ldq, const __half* k, const __half* v, int64_t ld_kv,
            __half* out, int64_t ldo, const int32_t* row0, const int32_t* len, int64_t n_seq,
            int64_t longest, int64_t n_head, int64_t group, float scale, cudaStream_t stream) {
  const dim3 grid(unsigned((longest + k_rows - 1) / k_rows), unsigned(n_head), unsigned(n_seq));
  attention_flash_kernel<D><<<grid, 128, 0, stream>>>(q, ldq, k, v, ld_kv, out, ldo, row0, len,
                                                      int(group), scale * 1.4426950408889634f);
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace

// ---- launchers

bool attention_flash_head_dim(int64_t D) {
  return fresh_attention_on_chip(D);
}

bool attention_flash_supported(const __half* q, int64_t ldq, const __half* k, const __half* v,
                               int64_t ld_kv, const __half* out, int64_t ldo, int64_t D) {
  return attention_flash_head_dim(D) && ldq % 8 == 0 && ld_kv % 8 == 0 && ldo % 2 == 0 &&
         detail::aligned16(q) && detail::aligned16(k) && detail::aligned16(v) &&
         reinterpret_cast<std::uintptr_t>(out) % 4 == 0;
}

void attention_flash(const __half* q, int64_t ldq, const __half* k, const __half* v, int64_t ld_kv,
                     __half* out, int64_t ldo, const int32_t* row0, const int32_t* len,
                     int64_t n_seq, int64_t longest, int64_t n_head, int64_t n_kv, int64_t D,
                     float scale, cudaStream_t stream) {
  if (n_seq <= 0 || longest <= 0) return;
  detail::require(n_kv > 0 && n_head % n_kv == 0, "attention_flash: n_head % n_kv != 0");
  detail::require(longest < (int64_t(1) << 30) && n_head < 65536 && n_seq < 65536,
                  "attention_flash: bad shape");
  detail::require(attention_flash_supported(q, ldq, k, v, ld_kv, out, ldo, D),
                  "attention_flash: head dim not 16/32/64/128 or rows not 16-byte aligned");
  const int64_t group = n_head / n_kv;
#define HS_FLASH(DIM)                                                                         \
  launch<DIM>(q, ldq, k, v, ld_kv, out, ldo, row0, len, n_seq, longest, n_head, group, scale, \
              stream)
  switch (D) {
    case 16:
      return HS_FLASH(16);
    case 32:
      return HS_FLASH(32);
    case 64:
      return HS_FLASH(64);
    default:
      return HS_FLASH(128);
  }
#undef HS_FLASH
}

}  // namespace hs::cuda
