// Synthetic models: the HF tensor names and shapes of a real model, filled with seeded noise.
#include "hybridserve/synthetic_model.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "hybridserve/half.hpp"

namespace hs {
namespace {

struct named_shape {
  const char* name;
  arch a;
  int hidden, layers, heads, kv_heads, ffn, vocab, max_pos;
  float theta;
};

// Published shapes (config.json of each model).
const named_shape k_shapes[] = {
    {"tiny", arch::opt, 128, 4, 4, 4, 512, 259, 512, 0},
    {"opt-125m", arch::opt, 768, 12, 12, 12, 3072, 50272, 2048, 0},
    {"opt-6.7b", arch::opt, 4096, 32, 32, 32, 16384, 50272, 2048, 0},
    {"opt-13b", arch::opt, 5120, 40, 40, 40, 20480, 50272, 2048, 0},
    {"opt-30b", arch::opt, 7168, 48, 56, 56, 28672, 50272, 2048, 0},
    {"opt-66b", arch::opt, 9216, 64, 72, 72, 36864, 50272, 2048, 0},
    {"llama-2-7b", arch::llama, 4096, 32, 32, 32, 11008, 32000, 4096, 10000.f},
    {"llama-2-13b", arch::llama, 5120, 40, 40, 40, 13824, 32000, 4096, 10000.f},
    {"llama-3-8b", arch::llama, 4096, 32, 32, 8, 14336, 128256, 8192, 500000.f},
    {"llama-2-70b", arch::llama, 8192, 80, 64, 8, 28672, 32000, 4096, 10000.f},
};

model_config from_shape(const named_shape& s) {
  model_config c;
  c.architecture = s.a;
  c.name = s.name;
  c.hidden = s.hidden;
  c.n_layer = s.layers;
  c.n_head = s.heads;
  c.n_kv_head = s.kv_heads;
  c.head_dim = s.heads ? s.hidden / s.heads : 0;
  c.ffn = s.ffn;
  c.vocab = s.vocab;
  c.max_pos = s.max_pos;
  c.weight_dtype = dtype::f16;
  if (s.a == arch::opt) {
    c.attn_bias = c.mlp_bias = true;
    c.tied_embeddings = true;
    c.norm_eps = 1e-5f;
  } else {
    c.rope_theta = s.theta;
    c.norm_eps = 1e-5f;
  }
  c.bos_id = 0;
  c.pad_id = 1;
  c.eos_ids = {2};
  return c;
}

model_config parse_explicit(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  model_config c;
  if (kind == "opt")
    c = from_shape({"", arch::opt, 0, 0, 0, 0, 0, 0, 2048, 0});
  else if (kind == "llama")
    c = from_shape({"", arch::llama, 0, 0, 0, 0, 0, 0, 2048, 10000.f});
  else
    throw error("synthetic shape '" + spec + "': unknown (known: tiny, opt-125m, opt-6.7b, " +
                "opt-13b, opt-30b, opt-66b, llama-2-7b, llama-2-13b, llama-3-8b, " +
                "llama-2-70b, or opt:key=value,... / llama:key=value,...)");
  int head_dim = 0;
  std::stringstream ss(spec.substr(colon + 1));
  std::string kv;
  while (std::getline(ss, kv, ',')) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos)
      throw error("synthetic shape '" + spec + "': '" + kv + "' is not key=value");
    const std::string key = kv.substr(0, eq), val = kv.substr(eq + 1);
    double x = 0;
    try {
      std::size_t used = 0;
      x = std::stod(val, &used);
      if (used != val.size()) throw std::invalid_argument(val);
    } catch (const std::exception&) {
      throw error("synthetic shape '" + spec + "': value of '" + key + "' is not a number");
    }
    const int n = int(x);
    if (key == "hidden")
      c.hidden = n;
    else if (key == "layers")
      c.n_layer = n;
    else if (key == "heads")
      c.n_head = n;
    else if (key == "kv_heads")
      c.n_kv_head = n;
    else if (key == "ffn")
      c.ffn = n;
    else if (key == "vocab")
      c.vocab = n;
    else if (key == "max_pos")
      c.max_pos = n;
    else if (key == "head_dim")
      head_dim = n;
    else if (key == "theta")
      c.rope_theta = float(x);
    else
      throw error("synthetic shape '" + spec + "': unknown key '" + key +
                  "' (hidden, layers, heads, kv_heads, ffn, vocab, max_pos, head_dim, theta)");
  }
  if (c.n_kv_head == 0) c.n_kv_head = c.n_head;
  c.head_dim = head_dim ? head_dim : (c.n_head ? c.hidden / c.n_head : 0);
  c.name = spec;
  if (c.vocab < 259) throw error("synthetic shape '" + spec + "': vocab must be at least 259");
  return c;
}

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Fills n elements with uniform values in [-a, a] (or the constant `fill` when a == 0).
// Chunks have their own seed so the result does not depend on the number of threads.
void fill_tensor(void* data, dtype t, int64_t n, float a, float fill, uint64_t seed) {
  constexpr int64_t chunk = 1 << 20;
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  auto work = [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      uint64_t s = seed ^ (uint64_t(c) * 0xd1b54a32d192ed03ull);
      const int64_t begin = c * chunk, end = std::min(n, begin + chunk);
      for (int64_t i = begin; i < end; ++i) {
        const float u =
            a == 0 ? fill : a * (float(splitmix64(s) >> 40) * (2.0f / 16777216.0f) - 1.0f);
        if (t == dtype::f32)
          static_cast<float*>(data)[i] = u;
        else if (t == dtype::f16)
          static_cast<uint16_t*>(data)[i] = f32_to_f16(u);
        else
          static_cast<uint16_t*>(data)[i] = f32_to_bf16(u);
      }
    }
  };
  const int64_t threads =
      std::min<int64_t>(n_chunks, std::max(1u, std::thread::hardware_concurrency()));
  if (threads <= 1) return work(0, n_chunks);
  std::vector<std::thread> pool;
  for (int64_t t0 = 0; t0 < threads; ++t0)
    pool.emplace_back(work, n_chunks * t0 / threads, n_chunks * (t0 + 1) / threads);
  for (auto& th : pool) th.join();
}

}  // namespace

std::vector<std::string> synthetic_shape_names() {
  std::vector<std::string> out;
  for (const auto& s : k_shapes) out.push_back(s.name);
  return out;
}

result<model_config> synthetic_config(const std::string& spec) {
  return capture([&] {
    for (const auto& s : k_shapes)
      if (spec == s.name) return from_shape(s);
    auto c = parse_explicit(spec);
    c.validate("synthetic shape '" + spec + "'");
    return c;
  });
}

std::shared_ptr<const tokenizer> make_byte_tokenizer(int vocab) {
  nlohmann::json j;
  j["version"] = "1.0";
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  nlohmann::json added = nlohmann::json::array();
  nlohmann::json v = nlohmann::json::object();
  const char* specials[] = {"<s>", "<pad>", "</s>"};
  for (int i = 0; i < 3; ++i) {
    v[specials[i]] = i;
    added.push_back({{"id", i}, {"content", specials[i]}, {"special", true}});
  }
  for (int b = 0; b < 256; ++b) v[byte_level_token(uint8_t(b))] = 3 + b;
  for (int i = 259; i < vocab; ++i) {
    const std::string name = "<|unused_" + std::to_string(i) + "|>";
    v[name] = i;
    added.push_back({{"id", i}, {"content", name}, {"special", true}});
  }
  j["added_tokens"] = added;
  j["model"] = {{"type", "BPE"}, {"vocab", v}, {"merges", nlohmann::json::array()}};
  auto tok = tokenizer::from_json_text(j.dump(), "<byte tokenizer>");
  if (!tok) throw error(tok.error());  // our own JSON: a failure here is a bug
  return *tok;
}

result<std::shared_ptr<const model>> make_synthetic_model(const model_config& cfg, uint64_t seed,
                                                          const host_allocator& alloc) {
  return capture([&]() -> std::shared_ptr<const model> {
    cfg.validate("synthetic model '" + cfg.name + "'");
    if (cfg.weight_dtype != dtype::f16 && cfg.weight_dtype != dtype::bf16 &&
        cfg.weight_dtype != dtype::f32)
      throw error("synthetic model: weights must be F16, BF16 or F32");
    auto m = std::make_shared<model>();
    m->config = cfg;
    m->store = std::make_shared<tensor_store>();
    m->source = "synthetic:" + cfg.name;
    const int64_t h = cfg.hidden, q = cfg.q_dim(), kv = cfg.kv_dim(), f = cfg.ffn, v = cfg.vocab;
    const dtype t = cfg.weight_dtype;
    uint64_t tensor_index = 0;
    // Uniform(-a, a) has std a/sqrt(3); 0.02 std as OPT/Llama initialise. Norm gains are 1.
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float a, float fill = 0) {
      int64_t n = 1;
      for (auto d : shape) n *= d;
      const std::size_t bytes = std::size_t(n) * dtype_size(t);
      std::shared_ptr<void> mem =
          alloc ? alloc(bytes)
                : std::shared_ptr<void>(new char[bytes], std::default_delete<char[]>());
      if (!mem)
        throw error("synthetic model: cannot allocate " + std::to_string(bytes) + " bytes for '" +
                    name + "'");
      fill_tensor(mem.get(), t, n, a, fill, seed * 0x2545f4914f6cdd1dull + (++tensor_index));
      m->store->add_owned(name, t, std::move(shape), std::move(mem), bytes);
    };
    const float wa = 0.02f * std::sqrt(3.0f);
    if (cfg.architecture == arch::opt) {
      const std::string p = "model.decoder.";
      add(p + "embed_tokens.weight", {v, h}, wa);
      add(p + "embed_positions.weight", {int64_t(cfg.max_pos) + 2, h}, wa);
      add(p + "final_layer_norm.weight", {h}, 0, 1);
      add(p + "final_layer_norm.bias", {h}, 0, 0);
      for (int j = 0; j < cfg.n_layer; ++j) {
        const std::string l = p + "layers." + std::to_string(j) + ".";
        add(l + "self_attn_layer_norm.weight", {h}, 0, 1);
        add(l + "self_attn_layer_norm.bias", {h}, 0, 0);
        add(l + "self_attn.q_proj.weight", {q, h}, wa);
        add(l + "self_attn.k_proj.weight", {kv, h}, wa);
        add(l + "self_attn.v_proj.weight", {kv, h}, wa);
        add(l + "self_attn.out_proj.weight", {h, q}, wa);
        add(l + "self_attn.q_proj.bias", {q}, wa);
        add(l + "self_attn.k_proj.bias", {kv}, wa);
        add(l + "self_attn.v_proj.bias", {kv}, wa);
        add(l + "self_attn.out_proj.bias", {h}, wa);
        add(l + "final_layer_norm.weight", {h}, 0, 1);
        add(l + "final_layer_norm.bias", {h}, 0, 0);
        add(l + "fc1.weight", {f, h}, wa);
        add(l + "fc1.bias", {f}, wa);
        add(l + "fc2.weight", {h, f}, wa);
        add(l + "fc2.bias", {h}, wa);
      }
    } else {
      add("model.embed_tokens.weight", {v, h}, wa);
      add("model.norm.weight", {h}, 0, 1);
      add("lm_head.weight", {v, h}, wa);
      for (int j = 0; j < cfg.n_layer; ++j) {
        const std::string l = "model.layers." + std::to_string(j) + ".";
        add(l + "input_layernorm.weight", {h}, 0, 1);
        add(l + "self_attn.q_proj.weight", {q, h}, wa);
        add(l + "self_attn.k_proj.weight", {kv, h}, wa);
        add(l + "self_attn.v_proj.weight", {kv, h}, wa);
        add(l + "self_attn.o_proj.weight", {h, q}, wa);
        add(l + "post_attention_layernorm.weight", {h}, 0, 1);
        add(l + "mlp.gate_proj.weight", {f, h}, wa);
        add(l + "mlp.up_proj.weight", {f, h}, wa);
        add(l + "mlp.down_proj.weight", {h, f}, wa);
      }
    }
    m->weights = bind_weights(m->config, *m->store);
    m->tok = make_byte_tokenizer(cfg.vocab);
    m->add_bos = true;
    return m;
  });
}

}  // namespace hs
