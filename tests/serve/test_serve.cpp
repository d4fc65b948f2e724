// The TCP message protocol and the admin console over real sockets on 127.0.0.1: concurrency,
// bad input, broken frames, vanished clients, the console (scripted and through a terminal),
// live ratio changes, and SIGTERM.
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <thread>

#include "fixture_util.hpp"
#include "greedy_alone.hpp"
#include "hybridserve/frontends.hpp"
#include "hybridserve/reference_forward.hpp"
#include "line_client.hpp"
#include "serve_child.hpp"

using hs::cli::line_client;
using nlohmann::json;

namespace {

const std::string k_admin_token = "test-admin-token";

struct server {
  std::unique_ptr<hs::engine> e;
  uint16_t port = 0, admin_port = 0;
  std::shared_ptr<const hs::model> m;

  explicit server(std::size_t max_line = 1 << 20) {
    m = *hs::load_model(hs::test::fixture("opt-tiny"));
    hs::engine_options o;
    hs::calibration cal = hs::h200_calibration();
    cal.cache_elem_bytes = cal.weight_elem_bytes = 4;
    o.cal = cal;
    o.network = true;
    o.block_size = 4;
    o.max_batch = 128;
    auto r = hs::engine::start(m, o);
    REQUIRE(r.ok());
    e = std::move(*r);
    auto admin = hs::spawn_admin(*e, [] {});
    hs::frontend_options fo;
    fo.limits.max_line_bytes = max_line;
    fo.max_requests_per_connection = 8;
    auto p = hs::start_tcp_frontend(*e, fo, admin);
    REQUIRE(p.ok());
    port = *p;
    fo.admin = true;
    fo.admin_token = k_admin_token;
    auto a = hs::start_tcp_frontend(*e, fo, admin);
    REQUIRE(a.ok());
    admin_port = *a;
  }
  std::string where(bool admin = false) const {
    return "127.0.0.1:" + std::to_string(admin ? admin_port : port);
  }
};

json read_json(line_client& c, int timeout_ms = 20000) {
  auto l = c.read_line(timeout_ms);
  REQUIRE(l.has_value());
  return json::parse(*l);
}

// Reads until the `done` (or `error`) of request `id`; returns the token ids and the last message.
std::pair<std::vector<int32_t>, json> collect(line_client& c, const std::string& id) {
  std::vector<int32_t> ids;
  for (;;) {
    json j = read_json(c);
    if (j.value("id", json()) != id) continue;
    if (j["type"] == "token") ids.push_back(j["token"].get<int32_t>());
    if (j["type"] == "done" || j["type"] == "error") return {ids, j};
  }
}

std::string hybridserve_binary() {
  return HS_BINARY;
}

}  // namespace

TEST_CASE("64 concurrent clients each get exactly the tokens they would get alone", "[serve]") {
  server s;
  hs::tensor_store ex;
  ex.add_file(hs::test::fixture("opt-tiny") + "/expected.safetensors");
  std::vector<std::vector<int32_t>> prompts, expected;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(hs::test::ints(ex, "p" + std::to_string(i) + ".prompt"));
    expected.push_back(hs::test::greedy_alone(*s.m, prompts.back(), 12));
  }
  std::vector<std::string> failures(64);
  std::vector<std::thread> clients;
  for (int c = 0; c < 64; ++c) {
    clients.emplace_back([&, c] {
      line_client cl;
      if (!cl.connect(s.where()).empty()) {
        failures[c] = "connect failed";
        return;
      }
      for (int k = 0; k < 3; ++k) {  // several requests in flight on one connection
        const int p = (c + k) % 4;
        cl.send_line(json{
            {"op", "generate"},
            {"id", "r" + std::to_string(k)},
            {"prompt_ids", prompts[p]},
            {"max_tokens", 12},
            {"temperature", 0},
            {"stream",
             k != 1}}.dump());
      }
      std::map<std::string, std::vector<int32_t>> got;
      int done = 0;
      while (done < 3) {
        auto l = cl.read_line(60000);
        if (!l) {
          failures[c] = "connection ended early";
          return;
        }
        json j = json::parse(*l);
        const std::string id = j.value("id", "");
        if (j["type"] == "token") got[id].push_back(j["token"].get<int32_t>());
        if (j["type"] == "done") {
          if (j.contains("ids")) got[id] = j["ids"].get<std::vector<int32_t>>();
          ++done;
        }
        if (j["type"] == "error") {
          failures[c] = *l;
          return;
        }
      }
      for (int k = 0; k < 3; ++k)
        if (got["r" + std::to_string(k)] != expected[(c + k) % 4])
          failures[c] = "request r" + std::to_string(k) + " differs from the sequence run alone";
    });
  }
  for (auto& t : clients) t.join();
  for (int c = 0; c < 64; ++c) {
    INFO("client " << c);
    CHECK(failures[c] == "");
  }
}

TEST_CASE("bad inputs get the right error code and the connection stays usable", "[serve]") {
  server s;
  line_client c;
  REQUIRE(c.connect(s.where()) == "");
  const std::vector<int32_t> too_long(300, 5);
  const std::pair<std::string, std::string> table[] = {
      {"this is not json", "bad_json"},
      {"[1,2,3]", "bad_json"},
      {R"({"id":"a"})", "bad_request"},
      {R"({"op":"fly","id":"a"})", "unknown_op"},
      {R"({"op":"generate","id":"a"})", "bad_request"},
      {R"({"op":"generate","id":"a","prompt":"x","max_tokens":"12"})", "bad_request"},
      {R"({"op":"generate","id":"a","prompt":"x","temperature":-1})", "bad_request"},
      {R"({"op":"generate","id":"a","prompt":"x","top_p":1.5})", "bad_request"},
      {R"({"op":"generate","id":"a","prompt_ids":[2,5000]})", "bad_request"},
      {json{{"op", "generate"}, {"id", "a"}, {"prompt_ids", too_long}}.dump(), "context_overflow"},
      {R"({"op":"cancel","id":"nobody"})", "unknown_id"},
      {R"({"op":"admin","id":"a","command":"status"})", "unauthorized"},
      {R"({"op":"hello","version":2})", "bad_request"},
  };
  for (const auto& [line, code] : table) {
    INFO(line);
    REQUIRE(c.send_line(line));
    json j = read_json(c);
    CHECK(j["type"] == "error");
    CHECK(j["code"] == code);
    CHECK(j["message"].get<std::string>().size() > 10);  // says what is wrong
    REQUIRE(c.send_line(R"({"op":"ping","id":"alive"})"));
    CHECK(read_json(c)["type"] == "pong");
  }
  // duplicate id: the first is still running when the second arrives
  c.send_line(R"({"op":"generate","id":"d","prompt":"x","max_tokens":200})");
  c.send_line(R"({"op":"generate","id":"d","prompt":"y","max_tokens":2})");
  bool dup = false;
  for (int i = 0; i < 400 && !dup; ++i) {
    json j = read_json(c);
    dup = j["type"] == "error" && j["code"] == "duplicate_id";
  }
  CHECK(dup);
}

TEST_CASE("an oversize line closes only its own connection", "[serve]") {
  server s(4096);
  line_client bad, good;
  REQUIRE(bad.connect(s.where()) == "");
  REQUIRE(good.connect(s.where()) == "");
  bad.send_line(std::string(5000, 'a'));
  json j = read_json(bad);
  CHECK(j["code"] == "line_too_long");
  CHECK_FALSE(bad.read_line(5000).has_value());  // then closed
  CHECK(bad.closed());
  good.send_line(R"({"op":"ping","id":"p"})");
  CHECK(read_json(good)["type"] == "pong");
}

TEST_CASE("a client that disconnects mid-stream has its cache freed", "[serve]") {
  server s;
  {
    line_client c;
    REQUIRE(c.connect(s.where()) == "");
    c.send_line(
        R"({"op":"generate","id":"x","prompt":"Copyright","max_tokens":200,"temperature":0})");
    for (int i = 0; i < 3; ++i) CHECK(read_json(c)["type"] == "token");
  }  // closed here
  bool idle = false;
  for (int i = 0; i < 100 && !idle; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto r = s.e->report();
    int64_t blocks = 0;
    for (int f = 0; f < 2; ++f)
      for (int t = 0; t < 2; ++t) blocks += r.cache.usage.blocks[f][t];
    idle = blocks == 0 && r.intake.running == 0 && r.intake.queued == 0;
  }
  CHECK(idle);
}

TEST_CASE("stop strings end a request with finish_reason stop", "[serve]") {
  server s;
  line_client c;
  REQUIRE(c.connect(s.where()) == "");
  // First learn what the model says, then stop on a piece of it.
  c.send_line(
      R"({"op":"generate","id":"a","prompt":"Copyright (C) 2007 Free Software","max_tokens":12,"temperature":0,"stream":false})");
  auto [ids, done] = collect(c, "a");
  const std::string text = done["text"];
  REQUIRE(text.size() > 6);
  const std::string stop = text.substr(3, 3);
  c.send_line(json{
      {"op", "generate"},
      {"id", "b"},
      {"prompt", "Copyright (C) 2007 Free Software"},
      {"max_tokens", 12},
      {"temperature", 0},
      {"stream", false},
      {"stop",
       {stop}}}.dump());
  auto [ids2, done2] = collect(c, "b");
  CHECK(done2["finish_reason"] == "stop");
  CHECK(done2["text"] == text.substr(0, text.find(stop)));
}

TEST_CASE("console: -c scripts, a wrong token is refused", "[serve][console]") {
  server s;
  const std::string bin = hybridserve_binary();
  auto run = [&](const std::string& args, int& rc) {
    std::string out;
    FILE* p =
        popen((bin + " console --connect " + s.where(true) + " " + args + " 2>&1").c_str(), "r");
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    rc = WEXITSTATUS(pclose(p));
    return out;
  };
  int rc = 0;
  auto out = run("--token " + k_admin_token + " -c status -c cache", rc);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("running") && Catch::Contains("kv    device"));
  out = run("--token wrong -c status", rc);
  CHECK(rc == 1);
  CHECK_THAT(out, Catch::Contains("unauthorized"));
  out = run("--token " + k_admin_token + " -c \"set kv_ratio 7\"", rc);
  CHECK(rc == 1);
  CHECK_THAT(out, Catch::Contains("kv_ratio must be"));
}

TEST_CASE("console through a terminal: completion, commands, quit", "[serve][console]") {
  server s;
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setenv("HOME", "/tmp", 1);
    setenv("TERM", "dumb", 1);
    const std::string where = s.where(true);
    execl(HS_BINARY, HS_BINARY, "console", "--connect", where.c_str(), "--token",
          k_admin_token.c_str(), (char*)nullptr);
    _exit(127);
  }
  std::string screen;
  auto read_until = [&](const std::string& what, int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (screen.find(what) == std::string::npos && std::chrono::steady_clock::now() < end) {
      fd_set fds;
      FD_ZERO(&fds);
      FD_SET(master, &fds);
      timeval tv{0, 50000};
      if (select(master + 1, &fds, nullptr, nullptr, &tv) > 0) {
        char buf[4096];
        const ssize_t n = read(master, buf, sizeof buf);
        if (n > 0) screen.append(buf, std::size_t(n));
      }
    }
    return screen.find(what) != std::string::npos;
  };
  auto type = [&](const std::string& keys) {
    CHECK(write(master, keys.data(), keys.size()) == ssize_t(keys.size()));
  };
  REQUIRE(read_until("hybridserve> ", 10000));
  type("sta\t");  // completes to "status" (or offers status/stats)
  REQUIRE(read_until("stat", 5000));
  type("us\n");
  CHECK(read_until("accepting", 5000));
  type("set kv\t");
  CHECK(read_until("kv_ratio", 5000));
  type(" 0.25\n");
  CHECK(read_until("kv_ratio 0.25 (pinned)", 5000));
  type("quit\n");
  int status = 0;
  for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  close(master);
}

TEST_CASE("set kv_ratio changes the plan while requests keep streaming", "[serve][console]") {
  server s;
  line_client c, a;
  REQUIRE(c.connect(s.where()) == "");
  REQUIRE(a.connect(s.where(true)) == "");
  a.send_line(json{{"op", "hello"}, {"version", 1}, {"token", k_admin_token}}.dump());
  REQUIRE(read_json(a)["type"] == "hello");
  c.send_line(
      R"({"op":"generate","id":"long","prompt":"Copyright","max_tokens":200,"temperature":0})");
  for (int i = 0; i < 3; ++i) REQUIRE(read_json(c)["type"] == "token");
  a.send_line(R"({"op":"admin","id":"1","command":"set kv_ratio 0.25"})");
  json r = read_json(a);
  CHECK(r["ok"] == true);
  a.send_line(R"({"op":"admin","id":"2","command":"plan"})");
  r = read_json(a);
  CHECK_THAT(r["text"].get<std::string>(), Catch::Contains("kv_ratio 0.25 (pinned)"));
  CHECK(r["data"]["kv_ratio"] == 0.25);
  auto [ids, done] = collect(c, "long");
  CHECK(done["type"] == "done");
  CHECK(done["finish_reason"] != "error");
}

TEST_CASE("SIGTERM: running requests end with a final message, exit 0", "[serve]") {
  const int port = 20000 + int(getpid() % 20000);
  const std::string cmd = hybridserve_binary() +
                          " serve --set http.port=0 --set server.port=" + std::to_string(port) +
                          " --set model.path=" + hs::test::fixture("opt-tiny");
  const pid_t pid = hs::test::spawn_shell("exec " + cmd + " 2>/dev/null");
  REQUIRE(pid >= 0);
  line_client c;
  REQUIRE(hs::test::connect_when_listening(c, port, 100));
  c.send_line(
      R"({"op":"generate","id":"z","prompt":"Copyright","max_tokens":240,"temperature":0})");
  REQUIRE(read_json(c)["type"] == "token");
  kill(pid, SIGTERM);
  auto [ids, done] = collect(c, "z");
  CHECK(done["type"] == "done");
  CHECK(done["finish_reason"] == "cancelled");
  int status = 0;
  for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
