// Sampler: greedy, temperature, top-k, top-p distributions and validation.
#include <catch2/catch.hpp>
#include <cmath>
#include <map>

#include "hybridserve/sampler.hpp"

TEST_CASE("greedy picks the largest logit", "[sampler]") {
  const std::vector<float> l{0.1f, 2.f, -1.f, 2.f, 1.9f};
  hs::sampling_params p;
  p.temperature = 0;
  hs::sampler s(p);
  CHECK(s.sample(l.data(), 5) == 1);  // first of the tied maxima
  CHECK(hs::argmax(l.data(), 5) == 1);
}

TEST_CASE("temperature sampling follows softmax", "[sampler]") {
  // p(1) / p(0) = e^(ln 2) = 2 at T = 1; at T = 0.5 the ratio is 4.
  const std::vector<float> l{0.f, std::log(2.f), -50.f};
  for (float T : {1.0f, 0.5f}) {
    hs::sampling_params p;
    p.temperature = T;
    p.seeded = true;
    p.seed = 123;
    hs::sampler s(p);
    int ones = 0, twos = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
      const int t = s.sample(l.data(), 3);
      ones += t == 1;
      twos += t == 2;
    }
    const double expect = T == 1.0f ? 2.0 / 3.0 : 4.0 / 5.0;
    CHECK(std::fabs(double(ones) / n - expect) < 0.015);
    CHECK(twos == 0);
  }
}

TEST_CASE("top-k and top-p cut the tail", "[sampler]") {
  const std::vector<float> l{3.f, 2.f, 1.f, 0.f, -1.f};
  hs::sampling_params k;
  k.top_k = 2;
  k.seeded = true;
  hs::sampler sk(k);
  std::map<int, int> seen;
  for (int i = 0; i < 2000; ++i) seen[sk.sample(l.data(), 5)]++;
  CHECK(seen.size() == 2);
  CHECK(seen.count(0) == 1);
  CHECK(seen.count(1) == 1);

  // softmax(3,2,1,0,-1) = .636 .234 .086 .032 .012: top_p 0.8 keeps the first two.
  hs::sampling_params tp;
  tp.top_p = 0.8f;
  tp.seeded = true;
  hs::sampler sp(tp);
  seen.clear();
  for (int i = 0; i < 4000; ++i) seen[sp.sample(l.data(), 5)]++;
  CHECK(seen.size() == 2);
  CHECK(std::fabs(seen[0] / 4000.0 - 0.636 / 0.870) < 0.03);

  hs::sampling_params tiny;
  tiny.top_p = 0.01f;
  hs::sampler st(tiny);
  for (int i = 0; i < 100; ++i) CHECK(st.sample(l.data(), 5) == 0);
}

TEST_CASE("same seed, same draws; other seed, other draws", "[sampler]") {
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[i] = float(i % 7) * 0.1f;
  hs::sampling_params p;
  p.seeded = true;
  p.seed = 9;
  hs::sampler a(p), b(p);
  p.seed = 10;
  hs::sampler c(p);
  std::vector<int> da, db, dc;
  for (int i = 0; i < 50; ++i) {
    da.push_back(a.sample(l.data(), 100));
    db.push_back(b.sample(l.data(), 100));
    dc.push_back(c.sample(l.data(), 100));
  }
  CHECK(da == db);
  CHECK(da != dc);
}

TEST_CASE("invalid sampling parameters are named", "[sampler]") {
  hs::sampling_params p;
  CHECK(p.check().empty());
  p.temperature = -1;
  CHECK_THAT(p.check(), Catch::Contains("temperature"));
  p = {};
  p.top_p = 0;
  CHECK_THAT(p.check(), Catch::Contains("top_p"));
  p = {};
  p.top_k = -3;
  CHECK_THAT(p.check(), Catch::Contains("top_k"));
}
