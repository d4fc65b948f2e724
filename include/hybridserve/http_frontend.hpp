// The OpenAI-compatible HTTP front end (docs/HTTP.md): /v1/completions, /v1/chat/completions
// (JSON or server-sent events), /v1/models, /health and /metrics (Prometheus), on cpp-httplib.
// Each HTTP request runs on one of httplib's threads, which talks to request intake through a
// caf::scoped_actor of the engine's actor system (blocking there is fine: it is not a CAF thread).
// No CAF types here.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "hybridserve/engine.hpp"
#include "hybridserve/error.hpp"

namespace hs {

struct http_options {
  std::string listen = "127.0.0.1";
  uint16_t port = 0;             // 0 = any free port (tests); the bound port is returned
  std::string api_key;           // non-empty: /v1/* need "Authorization: Bearer KEY"
  std::string chat_template;     // chatml | llama2 | llama3 | zephyr; used when the model has none
  int max_tokens_default = 128;  // a request without max_tokens gets min(this, context left)
  int max_tokens_limit = 4096;
  std::size_t max_body_bytes = std::size_t(1) << 20;
  int threads = 32;         // httplib workers = HTTP requests served at once
  int retry_after_s = 1;    // Retry-After of a 429 (overloaded)
  int heartbeat_ms = 1000;  // idle streams write an SSE comment this often (finds gone clients)
};

/// One HTTP listener. start() binds and serves at once: until attach() gives it an engine,
/// /health answers 503 "loading" and the API 503 too. stop() (also the destructor) cancels the
/// requests in flight, stops accepting and joins every thread; it must run before the engine
/// is destroyed. A process serving HTTP must ignore SIGPIPE (a vanished client).
class http_server {
 public:
  static result<std::unique_ptr<http_server>> start(const http_options& o);
  ~http_server();
  /// The engine is ready. Returns one line for the log: the chat template used and why.
  std::string attach(engine& e);
  void stop();
  uint16_t port() const;

  struct impl;

 private:
  explicit http_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// start() + attach() in one, the server kept with the engine: for tests and embedding.
/// Returns the bound port or an error naming address and port.
result<uint16_t> start_http_frontend(engine& e, const http_options& o);
/// Stops and joins the server started for `e` (no-op when none).
void stop_http_frontend(engine& e);

}  // namespace hs
