// Batched token sampling with a caller-supplied uniform per row: the CPU reference of the GPU
// sampler (hs::cuda::sample_rows). Both follow the same threshold algorithm, step by step:
//   1. temperature <= 0: greedy argmax (lowest index among equal maxima); stop.
//   2. z[i] = (logit[i] - max) / T (float), p[i] = exp(z[i]) (float, summed in double).
//   3. top-k (0 < k < V): keep logit[i] >= the k-th largest logit (ties kept: maybe > k tokens).
//   4. top-p (top_p < 1): among those, keep logit[i] >= t where t is the largest logit such that
//      the mass of the kept tokens with logit >= t is >= top_p * (mass of the top-k set).
//   5. Scan the kept tokens in INDEX order accumulating p; the answer is the first token at which
//      the running sum exceeds u * (kept mass); if rounding leaves none, the last kept token.
// Thresholds compare logits through an order-preserving uint32 key, so ties are exact on both
// sides; only sums round differently (GPU and CPU agree unless u or top_p lies within ~1e-6 of
// a cumulative-probability boundary).
#pragma once
#include <cstdint>

namespace hs {

/// Sampling settings of one row (one request); plain data, copied to the device as is.
struct sample_row_params {
  float temperature = 1.0f;  // <= 0: greedy
  int32_t top_k = 0;         // <= 0 or >= V: no limit
  float top_p = 1.0f;        // >= 1: no limit; must be > 0
};

/// Order-preserving map of a float to uint32 (a < b  <=>  key(a) < key(b), -0 < +0).
inline uint32_t sample_key(uint32_t float_bits) {
  return (float_bits & 0x80000000u) ? ~float_bits : (float_bits | 0x80000000u);
}

namespace cpu {

/// Greedy token of one row of logits [V]: the highest, the lowest id among equal maxima (the
/// CPU reference of cuda::argmax_rows).
int32_t argmax_cpu(const float* logits, int64_t V);

/// logits: [rows, V] f32; params: [rows]; u: [rows] uniforms in [0, 1); out: [rows] token ids.
void sample_rows_cpu(const float* logits, int64_t rows, int64_t V, const sample_row_params* params,
                     const float* u, int32_t* out);

}  // namespace cpu
}  // namespace hs
