// The OpenAI-compatible HTTP front end on cpp-httplib (docs/HTTP.md). httplib's threads each
// serve one HTTP request; a request talks to request intake through its own caf::scoped_actor
// (a blocking actor: waiting on it never holds a CAF worker). Streams are server-sent events
// written by a chunked content provider; a failed write means the client is gone, and its
// request is cancelled so its cache is freed at once.
#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "hybridserve/chat_template.hpp"
#include "hybridserve/engine_internals.hpp"
#include "hybridserve/http_frontend.hpp"
#include "hybridserve/metrics.hpp"

namespace hs {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

namespace {

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// ---- errors in the OpenAI shape
struct api_error {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string code = "invalid_value";
  std::string param;  // empty: null
  int retry_after_s = 0;
};

api_error bad_param(const std::string& param, const std::string& message,
                    const std::string& code = "invalid_value") {
  return {400, message, "invalid_request_error", code, param, 0};
}

json error_json(const api_error& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? json() : json(e.param)},
            {"code", e.code.empty() ? json() : json(e.code)}}}};
}

void send_error(httplib::Response& res, const api_error& e) {
  res.status = e.status;
  if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(e.retry_after_s));
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(dump(error_json(e)), "application/json");
}

// Engine messages name problems in words (see the TCP front end); map them to HTTP.
api_error engine_error(const std::string& why, int retry_after_s) {
  if (why.rfind("context overflow", 0) == 0)
    return {400, why, "invalid_request_error", "context_length_exceeded", "", 0};
  if (why.rfind("overloaded", 0) == 0 || why.rfind("cache full", 0) == 0)
    return {429, why, "rate_limit_error", "overloaded", "", retry_after_s};
  if (why.rfind("the server is draining", 0) == 0)
    return {503, why, "server_error", "draining", "", retry_after_s};
  if (why.find("out of range") != std::string::npos || why.rfind("prompt is empty", 0) == 0 ||
      why.find("must be") != std::string::npos)
    return {400, why, "invalid_request_error", "invalid_value", "", 0};
  return {500, why, "server_error", "internal_error", "", 0};
}

// ---- metrics kept by the front end (the engine's counters come from its actors)
struct http_metrics {
  counter_family requests;                                  // endpoint, code
  histogram ttft{exponential_buckets(0.005, 2, 14)};        // 5 ms .. 41 s
  histogram per_token{exponential_buckets(0.0005, 2, 16)};  // 0.5 ms .. 16 s
  histogram duration{exponential_buckets(0.01, 2, 14)};     // 10 ms .. 82 s
  std::atomic<int64_t> disconnects{0};
};

}  // namespace

struct http_server::impl {
  http_options o;
  httplib::Server svr;
  std::thread listener;
  uint16_t port = 0;
  std::atomic<engine*> e{nullptr};
  std::atomic<bool> stopping{false};
  std::atomic<int> in_flight{0};
  chat_template_choice chat;  // written before `e` is published
  std::vector<int32_t> chat_end_ids;
  std::string model_id = "hybridserve";
  int64_t created = 0;
  http_metrics metrics;
  std::mutex stop_mutex;
  bool stopped = false;

  void stop_now();
};

namespace {

using impl_t = http_server::impl;

// ---- request parsing
struct gen_params {
  bool chat = false;
  generation_request req;
  bool stream = false, include_usage = false;
  std::vector<std::string> stop;
};

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

std::optional<api_error> parse_common(const impl_t& s, const json& b, gen_params& p) {
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
  (void)s;
  return std::nullopt;
}

// max_tokens after the prompt is known: the context must hold prompt + completion.
std::optional<api_error> parse_max_tokens(const impl_t& s, const model& m, const json& b,
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
  if (auto e = get_int(b, key, 0, s.o.max_tokens_limit, n, given)) return e;
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
        int(std::max<int64_t>(0, std::min<int64_t>(s.o.max_tokens_default, ctx - n_prompt)));
  }
  return std::nullopt;
}

std::optional<api_error> parse_completion(const impl_t& s, const model& m, const json& b,
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

std::optional<api_error> parse_chat(const impl_t& s, const model& m, const json& b, gen_params& p) {
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

// ---- one generation in flight: a scoped actor, decoded text, stop strings
struct run_state {
  impl_t* s;
  engine* e;
  caf::scoped_actor self;
  gen_params p;
  std::string endpoint;
  int64_t rid = -1;
  std::string id;
  int64_t created = 0;
  std::unique_ptr<stream_decoder> dec;
  std::string text;
  std::size_t sent = 0, hold = 0;
  std::vector<int32_t> ids;
  bool stopped = false, cancel_sent = false, finished = false, head_sent = false;
  finished_event fin;
  clock_type::time_point t0 = clock_type::now(), last_token, last_write = clock_type::now();

  run_state(impl_t* srv, engine* eng) : s(srv), e(eng), self(*eng->internals().sys) {
    s->in_flight.fetch_add(1);
  }
  ~run_state() { s->in_flight.fetch_sub(1); }

  void cancel() {
    if (cancel_sent || rid < 0 || finished) return;
    cancel_sent = true;
    self->send(e->internals().intake, cancel_atom::value, rid);
  }

  void on_token(const token_event& ev) {
    const auto now = clock_type::now();
    if (!ids.empty())
      s->metrics.per_token.observe(std::chrono::duration<double>(now - last_token).count());
    last_token = now;
    if (stopped) return;
    ids.push_back(ev.token);
    const std::size_t before = text.size();
    text += dec->push(ev.token);
    std::size_t cut = std::string::npos;
    for (const auto& st : p.stop) {
      const std::size_t from = before >= st.size() ? before - st.size() + 1 : 0;
      const auto at = text.find(st, from);
      if (at != std::string::npos) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
      text.resize(cut);
      stopped = true;
      cancel();
    }
  }

  void on_finished(const finished_event& f) {
    finished = true;
    fin = f;
    if (f.result.reason != finish_reason::error) {
      if (!stopped) text += dec->finish();
      if (!ids.empty()) s->metrics.ttft.observe(f.timings.ttft_ms / 1000.0);
      s->metrics.duration.observe(seconds_since(t0));
    }
  }

  /// Waits up to `ms` for one message from intake; true when one came.
  bool pump(int ms) {
    if (s->stopping.load()) cancel();
    bool got = false;
    self->receive([&](token_atom, const token_event& ev) { on_token(ev), got = true; },
                  [&](finished_atom, const finished_event& f) { on_finished(f), got = true; },
                  caf::after(std::chrono::milliseconds(std::max(ms, 1))) >> [] {});
    return got;
  }

  /// Text that is safe to send: stop strings that may still complete are held back, and so are
  /// the bytes of an incomplete UTF-8 character.
  std::string take_text() {
    std::size_t limit = text.size();
    if (!finished && !stopped) {
      limit = text.size() > hold ? text.size() - hold : 0;
      while (limit > sent && limit < text.size() && (uint8_t(text[limit]) & 0xC0) == 0x80) --limit;
    }
    if (limit <= sent) return {};
    std::string out = text.substr(sent, limit - sent);
    sent = limit;
    return out;
  }

  std::string reason() const {
    if (stopped) return "stop";
    switch (fin.result.reason) {
      case finish_reason::stop:
        return "stop";
      case finish_reason::length:
        return "length";
      case finish_reason::cancelled:
        return "cancelled";
      case finish_reason::error:
        return "error";
    }
    return "stop";
  }

  json usage() const {
    const int64_t c = int64_t(ids.size());
    return {{"prompt_tokens", fin.prompt_tokens},
            {"completion_tokens", c},
            {"total_tokens", fin.prompt_tokens + c}};
  }

  json envelope(bool chunk) const {
    return {{"id", id},
            {"object",
             p.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
            {"created", created},
            {"model", s->model_id},
            {"system_fingerprint", "hybridserve"}};
  }

  json final_body() const {
    json j = envelope(false);
    if (p.chat)
      j["choices"] = json::array({{{"index", 0},
                                   {"message", {{"role", "assistant"}, {"content", text}}},
                                   {"logprobs", nullptr},
                                   {"finish_reason", reason()}}});
    else
      j["choices"] = json::array(
          {{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", reason()}}});
    j["usage"] = usage();
    return j;
  }

  json chunk(const std::string& piece, const json& finish, bool role = false) const {
    json j = envelope(true);
    json c = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}};
    if (p.chat) {
      json delta = json::object();
      if (role) delta["role"] = "assistant";
      if (role || !piece.empty()) delta["content"] = piece;
      c["delta"] = delta;
    } else {
      c["text"] = piece;
    }
    j["choices"] = json::array({c});
    if (p.include_usage) j["usage"] = nullptr;
    return j;
  }
};

std::string sse(const json& j) {
  return "data: " + dump(j) + "\n\n";
}

// ---- handlers
bool authorized(const impl_t& s, const httplib::Request& req) {
  if (s.o.api_key.empty()) return true;
  const std::string h = req.get_header_value("Authorization");
  const std::string want = "Bearer " + s.o.api_key;
  if (h.size() != want.size()) return false;
  unsigned char diff = 0;  // constant time in the key's length
  for (std::size_t i = 0; i < h.size(); ++i) diff |= uint8_t(h[i] ^ want[i]);
  return diff == 0;
}

std::optional<api_error> unavailable(const impl_t& s) {
  if (s.stopping.load())
    return api_error{
        503, "the server is shutting down", "server_error", "shutting_down", "", s.o.retry_after_s};
  if (!s.e.load())
    return api_error{
        503, "the model is still loading", "server_error", "loading", "", s.o.retry_after_s};
  return std::nullopt;
}

void handle_generate(impl_t& s, const httplib::Request& req, httplib::Response& res, bool chat) {
  if (auto u = unavailable(s)) return send_error(res, *u);
  if (!authorized(s, req))
    return send_error(res, {401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'",
                            "invalid_request_error", "invalid_api_key", "", 0});
  const json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded())
    return send_error(res, {400, "the request body is not valid JSON", "invalid_request_error",
                            "invalid_json", "", 0});
  if (!body.is_object())
    return send_error(res, {400, "the request body must be a JSON object", "invalid_request_error",
                            "invalid_json", "", 0});
  engine* e = s.e.load();
  const model& m = e->get_model();
  gen_params p;
  if (auto err = parse_common(s, body, p)) return send_error(res, *err);
  if (auto err = chat ? parse_chat(s, m, body, p) : parse_completion(s, m, body, p))
    return send_error(res, *err);
  if (const auto why = p.req.check(m); !why.empty())
    return send_error(res, engine_error(why, s.o.retry_after_s));

  auto r = std::make_shared<run_state>(&s, e);
  r->p = std::move(p);
  r->dec = std::make_unique<stream_decoder>(m.tok);
  for (const auto& st : r->p.stop) r->hold = std::max(r->hold, st.size() - 1);
  r->created = int64_t(std::time(nullptr));
  std::optional<api_error> failed;
  r->self->request(e->internals().intake, caf::infinite, submit_atom::value, r->p.req)
      .receive([&](int64_t id) { r->rid = id; },
               [&](caf::error& err) {
                 failed = api_error{500,
                                    "request intake failed: " + e->internals().sys->render(err),
                                    "server_error",
                                    "internal_error",
                                    "",
                                    0};
               });
  if (failed) return send_error(res, *failed);
  r->id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(s.created) + "-" +
          std::to_string(r->rid);
  // Errors found at submission or admission arrive at once: wait for the first event a moment
  // so that they get their HTTP status before a 200 is committed.
  const auto wait_until = clock_type::now() + std::chrono::milliseconds(s.o.heartbeat_ms);
  while (!r->finished && r->ids.empty() && clock_type::now() < wait_until)
    r->pump(
        int(std::chrono::duration_cast<std::chrono::milliseconds>(wait_until - clock_type::now())
                .count()));
  if (r->finished && r->fin.result.reason == finish_reason::error)
    return send_error(res, engine_error(r->fin.result.error, s.o.retry_after_s));
  if (!r->p.stream && r->finished) {
    res.set_content(dump(r->final_body()), "application/json");
    return;
  }
  auto releaser = [r](bool ok) {
    if (!r->finished) {  // the client went away (or the server stops): free the cache now
      r->cancel();
      r->s->metrics.disconnects.fetch_add(1);
    }
  };
  const int hb = std::max(10, s.o.heartbeat_ms);
  if (!r->p.stream) {
    // Wait in a content provider: JSON may start with whitespace, and writing a space now and
    // then is how a vanished client is noticed. "; charset" keeps httplib from compressing
    // (which would buffer the spaces).
    res.set_chunked_content_provider(
        "application/json; charset=utf-8",
        [r, hb](std::size_t, httplib::DataSink& sink) -> bool {
          if (!r->finished) r->pump(hb);
          if (r->finished) {
            std::string out;
            if (r->fin.result.reason == finish_reason::error)
              out = dump(error_json(engine_error(r->fin.result.error, 0)));
            else
              out = dump(r->final_body());
            if (!sink.write(out.data(), out.size())) return false;
            sink.done();
            return true;
          }
          if (seconds_since(r->last_write) * 1000 >= hb) {
            r->last_write = clock_type::now();
            if (!sink.write(" ", 1)) return false;
          }
          return true;
        },
        releaser);
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [r, hb](std::size_t, httplib::DataSink& sink) -> bool {
        std::string out;
        if (!r->head_sent) {
          r->head_sent = true;
          if (r->p.chat) out += sse(r->chunk("", nullptr, true));
        }
        if (!r->finished && out.empty()) r->pump(hb);
        if (const auto piece = r->take_text(); !piece.empty()) out += sse(r->chunk(piece, nullptr));
        if (r->finished) {
          if (r->fin.result.reason == finish_reason::error) {
            out += sse(error_json(engine_error(r->fin.result.error, 0)));
          } else {
            json last = r->chunk("", r->reason());
            if (!r->p.include_usage) last["usage"] = r->usage();  // every response has usage
            out += sse(last);
            if (r->p.include_usage) {
              json u = r->envelope(true);
              u["choices"] = json::array();
              u["usage"] = r->usage();
              out += sse(u);
            }
          }
          out += "data: [DONE]\n\n";
        } else if (out.empty() && seconds_since(r->last_write) * 1000 >= hb) {
          out = ": keep-alive\n\n";
        }
        if (!out.empty()) {
          r->last_write = clock_type::now();
          if (!sink.write(out.data(), out.size())) return false;
        }
        if (r->finished) sink.done();
        return true;
      },
      releaser);
}

void handle_models(impl_t& s, const httplib::Request& req, httplib::Response& res) {
  if (auto u = unavailable(s)) return send_error(res, *u);
  if (!authorized(s, req))
    return send_error(res, {401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'",
                            "invalid_request_error", "invalid_api_key", "", 0});
  const auto& c = s.e.load()->get_model().config;
  const json entry = {{"id", s.model_id},
                      {"object", "model"},
                      {"created", s.created},
                      {"owned_by", "hybridserve"},
                      {"max_model_len", c.max_pos}};
  if (req.matches.size() > 1) {
    if (req.matches[1] != s.model_id)
      return send_error(res, {404, "The model '" + std::string(req.matches[1]) + "' does not exist",
                              "invalid_request_error", "model_not_found", "model", 0});
    return res.set_content(dump(entry), "application/json");
  }
  res.set_content(dump(json{{"object", "list"}, {"data", json::array({entry})}}),
                  "application/json");
}

intake_stats query_stats(engine& e, bool& ok) {
  caf::scoped_actor self{*e.internals().sys};
  intake_stats st;
  ok = false;
  self->request(e.internals().intake, std::chrono::seconds(5), stats_atom::value)
      .receive([&](const intake_stats& x) { st = x, ok = true; }, [&](caf::error&) {});
  return st;
}

void handle_health(impl_t& s, httplib::Response& res) {
  engine* e = s.e.load();
  std::string status = "ok";
  if (s.stopping.load())
    status = "stopping";
  else if (!e)
    status = "loading";
  else {
    bool ok = false;
    const auto st = query_stats(*e, ok);
    if (!ok)
      status = "unresponsive";
    else if (st.draining)
      status = "draining";
  }
  res.status = status == "ok" ? 200 : 503;
  json j = {{"status", status}};
  if (status == "ok") j["model"] = s.model_id;
  if (res.status == 503) res.set_header("Retry-After", std::to_string(s.o.retry_after_s));
  res.set_content(dump(j), "application/json");
}

void handle_metrics(impl_t& s, httplib::Response& res) {
  prometheus_writer w;
  engine* e = s.stopping.load() ? nullptr : s.e.load();
  w.gauge("hybridserve_ready", "1 when the model is loaded and requests are served", e ? 1 : 0);
  if (e) {
    const auto rep = e->report();
    const auto& in = rep.intake;
    const auto& c = rep.cache;
    w.gauge("hybridserve_requests_running", "Requests admitted and generating", double(in.running));
    w.gauge("hybridserve_requests_queued", "Requests waiting for admission", double(in.queued));
    w.counter("hybridserve_requests_finished_total", "Requests ended (any reason)",
              double(in.finished));
    w.gauge("hybridserve_draining", "1 while the server accepts no new requests",
            in.draining ? 1 : 0);
    w.counter("hybridserve_prompt_tokens_total", "Prompt tokens submitted",
              double(in.prompt_tokens));
    w.counter("hybridserve_generation_tokens_total", "Tokens generated",
              double(in.generated_tokens));
    w.counter("hybridserve_steps_total", "Passes (batched steps) run", double(in.steps));
    w.gauge("hybridserve_generation_tokens_per_second",
            "Generated tokens per busy second, since start", in.tokens_per_s);
    w.gauge("hybridserve_step_duration_seconds",
            "Duration of the last pass: as the plan predicted it and as measured",
            in.predicted_step_s, {{"source", "predicted"}});
    w.gauge("hybridserve_step_duration_seconds", "", in.last_step_s, {{"source", "measured"}});
    w.counter("hybridserve_host_to_device_bytes_total",
              "Host-tier cache bytes streamed to the device", double(in.h2d_cache_bytes));
    w.counter("hybridserve_device_to_host_bytes_total",
              "New cache rows written from the device to the host tier", double(in.d2h_bytes));
    const char* forms[2] = {"kv", "act"};
    const char* tiers[2] = {"device", "host"};
    for (int f = 0; f < 2; ++f)
      for (int t = 0; t < 2; ++t) {
        const metric_labels l = {{"tier", tiers[t]}, {"form", forms[f]}};
        w.gauge("hybridserve_cache_blocks", "Cache blocks in use, by tier and form",
                double(c.usage.blocks[f][t]), l);
        w.gauge("hybridserve_cache_bytes", "Cache bytes in use, by tier and form",
                double(c.usage.bytes[f][t]), l);
        w.gauge("hybridserve_cache_tokens", "Cached tokens, by tier and form",
                double(c.usage.tokens[f][t]), l);
      }
    w.gauge("hybridserve_cache_sequences", "Sequences holding cache blocks", double(c.sequences));
    w.gauge("hybridserve_kv_ratio",
            "Share of cached tokens kept as K/V (the rest as activation checkpoints)", c.kv_ratio);
    w.gauge("hybridserve_kv_ratio_automatic", "1 when the cost model chooses the ratio",
            c.auto_ratio ? 1 : 0);
    w.gauge("hybridserve_device_memory_used_bytes",
            "Device memory in use (weights, cache, buffers)", double(c.device_used));
    w.gauge("hybridserve_device_memory_peak_bytes", "Most device memory ever in use",
            double(c.device_peak));
    w.gauge("hybridserve_device_memory_budget_bytes", "Device memory budget",
            double(c.device_budget));
    w.gauge("hybridserve_device_cache_cap_bytes", "Device bytes the plan allows the cache",
            double(c.device_cap));
    w.gauge("hybridserve_host_memory_used_bytes", "Host memory used by the cache's host tier",
            double(c.usage.bytes[0][1] + c.usage.bytes[1][1]));
    w.gauge("hybridserve_host_memory_budget_bytes",
            "Host memory budget of the cache (0: unlimited)", double(c.host_budget));
    w.gauge("hybridserve_resident_layers", "Layers whose weights stay on the device",
            double(rep.weights.resident_layers));
  }
  for (const auto& [labels, v] : s.metrics.requests.values())
    w.counter("hybridserve_http_requests_total", "HTTP requests by endpoint and status code", v,
              labels);
  w.counter("hybridserve_http_client_disconnects_total",
            "HTTP requests cancelled because the client went away",
            double(s.metrics.disconnects.load()));
  w.histogram("hybridserve_time_to_first_token_seconds",
              "From submission to the first generated token (HTTP requests)",
              s.metrics.ttft.snap());
  w.histogram("hybridserve_time_per_output_token_seconds",
              "Time between consecutive generated tokens (HTTP requests)",
              s.metrics.per_token.snap());
  w.histogram("hybridserve_request_duration_seconds",
              "From arrival to the last token (HTTP requests)", s.metrics.duration.snap());
  res.set_content(w.text(), "text/plain; version=0.0.4; charset=utf-8");
}

std::string endpoint_label(const std::string& path) {
  for (const char* p :
       {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"})
    if (path == p) return p;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::mutex g_registry_mutex;
std::map<engine*, std::unique_ptr<http_server>> g_registry;

}  // namespace

void http_server::impl::stop_now() {
  std::lock_guard<std::mutex> lk(stop_mutex);
  if (stopped) return;
  stopped = true;
  stopping = true;
  // Requests in flight see `stopping`, cancel themselves and end within a heartbeat.
  const auto deadline = clock_type::now() + std::chrono::seconds(10);
  while (in_flight.load() > 0 && clock_type::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  svr.stop();
  if (listener.joinable()) listener.join();
}

http_server::http_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

http_server::~http_server() {
  stop();
}

void http_server::stop() {
  impl_->stop_now();
}

uint16_t http_server::port() const {
  return impl_->port;
}

result<std::unique_ptr<http_server>> http_server::start(const http_options& o) {
  using R = result<std::unique_ptr<http_server>>;
  auto p = std::make_unique<impl>();
  p->o = o;
  p->created = int64_t(std::time(nullptr));
  impl* s = p.get();
  auto& svr = p->svr;
  const int threads = std::max(2, o.threads);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(std::size_t(threads)); };
  svr.set_payload_max_length(o.max_body_bytes);
  svr.set_keep_alive_timeout(2);
  svr.set_keep_alive_max_count(1000);
  svr.set_read_timeout(30);
  svr.set_write_timeout(30);
  svr.Post("/v1/completions", [s](const httplib::Request& q, httplib::Response& r) {
    handle_generate(*s, q, r, false);
  });
  svr.Post("/v1/chat/completions", [s](const httplib::Request& q, httplib::Response& r) {
    handle_generate(*s, q, r, true);
  });
  svr.Get("/v1/models",
          [s](const httplib::Request& q, httplib::Response& r) { handle_models(*s, q, r); });
  svr.Get("/v1/models/(.+)",
          [s](const httplib::Request& q, httplib::Response& r) { handle_models(*s, q, r); });
  svr.Get("/health", [s](const httplib::Request&, httplib::Response& r) { handle_health(*s, r); });
  svr.Get("/metrics",
          [s](const httplib::Request&, httplib::Response& r) { handle_metrics(*s, r); });
  svr.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& q, httplib::Response& r) {
        if (!r.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        api_error e{r.status, "", "invalid_request_error", "", "", 0};
        if (r.status == 404) {
          e.message = "Unknown request URL: " + q.method + " " + q.path;
          e.code = "unknown_url";
        } else if (r.status == 413) {
          e.message = "the request body is too large";
          e.code = "payload_too_large";
        } else {
          e.message = "HTTP status " + std::to_string(r.status) + " for " + q.method + " " + q.path;
          e.code = "http_error";
          if (r.status >= 500) e.type = "server_error";
        }
        send_error(r, e);
        return httplib::Server::HandlerResponse::Handled;
      }));
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& r, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& ex) {
          what = ex.what();
        } catch (...) {
        }
        send_error(r, {500, "internal error: " + what, "server_error", "internal_error", "", 0});
      });
  svr.set_logger([s](const httplib::Request& q, const httplib::Response& r) {
    s->metrics.requests.add(
        {{"endpoint", endpoint_label(q.path)}, {"code", std::to_string(r.status)}});
  });
  int port = -1;
  errno = 0;
  if (o.port == 0)
    port = svr.bind_to_any_port(o.listen);
  else if (svr.bind_to_port(o.listen, o.port))
    port = o.port;
  if (port <= 0)
    return R::failure("cannot listen on " + o.listen + ":" + std::to_string(o.port) +
                      (errno ? std::string(": ") + std::strerror(errno) : std::string()));
  p->port = uint16_t(port);
  p->listener = std::thread([s] { s->svr.listen_after_bind(); });
  return std::unique_ptr<http_server>(new http_server(std::move(p)));
}

std::string http_server::attach(engine& e) {
  auto& s = *impl_;
  const model& m = e.get_model();
  if (!m.config.name.empty()) s.model_id = m.config.name;
  chat_special sp;
  if (m.config.bos_id >= 0) sp.bos = m.tok->token_bytes(m.config.bos_id);
  if (!m.config.eos_ids.empty()) sp.eos = m.tok->token_bytes(m.config.eos_ids[0]);
  std::string tc;
  if (!m.source.empty() && m.source.rfind("synthetic:", 0) != 0)
    tc = read_file(m.source + "/tokenizer_config.json");
  s.chat = choose_chat_template(tc, s.o.chat_template, sp);
  s.chat_end_ids.clear();
  for (const auto& t : chat_end_tokens(s.chat.family))
    if (const int32_t id = m.tok->token_to_id(t); id >= 0) s.chat_end_ids.push_back(id);
  s.e.store(&e);
  return s.chat.how;
}

result<uint16_t> start_http_frontend(engine& e, const http_options& o) {
  auto srv = http_server::start(o);
  if (!srv) return result<uint16_t>::failure(srv.error());
  (*srv)->attach(e);
  const uint16_t port = (*srv)->port();
  std::unique_ptr<http_server> old;
  {
    std::lock_guard<std::mutex> lk(g_registry_mutex);
    old = std::move(g_registry[&e]);
    g_registry[&e] = std::move(*srv);
  }
  if (old) old->stop();
  return port;
}

void stop_http_frontend(engine& e) {
  std::unique_ptr<http_server> srv;
  {
    std::lock_guard<std::mutex> lk(g_registry_mutex);
    auto it = g_registry.find(&e);
    if (it == g_registry.end()) return;
    srv = std::move(it->second);
    g_registry.erase(it);
  }
  srv->stop();
}

}  // namespace hs
