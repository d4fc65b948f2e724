// [gpu] argmax and temperature/top-k/top-p sampling against sample_rows_cpu: same token for the
// same uniform, with u and top_p kept away from probability boundaries by construction.
#include <algorithm>
#include <catch2/catch.hpp>

#include "gpu_test_util.hpp"
#include "hybridserve/kernels_cuda.hpp"
#include "hybridserve/sample_rows.hpp"

namespace {

int32_t cpu_one(const float* l, int64_t V, hs::sample_row_params p, float u) {
  int32_t t;
  hs::cpu::sample_rows_cpu(l, 1, V, &p, &u, &t);
  return t;
}

// True when nudging u or top_p by 1e-4 cannot change the CPU's answer: the GPU's sums round
// differently from the CPU's, so only draws clear of every boundary are compared.
bool clear_of_boundaries(const float* l, int64_t V, hs::sample_row_params p, float u) {
  const int32_t t = cpu_one(l, V, p, u);
  const float d = 1e-4f;
  if (cpu_one(l, V, p, std::max(0.f, u - d)) != t ||
      cpu_one(l, V, p, std::min(0.9999f, u + d)) != t)
    return false;
  if (p.top_p < 1.f) {
    auto q = p;
    for (float tp : {p.top_p - d, p.top_p + d}) {
      q.top_p = tp;
      if (cpu_one(l, V, q, u) != t) return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("sample_rows_cpu: greedy, top_k = 1 and tie rules", "[gpu]") {
  const std::vector<float> l{0.5f, 2.f, -1.f, 2.f, 1.f};
  hs::sample_row_params greedy{0.f, 0, 1.f}, k1{0.8f, 1, 1.f}, k2{1.f, 2, 1.f};
  CHECK(cpu_one(l.data(), 5, greedy, 0.3f) == 1);  // lowest index among equal maxima
  CHECK(cpu_one(l.data(), 5, k1, 0.99f) == 3);     // k = 1 keeps both tied maxima: 1 and 3
  CHECK(cpu_one(l.data(), 5, k1, 0.2f) == 1);
  CHECK(cpu_one(l.data(), 5, k2, 0.7f) == 3);
}

TEST_CASE("argmax_rows picks the lowest index among equal maxima", "[gpu]") {
  gt::stream st;
  std::mt19937 rng(31);
  for (int64_t V : {1, 7, 1000, 50272, 128256}) {
    const int64_t rows = 5;
    std::vector<float> l(rows * V);
    std::normal_distribution<float> nd(0.f, 3.f);
    for (auto& x : l) x = nd(rng);
    l[2 * V + V / 2] = 100.f;  // row 2: ties at V/2 and V-1 (V/2 first)
    l[2 * V + V - 1] = 100.f;
    for (int64_t i = 0; i < V; ++i) l[3 * V + i] = -INFINITY;  // row 3: all -inf -> 0
    gt::dev<float> dl(l);
    gt::dev<int32_t> out(rows);
    out.poison();
    hs::cuda::argmax_rows(dl.get(), rows, V, out.get(), st);
    const auto got = out.host();
    for (int64_t r = 0; r < rows; ++r) CHECK(got[r] == cpu_one(&l[r * V], V, {0.f, 0, 1.f}, 0.f));
  }
}

TEST_CASE("sample_rows on the GPU draws what sample_rows_cpu draws", "[gpu]") {
  gt::stream st;
  std::mt19937 rng(32);
  const std::vector<hs::sample_row_params> settings{
      {0.f, 0, 1.f},    {1.f, 0, 1.f}, {0.7f, 0, 1.f}, {1.f, 50, 1.f},  {1.3f, 0, 0.9f},
      {0.8f, 40, 0.8f}, {1.f, 1, 1.f}, {2.f, 7, 0.5f}, {0.5f, 0, 0.3f}, {1.f, 3, 0.999f}};
  for (int64_t V : {7, 1000, 50272}) {
    const int64_t rows = 64;
    std::vector<float> l(rows * V), u(rows);
    std::vector<hs::sample_row_params> p(rows);
    std::normal_distribution<float> nd(0.f, 2.f);
    std::uniform_real_distribution<float> ud(0.f, 0.999f);
    for (auto& x : l) x = nd(rng);
    // Row 1: many tied logits, so thresholds and scans go through equal keys.
    for (int64_t i = 0; i < V; ++i) l[V + i] = float(int(l[V + i]));
    for (int64_t r = 0; r < rows; ++r) {
      p[r] = settings[r % settings.size()];
      do u[r] = ud(rng);
      while (!clear_of_boundaries(&l[r * V], V, p[r], u[r]));
    }
    std::vector<int32_t> ref(rows);
    hs::cpu::sample_rows_cpu(l.data(), rows, V, p.data(), u.data(), ref.data());
    gt::dev<float> dl(l), du(u);
    gt::dev<hs::sample_row_params> dp(p);
    gt::dev<int32_t> out(rows);
    out.poison();
    hs::cuda::sample_rows(dl.get(), rows, V, dp.get(), du.get(), out.get(), st);
    const auto got = out.host();
    for (int64_t r = 0; r < rows; ++r) {
      INFO("V=" << V << " row " << r << " T=" << p[r].temperature << " k=" << p[r].top_k
                << " p=" << p[r].top_p << " u=" << u[r]);
      CHECK(got[r] == ref[r]);
    }
  }
}
