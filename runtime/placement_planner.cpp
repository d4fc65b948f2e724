// Placement planner: brute-force search over the KV/activation ratio, the number of resident
// layers and the output head's residency; the cache fills whatever device bytes are left.
//
// Why the search is this small: given the ratio, a device byte saves exactly one link byte
// whether it holds weights, KV or activations, and the GPU work (rebuild of every act token,
// whatever its tier) does not depend on the tier. So for each (ratio, resident layers, head)
// the best cache placement is "as much cache on the device as fits", and only the split of
// the per-layer maxima between resident and streamed layers differs. 51 ratios x 2 x (L + 1)
// candidates, O(1) each: well under a millisecond for 80 layers.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <limits>

#include "hybridserve/cost_model.hpp"

namespace hs {
namespace {

constexpr int k_ring_slots = 2;  // one layer computes while the next one lands
constexpr double k_gib = 1024.0 * 1024.0 * 1024.0;
constexpr int k_grid_steps = 50;  // auto ratio grid: 0, 0.02, ..., 1

std::string strf(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

std::string gib(int64_t bytes) {
  return strf("%.2f GiB", double(bytes) / k_gib);
}
std::string gib_exact(int64_t bytes) {
  return strf("%.2f GiB (%lld bytes)", double(bytes) / k_gib, (long long)bytes);
}

int64_t floor_block(int64_t n, int64_t block) {
  return n <= 0 ? 0 : n / block * block;
}

// Figures fixed for the whole search.
struct sizes {
  int L = 0;
  int64_t layer_w = 0, head_w = 0, emb = 0, kv_b = 0, act_b = 0, dense_ws = 0, block = 1;
  int64_t past = 0;
  int64_t cache_cap = -1;  // budgets::device_cache_cap
};

// One point of the search and what it costs.
struct choice {
  double ratio = 1;
  int64_t kv_tokens = 0, act_tokens = 0;  // per layer, both tiers
  int resident = 0;
  bool head_res = false;
  int64_t dev_kv = 0, dev_act = 0;  // per layer, device tier
  int64_t ring = 0, staging = 0, rebuild_ws = 0;
  int64_t host_peak = 0;
  layer_cost res_cost, str_cost, head_cost;
  double step_s = std::numeric_limits<double>::infinity();
};

int64_t cache_bytes_per_layer(const sizes& z, int64_t kv, int64_t act) {
  return kv * z.kv_b + act * z.act_b;
}

// Puts as much of the cache on the device as `avail` bytes allow, counting the staging slots
// the host-tier cache of one layer lands in (k_ring_slots of them, so the next layer's cache
// can land while this one is attended). Fills KV first: a device KV token needs neither
// transfer nor rebuild, and byte for byte the link saving is the same. False when not even
// the staging fits.
bool place_cache(const sizes& z, int64_t avail, choice& c) {
  const int64_t total = cache_bytes_per_layer(z, c.kv_tokens, c.act_tokens) * z.L;
  if (z.cache_cap >= 0 && total > z.cache_cap) {  // a fixed cap: the rest lives on the host
    const int64_t x = std::min<int64_t>(z.cache_cap, std::max<int64_t>(0, avail));
    c.dev_kv = std::min(c.kv_tokens, floor_block(x / (z.kv_b * z.L), z.block));
    const int64_t rest = x - c.dev_kv * z.kv_b * z.L;
    c.dev_act = std::min(c.act_tokens, floor_block(rest / (z.act_b * z.L), z.block));
    c.staging =
        k_ring_slots * cache_bytes_per_layer(z, c.kv_tokens - c.dev_kv, c.act_tokens - c.dev_act);
    return avail - x >= c.staging;
  }
  if (total <= avail) {
    c.dev_kv = c.kv_tokens;
    c.dev_act = c.act_tokens;
    c.staging = 0;
    return true;
  }
  if (z.L <= k_ring_slots) return false;  // staging alone would hold all the host cache
  // Device cache x plus staging slots * (total - x) / L must fit in avail.
  const double slots_per_layer = double(k_ring_slots) / z.L;
  const double x = (double(avail) - slots_per_layer * double(total)) / (1.0 - slots_per_layer);
  if (x < 0) return false;
  c.dev_kv = std::min(c.kv_tokens, floor_block(int64_t(x / double(z.kv_b * z.L)), z.block));
  const double rest = x - double(c.dev_kv * z.kv_b * z.L);
  c.dev_act = std::min(c.act_tokens, floor_block(int64_t(rest / double(z.act_b * z.L)), z.block));
  c.staging =
      k_ring_slots * cache_bytes_per_layer(z, c.kv_tokens - c.dev_kv, c.act_tokens - c.dev_act);
  return true;
}

int64_t device_peak(const sizes& z, const choice& c) {
  return int64_t(c.resident) * z.layer_w + (c.head_res ? z.head_w : 0) + c.ring + c.staging +
         c.rebuild_ws + z.dense_ws + cache_bytes_per_layer(z, c.dev_kv, c.dev_act) * z.L;
}

enum class fit { ok, device_short, host_short };

// Costs one candidate; leaves step_s infinite when it does not fit a budget.
fit evaluate(const model_config& cfg, const workload_summary& s, const calibration& cal,
             const budgets& b, const sizes& z, choice& c) {
  const bool streams = c.resident < z.L || !c.head_res;
  c.ring = streams ? k_ring_slots * z.layer_w : 0;
  c.rebuild_ws = c.act_tokens * z.kv_b;  // rebuilt K and V of every act token of one layer
  const int64_t fixed = int64_t(c.resident) * z.layer_w + (c.head_res ? z.head_w : 0) + c.ring +
                        c.rebuild_ws + z.dense_ws;
  if (fixed > b.device_bytes || !place_cache(z, b.device_bytes - fixed, c))
    return fit::device_short;
  const int64_t host_kv = c.kv_tokens - c.dev_kv, host_act = c.act_tokens - c.dev_act;
  // Host memory holds the streamed weights, the embedding lookup table and host-tier cache.
  c.host_peak = int64_t(z.L - c.resident) * z.layer_w + (c.head_res ? 0 : z.head_w) + z.emb +
                cache_bytes_per_layer(z, host_kv, host_act) * z.L;
  if (b.host_bytes > 0 && c.host_peak > b.host_bytes) return fit::host_short;
  // New tokens are stored in the chosen ratio, in each form's tier proportions; the host
  // share rides back over the link per layer.
  const double kv_host = c.kv_tokens > 0 ? double(host_kv) / c.kv_tokens : 0;
  const double act_host = c.act_tokens > 0 ? double(host_act) / c.act_tokens : 0;
  const double n = double(s.new_tokens);
  layer_traffic t;
  t.host_kv_tokens = host_kv;
  t.host_act_tokens = host_act;
  t.act_tokens = c.act_tokens;
  t.d2h_bytes =
      std::llround(n * c.ratio * z.kv_b * kv_host + n * (1 - c.ratio) * z.act_b * act_host);
  t.weights_resident = true;
  c.res_cost = predict_layer_cost(cfg, s, cal, t);
  t.weights_resident = false;
  c.str_cost = predict_layer_cost(cfg, s, cal, t);
  c.head_cost = predict_head_cost(cfg, s, cal, c.head_res);
  c.step_s =
      c.resident * c.res_cost.step_s + (z.L - c.resident) * c.str_cost.step_s + c.head_cost.step_s;
  return fit::ok;
}

std::string explain(const model_config& cfg, const cache_policy& p, const sizes& z, const choice& c,
                    const placement_plan& plan, int64_t budget) {
  std::string r;
  const double rebuild_mflop = 4.0 * cfg.hidden * cfg.kv_dim() / 1e6;
  double rebuild_s = 0;
  for (const auto& l : plan.layers) rebuild_s += l.rebuild_s;
  if (!p.auto_ratio) {
    r = strf("kv_ratio pinned to %.2f by the cache policy (%lld KV + %lld activation tokens).",
             c.ratio, (long long)c.kv_tokens, (long long)c.act_tokens);
  } else if (z.act_b > z.kv_b) {
    r = strf(
        "KV only (kv_ratio 1): an activation (H values) is larger than K+V (2*kv_dim "
        "values), %d > %d values per token per layer (grouped/multi-query attention), so "
        "an activation would cost more link and device bytes and a rebuild GEMM as well.",
        cfg.hidden, 2 * cfg.kv_dim());
  } else if (z.act_b == z.kv_b) {
    r = strf(
        "KV only (kv_ratio 1): an activation (H values) is as large as K+V (2*kv_dim "
        "values), %d values per token per layer, and would also need a rebuild.",
        cfg.hidden);
  } else if (z.past == 0) {
    r = "KV only (kv_ratio 1): nothing is cached yet, so there is nothing to rebuild.";
  } else {
    r = strf(
        "kv_ratio %.2f chosen on a 0.02 grid: an activation takes %lld B per token per "
        "layer against %lld B of K+V, but costs a %.1f MFLOP rebuild GEMM.",
        c.ratio, (long long)z.act_b, (long long)z.kv_b, rebuild_mflop);
    if (c.ratio <= 0 && plan.link_s >= plan.gpu_s)
      r += strf(
          " The step is link-bound (link %.3f s vs GPU %.3f s), so every cached token is "
          "held as an activation; the rebuild (%.3f s) hides under the transfers.",
          plan.link_s, plan.gpu_s, rebuild_s);
    else if (c.ratio >= 1)
      r += strf(
          " The GPU would be the bottleneck if tokens were rebuilt (link %.3f s, GPU "
          "%.3f s), so all tokens are KV.",
          plan.link_s, plan.gpu_s);
    else
      r += strf(
          " The mix balances the link (%.3f s) against the GPU (%.3f s, rebuild %.3f s): "
          "more activations would load the GPU, more KV the link.",
          plan.link_s, plan.gpu_s, rebuild_s);
  }
  const std::string slots = strf("%d ring slots of %s", k_ring_slots, gib(z.layer_w).c_str());
  if (c.ring == 0)
    r += strf(" Weights: all %d layers and the output head stay on the device", z.L);
  else if (c.resident == 0 && c.head_res)
    r += strf(" Weights: the output head stays on the device; all %d layers stream through %s", z.L,
              slots.c_str());
  else if (c.resident == 0)
    r += strf(" Weights: all %d layers and the head stream through %s", z.L, slots.c_str());
  else
    r += strf(
        " Weights: the first %d of %d layers%s stay on the device; the rest stream "
        "through %s",
        c.resident, z.L, c.head_res ? " and the output head" : "", slots.c_str());
  r += strf(
      ". A device byte saves one link byte whether it holds weights or cache, so every "
      "resident-layer count was tried and the cache fills what is left (KV first: it "
      "needs no rebuild). Cache per layer: %lld KV + %lld act tokens on the device, "
      "%lld KV + %lld act on the host (%s on the device, %s on the host in all).",
      (long long)c.dev_kv, (long long)c.dev_act, (long long)(c.kv_tokens - c.dev_kv),
      (long long)(c.act_tokens - c.dev_act), gib(plan.device_cache_bytes).c_str(),
      gib(plan.host_cache_bytes).c_str());
  r += strf(" Device peak %s of %s. Predicted step %.3f s, %.1f tokens/s.",
            gib(plan.device_peak_bytes).c_str(), gib(budget).c_str(), plan.step_s,
            plan.tokens_per_s);
  return r;
}

placement_plan fail(std::string why) {
  placement_plan plan;
  plan.feasible = false;
  plan.error = std::move(why);
  plan.reason = "no plan: " + plan.error;
  return plan;
}

}  // namespace

placement_plan make_plan(const model_config& cfg, const step_workload& w, const budgets& b,
                         const calibration& cal, const cache_policy& p) {
  if (const std::string bad = cal.check(); !bad.empty()) return fail(bad);
  if (cfg.n_layer <= 0 || cfg.hidden <= 0 || cfg.kv_dim() <= 0)
    return fail("model config has no layers or zero sizes");
  if (p.block_size <= 0) return fail("cache block size must be positive");
  if (!p.auto_ratio && !(p.kv_ratio >= 0 && p.kv_ratio <= 1))
    return fail(strf("pinned kv_ratio %g is outside [0, 1]", p.kv_ratio));
  if (w.new_tokens < 0) return fail("new_tokens must be >= 0");
  for (int64_t c : w.context)
    if (c < 0) return fail("a sequence has a negative context length");

  const workload_summary s = summarize(cfg, w);
  sizes z;
  z.L = cfg.n_layer;
  z.layer_w = layer_weight_bytes(cfg, cal);
  z.head_w = head_weight_bytes(cfg, cal);
  z.emb = embedding_bytes(cfg, cal);
  z.kv_b = kv_bytes_per_token(cfg, cal);
  z.act_b = act_bytes_per_token(cfg, cal);
  z.dense_ws = dense_workspace_bytes(cfg, w, cal);
  z.block = p.block_size;
  z.past = s.past_tokens;
  z.cache_cap = b.device_cache_cap;

  std::vector<double> ratios;
  if (!p.auto_ratio)
    ratios.push_back(p.kv_ratio);
  else if (z.act_b >= z.kv_b || z.past == 0)
    ratios.push_back(1.0);  // act never pays
  else
    for (int i = 0; i <= k_grid_steps; ++i)  // descending: ties go to less rebuild work
      ratios.push_back(1.0 - double(i) / k_grid_steps);

  choice best;
  int64_t need_min = std::numeric_limits<int64_t>::max();  // smallest device need seen
  int64_t need_ws = 0, need_staging = 0;
  bool device_fits_somewhere = false;
  for (double r : ratios) {
    choice c;
    c.ratio = r;
    c.kv_tokens =
        r >= 1 ? z.past
               : std::min<int64_t>(z.past, std::llround(r * double(z.past) / z.block) * z.block);
    c.act_tokens = z.past - c.kv_tokens;
    // Least device memory this ratio can run in: everything streamed, staging only.
    const int64_t total = cache_bytes_per_layer(z, c.kv_tokens, c.act_tokens) * z.L;
    const int64_t min_cache =
        z.L > k_ring_slots ? std::min(total, k_ring_slots * total / z.L) : total;
    const int64_t need = k_ring_slots * z.layer_w + c.act_tokens * z.kv_b + z.dense_ws + min_cache;
    if (need < need_min) {
      need_min = need;
      need_ws = c.act_tokens * z.kv_b + z.dense_ws;
      need_staging = min_cache;
    }
    // More residency first: at equal predicted time it leaves the link idle, so ties go to it.
    for (int head = 1; head >= 0; --head) {
      if (b.head_resident >= 0 && head != b.head_resident) continue;
      for (int R = z.L; R >= 0; --R) {
        if (b.resident_layers >= 0 && R != std::min(b.resident_layers, z.L)) continue;
        c.resident = R;
        c.head_res = head == 1;
        if (evaluate(cfg, s, cal, b, z, c) != fit::device_short) device_fits_somewhere = true;
        if (c.step_s < best.step_s * (1 - 1e-12)) best = c;
        c.step_s = std::numeric_limits<double>::infinity();
      }
    }
  }

  if (!(best.step_s < std::numeric_limits<double>::infinity())) {
    if (!device_fits_somewhere)
      return fail(
          strf("device budget %s is too small: streaming needs at least %s = %d ring "
               "slots x %s (one layer's weights) + %s workspace (rebuild + new tokens) "
               "+ %s staging for the host-tier cache of one layer per slot",
               gib_exact(b.device_bytes).c_str(), gib_exact(need_min).c_str(), k_ring_slots,
               gib_exact(z.layer_w).c_str(), gib(need_ws).c_str(), gib(need_staging).c_str()));
    return fail(strf(
        "host budget %s is too small for the streamed weights, the embedding "
        "table and the host-tier cache this device budget leaves (%s of weights "
        "alone)",
        gib_exact(b.host_bytes).c_str(), gib(int64_t(z.L) * z.layer_w + z.head_w + z.emb).c_str()));
  }

  placement_plan plan;
  plan.resident_layers = best.resident;
  plan.head_resident = best.head_res;
  plan.ring_slots = best.ring > 0 ? k_ring_slots : 0;
  plan.ring_bytes = best.ring;
  plan.staging_bytes = best.staging;
  plan.workspace_bytes = best.rebuild_ws + z.dense_ws;
  plan.kv_ratio = best.ratio;
  const int kv = int(cache_form::kv), act = int(cache_form::act);
  const int dev = int(cache_tier::device), host = int(cache_tier::host);
  plan.tokens[kv][dev] = best.dev_kv;
  plan.tokens[kv][host] = best.kv_tokens - best.dev_kv;
  plan.tokens[act][dev] = best.dev_act;
  plan.tokens[act][host] = best.act_tokens - best.dev_act;
  plan.device_cache_bytes = cache_bytes_per_layer(z, best.dev_kv, best.dev_act) * z.L;
  plan.host_cache_bytes =
      cache_bytes_per_layer(z, plan.tokens[kv][host], plan.tokens[act][host]) * z.L;
  plan.device_weight_bytes = int64_t(best.resident) * z.layer_w + (best.head_res ? z.head_w : 0);
  plan.device_peak_bytes = device_peak(z, best);
  plan.host_peak_bytes = best.host_peak;
  for (int j = 0; j < z.L; ++j)
    plan.layers.push_back(j < best.resident ? best.res_cost : best.str_cost);
  plan.head = best.head_cost;
  for (const auto& l : plan.layers) {
    plan.step_s += l.step_s;
    plan.link_s += l.link_s;
    plan.gpu_s += l.gpu_s;
  }
  plan.step_s += plan.head.step_s;
  plan.link_s += plan.head.link_s;
  plan.gpu_s += plan.head.gpu_s;
  plan.tokens_per_s = plan.step_s > 0 ? double(s.new_tokens) / plan.step_s : 0;
  plan.reason = explain(cfg, p, z, best, plan, b.device_bytes);
  return plan;
}

std::string describe_plan(const model_config& cfg, const step_workload& w,
                          const placement_plan& plan) {
  const workload_summary s = summarize(cfg, w);
  std::string out =
      strf("plan for %s: %lld sequences, %lld cached tokens, %lld new tokens\n", cfg.name.c_str(),
           (long long)s.sequences, (long long)s.past_tokens, (long long)s.new_tokens);
  if (!plan.feasible) return out + "infeasible: " + plan.error + "\n";
  const int kv = int(cache_form::kv), act = int(cache_form::act);
  const int dev = int(cache_tier::device), host = int(cache_tier::host);
  out += strf("kv_ratio %.2f; cache tokens per layer   device      host\n", plan.kv_ratio);
  out += strf("                           KV  %10lld %10lld\n", (long long)plan.tokens[kv][dev],
              (long long)plan.tokens[kv][host]);
  out += strf("                          act  %10lld %10lld\n", (long long)plan.tokens[act][dev],
              (long long)plan.tokens[act][host]);
  out += strf("device: weights %s, ring %d x = %s, staging %s, workspace %s, cache %s; peak %s\n",
              gib(plan.device_weight_bytes).c_str(), plan.ring_slots, gib(plan.ring_bytes).c_str(),
              gib(plan.staging_bytes).c_str(), gib(plan.workspace_bytes).c_str(),
              gib(plan.device_cache_bytes).c_str(), gib(plan.device_peak_bytes).c_str());
  out += strf("host: cache %s, peak %s\n", gib(plan.host_cache_bytes).c_str(),
              gib(plan.host_peak_bytes).c_str());
  out +=
      "layers     weights  link MB  link ms  rebuild ms  dense ms  attn ms  gpu ms  "
      "d2h ms  step ms  bound\n";
  auto row = [&](const std::string& name, const layer_cost& l) {
    const char* bound = l.step_s == l.link_s ? "link" : l.step_s == l.gpu_s ? "gpu" : "d2h";
    out += strf("%-10s %-8s %8.1f %8.2f %11.2f %9.2f %8.2f %7.2f %7.2f %8.2f  %s\n", name.c_str(),
                l.resident ? "resident" : "streamed", l.link_bytes / 1e6, l.link_s * 1e3,
                l.rebuild_s * 1e3, l.dense_s * 1e3, l.attn_s * 1e3, l.gpu_s * 1e3, l.d2h_s * 1e3,
                l.step_s * 1e3, bound);
  };
  for (std::size_t i = 0; i < plan.layers.size();) {
    std::size_t j = i;
    const layer_cost& a = plan.layers[i];
    while (j + 1 < plan.layers.size() && plan.layers[j + 1].resident == a.resident &&
           plan.layers[j + 1].link_bytes == a.link_bytes && plan.layers[j + 1].step_s == a.step_s)
      ++j;
    row(i == j ? std::to_string(i) : std::to_string(i) + "-" + std::to_string(j), a);
    i = j + 1;
  }
  row("head", plan.head);
  out += strf("predicted step %.4f s (link %.4f s, GPU %.4f s): %.1f tokens/s\n", plan.step_s,
              plan.link_s, plan.gpu_s, plan.tokens_per_s);
  out += "why: " + plan.reason + "\n";
  return out;
}

}  // namespace hs
