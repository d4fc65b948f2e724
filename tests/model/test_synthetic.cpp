// Synthetic models: published parameter counts, explicit shapes, seeded determinism.
#include <catch2/catch.hpp>
#include <cstring>

#include "fixture_util.hpp"
#include "hybridserve/synthetic_model.hpp"

TEST_CASE("named shapes have the published parameter counts", "[synthetic]") {
  // Published totals (model cards / HF num_parameters()).
  CHECK(hs::synthetic_config("llama-2-7b")->parameter_count() == 6738415616LL);
  CHECK(hs::synthetic_config("llama-3-8b")->parameter_count() == 8030261248LL);
  CHECK(hs::synthetic_config("llama-2-70b")->parameter_count() == 68976648192LL);
  CHECK(hs::synthetic_config("opt-125m")->parameter_count() == 125239296LL);
  const auto opt13 = hs::synthetic_config("opt-13b")->parameter_count();
  CHECK(opt13 > 12.8e9);
  CHECK(opt13 < 12.9e9);
  for (const auto& n : hs::synthetic_shape_names()) CHECK(hs::synthetic_config(n).ok());
}

TEST_CASE("explicit synthetic shapes and their errors", "[synthetic]") {
  auto c = hs::synthetic_config("llama:hidden=64,layers=2,heads=4,kv_heads=1,ffn=96,vocab=300");
  REQUIRE(c.ok());
  CHECK(c->architecture == hs::arch::llama);
  CHECK(c->n_kv_head == 1);
  CHECK(c->head_dim == 16);
  CHECK_THAT(hs::synthetic_config("gpt:hidden=1").error(), Catch::Contains("unknown"));
  CHECK_THAT(hs::synthetic_config("opt:hidden=64,layers=2,heads=4,ffn=96,vocab=300,foo=1").error(),
             Catch::Contains("'foo'"));
  CHECK_THAT(hs::synthetic_config("opt:hidden=64,layers=2,heads=5,ffn=96,vocab=300").error(),
             Catch::Contains("divisible"));
  CHECK_THAT(hs::synthetic_config("opt:hidden=x").error(), Catch::Contains("not a number"));
}

TEST_CASE("synthetic weights are seeded and bound like a checkpoint", "[synthetic]") {
  auto cfg = *hs::synthetic_config("llama:hidden=64,layers=2,heads=4,kv_heads=2,ffn=96,vocab=300");
  auto a = hs::make_synthetic_model(cfg, 7);
  auto b = hs::make_synthetic_model(cfg, 7);
  auto c = hs::make_synthetic_model(cfg, 8);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(c.ok());
  const auto& wa = (*a)->weights.layers[1].wk;
  const auto& wb = (*b)->weights.layers[1].wk;
  const auto& wc = (*c)->weights.layers[1].wk;
  CHECK(wa.shape == std::vector<int64_t>{32, 64});
  CHECK(std::memcmp(wa.data, wb.data, wa.nbytes) == 0);
  CHECK(std::memcmp(wa.data, wc.data, wa.nbytes) != 0);
  // Values are in the advertised range and not constant.
  std::vector<float> f(std::size_t(wa.numel()));
  hs::cpu::convert_to_f32(wa, f.data());
  const auto [mn, mx] = std::minmax_element(f.begin(), f.end());
  CHECK(*mn >= -0.035f);
  CHECK(*mx <= 0.035f);
  CHECK(*mx - *mn > 0.03f);
  CHECK((*a)->store->total_bytes() == std::size_t(cfg.parameter_count()) * 2);
  // Byte tokenizer round-trips arbitrary UTF-8 text.
  const std::string text = "héllo, wörld ✓";
  CHECK((*a)->tok->decode((*a)->tok->encode(text)) == text);
  CHECK((*a)->tok->encode("ab").size() == 2);
}
