// The reference forward pass against the independent float64 fixtures: logits, layer inputs
// (activation checkpoints), K/V caches and greedy continuations, single and batched.
#include <catch2/catch.hpp>

#include "fixture_util.hpp"
#include "hybridserve/generate.hpp"

namespace {

struct fixture_case {
  std::shared_ptr<const hs::model> m;
  hs::tensor_store expected;
  explicit fixture_case(const std::string& name) {
    auto r = hs::load_model(hs::test::fixture(name));
    if (!r) throw std::runtime_error(r.error());
    m = *r;
    expected.add_file(hs::test::fixture(name) + "/expected.safetensors");
  }
  std::vector<int32_t> prompt(int i) const { return hs::test::ints(expected, p(i) + "prompt"); }
  std::vector<float> get(const std::string& n) const { return hs::test::floats(expected, n); }
  static std::string p(int i) { return "p" + std::to_string(i) + "."; }
};

// Fixture keys are [kv_heads, T, D]; our cache is token-major [T, kv_heads, D].
std::vector<float> to_head_major(const std::vector<float>& tm, int64_t T, int64_t H, int64_t D) {
  std::vector<float> out(tm.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < D; ++d) out[(h * T + t) * D + d] = tm[(t * H + h) * D + d];
  return out;
}

}  // namespace

TEST_CASE("prefill matches the reference: logits, layer inputs, K and V", "[forward]") {
  for (const char* name : {"opt-tiny", "llama-tiny"}) {
    fixture_case f(name);
    hs::reference_forward fwd(f.m);
    const auto& c = f.m->config;
    for (int i = 0; i < 4; ++i) {
      INFO(name << " prompt " << i);
      hs::sequence_kv kv;
      hs::forward_trace trace;
      std::vector<hs::forward_item> batch{{f.prompt(i), &kv, true}};
      const auto logits = fwd.run(batch, &trace);
      const int64_t T = int64_t(batch[0].tokens.size());
      CHECK(kv.length == T);
      CHECK(hs::test::max_abs_diff(logits[0], f.get(f.p(i) + "logits")) < 1e-3);
      for (int l = 0; l < c.n_layer; ++l) {
        INFO("layer " << l);
        const auto L = std::to_string(l);
        CHECK(hs::test::max_abs_diff(trace.layer_inputs[l], f.get(f.p(i) + "hidden." + L)) < 1e-4);
        CHECK(hs::test::max_abs_diff(to_head_major(kv.k[l], T, c.n_kv_head, c.head_dim),
                                     f.get(f.p(i) + "key." + L)) < 1e-4);
        CHECK(hs::test::max_abs_diff(to_head_major(kv.v[l], T, c.n_kv_head, c.head_dim),
                                     f.get(f.p(i) + "value." + L)) < 1e-4);
      }
    }
  }
}

TEST_CASE("a batch of different lengths equals the sequences run alone", "[forward]") {
  for (const char* name : {"opt-tiny", "llama-tiny"}) {
    fixture_case f(name);
    hs::reference_forward fwd(f.m);
    std::vector<hs::sequence_kv> kv(4);
    std::vector<hs::forward_item> batch;
    for (int i = 0; i < 4; ++i) batch.push_back({f.prompt(i), &kv[i], true});
    const auto logits = fwd.run(batch);
    for (int i = 0; i < 4; ++i) {
      INFO(name << " prompt " << i);
      CHECK(hs::test::max_abs_diff(logits[i], f.get(f.p(i) + "logits")) < 1e-3);
    }
  }
}

TEST_CASE("decode with the KV cache equals prefill (chunked and token by token)", "[forward]") {
  for (const char* name : {"opt-tiny", "llama-tiny"}) {
    fixture_case f(name);
    hs::reference_forward fwd(f.m);
    const auto prompt = f.prompt(1);  // 19 tokens
    const auto ref = f.get(f.p(1) + "logits");
    const int V = f.m->config.vocab;
    // Chunks of 5, 7, then one token at a time, mixed in one batch with another sequence that
    // is decoding, so items at different positions share every GEMM.
    hs::sequence_kv kv, other;
    std::vector<hs::forward_item> warm{{f.prompt(2), &other, false}};
    fwd.run(warm);
    std::size_t at = 0;
    std::vector<float> got;
    for (std::size_t chunk : {5u, 7u, 1u, 1u, 1u, 1u, 1u, 1u, 1u}) {
      std::vector<int32_t> toks(prompt.begin() + at, prompt.begin() + at + chunk);
      std::vector<hs::forward_item> batch{{toks, &kv, true}, {{5}, &other, false}};
      const auto out = fwd.run(batch);
      got.insert(got.end(), out[0].begin(), out[0].end());
      at += chunk;
    }
    REQUIRE(at == prompt.size());
    INFO(name);
    CHECK(got.size() == std::size_t(19 * V));
    CHECK(hs::test::max_abs_diff(got, ref) < 1e-3);
  }
}

TEST_CASE("greedy continuation equals the reference ids", "[forward][generate]") {
  for (const char* name : {"opt-tiny", "llama-tiny"}) {
    fixture_case f(name);
    hs::reference_forward fwd(f.m);
    std::vector<hs::generation_request> reqs;
    for (int i = 0; i < 4; ++i) {
      hs::generation_request r;
      r.prompt = f.prompt(i);
      r.max_tokens = 24;
      r.sampling.temperature = 0;
      r.stop_at_eos = false;  // the reference generated 24 tokens regardless of EOS
      reqs.push_back(r);
    }
    const auto res = hs::generate_reference(fwd, reqs);
    for (int i = 0; i < 4; ++i) {
      INFO(name << " prompt " << i);
      CHECK(res[i].tokens == hs::test::ints(f.expected, f.p(i) + "greedy"));
      CHECK(res[i].reason == hs::finish_reason::length);
    }
  }
}

TEST_CASE("bad forward input is an error and leaves caches untouched", "[forward]") {
  fixture_case f("opt-tiny");
  hs::reference_forward fwd(f.m);
  hs::sequence_kv kv;
  std::vector<hs::forward_item> bad{{{2, 5000}, &kv, false}};
  CHECK_THROWS_WITH(fwd.run(bad), Catch::Contains("5000") && Catch::Contains("out of range"));
  CHECK(kv.length == 0);
  std::vector<hs::forward_item> longp{{std::vector<int32_t>(300, 5), &kv, false}};
  CHECK_THROWS_WITH(fwd.run(longp), Catch::Contains("context overflow"));
  CHECK(kv.length == 0);
}
