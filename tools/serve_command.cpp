// `hybridserve serve`: the engine behind the TCP message protocol, the HTTP API and the admin,
// configured by TOML (config/default.toml documents every key). SIGINT/SIGTERM or the console's
// `shutdown`: stop accepting, end running requests with a final message, exit 0.
#include <cblas.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "commands.hpp"
#include "hybridserve/frontends.hpp"
#include "hybridserve/http_frontend.hpp"
#include "hybridserve/server_config.hpp"
#include "hybridserve/units.hpp"

namespace hs::cli {
namespace {

// Signals may land on any thread (OpenBLAS starts its own before main), so the handler only
// writes the signal number to a pipe; a plain thread reads it and starts the shutdown.
int g_signal_pipe[2] = {-1, -1};
extern "C" void on_signal(int sig) {
  const char c = char(sig);
  [[maybe_unused]] const auto n = write(g_signal_pipe[1], &c, 1);
}

struct serve_options {
  std::string config;
  std::vector<std::string> sets;
  bool print_config = false;
};

// Wakes the main thread on a signal or on the console's shutdown.
struct shutdown_latch {
  std::mutex m;
  std::condition_variable cv;
  bool fired = false;
  std::string why;
  void fire(const std::string& reason) {
    {
      std::lock_guard<std::mutex> lk(m);
      if (fired) return;
      fired = true;
      why = reason;
    }
    cv.notify_all();
  }
};

// The serve command's log: level and destination from [logging] (library code never prints).
struct serve_log {
  FILE* out = stderr;
  int level = 2;  // error 0, warn 1, info 2, debug 3
  void operator()(int lvl, const std::string& msg) const {
    if (lvl > level) return;
    static const char* names[] = {"error", "warn", "info", "debug"};
    std::fprintf(out, "[%s] %s\n", names[lvl], msg.c_str());
    std::fflush(out);
  }
};

int run_serve(const serve_options& o) {
  auto cfg = load_server_config(o.config, o.sets);
  if (!cfg) {
    std::fprintf(stderr, "error: %s\n", cfg.error().c_str());
    return 2;
  }
  const auto& c = *cfg;
  if (o.print_config) {
    std::printf("%s", describe(c).c_str());
    return 0;
  }
  serve_log log;
  log.level = c.logging.level == "error"   ? 0
              : c.logging.level == "warn"  ? 1
              : c.logging.level == "debug" ? 3
                                           : 2;
  if (!c.logging.file.empty()) {
    log.out = std::fopen(c.logging.file.c_str(), "a");
    if (!log.out) {
      std::fprintf(stderr, "error: logging.file: cannot open %s\n", c.logging.file.c_str());
      return 2;
    }
  }
  log(3, "effective configuration:\n" + describe(c));
  if (pipe(g_signal_pipe) != 0) {
    std::fprintf(stderr, "error: cannot create the signal pipe\n");
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a vanished client is an error on its socket, not our death

  if (c.threads.blas > 0) openblas_set_num_threads(c.threads.blas);
  // HTTP listens while the model loads: /health answers 503 until the engine is attached.
  std::unique_ptr<http_server> http;
  if (c.http.port != 0) {
    http_options ho;
    ho.listen = c.http.listen;
    ho.port = uint16_t(c.http.port);
    ho.api_key = c.http.api_key;
    ho.chat_template = c.http.chat_template;
    ho.max_tokens_default = c.server.max_tokens_default;
    ho.max_tokens_limit = c.server.max_tokens_limit;
    ho.max_body_bytes = std::size_t(c.server.max_line_bytes);
    auto h = http_server::start(ho);
    if (!h) {
      std::fprintf(stderr, "error: %s\n", h.error().c_str());
      return 1;
    }
    http = std::move(*h);
    log(2, "http listening on " + c.http.listen + ":" + std::to_string(http->port()));
  }
  model_source src;
  src.dir = c.model.path;
  src.shape = c.model.shape;
  src.seed = c.model.weight_seed;
  src.dtype = c.model.dtype;
  const auto t0 = std::chrono::steady_clock::now();
  auto m = open_model(src);
  if (!m) {
    std::fprintf(stderr, "error: %s\n", m.error().c_str());
    return 1;
  }
  engine_options eo;
  eo.backend = c.backend.kind;
  eo.device_budget = c.backend.device_budget;
  eo.host_budget = c.backend.host_budget;
  eo.auto_ratio = c.cache.auto_ratio;
  eo.kv_ratio = c.cache.kv_ratio;
  eo.block_size = c.cache.block_size;
  eo.max_batch = c.batching.max_batch;
  eo.max_step_tokens = c.batching.max_step_tokens;
  eo.prefill_first = c.batching.prefill_first;
  eo.max_queue = std::min(c.batching.max_queue, c.server.max_requests_total);
  eo.scheduler_threads = c.threads.scheduler;
  eo.network = true;
  auto e = engine::start(*m, eo);
  if (!e) {
    std::fprintf(stderr, "error: %s\n", e.error().c_str());
    return 1;
  }
  auto& eng = **e;
  // However this function returns, HTTP stops (and joins its threads) before the engine goes.
  struct http_stopper {
    std::unique_ptr<http_server>& h;
    ~http_stopper() {
      if (h) h->stop();
    }
  } http_guard{http};
  shutdown_latch latch;
  auto admin = spawn_admin(eng, [&latch] { latch.fire("shutdown from the admin console"); });

  frontend_options fo;
  fo.limits.max_line_bytes = std::size_t(c.server.max_line_bytes);
  fo.limits.max_tokens_default = c.server.max_tokens_default;
  fo.limits.max_tokens_limit = c.server.max_tokens_limit;
  fo.max_requests_per_connection = c.server.max_requests_per_connection;
  fo.max_connections = c.server.max_connections;
  fo.auth_tokens = c.server.auth_tokens;
  const auto rep = eng.report();
  {
    char buf[256];
    std::snprintf(buf, sizeof buf, "model %s (%s, %.1fM parameters) on %s, ready in %.2f s",
                  (*m)->config.name.c_str(), arch_name((*m)->config.architecture),
                  double((*m)->config.parameter_count()) / 1e6, rep.backend.c_str(),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    // Which folder a configuration naming no model resolved to (the built-in model).
    log(2, std::string(buf) + (src.dir.empty() && src.shape.empty()
                                   ? "; built-in model from " + (*m)->source
                                   : std::string()));
  }
  if (c.server.port != 0) {
    fo.listen = c.server.listen;
    fo.port = uint16_t(c.server.port);
    auto p = start_tcp_frontend(eng, fo, admin);
    if (!p) {
      std::fprintf(stderr, "error: %s\n", p.error().c_str());
      return 1;
    }
    log(2, "protocol listening on " + c.server.listen + ":" + std::to_string(*p));
  }
  if (http) log(2, "http: " + http->attach(eng) + "; ready");
  if (c.admin.port != 0) {
    frontend_options ao = fo;
    ao.listen = c.admin.listen;
    ao.port = uint16_t(c.admin.port);
    ao.admin = true;
    ao.admin_token = c.admin.token;
    ao.auth_tokens.clear();
    auto p = start_tcp_frontend(eng, ao, admin);
    if (!p) {
      std::fprintf(stderr, "error: %s\n", p.error().c_str());
      return 1;
    }
    log(2, "admin listening on " + c.admin.listen + ":" + std::to_string(*p));
  }
  std::fflush(stderr);
  std::thread signal_waiter([&latch] {
    char sig = 0;
    while (read(g_signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    latch.fire(sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "signal");
  });
  signal_waiter.detach();  // blocked in read until a signal or the process ends
  {
    std::unique_lock<std::mutex> lk(latch.m);
    latch.cv.wait(lk, [&] { return latch.fired; });
  }
  log(2, latch.why + ": stopping; running requests end with a final message");
  if (http) http->stop();  // cancels its requests in flight, joins its threads
  stop_frontends(eng);
  {
    caf::scoped_actor self{*eng.internals().sys};
    self->send(eng.internals().intake, cancel_all_atom::value);
  }
  // Running requests end with a final `done` (cancelled); give them a moment to be written.
  for (int i = 0; i < 100; ++i) {
    const auto s = eng.report().intake;
    if (s.running == 0 && s.queued == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  e->reset();
  log(2, "stopped");
  if (log.out != stderr) std::fclose(log.out);
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<serve_options>();
  auto* s = app.add_subcommand(
      "serve",
      "serve the TCP message protocol, the OpenAI-compatible HTTP API and the admin console");
  s->add_option("--config", o->config, "TOML file (keys and defaults: config/default.toml)");
  s->add_option("--set", o->sets, "override a key: --set server.port=7000 (repeatable)");
  s->add_flag("--print-config", o->print_config, "print the effective configuration and exit");
  s->callback([o, &run] { run = [o] { return run_serve(*o); }; });
}

}  // namespace hs::cli
