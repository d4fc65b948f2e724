// Loads a Hugging Face checkpoint folder into a `model`: config, weights, tokenizer, BOS/EOS.
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hybridserve/model.hpp"

namespace hs {
namespace {

using json = nlohmann::json;

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw error(path + ": cannot open");
  try {
    json j;
    in >> j;
    if (!j.is_object()) throw error(path + ": not a JSON object");
    return j;
  } catch (const json::exception& e) {
    throw error(path + ": not valid JSON: " + e.what());
  }
}

// tokenizer_config.json writes special tokens as "text" or {"content": "text", ...}.
std::string token_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

// BOS/EOS: tokenizer_config.json names them as text; generation_config.json may list several
// EOS ids (Llama 3 does). Whether to prepend BOS: `add_bos_token` when given, otherwise
// whenever the model defines a BOS id (OPT's and Llama's tokenizers both prepend one).
void apply_special_tokens(const std::string& dir, model& m) {
  const std::string tc_path = dir + "/tokenizer_config.json";
  m.add_bos = m.config.bos_id >= 0;
  if (file_exists(tc_path)) {
    const json tc = read_json(tc_path);
    if (tc.contains("bos_token")) {
      const int32_t id = m.tok->token_to_id(token_text(tc["bos_token"]));
      if (id >= 0) m.config.bos_id = id;
    }
    if (tc.contains("eos_token")) {
      const int32_t id = m.tok->token_to_id(token_text(tc["eos_token"]));
      if (id >= 0 &&
          std::find(m.config.eos_ids.begin(), m.config.eos_ids.end(), id) == m.config.eos_ids.end())
        m.config.eos_ids.push_back(id);
    }
    if (tc.contains("add_bos_token")) {
      if (!tc["add_bos_token"].is_boolean())
        throw error(tc_path + ": 'add_bos_token' must be true or false");
      m.add_bos = tc["add_bos_token"].get<bool>();
    }
  }
  const std::string gc_path = dir + "/generation_config.json";
  if (file_exists(gc_path)) {
    const json gc = read_json(gc_path);
    if (gc.contains("eos_token_id") && !gc["eos_token_id"].is_null()) {
      const auto& e = gc["eos_token_id"];
      std::vector<int32_t> ids;
      if (e.is_number_integer())
        ids.push_back(e.get<int32_t>());
      else if (e.is_array())
        for (const auto& x : e)
          if (x.is_number_integer()) ids.push_back(x.get<int32_t>());
      for (auto id : ids)
        if (std::find(m.config.eos_ids.begin(), m.config.eos_ids.end(), id) ==
            m.config.eos_ids.end())
          m.config.eos_ids.push_back(id);
    }
  }
  if (m.add_bos && (m.config.bos_id < 0 || m.config.bos_id >= m.config.vocab))
    throw error(dir + ": the tokenizer prepends BOS but no valid bos_token_id is configured");
}

}  // namespace

std::vector<int32_t> model::encode_prompt(const std::string& text) const {
  std::vector<int32_t> ids;
  if (add_bos && config.bos_id >= 0) ids.push_back(config.bos_id);
  const auto body = tok->encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

bool model::is_eos(int32_t id) const {
  return std::find(config.eos_ids.begin(), config.eos_ids.end(), id) != config.eos_ids.end();
}

result<std::shared_ptr<const model>> load_model(const std::string& dir) {
  return capture([&]() -> std::shared_ptr<const model> {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw error(dir +
                  ": not a model folder (expected config.json, model.safetensors, "
                  "tokenizer.json)");
    auto m = std::make_shared<model>();
    auto cfg = load_model_config(dir + "/config.json");
    if (!cfg) throw error(cfg.error());
    m->config = *cfg;
    const auto slash = dir.find_last_not_of('/');
    const auto trimmed = dir.substr(0, slash + 1);
    m->config.name = trimmed.substr(trimmed.find_last_of('/') + 1);
    m->store = std::make_shared<tensor_store>();
    m->store->add_checkpoint_dir(dir);
    m->weights = bind_weights(m->config, *m->store);
    auto tok = tokenizer::load(dir + "/tokenizer.json");
    if (!tok) throw error(tok.error());
    m->tok = *tok;
    if (m->tok->vocab_size() > m->config.vocab)
      throw error(dir + "/tokenizer.json: vocabulary of " + std::to_string(m->tok->vocab_size()) +
                  " tokens is larger than the model's vocab_size " +
                  std::to_string(m->config.vocab));
    apply_special_tokens(dir, *m);
    m->source = dir;
    return m;
  });
}

}  // namespace hs
