// Start-up calibration: link bandwidth and GEMM rate by M, measured on the backend itself so
// the cost model predicts this machine, not a datasheet.
#include <chrono>
#include <cstring>
#include <vector>

#include "hybridserve/backend.hpp"
#include "hybridserve/engine.hpp"

namespace hs {
namespace {

double time_it(backend& be, stream s, const std::function<void()>& enqueue, int reps) {
  be.synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) enqueue();
  be.synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

}  // namespace

calibration measure_calibration(backend& be, const model_config& cfg, int block_size) {
  calibration c;
  c.device = be.name();
  c.cache_elem_bytes = c.weight_elem_bytes = be.elem_bytes();
  const std::size_t copy_bytes = std::size_t(16) << 20;
  auto host = be.host_alloc(copy_bytes);
  void* dev = be.device_alloc(copy_bytes, "calibration buffer");
  std::memset(host.get(), 0, copy_bytes);
  const double h2d = time_it(
      be, stream::h2d, [&] { be.copy(stream::h2d, dev, host.get(), copy_bytes); }, 4);
  const double d2h = time_it(
      be, stream::d2h, [&] { be.copy(stream::d2h, host.get(), dev, copy_bytes); }, 4);
  const double d2d = time_it(
      be, stream::compute,
      [&] {
        be.copy(stream::compute, dev, static_cast<char*>(dev) + copy_bytes / 2, copy_bytes / 2);
      },
      4);
  // Cache loads: one copy per block slice, from blocks that lie apart in host memory (every
  // other slice of the buffer here), into consecutive workspace slots.
  const auto block_rate = [&](std::size_t slice) {
    slice = std::max<std::size_t>(16, std::min(slice, copy_bytes / 2));
    std::vector<copy_op> ops;
    for (std::size_t at = 0; 2 * at + slice <= copy_bytes; at += slice)
      ops.push_back({static_cast<char*>(dev) + at, static_cast<char*>(host.get()) + 2 * at, slice});
    const double t = time_it(
        be, stream::h2d, [&] { be.copy_batch(stream::h2d, ops); }, 4);
    return double(ops.size() * slice) / t;
  };
  const std::size_t eb = std::size_t(be.elem_bytes()), B = std::size_t(std::max(1, block_size));
  c.kv_block_h2d_bytes_per_s = block_rate(B * 2 * std::size_t(cfg.kv_dim()) * eb);
  c.act_block_h2d_bytes_per_s = block_rate(B * std::size_t(cfg.hidden) * eb);
  be.device_free(dev);
  c.h2d_bytes_per_s = double(copy_bytes) / h2d;
  c.d2h_bytes_per_s = double(copy_bytes) / d2h;
  c.mem_bytes_per_s = double(copy_bytes) / d2d;  // read + write of half the buffer each
  // GEMM M x K x N at the model's K (hidden) and the K/V rebuild's N (2 * kv_dim): the GEMM
  // the plan trades against the link. The CPU backend caps the sizes to stay quick.
  const bool cpu = be.elem_bytes() == 4;
  const int64_t K = cpu ? std::min<int64_t>(cfg.hidden, 1024) : cfg.hidden;
  const int64_t N = cpu ? std::min<int64_t>(2 * cfg.kv_dim(), 1024) : 2 * cfg.kv_dim();
  const std::vector<int64_t> Ms = cpu ? std::vector<int64_t>{1, 16, 128, 512}
                                      : std::vector<int64_t>{1, 32, 128, 512, 2048, 8192};
  for (int64_t M : Ms) {
    void* x = be.device_alloc(std::size_t(M * K) * eb, "calibration x");
    void* w = be.device_alloc(std::size_t(N * K) * eb, "calibration w");
    void* y = be.device_alloc(std::size_t(M * N) * eb, "calibration y");
    // Zeros, not garbage: denormal or NaN operands would time a different code path.
    be.copy(stream::compute, x, host.get(), std::min(copy_bytes, std::size_t(M * K) * eb));
    be.copy(stream::compute, w, host.get(), std::min(copy_bytes, std::size_t(N * K) * eb));
    auto gemm = [&] { be.linear(stream::compute, x, w, nullptr, y, M, N, K); };
    time_it(be, stream::compute, gemm, 1);  // first call: library handles, heuristics
    const double t = time_it(be, stream::compute, gemm, cpu ? (M <= 16 ? 8 : 3) : 20);
    c.gemm_flops.push_back({M, 2.0 * double(M * N * K) / t});
    be.device_free(x);
    be.device_free(w);
    be.device_free(y);
  }
  return c;
}

}  // namespace hs
