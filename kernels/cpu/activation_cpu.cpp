// Element-wise ops: bias, residual add, ReLU (OPT), SiLU-gate (Llama SwiGLU).
#include <cmath>

#include "hybridserve/kernels_cpu.hpp"

namespace hs::cpu {

void relu_cpu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.f ? x[i] : 0.f;
}

void silu_mul_cpu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

void add_bias_cpu(float* x, const float* b, int64_t M, int64_t N) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) x[i * N + j] += b[j];
}

void add_cpu(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace hs::cpu
