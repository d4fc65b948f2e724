// A `hybridserve serve` child process for the serve tests: started through /bin/sh, reached over
// TCP once it listens.
#pragma once
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "line_client.hpp"

namespace hs::test {

/// fork + `sh -c <shell_cmd>` (the command should `exec` the server); the child's pid, or -1.
inline pid_t spawn_shell(const std::string& shell_cmd) {
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", shell_cmd.c_str(), (char*)nullptr);
    _exit(127);
  }
  return pid;
}

/// Connects `c` to 127.0.0.1:port, trying every 100 ms up to `tries` times (a server still
/// loading its model does not listen yet). True once connected.
inline bool connect_when_listening(hs::cli::line_client& c, int port, int tries) {
  for (int i = 0; i < tries; ++i) {
    if (c.connect("127.0.0.1:" + std::to_string(port)).empty()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace hs::test
