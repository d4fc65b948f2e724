// Backend-independent helpers: stream names and the layer upload order (K/V weights first).
#include "hybridserve/backend.hpp"
#include "hybridserve/model.hpp"

namespace hs {

const char* stream_name(stream s) {
  switch (s) {
    case stream::compute:
      return "compute";
    case stream::rebuild:
      return "rebuild";
    case stream::h2d:
      return "h2d";
    case stream::d2h:
      return "d2h";
  }
  return "?";
}

std::size_t layer_device_elems(const model_config& c) {
  const std::size_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), Fd = c.ffn;
  std::size_t n = 2 * KV * H + 2 * KV;         // Wk|Wv, bk|bv (bias slots kept even when absent)
  n += 2 * H + Q * H + Q + H * Q + H + 2 * H;  // norms, Wq, bq, Wo, bo, ffn norm
  n += Fd * H + Fd + H * Fd + H;               // up, b_up, down, b_down
  if (c.architecture == arch::llama) n += Fd * H + Fd;  // gate
  return n;
}

layer_upload upload_layer(backend& be, stream s, const model_config& c, const layer_weights& w,
                          void* dst) {
  const std::size_t eb = std::size_t(be.elem_bytes());
  char* at = static_cast<char*>(dst);
  layer_upload up;
  // Places tensor t at the cursor (when present) and returns its device pointer.
  auto put = [&](const tensor_view& t, std::size_t elems) -> const void* {
    char* p = at;
    at += elems * eb;
    if (!t.present()) return nullptr;
    be.upload_tensor(s, p, t);
    return p;
  };
  const std::size_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), Fd = c.ffn;
  // K/V projection first: the recompute engine starts rebuilding as soon as it lands.
  up.ptrs.wkv = put(w.wk, KV * H);
  put(w.wv, KV * H);
  const void* bk = put(w.bk, KV);
  put(w.bv, KV);
  up.ptrs.bkv = bk;
  up.ptrs.attn_norm_w = put(w.attn_norm_w, H);
  up.ptrs.attn_norm_b = put(w.attn_norm_b, H);
  up.kv_ready = be.record(s);
  up.ptrs.wq = put(w.wq, Q * H);
  up.ptrs.bq = put(w.bq, Q);
  up.ptrs.wo = put(w.wo, H * Q);
  up.ptrs.bo = put(w.bo, H);
  up.ptrs.ffn_norm_w = put(w.ffn_norm_w, H);
  up.ptrs.ffn_norm_b = put(w.ffn_norm_b, H);
  up.ptrs.w_up = put(w.w_up, Fd * H);
  up.ptrs.b_up = put(w.b_up, Fd);
  up.ptrs.w_down = put(w.w_down, H * Fd);
  up.ptrs.b_down = put(w.b_down, H);
  if (c.architecture == arch::llama) {
    up.ptrs.w_gate = put(w.w_gate, Fd * H);
    up.ptrs.b_gate = put(w.b_gate, Fd);
  }
  up.all_ready = be.record(s);
  return up;
}

}  // namespace hs
