// `hybridserve generate` and `hybridserve serve` with no model argument run the built-in model
// (models/builtin, issue 7), from any current directory; where it is missing the error names
// the folders tried; --shape still gives a synthetic model.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <thread>

#include "builtin_util.hpp"
#include "fixture_util.hpp"
#include "line_client.hpp"
#include "serve_child.hpp"

namespace fs = std::filesystem;
using hs::cli::line_client;
using nlohmann::json;

namespace {

struct outcome {
  int status = -1;
  std::string out, err;
  double seconds = 0;
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

// Runs `cd CWD && [ENV] BINARY ARGS` through the shell; stdout and stderr come back apart.
outcome run_in(const std::string& cwd, const std::string& binary, const std::string& args,
               const std::string& env = "") {
  hs::test::temp_dir io;
  const std::string cmd = "cd " + shell_quote(cwd) + " && " + env + " " + shell_quote(binary) +
                          " " + args + " >" + shell_quote(io.file("out")) + " 2>" +
                          shell_quote(io.file("err")) + " </dev/null";
  outcome o;
  const auto t0 = std::chrono::steady_clock::now();
  const int rc = std::system(cmd.c_str());
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  o.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  o.out = hs::test::read_file(io.file("out"));
  o.err = hs::test::read_file(io.file("err"));
  return o;
}

}  // namespace

TEST_CASE("generate with no --model prints the built-in model's golden text from any directory",
          "[builtin][cli]") {
  hs::test::temp_dir cwd;  // not the source tree, not the build folder
  int n = 0;
  for (const auto& c : hs::test::golden_cases(&n)) {
    INFO("prompt: " << c.prompt);
    const auto o =
        run_in(cwd.path, HS_BINARY,
               "generate -p " + shell_quote(c.prompt) + " -n " + std::to_string(n) + " -t 0",
               "env -u HYBRIDSERVE_BUILTIN_MODEL");
    INFO("stderr: " << o.err);
    REQUIRE(o.status == 0);
    CHECK(o.out == c.text + "\n");
    CHECK(o.err.find("model builtin (LlamaForCausalLM, 6 layers, hidden 256, 5.8M parameters)") !=
          std::string::npos);
    CHECK(o.err.find("engine (cpu)") != std::string::npos);
    CHECK(o.seconds < 30.0);  // about 0.2 s on 2 cores
  }
}

TEST_CASE("the built-in model next to the executable comes first", "[builtin][cli]") {
  // An install-like layout: PREFIX/bin/hybridserve and PREFIX/models/builtin, here holding the
  // llama-tiny fixture (3 layers) so that it cannot be mistaken for the real one (6 layers).
  // Made beside the build's binary so that a hard link works (else it is copied).
  const fs::path build = fs::path(HS_BINARY).parent_path();
  std::string tmpl = (build / "hs_builtin_XXXXXX").string();
  REQUIRE(mkdtemp(tmpl.data()) != nullptr);
  const fs::path prefix = tmpl;
  struct cleanup {
    fs::path p;
    ~cleanup() { fs::remove_all(p); }
  } guard{prefix};
  fs::create_directories(prefix / "bin");
  fs::create_directories(prefix / "models" / "builtin");
  std::error_code ec;
  fs::create_hard_link(HS_BINARY, prefix / "bin" / "hybridserve", ec);
  if (ec) fs::copy_file(HS_BINARY, prefix / "bin" / "hybridserve");
  for (const auto& f : fs::directory_iterator(hs::test::fixture("llama-tiny")))
    fs::copy_file(f.path(), prefix / "models" / "builtin" / f.path().filename());

  hs::test::temp_dir cwd;
  const auto o =
      run_in(cwd.path, (prefix / "bin" / "hybridserve").string(),
             "generate --prompt-ids 1,2,3 -n 2 -t 0", "env -u HYBRIDSERVE_BUILTIN_MODEL");
  INFO("stderr: " << o.err);
  CHECK(o.status == 0);
  CHECK(o.err.find("model builtin (LlamaForCausalLM, 3 layers, hidden 64") != std::string::npos);
}

TEST_CASE("no built-in model: the error names the folders tried; --shape still works",
          "[builtin][cli]") {
  hs::test::temp_dir cwd;
  const std::string nowhere = cwd.file("no-such-model");
  const auto o = run_in(cwd.path, HS_BINARY, "generate -p Hello -n 2",
                        "env HYBRIDSERVE_BUILTIN_MODEL=" + shell_quote(nowhere));
  CHECK(o.status == 1);
  CHECK(o.out.empty());
  CHECK(o.err.find("built-in model") != std::string::npos);
  CHECK(o.err.find(nowhere) != std::string::npos);
  CHECK(o.err.find("--shape") != std::string::npos);

  const auto tiny = run_in(cwd.path, HS_BINARY, "generate --shape tiny -p Hello -n 4 -t 0",
                           "env HYBRIDSERVE_BUILTIN_MODEL=" + shell_quote(nowhere));
  INFO("stderr: " << tiny.err);
  CHECK(tiny.status == 0);
  CHECK(tiny.err.find("model tiny (OPTForCausalLM") != std::string::npos);
}

TEST_CASE("serve with the default configuration serves the built-in model", "[builtin][cli]") {
  hs::test::temp_dir cwd;
  const int port = 20000 + int((getpid() + 7919) % 20000);
  const std::string cmd = "cd " + shell_quote(cwd.path) +
                          " && exec env -u HYBRIDSERVE_BUILTIN_MODEL " + shell_quote(HS_BINARY) +
                          " serve --set http.port=0 --set server.port=" + std::to_string(port) +
                          " 2>/dev/null";
  const pid_t pid = hs::test::spawn_shell(cmd);
  REQUIRE(pid >= 0);
  struct stopper {
    pid_t pid;
    ~stopper() {
      kill(pid, SIGTERM);
      int st = 0;
      for (int i = 0; i < 100 && waitpid(pid, &st, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (waitpid(pid, &st, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
      }
    }
  } guard{pid};
  line_client c;
  REQUIRE(hs::test::connect_when_listening(c, port, 300));
  REQUIRE(c.send_line(R"({"op":"hello","version":1})"));
  auto hello = c.read_line(20000);
  REQUIRE(hello.has_value());
  CHECK(json::parse(*hello)["model"] == "builtin");

  int n = 0;
  const auto cases = hs::test::golden_cases(&n);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& gc = cases[i];
    INFO("prompt: " << gc.prompt);
    const std::string id = "g" + std::to_string(i);
    REQUIRE(c.send_line(json{
        {"op", "generate"},
        {"id", id},
        {"prompt", gc.prompt},
        {"max_tokens", n},
        {"temperature", 0},
        {"stream", false}}.dump()));
    json done;
    for (;;) {
      auto l = c.read_line(60000);
      REQUIRE(l.has_value());
      done = json::parse(*l);
      if (done.value("id", json()) == id) break;
    }
    REQUIRE(done["type"] == "done");
    CHECK(gc.prompt + done["text"].get<std::string>() == gc.text);
  }
}
