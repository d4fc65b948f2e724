// The CPU reference forward pass: batched over sequences of different lengths, with a KV cache.
// float32 compute on OpenBLAS; 16-bit weights are converted one layer at a time as it is used,
// so a model whose 16-bit weights fit in RAM runs without a float32 copy of all of them.
#pragma once
#include <memory>
#include <vector>

#include "hybridserve/model.hpp"

namespace hs {

/// One sequence's KV cache on the reference path: per layer, token-major K and V,
/// [length, n_kv_head, head_dim] each (Llama keys after RoPE).
struct sequence_kv {
  std::vector<std::vector<float>> k, v;  // [n_layer][length * kv_dim]
  int64_t length = 0;
};

/// New tokens of one sequence for one forward call; `kv` grows by tokens.size().
struct forward_item {
  std::vector<int32_t> tokens;
  sequence_kv* kv = nullptr;
  bool all_logits = false;  // logits at every new token (teacher forcing), else the last only
};

/// Optional capture of every layer's input (the activation checkpoint), for tests and for the
/// activation cache: layer_inputs[l] is [total new tokens, hidden], batch items concatenated.
struct forward_trace {
  std::vector<std::vector<float>> layer_inputs;
};

class reference_forward {
 public:
  explicit reference_forward(std::shared_ptr<const model> m);

  /// Runs the new tokens of every item through the model (prefill chunks and decode steps may
  /// be mixed). Returns per item its logits, [n_out, vocab] flattened (n_out = tokens.size()
  /// with all_logits, else 1). Throws hs::error for an id out of range or a context overflow,
  /// before touching any cache.
  std::vector<std::vector<float>> run(std::vector<forward_item>& batch,
                                      forward_trace* trace = nullptr);

  const model& get_model() const { return *model_; }

 private:
  struct layer_f32;
  void convert_layer(int j, layer_f32& out) const;
  std::shared_ptr<const model> model_;
};

}  // namespace hs
