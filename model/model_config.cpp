// config.json -> model_config, with an error for every value we cannot honour (rather than
// computing a different function than the checkpoint's authors meant).
#include "hybridserve/model_config.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace hs {
namespace {

using json = nlohmann::json;

struct reader {
  const json& j;
  const std::string& src;

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw error(src + ": '" + key + "' " + why);
  }
  bool has(const char* key) const { return j.contains(key) && !j[key].is_null(); }
  int integer(const char* key) const {
    if (!has(key)) fail(key, "is missing");
    if (!j[key].is_number_integer()) fail(key, "must be an integer, got " + j[key].dump());
    const auto v = j[key].get<int64_t>();
    if (v < 0 || v > (int64_t(1) << 30)) fail(key, "is out of range: " + j[key].dump());
    return int(v);
  }
  int integer_or(const char* key, int dflt) const { return has(key) ? integer(key) : dflt; }
  double number_or(const char* key, double dflt) const {
    if (!has(key)) return dflt;
    if (!j[key].is_number()) fail(key, "must be a number, got " + j[key].dump());
    return j[key].get<double>();
  }
  bool boolean_or(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    if (!j[key].is_boolean()) fail(key, "must be true or false, got " + j[key].dump());
    return j[key].get<bool>();
  }
  std::string string_or(const char* key, const std::string& dflt) const {
    if (!has(key)) return dflt;
    if (!j[key].is_string()) fail(key, "must be a string, got " + j[key].dump());
    return j[key].get<std::string>();
  }
};

dtype parse_torch_dtype(const reader& r) {
  const char* key = r.has("dtype") ? "dtype" : "torch_dtype";
  const std::string s = r.string_or(key, "float16");
  if (s == "float16") return dtype::f16;
  if (s == "bfloat16") return dtype::bf16;
  if (s == "float32") return dtype::f32;
  r.fail(key, "is '" + s + "'; supported: float16, bfloat16, float32");
}

std::vector<int32_t> parse_eos(const reader& r) {
  std::vector<int32_t> out;
  if (!r.has("eos_token_id")) return out;
  const auto& e = r.j["eos_token_id"];
  if (e.is_number_integer()) return {e.get<int32_t>()};
  if (!e.is_array()) r.fail("eos_token_id", "must be an integer or a list of integers");
  for (const auto& x : e) {
    if (!x.is_number_integer()) r.fail("eos_token_id", "must hold integers only");
    out.push_back(x.get<int32_t>());
  }
  return out;
}

void parse_opt(const reader& r, model_config& c) {
  c.architecture = arch::opt;
  c.hidden = r.integer("hidden_size");
  c.n_layer = r.integer("num_hidden_layers");
  c.n_head = r.integer("num_attention_heads");
  c.n_kv_head = c.n_head;
  c.ffn = r.integer("ffn_dim");
  c.vocab = r.integer("vocab_size");
  c.max_pos = r.integer("max_position_embeddings");
  if (c.n_head > 0) c.head_dim = c.hidden / c.n_head;
  c.norm_eps = 1e-5f;  // OPT's LayerNorm uses PyTorch's default
  c.tied_embeddings = r.boolean_or("tie_word_embeddings", true);
  c.attn_bias = c.mlp_bias = r.boolean_or("enable_bias", true);
  if (!r.boolean_or("do_layer_norm_before", true))
    r.fail("do_layer_norm_before", "is false (post-LN OPT-350m); only pre-LN OPT is supported");
  if (r.boolean_or("_remove_final_layer_norm", false))
    r.fail("_remove_final_layer_norm", "is true; unsupported");
  if (r.integer_or("word_embed_proj_dim", c.hidden) != c.hidden)
    r.fail("word_embed_proj_dim", "differs from hidden_size (project_in/out); unsupported");
  if (!r.boolean_or("layer_norm_elementwise_affine", true))
    r.fail("layer_norm_elementwise_affine", "is false; unsupported");
  const auto act = r.string_or("activation_function", "relu");
  if (act != "relu") r.fail("activation_function", "is '" + act + "'; supported: relu");
}

void parse_llama(const reader& r, model_config& c) {
  c.architecture = arch::llama;
  c.hidden = r.integer("hidden_size");
  c.n_layer = r.integer("num_hidden_layers");
  c.n_head = r.integer("num_attention_heads");
  c.n_kv_head = r.integer_or("num_key_value_heads", c.n_head);
  c.ffn = r.integer("intermediate_size");
  c.vocab = r.integer("vocab_size");
  c.max_pos = r.integer_or("max_position_embeddings", 2048);
  c.head_dim = r.integer_or("head_dim", c.n_head > 0 ? c.hidden / c.n_head : 0);
  c.norm_eps = float(r.number_or("rms_norm_eps", 1e-6));
  c.tied_embeddings = r.boolean_or("tie_word_embeddings", false);
  c.attn_bias = r.boolean_or("attention_bias", false);
  c.mlp_bias = r.boolean_or("mlp_bias", false);
  const auto act = r.string_or("hidden_act", "silu");
  if (act != "silu") r.fail("hidden_act", "is '" + act + "'; supported: silu");
  if (r.integer_or("pretraining_tp", 1) != 1) r.fail("pretraining_tp", "must be 1");
  // RoPE: top-level rope_theta (older files) or rope_parameters.rope_theta (newer).
  double theta = r.number_or("rope_theta", 10000.0);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!r.has(key)) continue;
    const auto& p = r.j[key];
    if (!p.is_object()) r.fail(key, "must be an object");
    const reader pr{p, r.src};
    const std::string type = pr.string_or("rope_type", pr.string_or("type", "default"));
    if (type != "default")
      r.fail(key, "has rope_type '" + type + "'; only default RoPE is supported");
    theta = pr.number_or("rope_theta", theta);
  }
  if (!(theta > 0)) r.fail("rope_theta", "must be positive");
  c.rope_theta = float(theta);
}

}  // namespace

const char* arch_name(arch a) {
  return a == arch::opt ? "OPTForCausalLM" : "LlamaForCausalLM";
}

int64_t model_config::layer_parameter_count() const {
  const int64_t h = hidden, q = q_dim(), kv = kv_dim(), f = ffn;
  int64_t n = h * q + 2 * h * kv + q * h;  // Wq, Wk, Wv, Wo
  if (attn_bias) n += q + 2 * kv + h;
  if (architecture == arch::opt) {
    n += 2 * h * f + (mlp_bias ? f + h : 0) + 4 * h;  // fc1, fc2, two LayerNorms (w, b)
  } else {
    n += 3 * h * f + (mlp_bias ? 2 * f + h : 0) + 2 * h;  // gate, up, down, two RMSNorms
  }
  return n;
}

int64_t model_config::parameter_count() const {
  int64_t n = int64_t(n_layer) * layer_parameter_count();
  n += int64_t(vocab) * hidden;                        // token embedding
  if (!tied_embeddings) n += int64_t(vocab) * hidden;  // lm_head
  if (architecture == arch::opt)
    n += int64_t(max_pos + 2) * hidden + 2 * hidden;
  else
    n += hidden;
  return n;
}

void model_config::validate(const std::string& src) const {
  auto bad = [&](const std::string& what) { throw error(src + ": " + what); };
  if (n_layer <= 0) bad("num_hidden_layers must be positive");
  if (hidden <= 0 || n_head <= 0 || n_kv_head <= 0 || ffn <= 0 || vocab <= 0 || max_pos <= 0)
    bad("hidden_size, heads, ffn, vocab_size and max_position_embeddings must be positive");
  if (head_dim <= 0) bad("head_dim must be positive");
  if (architecture == arch::opt && head_dim * n_head != hidden)
    bad("hidden_size " + std::to_string(hidden) + " is not divisible by num_attention_heads " +
        std::to_string(n_head));
  if (n_head % n_kv_head != 0)
    bad("num_attention_heads " + std::to_string(n_head) +
        " is not a multiple of num_key_value_heads " + std::to_string(n_kv_head));
  if (architecture == arch::llama && head_dim % 2 != 0) bad("head_dim must be even for RoPE");
  if (!(norm_eps > 0)) bad("norm epsilon must be positive");
}

model_config parse_model_config_text(const std::string& text, const std::string& src) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw error(src + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw error(src + ": not a JSON object");
  const reader r{j, src};
  std::string arch_str;
  if (r.has("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    arch_str = j["architectures"][0].get<std::string>();
  const std::string model_type = r.string_or("model_type", "");
  model_config c;
  if (arch_str == "OPTForCausalLM" || (arch_str.empty() && model_type == "opt")) {
    parse_opt(r, c);
  } else if (arch_str == "LlamaForCausalLM" || (arch_str.empty() && model_type == "llama")) {
    parse_llama(r, c);
  } else {
    throw error(src + ": unsupported architecture '" + (arch_str.empty() ? model_type : arch_str) +
                "' (supported: OPTForCausalLM, LlamaForCausalLM)");
  }
  c.weight_dtype = parse_torch_dtype(r);
  c.bos_id = r.integer_or("bos_token_id", -1);
  c.pad_id = r.integer_or("pad_token_id", -1);
  c.eos_ids = parse_eos(r);
  c.validate(src);
  return c;
}

result<model_config> load_model_config(const std::string& path) {
  return capture([&] {
    std::ifstream in(path);
    if (!in) throw error(path + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_model_config_text(ss.str(), path);
  });
}

}  // namespace hs
