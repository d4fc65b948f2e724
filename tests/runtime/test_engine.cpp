// The actor runtime against the reference path: same logits (1e-4, both float32) and the
// fixtures' greedy ids for kv_ratio 0, 0.5, 1 and auto, for device budgets from "everything
// resident" down to "one streamed layer and nothing cached on the device", on both fixtures.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>

#include "faulty_backend.hpp"
#include "fixture_util.hpp"
#include "hybridserve/cpu_backend.hpp"
#include "hybridserve/engine.hpp"
#include "hybridserve/reference_forward.hpp"
#include "hybridserve/step_pipeline.hpp"
#include "hybridserve/synthetic_model.hpp"

namespace {

hs::calibration test_calibration() {
  hs::calibration cal;  // fixed figures: the plan must not depend on this machine's load
  cal.device = "test";
  cal.h2d_bytes_per_s = cal.d2h_bytes_per_s = 1e9;
  cal.mem_bytes_per_s = 1e10;
  cal.gemm_flops = {{1, 1e9}, {512, 2e10}};
  cal.cache_elem_bytes = cal.weight_elem_bytes = 4;
  return cal;
}

// n greedy requests of `len` byte-range tokens (3 + (t * step + i * offset) % 256 for token t
// of request i), `gen` tokens each, never stopping early.
std::vector<hs::generation_request> synthetic_requests(std::size_t n, int len, int gen, int step,
                                                       int offset, bool return_logits) {
  std::vector<hs::generation_request> reqs(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (int t = 0; t < len; ++t)
      reqs[i].prompt.push_back(3 + int32_t((t * step + int(i) * offset) % 256));
    reqs[i].max_tokens = gen;
    reqs[i].sampling.temperature = 0;
    reqs[i].stop_at_eos = false;
    reqs[i].return_logits = return_logits;
  }
  return reqs;
}

// A synthetic model of `spec` with float32 weights (exact CPU arithmetic for the comparisons).
std::shared_ptr<const hs::model> f32_model(const std::string& spec, uint64_t seed) {
  auto cfg = hs::synthetic_config(spec);
  REQUIRE(cfg.ok());
  cfg->weight_dtype = hs::dtype::f32;
  auto m = hs::make_synthetic_model(*cfg, seed);
  REQUIRE(m.ok());
  return *m;
}

struct fixture_run {
  std::shared_ptr<const hs::model> m;
  hs::tensor_store ex;
  std::vector<hs::generation_request> reqs;
  std::vector<std::vector<float>> ref_logits;  // per prompt: [24 * vocab] reference rows
  std::vector<std::vector<int32_t>> greedy;

  explicit fixture_run(const std::string& name) {
    m = *hs::load_model(hs::test::fixture(name));
    ex.add_file(hs::test::fixture(name) + "/expected.safetensors");
    hs::reference_forward ref(m);
    for (int i = 0; i < 4; ++i) {
      const std::string p = "p" + std::to_string(i) + ".";
      const auto prompt = hs::test::ints(ex, p + "prompt");
      greedy.push_back(hs::test::ints(ex, p + "greedy"));
      hs::generation_request r;
      r.prompt = prompt;
      r.max_tokens = 24;
      r.sampling.temperature = 0;
      r.stop_at_eos = false;
      r.forced = greedy.back();
      r.return_logits = true;
      reqs.push_back(r);
      // Reference logits at the positions that produced greedy[0..23]: run prompt + greedy.
      hs::sequence_kv kv;
      std::vector<int32_t> all = prompt;
      all.insert(all.end(), greedy.back().begin(), greedy.back().end() - 1);
      std::vector<hs::forward_item> b{{all, &kv, true}};
      const auto lg = ref.run(b)[0];
      const std::size_t V = std::size_t(m->config.vocab);
      ref_logits.emplace_back(lg.begin() + (prompt.size() - 1) * V, lg.end());
    }
  }
};

struct budget_case {
  const char* name;
  int64_t device_budget;  // 0 = unlimited
  int resident, ring;
  int64_t cache_cap;  // -1 = plan
};

}  // namespace

TEST_CASE("engine equals the reference for every ratio and budget", "[engine]") {
  for (const char* name : {"opt-tiny", "llama-tiny"}) {
    fixture_run f(name);
    const auto& c = f.m->config;
    const int64_t layer = int64_t(hs::layer_device_elems(c)) * 4;
    const int64_t head = (int64_t(c.vocab) * c.hidden + 2 * c.hidden) * 4;
    const budget_case budgets[] = {
        {"everything resident", 0, -1, 2, -1},
        {"one resident layer, ring of 2, some cache on the device", head + 3 * layer + (4 << 20), 1,
         2, 64 << 10},
        {"one streamed layer, nothing cached on the device", head + layer + (4 << 20), 0, 1, 0},
        {"one resident layer, ring of 2, nothing cached on the device",
         head + 3 * layer + (4 << 20), 1, 2, 0},
        {"one streamed layer, some cache on the device", head + layer + (4 << 20), 0, 1, 64 << 10},
    };
    for (const auto& bc : budgets) {
      for (double ratio : {0.0, 0.5, 1.0, -1.0}) {
        INFO(name << ", " << bc.name << ", kv_ratio "
                  << (ratio < 0 ? "auto" : std::to_string(ratio)));
        hs::engine_options o;
        o.cal = test_calibration();
        o.device_budget = bc.device_budget;
        o.resident_layers = bc.resident;
        o.ring_slots = bc.ring;
        o.device_cache_cap = bc.cache_cap;
        o.auto_ratio = ratio < 0;
        o.kv_ratio = ratio < 0 ? 1.0 : ratio;
        o.block_size = 4;       // many blocks per sequence
        o.max_step_tokens = 7;  // prefill in chunks that share passes with decodes
        auto e = hs::engine::start(f.m, o);
        REQUIRE(e.ok());
        auto res = (*e)->generate(f.reqs);
        const auto peak = (*e)->report().cache.peak;
        for (int i = 0; i < 4; ++i) {
          INFO("prompt " << i);
          REQUIRE(res[i].result.error == "");
          CHECK(res[i].result.tokens == f.greedy[i]);
          std::vector<float> got;
          for (const auto& row : res[i].result.logits)
            got.insert(got.end(), row.begin(), row.end());
          CHECK(hs::test::max_abs_diff(got, f.ref_logits[i]) < 1e-4);
        }
        const auto rep = (*e)->report();
        // The forms follow the ratio (auto on a model whose activation is not smaller than
        // K+V must choose KV).
        const int64_t act = peak.blocks[1][0] + peak.blocks[1][1];
        const int64_t kv = peak.blocks[0][0] + peak.blocks[0][1];
        if (ratio == 0.0) CHECK((act > 0 && kv == 0));
        if (ratio == 1.0) CHECK((kv > 0 && act == 0));
        if (ratio == 0.5) CHECK((act > 0 && kv > 0));
        if (ratio < 0 && c.hidden >= 2 * c.kv_dim()) CHECK((kv > 0 && act == 0));
        if (bc.cache_cap == 0) CHECK(peak.blocks[0][0] + peak.blocks[1][0] == 0);
        if (bc.device_budget == 0) {
          CHECK(rep.weights.resident_layers == c.n_layer);
          CHECK(peak.blocks[0][1] + peak.blocks[1][1] == 0);
        } else {
          CHECK(rep.weights.resident_layers == bc.resident);
          CHECK(peak.blocks[0][1] + peak.blocks[1][1] > 0);  // host tier in use
          CHECK(rep.cache.device_peak <= bc.device_budget);
        }
        // Every block is returned when the requests end.
        for (int a = 0; a < 2; ++a)
          for (int t = 0; t < 2; ++t) CHECK(rep.cache.usage.blocks[a][t] == 0);
      }
    }
  }
}

TEST_CASE("auto ratio chooses activations for OPT where they halve the link bytes", "[engine]") {
  fixture_run f("opt-tiny");
  hs::engine_options o;
  o.cal = test_calibration();
  o.cal->gemm_flops = {{1, 1e12}, {512, 1e13}};  // GPU-like: rebuild is cheap next to the link
  o.device_budget = 4 << 20;
  o.resident_layers = 0;
  o.ring_slots = 1;
  o.device_cache_cap = 0;
  o.block_size = 4;
  auto e = hs::engine::start(f.m, o);
  REQUIRE(e.ok());
  auto res = (*e)->generate(f.reqs);
  const auto peak = (*e)->report().cache.peak;
  CHECK(peak.blocks[1][0] + peak.blocks[1][1] > 0);  // activation blocks were used
  for (int i = 0; i < 4; ++i) CHECK(res[i].result.tokens == f.greedy[i]);
}

TEST_CASE("bad requests end with an error and do not disturb the others", "[engine]") {
  fixture_run f("llama-tiny");
  hs::engine_options o;
  o.cal = test_calibration();
  auto e = hs::engine::start(f.m, o);
  REQUIRE(e.ok());
  auto bad = f.reqs[0];
  bad.prompt.push_back(5000);
  auto too_long = f.reqs[1];
  too_long.prompt.assign(300, 5);
  auto text = f.reqs[3];
  text.prompt.clear();  // intake tokenizes the text (BOS first), as encode_prompt does
  text.prompt_text = nlohmann::json::parse(hs::test::read_file(
      hs::test::fixture("llama-tiny") + "/expected.json"))["prompts"][3]["text"];
  auto res = (*e)->generate({bad, f.reqs[2], too_long, text});
  CHECK(res[3].result.tokens == f.greedy[3]);
  CHECK(res[0].result.reason == hs::finish_reason::error);
  CHECK_THAT(res[0].result.error, Catch::Contains("5000"));
  CHECK(res[1].result.tokens == f.greedy[2]);
  CHECK(res[2].result.reason == hs::finish_reason::error);
  CHECK_THAT(res[2].result.error, Catch::Contains("context overflow"));
}

TEST_CASE("a budget that cannot hold the weights is a clear error", "[engine]") {
  fixture_run f("opt-tiny");
  hs::engine_options o;
  o.cal = test_calibration();
  o.device_budget = 10000;
  auto e = hs::engine::start(f.m, o);
  REQUIRE_FALSE(e.ok());
  CHECK_THAT(e.error(), Catch::Contains("device budget"));
}

TEST_CASE("cancelling a request ends it and frees its cache; the others are untouched",
          "[engine]") {
  fixture_run f("opt-tiny");
  hs::engine_options o;
  o.cal = test_calibration();
  o.auto_ratio = false;
  o.kv_ratio = 0.5;
  o.block_size = 4;
  auto e = hs::engine::start(f.m, o);
  REQUIRE(e.ok());
  auto res = (*e)->generate(f.reqs, {}, [](std::size_t i, int32_t) { return i != 1; });
  CHECK(res[1].result.reason == hs::finish_reason::cancelled);
  CHECK(res[1].result.tokens.size() < 24);
  for (int i : {0, 2, 3}) CHECK(res[i].result.tokens == f.greedy[i]);
  const auto u = (*e)->report().cache.usage;
  for (int a = 0; a < 2; ++a)
    for (int t = 0; t < 2; ++t) CHECK(u.blocks[a][t] == 0);
  CHECK((*e)->report().intake.running == 0);
}

TEST_CASE("a budget that holds every weight but not a prefill pass streams layers instead",
          "[engine]") {
  // 12 small layers and a small vocabulary: the weights dominate what the engine holds beside
  // them (a prefill pass's buffers, the embedding table). The budget fits every layer, the
  // head and half a pass's buffers, so a plan that keeps every layer resident leaves the first
  // prefill pass no room; the engine must plan again and stream some layers (issue 4, W5).
  auto cfg = hs::synthetic_config("llama:hidden=64,layers=12,heads=4,kv_heads=4,ffn=172,vocab=260");
  REQUIRE(cfg.ok());
  auto m = hs::make_synthetic_model(*cfg, 7);
  REQUIRE(m.ok());
  const auto& c = (*m)->config;
  const int64_t eb = 4;  // the CPU backend computes in float32
  const int64_t layers = int64_t(c.n_layer) * int64_t(hs::layer_device_elems(c)) * eb;
  const int64_t head = int64_t(c.vocab + 1) * c.hidden * eb;
  const int64_t step_tokens = 256;
  const int64_t pass = int64_t(hs::pass_device_bytes(c, std::size_t(eb), step_tokens, 0, 0, 0));
  hs::engine_options o;
  o.cal = test_calibration();
  o.max_step_tokens = int(step_tokens);
  o.device_budget = layers + head + pass / 2;
  o.batch_hint = 4;
  o.context_hint = 64;
  o.block_size = 4;
  auto e = hs::engine::start(*m, o);
  REQUIRE(e.ok());
  CHECK((*e)->report().weights.resident_layers < c.n_layer);
  std::vector<hs::generation_request> reqs(4);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].prompt.assign(60, int32_t(3 + i));
    reqs[i].max_tokens = 4;
    reqs[i].sampling.temperature = 0;
    reqs[i].stop_at_eos = false;
  }
  for (const auto& r : (*e)->generate(reqs)) {
    CHECK(r.result.error == "");
    CHECK(r.result.tokens.size() == 4);
  }
}

TEST_CASE("a traced pass reports when each layer finished in compute order", "[engine]") {
  fixture_run f("llama-tiny");
  hs::engine_options o;
  o.cal = test_calibration();
  o.trace_passes = {1, 3};  // passes count from 1
  auto e = hs::engine::start(f.m, o);
  REQUIRE(e.ok());
  (*e)->generate(f.reqs);
  const std::string trace = (*e)->report().intake.trace;
  INFO(trace);
  CHECK(trace.find("pass 1:") != std::string::npos);
  CHECK(trace.find("pass 3:") != std::string::npos);
  CHECK(trace.find("pass 2:") == std::string::npos);
  // Every pass gets its one-line summary once any pass is traced.
  for (const char* p : {"[pass 1] ", "[pass 2] ", "[pass 3] "})
    CHECK(trace.find(p) != std::string::npos);
  // Rows "layer weights cache rebuilt computed": the compute stream runs the layers in order.
  std::istringstream in(trace);
  std::string line;
  int rows = 0;
  double last = -1;
  while (std::getline(in, line)) {
    if (line.rfind("pass ", 0) == 0) last = -1;
    int layer = -1;
    char w[16], c[16], r[16];
    double computed = 0;
    if (std::sscanf(line.c_str(), "%d %15s %15s %15s %lf", &layer, w, c, r, &computed) != 5)
      continue;
    CHECK(layer == rows % f.m->config.n_layer);
    CHECK(computed >= last);
    last = computed;
    ++rows;
  }
  CHECK(rows == 2 * f.m->config.n_layer);
}

TEST_CASE("prefill first: no sequence decodes while a prompt waits for its prefill", "[engine]") {
  fixture_run f("opt-tiny");  // prompts of 9, 19, 3 and 18 tokens
  std::vector<int32_t> by_mode[2];
  for (const bool first : {true, false}) {
    hs::engine_options o;
    o.cal = test_calibration();
    o.max_step_tokens = 7;  // several prefill passes
    o.prefill_first = first;
    auto e = hs::engine::start(f.m, o);
    REQUIRE(e.ok());
    // Order of (request, token index) events: under prefill-first every request's first token
    // comes before any request's second one.
    std::vector<int> seen(f.reqs.size(), 0);
    int seconds_before_last_first = 0, firsts = 0;
    const auto res = (*e)->generate(f.reqs, [&](std::size_t i, int32_t) {
      if (seen[i]++ == 0)
        ++firsts;
      else if (firsts < int(f.reqs.size()))
        ++seconds_before_last_first;
    });
    INFO("prefill_first " << first);
    for (const auto& r : res) {
      REQUIRE(r.result.error == "");
      CHECK(r.result.tokens.size() == 24);
      for (auto t : r.result.tokens) by_mode[first ? 0 : 1].push_back(t);
    }
    if (first)
      CHECK(seconds_before_last_first == 0);
    else
      CHECK(seconds_before_last_first > 0);  // the short prompt decodes during the others' prefill
  }
  CHECK(by_mode[0] == by_mode[1]);  // scheduling does not change what is computed
}

TEST_CASE("streamed layers: each pass finds its first layers uploaded ahead of it", "[engine]") {
  for (const int resident : {0, 1}) {
    fixture_run f("llama-tiny");  // 3 layers
    hs::engine_options o;
    o.cal = test_calibration();
    o.resident_layers = resident;  // the rest stream through 2 ring slots
    auto e = hs::engine::start(f.m, o);
    REQUIRE(e.ok());
    const auto res = (*e)->generate(f.reqs);
    INFO("resident layers " << resident);
    for (int i = 0; i < 4; ++i) {
      REQUIRE(res[i].result.error == "");
      CHECK(res[i].result.tokens == f.greedy[i]);  // prefetched weights are the right ones
    }
    const auto rep = (*e)->report();
    REQUIRE(rep.intake.steps > 2);
    // Every pass after the first finds two streamed layers there (3 - resident of them).
    CHECK(rep.weights.prefetch_hits == 2 * (rep.intake.steps - 1));
  }
}

TEST_CASE("rebuild chunks: more activation rows than one chunk, part on the device", "[engine]") {
  // 2 x 2100 = 4200 act rows a layer: the rebuild's first chunk (4096 rows) mixes device-tier
  // rows with staged host rows and its second lies in the staging alone. Rebuilt K/V must give
  // what K/V kept as such gives.
  const auto m =
      f32_model("llama:hidden=32,layers=2,heads=2,kv_heads=1,ffn=64,vocab=260,max_pos=4096", 11);
  const auto* cfg = &m->config;
  const auto reqs = synthetic_requests(2, 2100, 3, 7, 13, true);
  std::vector<std::vector<float>> by_ratio[2];
  for (const double ratio : {0.0, 1.0}) {
    hs::engine_options o;
    o.cal = test_calibration();
    o.auto_ratio = false;
    o.kv_ratio = ratio;
    o.block_size = 64;
    o.max_step_tokens = 4200;
    const int64_t eb = 4, per_token = int64_t(cfg->n_layer) * cfg->hidden * eb;  // an act token
    o.device_cache_cap = 1000 * per_token;  // ~1000 act tokens on the device, the rest host
    auto e = hs::engine::start(m, o);
    REQUIRE(e.ok());
    const int form = ratio == 0.0 ? 1 : 0;
    const auto res = (*e)->generate(reqs);
    const auto peak = (*e)->report().cache.peak;
    CHECK(peak.blocks[form][0] > 0);  // blocks of the ratio's form on both tiers
    CHECK(peak.blocks[form][1] > 0);
    for (const auto& r : res) {
      REQUIRE(r.result.error == "");
      REQUIRE(r.result.logits.size() == 3);
      std::vector<float> all;
      for (const auto& row : r.result.logits) all.insert(all.end(), row.begin(), row.end());
      by_ratio[ratio == 0.0 ? 0 : 1].push_back(all);
    }
  }
  for (std::size_t i = 0; i < reqs.size(); ++i)
    CHECK(hs::test::max_abs_diff(by_ratio[0][i], by_ratio[1][i]) < 1e-4);
}

TEST_CASE("a prefill pass larger than one FFN chunk gives the reference logits", "[engine]") {
  // 2 x 2100 = 4200 prompt rows in one pass; the FFN's hidden rows share the attention-output
  // buffer, so they run in chunks (4096 + 104 rows here). Each row must still be its own.
  const auto m =
      f32_model("llama:hidden=32,layers=2,heads=2,kv_heads=1,ffn=64,vocab=260,max_pos=4096", 5);
  const auto* cfg = &m->config;
  REQUIRE(hs::ffn_chunk_rows(*cfg, 4200) < 4200);
  auto reqs = synthetic_requests(2, 2100, 3, 11, 29, true);
  for (auto& r : reqs) r.forced = {7, 9, 11};
  hs::engine_options o;
  o.cal = test_calibration();
  o.block_size = 64;
  o.max_step_tokens = 4200;
  auto e = hs::engine::start(m, o);
  REQUIRE(e.ok());
  const auto res = (*e)->generate(reqs);
  hs::reference_forward ref(m);
  const std::size_t V = std::size_t(cfg->vocab);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    INFO("request " << i);
    REQUIRE(res[i].result.error == "");
    REQUIRE(res[i].result.logits.size() == 3);
    std::vector<int32_t> all = reqs[i].prompt;
    all.insert(all.end(), {7, 9});
    hs::sequence_kv kv;
    std::vector<hs::forward_item> b{{all, &kv, true}};
    const auto lg = ref.run(b)[0];
    const std::vector<float> want(lg.end() - std::ptrdiff_t(3 * V), lg.end());
    std::vector<float> got;
    for (const auto& row : res[i].result.logits) got.insert(got.end(), row.begin(), row.end());
    CHECK(hs::test::max_abs_diff(got, want) < 1e-4);
  }
}

TEST_CASE(
    "a backend error mid-pass fails the requests of that pass and the engine then serves them as "
    "a healthy one does",
    "[engine]") {
  // Failures injected into the K/V rebuild (the recompute engine answers with an error instead of
  // dying) and into a host-cache load (the decoder fails the pass mid-way). No rebuild may be
  // enqueued into buffers the failed pass gave back.
  const auto m =
      f32_model("llama:hidden=32,layers=4,heads=2,kv_heads=1,ffn=64,vocab=260,max_pos=512", 21);
  const auto* cfg = &m->config;
  const auto reqs = synthetic_requests(2, 40, 6, 5, 19, true);
  const auto options = [&] {
    hs::engine_options o;
    o.cal = test_calibration();
    o.auto_ratio = false;
    o.kv_ratio = 0.0;  // activations: rebuilt every pass
    o.block_size = 8;
    o.max_step_tokens = 64;
    o.device_cache_cap = 20 * int64_t(cfg->n_layer) * cfg->hidden * 4;  // the rest on the host
    o.resident_layers = 0;  // every layer streams through a ring of two slots
    o.ring_slots = 2;
    return o;
  };
  const auto flat = [](const hs::finished_event& r) {
    std::vector<float> all;
    for (const auto& row : r.result.logits) all.insert(all.end(), row.begin(), row.end());
    return all;
  };
  std::vector<std::vector<float>> want;
  {
    auto e = hs::engine::start(m, options());
    REQUIRE(e.ok());
    for (const auto& r : (*e)->generate(reqs)) {
      REQUIRE(r.result.error == "");
      want.push_back(flat(r));
    }
  }
  for (const std::string op : {"kv_rebuild", "copy_batch"}) {
    INFO(op);
    const hs::stream where = op == "kv_rebuild" ? hs::stream::rebuild : hs::stream::h2d;
    auto calls = std::make_shared<std::atomic<int>>(0),
         loads = std::make_shared<std::atomic<int>>(0);
    // copy_batch on h2d is load_cache: one per layer and pass, so the 8th is pass 2's
    // load_cache(3). In pass 2 weight uploads and rebuilds are slowed down, so that layer 2's
    // weights arrive after layer 1's compute: its rebuild is then asked for just before
    // load_cache(3), which fails while that rebuild waits in the recompute engine.
    const auto failing = [=](const std::string& o, hs::stream s) {
      if (o == "copy_batch" && s == hs::stream::h2d) ++*loads;
      return o == op && s == where && ++*calls == (op == "copy_batch" ? 8 : 6);
    };
    const auto slow = [=](const std::string& o, hs::stream) {
      if (*loads < 4 || *loads >= 8) return;
      if (o == "upload_tensor") std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (o == "kv_rebuild") std::this_thread::sleep_for(std::chrono::milliseconds(40));
    };
    auto be = std::make_unique<hs::test::faulty_backend>(hs::make_cpu_backend(std::size_t(1) << 30),
                                                         failing, slow);
    auto* faulty = be.get();
    auto e = hs::engine::start(m, options(), std::move(be));
    REQUIRE(e.ok());
    const auto first = (*e)->generate(reqs);
    CHECK(faulty->failures() == 1);
    int failed = 0;
    for (const auto& r : first)
      if (r.result.error.find("injected failure in " + op) != std::string::npos) ++failed;
    CHECK(failed > 0);
    CHECK(faulty->stale_rebuilds() == 0);
    const auto second = (*e)->generate(reqs);
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      INFO("request " << i);
      REQUIRE(second[i].result.error == "");
      CHECK(hs::test::max_abs_diff(flat(second[i]), want[i]) < 1e-5);
    }
  }
}

TEST_CASE("the reserved pass bytes cover every split of the context between forms and tiers",
          "[engine]") {
  // head_dim * kv_heads > hidden: K+V of a token outweighs its activation twice over.
  for (const char* spec :
       {"llama:hidden=64,layers=2,heads=4,kv_heads=4,head_dim=32,ffn=128,vocab=260",
        "llama:hidden=256,layers=2,heads=8,kv_heads=2,ffn=688,vocab=4096",
        "opt:hidden=64,layers=2,heads=4,ffn=256,vocab=512"}) {
    auto cfg = hs::synthetic_config(spec);
    REQUIRE(cfg.ok());
    INFO(spec);
    const int64_t C = 10000, H = cfg->hidden, KV2 = 2 * cfg->kv_dim(), L = cfg->n_layer;
    // A device cache of 4000 activations a layer (the host tier holds the rest), then one that
    // holds the whole context in either form (no host tier).
    for (const int64_t per_layer : {4000 * H, 20000 * std::max(H, KV2)}) {
      const std::size_t cap = std::size_t(per_layer * L * 2);
      const std::size_t worst = hs::pass_device_bytes_worst(*cfg, 2, 128, C, cap);
      std::size_t most = 0;
      // The device holds da activations and as many KV tokens as the rest of it takes (it fills
      // first); the host the remaining h tokens, hk of them as KV (staged), the rest activations.
      const int64_t da_most = std::min(C, per_layer / H);
      for (int64_t da = 0;; da = std::min(da_most, da + 250)) {
        const int64_t dk = std::min(C - da, (per_layer - da * H) / KV2), h = C - da - dk;
        for (int64_t hk = 0;; hk = std::min(h, hk + 250)) {
          const int64_t ha = h - hk;
          most = std::max(most, hs::pass_device_bytes(*cfg, 2, 128, hk, ha + da, ha));
          if (hk == h) break;
        }
        if (da == da_most) break;
      }
      INFO("device cache " << cap << " bytes");
      // Not an overestimate either, beyond one rebuild chunk's scratch (the bound adds it whole).
      const std::size_t chunk = hs::rebuild_scratch_elems(*cfg, hs::k_rebuild_chunk_rows) * 2;
      CHECK(worst >= most);
      CHECK(worst <= most + chunk);
    }
  }
}

TEST_CASE(
    "the engine's reserve holds every pass of a prefill-first batch that overflows the "
    "device cache",
    "[engine]") {
  // Budgets from too small to roomy: each either refuses to start or runs the whole batch; the
  // longest context is given exactly (no margin in the reserve), and prefill passes put their
  // new tokens' K/V (or checkpoints) in host-tier blocks once the device cache is full.
  auto cfg = hs::synthetic_config("opt:hidden=64,layers=2,heads=4,ffn=256,vocab=512");
  REQUIRE(cfg.ok());
  auto m = hs::make_synthetic_model(*cfg, 11);
  REQUIRE(m.ok());
  const auto reqs = synthetic_requests(8, 40, 4, 5, 17, false);
  int with_host_tier = 0, ran = 0;
  for (const double ratio : {0.0, 1.0})
    for (int64_t budget = 1 << 19; budget <= 3 << 20; budget += 1 << 15) {
      INFO("kv_ratio " << ratio << ", device budget " << budget);
      hs::engine_options o;
      o.cal = test_calibration();
      o.device_budget = budget;
      o.auto_ratio = false;
      o.kv_ratio = ratio;
      o.block_size = 4;
      o.max_step_tokens = 160;  // four prompts a prefill pass
      o.prefill_first = true;
      o.batch_hint = 8;
      o.context_hint = 42;
      o.context_max_hint = 44;
      auto e = hs::engine::start(*m, o);
      if (!e.ok()) continue;  // too small to start: refused at once, fine
      const auto res = (*e)->generate(reqs);
      const auto peak = (*e)->report().cache.peak;
      const int64_t host_blocks = peak.blocks[0][1] + peak.blocks[1][1];
      ++ran;
      with_host_tier += host_blocks > 0;
      for (const auto& r : res) REQUIRE(r.result.error == "");
      CHECK((*e)->report().cache.device_peak <= budget);
    }
  CHECK(ran > 4);
  CHECK(with_host_tier > 2);  // the case in question did occur
}
