// The built-in model (models/builtin, issue 7): it loads through the ordinary Hugging Face
// loader, it is what a source naming no model opens, and its tokenizer gives back the training
// text and the ids of the Hugging Face `tokenizers` library.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "builtin_util.hpp"
#include "fixture_util.hpp"
#include "hybridserve/model_source.hpp"
#include "hybridserve/tokenizer.hpp"

namespace fs = std::filesystem;
using hs::test::builtin_dir;
using hs::test::builtin_fixture;
using nlohmann::json;

namespace {

std::shared_ptr<const hs::model> load_builtin() {
  auto r = hs::load_model(builtin_dir());
  INFO((r.ok() ? std::string() : r.error()));
  REQUIRE(r.ok());
  return *r;
}

// Sets an environment variable for one scope, restoring the old value after.
struct scoped_env {
  std::string name;
  bool had = false;
  std::string old;
  scoped_env(const std::string& n, const char* v) : name(n) {  // v == nullptr: unset
    if (const char* o = std::getenv(n.c_str())) had = true, old = o;
    if (v)
      setenv(n.c_str(), v, 1);
    else
      unsetenv(n.c_str());
  }
  ~scoped_env() {
    if (had)
      setenv(name.c_str(), old.c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

}  // namespace

TEST_CASE("the built-in model loads with the Hugging Face loader", "[builtin]") {
  const auto m = load_builtin();
  const auto& c = m->config;
  // config.json says LlamaForCausalLM; the figures are those of docs/MODEL.md and the card.
  const json cfg = hs::test::read_json_file(builtin_dir() + "/config.json");
  CHECK(cfg.at("architectures") == json::array({"LlamaForCausalLM"}));
  CHECK(c.architecture == hs::arch::llama);
  CHECK(c.name == "builtin");
  CHECK(c.n_layer == 6);
  CHECK(c.hidden == 256);
  CHECK(c.n_head == 8);
  CHECK(c.n_kv_head == c.n_head);  // multi-head attention, num_key_value_heads == heads
  CHECK(c.n_kv_head == cfg.at("num_key_value_heads").get<int>());
  CHECK(c.head_dim == 32);
  CHECK(c.ffn == 688);
  CHECK(c.vocab == 4096);
  CHECK(c.max_pos == 512);
  CHECK(c.rope_theta == 10000.0f);
  CHECK(c.norm_eps == Approx(1e-5f));
  CHECK_FALSE(c.attn_bias);
  CHECK_FALSE(c.mlp_bias);
  // The parameter count the training script printed (transformers, tied head counted once).
  CHECK(c.parameter_count() == 5795072);

  // float16 weights, every tensor of the file.
  CHECK(c.weight_dtype == hs::dtype::f16);
  const auto names = m->store->names();
  CHECK(names.size() == 1 + 6 * 9 + 1);  // embeddings, 9 tensors a layer, final norm
  for (const auto& n : names) {
    INFO(n);
    CHECK(m->store->get(n).type == hs::dtype::f16);
  }
  // Tied embeddings: no lm_head.weight stored, the head is the embedding matrix.
  CHECK(c.tied_embeddings);
  CHECK_FALSE(m->store->has("lm_head.weight"));
  CHECK(m->weights.lm_head.data == m->weights.tok_embed.data);
  CHECK(m->weights.lm_head.shape == std::vector<int64_t>{4096, 256});

  // BOS/EOS/PAD from config.json, tokenizer_config.json and generation_config.json agree with
  // the tokenizer's own special tokens, and a prompt starts with BOS.
  const json tc = hs::test::read_json_file(builtin_dir() + "/tokenizer_config.json");
  const json gc = hs::test::read_json_file(builtin_dir() + "/generation_config.json");
  CHECK(m->tok->token_to_id(tc.at("bos_token").get<std::string>()) == 0);
  CHECK(m->tok->token_to_id(tc.at("eos_token").get<std::string>()) == 2);
  CHECK(m->tok->token_to_id(tc.at("pad_token").get<std::string>()) == 1);
  CHECK(gc.at("bos_token_id") == 0);
  CHECK(gc.at("eos_token_id") == 2);
  CHECK(c.bos_id == 0);
  CHECK(c.eos_ids == std::vector<int32_t>{2});
  CHECK(c.pad_id == 1);
  CHECK(m->add_bos);
  CHECK(m->is_eos(2));
  CHECK_FALSE(m->is_eos(0));
  const auto ids = m->encode_prompt("Hello");
  REQUIRE(ids.size() >= 2);
  CHECK(ids.front() == 0);
  for (int32_t s : {0, 1, 2}) CHECK(m->tok->is_special(s));
}

TEST_CASE("a source that names no model opens the built-in model", "[builtin]") {
  auto def = hs::default_model_source();
  INFO((def.ok() ? std::string() : def.error()));
  REQUIRE(def.ok());
  CHECK(fs::equivalent(def->dir, builtin_dir()));
  CHECK(def->shape.empty());

  auto m = hs::open_model(hs::model_source{});
  INFO((m.ok() ? std::string() : m.error()));
  REQUIRE(m.ok());
  CHECK((*m)->config.architecture == hs::arch::llama);
  CHECK(fs::equivalent((*m)->source, builtin_dir()));

  // A synthetic shape is still a synthetic model, and a folder is still that folder.
  hs::model_source tiny;
  tiny.shape = "tiny";
  tiny.seed = 1;
  auto t = hs::open_model(tiny);
  REQUIRE(t.ok());
  CHECK((*t)->config.name == "tiny");
  CHECK((*t)->config.architecture == hs::arch::opt);
  hs::model_source fixture;
  fixture.dir = hs::test::fixture("llama-tiny");
  auto f = hs::open_model(fixture);
  REQUIRE(f.ok());
  CHECK((*f)->config.name == "llama-tiny");
}

TEST_CASE("the built-in model is looked for next to the executable, then in the source tree",
          "[builtin]") {
  scoped_env no_env(hs::k_builtin_model_env, nullptr);
  // This test binary lives in build/tests/, so its first candidate is build/models/builtin
  // (absent); the source tree's folder comes last.
  const auto cands = hs::builtin_model_candidates();
  REQUIRE(!cands.empty());
  const fs::path exe = fs::read_symlink("/proc/self/exe");
  CHECK(fs::path(cands.front()) ==
        fs::weakly_canonical(exe.parent_path().parent_path() / "models" / "builtin"));
  CHECK(fs::equivalent(cands.back(), builtin_dir()));

  // The first candidate with a config.json wins; none: an error that names every path tried.
  hs::test::temp_dir tmp;
  fs::create_directories(tmp.file("a"));
  fs::create_directories(tmp.file("b"));
  hs::test::write_file(tmp.file("b/config.json"), "{}");
  auto found = hs::locate_builtin_model({tmp.file("none"), tmp.file("a"), tmp.file("b")});
  REQUIRE(found.ok());
  CHECK(found->dir == tmp.file("b"));
  CHECK(found->shape.empty());
  auto missing = hs::locate_builtin_model({tmp.file("none"), tmp.file("a")});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().find(tmp.file("none") + ", " + tmp.file("a")) != std::string::npos);
  CHECK(missing.error().find("--model") != std::string::npos);
  CHECK(missing.error().find("--shape") != std::string::npos);

  // HYBRIDSERVE_BUILTIN_MODEL names the folder explicitly; when it is wrong that is the error.
  {
    scoped_env env(hs::k_builtin_model_env, tmp.file("nowhere").c_str());
    CHECK(hs::builtin_model_candidates() == std::vector<std::string>{tmp.file("nowhere")});
    auto m = hs::open_model(hs::model_source{});
    REQUIRE_FALSE(m.ok());
    CHECK(m.error().find(tmp.file("nowhere")) != std::string::npos);
  }
  {
    scoped_env env(hs::k_builtin_model_env, hs::test::fixture("opt-tiny").c_str());
    auto m = hs::open_model(hs::model_source{});
    REQUIRE(m.ok());
    CHECK((*m)->config.name == "opt-tiny");
  }
}

TEST_CASE("the built-in tokenizer round-trips the training sample", "[builtin][tokenizer]") {
  auto t = hs::tokenizer::load(builtin_dir() + "/tokenizer.json");
  REQUIRE(t.ok());
  const auto& tok = **t;
  const std::string sample = hs::test::read_file(builtin_fixture("corpus_sample.txt"));
  // A few KB of each source (tools/train/make_builtin_fixtures.mjs): fortunes, KJV, Brown.
  REQUIRE(sample.size() > 9000);
  CHECK(sample.find("-- Donald Knuth") != std::string::npos);
  CHECK(sample.find("In the beginning God created the heaven and the earth.") != std::string::npos);
  CHECK(sample.find("The Fulton County Grand Jury said Friday") != std::string::npos);
  CHECK(sample.find("Linuxkongre\xC3\x9F") != std::string::npos);  // UTF-8 in the sample

  const auto ids = tok.encode(sample);
  CHECK(tok.decode(ids) == sample);
  CHECK(tok.decode(ids, true) == sample);  // no special tokens in running text
  // The same ids as the Hugging Face `tokenizers` library (the fixture's origin says how).
  const json ref = hs::test::read_json_file(builtin_fixture("tokenizer_ids.json"));
  CHECK(ids == ref.at("sample_ids").get<std::vector<int32_t>>());
  // 3.44 bytes a token over the whole corpus (train.log): BPE merges are in use.
  CHECK(double(sample.size()) / double(ids.size()) > 3.0);

  // Every passage of the sample and strings of punctuation, whitespace and UTF-8 (accents,
  // Greek, Cyrillic, CJK, Hangul, emoji with ZWJ and skin tone, combining marks, CRLF, tabs,
  // special tokens written in the text).
  const auto& cases = ref.at("cases");
  REQUIRE(cases.size() > 40);
  int utf8_cases = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    INFO(text);
    const auto got = tok.encode(text);
    CHECK(got == c.at("ids").get<std::vector<int32_t>>());
    CHECK(tok.decode(got) == text);
    for (const char ch : text)
      if (static_cast<unsigned char>(ch) >= 0x80) {
        ++utf8_cases;
        break;
      }
  }
  CHECK(utf8_cases >= 5);
  // Written in the text, special tokens become their ids, and skip_special drops them.
  const auto sp = tok.encode("<s>special tokens</s>");
  REQUIRE(sp.size() >= 3);
  CHECK(sp.front() == 0);
  CHECK(sp.back() == 2);
  CHECK(tok.decode(sp, true) == "special tokens");

  // When the corpus is at hand (git-ignored; tools/train/prepare_corpus.sh), the sample's
  // passages are the corpus's own text.
  const std::string corpus_path = std::string(HS_SOURCE_DIR) + "/tools/train/data/corpus.txt";
  if (fs::exists(corpus_path)) {
    const std::string corpus = "\n\n" + hs::test::read_file(corpus_path);
    std::size_t passages = 0;
    for (std::size_t b = 0, e; (e = sample.find("\n\n", b)) != std::string::npos; b = e + 2) {
      const std::string p = sample.substr(b, e - b);
      INFO(p);
      CHECK(corpus.find("\n\n" + p + "\n\n") != std::string::npos);
      ++passages;
    }
    CHECK(passages > 30);
  }
}
