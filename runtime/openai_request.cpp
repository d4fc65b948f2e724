// OpenAI request parsing and errors (see openai_request.hpp).
#include "hybridserve/openai_request.hpp"

#include <algorithm>
#include <cstdint>

#include "hybridserve/refusal.hpp"

namespace hs::openai {

using json = nlohmann::json;

// ---- errors in the OpenAI shape

api_error bad_param(const std::string& param, const std::string& message, const std::string& code) {
  return {400, message, "invalid_request_error", code, param, 0};
}

json error_json(const api_error& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json() : json(e.param)},
            {"code", e.code.empty() ? json() : json(e.code)}}}};
}

// Engine messages name problems in words (see the TCP front end); map them to HTTP.
api_error engine_error(const std::string& why, int retry_after_s) {
  switch (classify_refusal(why)) {
    case refusal::context_overflow:
      return {400, why, "invalid_request_error", "context_length_exceeded", "", 0};
    case refusal::overloaded:
      return {429, why, "rate_limit_error", "overloaded", "", retry_after_s};
    case refusal::draining:
      return {503, why, "server_error", "draining", "", retry_after_s};
    case refusal::bad_request:
      return {400, why, "invalid_request_error", "invalid_value", "", 0};
    case refusal::internal:
      break;
  }
  return {500, why, "server_error", "internal_error", "", 0};
}

// ---- request parsing

namespace {

// Compact JSON of a client value for messages; invalid UTF-8 is replaced, never thrown.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<api_error> get_number(const json& b, const char* key, double lo, double hi,
                                    bool lo_open, double& out) {
  if (!b.contains(key) || b[key].is_null()) return std::nullopt;
  const auto& v = b[key];
  if (!v.is_number())
    return bad_param(key, std::string("'") + key + "' must be a number, got " + dump(v),
                     "invalid_type");
  const double d = v.get<double>();
  if (!(lo_open ? d > lo : d >= lo) || !(d <= hi)) {
    std::ostringstream m;
    m << "'" << key << "' = " << d << " is out of range: it must be in " << (lo_open ? "(" : "[")
      << lo << ", " << hi << "]";
    return bad_param(key, m.str());
  }
  out = d;
  return std::nullopt;
}

std::optional<api_error> get_int(const json& b, const char* key, int64_t lo, int64_t hi,
                                 int64_t& out, bool& given) {
  given = false;
  if (!b.contains(key) || b[key].is_null()) return std::nullopt;
  const auto& v = b[key];
  if (!v.is_number_integer())
    return bad_param(key, std::string("'") + key + "' must be an integer, got " + dump(v),
                     "invalid_type");
  const int64_t i = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)
                        ? INT64_MAX
                        : v.get<int64_t>();
  if (i < lo || i > hi)
    return bad_param(key, std::string("'") + key + "' = " + std::to_string(i) +
                              " is out of range: it must be in [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]");
  out = i;
  given = true;
  return std::nullopt;
}

bool truthy(const json& b, const char* key) {
  if (!b.contains(key)) return false;
  const auto& v = b[key];
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_object() || v.is_array()) return !v.empty();
  return true;
}

}  // namespace

std::optional<api_error> parse_common(const openai_context& s, const json& b, gen_params& p) {
  auto& sp = p.req.sampling;
  double d = 1.0;
  if (auto e = get_number(b, "temperature", 0, 2, false, d)) return e;
  sp.temperature = float(d);
  d = 1.0;
  if (auto e = get_number(b, "top_p", 0, 1, true, d)) return e;
  sp.top_p = float(d);
  int64_t i = 0;
  bool given = false;
  if (auto e = get_int(b, "top_k", -1, 1 << 30, i, given)) return e;
  sp.top_k = given && i > 0 ? int(i) : 0;
  if (auto e = get_int(b, "seed", INT64_MIN, INT64_MAX, i, given)) return e;
  if (given) {
    sp.seed = uint64_t(i);
    sp.seeded = true;
  }
  if (auto e = get_int(b, "n", 1, 1, i, given)) {
    e->message = "only n = 1 is supported";
    return e;
  }
  if (b.contains("best_of") && !b["best_of"].is_null() && b["best_of"] != 1)
    return bad_param("best_of", "only best_of = 1 is supported");
  for (const char* k : {"logprobs", "top_logprobs", "echo", "logit_bias", "presence_penalty",
                        "frequency_penalty", "tools", "functions", "suffix"})
    if (truthy(b, k))
      return bad_param(k, std::string("'") + k + "' is not supported by this server");
  if (b.contains("stream") && !b["stream"].is_null()) {
    if (!b["stream"].is_boolean())
      return bad_param("stream", "'stream' must be a boolean", "invalid_type");
    p.stream = b["stream"].get<bool>();
  }
  if (b.contains("stream_options") && !b["stream_options"].is_null()) {
    const auto& so = b["stream_options"];
    if (!p.stream)
      return bad_param("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (!so.is_object())
      return bad_param("stream_options", "'stream_options' must be an object", "invalid_type");
    if (so.contains("include_usage") && !so["include_usage"].is_null()) {
      if (!so["include_usage"].is_boolean())
        return bad_param("stream_options.include_usage", "'include_usage' must be a boolean",
                         "invalid_type");
      p.include_usage = so["include_usage"].get<bool>();
    }
  }
  if (b.contains("stop") && !b["stop"].is_null()) {
    const auto& st = b["stop"];
    if (st.is_string()) {
      p.stop.push_back(st.get<std::string>());
    } else if (st.is_array() && st.size() <= 4 &&
               std::all_of(st.begin(), st.end(), [](const json& x) { return x.is_string(); })) {
      for (const auto& x : st) p.stop.push_back(x.get<std::string>());
    } else {
      return bad_param("stop", "'stop' must be a string or an array of at most 4 strings",
                       "invalid_type");
    }
    p.stop.erase(std::remove(p.stop.begin(), p.stop.end(), std::string()), p.stop.end());
  }
  return std::nullopt;
}

namespace {

// max_tokens after the prompt is known: the context must hold prompt + completion.
std::optional<api_error> parse_max_tokens(const openai_context& s, const model& m, const json& b,
                                          const char* prompt_param, gen_params& p) {
  const int64_t ctx = m.config.max_pos;
  const int64_t n_prompt = int64_t(p.req.prompt.size());
  if (n_prompt > ctx)
    return api_error{400,
                     "This model's maximum context length is " + std::to_string(ctx) +
                         " tokens. However, your prompt has " + std::to_string(n_prompt) +
                         " tokens.",
                     "invalid_request_error",
                     "context_length_exceeded",
                     prompt_param,
                     0};
  int64_t n = 0;
  bool given = false;
  const char* key = "max_tokens";
  if (p.chat && b.contains("max_completion_tokens") && !b["max_completion_tokens"].is_null())
    key = "max_completion_tokens";
  if (auto e = get_int(b, key, 0, s.max_tokens_limit, n, given)) return e;
  if (given) {
    if (n_prompt + n > ctx)
      return api_error{400,
                       "This model's maximum context length is " + std::to_string(ctx) +
                           " tokens. However, you requested " + std::to_string(n_prompt + n) +
                           " tokens (" + std::to_string(n_prompt) + " in the prompt, " +
                           std::to_string(n) +
                           " for the completion). Please reduce the prompt "
                           "or the completion length.",
                       "invalid_request_error",
                       "context_length_exceeded",
                       key,
                       0};
    p.req.max_tokens = int(n);
  } else {
    p.req.max_tokens =
        int(std::max<int64_t>(0, std::min<int64_t>(s.max_tokens_default, ctx - n_prompt)));
  }
  return std::nullopt;
}

}  // namespace

std::optional<api_error> parse_completion(const openai_context& s, const model& m, const json& b,
                                          gen_params& p) {
  if (!b.contains("prompt") || b["prompt"].is_null())
    return bad_param("prompt", "'prompt' is required", "missing_required_parameter");
  const auto& pr = b["prompt"];
  auto ids_of = [&](const json& a, std::vector<int32_t>& out) -> bool {
    for (const auto& x : a) {
      if (!x.is_number_integer()) return false;
      const int64_t id = x.get<int64_t>();
      if (id < 0 || id >= m.config.vocab) return false;
      out.push_back(int32_t(id));
    }
    return true;
  };
  const std::string range =
      "token ids must be integers in [0, " + std::to_string(m.config.vocab) + ")";
  if (pr.is_string()) {
    p.req.prompt = m.encode_prompt(pr.get<std::string>());
  } else if (pr.is_array() && !pr.empty() && pr[0].is_string()) {
    if (pr.size() != 1 || !pr[0].is_string())
      return bad_param("prompt", "only one prompt per request is supported");
    p.req.prompt = m.encode_prompt(pr[0].get<std::string>());
  } else if (pr.is_array() && !pr.empty() && pr[0].is_array()) {
    if (pr.size() != 1) return bad_param("prompt", "only one prompt per request is supported");
    if (!ids_of(pr[0], p.req.prompt)) return bad_param("prompt", range);
  } else if (pr.is_array() && !pr.empty()) {
    if (!ids_of(pr, p.req.prompt)) return bad_param("prompt", range);
  } else {
    return bad_param("prompt",
                     "'prompt' must be a string, an array of one string, or an array of token ids",
                     "invalid_type");
  }
  if (p.req.prompt.empty()) return bad_param("prompt", "the prompt is empty");
  return parse_max_tokens(s, m, b, "prompt", p);
}

std::optional<api_error> parse_chat(const openai_context& s, const model& m, const json& b,
                                    gen_params& p) {
  p.chat = true;
  if (!b.contains("messages") || b["messages"].is_null())
    return bad_param("messages", "'messages' is required", "missing_required_parameter");
  const auto& ms = b["messages"];
  if (!ms.is_array() || ms.empty())
    return bad_param("messages", "'messages' must be a non-empty array", "invalid_type");
  std::vector<chat_message> msgs;
  for (std::size_t i = 0; i < ms.size(); ++i) {
    const auto& x = ms[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!x.is_object() || !x.contains("role") || !x["role"].is_string())
      return bad_param(where, where + " must be an object with a 'role'", "invalid_type");
    std::string role = x["role"].get<std::string>();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant")
      return bad_param(where + ".role", "role '" + role +
                                            "' is not supported (system, developer, user, "
                                            "assistant)");
    std::string content;
    const json c = x.contains("content") ? x["content"] : json();
    if (c.is_string()) {
      content = c.get<std::string>();
    } else if (c.is_array()) {
      for (const auto& part : c) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string())
          return bad_param(where + ".content", "only text content parts are supported");
        content += part["text"].get<std::string>();
      }
    } else if (!(c.is_null() && role == "assistant")) {
      return bad_param(where + ".content", where + ".content must be a string or text parts",
                       "invalid_type");
    }
    msgs.push_back({role, content});
  }
  const std::string text = render_chat(s.chat.family, msgs, s.chat.special);
  p.req.prompt = s.chat.family == chat_family::plain ? m.encode_prompt(text) : m.tok->encode(text);
  p.req.stop_ids = s.chat_end_ids;
  if (p.req.prompt.empty()) return bad_param("messages", "the prompt is empty");
  return parse_max_tokens(s, m, b, "messages", p);
}

}  // namespace hs::openai
