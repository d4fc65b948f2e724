// A blocking newline-delimited JSON client over TCP, for `hybridserve client`, `console` and the
// tests (plain POSIX sockets: it must not share anything with the server it talks to).
#pragma once
#include <optional>
#include <string>

namespace hs::cli {

class line_client {
 public:
  line_client() = default;
  ~line_client();
  line_client(const line_client&) = delete;
  line_client& operator=(const line_client&) = delete;

  /// "HOST:PORT" or "PORT" (loopback). Empty on success, else what failed.
  std::string connect(const std::string& where);
  bool send_line(const std::string& line);
  /// The next line, or nullopt on timeout (timeout_ms < 0 = wait forever) or closed connection.
  std::optional<std::string> read_line(int timeout_ms = -1);
  bool closed() const { return closed_; }
  void close();

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string buf_;
};

}  // namespace hs::cli
