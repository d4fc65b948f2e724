// Sampling pipeline: logits / T -> top-k -> softmax -> top-p -> draw.
#include "hybridserve/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "hybridserve/sample_rows.hpp"

namespace hs {

std::string sampling_params::check() const {
  if (!(temperature >= 0.f) || !std::isfinite(temperature))
    return "temperature must be a finite number >= 0 (0 = greedy)";
  if (top_k < 0) return "top_k must be >= 0 (0 = no limit)";
  if (!(top_p > 0.f && top_p <= 1.f)) return "top_p must be in (0, 1]";
  return {};
}

int32_t argmax(const float* logits, int64_t vocab) {
  return cpu::argmax_cpu(logits, vocab);
}

sampler::sampler(const sampling_params& p) : p_(p) {
  rng_.seed(p.seeded ? p.seed : (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}());
}

int32_t sampler::sample(const float* logits, int64_t vocab) {
  if (p_.temperature <= 0.f) return argmax(logits, vocab);
  std::vector<int32_t> idx(static_cast<std::size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  // Descending by logit, ties by id, so the order (and the draw) is fully determined.
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  int64_t n = vocab;
  if (p_.top_k > 0 && p_.top_k < vocab) {
    n = p_.top_k;
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), by_logit);
  } else {
    std::sort(idx.begin(), idx.end(), by_logit);
  }
  std::vector<double> prob(static_cast<std::size_t>(n));
  const double mx = logits[idx[0]];
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    prob[i] = std::exp((double(logits[idx[i]]) - mx) / double(p_.temperature));
    sum += prob[i];
  }
  // Nucleus: the smallest prefix whose mass reaches top_p (at least one token).
  int64_t keep = n;
  if (p_.top_p < 1.f) {
    double acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      acc += prob[i] / sum;
      if (acc >= double(p_.top_p)) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (int64_t i = 0; i < keep; ++i) kept += prob[i];
  const double u = double(rng_() >> 11) * (1.0 / 9007199254740992.0) * kept;  // [0, kept)
  double acc = 0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += prob[i];
    if (u < acc) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace hs
