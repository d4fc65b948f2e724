// Chat template families: detection by markers and rendering as their reference templates do.
#include "hybridserve/chat_template.hpp"

#include <nlohmann/json.hpp>

namespace hs {
namespace {

bool has(const std::string& s, const char* marker) {
  return s.find(marker) != std::string::npos;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

std::string token_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

std::string render_llama2(const std::vector<chat_message>& msgs, const chat_special& sp) {
  // As Llama 2's template: an optional leading system message is folded into the first turn.
  std::string system;
  std::size_t first = 0;
  if (!msgs.empty() && msgs[0].role == "system") {
    system = msgs[0].content;
    first = 1;
  }
  std::string out;
  bool folded = system.empty();
  for (std::size_t i = first; i < msgs.size(); ++i) {
    std::string content = msgs[i].content;
    if (!folded && msgs[i].role == "user") {
      content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
      folded = true;
    }
    if (msgs[i].role == "user")
      out += sp.bos + "[INST] " + trim(content) + " [/INST]";
    else if (msgs[i].role == "assistant")
      out += " " + trim(content) + " " + sp.eos;
  }
  if (!folded) out += sp.bos + "[INST] <<SYS>>\n" + system + "\n<</SYS>>\n\n [/INST]";
  return out;
}

std::string capitalised(const std::string& role) {
  std::string r = role;
  if (!r.empty() && r[0] >= 'a' && r[0] <= 'z') r[0] = char(r[0] - 'a' + 'A');
  return r;
}

}  // namespace

const char* chat_family_name(chat_family f) {
  switch (f) {
    case chat_family::chatml:
      return "chatml";
    case chat_family::llama2:
      return "llama2";
    case chat_family::llama3:
      return "llama3";
    case chat_family::zephyr:
      return "zephyr";
    case chat_family::plain:
      return "plain";
  }
  return "plain";
}

std::optional<chat_family> chat_family_from_name(const std::string& name) {
  for (auto f : {chat_family::chatml, chat_family::llama2, chat_family::llama3, chat_family::zephyr,
                 chat_family::plain})
    if (name == chat_family_name(f)) return f;
  return std::nullopt;
}

std::optional<chat_family> detect_chat_family(const std::string& t) {
  if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) return chat_family::llama3;
  if (has(t, "<|im_start|>")) return chat_family::chatml;
  if (has(t, "[INST]")) return chat_family::llama2;
  if (has(t, "<|user|>") && has(t, "<|assistant|>")) return chat_family::zephyr;
  return std::nullopt;
}

std::string render_chat(chat_family f, const std::vector<chat_message>& msgs,
                        const chat_special& sp) {
  std::string out;
  switch (f) {
    case chat_family::chatml:
      for (const auto& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      return out + "<|im_start|>assistant\n";
    case chat_family::llama2:
      return render_llama2(msgs, sp);
    case chat_family::llama3:
      out = sp.bos;
      for (const auto& m : msgs)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) +
               "<|eot_id|>";
      return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case chat_family::zephyr:
      for (const auto& m : msgs) out += "<|" + m.role + "|>\n" + m.content + sp.eos + "\n";
      return out + "<|assistant|>\n";
    case chat_family::plain:
      for (const auto& m : msgs) out += capitalised(m.role) + ": " + m.content + "\n\n";
      return out + "Assistant:";
  }
  return out;
}

std::vector<std::string> chat_end_tokens(chat_family f) {
  switch (f) {
    case chat_family::chatml:
      return {"<|im_end|>"};
    case chat_family::llama3:
      return {"<|eot_id|>"};
    default:
      return {};
  }
}

chat_template_choice choose_chat_template(const std::string& tokenizer_config_text,
                                          const std::string& configured,
                                          const chat_special& fallback) {
  chat_template_choice c;
  c.special = fallback;
  std::string jinja, note;
  if (tokenizer_config_text.empty()) {
    note = "tokenizer_config.json has no chat template";
  } else {
    const auto j = nlohmann::json::parse(tokenizer_config_text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      note = "tokenizer_config.json is not a JSON object (ignored)";
    } else {
      if (j.contains("bos_token") && !token_text(j["bos_token"]).empty())
        c.special.bos = token_text(j["bos_token"]);
      if (j.contains("eos_token") && !token_text(j["eos_token"]).empty())
        c.special.eos = token_text(j["eos_token"]);
      const auto& t = j.contains("chat_template") ? j["chat_template"] : nlohmann::json();
      if (t.is_string()) {
        jinja = t.get<std::string>();
      } else if (t.is_array()) {  // [{"name": "default", "template": "..."}, ...]
        for (const auto& e : t)
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
              e["template"].is_string())
            jinja = e["template"].get<std::string>();
      }
      note = jinja.empty() ? "tokenizer_config.json has no chat template"
                           : "tokenizer_config.json's chat template is of no known family";
    }
  }
  if (!jinja.empty()) {
    if (auto f = detect_chat_family(jinja)) {
      c.family = *f;
      c.how = std::string("chat template ") + chat_family_name(*f) +
              ", detected in tokenizer_config.json";
      if (!configured.empty() && configured != chat_family_name(*f))
        c.how += " (http.chat_template = " + configured + " applies only to models without one)";
      return c;
    }
  }
  if (!configured.empty()) {
    if (auto f = chat_family_from_name(configured)) {
      c.family = *f;
      c.how = note + ": chat template " + configured + ", from http.chat_template";
      return c;
    }
    note += "; http.chat_template = '" + configured + "' is unknown";
  }
  c.family = chat_family::plain;
  c.how = note + " and none is configured (http.chat_template): plain \"Role: text\" transcript";
  return c;
}

}  // namespace hs
