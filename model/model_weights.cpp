// HF tensor names -> layer_weights, for OPT and Llama, with every shape checked.
#include <string>

#include "hybridserve/model.hpp"

namespace hs {

std::vector<const tensor_view*> layer_weights::all() const {
  return {&wk,     &bk,     &wv,   &bv,   &attn_norm_w, &attn_norm_b,
          &wq,     &bq,     &wo,   &bo,   &ffn_norm_w,  &ffn_norm_b,
          &w_gate, &b_gate, &w_up, &b_up, &w_down,      &b_down};
}

std::size_t layer_weights::bytes() const {
  std::size_t n = 0;
  for (const auto* t : all()) n += t->present() ? t->nbytes : 0;
  return n;
}

namespace {

// OPT checkpoints appear both with and without the leading "model." (older conversions).
std::string opt_prefix(const tensor_store& s) {
  return s.has("decoder.embed_tokens.weight") && !s.has("model.decoder.embed_tokens.weight")
             ? "decoder."
             : "model.decoder.";
}

tensor_view need_if(bool want, const tensor_store& s, const std::string& n,
                    std::vector<int64_t> shape) {
  if (want) return s.get(n, shape);
  if (s.has(n))
    s.get(n, shape);  // present though the config says no bias: still check it, then ignore
  return tensor_view{n, dtype::f32, shape, nullptr, 0};
}

}  // namespace

model_weights bind_weights(const model_config& c, const tensor_store& s) {
  const int64_t h = c.hidden, q = c.q_dim(), kv = c.kv_dim(), f = c.ffn, v = c.vocab;
  model_weights w;
  w.layers.resize(c.n_layer);
  if (c.architecture == arch::opt) {
    const std::string p = opt_prefix(s);
    w.tok_embed = s.get(p + "embed_tokens.weight", {v, h});
    w.pos_embed = s.get(p + "embed_positions.weight", {int64_t(c.max_pos) + 2, h});
    w.final_norm_w = s.get(p + "final_layer_norm.weight", {h});
    w.final_norm_b = s.get(p + "final_layer_norm.bias", {h});
    for (int j = 0; j < c.n_layer; ++j) {
      const std::string l = p + "layers." + std::to_string(j) + ".";
      auto& L = w.layers[j];
      L.attn_norm_w = s.get(l + "self_attn_layer_norm.weight", {h});
      L.attn_norm_b = s.get(l + "self_attn_layer_norm.bias", {h});
      L.wq = s.get(l + "self_attn.q_proj.weight", {q, h});
      L.wk = s.get(l + "self_attn.k_proj.weight", {kv, h});
      L.wv = s.get(l + "self_attn.v_proj.weight", {kv, h});
      L.wo = s.get(l + "self_attn.out_proj.weight", {h, q});
      L.bq = need_if(c.attn_bias, s, l + "self_attn.q_proj.bias", {q});
      L.bk = need_if(c.attn_bias, s, l + "self_attn.k_proj.bias", {kv});
      L.bv = need_if(c.attn_bias, s, l + "self_attn.v_proj.bias", {kv});
      L.bo = need_if(c.attn_bias, s, l + "self_attn.out_proj.bias", {h});
      L.ffn_norm_w = s.get(l + "final_layer_norm.weight", {h});
      L.ffn_norm_b = s.get(l + "final_layer_norm.bias", {h});
      L.w_up = s.get(l + "fc1.weight", {f, h});
      L.b_up = need_if(c.mlp_bias, s, l + "fc1.bias", {f});
      L.w_down = s.get(l + "fc2.weight", {h, f});
      L.b_down = need_if(c.mlp_bias, s, l + "fc2.bias", {h});
    }
    const bool has_head = s.has("lm_head.weight");
    w.lm_head = has_head && !c.tied_embeddings ? s.get("lm_head.weight", {v, h}) : w.tok_embed;
    if (!has_head && !c.tied_embeddings) s.get("lm_head.weight", {v, h});  // throws: missing
  } else {
    w.tok_embed = s.get("model.embed_tokens.weight", {v, h});
    w.final_norm_w = s.get("model.norm.weight", {h});
    for (int j = 0; j < c.n_layer; ++j) {
      const std::string l = "model.layers." + std::to_string(j) + ".";
      auto& L = w.layers[j];
      L.attn_norm_w = s.get(l + "input_layernorm.weight", {h});
      L.wq = s.get(l + "self_attn.q_proj.weight", {q, h});
      L.wk = s.get(l + "self_attn.k_proj.weight", {kv, h});
      L.wv = s.get(l + "self_attn.v_proj.weight", {kv, h});
      L.wo = s.get(l + "self_attn.o_proj.weight", {h, q});
      L.bq = need_if(c.attn_bias, s, l + "self_attn.q_proj.bias", {q});
      L.bk = need_if(c.attn_bias, s, l + "self_attn.k_proj.bias", {kv});
      L.bv = need_if(c.attn_bias, s, l + "self_attn.v_proj.bias", {kv});
      L.bo = need_if(c.attn_bias, s, l + "self_attn.o_proj.bias", {h});
      L.ffn_norm_w = s.get(l + "post_attention_layernorm.weight", {h});
      L.w_gate = s.get(l + "mlp.gate_proj.weight", {f, h});
      L.w_up = s.get(l + "mlp.up_proj.weight", {f, h});
      L.w_down = s.get(l + "mlp.down_proj.weight", {h, f});
      L.b_gate = need_if(c.mlp_bias, s, l + "mlp.gate_proj.bias", {f});
      L.b_up = need_if(c.mlp_bias, s, l + "mlp.up_proj.bias", {f});
      L.b_down = need_if(c.mlp_bias, s, l + "mlp.down_proj.bias", {h});
    }
    w.lm_head = c.tied_embeddings ? w.tok_embed : s.get("lm_head.weight", {v, h});
  }
  // Only float weights can be computed with.
  auto check_float = [&](const tensor_view& t) {
    if (t.present() && t.type != dtype::f16 && t.type != dtype::bf16 && t.type != dtype::f32)
      throw error(s.source_of(t.name) + ": tensor '" + t.name + "' has dtype " +
                  dtype_name(t.type) + "; weights must be F16, BF16 or F32");
  };
  for (const auto* t : {&w.tok_embed, &w.pos_embed, &w.final_norm_w, &w.final_norm_b, &w.lm_head})
    check_float(*t);
  for (const auto& L : w.layers)
    for (const auto* t : L.all()) check_float(*t);
  return w;
}

}  // namespace hs
