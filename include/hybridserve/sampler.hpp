// Token sampling: greedy, temperature, top-k, top-p, with a seeded generator.
#pragma once
#include <cstdint>
#include <random>
#include <string>

namespace hs {

struct sampling_params {
  float temperature = 1.0f;  // 0 = greedy
  int top_k = 0;             // 0 = no limit
  float top_p = 1.0f;        // nucleus mass in (0, 1]
  uint64_t seed = 0;
  bool seeded = false;  // unseeded samplers draw their seed from std::random_device

  /// Empty when valid, else a message naming the bad field and its range.
  std::string check() const;
};

/// Draws tokens from logits. Same params and seed, same sequence of tokens: the generator is
/// std::mt19937_64 (its output is fixed by the standard) and the uniform variate is made from
/// its bits here, not by an implementation-defined distribution.
class sampler {
 public:
  explicit sampler(const sampling_params& p);
  int32_t sample(const float* logits, int64_t vocab);
  const sampling_params& params() const { return p_; }

 private:
  sampling_params p_;
  std::mt19937_64 rng_;
};

/// Index of the largest logit (the lowest index among equal maxima).
int32_t argmax(const float* logits, int64_t vocab);

}  // namespace hs
