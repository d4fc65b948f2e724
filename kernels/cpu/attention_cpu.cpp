// Causal grouped-query attention of one sequence over its cache plus its new tokens.
#include <algorithm>
#include <cmath>
#include <vector>

#include "hybridserve/kernels_cpu.hpp"

namespace hs::cpu {

void attention_cpu(const float* q, const float* k, const float* v, float* out, int64_t Tq,
                   int64_t Tk, int64_t n_head, int64_t n_kv, int64_t D, float scale) {
  const int64_t group = n_head / n_kv;
  const int64_t past = Tk - Tq;  // query t sits at position past + t and sees keys 0..past+t
  std::vector<float> score(std::size_t(std::max<int64_t>(Tk, 1)));
  for (int64_t t = 0; t < Tq; ++t) {
    const int64_t n_keys = past + t + 1;
    for (int64_t h = 0; h < n_head; ++h) {
      const int64_t g = h / group;
      const float* qr = q + (t * n_head + h) * D;
      float mx = -INFINITY;
      for (int64_t s = 0; s < n_keys; ++s) {
        const float* kr = k + (s * n_kv + g) * D;
        float dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qr[d] * kr[d];
        score[s] = dot * scale;
        mx = std::max(mx, score[s]);
      }
      double sum = 0;
      for (int64_t s = 0; s < n_keys; ++s) {
        score[s] = std::exp(score[s] - mx);
        sum += score[s];
      }
      float* o = out + (t * n_head + h) * D;
      std::fill(o, o + D, 0.f);
      for (int64_t s = 0; s < n_keys; ++s) {
        const float p = float(score[s] / sum);
        const float* vr = v + (s * n_kv + g) * D;
        for (int64_t d = 0; d < D; ++d) o[d] += p * vr[d];
      }
    }
  }
}

}  // namespace hs::cpu
