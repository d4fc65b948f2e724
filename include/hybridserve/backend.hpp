// The backend interface: device memory within a budget, streams ordered by events, and every
// op of the forward pass and of the K/V rebuild. The CPU backend implements it with worker
// threads and a budgeted host arena; the CUDA backend with CUDA streams, events and kernels.
// Actors talk to the device only through this interface.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "hybridserve/model_config.hpp"
#include "hybridserve/tensor.hpp"

namespace hs {

/// Streams: copies run on their own streams so they overlap compute; `rebuild` lets the
/// K/V rebuild of layer j+1 overlap the attention/FFN of layer j.
enum class stream { compute, rebuild, h2d, d2h };
constexpr int k_stream_count = 4;
const char* stream_name(stream s);

/// An opaque completion marker recorded on a stream.
class device_event {
 public:
  virtual ~device_event() = default;
  virtual bool done() const = 0;
};
using event_ref = std::shared_ptr<device_event>;

/// Per-row destinations of a scatter (device pointers, one row each).
using row_ptrs = std::vector<void*>;

/// Paged attention arguments: layout as attention_paged_cpu (kernels_cpu.hpp), device pointers.
struct attention_args {
  std::vector<int32_t> q_start;                 // [n_seq + 1]
  std::vector<int32_t> ctx_len;                 // [n_seq]
  std::vector<int32_t> blk_start;               // [n_seq]
  std::vector<const void*> k_blocks, v_blocks;  // device pointers, [block_size, n_kv, D] each
  int64_t n_head = 0, n_kv = 0, head_dim = 0, block_size = 0;
  float scale = 1.f;
};

/// Causal self-attention of fresh sequences: each one's whole context is its new rows (a prompt
/// prefilled in one pass), so K and V are read straight from the projection output instead of
/// the paged cache. Sequence s owns rows [row0[s], row0[s] + len[s]) of q, out ([rows, n_head,
/// D] contiguous) and of k, v (rows `ld_kv` elements apart, [n_kv, D] each). On CUDA this runs
/// on tensor cores (cuBLAS), which the paged kernel does not use.
struct fresh_attention_args {
  std::vector<int32_t> row0, len;  // [n_seq]
  const void *k = nullptr, *v = nullptr;
  int64_t ld_kv = 0;
  int64_t n_head = 0, n_kv = 0, head_dim = 0;
  float scale = 1.f;
};

/// Head dims the CUDA backend's fused prefill attention (attention_flash.cu) takes; it needs no
/// scratch. Other head dims go through the cuBLAS path and its scores scratch.
inline bool fresh_attention_on_chip(int64_t head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
}

/// Scores scratch of the cuBLAS path of attention_fresh (attention_fresh.cu) for prompts up to
/// `longest` rows: 8 bytes a score (fp32 logit, fp16 hi/lo probability) for query tiles of up to
/// 1024 rows, capped at 384 MiB (longer prompts take smaller tiles), never below one row of every
/// head. Score counts are rounded up to a multiple of 8 (attention_fresh aligns its fp16 parts so).
inline std::size_t fresh_attention_scores_bytes(int64_t n_head, int64_t longest) {
  const int64_t tile = longest < 1024 ? longest : 1024;
  const auto bytes = [](int64_t scores) { return std::size_t((scores + 7) / 8 * 8) * 8; };
  const std::size_t want = bytes(n_head * tile * longest);
  const std::size_t cap = std::size_t(384) << 20, floor = bytes(n_head * longest);
  return want < cap ? want : (cap > floor ? cap : floor);
}

/// What the CUDA backend keeps for attention_fresh: nothing for the head dims of
/// fresh_attention_on_chip, else the cuBLAS path's scores scratch.
inline std::size_t fresh_attention_scratch_bytes(int64_t n_head, int64_t head_dim,
                                                 int64_t longest) {
  return fresh_attention_on_chip(head_dim) ? 0 : fresh_attention_scores_bytes(n_head, longest);
}

/// One copy of a batch (any direction; see backend::copy_batch).
struct copy_op {
  void* dst;
  const void* src;
  std::size_t bytes;
};

/// Device-side copies of one layer's weights, all in the backend's element type, laid out in
/// one buffer with Wk|Wv (and bk|bv) first so they can arrive before the rest.
struct device_layer {
  const void* wkv = nullptr;  // [2 * kv_dim, hidden]: Wk rows then Wv rows
  const void* bkv = nullptr;  // [2 * kv_dim] or null
  const void *attn_norm_w = nullptr, *attn_norm_b = nullptr;  // [hidden]
  const void *wq = nullptr, *bq = nullptr;                    // [q_dim, hidden], [q_dim]
  const void *wo = nullptr, *bo = nullptr;                    // [hidden, q_dim], [hidden]
  const void *ffn_norm_w = nullptr, *ffn_norm_b = nullptr;
  const void *w_up = nullptr, *b_up = nullptr, *w_gate = nullptr, *b_gate = nullptr;
  const void *w_down = nullptr, *b_down = nullptr;
};

class backend {
 public:
  virtual ~backend() = default;
  virtual std::string name() const = 0;
  /// Bytes per element of device activations, weights and cache (4 on CPU, 2 on CUDA).
  virtual int elem_bytes() const = 0;

  // ---- memory
  /// Device memory; throws hs::error naming `what` when the budget or the device is exhausted.
  virtual void* device_alloc(std::size_t bytes, const std::string& what) = 0;
  virtual void device_free(void* p) = 0;
  virtual std::size_t device_budget() const = 0;
  virtual std::size_t device_used() const = 0;
  virtual std::size_t device_peak() const = 0;
  virtual void reset_peak() = 0;
  /// Host memory the device can copy from at full speed (pinned on CUDA).
  virtual std::shared_ptr<void> host_alloc(std::size_t bytes) = 0;

  // ---- ordering
  virtual event_ref record(stream s) = 0;
  /// Work enqueued on `s` after this call starts only when `e` is done.
  virtual void wait(stream s, const event_ref& e) = 0;
  /// Runs `fn` on a backend thread once `e` is done (immediately if it already is). Used to
  /// turn completion into an actor message; never blocks the caller.
  virtual void on_done(const event_ref& e, std::function<void()> fn) = 0;
  /// Blocks until every stream is idle (shutdown and tests only).
  virtual void synchronize() = 0;
  /// Device scratch attention_fresh holds for prompts up to `longest` rows (counted in the
  /// budget; the engine reserves it). 0 where the backend needs none on the device.
  virtual std::size_t attention_scratch_bytes(int64_t n_head, int64_t head_dim,
                                              int64_t longest) const {
    (void)n_head;
    (void)head_dim;
    (void)longest;
    return 0;
  }
  /// `device_copy` holds table t's elements (put there by upload_tensor, usable once `ready` is
  /// done): embed() may read it rather than the host table (a tied LM head is the token table:
  /// one device copy serves both; the CUDA backend otherwise reads token rows from host memory
  /// and keeps only small tables, OPT's positions, on the device). The caller keeps
  /// it alive until it calls share_table(t, nullptr, {}), which ends the sharing.
  virtual void share_table(const tensor_view& t, const void* device_copy, const event_ref& ready) {
    (void)t;
    (void)device_copy;
    (void)ready;
  }
  /// Diagnostics (bench --trace-pass): while on, record() makes events elapsed_ms can time.
  virtual void set_timing(bool on) { (void)on; }
  /// Milliseconds from event a to event b, both complete; NaN where the backend cannot tell.
  virtual double elapsed_ms(const event_ref& a, const event_ref& b) const {
    (void)a;
    (void)b;
    return std::numeric_limits<double>::quiet_NaN();
  }

  // ---- transfers (enqueued on stream s)
  /// Host tensor (F16/BF16/F32) -> device buffer in elem type; `dst` holds t.numel() elems.
  virtual void upload_tensor(stream s, void* dst, const tensor_view& t) = 0;
  /// Raw byte copy in any direction (host <-> device, device <-> device).
  virtual void copy(stream s, void* dst, const void* src, std::size_t bytes) = 0;
  /// Many independent copies, in stream order as a whole (no order among them): one API call
  /// on CUDA (cudaMemcpyBatchAsync), so thousands of cache blocks cost no per-copy launch.
  virtual void copy_batch(stream s, std::vector<copy_op> ops) = 0;
  /// Copies row i of `src` (rows `src_stride` bytes apart) to dst[i], `row_bytes` each; rows
  /// whose dst[i] is null are skipped.
  virtual void scatter_rows(stream s, const void* src, std::size_t src_stride,
                            std::size_t row_bytes, row_ptrs dst) = 0;
  /// Copies src[i] to row i of `dst` ([rows, row_bytes] contiguous).
  virtual void gather_rows(stream s, std::vector<const void*> src, std::size_t row_bytes,
                           void* dst) = 0;

  // ---- ops (enqueued on stream s; pointers are device pointers in elem type)
  /// x[M, H] = tok[ids] (+ pos[positions + 2] for OPT). Tables are host tensors.
  virtual void embed(stream s, const tensor_view& tok, const tensor_view* pos,
                     std::vector<int32_t> ids, std::vector<int32_t> positions, void* x) = 0;
  /// LayerNorm (b may be null) or RMSNorm (rms = true) over rows of [M, H].
  virtual void norm(stream s, const void* x, const void* w, const void* b, void* y, int64_t M,
                    int64_t H, float eps, bool rms) = 0;
  /// y[M, N] = x[M, K] @ w[N, K]^T (+ b).
  virtual void linear(stream s, const void* x, const void* w, const void* b, void* y, int64_t M,
                      int64_t N, int64_t K) = 0;
  /// RoPE in place on x[M, heads, D] (row stride `row_stride` elements), positions[M].
  virtual void rope(stream s, void* x, int64_t row_stride, std::vector<int32_t> positions,
                    int64_t heads, int64_t D, float theta) = 0;
  virtual void relu(stream s, void* x, int64_t n) = 0;
  /// relu(x w^T + b): linear() then relu(); a backend may fuse the bias and the ReLU into one
  /// pass over y (the CUDA one does: at prefill, y is the widest activation of the layer).
  virtual void linear_relu(stream s, const void* x, const void* w, const void* b, void* y,
                           int64_t M, int64_t N, int64_t K) {
    linear(s, x, w, b, y, M, N, K);
    relu(s, y, M * N);
  }
  /// y[M, N] += x[M, K] @ w[N, K]^T (+ b): a residual branch added onto the stream (y) by the
  /// projection itself, with no buffer and no pass of its own.
  virtual void linear_add(stream s, const void* x, const void* w, const void* b, void* y, int64_t M,
                          int64_t N, int64_t K) = 0;
  /// out = silu(gate) * up, [n].
  virtual void silu_mul(stream s, const void* gate, const void* up, void* out, int64_t n) = 0;
  /// x += y, [n].
  virtual void add(stream s, void* x, const void* y, int64_t n) = 0;
  /// out[rows, n_head, D] = paged causal attention (see attention_args). Sequences with
  /// ctx_len < 0 are skipped: their rows of `out` are left as they are.
  virtual void attention(stream s, const void* q, void* out, attention_args a) = 0;
  /// out = causal attention of fresh sequences (see fresh_attention_args); other rows untouched.
  virtual void attention_fresh(stream s, const void* q, void* out, fresh_attention_args a) = 0;
  /// The K/V rebuild: for activation rows act[M, H]: kv = norm(act) @ Wkv^T + bkv, RoPE on the
  /// K half at `positions`, then K row i -> k_dst[i], V row i -> v_dst[i]. `scratch` holds
  /// M * (H + 2 * kv_dim) elems.
  virtual void kv_rebuild(stream s, const model_config& cfg, const device_layer& w, const void* act,
                          int64_t M, std::vector<int32_t> positions, row_ptrs k_dst, row_ptrs v_dst,
                          void* scratch) = 0;
  /// Final norm + LM head on rows x[R, H] -> float logits[R, vocab] in host memory, unless
  /// host_logits is null; and, unless host_argmax is null, each row's greedy token (highest
  /// logit, lowest id on ties) -> host_argmax[R], so greedy decoding need not bring the logits
  /// over at all.
  virtual void logits(stream s, const model_config& cfg, const void* x, int64_t R,
                      const void* norm_w, const void* norm_b, const void* head, float* host_logits,
                      int32_t* host_argmax) = 0;
};

/// Loads the host tensors of layer j into `dst` (a device buffer of layer_device_bytes()).
/// Enqueues Wk|Wv first, records `kv_ready`, then the rest; returns the pointers into dst.
struct layer_upload {
  device_layer ptrs;
  event_ref kv_ready, all_ready;
};
std::size_t layer_device_elems(const model_config& cfg);
layer_upload upload_layer(backend& be, stream s, const model_config& cfg,
                          const struct layer_weights& w, void* dst);

}  // namespace hs
