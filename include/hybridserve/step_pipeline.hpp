// One pass over the weights, as the named verbs the actors exchange messages about:
//   loader:    upload weights of layer j (K/V projection first)        -> layer_ready
//   decoder:   load_cache(j)   host-tier KV/act blocks -> workspace set j % 2 (ahead of W_j)
//   recompute: rebuild(j)      act rows -> K/V in workspace slots      -> rebuilt event
//   decoder:   compute_layer(j) projections, attention, FFN, store new cache rows
// Everything is enqueued on backend streams ordered by events; nothing here blocks.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "hybridserve/backend.hpp"
#include "hybridserve/buffer_pool.hpp"
#include "hybridserve/cache_pool.hpp"
#include "hybridserve/model.hpp"

namespace hs {

/// New tokens of one sequence in one pass (a prefill chunk or one decode token).
struct step_item {
  int64_t seq = 0;
  std::vector<int32_t> tokens;
  int64_t past = 0;            // tokens already in its cache
  bool want_logits = false;    // sample after this pass (decode, or the last prefill chunk)
  bool return_logits = false;  // hand the logits row back too (scoring, tests)
};

/// What the accountant hands the decoder for one pass: the items and a snapshot of each
/// item's block table (blocks already reserved for the new tokens).
struct step_layout {
  int64_t step = 0;
  std::vector<step_item> items;
  std::vector<std::vector<cache_block>> blocks;  // per item, in position order
  int block_size = 16;
  std::size_t kv_layer_bytes = 0, act_layer_bytes = 0;
  std::string error;  // non-empty: no room for this pass
};

/// Weights of one layer on the device and when they are usable.
struct layer_ready {
  int64_t step = 0;
  int layer = 0;
  device_layer w;
  event_ref kv_ready, all_ready;
};

/// The recompute engine's work for one layer: activation rows to rebuild into K/V slots.
struct rebuild_job {
  int64_t step = 0;
  int layer = 0;
  device_layer w;
  event_ref kv_ready;      // Wk|Wv and the norm are on the device
  event_ref cache_loaded;  // host-tier act rows are staged in host_rows
  event_ref set_free;      // the rebuilt-K/V slots are no longer read (layer j - 1 computed)
  // Rows 0 .. device_act.size() - 1 are read in place from device-tier blocks; the rest, the
  // host-tier rows, were copied to host_rows by load_cache. Each chunk of rows is gathered
  // into the scratch (unless it lies in host_rows already) and rebuilt from there.
  std::vector<const void*> device_act;
  void* host_rows = nullptr;  // [M - device_act.size(), hidden]
  int64_t M = 0;
  std::vector<int32_t> positions;  // [M]
  row_ptrs k_dst, v_dst;           // [M] rows in workspace slots
  void* scratch = nullptr;         // rebuild_scratch_elems(min(M, chunk)) elems
};

/// Rows the K/V rebuild processes per kernel call (bounds its scratch).
constexpr int64_t k_rebuild_chunk_rows = 4096;
/// Scratch elements of a rebuild chunk of `rows`: gathered input, normed rows, their K|V.
inline std::size_t rebuild_scratch_elems(const model_config& c, int64_t rows) {
  return std::size_t(rows) * std::size_t(2 * c.hidden + 2 * c.kv_dim());
}

/// Rows of one FFN chunk. The FFN's hidden activations ([rows, ffn], twice for a gated FFN) share
/// one buffer with the attention output ([N, q_dim], dead once the out-projection has run), so a
/// large pass runs its FFN in row chunks that fit there: 16k prefill rows of OPT-13B would
/// otherwise hold 0.67 GB of FFN activations beside 0.17 GB of attention output. Chunks are at
/// least k_ffn_chunk_rows (GEMMs of that many rows run at the card's dense rate).
constexpr int64_t k_ffn_chunk_rows = 4096;
int64_t ffn_chunk_rows(const model_config& c, int64_t new_tokens);
/// Elements of that shared buffer: max(N * q_dim, chunk rows * FFN width).
std::size_t attn_ffn_buffer_elems(const model_config& c, int64_t new_tokens);

/// Device bytes one pass allocates: buffers for `new_tokens`; two sets of K/V slots for
/// `staged_tokens` of host-tier KV (the link fills one while attention reads the other; new
/// tokens of host-tier blocks count too: their K/V rows leave through the slots); for
/// `act_tokens` of activations, one set of K/V slots their rebuild writes (the GPU makes them,
/// so the rebuild of layer j + 1 simply follows layer j's attention) and one rebuild scratch;
/// two sets of staging rows for the `host_act_tokens` of them that come over the link. (A fresh
/// prompt's new activation blocks need no slot; callers that count them as context over-reserve.)
std::size_t pass_device_bytes(const model_config& c, std::size_t elem_bytes, int64_t new_tokens,
                              int64_t staged_tokens, int64_t act_tokens, int64_t host_act_tokens);
/// The most pass_device_bytes() can be for `new_tokens` and `context_tokens` cached tokens when
/// the device cache holds `device_cache_bytes` (all layers) of them, in any mix of KV and
/// activations, and the host tier the rest, in any mix too (what the engine reserves). The
/// device tier fills first (cache_pool), so the host holds only what does not fit.
std::size_t pass_device_bytes_worst(const model_config& c, std::size_t elem_bytes,
                                    int64_t new_tokens, int64_t context_tokens,
                                    std::size_t device_cache_bytes);
/// Enqueues a rebuild job on the rebuild stream and returns its completion event.
event_ref enqueue_rebuild(backend& be, const model_config& cfg, const rebuild_job& job);

/// The decoder's per-pass state: buffers, workspace sets, per-layer events.
class step_pipeline {
 public:
  /// Buffers come from `pool` (kept by the decoder across passes).
  step_pipeline(backend& be, buffer_pool& pool, std::shared_ptr<const model> m, step_layout layout);
  ~step_pipeline();
  step_pipeline(const step_pipeline&) = delete;
  step_pipeline& operator=(const step_pipeline&) = delete;

  /// Allocates buffers (throws hs::error if the device budget cannot hold them) and enqueues
  /// the embedding.
  void begin(const void* final_norm_w, const void* final_norm_b, const void* head);
  /// Host-tier blocks of layer j -> workspace set j % 2, on the h2d stream, after layer j - 2
  /// is done. Call it for layers 0 and 1 before their weights are asked for, and for j + 2 right
  /// after compute_layer(j), before layer j's ring slot is released: the cache then goes ahead
  /// of the weights that will fill that slot, and the rebuild has both sooner.
  void load_cache(int j);
  /// The job the recompute engine runs for layer j (its weights placed, load_cache(j) called),
  /// to be sent once compute_layer(j - 1) is enqueued: the rebuilt K/V slots are one set.
  rebuild_job rebuild_job_for(const layer_ready& r) const;
  /// When layer j's rebuild may overwrite the rebuilt-K/V slots: layer j - 1 computed. Null for
  /// layer 0; only valid once compute_layer(j - 1) has been called.
  event_ref rebuild_slots_free(int j) const;
  /// Attention and FFN of layer j; returns the event after which layer j's weights and
  /// workspace set may be reused.
  event_ref compute_layer(const layer_ready& r, const event_ref& rebuilt);
  /// Final norm and LM head for the rows that want logits; returns the event after which
  /// logits() (or, greedy_only, greedy()) is valid. greedy_only: every such row is decoded
  /// greedily and none returns its logits, so only the row tokens come back to the host.
  event_ref finish(bool greedy_only = false);
  /// [rows, vocab] host logits, rows in item order (items with want_logits only).
  const std::vector<float>& logits() const { return logits_; }
  /// [rows] greedy tokens after finish(true), same rows as logits().
  const std::vector<int32_t>& greedy() const { return greedy_; }
  const step_layout& layout() const { return layout_; }
  int64_t new_tokens() const { return N_; }
  int64_t rebuilt_rows() const { return act_rows_total_; }
  std::size_t host_to_device_bytes() const { return h2d_bytes_; }
  std::size_t device_to_host_bytes() const { return d2h_bytes_; }
  /// Diagnostics: keep per-layer events (the backend must have timing on before begin()) and,
  /// once the pass is complete, tabulate when each layer's weights, host cache, rebuild and
  /// compute finished, in ms since the pass began.
  void enable_trace() { trace_ = true; }
  std::string trace_table() const;

 private:
  // Where each block is read from during attention; the same for every layer of the pass.
  enum class route { kv_device, kv_host, act };
  struct block_route {
    route kind = route::kv_device;
    int64_t slot = -1;     // workspace slot: of the set for kv_host, of the act slots for act
    int64_t past = 0;      // tokens of the block written before this pass
    int64_t act_row = -1;  // first row in the act staging (act)
  };
  char* slot_ptr(int set, int64_t slot) const;  // kv_host slots, two sets
  char* act_slot_ptr(int64_t slot) const;       // rebuilt K/V, one set
  char* route_slot(int set, const block_route& r) const {
    return r.kind == route::act ? act_slot_ptr(r.slot) : slot_ptr(set, r.slot);
  }

  backend& be_;
  std::shared_ptr<const model> model_;
  step_layout layout_;
  int64_t N_ = 0;
  std::vector<int32_t> ids_, pos_;
  buffer_pool& pool_;
  void *x_ = nullptr, *xn_ = nullptr, *q_ = nullptr, *kvn_ = nullptr;
  void* rows_ = nullptr;  // [rows wanting logits, hidden]: xn's memory, after the last layer
  // One buffer, two lives per layer: attention output [N, q_dim], then the FFN's hidden rows of
  // one chunk: up [ffn_rows_, ffn] (and, gated, gate [ffn_rows_, ffn] after it).
  void *attn_ = nullptr, *up_ = nullptr, *gate_ = nullptr;
  int64_t ffn_rows_ = 0;
  void* ws_slots_[2] = {};        // host-tier KV, [n_slots_, kv_layer_bytes] each
  void* ws_act_slots_ = nullptr;  // rebuilt K/V, [n_act_slots_, kv_layer_bytes]
  void* ws_act_[2] = {};          // host-tier act staging, [act_rows_total_ - device rows, hidden]
  void* ws_scratch_ = nullptr;    // rebuild scratch (the rebuild stream runs one layer at a time)
  std::vector<std::vector<block_route>> routes_;  // per item, per block (constructor)
  int64_t n_slots_ = 0;                           // host-KV workspace block slots per set
  int64_t n_act_slots_ = 0;                       // rebuilt-K/V block slots
  int64_t act_rows_total_ = 0;                    // act rows rebuilt per layer
  int64_t device_act_rows_ = 0;                   // of them read in place (device tier)
  std::vector<event_ref> done_;                   // per layer
  std::vector<event_ref> loaded_;
  const void *final_norm_w_ = nullptr, *final_norm_b_ = nullptr, *head_ = nullptr;
  std::vector<float> logits_;
  std::vector<int32_t> greedy_;
  std::size_t h2d_bytes_ = 0, d2h_bytes_ = 0;
  bool trace_ = false;
  event_ref t0_, finished_;
  std::vector<event_ref> weights_ready_, rebuilt_;  // per layer (trace only)
  std::vector<std::array<event_ref, 4>> phases_;    // per layer: compute start, after QKV,
                                                    // attention, out-proj (trace only)
};

}  // namespace hs
