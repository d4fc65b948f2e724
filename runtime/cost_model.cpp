// Cost model: calibration curve helpers, byte sizes and the per-layer time prediction.
#include "hybridserve/cost_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace hs {
namespace {

// Seconds to do `amount` at `rate` per second; nothing to do takes no time, and something to
// do at no rate takes forever (make_plan rejects such calibrations before it gets here).
double time_at(double amount, double rate) {
  if (amount <= 0) return 0;
  if (!(rate > 0)) return std::numeric_limits<double>::infinity();
  return amount / rate;
}

}  // namespace

double calibration::gemm_rate(int64_t M) const {
  if (M <= 0 || gemm_flops.empty()) return 0;
  if (M <= gemm_flops.front().first) return gemm_flops.front().second;
  if (M >= gemm_flops.back().first) return gemm_flops.back().second;
  // GEMM efficiency grows roughly with log(M) between the memory-bound and compute-bound
  // regimes, so interpolate linearly in log(M) between the two surrounding points.
  for (std::size_t i = 1; i < gemm_flops.size(); ++i) {
    const auto& hi = gemm_flops[i];
    if (M > hi.first) continue;
    const auto& lo = gemm_flops[i - 1];
    if (hi.first <= lo.first) return hi.second;
    const double t = (std::log(double(M)) - std::log(double(lo.first))) /
                     (std::log(double(hi.first)) - std::log(double(lo.first)));
    return lo.second + t * (hi.second - lo.second);
  }
  return gemm_flops.back().second;
}

std::string calibration::check() const {
  if (!(h2d_bytes_per_s > 0)) return "calibration: host-to-device bandwidth must be positive";
  if (!(d2h_bytes_per_s > 0)) return "calibration: device-to-host bandwidth must be positive";
  if (!(mem_bytes_per_s > 0)) return "calibration: device memory bandwidth must be positive";
  if (gemm_flops.empty()) return "calibration: no GEMM rate measured";
  for (std::size_t i = 0; i < gemm_flops.size(); ++i) {
    if (gemm_flops[i].first <= 0 || !(gemm_flops[i].second > 0))
      return "calibration: GEMM points need M > 0 and a positive FLOP/s";
    if (i > 0 && gemm_flops[i].first <= gemm_flops[i - 1].first)
      return "calibration: GEMM points must be in increasing M";
  }
  if (cache_elem_bytes <= 0 || weight_elem_bytes <= 0)
    return "calibration: element sizes must be positive";
  return {};
}

int64_t layer_weight_bytes(const model_config& cfg, const calibration& cal) {
  return cfg.layer_parameter_count() * cal.weight_elem_bytes;
}

int64_t head_weight_bytes(const model_config& cfg, const calibration& cal) {
  // vocab x hidden projection + final norm (LayerNorm has a bias, RMSNorm does not).
  const int64_t norm = cfg.architecture == arch::opt ? 2 * int64_t(cfg.hidden) : cfg.hidden;
  return (int64_t(cfg.vocab) * cfg.hidden + norm) * cal.weight_elem_bytes;
}

int64_t embedding_bytes(const model_config& cfg, const calibration& cal) {
  return cfg.tied_embeddings ? 0 : int64_t(cfg.vocab) * cfg.hidden * cal.weight_elem_bytes;
}

int64_t kv_bytes_per_token(const model_config& cfg, const calibration& cal) {
  return 2 * int64_t(cfg.kv_dim()) * cal.cache_elem_bytes;  // K and V rows
}

int64_t act_bytes_per_token(const model_config& cfg, const calibration& cal) {
  return int64_t(cfg.hidden) * cal.cache_elem_bytes;  // the layer input (residual stream)
}

int64_t dense_workspace_bytes(const model_config& cfg, const step_workload& w,
                              const calibration& cal) {
  // Per new token, live inside one layer: residual + normed input (2H), Q, K, V (q + 2kv),
  // attention output (q), FFN intermediate (ffn; gate and up for Llama: 2 ffn).
  const int64_t ffn_rows = cfg.architecture == arch::llama ? 2 * int64_t(cfg.ffn) : cfg.ffn;
  const int64_t per_token =
      2 * int64_t(cfg.hidden) + 2 * int64_t(cfg.q_dim()) + 2 * int64_t(cfg.kv_dim()) + ffn_rows;
  const int64_t seqs = std::max<int64_t>(int64_t(w.context.size()), w.new_tokens > 0 ? 1 : 0);
  // float32 logits of one row per sequence.
  return w.new_tokens * per_token * cal.cache_elem_bytes + seqs * int64_t(cfg.vocab) * 4;
}

workload_summary summarize(const model_config& cfg, const step_workload& w) {
  workload_summary s;
  s.new_tokens = std::max<int64_t>(0, w.new_tokens);
  for (int64_t c : w.context) s.past_tokens += std::max<int64_t>(0, c);
  s.sequences = int64_t(w.context.size());
  if (s.sequences == 0 && s.new_tokens > 0) s.sequences = 1;  // a fresh prompt
  s.attended_tokens = s.past_tokens + s.new_tokens;
  if (s.sequences == 0) return s;
  // New tokens are spread evenly over the sequences (1 each in decode; a chunk in prefill).
  const int64_t base = s.new_tokens / s.sequences, extra = s.new_tokens % s.sequences;
  s.attn_rows = base + (extra > 0 ? 1 : 0);
  const double q = cfg.q_dim();
  for (int64_t i = 0; i < s.sequences; ++i) {
    const double n = double(base + (i < extra ? 1 : 0));
    const double past =
        i < int64_t(w.context.size()) ? double(std::max<int64_t>(0, w.context[i])) : 0;
    // QK^T and PV: 2 FLOP per multiply-add each, over past tokens and (causally) the new ones.
    s.attn_flops += 4.0 * q * n * (past + (n + 1) / 2);
  }
  return s;
}

layer_cost predict_layer_cost(const model_config& cfg, const workload_summary& s,
                              const calibration& cal, const layer_traffic& t) {
  layer_cost c;
  c.resident = t.weights_resident;
  const int64_t kv_b = kv_bytes_per_token(cfg, cal), act_b = act_bytes_per_token(cfg, cal);
  const int64_t weight_bytes = t.weights_resident ? 0 : layer_weight_bytes(cfg, cal);
  const int64_t kv_bytes = t.host_kv_tokens * kv_b, act_bytes = t.host_act_tokens * act_b;
  c.link_bytes = weight_bytes + kv_bytes + act_bytes;
  const auto rate = [&](double r) { return r > 0 ? r : cal.h2d_bytes_per_s; };
  c.link_s = time_at(double(weight_bytes), cal.h2d_bytes_per_s) +
             time_at(double(kv_bytes), rate(cal.kv_block_h2d_bytes_per_s)) +
             time_at(double(act_bytes), rate(cal.act_block_h2d_bytes_per_s));
  // Rebuild: one GEMM of the act tokens by [Wk|Wv] (H x 2 kv_dim); the norm is negligible.
  const double rebuild_flops = double(t.act_tokens) * 2.0 * cfg.hidden * 2.0 * cfg.kv_dim();
  c.rebuild_s = time_at(rebuild_flops, cal.gemm_rate(t.act_tokens));
  // Every weight of the layer is used once per new token: 2 FLOP per parameter.
  const double dense_flops = 2.0 * double(cfg.layer_parameter_count()) * double(s.new_tokens);
  c.dense_s = time_at(dense_flops, cal.gemm_rate(s.new_tokens));
  // Attention reads each K/V row once (decode is bandwidth-bound); long prefill chunks are
  // compute-bound instead.
  const double attn_bytes = double(s.attended_tokens) * double(kv_b);
  c.attn_s = std::max(time_at(attn_bytes, cal.mem_bytes_per_s),
                      time_at(s.attn_flops, cal.gemm_rate(s.attn_rows)));
  c.gpu_s = c.rebuild_s + c.dense_s + c.attn_s;
  c.d2h_bytes = t.d2h_bytes;
  c.d2h_s = time_at(double(t.d2h_bytes), cal.d2h_bytes_per_s);
  c.step_s = std::max({c.link_s, c.gpu_s, c.d2h_s});
  return c;
}

layer_cost predict_head_cost(const model_config& cfg, const workload_summary& s,
                             const calibration& cal, bool resident) {
  layer_cost c;
  c.resident = resident;
  if (s.sequences == 0) return c;  // nothing to sample: the head is not run
  c.link_bytes = resident ? 0 : head_weight_bytes(cfg, cal);
  c.link_s = time_at(double(c.link_bytes), cal.h2d_bytes_per_s);
  // Logits of one row per sequence (the position that is sampled).
  const double flops = 2.0 * double(cfg.vocab) * cfg.hidden * double(s.sequences);
  c.dense_s = time_at(flops, cal.gemm_rate(s.sequences));
  c.gpu_s = c.dense_s;
  c.step_s = std::max(c.link_s, c.gpu_s);
  return c;
}

}  // namespace hs
