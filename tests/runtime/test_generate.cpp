// Generation loop: stop ids, EOS, max tokens, per-request errors.
#include <catch2/catch.hpp>

#include "fixture_util.hpp"
#include "hybridserve/generate.hpp"

TEST_CASE("stop ids, EOS and max_tokens end a request", "[generate]") {
  auto m = *hs::load_model(hs::test::fixture("opt-tiny"));
  hs::tensor_store e;
  e.add_file(hs::test::fixture("opt-tiny") + "/expected.safetensors");
  const auto greedy = hs::test::ints(e, "p0.greedy");
  hs::reference_forward fwd(m);
  hs::generation_request base;
  base.prompt = hs::test::ints(e, "p0.prompt");
  base.sampling.temperature = 0;

  auto stop = base;
  stop.stop_ids = {greedy[3]};
  auto len = base;
  len.max_tokens = 5;
  auto bad = base;
  bad.prompt = {2, 99999};
  auto zero = base;
  zero.max_tokens = 0;
  const auto res = hs::generate_reference(fwd, {stop, len, bad, zero});
  CHECK(res[0].tokens == std::vector<int32_t>(greedy.begin(), greedy.begin() + 4));
  CHECK(res[0].reason == hs::finish_reason::stop);
  CHECK(res[1].tokens == std::vector<int32_t>(greedy.begin(), greedy.begin() + 5));
  CHECK(res[1].reason == hs::finish_reason::length);
  CHECK(res[2].reason == hs::finish_reason::error);
  CHECK_THAT(res[2].error, Catch::Contains("99999"));
  CHECK(res[3].tokens.empty());

  // EOS: make the model's EOS the 3rd greedy token.
  auto m2 = std::make_shared<hs::model>(*m);
  m2->config.eos_ids = {greedy[2]};
  hs::reference_forward fwd2(m2);
  auto eos = base;
  const auto r2 = hs::generate_reference(fwd2, {eos});
  CHECK(r2[0].tokens.size() == 3);
  CHECK(r2[0].reason == hs::finish_reason::stop);
}

TEST_CASE("seeded sampling is reproducible through generation", "[generate]") {
  auto m = *hs::load_model(hs::test::fixture("llama-tiny"));
  hs::reference_forward fwd(m);
  hs::generation_request r;
  r.prompt = m->encode_prompt("Copyright (C) 2007 Free Software");
  r.max_tokens = 16;
  r.stop_at_eos = false;
  r.sampling.temperature = 1.0f;
  r.sampling.seeded = true;
  r.sampling.seed = 42;
  auto other = r;
  other.sampling.seed = 43;
  const auto a = hs::generate_reference(fwd, {r, other});
  const auto b = hs::generate_reference(fwd, {r});
  CHECK(a[0].tokens == b[0].tokens);
  CHECK(a[0].tokens != a[1].tokens);
  CHECK(a[0].tokens.size() == 16);
}
