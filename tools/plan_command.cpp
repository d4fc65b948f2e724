// `hybridserve plan`: the placement the cost model chooses for a workload, per layer, with the
// predicted step time and throughput (the roofline of that plan). Needs no weights and no GPU.
#include <cstdio>

#include "commands.hpp"
#include "hybridserve/engine_plan.hpp"
#include "hybridserve/synthetic_model.hpp"
#include "hybridserve/units.hpp"

namespace hs::cli {
namespace {

struct plan_options {
  model_source src;
  engine_flags eng;
  int batch = 128, prompt = 512, gen = 32;
  std::string calibrate = "h200";
};

int run_plan(plan_options& o) {
  if (const auto why = o.eng.resolve(); !why.empty()) {
    std::fprintf(stderr, "error: %s\n", why.c_str());
    return 2;
  }
  model_config cfg;
  if (!o.src.dir.empty()) {
    auto c = load_model_config(o.src.dir + "/config.json");
    if (!c) {
      std::fprintf(stderr, "error: %s\n", c.error().c_str());
      return 1;
    }
    cfg = *c;
    cfg.name = o.src.dir;
  } else {
    auto c = synthetic_config(o.src.shape.empty() ? "opt-13b" : o.src.shape);
    if (!c) {
      std::fprintf(stderr, "error: %s\n", c.error().c_str());
      return 1;
    }
    cfg = *c;
  }
  calibration cal;
  if (o.calibrate == "h200") {
    cal = h200_calibration();
  } else {
    try {
      auto be = make_backend(o.eng.opts.backend, std::size_t(1) << 50);
      cal = measure_calibration(*be, cfg, o.eng.opts.block_size);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
  }
  const step_workload w = mid_decode_workload(o.batch, o.prompt, o.gen);
  budgets b;
  b.device_bytes = o.eng.opts.device_budget > 0 ? o.eng.opts.device_budget : (int64_t(1) << 50);
  b.host_bytes = o.eng.opts.host_budget;
  cache_policy p;
  p.auto_ratio = o.eng.opts.auto_ratio;
  p.kv_ratio = o.eng.opts.kv_ratio;
  p.block_size = o.eng.opts.block_size;
  // What the engine would start from (engine_plan.hpp): it also holds a prefill pass's buffers
  // (--step-tokens rows) and the embedding tables beside weights and cache.
  // fp16 figures mean a GPU: the CUDA backend's prefill attention scratch is held too.
  const std::size_t scratch =
      cal.weight_elem_bytes == 2
          ? fresh_attention_scratch_bytes(cfg.n_head, cfg.head_dim, o.eng.opts.max_step_tokens)
          : 0;
  const auto plan = make_engine_plan(cfg, w, b, cal, p, std::size_t(cal.weight_elem_bytes),
                                     o.eng.opts.max_step_tokens, scratch);
  std::printf(
      "model %s (%s, %d layers, hidden %d, kv heads %d/%d), batch %d, prompt %d, gen %d,\n"
      "device budget %s, calibration: %s (h2d %.1f GB/s)\n\n",
      cfg.name.c_str(), arch_name(cfg.architecture), cfg.n_layer, cfg.hidden, cfg.n_kv_head,
      cfg.n_head, o.batch, o.prompt, o.gen, format_bytes(double(b.device_bytes)).c_str(),
      cal.device.c_str(), cal.h2d_bytes_per_s / 1e9);
  if (!plan.feasible) {
    std::fprintf(stderr, "error: %s\n", plan.error.c_str());
    return 1;
  }
  std::printf("%s\n", describe_plan(cfg, w, plan).c_str());
  return 0;
}

}  // namespace

void add_plan_command(CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<plan_options>();
  auto* c = app.add_subcommand("plan", "print the placement plan and its predicted step time");
  add_model_options(c, o->src);
  add_engine_options(c, o->eng);
  c->add_option("--batch", o->batch, "sequences")->check(CLI::PositiveNumber);
  c->add_option("--prompt", o->prompt, "prompt tokens")->check(CLI::NonNegativeNumber);
  c->add_option("--gen", o->gen, "generated tokens")->check(CLI::NonNegativeNumber);
  c->add_option("--calibration", o->calibrate,
                "h200 (BENCH.md's measured figures) or measure (time this machine's backend)")
      ->check(CLI::IsMember({"h200", "measure"}));
  c->callback([o, &run] { run = [o] { return run_plan(*o); }; });
}

}  // namespace hs::cli
