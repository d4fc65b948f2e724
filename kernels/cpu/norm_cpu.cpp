// LayerNorm (OPT) and RMSNorm (Llama), accumulated in double so the reference is tighter than
// any fp16/bf16 kernel checked against it.
#include <cmath>

#include "hybridserve/kernels_cpu.hpp"

namespace hs::cpu {

void layernorm_cpu(const float* x, const float* g, const float* b, float* y, int64_t M, int64_t H,
                   float eps) {
  for (int64_t i = 0; i < M; ++i) {
    const float* r = x + i * H;
    double mean = 0, var = 0;
    for (int64_t k = 0; k < H; ++k) mean += r[k];
    mean /= double(H);
    for (int64_t k = 0; k < H; ++k) var += (r[k] - mean) * (r[k] - mean);
    var /= double(H);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t k = 0; k < H; ++k)
      y[i * H + k] = float((r[k] - mean) * inv) * g[k] + (b ? b[k] : 0.f);
  }
}

void rmsnorm_cpu(const float* x, const float* g, float* y, int64_t M, int64_t H, float eps) {
  for (int64_t i = 0; i < M; ++i) {
    const float* r = x + i * H;
    double ss = 0;
    for (int64_t k = 0; k < H; ++k) ss += double(r[k]) * r[k];
    const double inv = 1.0 / std::sqrt(ss / double(H) + eps);
    for (int64_t k = 0; k < H; ++k) y[i * H + k] = float(r[k] * inv) * g[k];
  }
}

}  // namespace hs::cpu
