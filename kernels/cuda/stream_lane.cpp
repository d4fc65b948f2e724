// Per-stream state of the CUDA backend: cuBLAS handle, argument staging ring, scratch buffers.
#include "stream_lane.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "hybridserve/cuda_check.hpp"
#include "hybridserve/error.hpp"

namespace hs::cuda {

namespace {
constexpr std::size_t k_ring_bytes = std::size_t(64) << 20;  // pinned argument ring per stream
constexpr std::size_t k_min_args_bytes = std::size_t(1) << 20;
constexpr std::size_t k_stage_row = 1024;  // bytes per block of the argument copy kernel

std::size_t align_up(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}
}  // namespace

pinned_ptr pinned_alloc(std::size_t bytes, unsigned flags) {
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, std::max<std::size_t>(bytes, 1), flags);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw hs::error("cannot allocate " + std::to_string(bytes) + " bytes of pinned host memory (" +
                    cudaGetErrorString(e) + ")");
  }
  return pinned_ptr(static_cast<char*>(p));
}

dev_ptr raw_device_alloc(std::size_t bytes, const char* what) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, std::max<std::size_t>(bytes, 1));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw hs::error(std::string("device out of memory: ") + what + " needs " +
                    std::to_string(bytes) + " bytes (" + cudaGetErrorString(e) + ")");
  }
  return dev_ptr(static_cast<char*>(p));
}

cublasHandle_t stream_lane::blas() {
  if (!blas_) {
    cublasHandle_t h;
    HS_CUBLAS_TRY(cublasCreate(&h));
    try {
      HS_CUBLAS_TRY(cublasSetStream(h, s));
      HS_CUBLAS_TRY(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
      HS_CUBLAS_TRY(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
    } catch (...) {
      cublasDestroy(h);
      throw;
    }
    blas_ = h;
  }
  return blas_;
}

lt_context& stream_lane::lt() {
  if (!lt_.handle) HS_CUBLAS_TRY(cublasLtCreate(&lt_.handle));
  return lt_;
}

void stream_lane::ensure_device(dev_ptr& p, std::size_t& cap, std::size_t need, const char* what) {
  if (p && need <= cap) return;
  HS_CUDA_TRY(cudaStreamSynchronize(s));
  p.reset();
  cap = 0;
  p = raw_device_alloc(need, what);
  cap = need;
}

void stream_lane::ensure_pinned(pinned_ptr& p, std::size_t& cap, std::size_t need) {
  if (p && need <= cap) return;
  HS_CUDA_TRY(cudaStreamSynchronize(s));  // host functions may still read the old one
  p.reset();
  cap = 0;
  p = pinned_alloc(need);
  cap = need;
}

std::vector<char*> stream_lane::stage(std::initializer_list<arg> parts) {
  std::size_t total = 0;
  for (const auto& p : parts) total = align_up(total, 16) + p.bytes;
  total = align_up(std::max<std::size_t>(total, 16), k_stage_row);  // whole copy-kernel rows
  ensure_device(args_, args_cap_, std::max(total, k_min_args_bytes), "kernel arguments");
  const std::size_t off = ring_alloc(total);
  char* h = ring_.get() + off;
  std::vector<char*> out;
  std::size_t at = 0;
  for (const auto& p : parts) {
    at = align_up(at, 16);
    if (p.bytes) std::memcpy(h + at, p.data, p.bytes);
    out.push_back(args_.get() + at);
    at += p.bytes;
  }
  copy_rows(h, k_stage_row, nullptr, args_.get(), k_stage_row, nullptr,
            int64_t(total / k_stage_row), k_stage_row, 16, s);
  cudaEvent_t ev;
  if (!spare_.empty()) {
    ev = spare_.back();
    spare_.pop_back();
  } else {
    HS_CUDA_TRY(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  }
  live_.push_back({off, off + total, ev});  // owned by live_ even if the record fails
  HS_CUDA_TRY(cudaEventRecord(ev, s));
  return out;
}

// A free region of n bytes: finished regions are reclaimed without blocking; the host waits
// only for the newest in-flight region that overlaps the one it needs.
std::size_t stream_lane::ring_alloc(std::size_t n) {
  if (!ring_ || n > ring_cap_) {
    HS_CUDA_TRY(cudaStreamSynchronize(s));
    for (auto& r : live_) spare_.push_back(r.ev);
    live_.clear();
    ring_.reset();
    ring_cap_ = 0;
    const std::size_t cap = std::max(k_ring_bytes, align_up(2 * n, std::size_t(1) << 20));
    ring_ = pinned_alloc(cap, cudaHostAllocPortable | cudaHostAllocMapped);  // kernel-readable
    ring_cap_ = cap;
    head_ = 0;
  }
  while (!live_.empty()) {
    const cudaError_t r = cudaEventQuery(live_.front().ev);
    if (r == cudaErrorNotReady) break;
    HS_CUDA_TRY(r);
    spare_.push_back(live_.front().ev);
    live_.pop_front();
  }
  std::size_t off = head_;
  if (off + n > ring_cap_) off = 0;
  std::ptrdiff_t last = -1;
  for (std::size_t i = 0; i < live_.size(); ++i)
    if (live_[i].begin < off + n && off < live_[i].end) last = std::ptrdiff_t(i);
  if (last >= 0) {
    if (ring_waits) ++*ring_waits;
    HS_CUDA_TRY(cudaEventSynchronize(live_[std::size_t(last)].ev));
    for (std::ptrdiff_t i = 0; i <= last; ++i) {  // one stream: the older ones are done too
      spare_.push_back(live_.front().ev);
      live_.pop_front();
    }
  }
  head_ = off + n;
  return off;
}

void stream_lane::release() noexcept {
  for (auto& r : live_) (void)cudaEventDestroy(r.ev);
  for (auto e : spare_) (void)cudaEventDestroy(e);
  live_.clear();
  spare_.clear();
  ring_.reset();
  args_.reset();
  xn.reset();
  lg.reset();
  lg_host.reset();
  ring_cap_ = args_cap_ = xn_cap = lg_cap = lg_host_cap = 0;
  if (blas_) cublasDestroy(blas_);
  blas_ = nullptr;
  if (lt_.handle) cublasLtDestroy(lt_.handle);
  lt_.handle = nullptr;
  lt_.algos.clear();
  if (s) (void)cudaStreamDestroy(s);
  s = nullptr;
}

}  // namespace hs::cuda
