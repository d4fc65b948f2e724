// Threshold sampler (temperature, top-k, top-p, one caller-supplied uniform per row): the CPU
// reference the GPU sampler is checked against. See sample_rows.hpp for the algorithm.
#include "hybridserve/sample_rows.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

namespace hs::cpu {

int32_t argmax_cpu(const float* l, int64_t V) {
  int64_t best = 0;
  for (int64_t i = 1; i < V; ++i)
    if (l[i] > l[best]) best = i;
  return int32_t(best);
}

namespace {

uint32_t key_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return sample_key(b);
}

int32_t sample_row(const float* l, int64_t V, const sample_row_params& p, float u) {
  const int32_t best = argmax_cpu(l, V);
  if (!(p.temperature > 0.f)) return best;
  const float mx = l[best];

  std::vector<float> prob(static_cast<std::size_t>(V));
  std::vector<uint32_t> key(static_cast<std::size_t>(V));
  for (int64_t i = 0; i < V; ++i) {
    prob[i] = std::exp((l[i] - mx) / p.temperature);
    key[i] = key_of(l[i]);
  }

  // Top-k threshold: the k-th largest key (multiplicity counted), so ties at it are kept.
  uint32_t thr = 0;
  if (p.top_k > 0 && p.top_k < V) {
    std::vector<uint32_t> sorted = key;
    std::nth_element(sorted.begin(), sorted.begin() + (p.top_k - 1), sorted.end(),
                     std::greater<uint32_t>());
    thr = sorted[std::size_t(p.top_k - 1)];
  }

  // Top-p threshold: walk the kept keys from the largest down, a group of equal keys at a time,
  // until the mass reaches top_p of the top-k mass.
  if (p.top_p < 1.f) {
    std::vector<int64_t> idx;
    double mass_k = 0;
    for (int64_t i = 0; i < V; ++i)
      if (key[i] >= thr) {
        idx.push_back(i);
        mass_k += prob[i];
      }
    std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return key[a] > key[b]; });
    const double target = double(p.top_p) * mass_k;
    double acc = 0;
    for (std::size_t j = 0; j < idx.size();) {
      const uint32_t k = key[idx[j]];
      for (; j < idx.size() && key[idx[j]] == k; ++j) acc += prob[idx[j]];
      if (acc >= target) {
        thr = std::max(thr, k);
        break;
      }
    }
  }

  double kept = 0;
  int64_t last = best;
  for (int64_t i = 0; i < V; ++i)
    if (key[i] >= thr) {
      kept += prob[i];
      last = i;
    }
  const double target = double(u) * kept;
  double acc = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (key[i] < thr) continue;
    acc += prob[i];
    if (acc > target) return int32_t(i);
  }
  return int32_t(last);
}

}  // namespace

void sample_rows_cpu(const float* logits, int64_t rows, int64_t V, const sample_row_params* params,
                     const float* u, int32_t* out) {
  for (int64_t r = 0; r < rows; ++r) out[r] = sample_row(logits + r * V, V, params[r], u[r]);
}

}  // namespace hs::cpu
