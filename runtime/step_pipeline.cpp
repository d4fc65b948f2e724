// The per-pass verbs of the decoder and the recompute engine (see step_pipeline.hpp).
#include "hybridserve/step_pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "hybridserve/error.hpp"

namespace hs {

namespace {
int64_t ffn_width(const model_config& c) {  // up, and gate for a gated FFN
  return c.ffn * (c.architecture == arch::llama ? 2 : 1);
}
}  // namespace

int64_t ffn_chunk_rows(const model_config& c, int64_t new_tokens) {
  const int64_t fits = new_tokens * c.q_dim() / std::max<int64_t>(1, ffn_width(c));
  return std::max<int64_t>(1, std::min(new_tokens, std::max(k_ffn_chunk_rows, fits)));
}

std::size_t attn_ffn_buffer_elems(const model_config& c, int64_t new_tokens) {
  return std::max(std::size_t(new_tokens) * std::size_t(c.q_dim()),
                  std::size_t(ffn_chunk_rows(c, new_tokens)) * std::size_t(ffn_width(c)));
}

std::size_t pass_device_bytes(const model_config& c, std::size_t eb, int64_t new_tokens,
                              int64_t staged_tokens, int64_t act_tokens, int64_t host_act_tokens) {
  const std::size_t N = std::size_t(new_tokens), H = std::size_t(c.hidden);
  const std::size_t Q = std::size_t(c.q_dim()), KV = std::size_t(c.kv_dim());
  // x, xn (then the logit rows), q, kvn; the attention output / FFN chunk buffer.
  const std::size_t buffers = N * (2 * H + Q + 2 * KV) + attn_ffn_buffer_elems(c, new_tokens);
  const std::size_t S = std::size_t(staged_tokens), A = std::size_t(act_tokens);
  const std::size_t workspace =
      2 * S * 2 * KV + A * 2 * KV + 2 * std::size_t(host_act_tokens) * H +
      rebuild_scratch_elems(c, std::min(act_tokens, k_rebuild_chunk_rows));
  return (buffers + workspace) * eb;
}

std::size_t pass_device_bytes_worst(const model_config& c, std::size_t eb, int64_t new_tokens,
                                    int64_t context_tokens, std::size_t device_cache_bytes) {
  // The device tier fills first, so the host holds what the device cache does not. The device's
  // share splits between KV (read in place: no workspace) and activations (rebuilt into slots),
  // the host's between KV (staged twice) and activations (staged twice, rebuilt into slots).
  // Apart from the rebuild scratch (which stops growing at one chunk of rows), the workspace is
  // linear in both splits (and, through the host share, convex in the device one), so its worst
  // is at a corner: device all KV or all activations, host likewise. The scratch is added at its
  // most, so the bound is exact wherever the worst corner rebuilds a chunk or more.
  const int64_t C = context_tokens;
  const int64_t per_layer = int64_t(device_cache_bytes / eb) / std::max<int64_t>(1, c.n_layer);
  const auto scratch = [&](int64_t act) {
    return rebuild_scratch_elems(c, std::min(act, k_rebuild_chunk_rows)) * eb;
  };
  std::size_t worst = 0;
  for (const bool device_act : {false, true}) {
    const int64_t token_elems = device_act ? c.hidden : 2 * c.kv_dim();
    const int64_t d = std::min(C, per_layer / std::max<int64_t>(1, token_elems)), h = C - d;
    for (const bool host_kv : {false, true}) {
      const int64_t staged = host_kv ? h : 0, host_act = host_kv ? 0 : h;
      const int64_t act = host_act + (device_act ? d : 0);
      worst = std::max(worst,
                       pass_device_bytes(c, eb, new_tokens, staged, act, host_act) - scratch(act));
    }
  }
  return worst + scratch(C);
}

event_ref enqueue_rebuild(backend& be, const model_config& cfg, const rebuild_job& job) {
  const stream s = stream::rebuild;
  be.wait(s, job.set_free);
  be.wait(s, job.kv_ready);
  be.wait(s, job.cache_loaded);
  if (job.M > 0) {
    const std::size_t row = std::size_t(cfg.hidden) * std::size_t(be.elem_bytes());
    const int64_t D = int64_t(job.device_act.size());
    const auto host_row = [&](int64_t r) {
      return static_cast<const char*>(job.host_rows) + std::size_t(r - D) * row;
    };
    char* gathered = static_cast<char*>(job.scratch);  // [chunk, hidden], then the rebuild's
    char* rebuild_scratch = gathered + std::size_t(std::min(job.M, k_rebuild_chunk_rows)) * row;
    // In chunks, so the scratch (input, normed rows, their K|V) stays small whatever the batch.
    for (int64_t r0 = 0; r0 < job.M; r0 += k_rebuild_chunk_rows) {
      const int64_t n = std::min(k_rebuild_chunk_rows, job.M - r0);
      const auto at = [&](const auto& v) {
        using T = typename std::decay_t<decltype(v)>::value_type;
        return std::vector<T>(v.begin() + r0, v.begin() + r0 + n);
      };
      const void* in = nullptr;
      if (r0 >= D) {
        in = host_row(r0);  // staged contiguously by load_cache
      } else {
        // A kernel, not the copy engines: those are busy with the host-to-device link.
        std::vector<const void*> src(static_cast<std::size_t>(n));
        for (int64_t r = r0; r < r0 + n; ++r)
          src[std::size_t(r - r0)] = r < D ? job.device_act[std::size_t(r)] : host_row(r);
        be.gather_rows(s, std::move(src), row, gathered);
        in = gathered;
      }
      be.kv_rebuild(s, cfg, job.w, in, n, at(job.positions), at(job.k_dst), at(job.v_dst),
                    rebuild_scratch);
    }
  }
  return be.record(s);
}

step_pipeline::step_pipeline(backend& be, buffer_pool& pool, std::shared_ptr<const model> m,
                             step_layout layout)
    : be_(be), model_(std::move(m)), layout_(std::move(layout)), pool_(pool) {
  for (const auto& it : layout_.items) {
    for (std::size_t t = 0; t < it.tokens.size(); ++t) {
      ids_.push_back(it.tokens[t]);
      pos_.push_back(int32_t(it.past + int64_t(t)));
    }
  }
  N_ = int64_t(ids_.size());
  // Routes: which blocks attention reads in place (device KV) and which get a workspace slot
  // (host KV, and activations whose K/V are rebuilt), with each act block's staging rows.
  device_act_rows_ = 0;  // act rows read in place from device-tier blocks
  routes_.resize(layout_.items.size());
  for (std::size_t i = 0; i < layout_.items.size(); ++i) {
    // A fresh prompt's attention reads its K/V straight from the projection output, so its new
    // activation blocks need no K/V slot (their checkpoints are the layer input, kept from x).
    const bool fresh = layout_.items[i].past == 0 && layout_.items[i].tokens.size() > 1;
    for (const auto& b : layout_.blocks[i]) {
      block_route r;
      r.past = std::clamp<int64_t>(layout_.items[i].past - b.first_pos, 0, layout_.block_size);
      if (b.form == cache_form::kv) {
        r.kind = b.tier == cache_tier::device ? route::kv_device : route::kv_host;
      } else {
        r.kind = route::act;
        if (b.tier == cache_tier::device) device_act_rows_ += r.past;
        act_rows_total_ += r.past;
      }
      if (r.kind == route::kv_host) r.slot = n_slots_++;
      if (r.kind == route::act && !(fresh && r.past == 0)) r.slot = n_act_slots_++;
      routes_[i].push_back(r);
    }
  }
  // Staging rows: device-tier act rows first (one gather), then host-tier ones.
  int64_t next_dev = 0, next_host = device_act_rows_;
  for (std::size_t i = 0; i < routes_.size(); ++i)
    for (std::size_t b = 0; b < routes_[i].size(); ++b) {
      auto& r = routes_[i][b];
      if (r.kind != route::act) continue;
      int64_t& next = layout_.blocks[i][b].tier == cache_tier::device ? next_dev : next_host;
      r.act_row = next;
      next += r.past;
    }
  done_.resize(std::size_t(model_->config.n_layer));
  loaded_.resize(done_.size());
}

step_pipeline::~step_pipeline() = default;  // buffers stay in the pool for the next pass

char* step_pipeline::slot_ptr(int set, int64_t slot) const {
  return static_cast<char*>(ws_slots_[set]) + std::size_t(slot) * layout_.kv_layer_bytes;
}

char* step_pipeline::act_slot_ptr(int64_t slot) const {
  return static_cast<char*>(ws_act_slots_) + std::size_t(slot) * layout_.kv_layer_bytes;
}

event_ref step_pipeline::rebuild_slots_free(int j) const {
  return j >= 1 ? done_.at(std::size_t(j - 1)) : nullptr;
}

void step_pipeline::begin(const void* final_norm_w, const void* final_norm_b, const void* head) {
  final_norm_w_ = final_norm_w;
  final_norm_b_ = final_norm_b;
  head_ = head;
  const auto& c = model_->config;
  const std::size_t eb = std::size_t(be_.elem_bytes()), N = std::size_t(N_);
  std::vector<buffer_pool::request> reqs;
  auto alloc = [&](void** out, std::size_t elems, const std::string& what) {
    reqs.push_back({what, std::max<std::size_t>(elems * eb, 1), out});
  };
  alloc(&x_, N * c.hidden, "residual stream");
  alloc(&xn_, N * c.hidden, "normed activations");
  alloc(&q_, N * c.q_dim(), "queries");
  alloc(&kvn_, N * 2 * c.kv_dim(), "new keys and values");
  alloc(&attn_, attn_ffn_buffer_elems(c, N_), "attention output / FFN activations");
  ffn_rows_ = ffn_chunk_rows(c, N_);
  for (int s = 0; s < 2; ++s) {
    const std::string set = " (set " + std::to_string(s) + ")";
    alloc(&ws_slots_[s], std::size_t(n_slots_) * layout_.kv_layer_bytes / eb,
          "host KV workspace" + set);
    alloc(&ws_act_[s], std::size_t(act_rows_total_ - device_act_rows_) * c.hidden,
          "activation staging" + set);
  }
  alloc(&ws_act_slots_, std::size_t(n_act_slots_) * layout_.kv_layer_bytes / eb,
        "rebuilt KV workspace");
  alloc(&ws_scratch_, rebuild_scratch_elems(c, std::min(act_rows_total_, k_rebuild_chunk_rows)),
        "rebuild scratch");
  pool_.acquire(reqs);
  up_ = attn_;
  rows_ = xn_;  // the last rows of the pass are gathered for the head once no layer needs xn
  if (c.architecture == arch::llama)
    gate_ = static_cast<char*>(attn_) + std::size_t(ffn_rows_) * std::size_t(c.ffn) * eb;
  if (trace_) {
    t0_ = be_.record(stream::compute);
    weights_ready_.resize(done_.size());
    phases_.resize(done_.size());
    rebuilt_.resize(done_.size());
  }
  be_.embed(stream::compute, model_->weights.tok_embed,
            c.architecture == arch::opt ? &model_->weights.pos_embed : nullptr, ids_, pos_, x_);
}

namespace {
// Appends a copy, merged into the previous one when both ends continue it (rows of one block;
// a full block's K and V slices; blocks that lie next to each other).
void add_copy(std::vector<copy_op>& ops, void* dst, const void* src, std::size_t bytes) {
  if (!ops.empty()) {
    auto& o = ops.back();
    if (static_cast<char*>(o.dst) + o.bytes == dst &&
        static_cast<const char*>(o.src) + o.bytes == src) {
      o.bytes += bytes;
      return;
    }
  }
  ops.push_back({dst, src, bytes});
}
}  // namespace

void step_pipeline::load_cache(int j) {
  const auto& c = model_->config;
  const int set = j % 2;
  const std::size_t eb = std::size_t(be_.elem_bytes());
  const std::size_t kv_row = std::size_t(c.kv_dim()) * eb, act_row = std::size_t(c.hidden) * eb;
  const std::size_t half = layout_.kv_layer_bytes / 2;
  // Host-tier blocks travel on the h2d stream once layer j - 2, the set's previous reader, is
  // done, as one batch of copies (a block slice is block_size rows: thousands per layer).
  be_.wait(stream::h2d, j >= 2 ? done_.at(std::size_t(j - 2)) : nullptr);
  std::vector<copy_op> loads;
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    for (std::size_t b = 0; b < routes_[i].size(); ++b) {
      const auto& rt = routes_[i][b];
      const auto& blk = layout_.blocks[i][b];
      if (rt.past == 0) continue;
      if (rt.kind == route::kv_host) {
        const char* k = blk.data + std::size_t(j) * layout_.kv_layer_bytes;
        // One copy for a full block: its V slice follows its K slice on both ends.
        add_copy(loads, slot_ptr(set, rt.slot), k, std::size_t(rt.past) * kv_row);
        add_copy(loads, slot_ptr(set, rt.slot) + half, k + half, std::size_t(rt.past) * kv_row);
        h2d_bytes_ += 2 * std::size_t(rt.past) * kv_row;
      } else if (rt.kind == route::act && blk.tier == cache_tier::host) {
        const char* a = blk.data + std::size_t(j) * layout_.act_layer_bytes;
        add_copy(
            loads,
            static_cast<char*>(ws_act_[set]) + std::size_t(rt.act_row - device_act_rows_) * act_row,
            a, std::size_t(rt.past) * act_row);
        h2d_bytes_ += std::size_t(rt.past) * act_row;
      }
    }
  }
  be_.copy_batch(stream::h2d, std::move(loads));
  loaded_.at(std::size_t(j)) = be_.record(stream::h2d);
}

rebuild_job step_pipeline::rebuild_job_for(const layer_ready& r) const {
  const auto& c = model_->config;
  const int j = r.layer, set = j % 2;
  const std::size_t eb = std::size_t(be_.elem_bytes());
  const std::size_t kv_row = std::size_t(c.kv_dim()) * eb, act_row = std::size_t(c.hidden) * eb;
  const std::size_t half = layout_.kv_layer_bytes / 2;
  rebuild_job job;
  job.step = layout_.step;
  job.layer = j;
  job.w = r.w;
  job.kv_ready = r.kv_ready;
  job.cache_loaded = loaded_.at(std::size_t(j));
  job.set_free = rebuild_slots_free(j);
  job.host_rows = ws_act_[set];
  job.scratch = ws_scratch_;
  job.M = act_rows_total_;
  job.positions.resize(std::size_t(act_rows_total_));
  job.k_dst.resize(job.positions.size());
  job.v_dst.resize(job.positions.size());
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    for (std::size_t b = 0; b < routes_[i].size(); ++b) {
      const auto& rt = routes_[i][b];
      const auto& blk = layout_.blocks[i][b];
      if (rt.past == 0 || rt.kind != route::act) continue;
      // Device-tier rows are read in place by the rebuild; host-tier ones are staged
      // (load_cache).
      const char* a = blk.data + std::size_t(j) * layout_.act_layer_bytes;
      if (blk.tier == cache_tier::device)
        for (int64_t t = 0; t < rt.past; ++t)
          job.device_act.push_back(a + std::size_t(t) * act_row);
      for (int64_t t = 0; t < rt.past; ++t) {
        const auto at = std::size_t(rt.act_row + t);
        job.positions[at] = blk.first_pos + int32_t(t);
        job.k_dst[at] = act_slot_ptr(rt.slot) + std::size_t(t) * kv_row;
        job.v_dst[at] = act_slot_ptr(rt.slot) + half + std::size_t(t) * kv_row;
      }
    }
  }
  return job;
}

event_ref step_pipeline::compute_layer(const layer_ready& r, const event_ref& rebuilt) {
  const auto& c = model_->config;
  const auto& w = r.w;
  const int j = r.layer, set = j % 2;
  const bool opt = c.architecture == arch::opt;
  const int64_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), Fd = c.ffn, N = N_;
  const std::size_t eb = std::size_t(be_.elem_bytes());
  const std::size_t kv_row = std::size_t(KV) * eb, act_row = std::size_t(H) * eb;
  const std::size_t half = layout_.kv_layer_bytes / 2;
  const stream s = stream::compute;
  const auto& routes = routes_;

  be_.wait(s, r.all_ready);
  be_.wait(s, rebuilt);
  be_.wait(s, loaded_[std::size_t(j)]);
  // Trace: when the compute stream started the layer and finished each of its phases.
  const auto mark = [&](int k) {
    if (trace_) phases_[std::size_t(j)][std::size_t(k)] = be_.record(s);
  };
  if (trace_) {
    weights_ready_[std::size_t(j)] = r.all_ready;
    rebuilt_[std::size_t(j)] = rebuilt;
  }
  mark(0);

  // Destinations of the new tokens' K/V (what attention reads), and the copies that keep the
  // new tokens' cache: activation rows (the layer input) and host-tier K/V rows, merged into
  // runs per block. Fresh prompts (no past) take the tensor-core attention on the projection
  // output; everything else the paged kernel.
  row_ptrs k_dst, v_dst;
  row_ptrs act_device_dst(std::size_t(N), nullptr);  // device-tier act rows: a kernel copies them
  bool any_act_device = false;
  std::vector<copy_op> act_stores, kv_stores;
  attention_args a;
  a.n_head = c.n_head;
  a.n_kv = c.n_kv_head;
  a.head_dim = c.head_dim;
  a.block_size = layout_.block_size;
  a.scale = 1.0f / std::sqrt(float(c.head_dim));
  a.q_start.push_back(0);
  fresh_attention_args fa;
  fa.k = kvn_;
  fa.v = static_cast<char*>(kvn_) + kv_row;
  fa.ld_kv = 2 * KV;
  fa.n_head = c.n_head;
  fa.n_kv = c.n_kv_head;
  fa.head_dim = c.head_dim;
  fa.scale = a.scale;
  bool any_paged = false;
  int64_t row = 0;
  for (std::size_t i = 0; i < layout_.items.size(); ++i) {
    const auto& it = layout_.items[i];
    const int64_t n = int64_t(it.tokens.size());
    const bool fresh = it.past == 0 && n > 1;
    a.blk_start.push_back(int32_t(a.k_blocks.size()));
    a.ctx_len.push_back(fresh ? -1 : int32_t(it.past + n));
    a.q_start.push_back(int32_t(row + n));
    if (fresh) {
      fa.row0.push_back(int32_t(row));
      fa.len.push_back(int32_t(n));
    } else if (n > 0) {
      any_paged = true;
    }
    for (std::size_t b = 0; b < routes[i].size(); ++b) {
      const auto& blk = layout_.blocks[i][b];
      const char* k = routes[i][b].kind == route::kv_device
                          ? blk.data + std::size_t(j) * layout_.kv_layer_bytes
                      : routes[i][b].slot < 0 ? nullptr  // fresh act block: no K/V kept
                                              : route_slot(set, routes[i][b]);
      a.k_blocks.push_back(k);
      a.v_blocks.push_back(k ? k + half : nullptr);
    }
    for (int64_t t = 0; t < n; ++t, ++row) {
      const int64_t p = it.past + t;
      const std::size_t b = std::size_t(p / layout_.block_size);
      const std::size_t off = std::size_t(p % layout_.block_size);
      char* k = const_cast<char*>(static_cast<const char*>(a.k_blocks[a.blk_start.back() + b]));
      k_dst.push_back(k ? k + off * kv_row : nullptr);  // null: scatter_rows skips the row
      v_dst.push_back(k ? k + half + off * kv_row : nullptr);
      const auto& blk = layout_.blocks[i][b];
      if (routes[i][b].kind == route::kv_host) {
        // The slot (device) receives the row first; its K and V halves are contiguous per block
        // like the host block's, so the keep-copies run from the slot.
        char* hk = blk.data + std::size_t(j) * layout_.kv_layer_bytes;
        add_copy(kv_stores, hk + off * kv_row, k + off * kv_row, kv_row);
        d2h_bytes_ += 2 * kv_row;
      } else if (routes[i][b].kind == route::act) {
        char* dst = blk.data + std::size_t(j) * layout_.act_layer_bytes + off * act_row;
        if (blk.tier == cache_tier::host) {
          add_copy(act_stores, dst, static_cast<char*>(x_) + std::size_t(row) * act_row, act_row);
          d2h_bytes_ += act_row;
        } else {
          act_device_dst[std::size_t(row)] = dst;
          any_act_device = true;
        }
      }
    }
  }
  // V halves of the host K/V rows: the same runs shifted by half a layer slice.
  {
    const std::size_t nk = kv_stores.size();
    for (std::size_t k = 0; k < nk; ++k)
      kv_stores.push_back({static_cast<char*>(kv_stores[k].dst) + half,
                           static_cast<const char*>(kv_stores[k].src) + half, kv_stores[k].bytes});
  }

  // Cache stores leave on the d2h stream once compute has reached this point; the returned
  // event (null when there is nothing to store) says when their sources may change again.
  const auto store = [&](std::vector<copy_op> ops) -> event_ref {
    if (ops.empty()) return nullptr;
    be_.wait(stream::d2h, be_.record(s));
    be_.copy_batch(stream::d2h, std::move(ops));
    return be_.record(stream::d2h);
  };
  // The layer input of tokens cached as activations is their checkpoint. Host-tier rows leave on
  // the d2h stream while the projections and attention run, and must be out before x is
  // updated; device-tier rows are copied here by a kernel (the copy engines move device-to-device
  // copies at a fraction of memory bandwidth: 168 MB a layer of a 16k-row prefill took ~5 ms).
  const event_ref act_saved = store(std::move(act_stores));
  if (any_act_device) be_.scatter_rows(s, x_, act_row, act_row, std::move(act_device_dst));
  if (opt)
    be_.norm(s, x_, w.attn_norm_w, w.attn_norm_b, xn_, N, H, c.norm_eps, false);
  else
    be_.norm(s, x_, w.attn_norm_w, nullptr, xn_, N, H, c.norm_eps, true);
  be_.linear(s, xn_, w.wq, w.bq, q_, N, Q, H);
  be_.linear(s, xn_, w.wkv, w.bkv, kvn_, N, 2 * KV, H);
  if (!opt) {
    be_.rope(s, q_, Q, pos_, c.n_head, c.head_dim, c.rope_theta);
    be_.rope(s, kvn_, 2 * KV, pos_, c.n_kv_head, c.head_dim, c.rope_theta);
  }
  if (std::any_of(k_dst.begin(), k_dst.end(), [](const void* p) { return p != nullptr; })) {
    be_.scatter_rows(s, kvn_, 2 * kv_row, kv_row, k_dst);
    be_.scatter_rows(s, static_cast<char*>(kvn_) + kv_row, 2 * kv_row, kv_row, v_dst);
  }
  const event_ref kv_kept = store(std::move(kv_stores));
  mark(1);
  if (any_paged) be_.attention(s, q_, attn_, std::move(a));
  if (!fa.row0.empty()) be_.attention_fresh(s, q_, attn_, std::move(fa));
  mark(2);
  be_.wait(s, act_saved);  // x is about to change
  be_.linear_add(s, attn_, w.wo, w.bo, x_, N, H, Q);
  mark(3);
  // The attention output is dead now: its buffer holds the FFN's hidden rows, a chunk at a time
  // (the compute stream orders each chunk's reuse after the previous one's down-projection).
  if (opt)
    be_.norm(s, x_, w.ffn_norm_w, w.ffn_norm_b, xn_, N, H, c.norm_eps, false);
  else
    be_.norm(s, x_, w.ffn_norm_w, nullptr, xn_, N, H, c.norm_eps, true);
  for (int64_t r0 = 0; r0 < N; r0 += ffn_rows_) {
    const int64_t n = std::min(ffn_rows_, N - r0);
    const void* in = static_cast<const char*>(xn_) + std::size_t(r0) * act_row;
    void* out = static_cast<char*>(x_) + std::size_t(r0) * act_row;
    if (opt) {
      be_.linear_relu(s, in, w.w_up, w.b_up, up_, n, Fd, H);
    } else {
      be_.linear(s, in, w.w_gate, w.b_gate, gate_, n, Fd, H);
      be_.linear(s, in, w.w_up, w.b_up, up_, n, Fd, H);
      be_.silu_mul(s, gate_, up_, up_, n * Fd);
    }
    be_.linear_add(s, up_, w.w_down, w.b_down, out, n, H, Fd);
  }
  // The slot set and kvn are reused two layers on / next layer: the host copies must be done.
  be_.wait(s, kv_kept);
  done_[std::size_t(j)] = be_.record(s);
  return done_[std::size_t(j)];
}

event_ref step_pipeline::finish(bool greedy_only) {
  const auto& c = model_->config;
  const std::size_t row = std::size_t(c.hidden) * std::size_t(be_.elem_bytes());
  std::vector<const void*> src;
  int64_t at = 0;
  for (const auto& it : layout_.items) {
    at += int64_t(it.tokens.size());
    if (it.want_logits && !it.tokens.empty())
      src.push_back(static_cast<char*>(x_) + std::size_t(at - 1) * row);
  }
  const int64_t R = int64_t(src.size());
  if (R > 0) {
    be_.gather_rows(stream::compute, std::move(src), row, rows_);
    if (greedy_only) {
      logits_.clear();
      greedy_.assign(std::size_t(R), -1);
      be_.logits(stream::compute, c, rows_, R, final_norm_w_, final_norm_b_, head_, nullptr,
                 greedy_.data());
    } else {
      greedy_.clear();
      // Only here: [R, vocab] floats are 66 MB for 128 rows of Llama-3's vocabulary, a host
      // allocation and fill the device would otherwise wait for at every greedy pass's start.
      logits_.assign(std::size_t(R) * std::size_t(c.vocab), 0.f);
      be_.logits(stream::compute, c, rows_, R, final_norm_w_, final_norm_b_, head_, logits_.data(),
                 nullptr);
    }
  }
  finished_ = be_.record(stream::compute);
  return finished_;
}

std::string step_pipeline::trace_table() const {
  if (!trace_ || !t0_) return {};
  std::string out =
      "pass " + std::to_string(layout_.step) + ": " + std::to_string(N_) + " new tokens, " +
      std::to_string(act_rows_total_) + " act rows rebuilt per layer, " +
      std::to_string(h2d_bytes_ >> 20) + " MiB host cache in, " + std::to_string(d2h_bytes_ >> 20) +
      " MiB out\n" +
      "layer  weights  cache   rebuilt  computed  (ms since the pass began, i.e. its embedding;\n"
      "       negative: earlier; - = none)   then ms of the layer's compute: waiting for its\n"
      "       inputs, norm+QKV, attention, out-proj, FFN\n";
  char line[160];
  const auto at = [&](const event_ref& e) {
    const double ms = e ? be_.elapsed_ms(t0_, e) : std::nan("");
    char b[24];
    if (std::isnan(ms))
      std::snprintf(b, sizeof b, "%8s", "-");
    else
      std::snprintf(b, sizeof b, "%8.2f", ms);
    return std::string(b);
  };
  for (std::size_t j = 0; j < done_.size(); ++j) {
    const auto& ph = phases_[j];
    const auto span = [&](const event_ref& a, const event_ref& b) {
      return a && b ? be_.elapsed_ms(a, b) : std::nan("");
    };
    const event_ref prev = j > 0 ? done_[j - 1] : t0_;
    std::snprintf(line, sizeof line, "%5zu %s %s %s %s  %6.2f %6.2f %6.2f %6.2f %6.2f\n", j,
                  at(weights_ready_[j]).c_str(), at(loaded_[j]).c_str(), at(rebuilt_[j]).c_str(),
                  at(done_[j]).c_str(), span(prev, ph[0]), span(ph[0], ph[1]), span(ph[1], ph[2]),
                  span(ph[2], ph[3]), span(ph[3], done_[j]));
    out += line;
  }
  out += "logits on the host at " + at(finished_) + " ms\n";
  return out;
}

}  // namespace hs
