// Protocol version 1: client lines in, validated messages out; replies serialised to one line.
#include "hybridserve/protocol.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <utility>

#include "hybridserve/utf8.hpp"

namespace hs::proto {

namespace {

using json = nlohmann::json;
// Replies keep the documented key order ("type" first) so that logs read like the docs.
using ojson = nlohmann::ordered_json;

constexpr int64_t max_token_id = std::numeric_limits<int32_t>::max();

/// Thrown inside the parser only; parse_line turns it into a protocol_error.
struct rejection {
  protocol_error e;
};

[[noreturn]] void reject(error_code c, std::string message, std::optional<std::string> id) {
  throw rejection{protocol_error{c, std::move(message), std::move(id)}};
}

/// The nesting depth of the JSON text, counting brackets outside strings. nlohmann's parser
/// does not recurse, but a line of a million '[' still builds a million nodes; refusing deep
/// lines up front is cheap and no client needs more than a few levels.
bool deeper_than(std::string_view s, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

/// The request id if `obj` carries a valid one, else nothing (used to label errors).
std::optional<std::string> valid_id(const json& obj, const limits& lim) {
  auto it = obj.find("id");
  if (it == obj.end() || !it->is_string()) return std::nullopt;
  const auto& s = it->get_ref<const std::string&>();
  if (s.empty() || s.size() > lim.max_id_bytes) return std::nullopt;
  return s;
}

/// What a wrongly typed value is, for messages: numbers and booleans as written, other
/// values by their type only (a string could be as long as the line).
std::string describe(const json& v) {
  if (v.is_number() || v.is_boolean()) return v.dump();
  return std::string("a") + (v.is_array() || v.is_object() ? "n " : " ") + v.type_name();
}

/// Reads the fields of one request; every complaint carries the request's id.
class reader {
 public:
  reader(const json& obj, std::optional<std::string> id) : obj_(obj), id_(std::move(id)) {}

  [[noreturn]] void fail(const std::string& message) const {
    reject(error_code::bad_request, message, id_);
  }

  /// The field, or nullptr when absent. null counts as absent so that clients which send
  /// every optional field (Python's None) work.
  const json* get(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::optional<std::string> string(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(std::string(key) + " must be a string, got " + describe(*v));
    return v->get<std::string>();
  }

  /// An integer in [lo, hi]; floats (even 3.0) and strings are refused: ints are ints.
  std::optional<int64_t> integer(const char* key, int64_t lo, int64_t hi) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    return integer_value(*v, key, lo, hi);
  }

  int64_t integer_value(const json& v, const std::string& what, int64_t lo, int64_t hi) const {
    const std::string range =
        " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    if (!v.is_number_integer()) fail(what + range + ", got " + describe(v));
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > uint64_t(hi)) fail(what + range + ", got " + std::to_string(u));
      return int64_t(u);
    }
    const int64_t i = v.get<int64_t>();
    if (i < lo || i > hi) fail(what + range + ", got " + std::to_string(i));
    return i;
  }

  /// `range` is only for the message; the caller checks it.
  std::optional<double> number(const char* key, const char* range) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number())
      fail(std::string(key) + " must be a number in " + range + ", got " + describe(*v));
    return v->get<double>();
  }

  std::optional<bool> boolean(const char* key) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail(std::string(key) + " must be true or false, got " + describe(*v));
    return v->get<bool>();
  }

  /// An array of token ids, each in [0, 2^31 - 1].
  std::optional<std::vector<int32_t>> ids(const char* key, std::size_t max_count) const {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_array())
      fail(std::string(key) + " must be an array of token ids, got " + describe(*v));
    if (v->size() > max_count)
      fail(std::string(key) + " has " + std::to_string(v->size()) + " entries, at most " +
           std::to_string(max_count) + " allowed");
    std::vector<int32_t> out;
    out.reserve(v->size());
    for (std::size_t i = 0; i < v->size(); ++i)
      out.push_back(int32_t(integer_value((*v)[i], std::string(key) + "[" + std::to_string(i) + "]",
                                          0, max_token_id)));
    return out;
  }

 private:
  const json& obj_;
  std::optional<std::string> id_;
};

std::string required_id(const json& obj, const limits& lim) {
  auto it = obj.find("id");
  if (it == obj.end() || it->is_null())
    reject(error_code::bad_request, "id is missing: every request needs a string id", {});
  if (!it->is_string())
    reject(error_code::bad_request, "id must be a string, got " + describe(*it), {});
  const auto& s = it->get_ref<const std::string&>();
  if (s.empty()) reject(error_code::bad_request, "id must not be empty", {});
  if (s.size() > lim.max_id_bytes)
    reject(error_code::bad_request,
           "id is " + std::to_string(s.size()) + " bytes long, at most " +
               std::to_string(lim.max_id_bytes) + " allowed",
           {});
  return s;
}

hello_msg parse_hello(const json& obj) {
  // hello carries no id; its errors concern the connection.
  reader r(obj, std::nullopt);
  const json* v = r.get("version");
  const std::string speaks =
      "this server speaks protocol version " + std::to_string(protocol_version);
  if (!v) r.fail("version is missing: " + speaks);
  if (!v->is_number_unsigned() || v->get<uint64_t>() != uint64_t(protocol_version))
    // Echo numbers only: a string or object could be as long as the line.
    r.fail((v->is_number() ? "version " + v->dump() : std::string("a non-numeric version")) +
           " is not supported: " + speaks);
  hello_msg m;
  m.version = protocol_version;
  m.client = r.string("client").value_or("");
  m.token = r.string("token").value_or("");
  return m;
}

generate_msg parse_generate(const json& obj, std::string id, const limits& lim) {
  reader r(obj, id);
  generate_msg m;
  m.id = std::move(id);
  m.prompt = r.string("prompt");
  m.prompt_ids = r.ids("prompt_ids", lim.max_prompt_ids);
  if (m.prompt && m.prompt_ids) r.fail("give either prompt or prompt_ids, not both");
  if (!m.prompt && !m.prompt_ids) r.fail("prompt or prompt_ids is required");
  if (m.prompt_ids && m.prompt_ids->empty()) r.fail("prompt_ids must not be empty");

  m.max_tokens =
      int(r.integer("max_tokens", 0, lim.max_tokens_limit).value_or(lim.max_tokens_default));

  if (auto t = r.number("temperature", "[0, 100] (0 = greedy)")) {
    if (!(*t >= 0 && *t <= 100))  // also false for NaN
      r.fail("temperature must be a number in [0, 100] (0 = greedy)");
    m.sampling.temperature = float(*t);
  } else {
    m.sampling.temperature = 1.0f;
  }
  if (auto p = r.number("top_p", "(0, 1]")) {
    // Checked as the float the sampler will use: 1e-300 is > 0 but rounds to 0.
    if (!(*p > 0 && *p <= 1) || !(float(*p) > 0.f)) r.fail("top_p must be a number in (0, 1]");
    m.sampling.top_p = float(*p);
  }
  if (auto k = r.integer("top_k", 0, std::numeric_limits<int>::max())) m.sampling.top_k = int(*k);
  if (const json* s = r.get("seed")) {
    if (!s->is_number_unsigned())
      r.fail("seed must be an unsigned integer in [0, 18446744073709551615], got " + describe(*s));
    m.sampling.seed = s->get<uint64_t>();
    m.sampling.seeded = true;
  }
  if (auto msg = m.sampling.check(); !msg.empty()) r.fail(msg);  // the sampler's own rules

  if (const json* s = r.get("stop")) {
    // A single string is accepted as a list of one (as OpenAI-style clients send it).
    const json list = s->is_string() ? json::array({*s}) : *s;
    if (!list.is_array()) r.fail("stop must be an array of strings, got " + describe(list));
    if (list.size() > lim.max_stop)
      r.fail("stop has " + std::to_string(list.size()) + " strings, at most " +
             std::to_string(lim.max_stop) + " allowed");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string what = "stop[" + std::to_string(i) + "]";
      if (!list[i].is_string()) r.fail(what + " must be a string, got " + describe(list[i]));
      const auto& str = list[i].get_ref<const std::string&>();
      if (str.empty() || str.size() > lim.max_stop_bytes)
        r.fail(what + " must be 1 to " + std::to_string(lim.max_stop_bytes) + " bytes long");
      m.stop.push_back(str);
    }
  }
  m.stop_ids = r.ids("stop_ids", lim.max_stop_ids).value_or(std::vector<int32_t>{});
  m.stream = r.boolean("stream").value_or(true);
  return m;
}

client_msg parse_object(const json& obj, const limits& lim) {
  auto op_it = obj.find("op");
  if (op_it == obj.end() || op_it->is_null())
    reject(error_code::bad_request, "op is missing", valid_id(obj, lim));
  if (!op_it->is_string())
    reject(error_code::bad_request, "op must be a string, got " + describe(*op_it),
           valid_id(obj, lim));
  const auto& op = op_it->get_ref<const std::string&>();

  if (op == "hello") return parse_hello(obj);
  const bool known = op == "ping" || op == "generate" || op == "cancel" || op == "models" ||
                     op == "stats" || op == "admin";
  if (!known) {
    // The op name is client text: bound what goes back into the message.
    const std::string shown = op.size() > 64 ? op.substr(0, 64) + "..." : op;
    reject(error_code::unknown_op,
           "unknown op \"" + shown +
               "\"; known ops: hello, ping, generate, cancel, models, stats, admin",
           valid_id(obj, lim));
  }
  std::string id = required_id(obj, lim);
  if (op == "ping") return ping_msg{std::move(id)};
  if (op == "generate") return parse_generate(obj, std::move(id), lim);
  if (op == "cancel") return cancel_msg{std::move(id)};
  if (op == "models") return models_msg{std::move(id)};
  if (op == "stats") return stats_msg{std::move(id)};
  reader r(obj, id);
  auto command = r.string("command");
  if (!command || command->empty()) r.fail("command is required: a console command line");
  return admin_msg{std::move(id), std::move(*command)};
}

/// Compact, and never throws on bad UTF-8 hidden in caller-supplied JSON (models, stats).
std::string dump(const ojson& j) {
  return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

std::string clean(const std::string& s) {
  return hs::utf8::sanitize(s);
}

ojson reply(const char* type, const std::string& id) {
  ojson j;
  j["type"] = type;
  j["id"] = clean(id);
  return j;
}

}  // namespace

const char* code_name(error_code c) {
  switch (c) {
    case error_code::bad_json:
      return "bad_json";
    case error_code::bad_request:
      return "bad_request";
    case error_code::unknown_op:
      return "unknown_op";
    case error_code::duplicate_id:
      return "duplicate_id";
    case error_code::unknown_id:
      return "unknown_id";
    case error_code::line_too_long:
      return "line_too_long";
    case error_code::context_overflow:
      return "context_overflow";
    case error_code::overloaded:
      return "overloaded";
    case error_code::unauthorized:
      return "unauthorized";
    case error_code::internal:
      return "internal";
  }
  return "internal";
}

std::variant<client_msg, protocol_error> parse_line(std::string_view line, const limits& lim) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > lim.max_line_bytes)
    return protocol_error{error_code::line_too_long,
                          "line of " + std::to_string(line.size()) +
                              " bytes exceeds the limit of " + std::to_string(lim.max_line_bytes) +
                              " bytes",
                          std::nullopt};
  try {
    if (deeper_than(line, lim.max_depth))
      return protocol_error{error_code::bad_json,
                            "JSON nested deeper than " + std::to_string(lim.max_depth) + " levels",
                            std::nullopt};
    // No exceptions from the parser: a discarded value marks invalid JSON (including invalid
    // UTF-8 inside strings, which nlohmann's lexer refuses).
    const json obj = json::parse(line.data(), line.data() + line.size(), nullptr, false);
    if (obj.is_discarded())
      return protocol_error{error_code::bad_json, "line is not valid JSON", std::nullopt};
    if (!obj.is_object())
      return protocol_error{error_code::bad_json, "line must be a JSON object", std::nullopt};
    return parse_object(obj, lim);
  } catch (rejection& r) {
    return std::move(r.e);
  } catch (const std::exception& e) {
    // Nothing above should throw (out of memory aside); report rather than tear down.
    return protocol_error{error_code::internal, std::string("parser failure: ") + e.what(),
                          std::nullopt};
  }
}

std::string hello_reply(const std::string& server, const std::string& model, int max_context) {
  ojson j;
  j["type"] = "hello";
  j["version"] = protocol_version;
  j["server"] = clean(server);
  j["model"] = clean(model);
  j["max_context"] = max_context;
  return dump(j);
}

std::string pong(const std::string& id) {
  return dump(reply("pong", id));
}

std::string token_msg(const std::string& id, int index, int32_t token, const std::string& text) {
  ojson j = reply("token", id);
  j["index"] = index;
  j["token"] = token;
  j["text"] = clean(text);
  return dump(j);
}

std::string done_msg(const std::string& id, const done_info& d) {
  ojson j = reply("done", id);
  j["finish_reason"] = clean(d.finish_reason);
  j["usage"] = {{"prompt_tokens", d.prompt_tokens}, {"completion_tokens", d.completion_tokens}};
  // nlohmann writes NaN and infinities as null, which keeps the line valid JSON.
  j["timings"] = {{"queue_ms", d.queue_ms},
                  {"ttft_ms", d.ttft_ms},
                  {"prefill_ms", d.prefill_ms},
                  {"decode_ms", d.decode_ms}};
  if (d.text) j["text"] = clean(*d.text);
  if (d.ids) j["ids"] = *d.ids;
  return dump(j);
}

std::string error_msg(const protocol_error& e) {
  ojson j;
  j["type"] = "error";
  j["id"] = e.id ? ojson(clean(*e.id)) : ojson(nullptr);
  j["code"] = code_name(e.code);
  j["message"] = clean(e.message);
  return dump(j);
}

std::string models_reply(const std::string& id, const nlohmann::json& models_array) {
  ojson j = reply("models", id);
  j["models"] = models_array.is_array() ? ojson(models_array) : ojson::array();
  return dump(j);
}

std::string stats_reply(const std::string& id, const nlohmann::json& fields) {
  ojson j = reply("stats", id);
  if (fields.is_object())
    for (const auto& [key, value] : fields.items())
      if (key != "type" && key != "id") j[key] = value;
  return dump(j);
}

std::string admin_reply(const std::string& id, bool ok, const std::string& text,
                        const nlohmann::json& data) {
  ojson j = reply("admin", id);
  j["ok"] = ok;
  j["text"] = clean(text);
  j["data"] = data.is_null() ? ojson::object() : ojson(data);
  return dump(j);
}

bool line_splitter::feed(std::string_view bytes) {
  lines.clear();
  if (failed_) return false;
  // A line is too long when its content, without "\n" and one trailing "\r", exceeds max_.
  auto content_size = [](std::size_t size, bool ends_in_cr) { return size - (ends_in_cr ? 1 : 0); };
  while (!bytes.empty()) {
    const auto nl = bytes.find('\n');
    const std::string_view chunk = bytes.substr(0, nl);  // npos: the rest
    const std::size_t total = buf_.size() + chunk.size();
    const bool ends_in_cr =
        !chunk.empty() ? chunk.back() == '\r' : (!buf_.empty() && buf_.back() == '\r');
    if (total > 0 && content_size(total, ends_in_cr) > max_) {
      // Checked before appending, so an endless line never grows the buffer past the limit.
      failed_ = true;
      buf_.clear();
      buf_.shrink_to_fit();
      return false;
    }
    buf_.append(chunk);
    if (nl == std::string_view::npos) break;
    if (!buf_.empty() && buf_.back() == '\r') buf_.pop_back();
    if (!buf_.empty()) lines.push_back(std::move(buf_));
    buf_.clear();
    bytes.remove_prefix(nl + 1);
  }
  return true;
}

}  // namespace hs::proto
