// Private to the CUDA backend (cuda_backend.cpp): owning pinned/device pointers and the state
// one CUDA stream carries -- its cuBLAS handle, its kernel-argument staging, its scratch.
//
// Argument staging: host-side kernel arguments (ids, positions, pointer arrays) are packed into
// a ring of mapped pinned memory and moved by a small copy kernel (reading the ring over PCIe)
// into a device buffer on the same stream, where the kernel reads them. Not cudaMemcpyAsync:
// a copy engine runs the host-to-device copies of every stream in turn, so a few KB of
// arguments would wait behind the weight upload in flight (~12 ms for an OPT-13B layer) and
// stall compute for it, several times a layer. The device buffer is reused from offset 0 by every
// op: its next writer is a copy on the same stream, so stream order keeps it safe. A ring region is
// reused only once the event recorded behind its copy has completed; the host blocks only when the
// ring wraps onto a copy still in flight (rare at 64 MiB per stream).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <deque>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <vector>

#include "hybridserve/kernels_cuda.hpp"

namespace hs::cuda {

struct host_free {
  void operator()(void* p) const {
    if (p) (void)cudaFreeHost(p);
  }
};
struct dev_free {
  void operator()(void* p) const {
    if (p) (void)cudaFree(p);
  }
};
using pinned_ptr = std::unique_ptr<char, host_free>;
using dev_ptr = std::unique_ptr<char, dev_free>;

/// Pinned host memory (cudaHostAlloc with `flags`); throws hs::error.
pinned_ptr pinned_alloc(std::size_t bytes, unsigned flags = cudaHostAllocPortable);
/// Device memory outside the backend's budget (scratch); throws hs::error naming `what`.
dev_ptr raw_device_alloc(std::size_t bytes, const char* what);

// copy_rows.cu: rows between a strided buffer and per-row pointer arrays (device arrays).
void copy_rows(const void* src, std::size_t src_stride, const void* const* src_ptrs, void* dst,
               std::size_t dst_stride, void* const* dst_ptrs, int64_t rows, std::size_t row_bytes,
               int align, cudaStream_t stream);

/// One part of a staged argument block.
struct arg {
  const void* data;
  std::size_t bytes;
};
template <class T>
arg arg_of(const std::vector<T>& v) {
  return {v.data(), v.size() * sizeof(T)};
}

/// Everything one stream owns. Callers hold `m` while they stage and enqueue on `s`.
class stream_lane {
 public:
  std::mutex m;
  cudaStream_t s = nullptr;

  /// The stream's cuBLAS handle, made on first use: bound to `s`, default math (tensor cores
  /// allowed; fp32 accumulation is chosen per call), host pointer mode.
  cublasHandle_t blas();
  /// The stream's cuBLASLt context (handle made on first use, algorithms found per shape).
  lt_context& lt();
  /// Packs `parts` (16-byte aligned each) into the pinned ring, enqueues one copy into the
  /// device argument buffer and returns the device address of each part.
  std::vector<char*> stage(std::initializer_list<arg> parts);
  /// Grows a device scratch buffer to `need` bytes; the stream drains first, since enqueued
  /// work may still use the old one.
  void ensure_device(dev_ptr& p, std::size_t& cap, std::size_t need, const char* what);
  /// The same for a pinned host buffer.
  void ensure_pinned(pinned_ptr& p, std::size_t& cap, std::size_t need);
  /// Frees everything (after the stream is idle); never throws.
  void release() noexcept;

  std::atomic<std::size_t>* ring_waits = nullptr;  // counter to bump when staging blocks

  // logits scratch: normed rows, f32 logits on the device and in pinned memory
  dev_ptr xn, lg;
  pinned_ptr lg_host;
  std::size_t xn_cap = 0, lg_cap = 0, lg_host_cap = 0;

 private:
  std::size_t ring_alloc(std::size_t n);

  struct region {
    std::size_t begin, end;
    cudaEvent_t ev;
  };
  cublasHandle_t blas_ = nullptr;
  lt_context lt_;
  pinned_ptr ring_;
  std::size_t ring_cap_ = 0, head_ = 0;
  std::deque<region> live_;
  std::vector<cudaEvent_t> spare_;
  dev_ptr args_;
  std::size_t args_cap_ = 0;
};

}  // namespace hs::cuda
