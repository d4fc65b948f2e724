// Row scatter/gather between a strided buffer and per-row pointers (device memory or mapped
// pinned host memory: with UVA both are addressable from a kernel). Used by the CUDA backend's
// scatter_rows / gather_rows; the launcher is declared in cuda_backend.cpp.
#include <cstdint>

#include "common.cuh"

namespace hs::cuda {

// ---- CUDA kernels

// Row r: from src_ptrs[r] (or src + r * src_stride) to dst_ptrs[r] (or dst + r * dst_stride),
// `units` elements of T each; a null dst_ptrs[r] skips the row. T is uint4 (16 bytes), uint32_t or
// uint8_t: the widest the caller found every pointer, stride and the row length aligned to. Blocks
// stride over rows.
template <class T>
__global__ void copy_rows_kernel(const char* src, std::size_t src_stride,
                                 const void* const* src_ptrs, char* dst, std::size_t dst_stride,
                                 void* const* dst_ptrs, int64_t rows, int64_t units) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* s = reinterpret_cast<const T*>(src_ptrs ? static_cast<const char*>(src_ptrs[r])
                                                     : src + std::size_t(r) * src_stride);
    T* d = reinterpret_cast<T*>(dst_ptrs ? static_cast<char*>(dst_ptrs[r])
                                         : dst + std::size_t(r) * dst_stride);
    if (!d) continue;  // the same for the whole block
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) d[u] = s[u];
  }
}

// ---- launchers

/// Copies `rows` rows of `row_bytes` each. Exactly one of src / src_ptrs and one of dst /
/// dst_ptrs is used (the pointer arrays, when given, are device arrays of `rows` entries).
/// `align` (16, 4 or 1) must divide every row address, both strides and row_bytes.
void copy_rows(const void* src, std::size_t src_stride, const void* const* src_ptrs, void* dst,
               std::size_t dst_stride, void* const* dst_ptrs, int64_t rows, std::size_t row_bytes,
               int align, cudaStream_t stream) {
  if (rows <= 0 || row_bytes == 0) return;
  detail::require(align == 16 || align == 4 || align == 1, "copy_rows: bad alignment");
  detail::require(row_bytes % std::size_t(align) == 0, "copy_rows: row length not aligned");
  const auto* s = static_cast<const char*>(src);
  auto* d = static_cast<char*>(dst);
  const int64_t units = int64_t(row_bytes / std::size_t(align));
  int threads = 32;
  while (threads < 256 && threads < units) threads *= 2;
  const unsigned grid = unsigned(rows < 65536 ? rows : 65536);
  if (align == 16)
    copy_rows_kernel<uint4><<<grid, threads, 0, stream>>>(s, src_stride, src_ptrs, d, dst_stride,
                                                          dst_ptrs, rows, units);
  else if (align == 4)
    copy_rows_kernel<uint32_t><<<grid, threads, 0, stream>>>(s, src_stride, src_ptrs, d, dst_stride,
                                                             dst_ptrs, rows, units);
  else
    copy_rows_kernel<uint8_t><<<grid, threads, 0, stream>>>(s, src_stride, src_ptrs, d, dst_stride,
                                                            dst_ptrs, rows, units);
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace hs::cuda
