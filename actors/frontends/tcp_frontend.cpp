// The TCP message protocol (docs/PROTOCOL.md) on CAF brokers: an acceptor per listener and one
// broker per connection. A connection multiplexes requests by client id; tokens are decoded to
// whole UTF-8 characters, stop strings are matched here, and a client that disconnects or
// stops reading has its requests cancelled so the engine never waits on it.
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "hybridserve/frontends.hpp"
#include "hybridserve/refusal.hpp"

namespace hs {
namespace {

using caf::io::broker;
using caf::io::connection_handle;

struct frontend_ctx {
  engine* e = nullptr;
  frontend_options o;
  admin_actor admin;
  std::shared_ptr<std::atomic<int>> connections = std::make_shared<std::atomic<int>>(0);
};

struct client_request {
  std::string cid;
  int64_t rid = -1;  // engine id once intake answered
  bool stream = true;
  std::unique_ptr<stream_decoder> dec;
  std::string text;      // decoded so far (stop strings are searched here)
  std::size_t sent = 0;  // bytes of `text` already sent as token text
  std::vector<int32_t> ids;
  std::vector<std::string> stop;
  bool stopped = false;  // a stop string matched: the rest is cancelled
  bool cancel_pending = false;
};

struct conn_state {
  std::unique_ptr<proto::line_splitter> splitter;
  bool authorized = false;
  bool closing = false;
  std::map<std::string, client_request> by_cid;
  std::map<int64_t, std::string> cid_by_rid;
  static inline const char* name = "tcp_connection";
};
using conn_ptr = caf::io::stateful_broker<conn_state>*;

void write_line(conn_ptr self, connection_handle hdl, const std::string& line,
                const frontend_ctx& ctx);

void close_connection(conn_ptr self, connection_handle hdl, const frontend_ctx& ctx) {
  auto& st = self->state;
  if (st.closing) return;
  st.closing = true;
  // Requests of a vanished client end now: their cache is freed at once.
  auto& in = ctx.e->internals();
  for (auto& [cid, r] : st.by_cid)
    if (r.rid >= 0) self->send(in.intake, cancel_atom::value, r.rid);
  self->flush(hdl);
  self->close(hdl);
  ctx.connections->fetch_sub(1);
  self->quit();
}

void write_line(conn_ptr self, connection_handle hdl, const std::string& line,
                const frontend_ctx& ctx) {
  if (self->state.closing) return;
  auto& buf = self->wr_buf(hdl);
  buf.insert(buf.end(), line.begin(), line.end());
  buf.push_back('\n');
  self->flush(hdl);
  if (self->wr_buf(hdl).size() > ctx.o.max_write_buffer) close_connection(self, hdl, ctx);
}

void send_error(conn_ptr self, connection_handle hdl, const frontend_ctx& ctx,
                proto::error_code code, const std::string& msg, std::optional<std::string> id) {
  write_line(self, hdl, proto::error_msg({code, msg, std::move(id)}), ctx);
}

// Engine messages for a finished request name problems in words; map them to wire codes.
proto::error_code code_of(const std::string& why) {
  switch (classify_refusal(why)) {
    case refusal::context_overflow:
      return proto::error_code::context_overflow;
    case refusal::overloaded:
    case refusal::draining:
      return proto::error_code::overloaded;
    case refusal::bad_request:
      return proto::error_code::bad_request;
    case refusal::internal:
      break;
  }
  return proto::error_code::internal;
}

void start_generate(conn_ptr self, connection_handle hdl, const frontend_ctx& ctx,
                    proto::generate_msg g) {
  auto& st = self->state;
  const auto& m = *ctx.e->internals().m;
  if (st.by_cid.count(g.id))
    return send_error(self, hdl, ctx, proto::error_code::duplicate_id,
                      "request id '" + g.id + "' is already in flight on this connection", g.id);
  if (int(st.by_cid.size()) >= ctx.o.max_requests_per_connection)
    return send_error(self, hdl, ctx, proto::error_code::overloaded,
                      "this connection already has " + std::to_string(st.by_cid.size()) +
                          " requests in flight (limit " +
                          std::to_string(ctx.o.max_requests_per_connection) + ")",
                      g.id);
  generation_request req;
  req.prompt = g.prompt_ids ? *g.prompt_ids : m.encode_prompt(*g.prompt);
  req.max_tokens = g.max_tokens;
  req.sampling = g.sampling;
  req.stop_ids = g.stop_ids;
  if (int64_t(req.prompt.size()) > m.config.max_pos)
    return send_error(self, hdl, ctx, proto::error_code::context_overflow,
                      "prompt of " + std::to_string(req.prompt.size()) +
                          " tokens exceeds the model's context of " +
                          std::to_string(m.config.max_pos),
                      g.id);
  if (const auto why = req.check(m); !why.empty())
    return send_error(self, hdl, ctx, code_of(why), why, g.id);
  client_request r;
  r.cid = g.id;
  r.stream = g.stream;
  r.dec = std::make_unique<stream_decoder>(m.tok);
  r.stop = g.stop;
  st.by_cid.emplace(g.id, std::move(r));
  const std::string cid = g.id;
  self->request(ctx.e->internals().intake, caf::infinite, submit_atom::value, req)
      .then([=](int64_t rid) {
        auto& s = self->state;
        auto it = s.by_cid.find(cid);
        if (it == s.by_cid.end()) return;
        it->second.rid = rid;
        s.cid_by_rid[rid] = cid;
        if (it->second.cancel_pending || s.closing)
          self->send(ctx.e->internals().intake, cancel_atom::value, rid);
      });
}

void on_token(conn_ptr self, connection_handle hdl, const frontend_ctx& ctx, const token_event& e) {
  auto& st = self->state;
  auto c = st.cid_by_rid.find(e.request);
  if (c == st.cid_by_rid.end()) return;
  auto& r = st.by_cid.at(c->second);
  if (r.stopped) return;
  r.ids.push_back(e.token);
  const std::size_t before = r.text.size();
  r.text += r.dec->push(e.token);
  // A stop string may straddle tokens: search from where a match could begin.
  std::size_t cut = std::string::npos;
  for (const auto& s : r.stop) {
    if (s.empty()) continue;
    const std::size_t from = before >= s.size() ? before - s.size() + 1 : 0;
    const auto at = r.text.find(s, from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    r.text.resize(cut);
    r.stopped = true;
    self->send(ctx.e->internals().intake, cancel_atom::value, r.rid);
  }
  if (r.stream) {
    const std::string piece = r.text.size() > r.sent ? r.text.substr(r.sent) : std::string();
    r.sent = std::max(r.sent, r.text.size());
    write_line(self, hdl, proto::token_msg(r.cid, int(r.ids.size()) - 1, e.token, piece), ctx);
  }
}

void on_finished(conn_ptr self, connection_handle hdl, const frontend_ctx& ctx,
                 const finished_event& f) {
  auto& st = self->state;
  auto c = st.cid_by_rid.find(f.request);
  if (c == st.cid_by_rid.end()) return;
  const std::string cid = c->second;
  auto& r = st.by_cid.at(cid);
  if (f.result.reason == finish_reason::error) {
    send_error(self, hdl, ctx, code_of(f.result.error), f.result.error, cid);
  } else {
    if (!r.stopped) r.text += r.dec->finish();
    proto::done_info d;
    d.finish_reason = r.stopped ? "stop" : finish_reason_name(f.result.reason);
    d.prompt_tokens = f.prompt_tokens;
    d.completion_tokens = int64_t(r.ids.size());
    d.queue_ms = f.timings.queue_ms;
    d.ttft_ms = f.timings.ttft_ms;
    d.prefill_ms = f.timings.prefill_ms;
    d.decode_ms = f.timings.decode_ms;
    if (!r.stream) {
      d.text = r.text;
      d.ids = r.ids;
    } else if (r.text.size() > r.sent) {  // the held-back tail of an incomplete character
      write_line(self, hdl,
                 proto::token_msg(cid, int(r.ids.size()) - 1, r.ids.empty() ? -1 : r.ids.back(),
                                  r.text.substr(r.sent)),
                 ctx);
    }
    write_line(self, hdl, proto::done_msg(cid, d), ctx);
  }
  st.cid_by_rid.erase(c);
  st.by_cid.erase(cid);
}

void handle_line(conn_ptr self, connection_handle hdl, const frontend_ctx& ctx,
                 const std::string& line) {
  auto& st = self->state;
  auto parsed = proto::parse_line(line, ctx.o.limits);
  if (auto* err = std::get_if<proto::protocol_error>(&parsed)) {
    if (ctx.o.admin && !st.authorized) {
      send_error(self, hdl, ctx, proto::error_code::unauthorized,
                 "the admin port needs {\"op\":\"hello\",\"version\":1,\"token\":...} first",
                 std::nullopt);
      return close_connection(self, hdl, ctx);
    }
    return write_line(self, hdl, proto::error_msg(*err), ctx);
  }
  auto& msg = std::get<proto::client_msg>(parsed);
  const auto& in = ctx.e->internals();
  if (auto* h = std::get_if<proto::hello_msg>(&msg)) {
    const bool ok = ctx.o.admin ? (!ctx.o.admin_token.empty() && h->token == ctx.o.admin_token)
                                : (ctx.o.auth_tokens.empty() ||
                                   std::find(ctx.o.auth_tokens.begin(), ctx.o.auth_tokens.end(),
                                             h->token) != ctx.o.auth_tokens.end());
    if (!ok) {
      send_error(self, hdl, ctx, proto::error_code::unauthorized,
                 ctx.o.admin ? "wrong admin token" : "wrong or missing token", std::nullopt);
      if (ctx.o.admin) close_connection(self, hdl, ctx);
      return;
    }
    st.authorized = true;
    return write_line(self, hdl,
                      proto::hello_reply(std::string("hybridserve ") + HS_VERSION_STRING,
                                         in.m->config.name, in.m->config.max_pos),
                      ctx);
  }
  const bool needs_auth = ctx.o.admin || !ctx.o.auth_tokens.empty();
  if (needs_auth && !st.authorized) {
    send_error(self, hdl, ctx, proto::error_code::unauthorized,
               "send hello with a valid token first", std::nullopt);
    if (ctx.o.admin) close_connection(self, hdl, ctx);
    return;
  }
  if (auto* p = std::get_if<proto::ping_msg>(&msg))
    return write_line(self, hdl, proto::pong(p->id), ctx);
  if (auto* a = std::get_if<proto::admin_msg>(&msg)) {
    if (!ctx.o.admin)
      return send_error(self, hdl, ctx, proto::error_code::unauthorized,
                        "admin commands are served on the admin port only", a->id);
    const std::string id = a->id;
    self->request(ctx.admin, caf::infinite, admin_cmd_atom::value, a->command)
        .then([=](const admin_result& r) {
          write_line(self, hdl,
                     proto::admin_reply(id, r.ok, r.text, nlohmann::json::parse(r.data_json)), ctx);
        });
    return;
  }
  if (ctx.o.admin)
    return send_error(self, hdl, ctx, proto::error_code::unknown_op,
                      "the admin port serves hello, ping and admin", std::nullopt);
  if (auto* g = std::get_if<proto::generate_msg>(&msg)) return start_generate(self, hdl, ctx, *g);
  if (auto* c = std::get_if<proto::cancel_msg>(&msg)) {
    auto it = st.by_cid.find(c->id);
    if (it == st.by_cid.end())
      return send_error(self, hdl, ctx, proto::error_code::unknown_id,
                        "no request '" + c->id + "' in flight on this connection", c->id);
    if (it->second.rid >= 0)
      self->send(in.intake, cancel_atom::value, it->second.rid);
    else
      it->second.cancel_pending = true;
    return;
  }
  if (auto* mm = std::get_if<proto::models_msg>(&msg)) {
    const auto& c = in.m->config;
    nlohmann::json models = nlohmann::json::array();
    models.push_back({{"name", c.name},
                      {"arch", arch_name(c.architecture)},
                      {"params", c.parameter_count()},
                      {"max_context", c.max_pos},
                      {"dtype", dtype_name(c.weight_dtype)}});
    return write_line(self, hdl, proto::models_reply(mm->id, models), ctx);
  }
  if (auto* s = std::get_if<proto::stats_msg>(&msg)) {
    const std::string id = s->id;
    self->request(in.intake, caf::infinite, stats_atom::value).then([=](const intake_stats& is) {
      self->request(ctx.e->internals().accountant, caf::infinite, usage_atom::value)
          .then([=](const cache_report& c) {
            nlohmann::json f = {{"running", is.running},
                                {"queued", is.queued},
                                {"tokens_per_s", is.tokens_per_s},
                                {"finished", is.finished},
                                {"generated_tokens", is.generated_tokens},
                                {"steps", is.steps},
                                {"kv_ratio", c.kv_ratio},
                                {"cache_sequences", c.sequences},
                                {"device_used", c.device_used},
                                {"device_budget", c.device_budget}};
            write_line(self, hdl, proto::stats_reply(id, f), ctx);
          });
    });
    return;
  }
}

caf::behavior connection(conn_ptr self, connection_handle hdl, std::shared_ptr<frontend_ctx> ctx) {
  self->state.splitter = std::make_unique<proto::line_splitter>(ctx->o.limits.max_line_bytes);
  self->configure_read(hdl, caf::io::receive_policy::at_most(64 * 1024));
  return {
      [=](const caf::io::new_data_msg& msg) {
        auto& st = self->state;
        if (st.closing) return;
        const bool ok = st.splitter->feed(
            std::string_view(reinterpret_cast<const char*>(msg.buf.data()), msg.buf.size()));
        const auto lines = std::move(st.splitter->lines);
        st.splitter->lines.clear();
        for (const auto& l : lines) {
          handle_line(self, hdl, *ctx, l);
          if (st.closing) return;
        }
        if (!ok) {  // a broken frame: say so, then close only this connection
          send_error(self, hdl, *ctx, proto::error_code::line_too_long,
                     "line longer than " + std::to_string(ctx->o.limits.max_line_bytes) +
                         " bytes; closing the connection",
                     std::nullopt);
          close_connection(self, hdl, *ctx);
        }
      },
      [=](const caf::io::connection_closed_msg&) { close_connection(self, hdl, *ctx); },
      [=](token_atom, const token_event& e) { on_token(self, hdl, *ctx, e); },
      [=](finished_atom, const finished_event& f) { on_finished(self, hdl, *ctx, f); },
  };
}

caf::behavior acceptor(broker* self, std::shared_ptr<caf::io::doorman_ptr> dm,
                       std::shared_ptr<frontend_ctx> ctx) {
  self->add_doorman(std::move(*dm));
  return {
      [=](const caf::io::new_connection_msg& msg) {
        if (ctx->connections->load() >= ctx->o.max_connections) {
          const std::string line =
              proto::error_msg(
                  {proto::error_code::overloaded,
                   "too many connections (limit " + std::to_string(ctx->o.max_connections) + ")",
                   std::nullopt}) +
              "\n";
          self->write(msg.handle, line.size(), line.data());
          self->flush(msg.handle);
          self->close(msg.handle);
          return;
        }
        ctx->connections->fetch_add(1);
        // Linked: when the listener exits at shutdown, its connections go with it.
        self->link_to(self->fork(connection, msg.handle, ctx));
      },
      [=](stop_atom) {
        self->close_all();  // stops accepting; open connections still get their final messages
      },
  };
}

}  // namespace

result<uint16_t> start_tcp_frontend(engine& e, const frontend_options& o, admin_actor admin) {
  auto& sys = *e.internals().sys;
  auto dm = sys.middleman().backend().new_tcp_doorman(o.port, o.listen.c_str(), true);
  if (!dm)
    return result<uint16_t>::failure("cannot listen on " + o.listen + ":" + std::to_string(o.port) +
                                     ": " + sys.render(dm.error()));
  const uint16_t port = (*dm)->port();
  auto ctx = std::make_shared<frontend_ctx>();
  ctx->e = &e;
  ctx->o = o;
  ctx->admin = admin;
  auto a = sys.middleman().spawn_broker(
      acceptor, std::make_shared<caf::io::doorman_ptr>(std::move(*dm)), ctx);
  e.internals().frontends.push_back(caf::actor_cast<caf::actor>(a));
  e.internals().listeners.push_back(caf::actor_cast<caf::actor>(a));
  return port;
}

void stop_frontends(engine& e) {
  for (auto& a : e.internals().listeners) caf::anon_send(a, stop_atom::value);
}

}  // namespace hs
