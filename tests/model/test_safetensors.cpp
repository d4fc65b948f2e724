// safetensors loading: real fixtures, shards, and every kind of broken file.
#include <catch2/catch.hpp>
#include <functional>

#include "fixture_util.hpp"
#include "hybridserve/half.hpp"
#include "hybridserve/model.hpp"

using hs::test::fixture;
using json = nlohmann::json;

TEST_CASE("fixture checkpoints map with the right dtypes and shapes", "[safetensors]") {
  hs::tensor_store s;
  s.add_checkpoint_dir(fixture("opt-tiny"));
  CHECK(s.names().size() == 52);  // 53 header entries minus __metadata__
  const auto& e = s.get("model.decoder.embed_positions.weight");
  CHECK(e.type == hs::dtype::f16);
  CHECK(e.shape == std::vector<int64_t>{258, 64});
  CHECK(e.nbytes == 258 * 64 * 2);
  CHECK_THROWS_WITH(s.get("model.decoder.embed_tokens.weight", {1024, 65}),
                    Catch::Contains("embed_tokens.weight") && Catch::Contains("[1024, 64]") &&
                        Catch::Contains("model.safetensors"));
  CHECK_THROWS_WITH(s.get("nope"), Catch::Contains("missing tensor 'nope'"));

  hs::tensor_store l;
  l.add_checkpoint_dir(fixture("llama-tiny"));
  CHECK(l.get("model.layers.0.self_attn.k_proj.weight").shape == std::vector<int64_t>{32, 64});
  CHECK(l.get("lm_head.weight").type == hs::dtype::bf16);
}

TEST_CASE("fp16 and bf16 conversions are exact", "[safetensors]") {
  CHECK(hs::f16_to_f32(0x3c00) == 1.0f);
  CHECK(hs::f16_to_f32(0xc000) == -2.0f);
  CHECK(hs::f16_to_f32(0x7bff) == 65504.0f);
  CHECK(hs::f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(std::isinf(hs::f16_to_f32(0x7c00)));
  CHECK(hs::bf16_to_f32(0x3f80) == 1.0f);
  int mismatches = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = hs::f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    if (hs::f32_to_f16(f) != h) ++mismatches;
  }
  CHECK(mismatches == 0);
  CHECK(hs::f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie -> even
  CHECK(hs::f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(hs::f32_to_f16(70000.f) == 0x7c00);
  CHECK(hs::f32_to_bf16(1.00390625f) == 0x3f80);  // tie -> even
}

namespace {
std::string f32_blob(int n) {
  return std::string(std::size_t(n) * 4, '\0');
}
json one_tensor(const std::string& dt, json shape, uint64_t b, uint64_t e) {
  return json{{"w", {{"dtype", dt}, {"shape", shape}, {"data_offsets", {b, e}}}}};
}
}  // namespace

TEST_CASE("broken safetensors files are clear errors naming file and tensor", "[safetensors]") {
  hs::test::temp_dir d;
  const auto p = d.file("m.safetensors");
  auto err = [&](const std::string& bytes) -> std::string {
    hs::test::write_file(p, bytes);
    hs::tensor_store s;
    try {
      s.add_file(p);
    } catch (const hs::error& e) {
      return e.what();
    }
    return "";
  };
  CHECK_THAT(err("abc"), Catch::Contains(p) && Catch::Contains("truncated"));
  std::string huge(8, '\0');
  huge[0] = char(0xff);
  huge[4] = 1;
  CHECK_THAT(err(huge + "{}"), Catch::Contains("longer than the file"));
  CHECK_THAT(err(hs::test::safetensors_bytes(json::array({1}), "")),
             Catch::Contains("not a JSON object"));
  std::string bad = hs::test::safetensors_bytes(json::object(), "");
  bad[8] = '[';
  CHECK_THAT(err(bad), Catch::Contains("not valid JSON"));
  CHECK_THAT(
      err(hs::test::safetensors_bytes(one_tensor("F8_E4M3", {2}, 0, 2), "xx")),
      Catch::Contains("'w'") && Catch::Contains("unsupported dtype") && Catch::Contains("F8_E4M3"));
  CHECK_THAT(err(hs::test::safetensors_bytes(one_tensor("F32", {4}, 0, 16), f32_blob(3))),
             Catch::Contains("'w'") && Catch::Contains("out of range"));
  CHECK_THAT(err(hs::test::safetensors_bytes(one_tensor("F32", {4}, 8, 4), f32_blob(4))),
             Catch::Contains("out of range"));
  CHECK_THAT(err(hs::test::safetensors_bytes(one_tensor("F32", {5}, 0, 16), f32_blob(4))),
             Catch::Contains("needs 20"));
  CHECK_THAT(err(hs::test::safetensors_bytes(one_tensor("F32", {-1}, 0, 0), "")),
             Catch::Contains("bad dimension"));
  CHECK_THAT(err(hs::test::safetensors_bytes(json{{"w", {{"dtype", "F32"}}}}, "")),
             Catch::Contains("data_offsets"));
  CHECK(err(hs::test::safetensors_bytes(one_tensor("F32", {4}, 0, 16), f32_blob(4))).empty());

  hs::tensor_store s;
  CHECK_THROWS_WITH(s.add_file(d.file("absent.safetensors")),
                    Catch::Contains("absent.safetensors") && Catch::Contains("cannot open"));
}

TEST_CASE("a truncated copy of a real checkpoint is rejected", "[safetensors]") {
  hs::test::temp_dir d;
  const auto bytes = hs::test::read_file(fixture("opt-tiny") + "/model.safetensors");
  hs::test::write_file(d.file("model.safetensors"), bytes.substr(0, bytes.size() - 100));
  hs::tensor_store s;
  CHECK_THROWS_WITH(s.add_checkpoint_dir(d.path),
                    Catch::Contains("out of range") && Catch::Contains("truncated"));
}

TEST_CASE("sharded checkpoints load through the index", "[safetensors]") {
  hs::test::temp_dir d;
  // Two shards: tensor a in the first, b in the second.
  hs::test::write_file(
      d.file("model-00001-of-00002.safetensors"),
      hs::test::safetensors_bytes(
          json{{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}},
          std::string("\0\0\x80\x3f\0\0\0\x40", 8)));
  hs::test::write_file(
      d.file("model-00002-of-00002.safetensors"),
      hs::test::safetensors_bytes(
          json{{"b", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}}}},
          std::string("\0\0\x40\x40", 4)));
  json index = {
      {"metadata", json::object()},
      {"weight_map",
       {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
  hs::test::write_file(d.file("model.safetensors.index.json"), index.dump());
  hs::tensor_store s;
  s.add_checkpoint_dir(d.path);
  CHECK(hs::test::floats(s, "a") == std::vector<float>{1.0f, 2.0f});
  CHECK(hs::test::floats(s, "b") == std::vector<float>{3.0f});
  CHECK_THAT(s.source_of("b"), Catch::Contains("00002"));

  index["weight_map"]["c"] = "model-00002-of-00002.safetensors";
  hs::test::write_file(d.file("model.safetensors.index.json"), index.dump());
  hs::tensor_store s2;
  CHECK_THROWS_WITH(s2.add_checkpoint_dir(d.path), Catch::Contains("'c'"));
  index["weight_map"]["c"] = "missing.safetensors";
  hs::test::write_file(d.file("model.safetensors.index.json"), index.dump());
  hs::tensor_store s3;
  CHECK_THROWS_WITH(s3.add_checkpoint_dir(d.path), Catch::Contains("missing.safetensors"));
  hs::tensor_store s4;
  CHECK_THROWS_WITH(s4.add_checkpoint_dir(d.file("nothing")),
                    Catch::Contains("no model.safetensors"));
}

namespace {
// Copies a fixture to a temp folder with its config edited / a tensor dropped or reshaped.
void copy_fixture(const std::string& name, const hs::test::temp_dir& d) {
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json",
                        "tokenizer_config.json", "generation_config.json"})
    hs::test::write_file(d.file(f), hs::test::read_file(fixture(name) + "/" + f));
}
void rewrite_checkpoint(const hs::test::temp_dir& d, const std::function<void(json&)>& edit) {
  const auto bytes = hs::test::read_file(d.file("model.safetensors"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[i]);
  json h = json::parse(bytes.substr(8, n));
  edit(h);
  hs::test::write_file(d.file("model.safetensors"),
                       hs::test::safetensors_bytes(h, bytes.substr(8 + n)));
}
}  // namespace

TEST_CASE("model loading errors name the tensor", "[model]") {
  {
    hs::test::temp_dir d;
    copy_fixture("llama-tiny", d);
    rewrite_checkpoint(d, [](json& h) { h.erase("model.layers.1.mlp.up_proj.weight"); });
    auto m = hs::load_model(d.path);
    REQUIRE_FALSE(m.ok());
    CHECK_THAT(m.error(),
               Catch::Contains("model.layers.1.mlp.up_proj.weight") && Catch::Contains("missing"));
  }
  {
    hs::test::temp_dir d;
    copy_fixture("llama-tiny", d);
    rewrite_checkpoint(d, [](json& h) {
      h["model.layers.2.self_attn.k_proj.weight"]["shape"] = {64, 32};
    });
    auto m = hs::load_model(d.path);
    REQUIRE_FALSE(m.ok());
    CHECK_THAT(m.error(), Catch::Contains("model.layers.2.self_attn.k_proj.weight") &&
                              Catch::Contains("[64, 32]") && Catch::Contains("expected [32, 64]"));
  }
  {
    hs::test::temp_dir d;
    copy_fixture("llama-tiny", d);
    rewrite_checkpoint(d, [](json& h) { h.erase("lm_head.weight"); });
    auto m = hs::load_model(d.path);
    REQUIRE_FALSE(m.ok());
    CHECK_THAT(m.error(), Catch::Contains("lm_head.weight"));
  }
  {
    hs::test::temp_dir d;
    copy_fixture("opt-tiny", d);
    rewrite_checkpoint(d, [](json& h) { h["model.decoder.layers.0.fc1.bias"]["dtype"] = "I64"; });
    // 256 I64 need 2048 bytes; the entry holds 512: the byte check catches it first.
    auto m = hs::load_model(d.path);
    REQUIRE_FALSE(m.ok());
    CHECK_THAT(m.error(), Catch::Contains("fc1.bias"));
  }
  {
    auto m = hs::load_model("/nonexistent/model");
    REQUIRE_FALSE(m.ok());
    CHECK_THAT(m.error(), Catch::Contains("/nonexistent/model"));
  }
}

TEST_CASE("fixture models load with tokenizer and special tokens", "[model]") {
  auto opt = hs::load_model(fixture("opt-tiny"));
  REQUIRE(opt.ok());
  CHECK((*opt)->config.bos_id == 2);
  CHECK((*opt)->is_eos(2));
  CHECK((*opt)->weights.lm_head.data == (*opt)->weights.tok_embed.data);  // tied
  auto llama = hs::load_model(fixture("llama-tiny"));
  REQUIRE(llama.ok());
  CHECK((*llama)->config.bos_id == 0);
  CHECK((*llama)->weights.lm_head.data != (*llama)->weights.tok_embed.data);
  CHECK_FALSE((*llama)->weights.layers[0].bq.present());
  // The fixture's prompt ids are the tokenizer's output with BOS first.
  const auto j = json::parse(hs::test::read_file(fixture("llama-tiny") + "/expected.json"));
  for (const auto& p : j["prompts"])
    CHECK((*llama)->encode_prompt(p["text"].get<std::string>()) ==
          p["ids"].get<std::vector<int32_t>>());
  const auto jo = json::parse(hs::test::read_file(fixture("opt-tiny") + "/expected.json"));
  for (const auto& p : jo["prompts"])
    CHECK((*opt)->encode_prompt(p["text"].get<std::string>()) ==
          p["ids"].get<std::vector<int32_t>>());
}
