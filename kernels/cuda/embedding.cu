// Token embedding gather, optionally fused with OPT's learned position embedding (offset 2).
#include "common.cuh"
#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

// ---- CUDA kernels

// One block per output row m. table: [V, H]; pos_table: [n_pos, H] or nullptr; out: [M, H].
// Vec: H % 8 == 0 and all pointers 16-byte aligned, so each thread moves 16 bytes at a time.
template <bool Vec>
__global__ void embedding_kernel(const __half* table, int64_t V, int64_t H, const int32_t* ids,
                                 const __half* pos_table, int64_t n_pos, const int32_t* pos,
                                 int32_t pos_offset, __half* out) {
  const int64_t m = blockIdx.x;
  const int64_t id = ids[m];
  const bool id_ok = id >= 0 && id < V;
  const int64_t p = pos_table ? int64_t(pos[m]) + pos_offset : -1;
  const bool p_ok = p >= 0 && p < n_pos;
  const __half* t = table + (id_ok ? id : 0) * H;
  const __half* pt = pos_table ? pos_table + (p_ok ? p : 0) * H : nullptr;
  __half* o = out + m * H;
  if constexpr (Vec) {
    for (int64_t j = threadIdx.x; j < H / 8; j += blockDim.x) {
      float a[8] = {}, b[8] = {};
      if (id_ok) detail::unpack8(reinterpret_cast<const detail::half8*>(t)[j], a);
      if (pt && p_ok) {
        detail::unpack8(reinterpret_cast<const detail::half8*>(pt)[j], b);
#pragma unroll
        for (int k = 0; k < 8; ++k) a[k] += b[k];
      }
      reinterpret_cast<detail::half8*>(o)[j] = detail::pack8(a);
    }
  } else {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      float a = id_ok ? __half2float(t[j]) : 0.f;
      if (pt && p_ok) a += __half2float(pt[j]);
      o[j] = __float2half_rn(a);
    }
  }
}

// ---- launchers

void embedding(const __half* table, int64_t V, int64_t H, const int32_t* ids, int64_t M,
               const __half* pos_table, int64_t n_pos, const int32_t* pos, int32_t pos_offset,
               __half* out, cudaStream_t stream) {
  if (M <= 0 || H <= 0) return;
  detail::require(M < (int64_t(1) << 31), "embedding: too many rows");
  detail::require(!pos_table || pos, "embedding: pos_table given without positions");
  const bool vec = H % 8 == 0 && detail::aligned16(table) && detail::aligned16(out) &&
                   (!pos_table || detail::aligned16(pos_table));
  const int threads = 128;
  if (vec)
    embedding_kernel<true><<<unsigned(M), threads, 0, stream>>>(table, V, H, ids, pos_table, n_pos,
                                                                pos, pos_offset, out);
  else
    embedding_kernel<false><<<unsigned(M), threads, 0, stream>>>(table, V, H, ids, pos_table, n_pos,
                                                                 pos, pos_offset, out);
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace hs::cuda
