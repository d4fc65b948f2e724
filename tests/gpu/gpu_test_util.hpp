// Helpers of the [gpu] tests: owning device buffers, fp16 host data, tolerance checks.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "hybridserve/cuda_check.hpp"
#include "hybridserve/half.hpp"

namespace gt {

/// Device buffer of n elements of T; freed on scope exit. Copies are explicit (get/put).
template <class T>
class dev {
 public:
  explicit dev(std::size_t n) : n_(n) { HS_CUDA_TRY(cudaMalloc(&p_, (n ? n : 1) * sizeof(T))); }
  explicit dev(const std::vector<T>& h) : dev(h.size()) { put(h); }
  dev(const dev&) = delete;
  dev& operator=(const dev&) = delete;
  ~dev() { cudaFree(p_); }

  T* get() const { return p_; }
  std::size_t size() const { return n_; }
  void put(const std::vector<T>& h) {
    HS_CUDA_TRY(cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  /// All bytes 0xFF: a NaN in f16 and f32, -1 in int32. Kernels must overwrite every element.
  void poison() { HS_CUDA_TRY(cudaMemset(p_, 0xFF, n_ * sizeof(T))); }
  std::vector<T> host() const {
    HS_CUDA_TRY(cudaDeviceSynchronize());
    std::vector<T> h(n_);
    HS_CUDA_TRY(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

/// fp16 data kept on the host as bits; h() gives the device view as __half.
using dev16 = dev<uint16_t>;
inline __half* h(const dev16& d) {
  return reinterpret_cast<__half*>(d.get());
}

inline std::vector<uint16_t> to_f16(const std::vector<float>& f) {
  std::vector<uint16_t> o(f.size());
  for (std::size_t i = 0; i < f.size(); ++i) o[i] = hs::f32_to_f16(f[i]);
  return o;
}
inline std::vector<float> from_f16(const std::vector<uint16_t>& b) {
  std::vector<float> o(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) o[i] = hs::f16_to_f32(b[i]);
  return o;
}
/// Rounds through fp16, so CPU references see exactly what the GPU sees.
inline std::vector<float> round16(std::vector<float> f) {
  for (auto& x : f) x = hs::f16_to_f32(hs::f32_to_f16(x));
  return f;
}
/// n uniform values in [lo, hi), already fp16-exact.
inline std::vector<float> rand16(std::size_t n, std::mt19937& rng, float lo = -1.f,
                                 float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> f(n);
  for (auto& x : f) x = d(rng);
  return round16(std::move(f));
}

/// Owned non-default stream, so launchers are exercised off stream 0. A blocking stream on
/// purpose: it stays ordered after the (legacy-stream) cudaMemcpy/cudaMemset of the buffers.
struct stream {
  cudaStream_t s = nullptr;
  stream() { HS_CUDA_TRY(cudaStreamCreate(&s)); }
  ~stream() { cudaStreamDestroy(s); }
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  operator cudaStream_t() const { return s; }
  void sync() const { HS_CUDA_TRY(cudaStreamSynchronize(s)); }
};

/// Counts elements with |got - ref| > atol + rtol * |ref|, and NaNs/infs in `got` (which also
/// catches any 0xFF sentinel left unwritten). Reports the worst element.
inline void check_close(const std::vector<float>& got, const std::vector<float>& ref, double atol,
                        double rtol, const std::string& what) {
  REQUIRE(got.size() == ref.size());
  std::size_t bad = 0, non_finite = 0, worst = 0;
  double worst_excess = -1;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) {
      ++non_finite;
      continue;
    }
    const double err = std::fabs(double(got[i]) - ref[i]);
    const double tol = atol + rtol * std::fabs(ref[i]);
    if (err > tol) ++bad;
    if (err - tol > worst_excess) {
      worst_excess = err - tol;
      worst = i;
    }
  }
  INFO(what << ": n=" << got.size() << " worst at " << worst << " got "
            << (got.empty() ? 0.f : got[worst]) << " ref " << (ref.empty() ? 0.f : ref[worst]));
  CHECK(non_finite == 0);
  CHECK(bad == 0);
}

/// The awkward token counts every op is swept over.
inline const std::vector<int64_t>& token_counts() {
  static const std::vector<int64_t> m{1, 3, 7, 19, 733};
  return m;
}

}  // namespace gt
