// `hybridserve bench`: throughput of a synthetic workload (BENCH.md's W1-W5) through the actor
// runtime, next to the roofline of the chosen plan and, with --kv-only, the same workload with
// every cached token as K/V (the FlexGen-style baseline) in the same process.
#include <chrono>
#include <cstdio>
#include <random>

#include "commands.hpp"
#include "hybridserve/synthetic_model.hpp"
#include "hybridserve/units.hpp"

namespace hs::cli {
namespace {

using clock_type = std::chrono::steady_clock;

struct bench_options {
  model_source src;
  engine_flags eng;
  int batch = 128, prompt = 512, gen = 32;
  bool kv_only = false;
  int warmup = 2;  // generated tokens of the untimed warm-up run (0: none)
  uint64_t seed = 1;
};

struct bench_result {
  std::string label;
  double prefill_s = 0, decode_s = 0, tokens_per_s = 0, decode_tokens_per_s = 0;
  double predicted_decode_s = 0, roofline_fraction = 0;
  double link_busy = 0, gpu_busy = 0;
  int64_t peak = 0, budget = 0;
  double kv_ratio = 1;
  int resident = 0;
  std::string plan_text;
  bool ok = false;
};

// 64-token blocks unless --block-size says otherwise: a layer's slice of a block is one copy on
// the link, and 16-token slices (160 KB for OPT-13B activations) are too small for the copy
// engines.
int bench_block_size(const engine_options& opts) {
  return opts.block_size == engine_options{}.block_size ? 64 : opts.block_size;
}

bench_result run_once(const bench_options& o, const std::string& label, engine_options opts,
                      std::shared_ptr<const model> m, const calibration& cal) {
  bench_result r;
  r.label = label;
  const auto& cfg = m->config;
  opts.cal = cal;
  opts.batch_hint = o.batch;
  opts.context_hint = o.prompt + o.gen / 2;
  opts.context_max_hint = o.prompt + o.gen;
  opts.max_batch = o.batch;
  // Prefill in 4 passes: each pass streams every weight once, and at 16k rows a pass's GEMMs
  // take about as long as its weights take to arrive. Override with --step-tokens.
  if (opts.max_step_tokens == engine_options{}.max_step_tokens)
    opts.max_step_tokens = std::max(1, o.batch * o.prompt / 4);
  opts.block_size = bench_block_size(opts);
  const auto t_start = clock_type::now();
  auto e = engine::start(m, opts);
  if (!e) {
    std::fprintf(stderr, "[%s] error: %s\n", label.c_str(), e.error().c_str());
    return r;
  }
  std::fprintf(stderr, "[%s] engine started in %.2f s (host cache of the plan pinned)\n",
               label.c_str(), std::chrono::duration<double>(clock_type::now() - t_start).count());
  std::mt19937_64 rng(o.seed);
  const auto batch_of = [&](int gen) {
    std::vector<generation_request> reqs(std::size_t(o.batch));
    for (auto& q : reqs) {
      q.prompt.resize(std::size_t(o.prompt));
      for (auto& id : q.prompt) id = int32_t(3 + rng() % uint64_t(std::min(cfg.vocab, 50000) - 3));
      q.max_tokens = gen;
      q.sampling.temperature = 0;
      q.stop_at_eos = false;
    }
    return reqs;
  };
  // Untimed warm-up, as FlexGen's benchmark does before its timed run: the same batch and prompt
  // length (other prompts) for a few tokens, so the timed run starts with the GPU's kernels
  // loaded and cuBLAS's choices made for these shapes (the first prefill and decode passes of a
  // process take 100-170 ms longer on an H100). The engine counters it moved are taken off below.
  const auto reqs = batch_of(o.gen);  // first: the same prompts as without a warm-up
  engine_report before{};
  if (o.warmup > 0) {
    const auto tw = clock_type::now();
    const auto res = (*e)->generate(batch_of(o.warmup), {});
    for (const auto& f : res)
      if (f.result.reason == finish_reason::error) {
        std::fprintf(stderr, "[%s] warm-up error: %s\n", label.c_str(), f.result.error.c_str());
        return r;
      }
    before = (*e)->report();
    std::fprintf(stderr, "[%s] warm-up (%d x %d + %d tokens, not timed) took %.2f s\n",
                 label.c_str(), o.batch, o.prompt, o.warmup,
                 std::chrono::duration<double>(clock_type::now() - tw).count());
  }
  std::vector<int> got(reqs.size(), 0);
  int64_t first = 0, total = 0;
  const int64_t want = int64_t(o.batch) * o.gen;
  const auto t0 = clock_type::now();
  auto t_prefill = t0;
  auto last_print = t0;
  std::fprintf(stderr, "[%s] prefill %d x %d tokens ...\n", label.c_str(), o.batch, o.prompt);
  cache_usage mid;  // the cache as it stands halfway through decode: what the passes read
  auto res = (*e)->generate(reqs, [&](std::size_t i, int32_t) {
    const auto now = clock_type::now();
    if (total == want / 2) mid = (*e)->report().cache.usage;
    if (got[i]++ == 0 && ++first == o.batch) {
      t_prefill = now;
      std::fprintf(stderr, "[%s] prefill done in %.2f s\n", label.c_str(),
                   std::chrono::duration<double>(now - t0).count());
    }
    ++total;
    if (std::chrono::duration<double>(now - last_print).count() > 2.0 || total == want) {
      last_print = now;
      std::fprintf(stderr, "[%s] %lld / %lld tokens, %.1f s\n", label.c_str(), (long long)total,
                   (long long)want, std::chrono::duration<double>(now - t0).count());
    }
  });
  const auto t1 = clock_type::now();
  for (const auto& f : res)
    if (f.result.reason == finish_reason::error) {
      std::fprintf(stderr, "[%s] error: %s\n", label.c_str(), f.result.error.c_str());
      return r;
    }
  const auto rep = (*e)->report();
  if (!rep.intake.trace.empty()) std::printf("[%s] %s\n", label.c_str(), rep.intake.trace.c_str());
  r.prefill_s = std::chrono::duration<double>(t_prefill - t0).count();
  r.decode_s = std::chrono::duration<double>(t1 - t_prefill).count();
  r.tokens_per_s = double(want) / (r.prefill_s + r.decode_s);
  r.decode_tokens_per_s = double(int64_t(o.batch) * (o.gen - 1)) / r.decode_s;
  r.peak = rep.cache.device_peak;
  r.budget = rep.cache.device_budget;
  r.resident = rep.weights.resident_layers;
  // The roofline of the plan in force: the cost model at this machine's measured figures, for
  // a decode step in the middle of generation, with the engine's actual placement.
  const step_workload w = mid_decode_workload(o.batch, o.prompt, o.gen);
  budgets b;
  b.device_bytes = rep.cache.device_budget;
  b.host_bytes = opts.host_budget;
  b.resident_layers = rep.weights.resident_layers;
  b.head_resident = 1;
  b.device_cache_cap = rep.cache.device_cap;
  cache_policy p;
  p.auto_ratio = false;
  // The ratio actually held (blocks keep the form they were given when allocated).
  const double kv_tok = double(mid.tokens[0][0] + mid.tokens[0][1]);
  const double act_tok = double(mid.tokens[1][0] + mid.tokens[1][1]);
  p.kv_ratio = kv_tok + act_tok > 0 ? kv_tok / (kv_tok + act_tok) : rep.cache.kv_ratio;
  p.block_size = opts.block_size;
  const auto plan = make_plan(cfg, w, b, cal, p);
  r.kv_ratio = p.kv_ratio;
  r.plan_text = plan.feasible ? describe_plan(cfg, w, plan) : plan.error;
  if (plan.feasible) {
    r.predicted_decode_s = plan.step_s * (o.gen - 1);
    r.roofline_fraction = r.predicted_decode_s / r.decode_s;
    r.gpu_busy = plan.gpu_s * (o.gen - 1) / r.decode_s;
  }
  // Link: streamed weights every pass plus the cache actually moved, at the measured rate.
  const double passes = double(rep.intake.steps - before.intake.steps);
  const double weight_bytes =
      double(cfg.n_layer - r.resident) * double(layer_device_elems(cfg)) * cal.weight_elem_bytes;
  r.link_busy =
      (passes * weight_bytes + double(rep.intake.h2d_cache_bytes - before.intake.h2d_cache_bytes)) /
      cal.h2d_bytes_per_s / (r.prefill_s + r.decode_s);
  r.ok = true;
  return r;
}

int run_bench(bench_options& o) {
  if (const auto why = o.eng.resolve(); !why.empty()) {
    std::fprintf(stderr, "error: %s\n", why.c_str());
    return 2;
  }
  if (o.src.shape.empty() && o.src.dir.empty()) o.src.shape = "opt-13b";
  if (o.eng.opts.backend == "cpu" && o.src.dir.empty() && o.src.shape == "opt-13b")
    std::fprintf(stderr, "warning: opt-13b on the CPU backend takes hours; try --shape opt-125m\n");
  const std::size_t budget =
      o.eng.opts.device_budget > 0 ? std::size_t(o.eng.opts.device_budget) : (std::size_t(1) << 50);
  std::unique_ptr<backend> be;
  try {
    be = make_backend(o.eng.opts.backend, budget);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  const auto t0 = clock_type::now();
  std::shared_ptr<const model> m;
  if (!o.src.dir.empty()) {
    auto r = open_model(o.src);
    if (!r) {
      std::fprintf(stderr, "error: %s\n", r.error().c_str());
      return 1;
    }
    m = *r;
  } else {
    auto cfg = synthetic_config(o.src.shape);
    if (!cfg) {
      std::fprintf(stderr, "error: %s\n", cfg.error().c_str());
      return 1;
    }
    // Weights in the backend's host memory (pinned on CUDA): streamed at full link speed.
    backend* bp = be.get();
    auto r =
        make_synthetic_model(*cfg, o.src.seed, [bp](std::size_t n) { return bp->host_alloc(n); });
    if (!r) {
      std::fprintf(stderr, "error: %s\n", r.error().c_str());
      return 1;
    }
    m = *r;
  }
  std::fprintf(stderr, "model %s: %.2fB parameters, %s of weights, made in %.1f s\n",
               m->config.name.c_str(), double(m->config.parameter_count()) / 1e9,
               format_bytes(double(m->store->total_bytes())).c_str(),
               std::chrono::duration<double>(clock_type::now() - t0).count());
  const calibration cal = measure_calibration(*be, m->config, bench_block_size(o.eng.opts));
  be.reset();
  std::printf(
      "calibration on %s: h2d %.1f GB/s (block copies: KV %.1f, act %.1f), d2h %.1f GB/s, "
      "device copy %.0f GB/s, GEMM",
      cal.device.c_str(), cal.h2d_bytes_per_s / 1e9, cal.kv_block_h2d_bytes_per_s / 1e9,
      cal.act_block_h2d_bytes_per_s / 1e9, cal.d2h_bytes_per_s / 1e9, cal.mem_bytes_per_s / 1e9);
  for (const auto& [M, f] : cal.gemm_flops)
    std::printf(" M=%lld %.1f TF/s", (long long)M, f / 1e12);
  std::printf("\n");

  std::vector<bench_result> results;
  results.push_back(
      run_once(o, o.eng.opts.auto_ratio ? "hybrid (auto)" : "hybrid", o.eng.opts, m, cal));
  if (o.kv_only) {
    engine_options kv = o.eng.opts;
    kv.auto_ratio = false;
    kv.kv_ratio = 1.0;
    results.push_back(run_once(o, "kv-only", kv, m, cal));
  }
  if (!results[0].plan_text.empty())
    std::printf("\nplan of the first run:\n%s\n", results[0].plan_text.c_str());
  std::printf("\n%-14s %9s %9s %9s %9s %8s %9s %8s %8s %6s %8s %12s\n", "run", "tok/s", "prefill",
              "decode", "dec tok/s", "kv_ratio", "resident", "link", "gpu*", "roof", "vs kv",
              "peak/budget");
  for (const auto& r : results) {
    if (!r.ok) {
      std::printf("%-14s failed\n", r.label.c_str());
      continue;
    }
    const double vs =
        results.size() > 1 && results[1].ok ? r.tokens_per_s / results[1].tokens_per_s : 0;
    std::printf("%-14s %9.1f %8.2fs %8.2fs %9.1f %8.2f %9d %7.0f%% %7.0f%% %5.0f%% %7.2fx %5s/%s\n",
                r.label.c_str(), r.tokens_per_s, r.prefill_s, r.decode_s, r.decode_tokens_per_s,
                r.kv_ratio, r.resident, 100 * r.link_busy, 100 * r.gpu_busy,
                100 * r.roofline_fraction, vs, format_bytes(double(r.peak)).c_str(),
                format_bytes(double(r.budget)).c_str());
  }
  std::printf(
      "tok/s = batch*gen/(prefill+decode); roof = predicted decode time of the plan / "
      "measured; link = bytes moved / measured h2d rate / wall time; gpu* = predicted "
      "compute / measured decode time (a model figure, not a counter)\n");
  return results[0].ok ? 0 : 1;
}

}  // namespace

void add_bench_command(CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<bench_options>();
  o->eng.opts.backend = "auto";
  auto* c = app.add_subcommand("bench", "measure throughput on a synthetic workload (BENCH.md)");
  add_model_options(c, o->src);
  add_engine_options(c, o->eng);
  c->add_option("--batch", o->batch, "sequences")->check(CLI::PositiveNumber);
  c->add_option("--prompt", o->prompt, "prompt tokens")->check(CLI::PositiveNumber);
  c->add_option("--gen", o->gen, "generated tokens")->check(CLI::PositiveNumber);
  c->add_flag("--kv-only", o->kv_only, "also run with every cached token as K/V (FlexGen-style)");
  c->add_option("--prompt-seed", o->seed, "seed of the random prompts");
  c->add_option("--warmup", o->warmup,
                "tokens each sequence generates in an untimed warm-up run of the same batch "
                "before the timed one (0: none)")
      ->check(CLI::NonNegativeNumber);
  o->eng.opts.prefill_first = true;
  c->add_option("--prefill-first", o->eng.opts.prefill_first,
                "true: prompts are prefilled before any sequence decodes (default); false: "
                "decodes share the prefill passes, as in serving");
  c->add_option(
      "--trace-pass", o->eng.opts.trace_passes,
      "print when each layer's weights, cache, rebuild and compute finished in this "
      "pass (passes count from 1, the warm-up run's first; repeat for several); any use also "
      "prints one line per pass (0: those lines only)");
  c->callback([o, &run] { run = [o] { return run_bench(*o); }; });
}

}  // namespace hs::cli
