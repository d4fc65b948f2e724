// Cost model and placement planner against the hand arithmetic of shared/BENCH.md. Expected
// values are derived here from the published shapes, never copied from the planner's output.
#include <catch2/catch.hpp>
#include <chrono>

#include "hybridserve/cost_model.hpp"
#include "hybridserve/synthetic_model.hpp"

namespace {

constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;

hs::model_config shape(const std::string& name) {
  auto r = hs::synthetic_config(name);
  REQUIRE(r.ok());
  return r.value();
}

// BENCH.md's H200 figures, GEMM flat at 600 TFLOP/s, fp16 weights and cache.
hs::calibration h200() {
  hs::calibration c;
  c.device = "test H200";
  c.h2d_bytes_per_s = 55e9;
  c.d2h_bytes_per_s = 55e9;
  c.mem_bytes_per_s = 3.3e12;
  c.gemm_flops = {{1, 600e12}};
  return c;
}

hs::step_workload decode(int seqs, int64_t context) {
  hs::step_workload w;
  w.context.assign(seqs, context);
  w.new_tokens = seqs;
  return w;
}

hs::budgets device_gib(double g) {
  hs::budgets b;
  b.device_bytes = int64_t(g * k_gib);
  return b;
}

hs::cache_policy pinned(double r) {
  hs::cache_policy p;
  p.auto_ratio = false;
  p.kv_ratio = r;
  return p;
}

// Hand counts for OPT shapes (fp16): Wq Wk Wv Wo (4 h^2) + their biases (4 h), fc1 fc2
// (2 h f) + biases (f + h), two LayerNorms (4 h); the head is the tied vocab x h matrix plus the
// final LayerNorm (2 h).
double opt_layer_bytes(double h, double f) {
  return 2 * (4 * h * h + 4 * h + 2 * h * f + f + h + 4 * h);
}
double opt_head_bytes(double h, double vocab) {
  return 2 * (vocab * h + 2 * h);
}

}  // namespace

TEST_CASE("gemm_rate interpolates in log M and clamps", "[plan]") {
  hs::calibration c;
  c.gemm_flops = {{32, 81e12}, {128, 313e12}, {512, 606e12}, {2048, 727e12}};
  CHECK(c.gemm_rate(0) == 0);
  CHECK(c.gemm_rate(-5) == 0);
  CHECK(c.gemm_rate(1) == Approx(81e12));  // clamped below
  CHECK(c.gemm_rate(32) == Approx(81e12));
  CHECK(c.gemm_rate(64) == Approx(197e12));  // log2 midpoint of 32..128
  CHECK(c.gemm_rate(256) == Approx(459.5e12));
  CHECK(c.gemm_rate(1024) == Approx(666.5e12));
  CHECK(c.gemm_rate(128) == Approx(313e12));
  CHECK(c.gemm_rate(1 << 20) == Approx(727e12));  // clamped above
  hs::calibration empty;
  CHECK(empty.gemm_rate(100) == 0);
  CHECK_FALSE(empty.check().empty());
  CHECK(h200().check().empty());
}

TEST_CASE("byte sizes match hand counts", "[plan]") {
  const auto cfg = shape("opt-13b");
  const auto cal = h200();
  CHECK(hs::layer_weight_bytes(cfg, cal) == 629278720);  // 314,639,360 parameters
  CHECK(double(hs::layer_weight_bytes(cfg, cal)) == opt_layer_bytes(5120, 20480));
  CHECK(hs::kv_bytes_per_token(cfg, cal) == 2 * 5120 * 2);
  CHECK(hs::act_bytes_per_token(cfg, cal) == 5120 * 2);
  const auto l3 = shape("llama-3-8b");
  CHECK(hs::kv_bytes_per_token(l3, cal) == 2 * 1024 * 2);
  CHECK(hs::act_bytes_per_token(l3, cal) == 4096 * 2);
}

TEST_CASE("W1: OPT-13B, batch 128, 24 GiB picks activations and beats KV-only", "[plan]") {
  const auto cfg = shape("opt-13b");
  const auto w = decode(128, 512 + 16);
  const auto b = device_gib(24);
  const auto plan = hs::make_plan(cfg, w, b, h200(), hs::cache_policy{});
  INFO(hs::describe_plan(cfg, w, plan));
  REQUIRE(plan.feasible);
  CHECK(plan.kv_ratio < 0.3);
  CHECK(plan.step_s > 0.45);
  CHECK(plan.step_s < 0.75);
  CHECK(plan.tokens_per_s > 170);
  CHECK(plan.tokens_per_s < 290);
  CHECK(plan.link_s > plan.gpu_s);  // BENCH: link 0.61 s vs rebuild 0.45 s
  CHECK(plan.device_peak_bytes <= b.device_bytes);
  CHECK(int64_t(plan.layers.size()) == 40);

  // Hand roofline: weights + head + all activations on the link, minus what the device keeps
  // after 2 ring slots and the rebuilt K/V of every token (4 h bytes each).
  const double T = 128.0 * 528, L = 40;
  const double weights = L * opt_layer_bytes(5120, 20480) + opt_head_bytes(5120, 50272);
  const double act = T * 5120 * 2 * L;
  const double kept = double(b.device_bytes) - 2 * opt_layer_bytes(5120, 20480) - T * 4 * 5120;
  const double hand_step = (weights + act - kept) / 55e9;  // ~0.55 s
  CHECK(plan.step_s == Approx(hand_step).epsilon(0.10));

  // FlexGen-style KV only: KV is twice the bytes; no rebuild workspace.
  const auto kv = hs::make_plan(cfg, w, b, h200(), pinned(1.0));
  INFO(hs::describe_plan(cfg, w, kv));
  REQUIRE(kv.feasible);
  CHECK(kv.kv_ratio == 1.0);
  CHECK(kv.tokens[int(hs::cache_form::act)][0] + kv.tokens[int(hs::cache_form::act)][1] == 0);
  CHECK(kv.step_s >= 1.6 * plan.step_s);
  const double kv_kept = double(b.device_bytes) - 2 * opt_layer_bytes(5120, 20480);
  const double kv_hand = (weights + 2 * act - kv_kept) / 55e9;  // ~1.03 s (probe: 1.058 s)
  CHECK(kv.step_s == Approx(kv_hand).epsilon(0.10));
}

TEST_CASE("a pinned ratio is honoured", "[plan]") {
  const auto cfg = shape("opt-13b");
  const auto w = decode(128, 528);
  const auto plan = hs::make_plan(cfg, w, device_gib(24), h200(), pinned(0.5));
  REQUIRE(plan.feasible);
  CHECK(plan.kv_ratio == 0.5);
  CHECK(plan.tokens[0][0] + plan.tokens[0][1] == 128 * 528 / 2);
  CHECK(plan.tokens[1][0] + plan.tokens[1][1] == 128 * 528 / 2);
  CHECK_FALSE(hs::make_plan(cfg, w, device_gib(24), h200(), pinned(1.5)).feasible);
}

TEST_CASE("a fast link makes the GPU the bottleneck and moves the ratio towards KV", "[plan]") {
  // Hand balance at h2d = 500 GB/s: link ~ (30.2 + 26.3 r) GB / 500 GB/s, GPU ~ rebuild
  // 0.47 (1 - r) s + attention 0.017 s + dense 0.005 s: equal near r = 0.83.
  const auto cfg = shape("opt-13b");
  const auto w = decode(128, 528);
  auto cal = h200();
  cal.h2d_bytes_per_s = cal.d2h_bytes_per_s = 500e9;
  const auto plan = hs::make_plan(cfg, w, device_gib(24), cal, hs::cache_policy{});
  INFO(hs::describe_plan(cfg, w, plan));
  REQUIRE(plan.feasible);
  CHECK(plan.kv_ratio > 0.7);
  CHECK(plan.kv_ratio < 0.95);
}

TEST_CASE("W5: Llama-3-8B (GQA) keeps KV and says why", "[plan]") {
  const auto cfg = shape("llama-3-8b");
  const auto w = decode(128, 528);
  const auto b = device_gib(16);
  const auto plan = hs::make_plan(cfg, w, b, h200(), hs::cache_policy{});
  INFO(hs::describe_plan(cfg, w, plan));
  REQUIRE(plan.feasible);
  CHECK(plan.kv_ratio == 1.0);
  CHECK(plan.tokens[int(hs::cache_form::act)][0] == 0);
  CHECK(plan.tokens[int(hs::cache_form::act)][1] == 0);
  CHECK_THAT(plan.reason,
             Catch::Contains("activation (H values) is larger than K+V (2*kv_dim values)"));
  // BENCH: 8.9 GB of KV fits beside the weights, so the link carries ~9 GB of weights or the
  // same bytes of cache: a device byte saves one link byte either way.
  // Hand: layer = 2 (2 h^2 + 2 h kv + 3 h f + 2 h), head = 2 (vocab h + h), KV = 4 kv B/token.
  const double h = 4096, kvd = 1024, f = 14336;
  const double layer = 2 * (2 * h * h + 2 * h * kvd + 3 * h * f + 2 * h);
  const double weights = 32 * layer + 2 * (128256 * h + h);
  const double kv_total = 128.0 * 528 * 4 * kvd * 32;
  const double kept = double(b.device_bytes) - 2 * layer - kv_total;
  CHECK(plan.step_s == Approx((weights - kept) / 55e9).epsilon(0.10));  // ~0.14 s
}

TEST_CASE("W3: OPT-30B, batch 32: the cache fits, weights bound the step", "[plan]") {
  const auto cfg = shape("opt-30b");
  const auto w = decode(32, 528);
  const auto b = device_gib(24);
  // Hand: activations 32 x 528 x 7168 x 2 B x 48 = 11.6 GB, the rebuilt K/V workspace
  // 32 x 528 x 4 x 7168 B = 0.48 GB and 2 ring slots of 1.23 GB fit in 24 GiB with 11.2 GB to
  // spare for weights: the link carries the other ~48.7 GB of weights, ~0.89 s.
  const double T = 32.0 * 528, h = 7168;
  const double layer = opt_layer_bytes(h, 28672);
  const double weights = 48 * layer + opt_head_bytes(h, 50272);
  const double kept = double(b.device_bytes) - 2 * layer - T * 4 * h - T * 2 * h * 48;
  REQUIRE(kept > 0);
  const auto plan = hs::make_plan(cfg, w, b, h200(), hs::cache_policy{});
  INFO(hs::describe_plan(cfg, w, plan));
  REQUIRE(plan.feasible);
  CHECK(plan.kv_ratio <= 0.1);  // link-bound: activations
  CHECK(plan.step_s == Approx((weights - kept) / 55e9).epsilon(0.10));
  CHECK(plan.link_s > 3 * plan.gpu_s);  // weights dominate
  CHECK(plan.device_peak_bytes <= b.device_bytes);
  // KV only doubles the cache bytes: it cannot beat the activation plan.
  const auto kv = hs::make_plan(cfg, w, b, h200(), pinned(1.0));
  REQUIRE(kv.feasible);
  CHECK(kv.step_s > plan.step_s);
}

TEST_CASE("everything resident: nothing crosses the link", "[plan]") {
  const auto cfg = shape("tiny");
  const auto w = decode(4, 32);
  const auto plan = hs::make_plan(cfg, w, device_gib(1), h200(), hs::cache_policy{});
  INFO(hs::describe_plan(cfg, w, plan));
  REQUIRE(plan.feasible);
  CHECK(plan.link_s == 0);
  CHECK(plan.resident_layers == cfg.n_layer);
  CHECK(plan.head_resident);
  CHECK(plan.ring_slots == 0);
  CHECK(plan.host_cache_bytes == 0);
  CHECK(plan.step_s > 0);
  CHECK(plan.step_s == Approx(plan.gpu_s));
}

TEST_CASE("a budget below one layer's weights is infeasible and says so", "[plan]") {
  const auto cfg = shape("opt-13b");
  const auto w = decode(128, 528);
  hs::budgets b;
  b.device_bytes = 512LL << 20;  // 0.5 GiB < one OPT-13B layer (629,278,720 bytes)
  const auto plan = hs::make_plan(cfg, w, b, h200(), hs::cache_policy{});
  CHECK_FALSE(plan.feasible);
  CHECK_THAT(plan.error, Catch::Contains(std::to_string(b.device_bytes)));
  CHECK_THAT(plan.error, Catch::Contains("629278720"));
  CHECK_THAT(hs::describe_plan(cfg, w, plan), Catch::Contains("infeasible"));

  hs::calibration bad = h200();
  bad.h2d_bytes_per_s = 0;
  CHECK_FALSE(hs::make_plan(cfg, w, device_gib(24), bad, hs::cache_policy{}).feasible);

  hs::budgets host_small = device_gib(24);
  host_small.host_bytes = 1LL << 30;  // cannot hold 25 GB of streamed weights
  const auto h = hs::make_plan(cfg, w, host_small, h200(), hs::cache_policy{});
  CHECK_FALSE(h.feasible);
  CHECK_THAT(h.error, Catch::Contains("host budget"));
}

TEST_CASE("describe_plan shows the split, ratio and prediction", "[plan]") {
  const auto cfg = shape("opt-13b");
  const auto w = decode(128, 528);
  const auto plan = hs::make_plan(cfg, w, device_gib(24), h200(), hs::cache_policy{});
  const std::string d = hs::describe_plan(cfg, w, plan);
  CHECK_THAT(d, Catch::Contains("kv_ratio"));
  CHECK_THAT(d, Catch::Contains("tokens/s"));
  CHECK_THAT(d, Catch::Contains("head"));
  CHECK_THAT(d, Catch::Contains("link MB"));
}

TEST_CASE("planning 80 layers takes well under 10 ms", "[plan]") {
  const auto cfg = shape("llama-2-70b");
  const auto mha = shape("opt:hidden=8192,layers=80,heads=64,ffn=32768,vocab=50272");
  const auto w = decode(128, 1024);
  double best_ms = 1e9;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto a = hs::make_plan(cfg, w, device_gib(40), h200(), hs::cache_policy{});
    const auto b = hs::make_plan(mha, w, device_gib(40), h200(), hs::cache_policy{});
    const auto t1 = std::chrono::steady_clock::now();
    REQUIRE(a.feasible);
    REQUIRE(b.feasible);
    best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(t1 - t0).count() / 2);
  }
  CHECK(best_ms < 10);
}

TEST_CASE("cache bytes on the link move at the measured rate of block copies", "[plan]") {
  // Llama-3-8B shape (GQA 4:1): a token's K+V is 2 x 1024 fp16 values, its activation 4096.
  const auto cfg = shape("llama-3-8b");
  const auto s = hs::summarize(cfg, decode(128, 528));
  auto cal = h200();
  hs::layer_traffic t;
  t.weights_resident = true;
  t.host_kv_tokens = 10000;
  t.host_act_tokens = 3000;
  t.act_tokens = 3000;
  const double kv_bytes = 10000.0 * 2 * 1024 * 2, act_bytes = 3000.0 * 4096 * 2;
  // Unmeasured block rates: the link's rate for every byte.
  CHECK(hs::predict_layer_cost(cfg, s, cal, t).link_s ==
        Approx((kv_bytes + act_bytes) / 55e9).epsilon(1e-9));
  cal.kv_block_h2d_bytes_per_s = 40e9;
  cal.act_block_h2d_bytes_per_s = 50e9;
  const auto c = hs::predict_layer_cost(cfg, s, cal, t);
  CHECK(c.link_s == Approx(kv_bytes / 40e9 + act_bytes / 50e9).epsilon(1e-9));
  CHECK(c.link_bytes == int64_t(kv_bytes + act_bytes));  // bytes are bytes; only time changes
  // Streamed weights still move at the full rate beside them.
  t.weights_resident = false;
  const double w = double(hs::predict_layer_cost(cfg, s, cal, t).link_bytes) - kv_bytes - act_bytes;
  CHECK(hs::predict_layer_cost(cfg, s, cal, t).link_s ==
        Approx(w / 55e9 + kv_bytes / 40e9 + act_bytes / 50e9).epsilon(1e-9));
}
