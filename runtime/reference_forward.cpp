// Reference forward pass (OPT and Llama). Tokens of all batch items are stacked into one
// [N, hidden] matrix so every projection is one GEMM; attention runs per item and head.
#include "hybridserve/reference_forward.hpp"

#include <cmath>

#include "hybridserve/kernels_cpu.hpp"

namespace hs {

// One layer's weights in float32, alive only while that layer computes.
struct reference_forward::layer_f32 {
  std::vector<float> attn_norm_w, attn_norm_b, wq, wk, wv, wo, bq, bk, bv, bo;
  std::vector<float> ffn_norm_w, ffn_norm_b, w_up, b_up, w_gate, b_gate, w_down, b_down;
};

namespace {
void to_f32(const tensor_view& t, std::vector<float>& out) {
  if (!t.present()) {
    out.clear();
    return;
  }
  out.resize(std::size_t(t.numel()));
  cpu::convert_to_f32(t, out.data());
}
const float* ptr_or_null(const std::vector<float>& v) {
  return v.empty() ? nullptr : v.data();
}
}  // namespace

reference_forward::reference_forward(std::shared_ptr<const model> m) : model_(std::move(m)) {}

void reference_forward::convert_layer(int j, layer_f32& o) const {
  const auto& L = model_->weights.layers[j];
  to_f32(L.attn_norm_w, o.attn_norm_w);
  to_f32(L.attn_norm_b, o.attn_norm_b);
  to_f32(L.wq, o.wq);
  to_f32(L.wk, o.wk);
  to_f32(L.wv, o.wv);
  to_f32(L.wo, o.wo);
  to_f32(L.bq, o.bq);
  to_f32(L.bk, o.bk);
  to_f32(L.bv, o.bv);
  to_f32(L.bo, o.bo);
  to_f32(L.ffn_norm_w, o.ffn_norm_w);
  to_f32(L.ffn_norm_b, o.ffn_norm_b);
  to_f32(L.w_up, o.w_up);
  to_f32(L.b_up, o.b_up);
  to_f32(L.w_gate, o.w_gate);
  to_f32(L.b_gate, o.b_gate);
  to_f32(L.w_down, o.w_down);
  to_f32(L.b_down, o.b_down);
}

std::vector<std::vector<float>> reference_forward::run(std::vector<forward_item>& batch,
                                                       forward_trace* trace) {
  const auto& c = model_->config;
  const auto& W = model_->weights;
  const int64_t H = c.hidden, QD = c.q_dim(), KVD = c.kv_dim(), D = c.head_dim, F = c.ffn;
  const bool opt = c.architecture == arch::opt;

  // Validate everything before any cache changes, so a bad item leaves no half-written state.
  int64_t N = 0;
  for (std::size_t b = 0; b < batch.size(); ++b) {
    const auto& it = batch[b];
    if (!it.kv) throw error("forward: batch item " + std::to_string(b) + " has no cache");
    for (auto id : it.tokens)
      if (id < 0 || id >= c.vocab)
        throw error("token id " + std::to_string(id) + " out of range [0, " +
                    std::to_string(c.vocab) + ")");
    if (it.kv->length + int64_t(it.tokens.size()) > c.max_pos)
      throw error("context overflow: " + std::to_string(it.kv->length + it.tokens.size()) +
                  " tokens exceed the model's maximum of " + std::to_string(c.max_pos));
    N += int64_t(it.tokens.size());
  }
  std::vector<int32_t> ids, pos;
  ids.reserve(N);
  pos.reserve(N);
  for (auto& it : batch) {
    if (it.kv->k.size() != std::size_t(c.n_layer)) {
      it.kv->k.resize(c.n_layer);
      it.kv->v.resize(c.n_layer);
    }
    for (std::size_t t = 0; t < it.tokens.size(); ++t) {
      ids.push_back(it.tokens[t]);
      pos.push_back(int32_t(it.kv->length + int64_t(t)));
    }
  }

  // Residual stream x: [N, H].
  std::vector<float> x(std::size_t(N * H)), xn(x.size()), tmp(x.size());
  cpu::embedding_cpu(W.tok_embed, ids.data(), N, x.data());
  if (opt) {  // learned positions, offset 2 (OPT's padding convention)
    std::vector<int32_t> p2(pos);
    for (auto& p : p2) p += 2;
    cpu::embedding_cpu(W.pos_embed, p2.data(), N, tmp.data());
    cpu::add_cpu(x.data(), tmp.data(), N * H);
  }
  if (trace) trace->layer_inputs.assign(c.n_layer, {});

  std::vector<float> q(std::size_t(N * QD)), k(std::size_t(N * KVD)), v(k.size()), attn(q.size());
  std::vector<float> up(std::size_t(N * F)), gate(opt ? 0 : up.size());
  layer_f32 L;
  const float scale = 1.0f / std::sqrt(float(D));
  for (int j = 0; j < c.n_layer; ++j) {
    if (trace) trace->layer_inputs[j] = x;
    convert_layer(j, L);
    // Attention block: x += Wo(attn(norm(x)))
    if (opt)
      cpu::layernorm_cpu(x.data(), L.attn_norm_w.data(), L.attn_norm_b.data(), xn.data(), N, H,
                         c.norm_eps);
    else
      cpu::rmsnorm_cpu(x.data(), L.attn_norm_w.data(), xn.data(), N, H, c.norm_eps);
    cpu::linear_cpu(xn.data(), L.wq.data(), ptr_or_null(L.bq), q.data(), N, QD, H);
    cpu::linear_cpu(xn.data(), L.wk.data(), ptr_or_null(L.bk), k.data(), N, KVD, H);
    cpu::linear_cpu(xn.data(), L.wv.data(), ptr_or_null(L.bv), v.data(), N, KVD, H);
    if (!opt) {
      cpu::rope_cpu(q.data(), pos.data(), N, c.n_head, D, c.rope_theta);
      cpu::rope_cpu(k.data(), pos.data(), N, c.n_kv_head, D, c.rope_theta);
    }
    int64_t row = 0;
    for (auto& it : batch) {
      const int64_t n = int64_t(it.tokens.size());
      auto& kc = it.kv->k[j];
      auto& vc = it.kv->v[j];
      kc.insert(kc.end(), k.begin() + row * KVD, k.begin() + (row + n) * KVD);
      vc.insert(vc.end(), v.begin() + row * KVD, v.begin() + (row + n) * KVD);
      const int64_t Tk = int64_t(kc.size()) / KVD;
      cpu::attention_cpu(q.data() + row * QD, kc.data(), vc.data(), attn.data() + row * QD, n, Tk,
                         c.n_head, c.n_kv_head, D, scale);
      row += n;
    }
    cpu::linear_cpu(attn.data(), L.wo.data(), ptr_or_null(L.bo), tmp.data(), N, H, QD);
    cpu::add_cpu(x.data(), tmp.data(), N * H);
    // FFN block: x += down(act(up(norm(x))))
    if (opt) {
      cpu::layernorm_cpu(x.data(), L.ffn_norm_w.data(), L.ffn_norm_b.data(), xn.data(), N, H,
                         c.norm_eps);
      cpu::linear_cpu(xn.data(), L.w_up.data(), ptr_or_null(L.b_up), up.data(), N, F, H);
      cpu::relu_cpu(up.data(), N * F);
    } else {
      cpu::rmsnorm_cpu(x.data(), L.ffn_norm_w.data(), xn.data(), N, H, c.norm_eps);
      cpu::linear_cpu(xn.data(), L.w_gate.data(), ptr_or_null(L.b_gate), gate.data(), N, F, H);
      cpu::linear_cpu(xn.data(), L.w_up.data(), ptr_or_null(L.b_up), up.data(), N, F, H);
      cpu::silu_mul_cpu(gate.data(), up.data(), up.data(), N * F);
    }
    cpu::linear_cpu(up.data(), L.w_down.data(), ptr_or_null(L.b_down), tmp.data(), N, H, F);
    cpu::add_cpu(x.data(), tmp.data(), N * H);
  }
  for (auto& it : batch) it.kv->length += int64_t(it.tokens.size());
  L = layer_f32{};  // free the last layer's float copy before the head

  // Final norm and LM head over the rows whose logits are wanted.
  std::vector<float> norm_w(static_cast<std::size_t>(H)), norm_b;
  cpu::convert_to_f32(W.final_norm_w, norm_w.data());
  if (W.final_norm_b.present()) {
    norm_b.resize(std::size_t(H));
    cpu::convert_to_f32(W.final_norm_b, norm_b.data());
  }
  std::vector<int64_t> rows;
  int64_t row = 0;
  for (auto& it : batch) {
    const int64_t n = int64_t(it.tokens.size());
    if (it.all_logits)
      for (int64_t t = 0; t < n; ++t) rows.push_back(row + t);
    else if (n > 0)
      rows.push_back(row + n - 1);
    row += n;
  }
  const int64_t R = int64_t(rows.size());
  std::vector<float> sel(std::size_t(R * H)), seln(sel.size());
  for (int64_t r = 0; r < R; ++r)
    std::copy(x.begin() + rows[r] * H, x.begin() + (rows[r] + 1) * H, sel.begin() + r * H);
  if (opt)
    cpu::layernorm_cpu(sel.data(), norm_w.data(), norm_b.data(), seln.data(), R, H, c.norm_eps);
  else
    cpu::rmsnorm_cpu(sel.data(), norm_w.data(), seln.data(), R, H, c.norm_eps);
  std::vector<float> head(std::size_t(int64_t(c.vocab) * H)), logits(std::size_t(R * c.vocab));
  cpu::convert_to_f32(W.lm_head, head.data());
  cpu::linear_cpu(seln.data(), head.data(), nullptr, logits.data(), R, c.vocab, H);

  std::vector<std::vector<float>> out;
  int64_t r = 0;
  for (auto& it : batch) {
    const int64_t n_out = it.all_logits ? int64_t(it.tokens.size()) : (it.tokens.empty() ? 0 : 1);
    out.emplace_back(logits.begin() + r * c.vocab, logits.begin() + (r + n_out) * c.vocab);
    r += n_out;
  }
  return out;
}

}  // namespace hs
