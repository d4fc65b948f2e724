// CPU reference ops on hand-checkable inputs (the fixtures test them together end to end).
#include <catch2/catch.hpp>
#include <cmath>

#include "hybridserve/kernels_cpu.hpp"

TEST_CASE("linear is x @ W^T + b", "[kernels]") {
  const float x[] = {1, 2, 3, 4, 5, 6};   // [2, 3]
  const float w[] = {1, 0, -1, 2, 1, 0};  // [2, 3]
  const float b[] = {10, 20};
  float y[4];
  hs::cpu::linear_cpu(x, w, b, y, 2, 2, 3);
  CHECK(y[0] == Approx(1 - 3 + 10));
  CHECK(y[1] == Approx(2 + 2 + 20));
  CHECK(y[2] == Approx(4 - 6 + 10));
  CHECK(y[3] == Approx(8 + 5 + 20));
}

TEST_CASE("norms", "[kernels]") {
  const float x[] = {1, 2, 3, 4};
  const float g[] = {1, 1, 1, 2};
  const float b[] = {0, 0, 0, 1};
  float y[4];
  hs::cpu::layernorm_cpu(x, g, b, y, 1, 4, 0.f);
  // mean 2.5, var 1.25
  CHECK(y[0] == Approx(-1.5 / std::sqrt(1.25)));
  CHECK(y[3] == Approx(2 * 1.5 / std::sqrt(1.25) + 1));
  hs::cpu::rmsnorm_cpu(x, g, y, 1, 4, 0.f);
  const double rms = std::sqrt((1 + 4 + 9 + 16) / 4.0);
  CHECK(y[1] == Approx(2 / rms));
  CHECK(y[3] == Approx(8 / rms));
}

TEST_CASE("rope rotates pairs (i, i + D/2) by pos * theta^(-2i/D)", "[kernels]") {
  float x[] = {1, 0, 0, 0, 0, 1, 0, 0};  // [1 token, 2 heads, D = 4]
  const int32_t pos[] = {3};
  hs::cpu::rope_cpu(x, pos, 1, 2, 4, 100.f);
  // head 0, pair (0, 2): angle 3 * 100^0 = 3
  CHECK(x[0] == Approx(std::cos(3.0)));
  CHECK(x[2] == Approx(std::sin(3.0)));
  // head 1, pair (1, 3): angle 3 * 100^(-1/2) = 0.3
  CHECK(x[5] == Approx(std::cos(0.3)));
  CHECK(x[7] == Approx(std::sin(0.3)));
  const int32_t zero[] = {0};
  float y[] = {1, 2, 3, 4};
  hs::cpu::rope_cpu(y, zero, 1, 1, 4, 10000.f);
  CHECK(y[1] == 2);
}

TEST_CASE("attention is causal and maps query heads to kv groups", "[kernels]") {
  // 2 query heads sharing 1 kv head, D = 1, 2 tokens, no past.
  const float q[] = {1, -1, 1, -1};  // [T=2, heads=2, D=1]
  const float k[] = {0, 1};          // [T=2, kv=1, D=1]
  const float v[] = {10, 20};
  float o[4];
  hs::cpu::attention_cpu(q, k, v, o, 2, 2, 2, 1, 1, 1.f);
  CHECK(o[0] == Approx(10));  // token 0 sees only key 0
  CHECK(o[1] == Approx(10));
  const double p1 = std::exp(1.0) / (1 + std::exp(1.0));
  CHECK(o[2] == Approx(10 * (1 - p1) + 20 * p1));  // head 0: q=1 favours key 1
  CHECK(o[3] == Approx(10 * p1 + 20 * (1 - p1)));  // head 1: q=-1 favours key 0
  // With one past token, a single query sees both keys.
  float o2[2];
  hs::cpu::attention_cpu(q + 2, k, v, o2, 1, 2, 2, 1, 1, 1.f);
  CHECK(o2[0] == Approx(o[2]));
}

TEST_CASE("activations", "[kernels]") {
  float x[] = {-1, 0.5f};
  hs::cpu::relu_cpu(x, 2);
  CHECK(x[0] == 0);
  CHECK(x[1] == 0.5f);
  const float g[] = {1, -2}, u[] = {2, 3};
  float o[2];
  hs::cpu::silu_mul_cpu(g, u, o, 2);
  CHECK(o[0] == Approx(2 / (1 + std::exp(-1.0))));
  CHECK(o[1] == Approx(3 * -2 / (1 + std::exp(2.0))));
}

TEST_CASE("paged attention equals contiguous attention for any block size", "[kernels]") {
  // Two sequences: 5 past + 2 new tokens, and 0 past + 3 new; 4 heads over 2 kv heads, D = 3.
  const int64_t H = 4, KV = 2, D = 3;
  const int32_t ctx[] = {7, 3}, nq[] = {2, 3};
  std::vector<std::vector<float>> k(2), v(2), q(2);
  uint32_t x = 1;
  auto rnd = [&] { return float((x = x * 1664525u + 1013904223u) >> 8) / 16777216.f - 0.5f; };
  for (int s = 0; s < 2; ++s) {
    for (int i = 0; i < ctx[s] * KV * D; ++i) k[s].push_back(rnd()), v[s].push_back(rnd());
    for (int i = 0; i < nq[s] * H * D; ++i) q[s].push_back(rnd());
  }
  std::vector<float> ref;
  for (int s = 0; s < 2; ++s) {
    std::vector<float> o(q[s].size());
    hs::cpu::attention_cpu(q[s].data(), k[s].data(), v[s].data(), o.data(), nq[s], ctx[s], H, KV, D,
                           0.7f);
    ref.insert(ref.end(), o.begin(), o.end());
  }
  for (int64_t bs : {1, 2, 3, 8}) {
    // Copy each sequence's context into blocks of bs tokens.
    std::vector<std::vector<float>> store;
    std::vector<const float*> kb, vb;
    std::vector<int32_t> blk_start;
    for (int s = 0; s < 2; ++s) {
      blk_start.push_back(int32_t(kb.size()));
      for (int64_t t0 = 0; t0 < ctx[s]; t0 += bs) {
        std::vector<float> kblk(std::size_t(bs * KV * D), NAN), vblk(kblk.size(), NAN);
        for (int64_t t = t0; t < std::min<int64_t>(ctx[s], t0 + bs); ++t)
          for (int64_t i = 0; i < KV * D; ++i) {
            kblk[std::size_t((t - t0) * KV * D + i)] = k[s][std::size_t(t * KV * D + i)];
            vblk[std::size_t((t - t0) * KV * D + i)] = v[s][std::size_t(t * KV * D + i)];
          }
        store.push_back(std::move(kblk));
        kb.push_back(store.back().data());
        store.push_back(std::move(vblk));
        vb.push_back(store.back().data());
      }
    }
    std::vector<float> qall(q[0]);
    qall.insert(qall.end(), q[1].begin(), q[1].end());
    std::vector<float> out(qall.size());
    const int32_t q_start[] = {0, 2, 5};
    hs::cpu::attention_paged_cpu(qall.data(), out.data(), q_start, ctx, blk_start.data(), kb.data(),
                                 vb.data(), 2, H, KV, D, bs, 0.7f);
    INFO("block size " << bs);
    for (std::size_t i = 0; i < ref.size(); ++i) CHECK(out[i] == Approx(ref[i]).margin(1e-6));
  }
}
