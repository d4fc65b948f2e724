// A loaded model: config, weight views (memory-mapped or synthetic) and tokenizer.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "hybridserve/error.hpp"
#include "hybridserve/model_config.hpp"
#include "hybridserve/safetensors.hpp"
#include "hybridserve/tokenizer.hpp"

namespace hs {

/// One transformer layer. Linear weights are [out, in] row-major (PyTorch layout), so a
/// projection is y[M, out] = x[M, in] @ W^T. Absent tensors (biases a model lacks) are views
/// with data == nullptr.
struct layer_weights {
  tensor_view attn_norm_w, attn_norm_b;  // [hidden]; b: OPT only
  tensor_view wq, wk, wv, wo;            // [q_dim, hidden], [kv_dim, hidden] x2, [hidden, q_dim]
  tensor_view bq, bk, bv, bo;            // [q_dim], [kv_dim] x2, [hidden]
  tensor_view ffn_norm_w, ffn_norm_b;    // [hidden]
  tensor_view w_up, b_up;                // OPT fc1 / Llama up_proj: [ffn, hidden], [ffn]
  tensor_view w_gate, b_gate;            // Llama gate_proj: [ffn, hidden]
  tensor_view w_down, b_down;            // OPT fc2 / Llama down_proj: [hidden, ffn], [hidden]

  /// Every tensor of the layer (present or not), K/V projection first: the order a loader
  /// streams them in so K/V rebuild can start before the rest arrives.
  std::vector<const tensor_view*> all() const;
  std::size_t bytes() const;
};

struct model_weights {
  tensor_view tok_embed;                   // [vocab, hidden]
  tensor_view pos_embed;                   // OPT: [max_pos + 2, hidden] (offset 2)
  tensor_view final_norm_w, final_norm_b;  // [hidden]
  tensor_view lm_head;                     // [vocab, hidden]; == tok_embed when tied
  std::vector<layer_weights> layers;
};

struct model {
  model_config config;
  model_weights weights;
  std::shared_ptr<tensor_store> store;
  std::shared_ptr<const tokenizer> tok;
  bool add_bos = true;  // prepend config.bos_id when encoding a prompt
  std::string source;   // checkpoint folder or "synthetic:<shape>"

  /// Prompt text to ids, BOS first when the model wants it.
  std::vector<int32_t> encode_prompt(const std::string& text) const;
  bool is_eos(int32_t id) const;
};

/// Binds the named HF tensors of `cfg`'s architecture, checking every shape. Throws hs::error
/// naming the file and the tensor that is missing or wrong.
model_weights bind_weights(const model_config& cfg, const tensor_store& store);

/// Loads a Hugging Face checkpoint folder: config.json, model.safetensors (or sharded),
/// tokenizer.json, and, when present, tokenizer_config.json and generation_config.json.
result<std::shared_ptr<const model>> load_model(const std::string& dir);

}  // namespace hs
