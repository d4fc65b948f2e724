// What the built-in model (models/builtin, issue 7) generates on the CPU: greedy continuations
// equal to those Hugging Face transformers computed at training time (a golden test), and text
// that is mostly dictionary words.
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "builtin_util.hpp"
#include "fixture_util.hpp"
#include "hybridserve/engine.hpp"
#include "hybridserve/generate.hpp"
#include "hybridserve/model_source.hpp"
#include "hybridserve/reference_forward.hpp"

namespace {

// The built-in model as `hybridserve generate` opens it: a source that names no model.
std::shared_ptr<const hs::model> open_default() {
  auto m = hs::open_model(hs::model_source{});
  INFO((m.ok() ? std::string() : m.error()));
  REQUIRE(m.ok());
  REQUIRE((*m)->config.name == "builtin");
  return *m;
}

// The engine as `hybridserve generate` starts it with no engine options: CPU backend,
// calibrated on this machine, automatic kv ratio.
std::unique_ptr<hs::engine> start_engine(const std::shared_ptr<const hs::model>& m) {
  hs::engine_options o;
  o.backend = "cpu";
  auto e = hs::engine::start(m, o);
  INFO((e.ok() ? std::string() : e.error()));
  REQUIRE(e.ok());
  return std::move(*e);
}

hs::generation_request request(const hs::model& m, const std::string& prompt, int max_tokens,
                               float temperature, uint64_t seed = 0) {
  hs::generation_request r;
  r.prompt = m.encode_prompt(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.top_p = 1.0f;
  r.sampling.seed = seed;
  r.sampling.seeded = true;
  return r;
}

// Prompt and continuation as `generate` prints them: the prompt's text, then the streamed text.
std::vector<std::string> run(hs::engine& e, const hs::model& m,
                             const std::vector<hs::generation_request>& reqs,
                             bool with_prompt = true) {
  std::vector<hs::stream_decoder> dec(reqs.size(), hs::stream_decoder(m.tok));
  std::vector<std::string> out(reqs.size());
  for (std::size_t i = 0; i < reqs.size(); ++i)
    if (with_prompt) out[i] = m.tok->decode(reqs[i].prompt, true);
  const auto done = e.generate(reqs, [&](std::size_t i, int32_t id) { out[i] += dec[i].push(id); });
  REQUIRE(done.size() == reqs.size());
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    CHECK(done[i].result.reason != hs::finish_reason::error);
    out[i] += dec[i].finish();
  }
  return out;
}

}  // namespace

TEST_CASE("built-in model: greedy continuations equal Hugging Face transformers'",
          "[builtin][golden]") {
  int n = 0;
  const auto cases = hs::test::golden_cases(&n);
  REQUIRE(cases.size() == 3);
  REQUIRE(n == 40);
  const auto t0 = std::chrono::steady_clock::now();
  const auto m = open_default();
  auto e = start_engine(m);
  std::vector<hs::generation_request> reqs;
  for (const auto& c : cases) reqs.push_back(request(*m, c.prompt, n, 0.0f));
  // One at a time (as `generate -p PROMPT` runs it), then the three as one batch.
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("prompt: " << cases[i].prompt);
    CHECK(run(*e, *m, {reqs[i]})[0] == cases[i].text);
  }
  const auto batch = run(*e, *m, reqs);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("batched prompt: " << cases[i].prompt);
    CHECK(batch[i] == cases[i].text);
  }
  // "Within seconds on a machine with no GPU": load, engine start and 4 x 3 x 40 tokens took
  // well under a second on 2 cores; the bound leaves room for a loaded CI machine.
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(secs < 30.0);

  // The plain reference forward pass (`generate --reference`) gives the same text.
  hs::reference_forward fwd(m);
  const auto ref = hs::generate_reference(fwd, reqs);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("reference path, prompt: " << cases[i].prompt);
    CHECK(m->tok->decode(reqs[i].prompt, true) + m->tok->decode(ref[i].tokens, true) ==
          cases[i].text);
  }
}

// Thresholds: the same measure gives 0.98 on the training text itself (the sample of
// tests/fixtures/builtin, checked below) and about 0.55 on uniformly random tokens of this
// vocabulary (many BPE tokens are whole words; checked below to stay under 0.75). Measured on
// 2026-11-26: greedy 1.00, sampled at temperature 0.8 0.97 (temperature 1.0: 0.95). So greedy
// text must be >= 0.95 and sampled text >= 0.90: well above anything but English-like text,
// with room for the rare coinages ("hamstrathed") and archaic KJV forms the list lacks.
TEST_CASE("built-in model: greedy and sampled text is mostly dictionary words",
          "[builtin][words]") {
  const std::string list = hs::test::dict_words_path();
  const auto dict = hs::test::load_word_list(list);
  if (dict.size() < 50000)
    FAIL(list + " is missing or short (" << dict.size()
                                         << " words): install Debian's wamerican (bash "
                                            "tools/setup.sh does) or set HS_DICT_WORDS");

  // The measure itself: real text passes, random tokens do not.
  const auto human = hs::test::dictionary_share(
      {hs::test::read_file(hs::test::builtin_fixture("corpus_sample.txt"))}, dict);
  INFO("training sample: " << human.describe());
  CHECK(human.share() >= 0.95);

  const auto m = open_default();
  std::vector<std::string> noise;
  uint64_t s = 1;
  for (int k = 0; k < 6; ++k) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 60; ++i) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      ids.push_back(int32_t(3 + (s >> 33) % uint64_t(m->config.vocab - 3)));
    }
    noise.push_back(m->tok->decode(ids, true));
  }
  const auto rnd = hs::test::dictionary_share(noise, dict);
  INFO("random tokens: " << rnd.describe());
  CHECK(rnd.words > 100);
  CHECK(rnd.share() < 0.75);

  const std::vector<std::string> prompts = {"The old man said",
                                            "Once upon a time",
                                            "In the beginning",
                                            "She opened the door",
                                            "The president of the company",
                                            "And the LORD spake unto Moses"};
  auto e = start_engine(m);
  std::vector<hs::generation_request> greedy, sampled;
  for (const auto& p : prompts) greedy.push_back(request(*m, p, 60, 0.0f));
  for (uint64_t seed = 1; seed <= 6; ++seed)
    for (std::size_t i = 0; i < 3; ++i) sampled.push_back(request(*m, prompts[i], 60, 0.8f, seed));

  const auto g = hs::test::dictionary_share(run(*e, *m, greedy, false), dict);
  INFO("greedy: " << g.describe());
  CHECK(g.words > 200);
  CHECK(g.share() >= 0.95);

  const auto out = run(*e, *m, sampled, false);
  const auto smp = hs::test::dictionary_share(out, dict);
  INFO("sampled (temperature 0.8, seeds 1..6): " << smp.describe());
  CHECK(smp.words > 400);
  CHECK(smp.share() >= 0.90);
  // Seeded sampling is reproducible, and not greedy decoding in disguise.
  CHECK(run(*e, *m, {sampled[0]}, false)[0] == out[0]);
  CHECK(out[0] != run(*e, *m, {greedy[0]}, false)[0]);
}
