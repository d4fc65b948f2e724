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
#include "hybridserve/openai_request.hpp"

namespace hs {

using json = nlohmann::json;
using namespace openai;
using clock_type = std::chrono::steady_clock;

namespace {

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

void send_error(httplib::Response& res, const api_error& e) {
  res.status = e.status;
  if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(e.retry_after_s));
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(dump(error_json(e)), "application/json");
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

  std::string reason() const { return stopped ? "stop" : finish_reason_name(fin.result.reason); }

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
  const openai_context ctx{s.o.max_tokens_default, s.o.max_tokens_limit, s.chat, s.chat_end_ids};
  if (auto err = parse_common(ctx, body, p)) return send_error(res, *err);
  if (auto err = chat ? parse_chat(ctx, m, body, p) : parse_completion(ctx, m, body, p))
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
