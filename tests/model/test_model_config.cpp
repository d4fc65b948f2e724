// config.json parsing: both fixture spellings, older spellings, and every rejection.
#include <catch2/catch.hpp>

#include "fixture_util.hpp"
#include "hybridserve/model_config.hpp"

using json = nlohmann::json;

namespace {
json fixture_config(const std::string& m) {
  return json::parse(hs::test::read_file(hs::test::fixture(m) + "/config.json"));
}
std::string parse_error(const json& j) {
  try {
    hs::parse_model_config_text(j.dump(), "cfg.json");
  } catch (const hs::error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("fixture configs parse", "[config]") {
  auto opt = hs::load_model_config(hs::test::fixture("opt-tiny") + "/config.json");
  REQUIRE(opt.ok());
  CHECK(opt->architecture == hs::arch::opt);
  CHECK(opt->hidden == 64);
  CHECK(opt->n_layer == 3);
  CHECK(opt->head_dim == 16);
  CHECK(opt->ffn == 256);
  CHECK(opt->tied_embeddings);
  CHECK(opt->attn_bias);
  CHECK(opt->weight_dtype == hs::dtype::f16);

  auto llama = hs::load_model_config(hs::test::fixture("llama-tiny") + "/config.json");
  REQUIRE(llama.ok());
  CHECK(llama->architecture == hs::arch::llama);
  CHECK(llama->n_kv_head == 2);
  CHECK(llama->kv_dim() == 32);
  CHECK(llama->ffn == 172);
  CHECK(llama->rope_theta == 10000.f);  // from rope_parameters.rope_theta
  CHECK(llama->weight_dtype == hs::dtype::bf16);
  CHECK_FALSE(llama->tied_embeddings);
  CHECK(llama->eos_ids == std::vector<int32_t>{2});
}

TEST_CASE("older spellings: torch_dtype and top-level rope_theta", "[config]") {
  json j = fixture_config("llama-tiny");
  j.erase("dtype");
  j["torch_dtype"] = "float32";
  j.erase("rope_parameters");
  j["rope_theta"] = 500000.0;
  j["eos_token_id"] = {2, 5};
  auto c = hs::parse_model_config_text(j.dump(), "x");
  CHECK(c.weight_dtype == hs::dtype::f32);
  CHECK(c.rope_theta == 500000.f);
  CHECK(c.eos_ids == std::vector<int32_t>{2, 5});
}

TEST_CASE("unsupported or impossible configs are errors naming file and key", "[config]") {
  json j = fixture_config("llama-tiny");
  j["architectures"] = {"MistralForCausalLM"};
  CHECK_THAT(parse_error(j), Catch::Contains("cfg.json") && Catch::Contains("MistralForCausalLM"));

  j = fixture_config("llama-tiny");
  j["num_key_value_heads"] = 3;
  CHECK_THAT(parse_error(j), Catch::Contains("not a multiple"));

  j = fixture_config("llama-tiny");
  j["hidden_size"] = "64";
  CHECK_THAT(parse_error(j), Catch::Contains("'hidden_size'") && Catch::Contains("integer"));

  j = fixture_config("llama-tiny");
  j["rope_parameters"]["rope_type"] = "yarn";
  CHECK_THAT(parse_error(j), Catch::Contains("yarn"));

  j = fixture_config("llama-tiny");
  j["dtype"] = "float8";
  CHECK_THAT(parse_error(j), Catch::Contains("'dtype'") && Catch::Contains("float8"));

  j = fixture_config("llama-tiny");
  j.erase("vocab_size");
  CHECK_THAT(parse_error(j), Catch::Contains("'vocab_size' is missing"));

  j = fixture_config("opt-tiny");
  j["do_layer_norm_before"] = false;
  CHECK_THAT(parse_error(j), Catch::Contains("do_layer_norm_before"));

  j = fixture_config("opt-tiny");
  j["activation_function"] = "gelu";
  CHECK_THAT(parse_error(j), Catch::Contains("gelu"));

  j = fixture_config("opt-tiny");
  j["num_attention_heads"] = 5;
  CHECK_THAT(parse_error(j), Catch::Contains("divisible"));

  j = fixture_config("opt-tiny");
  j["num_hidden_layers"] = 0;
  CHECK_THAT(parse_error(j), Catch::Contains("num_hidden_layers"));

  CHECK_THAT(std::string(hs::load_model_config("/no/such/config.json").error()),
             Catch::Contains("/no/such/config.json"));
  try {
    hs::parse_model_config_text("{not json", "bad.json");
    FAIL("no error");
  } catch (const hs::error& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains("bad.json") && Catch::Contains("JSON"));
  }
}
