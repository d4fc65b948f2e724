// The TCP message protocol, version 1 (docs/PROTOCOL.md): parsing and validating client lines,
// serialising server replies, and splitting a byte stream into lines. Pure functions: no
// sockets, no actors, so the parser can be fuzzed and tested on its own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

// Only the declaration: includers that build JSON include <nlohmann/json.hpp> themselves.
#include <nlohmann/json_fwd.hpp>

#include "hybridserve/sampler.hpp"

namespace hs::proto {

/// The only protocol version this server speaks.
inline constexpr int protocol_version = 1;

enum class error_code {
  bad_json,
  bad_request,
  unknown_op,
  duplicate_id,
  unknown_id,
  line_too_long,
  context_overflow,
  overloaded,
  unauthorized,
  internal
};
/// The wire name of a code ("bad_json", ...).
const char* code_name(error_code c);

struct limits {
  std::size_t max_line_bytes = 1 << 20;  // without the '\n' (and a trailing '\r')
  std::size_t max_id_bytes = 128;
  int max_tokens_default = 128;
  int max_tokens_limit = 4096;
  std::size_t max_prompt_ids = 1 << 20;
  std::size_t max_stop = 16;
  std::size_t max_stop_bytes = 256;
  std::size_t max_stop_ids = 1024;  // extension: stop_ids needs its own bound
  std::size_t max_depth = 64;       // extension: JSON nesting, anywhere in the line
};

struct hello_msg {
  int version = protocol_version;
  std::string client, token;
};
struct ping_msg {
  std::string id;
};
struct generate_msg {
  std::string id;
  std::optional<std::string> prompt;  // exactly one of prompt and prompt_ids
  std::optional<std::vector<int32_t>> prompt_ids;
  int max_tokens = 128;
  sampling_params sampling;  // temperature 1 unless given; seed given -> seeded
  std::vector<std::string> stop;
  std::vector<int32_t> stop_ids;
  bool stream = true;
};
struct cancel_msg {
  std::string id;  // the id of the request to cancel
};
struct models_msg {
  std::string id;
};
struct stats_msg {
  std::string id;
};
struct admin_msg {
  std::string id;
  std::string command;  // the console's command line, verbatim
};
using client_msg =
    std::variant<hello_msg, ping_msg, generate_msg, cancel_msg, models_msg, stats_msg, admin_msg>;

struct protocol_error {
  error_code code;
  std::string message;            // for a person: names the field and what is wrong
  std::optional<std::string> id;  // absent when the error concerns the line, not a request
};

/// Parses and validates one line (without its '\n'; a trailing '\r' is tolerated). Never
/// throws: every malformed input becomes a protocol_error.
std::variant<client_msg, protocol_error> parse_line(std::string_view line, const limits& lim);

// ---- server replies: each returns one line of compact JSON WITHOUT the trailing '\n'. Text
// fields may hold arbitrary bytes (model output, names read from files); invalid UTF-8 is
// replaced by U+FFFD so the line is always valid UTF-8 and serialising never throws.

std::string hello_reply(const std::string& server, const std::string& model, int max_context);
std::string pong(const std::string& id);
std::string token_msg(const std::string& id, int index, int32_t token, const std::string& text);

struct done_info {
  std::string finish_reason;  // "stop" | "length" | "cancelled" | "error"
  int64_t prompt_tokens = 0, completion_tokens = 0;
  double queue_ms = 0, ttft_ms = 0, prefill_ms = 0, decode_ms = 0;  // non-finite -> null
  std::optional<std::string> text;  // both set when the request was not streamed
  std::optional<std::vector<int32_t>> ids;
};
std::string done_msg(const std::string& id, const done_info& d);
std::string error_msg(const protocol_error& e);
std::string models_reply(const std::string& id, const nlohmann::json& models_array);
/// `fields` (an object; anything else is ignored) with "type" and "id" put first; a "type" or
/// "id" inside `fields` is overridden.
std::string stats_reply(const std::string& id, const nlohmann::json& fields);
std::string admin_reply(const std::string& id, bool ok, const std::string& text,
                        const nlohmann::json& data);

/// Splits a byte stream into lines. Each feed() replaces `lines` with the lines it completed
/// (without "\n" or "\r\n"; empty lines are dropped). Once a line grows past max_line_bytes
/// without its newline, feed() returns false and keeps returning false: the caller sends
/// line_too_long and closes. Lines completed before the overlong one are still in `lines`.
class line_splitter {
 public:
  explicit line_splitter(std::size_t max_line_bytes) : max_(max_line_bytes) {}
  bool feed(std::string_view bytes);
  bool failed() const { return failed_; }
  /// Bytes held of a line not yet complete.
  std::size_t pending() const { return buf_.size(); }

  std::vector<std::string> lines;

 private:
  std::size_t max_;
  std::string buf_;
  bool failed_ = false;
};

}  // namespace hs::proto
