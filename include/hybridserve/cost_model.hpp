// Cost model and placement planner: predicts the time of one pass over the weights (a decode
// step, or a prefill chunk) for a placement of weights and cache, and searches the placement
// (resident layers, cache form and tier) that minimises it. Pure arithmetic: no CAF, no CUDA.
//
// Model (BENCH.md "Roofline of a decode step"), per layer j:
//   link_j = weight bytes of j unless resident / h2d + host-tier KV bytes / h2d of KV block
//            copies + host-tier act bytes / h2d of act block copies
//   gpu_j  = rebuild FLOPs / gemm_rate(act tokens) + dense FLOPs / gemm_rate(new tokens)
//            + attention time (max of cache bytes / mem_bw and attention FLOPs / gemm rate)
//   d2h_j  = new tokens' host-tier cache bytes / d2h (the other direction of the link)
//   step   = sum_j max(link_j, gpu_j, d2h_j) + the same for the output head.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hybridserve/model_config.hpp"

namespace hs {

/// Measured machine figures the plan uses (the backend measures them at start-up).
struct calibration {
  std::string device;          // e.g. "NVIDIA H100 80GB HBM3" or "cpu"
  double h2d_bytes_per_s = 0;  // host -> device link
  // The same link under the copies cache loads issue: one per block and layer (a KV slice of
  // block_size x 2 x kv_dim, an activation slice of block_size x hidden), from scattered host
  // blocks. Smaller copies than a weight upload's move fewer bytes a second (GQA K/V slices are
  // a quarter of an activation slice). 0: as h2d_bytes_per_s.
  double kv_block_h2d_bytes_per_s = 0;
  double act_block_h2d_bytes_per_s = 0;
  double d2h_bytes_per_s = 0;
  double mem_bytes_per_s = 0;  // device memory bandwidth (attention reads cache at this rate)
  std::vector<std::pair<int64_t, double>> gemm_flops;  // (M, FLOP/s) for M x hidden x N, M rising
  int cache_elem_bytes = 2;  // bytes per cached value (2 = fp16 on GPU, 4 = float32 on CPU)
  int weight_elem_bytes = 2;
  /// FLOP/s of a GEMM with M rows: linear in log(M) between table points, the end values
  /// outside the table; 0 for M <= 0 or an empty table.
  double gemm_rate(int64_t M) const;
  /// Empty when every figure the planner divides by is usable, else what is missing.
  std::string check() const;
};

/// The workload of one pass over the weights.
struct step_workload {
  std::vector<int64_t> context;  // per running sequence: tokens already cached (past)
  int64_t new_tokens = 0;        // tokens computed this pass (batch for decode; chunk for prefill)
};

/// The decode step `plan` and `bench` predict for a batch of `batch` sequences of `prompt`
/// tokens generating `gen`: the middle of generation, every sequence holding prompt + gen/2.
inline step_workload mid_decode_workload(int batch, int prompt, int gen) {
  step_workload w;
  w.context.assign(std::size_t(batch), int64_t(prompt) + gen / 2);
  w.new_tokens = batch;
  return w;
}

struct budgets {
  int64_t device_bytes = 0;  // everything on the device: weights, ring, cache, workspace
  int64_t host_bytes = 0;    // 0 = unlimited
  // Placement already fixed by a running engine (re-planning only moves the ratio):
  int resident_layers = -1;       // -1: the planner chooses
  int head_resident = -1;         // -1: chooses; 0/1: fixed
  int64_t device_cache_cap = -1;  // -1: whatever is left; else at most this many cache bytes
};

struct cache_policy {
  bool auto_ratio = true;
  double kv_ratio = 1.0;  // when !auto_ratio: fraction of cached tokens held as KV (rest as act)
  int block_size = 16;    // tokens per cache block
};

enum class cache_form { kv, act };
enum class cache_tier { device, host };

/// Predicted time of one layer (or of the output head) in one pass; seconds and bytes.
struct layer_cost {
  double link_s = 0;     // host -> device: streamed weights + host-tier cache
  double gpu_s = 0;      // rebuild_s + dense_s + attn_s
  double rebuild_s = 0;  // K/V projections of the activation tokens (both tiers)
  double dense_s = 0;    // projections and FFN of the new tokens
  double attn_s = 0;     // attention of the new tokens over the whole cache
  int64_t link_bytes = 0;
  bool resident = false;
  double d2h_s = 0;  // device -> host: new tokens' cache that lives on the host tier
  int64_t d2h_bytes = 0;
  double step_s = 0;  // max(link_s, gpu_s, d2h_s): the layer's share of the step
};

/// Sizes the cost model needs, in bytes (elements times the calibration's element sizes).
int64_t layer_weight_bytes(const model_config& cfg, const calibration& cal);
/// Output projection (tied or not) plus the final norm: streamed at the end of every pass
/// unless resident. Token (and OPT position) embeddings are looked up on the host.
int64_t head_weight_bytes(const model_config& cfg, const calibration& cal);
/// Host copy of the token embedding when it is not the head's matrix (untied models).
int64_t embedding_bytes(const model_config& cfg, const calibration& cal);
int64_t kv_bytes_per_token(const model_config& cfg, const calibration& cal);   // one layer
int64_t act_bytes_per_token(const model_config& cfg, const calibration& cal);  // one layer
/// Device scratch for the new tokens inside one layer (residual, QKV, FFN intermediate, their
/// fresh K/V) plus the logits: what a pass needs beyond weights, cache and rebuild workspace.
int64_t dense_workspace_bytes(const model_config& cfg, const step_workload& w,
                              const calibration& cal);

/// The per-layer figures of a workload that do not depend on placement (computed once).
struct workload_summary {
  int64_t sequences = 0;    // running sequences (at least 1 when new_tokens > 0)
  int64_t past_tokens = 0;  // sum of context: the cache the plan places
  int64_t new_tokens = 0;
  int64_t attended_tokens = 0;  // past + new: K/V rows attention reads per layer
  double attn_flops = 0;        // per layer: QK^T and PV of the new tokens (causal)
  int64_t attn_rows = 0;        // new tokens per sequence: the M of the attention GEMMs
};
workload_summary summarize(const model_config& cfg, const step_workload& w);

/// What one layer moves and computes in a pass, in tokens.
struct layer_traffic {
  bool weights_resident = false;
  int64_t host_kv_tokens = 0;   // KV tokens on the host tier: loaded over the link
  int64_t host_act_tokens = 0;  // activation tokens on the host tier: loaded over the link
  int64_t act_tokens = 0;       // activation tokens of both tiers: all rebuilt this pass
  int64_t d2h_bytes = 0;        // new tokens' cache written back to the host tier
};
layer_cost predict_layer_cost(const model_config& cfg, const workload_summary& s,
                              const calibration& cal, const layer_traffic& t);
/// The output head: norm + vocab projection of one row per sequence (the sampled position).
layer_cost predict_head_cost(const model_config& cfg, const workload_summary& s,
                             const calibration& cal, bool resident);

struct placement_plan {
  int resident_layers = 0;      // the first resident_layers layers keep their weights on device
  bool head_resident = false;   // output head (and tied embedding) kept on the device
  int ring_slots = 2;           // device buffers for streamed layers (0 when nothing streams)
  int64_t ring_bytes = 0;       // ring_slots x largest layer's weight bytes (the head streams
                                // through the same slots in slices)
  int64_t staging_bytes = 0;    // ring_slots x one layer's host-tier cache: where it lands
  int64_t workspace_bytes = 0;  // rebuild workspace (K/V of every act token of one layer)
                                // + dense workspace of the new tokens
  double kv_ratio = 1.0;        // chosen fraction of cached tokens held as KV
  // tokens of cache by form and tier (per layer, every layer the same)
  int64_t tokens[2][2] = {};  // [form][tier]
  int64_t device_cache_bytes = 0, host_cache_bytes = 0, device_weight_bytes = 0,
          device_peak_bytes = 0, host_peak_bytes = 0;  // cache bytes are over all layers
  std::vector<layer_cost> layers;
  layer_cost head;
  double step_s = 0;             // predicted: sum over layers and head of max(link, gpu, d2h)
  double link_s = 0, gpu_s = 0;  // sums (head included)
  double tokens_per_s = 0;       // new_tokens / step_s
  std::string reason;            // one paragraph for people: why this ratio and placement
  bool feasible = true;
  std::string error;  // e.g. budget smaller than one layer + buffers
};

/// Chooses resident layers, the KV/activation split (a 0.02 grid when auto; honoured when
/// pinned; 1 when an activation is not smaller than K+V) and the tier of each form, minimising
/// the predicted step within the device and host budgets. Infeasible budgets give
/// feasible == false and an error naming the numbers; never throws on bad figures.
placement_plan make_plan(const model_config& cfg, const step_workload& w, const budgets& b,
                         const calibration& cal, const cache_policy& p);

/// A table for people: per layer bytes on the link and times, the tier/form split, the ratio,
/// the predicted step and throughput. Runs of identical layers are folded into one row.
std::string describe_plan(const model_config& cfg, const step_workload& w,
                          const placement_plan& plan);

}  // namespace hs
