// Rotary position embedding, HF Llama convention (rotate_half: element i pairs with i + D/2).
#include <cmath>
#include <vector>

#include "hybridserve/kernels_cpu.hpp"

namespace hs::cpu {

void rope_cpu(float* x, const int32_t* pos, int64_t M, int64_t n_heads, int64_t D, float theta) {
  const int64_t half = D / 2;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = std::pow(double(theta), -2.0 * i / double(D));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t i = 0; i < half; ++i) {
      // HF computes the angle in float32; products of position and frequency are exact enough
      // in double and round the same way for the positions we meet.
      const float angle = float(double(pos[m]) * inv_freq[i]);
      const float c = std::cos(angle), s = std::sin(angle);
      for (int64_t h = 0; h < n_heads; ++h) {
        float* r = x + (m * n_heads + h) * D;
        const float a = r[i], b = r[i + half];
        r[i] = a * c - b * s;
        r[i + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace hs::cpu
