// Paged causal GQA attention (cache in fixed-size token blocks, like vLLM/FlashInfer).
#include <algorithm>
#include <cmath>
#include <vector>

#include "hybridserve/kernels_cpu.hpp"

namespace hs::cpu {

void attention_paged_cpu(const float* q, float* out, const int32_t* q_start, const int32_t* ctx_len,
                         const int32_t* blk_start, const float* const* k_blocks,
                         const float* const* v_blocks, int64_t n_seq, int64_t n_head, int64_t n_kv,
                         int64_t D, int64_t block_size, float scale) {
  const int64_t group = n_head / n_kv;
  std::vector<double> score;
  for (int64_t s = 0; s < n_seq; ++s) {
    if (ctx_len[s] < 0) continue;  // written by another op (fresh prefill)
    const int64_t nq = q_start[s + 1] - q_start[s];
    const int64_t past = ctx_len[s] - nq;  // query t sits at position past + t
    const float* const* kb = k_blocks + blk_start[s];
    const float* const* vb = v_blocks + blk_start[s];
    score.resize(std::size_t(std::max<int64_t>(ctx_len[s], 1)));
    for (int64_t t = 0; t < nq; ++t) {
      const int64_t n_keys = past + t + 1;
      for (int64_t h = 0; h < n_head; ++h) {
        const int64_t g = h / group;
        const float* qr = q + ((q_start[s] + t) * n_head + h) * D;
        double mx = -INFINITY;
        for (int64_t p = 0; p < n_keys; ++p) {
          const float* kr = kb[p / block_size] + ((p % block_size) * n_kv + g) * D;
          float dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qr[d] * kr[d];
          score[p] = double(dot) * scale;
          mx = std::max(mx, score[p]);
        }
        double sum = 0;
        for (int64_t p = 0; p < n_keys; ++p) sum += (score[p] = std::exp(score[p] - mx));
        float* o = out + ((q_start[s] + t) * n_head + h) * D;
        std::fill(o, o + D, 0.f);
        for (int64_t p = 0; p < n_keys; ++p) {
          const float w = float(score[p] / sum);
          const float* vr = vb[p / block_size] + ((p % block_size) * n_kv + g) * D;
          for (int64_t d = 0; d < D; ++d) o[d] += w * vr[d];
        }
      }
    }
  }
}

}  // namespace hs::cpu
