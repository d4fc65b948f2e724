// The TOML configuration of `hybridserve serve`: the shipped defaults equal the code's, every
// key reads, and every kind of mistake is an error at the right FILE:LINE:COLUMN. Positions in
// the expected messages were counted by hand from the test inputs (lines and columns from 1).
#include <unistd.h>
#include <catch2/catch.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "hybridserve/server_config.hpp"

namespace {

using hs::server_config;

server_config parse_ok(const std::string& text, const std::vector<std::string>& overrides = {}) {
  auto r = hs::parse_server_config_text(text, "t.toml", overrides);
  INFO(text);
  if (!r) FAIL(r.error());
  return r.value();
}

std::string parse_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  auto r = hs::parse_server_config_text(text, "t.toml", overrides);
  INFO(text);
  REQUIRE_FALSE(r.ok());
  return r.error();
}

// Field by field, so that a mismatch names the field.
void check_same(const server_config& a, const server_config& b) {
  CHECK(a.model.path == b.model.path);
  CHECK(a.model.shape == b.model.shape);
  CHECK(a.model.weight_seed == b.model.weight_seed);
  CHECK(a.model.dtype == b.model.dtype);
  CHECK(a.backend.kind == b.backend.kind);
  CHECK(a.backend.device_budget == b.backend.device_budget);
  CHECK(a.backend.host_budget == b.backend.host_budget);
  CHECK(a.cache.auto_ratio == b.cache.auto_ratio);
  CHECK(a.cache.kv_ratio == b.cache.kv_ratio);
  CHECK(a.cache.block_size == b.cache.block_size);
  CHECK(a.batching.max_batch == b.batching.max_batch);
  CHECK(a.batching.max_step_tokens == b.batching.max_step_tokens);
  CHECK(a.batching.max_queue == b.batching.max_queue);
  CHECK(a.batching.prefill_first == b.batching.prefill_first);
  CHECK(a.server.listen == b.server.listen);
  CHECK(a.server.port == b.server.port);
  CHECK(a.server.max_line_bytes == b.server.max_line_bytes);
  CHECK(a.server.max_requests_per_connection == b.server.max_requests_per_connection);
  CHECK(a.server.max_requests_total == b.server.max_requests_total);
  CHECK(a.server.max_connections == b.server.max_connections);
  CHECK(a.server.auth_tokens == b.server.auth_tokens);
  CHECK(a.server.max_tokens_default == b.server.max_tokens_default);
  CHECK(a.server.max_tokens_limit == b.server.max_tokens_limit);
  CHECK(a.http.listen == b.http.listen);
  CHECK(a.http.port == b.http.port);
  CHECK(a.http.api_key == b.http.api_key);
  CHECK(a.http.chat_template == b.http.chat_template);
  CHECK(a.admin.listen == b.admin.listen);
  CHECK(a.admin.port == b.admin.port);
  CHECK(a.admin.token == b.admin.token);
  CHECK(a.threads.scheduler == b.threads.scheduler);
  CHECK(a.threads.blas == b.threads.blas);
  CHECK(a.logging.level == b.logging.level);
  CHECK(a.logging.file == b.logging.file);
  // describe() covers every key of the schema, including any the lines above forget.
  CHECK(hs::describe(a, hs::secrets::show) == hs::describe(b, hs::secrets::show));
}

const std::string k_default_toml = HS_SOURCE_DIR "/config/default.toml";

const std::string k_server_keys =
    "listen, port, max_line_bytes, max_requests_per_connection, max_requests_total, "
    "max_connections, auth_tokens, max_tokens_default, max_tokens_limit";
const std::string k_sections =
    "model, backend, cache, batching, server, http, admin, threads, "
    "logging";

constexpr int64_t k_gib = int64_t(1) << 30;

}  // namespace

TEST_CASE("config/default.toml equals the defaults in the code", "[config]") {
  auto file = hs::load_server_config(k_default_toml);
  if (!file) FAIL(file.error());
  check_same(file.value(), server_config{});

  auto none = hs::load_server_config("");  // no file: defaults only
  REQUIRE(none.ok());
  check_same(none.value(), server_config{});
}

TEST_CASE("config/default.toml writes out every key", "[config]") {
  // A key missing from the file would still parse to its default, so look for each by name.
  std::ifstream in(k_default_toml);
  REQUIRE(in);
  std::set<std::string> found;
  std::string line, section;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
    } else if (line.find(" = ") != std::string::npos) {
      found.insert(section + "." + line.substr(0, line.find(" = ")));
    }
  }
  const auto keys = hs::server_config_keys();
  CHECK(keys.size() == 33);
  for (const auto& k : keys) {
    INFO(k);
    CHECK(found.count(k) == 1);
  }
  CHECK(found.size() == keys.size());
}

TEST_CASE("a file that sets every key", "[config]") {
  const std::string text = R"(# every key, none at its default
[model]
path = "/models/opt-13b"
weight_seed = 42
dtype = "bfloat16"

[backend]
kind = "cpu"
device_budget = "24GiB"
host_budget = 1000000000

[cache]
kv_ratio = 0.25
block_size = 32

[batching]
max_batch = 128
max_step_tokens = 4096
max_queue = 10
prefill_first = true

[server]
listen = "0.0.0.0"
port = 9000
max_line_bytes = 65536
max_requests_per_connection = 8
max_requests_total = 100
max_connections = 16
auth_tokens = ["alpha", "beta"]
max_tokens_default = 64
max_tokens_limit = 512

[http]
listen = "::1"
port = 9001
api_key = "sk-test"
chat_template = "llama3"

[admin]
listen = "10.0.0.1"
port = 9002
token = "admin-secret"

[threads]
scheduler = 8
blas = 4

[logging]
level = "debug"
file = "/var/log/hybridserve.log"
)";
  const server_config c = parse_ok(text);
  CHECK(c.model.path == "/models/opt-13b");
  CHECK(c.model.shape.empty());
  CHECK(c.model.weight_seed == 42);
  CHECK(c.model.dtype == "bfloat16");
  CHECK(c.backend.kind == "cpu");
  CHECK(c.backend.device_budget == 24 * k_gib);
  CHECK(c.backend.host_budget == 1000000000);
  CHECK_FALSE(c.cache.auto_ratio);
  CHECK(c.cache.kv_ratio == 0.25);
  CHECK(c.cache.block_size == 32);
  CHECK(c.batching.max_batch == 128);
  CHECK(c.batching.max_step_tokens == 4096);
  CHECK(c.batching.max_queue == 10);
  CHECK(c.batching.prefill_first);
  CHECK(c.server.listen == "0.0.0.0");
  CHECK(c.server.port == 9000);
  CHECK(c.server.max_line_bytes == 65536);
  CHECK(c.server.max_requests_per_connection == 8);
  CHECK(c.server.max_requests_total == 100);
  CHECK(c.server.max_connections == 16);
  CHECK(c.server.auth_tokens == std::vector<std::string>{"alpha", "beta"});
  CHECK(c.server.max_tokens_default == 64);
  CHECK(c.server.max_tokens_limit == 512);
  CHECK(c.http.listen == "::1");
  CHECK(c.http.port == 9001);
  CHECK(c.http.api_key == "sk-test");
  CHECK(c.http.chat_template == "llama3");
  CHECK(c.admin.listen == "10.0.0.1");
  CHECK(c.admin.port == 9002);
  CHECK(c.admin.token == "admin-secret");
  CHECK(c.threads.scheduler == 8);
  CHECK(c.threads.blas == 4);
  CHECK(c.logging.level == "debug");
  CHECK(c.logging.file == "/var/log/hybridserve.log");

  SECTION("describe() reads back as the same configuration") {
    const std::string shown = hs::describe(c, hs::secrets::show);
    check_same(parse_ok(shown), c);
    CHECK(shown.find("device_budget = \"24GiB\"\n") != std::string::npos);
    CHECK(shown.find("host_budget = 1000000000\n") != std::string::npos);
    CHECK(shown.find("kv_ratio = 0.25\n") != std::string::npos);
  }
  SECTION("describe() hides tokens and keys by default") {
    const std::string hidden = hs::describe(c);
    CHECK(hidden.find("alpha") == std::string::npos);
    CHECK(hidden.find("sk-test") == std::string::npos);
    CHECK(hidden.find("admin-secret") == std::string::npos);
    CHECK(hidden.find("auth_tokens = [\"***\", \"***\"]\n") != std::string::npos);
    CHECK(hidden.find("token = \"***\"\n") != std::string::npos);
  }
  SECTION("the same file through load_server_config") {
    const std::string path = "/tmp/hs_test_server_config_" + std::to_string(::getpid()) + ".toml";
    {
      std::ofstream out(path);
      out << text;
    }
    auto r = hs::load_server_config(path);
    REQUIRE(r.ok());
    check_same(r.value(), c);
    std::remove(path.c_str());
  }
}

TEST_CASE("dotted keys and inline tables name sections too", "[config]") {
  const server_config c = parse_ok("server.port = 7000\nhttp = { port = 0 }\n");
  CHECK(c.server.port == 7000);
  CHECK(c.http.port == 0);
}

TEST_CASE("describe() escapes strings so they read back", "[config]") {
  server_config c;
  c.logging.file = "C:\\logs\\\"hs\"\tlog\x01";
  c.model.shape = "";
  check_same(parse_ok(hs::describe(c, hs::secrets::show)), c);
}

TEST_CASE("unknown sections and keys", "[config]") {
  CHECK(parse_error("[server]\n"
                    "listen = \"0.0.0.0\"\n"
                    "prot = 7000\n") ==
        "t.toml:3:1: unknown key 'server.prot' (did you mean 'port'? valid keys of [server]: " +
            k_server_keys + ")");
  // No suggestion when nothing is close.
  CHECK(parse_error("\n[cache]\n  colour = \"blue\"\n") ==
        "t.toml:3:3: unknown key 'cache.colour' (valid keys of [cache]: kv_ratio, block_size)");
  CHECK(parse_error("[model]\npath = \"\"\n\n[serverr]\nport = 1\n") ==
        "t.toml:4:2: unknown section 'serverr' (did you mean 'server'? valid sections: " +
            k_sections + ")");
  // A dotted key names its section too.
  CHECK(parse_error("loging.level = \"info\"\n") ==
        "t.toml:1:1: unknown section 'loging' (did you mean 'logging'? valid sections: " +
            k_sections + ")");
  CHECK(parse_error("[http]\nport.number = 1\n") ==
        "t.toml:2:1: 'http.port' must be an integer, got a table");
  // A key above every [section] header.
  CHECK(parse_error("port = 7000\n[server]\n") ==
        "t.toml:1:1: unknown top-level key 'port' (keys belong in a section; 'port' is a key of "
        "[server], [http], [admin]; valid sections: " +
            k_sections + ")");
  CHECK(parse_error("[server.tls]\ncert = \"x\"\n") ==
        "t.toml:1:9: unknown key 'server.tls' (valid keys of [server]: " + k_server_keys + ")");
}

TEST_CASE("values of the wrong type", "[config]") {
  CHECK(parse_error("[server]\nport = \"x\"\n") ==
        "t.toml:2:8: 'server.port' must be an integer, got string \"x\"");
  CHECK(parse_error("[server]\nport = 7000.0\n") ==
        "t.toml:2:8: 'server.port' must be an integer, got float 7000.0");
  CHECK(parse_error("[logging]\nlevel = true\n") ==
        "t.toml:2:9: 'logging.level' must be a string, got boolean true");
  CHECK(parse_error("[model]\npath = 1979-05-27\n") ==
        "t.toml:2:8: 'model.path' must be a string, got date 1979-05-27");
  CHECK(parse_error("[server]\nauth_tokens = \"abc\"\n") ==
        "t.toml:2:15: 'server.auth_tokens' must be an array of strings, got string \"abc\"");
  // An element is located by itself.
  CHECK(parse_error("[server]\nauth_tokens = [\"abc\",\n  42]\n") ==
        "t.toml:3:3: 'server.auth_tokens[1]' must be a string, got integer 42");
  CHECK(parse_error("[server]\nauth_tokens = [\"\"]\n") ==
        "t.toml:2:16: 'server.auth_tokens[0]' must not be empty (e.g. a long random string)");
  CHECK(parse_error("server = 5\n") ==
        "t.toml:1:10: 'server' must be a table ([server]), got "
        "integer 5");
  CHECK(parse_error("[[server]]\nport = 1\n") ==
        "t.toml:1:1: 'server' must be a table ([server]), got an array");
}

TEST_CASE("impossible values", "[config]") {
  CHECK(parse_error("[cache]\n\nblock_size = 0\n") ==
        "t.toml:3:14: 'cache.block_size' = 0 is out of range 1..4096");
  CHECK(parse_error("[model]\nweight_seed = -1\n") ==
        "t.toml:2:15: 'model.weight_seed' = -1 is out of range 0..9223372036854775807");
  CHECK(parse_error("[server]\nport = 70000\n") ==
        "t.toml:2:8: 'server.port' = 70000 is out of range 0..65535");
  CHECK(parse_error("[backend]\nkind = \"gpu\"\n") ==
        "t.toml:2:8: 'backend.kind' = \"gpu\" is not one of cpu, cuda, auto");
  CHECK(parse_error("[http]\nchat_template = \"vicuna\"\n") ==
        "t.toml:2:17: 'http.chat_template' = \"vicuna\" is not one of chatml, llama2, llama3, "
        "zephyr, \"\"");
  CHECK(parse_error("[server]\nlisten = \"\"\n") ==
        "t.toml:2:10: 'server.listen' must not be empty (e.g. \"127.0.0.1\", or \"0.0.0.0\" for "
        "all)");
  const std::string shape = parse_error("[model]\nshape = \"opt-14b\"\n");
  CHECK(shape.rfind("t.toml:2:9: 'model.shape' = \"opt-14b\": synthetic shape 'opt-14b': unknown",
                    0) == 0);
  CHECK(shape.find("opt-13b") != std::string::npos);  // the valid shapes are listed
}

TEST_CASE("TOML syntax errors carry TOML++'s position and description", "[config]") {
  // The descriptions are TOML++ 3.3's own words.
  CHECK(parse_error("[server]\nport = 70 70\n") ==
        "t.toml:2:11: Error while parsing key-value pair: expected a comment or whitespace, saw "
        "'7'");
  CHECK(parse_error("[server]\nport = 1\nport = 2\n") ==
        "t.toml:3:8: Error while parsing key-value pair: cannot redefine existing integer 'port'");
  CHECK(parse_error("[model\n") ==
        "t.toml:1:7: Error while parsing table header: expected ']', saw '\\n'");
}

TEST_CASE("checks across keys", "[config]") {
  CHECK(parse_error("[model]\npath = \"/m\"\nshape = \"tiny\"\n") ==
        "t.toml:3:9: 'model.path' and 'model.shape' are both set; a model is either a "
        "checkpoint folder or a synthetic shape");
  CHECK(parse_error("[admin]\nport = 7071\n") ==
        "t.toml:2:8: 'admin.port' = 7071 enables the admin console, which requires "
        "'admin.token' (it can drain and shut down the server); set a token or port = 0");
  CHECK(parse_ok("[admin]\nport = 7071\ntoken = \"t\"\n").admin.port == 7071);
  CHECK_THAT(parse_error("[batching]\nprefill_first = 1\n"),
             Catch::Contains("'batching.prefill_first' must be true or false, got"));
  CHECK(parse_error("[batching]\nmax_step_tokens = 32\n") ==
        "t.toml:2:19: 'batching.max_step_tokens' = 32 is less than 'batching.max_batch' = 64: a "
        "pass must be able to decode every running sequence");
  CHECK(parse_error("[server]\nmax_tokens_default = 5000\n") ==
        "t.toml:2:22: 'server.max_tokens_default' = 5000 is more than 'server.max_tokens_limit' "
        "= 4096");
  CHECK(parse_error("[http]\nport = 7070\n") ==
        "t.toml:2:8: 'server.port' and 'http.port' are both 7070; each listener needs its own "
        "port (0 disables one)");
  CHECK(parse_ok("[http]\nport = 0\n[server]\nport = 0\n").http.port == 0);
}

TEST_CASE("overrides given with --set", "[config]") {
  const std::string file = "[server]\nport = 7000\n";
  const server_config c = parse_ok(
      file, {"server.port=7001",
             "logging.level=debug",  // a bare word is a string
             "server.listen=0.0.0.0",
             "admin.token=12345",  // a string key keeps the text
             "admin.port=7071", "server.auth_tokens=[\"a\", \"b\"]", "backend.device_budget=24GiB",
             "cache.kv_ratio=0.5", "model.path=\"/with space\"", " threads.blas = 2"});
  CHECK(c.server.port == 7001);  // after the file
  CHECK(c.logging.level == "debug");
  CHECK(c.server.listen == "0.0.0.0");
  CHECK(c.admin.token == "12345");
  CHECK(c.admin.port == 7071);
  CHECK(c.server.auth_tokens == std::vector<std::string>{"a", "b"});
  CHECK(c.backend.device_budget == 24 * k_gib);
  CHECK_FALSE(c.cache.auto_ratio);
  CHECK(c.cache.kv_ratio == 0.5);
  CHECK(c.model.path == "/with space");
  CHECK(c.threads.blas == 2);

  CHECK(hs::load_server_config("", {"server.port=7002"}).value().server.port == 7002);
  CHECK(parse_error(file, {"server.port=abc"}) ==
        "--set server.port=abc: 'server.port' must be an integer, got string \"abc\"");
  CHECK(parse_error(file, {"server.prot=1"}) ==
        "--set server.prot=1: unknown key 'server.prot' (did you mean 'port'? valid keys of "
        "[server]: " +
            k_server_keys + ")");
  CHECK(parse_error(file, {"sever.port=1"}) ==
        "--set sever.port=1: unknown section 'sever' (did you mean 'server'? valid sections: " +
            k_sections + ")");
  CHECK(parse_error(file, {"port=1"}) ==
        "--set port=1: expected section.key=value, e.g. --set server.port=7000");
  CHECK(parse_error(file, {"server.port"}) ==
        "--set server.port: expected section.key=value, e.g. --set server.port=7000");
  CHECK(parse_error(file, {"cache.block_size=0"}) ==
        "--set cache.block_size=0: 'cache.block_size' = 0 is out of range 1..4096");
  // More than one TOML value is not a value: read as text, then refused as one.
  CHECK(parse_error(file, {"server.port=1\nx = 2"}) ==
        "--set server.port=1\nx = 2: 'server.port' must be an integer, got string \"1\\nx = 2\"");
  // Cross-key checks point at the override that broke them.
  CHECK(parse_error("[admin]\nport = 7071\ntoken = \"t\"\n", {"admin.token="}) ==
        "--set admin.token=: 'admin.port' = 7071 enables the admin console, which requires "
        "'admin.token' (it can drain and shut down the server); set a token or port = 0");
}

TEST_CASE("byte sizes", "[config]") {
  CHECK(parse_ok("[backend]\ndevice_budget = \"24GiB\"\n").backend.device_budget == 24 * k_gib);
  CHECK(parse_ok("[backend]\ndevice_budget = 25769803776\n").backend.device_budget == 25769803776);
  CHECK(parse_ok("[backend]\nhost_budget = \"80GB\"\n").backend.host_budget == 80000000000);
  CHECK(parse_ok("[backend]\nhost_budget = \"1e9\"\n").backend.host_budget == 1000000000);
  CHECK(parse_ok("[backend]\nhost_budget = 0\n").backend.host_budget == 0);
  CHECK(parse_error("[backend]\ndevice_budget = \"24XB\"\n") ==
        "t.toml:2:17: 'backend.device_budget' = \"24XB\" is not a byte size: '24XB': unknown "
        "unit 'xb' (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  CHECK(parse_error("[backend]\ndevice_budget = -1\n") ==
        "t.toml:2:17: 'backend.device_budget' = -1 is negative");
  CHECK(parse_error("[backend]\ndevice_budget = 1.5\n") ==
        "t.toml:2:17: 'backend.device_budget' must be a byte size (an integer, or a string like "
        "\"24GiB\"), got float 1.5");
  // describe() writes exact binary units, otherwise the integer.
  server_config c;
  c.backend.device_budget = 24 * k_gib;
  c.backend.host_budget = 1000;
  const std::string d = hs::describe(c);
  CHECK(d.find("device_budget = \"24GiB\"\n") != std::string::npos);
  CHECK(d.find("host_budget = 1000\n") != std::string::npos);
}

TEST_CASE("kv_ratio", "[config]") {
  const server_config a = parse_ok("[cache]\nkv_ratio = \"auto\"\n");
  CHECK(a.cache.auto_ratio);
  const server_config q = parse_ok("[cache]\nkv_ratio = 0.25\n");
  CHECK_FALSE(q.cache.auto_ratio);
  CHECK(q.cache.kv_ratio == 0.25);
  const server_config one = parse_ok("[cache]\nkv_ratio = 1\n");
  CHECK_FALSE(one.cache.auto_ratio);
  CHECK(one.cache.kv_ratio == 1.0);
  CHECK(parse_error("[cache]\nkv_ratio = 1.5\n") ==
        "t.toml:2:12: 'cache.kv_ratio' = 1.5 is out of range 0..1 (or \"auto\")");
  CHECK(parse_error("[cache]\nkv_ratio = -1\n") ==
        "t.toml:2:12: 'cache.kv_ratio' = -1 is out of range 0..1 (or \"auto\")");
  CHECK(parse_error("[cache]\nkv_ratio = nan\n") ==
        "t.toml:2:12: 'cache.kv_ratio' = nan is out of range 0..1 (or \"auto\")");
  CHECK(parse_error("[cache]\nkv_ratio = \"half\"\n") ==
        "t.toml:2:12: 'cache.kv_ratio' must be \"auto\" or a number in 0..1, got string \"half\"");
  // "auto" after a number forgets the number.
  const server_config back = parse_ok("[cache]\nkv_ratio = 0.25\n", {"cache.kv_ratio=auto"});
  CHECK(back.cache.auto_ratio);
  CHECK(back.cache.kv_ratio == server_config{}.cache.kv_ratio);
  CHECK(hs::describe(back).find("kv_ratio = \"auto\"\n") != std::string::npos);
}

TEST_CASE("a missing file is an error naming it", "[config]") {
  auto r = hs::load_server_config("/nonexistent/hs.toml");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == "/nonexistent/hs.toml: cannot open the configuration file");
  auto dir = hs::load_server_config(HS_SOURCE_DIR "/config");
  REQUIRE_FALSE(dir.ok());
  CHECK(dir.error() == HS_SOURCE_DIR "/config: is a directory, not a configuration file");
}
