// `hybridserve console`: the admin REPL (libedit: line editing, history, tab completion) or a
// scripted command with -c. Talks the admin port's framing: hello with the admin token first.
#include <editline/readline.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "line_client.hpp"

namespace hs::cli {
namespace {

struct console_options {
  std::string connect = "127.0.0.1:7071";
  std::string token;
  std::vector<std::string> commands;
  bool json = false;
};

// Words the completer offers, by position: commands first, then arguments of `set`.
const char* const k_commands[] = {"status",   "stats",  "cache", "plan",  "actors",
                                  "requests", "cancel", "set",   "drain", "shutdown",
                                  "help",     "quit",   nullptr};
const char* const k_settings[] = {"kv_ratio", "max_batch", "max_step_tokens", nullptr};
const char* const k_ratio_values[] = {"auto", nullptr};
const char* const* g_words = k_commands;

char* next_word(const char* text, int state) {
  static int i;
  static std::size_t len;
  if (state == 0) {
    i = 0;
    len = std::strlen(text);
  }
  while (g_words[i]) {
    const char* w = g_words[i++];
    if (std::strncmp(w, text, len) == 0) return strdup(w);
  }
  return nullptr;
}

char** complete(const char* text, int start, int) {
  const std::string before(rl_line_buffer, std::size_t(start));
  if (before.find_first_not_of(' ') == std::string::npos)
    g_words = k_commands;
  else if (before == "set ")
    g_words = k_settings;
  else if (before == "set kv_ratio ")
    g_words = k_ratio_values;
  else
    return nullptr;
  rl_attempted_completion_over = 1;  // no file-name completion
  return rl_completion_matches(text, next_word);
}

// Sends one command; prints its text (or JSON). Returns false when the server said no.
bool run_command(line_client& c, const std::string& cmd, int n, bool json, bool& connection_ok) {
  const std::string id = std::to_string(n);
  c.send_line(nlohmann::json{{"op", "admin"}, {"id", id}, {"command", cmd}}.dump());
  for (;;) {
    const auto line = c.read_line(30000);
    if (!line) {
      std::cerr << "error: connection to the server lost\n";
      connection_ok = false;
      return false;
    }
    auto j = nlohmann::json::parse(*line, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.value("type", "") == "error") {
      std::cerr << "error: " << j.value("code", "") << ": " << j.value("message", "") << "\n";
      return false;
    }
    if (j.value("type", "") != "admin" || j.value("id", "") != id) continue;
    if (json)
      std::cout << j["data"].dump(2) << "\n";
    else
      std::cout << j.value("text", "") << (j.value("text", "").empty() ? "" : "\n");
    return j.value("ok", false);
  }
}

int run_console(console_options& o) {
  if (o.token.empty())
    if (const char* t = std::getenv("HYBRIDSERVE_ADMIN_TOKEN")) o.token = t;
  line_client c;
  if (auto err = c.connect(o.connect); !err.empty()) {
    std::cerr << "error: " << err << "\n";
    return 1;
  }
  c.send_line(nlohmann::json{
      {"op", "hello"}, {"version", 1}, {"client", "hybridserve-console"}, {"token", o.token}}
                  .dump());
  const auto h = c.read_line(10000);
  auto hj = h ? nlohmann::json::parse(*h, nullptr, false) : nlohmann::json();
  if (!h || hj.is_discarded() || hj.value("type", "") != "hello") {
    std::cerr << "error: "
              << (h && !hj.is_discarded() ? hj.value("code", "") + ": " + hj.value("message", "")
                                          : "no answer from " + o.connect)
              << "\n";
    return 1;
  }
  bool connection_ok = true;
  int n = 0;
  if (!o.commands.empty()) {
    bool all_ok = true;
    for (const auto& cmd : o.commands) all_ok &= run_command(c, cmd, ++n, o.json, connection_ok);
    return all_ok ? 0 : 1;
  }
  std::cout << "connected to " << hj.value("server", "") << " (" << hj.value("model", "") << ") at "
            << o.connect << "; help lists the commands, quit leaves\n";
  const char* home = std::getenv("HOME");
  const std::string hist = std::string(home ? home : ".") + "/.hybridserve_history";
  using_history();
  read_history(hist.c_str());
  rl_attempted_completion_function = complete;
  while (connection_ok) {
    char* raw = readline("hybridserve> ");
    if (!raw) break;  // EOF (Ctrl-D)
    std::string line(raw);
    std::free(raw);
    const auto b = line.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    line = line.substr(b, line.find_last_not_of(" \t") - b + 1);
    add_history(line.c_str());
    if (line == "quit" || line == "exit") break;
    run_command(c, line, ++n, o.json, connection_ok);
  }
  write_history(hist.c_str());
  return 0;
}

}  // namespace

void add_console_command(CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<console_options>();
  auto* c = app.add_subcommand("console", "the admin console of a running server");
  c->add_option("--connect", o->connect, "HOST:PORT of the admin listener");
  c->add_option("--token", o->token, "admin token (or $HYBRIDSERVE_ADMIN_TOKEN)");
  c->add_option("-c,--command", o->commands, "run this command and exit (repeatable)");
  c->add_flag("--json", o->json, "print the structured answer instead of the text");
  c->callback([o, &run] { run = [o] { return run_console(*o); }; });
}

}  // namespace hs::cli
