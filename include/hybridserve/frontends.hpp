// Front ends of a running engine: the TCP message protocol (clients), the admin listener and
// the admin command interpreter. CAF types: include only from actor code and `serve`.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "hybridserve/engine_internals.hpp"
#include "hybridserve/protocol.hpp"

namespace hs {

using admin_cmd_atom = caf::atom_constant<caf::atom("admincmd")>;

/// The answer to one console command line.
struct admin_result {
  bool ok = true;
  std::string text;       // for people
  std::string data_json;  // the same, structured (a JSON object)
};

}  // namespace hs

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::admin_result)

namespace hs {

/// Runs console command lines against the engine's actors: status, stats, cache, plan, actors,
/// requests, cancel ID, set kv_ratio R|auto, set max_batch N, set max_step_tokens N, drain,
/// shutdown, help.
using admin_actor =
    caf::typed_actor<caf::replies_to<admin_cmd_atom, std::string>::with<admin_result>>;
admin_actor spawn_admin(engine& e, std::function<void()> on_shutdown);

/// The commands `help` lists (the console completes them).
std::vector<std::string> admin_command_names();

struct frontend_options {
  std::string listen = "127.0.0.1";
  uint16_t port = 0;  // 0 = any free port (tests); the bound port is returned
  proto::limits limits;
  int max_requests_per_connection = 64;
  int max_connections = 256;
  std::vector<std::string> auth_tokens;  // main port: empty = no auth
  bool admin = false;                    // the admin listener: hello with admin_token first
  std::string admin_token;
  std::size_t max_write_buffer = std::size_t(8) << 20;  // a slower client is dropped
};

/// Binds and starts serving; returns the bound port or an error naming address and port.
result<uint16_t> start_tcp_frontend(engine& e, const frontend_options& o, admin_actor admin);

/// Tells every front end to stop accepting and to close idle connections.
void stop_frontends(engine& e);

}  // namespace hs
