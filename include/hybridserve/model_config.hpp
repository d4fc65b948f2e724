// Architecture hyper-parameters of a decoder-only model (OPT or Llama family).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hybridserve/error.hpp"
#include "hybridserve/tensor.hpp"

namespace hs {

enum class arch { opt, llama };
const char* arch_name(arch a);

struct model_config {
  arch architecture = arch::opt;
  std::string name;  // folder name or synthetic shape name
  int n_layer = 0;
  int hidden = 0;
  int n_head = 0;
  int n_kv_head = 0;  // == n_head for multi-head attention
  int head_dim = 0;
  int ffn = 0;  // OPT ffn_dim / Llama intermediate_size
  int vocab = 0;
  int max_pos = 0;  // maximum context (positions)
  float norm_eps = 1e-5f;
  float rope_theta = 10000.f;  // Llama only
  bool tied_embeddings = false;
  bool attn_bias = false;  // q/k/v/o biases
  bool mlp_bias = false;   // fc1/fc2 or gate/up/down biases
  dtype weight_dtype = dtype::f16;
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  int32_t pad_id = -1;

  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_kv_head * head_dim; }
  /// Parameters of the whole model (embeddings included, tied head counted once).
  int64_t parameter_count() const;
  /// Weight elements of one transformer layer (norms and biases included).
  int64_t layer_parameter_count() const;
  /// Throws hs::error if any value is impossible (zero sizes, head_dim mismatch...).
  void validate(const std::string& source) const;
};

/// Parses a Hugging Face `config.json` (OPTForCausalLM or LlamaForCausalLM). Accepts both
/// `dtype`/`torch_dtype` and top-level `rope_theta`/`rope_parameters.rope_theta`. Unsupported
/// architectures or config values are errors naming the file and the key.
result<model_config> load_model_config(const std::string& config_json_path);
model_config parse_model_config_text(const std::string& json_text, const std::string& source);

}  // namespace hs
