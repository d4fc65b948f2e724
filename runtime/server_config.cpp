// TOML configuration of `hybridserve serve`. One table (the schema below) lists every section and
// key with its reader and printer, so parsing, error messages, server_config_keys() and
// describe() cannot disagree about which keys exist or in which order.
#include "hybridserve/server_config.hpp"

#include <toml++/toml.h>
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <string_view>

#include "hybridserve/synthetic_model.hpp"
#include "hybridserve/units.hpp"

namespace hs {
namespace {

using toml::node_type;

// ---- what a reader sees: the node and where it came from

struct value_ctx {
  const toml::node& node;
  std::string where;   // "FILE:LINE:COL" or "--set section.key=value"
  std::string key;     // "section.key"
  std::string source;  // the file's name, for positions inside arrays; empty for --set
};

[[noreturn]] void fail(const std::string& where, const std::string& message) {
  throw error(where + ": " + message);
}

std::string position(const std::string& source_name, const toml::source_region& r) {
  return source_name + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column);
}

// A TOML basic string (not std::quoted, which <filesystem> brings in and ADL would prefer).
std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", unsigned(u));
          out += buf;
        } else {
          out += ch;  // UTF-8 passes through: TOML strings are UTF-8
        }
    }
  }
  return out + "\"";
}

// Shortest text that reads back as the same double and is a TOML float (has '.' or 'e').
std::string float_text(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

template <class T>
std::string to_text(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// A scalar as TOML writes it ("x" quoted, 5, 1.5, true, 1979-05-27); "" for arrays and tables.
std::string value_text(const toml::node& n) {
  switch (n.type()) {
    case node_type::string:
      return toml_string(n.as_string()->get());
    case node_type::integer:
      return std::to_string(n.as_integer()->get());
    case node_type::floating_point:
      return float_text(n.as_floating_point()->get());
    case node_type::boolean:
      return n.as_boolean()->get() ? "true" : "false";
    case node_type::array:
    case node_type::table:
      return "";
    case node_type::date:
      return to_text(n.as_date()->get());
    case node_type::time:
      return to_text(n.as_time()->get());
    case node_type::date_time:
      return to_text(n.as_date_time()->get());
    default:
      return "";
  }
}

// What was found, for "must be ..., got ..." messages: "string \"x\"", "integer 5", "an array".
std::string describe_node(const toml::node& n) {
  switch (n.type()) {
    case node_type::array:
      return "an array";
    case node_type::table:
      return "a table";
    case node_type::floating_point:
      return "float " + value_text(n);
    default:  // TOML++'s names: string, integer, boolean, date, time, date-time
      return to_text(n.type()) + " " + value_text(n);
  }
}

[[noreturn]] void wrong_type(const value_ctx& x, const std::string& expected) {
  fail(x.where, "'" + x.key + "' must be " + expected + ", got " + describe_node(x.node));
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

// ---- readers

std::string read_string(const value_ctx& x) {
  if (!x.node.is_string()) wrong_type(x, "a string");
  return x.node.as_string()->get();
}

std::string read_nonempty_string(const value_ctx& x, const char* example) {
  std::string s = read_string(x);
  if (s.empty()) fail(x.where, "'" + x.key + "' must not be empty (e.g. " + example + ")");
  return s;
}

int64_t read_int(const value_ctx& x, int64_t lo, int64_t hi) {
  if (!x.node.is_integer()) wrong_type(x, "an integer");
  const int64_t v = x.node.as_integer()->get();
  if (v < lo || v > hi)
    fail(x.where, "'" + x.key + "' = " + std::to_string(v) + " is out of range " +
                      std::to_string(lo) + ".." + std::to_string(hi));
  return v;
}

std::string read_choice(const value_ctx& x, const std::vector<std::string>& choices) {
  std::string s = read_string(x);
  if (std::find(choices.begin(), choices.end(), s) == choices.end()) {
    std::vector<std::string> shown;
    for (const auto& c : choices) shown.push_back(c.empty() ? "\"\"" : c);
    fail(x.where, "'" + x.key + "' = " + toml_string(s) + " is not one of " + join(shown));
  }
  return s;
}

// Byte sizes: an integer, or a string parse_bytes reads ("24GiB", "0", "1e9").
int64_t read_bytes(const value_ctx& x) {
  if (x.node.is_integer()) {
    const int64_t v = x.node.as_integer()->get();
    if (v < 0) fail(x.where, "'" + x.key + "' = " + std::to_string(v) + " is negative");
    return v;
  }
  if (!x.node.is_string()) wrong_type(x, "a byte size (an integer, or a string like \"24GiB\")");
  const std::string s = x.node.as_string()->get();
  auto b = parse_bytes(s);
  if (!b)
    fail(x.where, "'" + x.key + "' = " + toml_string(s) + " is not a byte size: " + b.error());
  return *b;
}

// Exact units where they exist, so 25769803776 prints as "24GiB"; other sizes as integers.
std::string bytes_text(int64_t v) {
  if (v == 0) return "\"0\"";
  const char* units[] = {"TiB", "GiB", "MiB", "KiB"};
  int64_t scale = int64_t(1) << 40;
  for (const char* u : units) {
    if (v % scale == 0) return "\"" + std::to_string(v / scale) + u + "\"";
    scale >>= 10;
  }
  return std::to_string(v);
}

// ---- the schema

struct key_spec {
  std::string name;
  std::vector<node_type> accepts;  // for --set: which parsed types to keep rather than raw text
  std::function<void(server_config&, const value_ctx&)> read;
  std::function<std::string(const server_config&, secrets)> print;
};

struct section_spec {
  std::string name;
  std::vector<key_spec> keys;
};

template <class S>
using section_ptr = S server_config::*;

template <class S, class T>
key_spec int_key(const char* name, section_ptr<S> sec, T S::*field, int64_t lo, int64_t hi) {
  return {name,
          {node_type::integer},
          [=](server_config& c, const value_ctx& x) { (c.*sec).*field = T(read_int(x, lo, hi)); },
          [=](const server_config& c, secrets) { return std::to_string((c.*sec).*field); }};
}

template <class S>
key_spec bool_key(const char* name, section_ptr<S> sec, bool S::*field) {
  return {name,
          {node_type::boolean},
          [=](server_config& c, const value_ctx& x) {
            if (!x.node.is_boolean()) wrong_type(x, "true or false");
            (c.*sec).*field = x.node.as_boolean()->get();
          },
          [=](const server_config& c, secrets) {
            return std::string((c.*sec).*field ? "true" : "false");
          }};
}

template <class S>
key_spec string_key(const char* name, section_ptr<S> sec, std::string S::*field,
                    bool secret = false) {
  return {name,
          {node_type::string},
          [=](server_config& c, const value_ctx& x) { (c.*sec).*field = read_string(x); },
          [=](const server_config& c, secrets s) {
            const std::string& v = (c.*sec).*field;
            return toml_string(secret && s == secrets::hide && !v.empty() ? "***" : v);
          }};
}

template <class S>
key_spec listen_key(section_ptr<S> sec) {
  return {"listen",
          {node_type::string},
          [=](server_config& c, const value_ctx& x) {
            (c.*sec).listen = read_nonempty_string(x, "\"127.0.0.1\", or \"0.0.0.0\" for all");
          },
          [=](const server_config& c, secrets) { return toml_string((c.*sec).listen); }};
}

template <class S>
key_spec choice_key(const char* name, section_ptr<S> sec, std::string S::*field,
                    std::vector<std::string> choices) {
  return {name,
          {node_type::string},
          [=](server_config& c, const value_ctx& x) { (c.*sec).*field = read_choice(x, choices); },
          [=](const server_config& c, secrets) { return toml_string((c.*sec).*field); }};
}

template <class S>
key_spec bytes_key(const char* name, section_ptr<S> sec, int64_t S::*field) {
  return {name,
          {node_type::integer, node_type::string},
          [=](server_config& c, const value_ctx& x) { (c.*sec).*field = read_bytes(x); },
          [=](const server_config& c, secrets) { return bytes_text((c.*sec).*field); }};
}

constexpr int64_t k_i64_max = std::numeric_limits<int64_t>::max();

const std::vector<section_spec>& schema() {
  using C = server_config;
  static const std::vector<section_spec> s = {
      {"model",
       {string_key("path", &C::model, &C::model_section::path),
        {"shape",
         {node_type::string},
         [](C& c, const value_ctx& x) {
           std::string v = read_string(x);
           // Checked here, not when the model opens, so a typo points at its line.
           if (!v.empty()) {
             auto r = synthetic_config(v);
             if (!r) fail(x.where, "'" + x.key + "' = " + toml_string(v) + ": " + r.error());
           }
           c.model.shape = std::move(v);
         },
         [](const C& c, secrets) { return toml_string(c.model.shape); }},
        int_key("weight_seed", &C::model, &C::model_section::weight_seed, 0, k_i64_max),
        choice_key("dtype", &C::model, &C::model_section::dtype,
                   {"float16", "bfloat16", "float32"})}},
      {"backend",
       {choice_key("kind", &C::backend, &C::backend_section::kind, {"cpu", "cuda", "auto"}),
        bytes_key("device_budget", &C::backend, &C::backend_section::device_budget),
        bytes_key("host_budget", &C::backend, &C::backend_section::host_budget)}},
      {"cache",
       {{"kv_ratio",
         {node_type::string, node_type::floating_point, node_type::integer},
         [](C& c, const value_ctx& x) {
           const char* expected = "\"auto\" or a number in 0..1";
           if (x.node.is_string()) {
             if (x.node.as_string()->get() != "auto") wrong_type(x, expected);
             c.cache.auto_ratio = true;
             c.cache.kv_ratio = server_config::cache_section{}.kv_ratio;
             return;
           }
           if (!x.node.is_number()) wrong_type(x, expected);
           const double r = x.node.is_integer() ? double(x.node.as_integer()->get())
                                                : x.node.as_floating_point()->get();
           if (!(r >= 0 && r <= 1))
             fail(x.where, "'" + x.key + "' = " + value_text(x.node) +
                               " is out of range 0..1 (or \"auto\")");
           c.cache.auto_ratio = false;
           c.cache.kv_ratio = r;
         },
         [](const C& c, secrets) {
           return c.cache.auto_ratio ? std::string("\"auto\"") : float_text(c.cache.kv_ratio);
         }},
        int_key("block_size", &C::cache, &C::cache_section::block_size, 1, 4096)}},
      {"batching",
       {int_key("max_batch", &C::batching, &C::batching_section::max_batch, 1, 65536),
        int_key("max_step_tokens", &C::batching, &C::batching_section::max_step_tokens, 1, 1 << 20),
        int_key("max_queue", &C::batching, &C::batching_section::max_queue, 1, 1 << 20),
        bool_key("prefill_first", &C::batching, &C::batching_section::prefill_first)}},
      {"server",
       {listen_key(&C::server),
        int_key("port", &C::server, &C::server_section::port, 0, 65535),
        int_key("max_line_bytes", &C::server, &C::server_section::max_line_bytes, 1024,
                int64_t(1) << 30),
        int_key("max_requests_per_connection", &C::server,
                &C::server_section::max_requests_per_connection, 1, 1 << 20),
        int_key("max_requests_total", &C::server, &C::server_section::max_requests_total, 1,
                1 << 24),
        int_key("max_connections", &C::server, &C::server_section::max_connections, 1, 65536),
        {"auth_tokens",
         {node_type::array},
         [](C& c, const value_ctx& x) {
           const auto* a = x.node.as_array();
           if (!a) wrong_type(x, "an array of strings");
           std::vector<std::string> tokens;
           for (std::size_t i = 0; i < a->size(); ++i) {
             const toml::node& el = *a->get(i);
             // An element of a file array has its own position; one from --set has none.
             const std::string where = x.source.empty() ? x.where : position(x.source, el.source());
             const value_ctx ex{el, where, x.key + "[" + std::to_string(i) + "]", x.source};
             tokens.push_back(read_nonempty_string(ex, "a long random string"));
           }
           c.server.auth_tokens = std::move(tokens);
         },
         [](const C& c, secrets s) {
           std::vector<std::string> shown;
           for (const auto& t : c.server.auth_tokens)
             shown.push_back(toml_string(s == secrets::hide ? "***" : t));
           return "[" + join(shown) + "]";
         }},
        int_key("max_tokens_default", &C::server, &C::server_section::max_tokens_default, 1,
                1 << 24),
        int_key("max_tokens_limit", &C::server, &C::server_section::max_tokens_limit, 1, 1 << 24)}},
      {"http",
       {listen_key(&C::http), int_key("port", &C::http, &C::http_section::port, 0, 65535),
        string_key("api_key", &C::http, &C::http_section::api_key, true),
        choice_key("chat_template", &C::http, &C::http_section::chat_template,
                   {"chatml", "llama2", "llama3", "zephyr", ""})}},
      {"admin",
       {listen_key(&C::admin), int_key("port", &C::admin, &C::admin_section::port, 0, 65535),
        string_key("token", &C::admin, &C::admin_section::token, true)}},
      {"threads",
       {int_key("scheduler", &C::threads, &C::threads_section::scheduler, 0, 1024),
        int_key("blas", &C::threads, &C::threads_section::blas, 0, 1024)}},
      {"logging",
       {choice_key("level", &C::logging, &C::logging_section::level,
                   {"error", "warn", "info", "debug"}),
        string_key("file", &C::logging, &C::logging_section::file)}},
  };
  return s;
}

// ---- unknown names: suggest the nearest valid one

// Optimal string alignment distance: a swap of two neighbours (prot/port) counts as one edit.
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i)
    for (std::size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// Close enough to be a typo: a third of the name may differ (at least one character).
std::string nearest(const std::string& name, const std::vector<std::string>& choices) {
  std::string best;
  std::size_t best_d = std::max<std::size_t>(1, name.size() / 3) + 1;
  for (const auto& c : choices) {
    const std::size_t d = edit_distance(name, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

std::vector<std::string> section_names() {
  std::vector<std::string> v;
  for (const auto& s : schema()) v.push_back(s.name);
  return v;
}

std::vector<std::string> key_names(const section_spec& s) {
  std::vector<std::string> v;
  for (const auto& k : s.keys) v.push_back(k.name);
  return v;
}

const section_spec* find_section(const std::string& name) {
  for (const auto& s : schema())
    if (s.name == name) return &s;
  return nullptr;
}

// `is_table`: [name] or name.key; otherwise a plain key above every [section] header.
[[noreturn]] void unknown_section(const std::string& where, const std::string& name,
                                  bool is_table) {
  const auto names = section_names();
  std::string hint;
  const std::string near = nearest(name, names);
  if (!near.empty()) hint = "did you mean '" + near + "'? ";
  std::vector<std::string> owners;
  for (const auto& s : schema())
    for (const auto& k : s.keys)
      if (k.name == name) owners.push_back("[" + s.name + "]");
  if (!is_table && !owners.empty())
    hint += "keys belong in a section; '" + name + "' is a key of " + join(owners) + "; ";
  fail(where, std::string(is_table ? "unknown section '" : "unknown top-level key '") + name +
                  "' (" + hint + "valid sections: " + join(names) + ")");
}

[[noreturn]] void unknown_key(const std::string& where, const section_spec& s,
                              const std::string& name) {
  const auto names = key_names(s);
  const std::string near = nearest(name, names);
  fail(where, "unknown key '" + s.name + "." + name + "' (" +
                  (near.empty() ? "" : "did you mean '" + near + "'? ") + "valid keys of [" +
                  s.name + "]: " + join(names) + ")");
}

const key_spec& find_key(const section_spec& s, const std::string& name, const std::string& where) {
  for (const auto& k : s.keys)
    if (k.name == name) return k;
  unknown_key(where, s, name);
}

// Where each key was last set and in which order, for cross-field messages; absent = default.
struct origin_map {
  std::map<std::string, std::pair<int, std::string>> at;
  int next = 0;
  void set(const std::string& key, const std::string& where) { at[key] = {next++, where}; }
};

// ---- the file

// A name is located at its key; a value at itself. Either may lack a position (tables made
// implicitly by [a.b] or a dotted key), then the other one stands in.
std::string key_position(const std::string& source_name, const toml::key& k, const toml::node& n) {
  if (k.source().begin.line) return position(source_name, k.source());
  if (n.source().begin.line) return position(source_name, n.source());
  return source_name;
}

std::string value_position(const std::string& source_name, const toml::key& k,
                           const toml::node& n) {
  if (n.source().begin.line) return position(source_name, n.source());
  return key_position(source_name, k, n);
}

void apply_table(server_config& c, const toml::table& root, const std::string& source_name,
                 origin_map& origin) {
  for (const auto& [sec_key, sec_node] : root) {
    const std::string sec_name(sec_key.str());
    const section_spec* spec = find_section(sec_name);
    if (!spec)
      unknown_section(key_position(source_name, sec_key, sec_node), sec_name, sec_node.is_table());
    const auto* tbl = sec_node.as_table();
    if (!tbl)
      fail(value_position(source_name, sec_key, sec_node), "'" + sec_name + "' must be a table ([" +
                                                               sec_name + "]), got " +
                                                               describe_node(sec_node));
    for (const auto& [key, node] : *tbl) {
      const std::string name(key.str());
      const key_spec& k = find_key(*spec, name, key_position(source_name, key, node));
      const std::string full = sec_name + "." + name;
      const value_ctx x{node, value_position(source_name, key, node), full, source_name};
      k.read(c, x);
      origin.set(full, x.where);
    }
  }
}

// ---- --set overrides

void apply_override(server_config& c, const std::string& text, origin_map& origin) {
  const std::string where = "--set " + text;
  const auto eq = text.find('=');
  const auto dot = text.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    fail(where, "expected section.key=value, e.g. --set server.port=7000");
  auto trim = [](std::string s) {
    const char* ws = " \t";
    s.erase(0, s.find_first_not_of(ws));
    s.erase(s.find_last_not_of(ws) + 1);
    return s;
  };
  const std::string sec_name = trim(text.substr(0, dot));
  const std::string name = trim(text.substr(dot + 1, eq - dot - 1));
  const std::string value = text.substr(eq + 1);
  const section_spec* spec = find_section(sec_name);
  if (!spec) unknown_section(where, sec_name, true);
  const key_spec& k = find_key(*spec, name, where);

  // The value as TOML when it is exactly one TOML value; otherwise, or when the key takes text
  // and TOML read something else (--set admin.token=12345), the raw text as a string.
  toml::value<std::string> raw(value);
  toml::table parsed;
  const toml::node* node = &raw;
  try {
    parsed = toml::parse("x = " + value, std::string_view("--set"));
    const toml::node* v = parsed.get("x");
    const bool text_ok =
        std::find(k.accepts.begin(), k.accepts.end(), node_type::string) != k.accepts.end();
    const bool kept = std::find(k.accepts.begin(), k.accepts.end(),
                                v ? v->type() : node_type::none) != k.accepts.end();
    if (parsed.size() == 1 && v && (kept || !text_ok)) node = v;
  } catch (const toml::parse_error&) {
    // not TOML: a bare word such as debug or 0.0.0.0
  }
  const std::string full = sec_name + "." + name;
  k.read(c, value_ctx{*node, where, full, ""});
  origin.set(full, where);
}

// ---- checks that involve several keys

void check_cross_fields(const server_config& c, const std::string& source_name,
                        const origin_map& origin) {
  // Point at whichever of the two keys was set last (the setting that broke the rule); when
  // both are defaults there is no position, only the file.
  auto later = [&](const std::string& a, const std::string& b) {
    const auto ia = origin.at.find(a), ib = origin.at.find(b);
    if (ia == origin.at.end() && ib == origin.at.end()) return source_name;
    if (ia == origin.at.end()) return ib->second.second;
    if (ib == origin.at.end()) return ia->second.second;
    return ia->second.first > ib->second.first ? ia->second.second : ib->second.second;
  };
  if (!c.model.path.empty() && !c.model.shape.empty())
    fail(later("model.path", "model.shape"),
         "'model.path' and 'model.shape' are both set; a model is either a checkpoint folder "
         "or a synthetic shape");
  if (c.admin.port != 0 && c.admin.token.empty())
    fail(later("admin.token", "admin.port"),
         "'admin.port' = " + std::to_string(c.admin.port) +
             " enables the admin console, which requires 'admin.token' (it can drain and shut "
             "down the server); set a token or port = 0");
  if (c.batching.max_step_tokens < c.batching.max_batch)
    fail(later("batching.max_batch", "batching.max_step_tokens"),
         "'batching.max_step_tokens' = " + std::to_string(c.batching.max_step_tokens) +
             " is less than 'batching.max_batch' = " + std::to_string(c.batching.max_batch) +
             ": a pass must be able to decode every running sequence");
  if (c.server.max_tokens_default > c.server.max_tokens_limit)
    fail(later("server.max_tokens_limit", "server.max_tokens_default"),
         "'server.max_tokens_default' = " + std::to_string(c.server.max_tokens_default) +
             " is more than 'server.max_tokens_limit' = " +
             std::to_string(c.server.max_tokens_limit));
  // Two enabled listeners on one port: the second bind would fail at start with a vaguer error.
  const std::pair<const char*, int> ports[] = {
      {"server", c.server.port}, {"http", c.http.port}, {"admin", c.admin.port}};
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = i + 1; j < 3; ++j)
      if (ports[i].second != 0 && ports[i].second == ports[j].second) {
        const std::string a = std::string(ports[i].first) + ".port";
        const std::string b = std::string(ports[j].first) + ".port";
        fail(later(a, b), "'" + a + "' and '" + b + "' are both " +
                              std::to_string(ports[i].second) +
                              "; each listener needs its own "
                              "port (0 disables one)");
      }
}

server_config parse_or_throw(const std::string& text, const std::string& source_name,
                             const std::vector<std::string>& overrides) {
  server_config c;
  origin_map origin;
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(source_name));
  } catch (const toml::parse_error& e) {
    fail(position(source_name, e.source()), std::string(e.description()));
  }
  apply_table(c, root, source_name, origin);
  for (const auto& o : overrides) apply_override(c, o, origin);
  check_cross_fields(c, source_name, origin);
  return c;
}

}  // namespace

result<server_config> parse_server_config_text(const std::string& text,
                                               const std::string& source_name,
                                               const std::vector<std::string>& overrides) {
  return capture([&] { return parse_or_throw(text, source_name, overrides); });
}

result<server_config> load_server_config(const std::string& path,
                                         const std::vector<std::string>& overrides) {
  if (path.empty()) return parse_server_config_text("", "(defaults)", overrides);
  // A directory opens as an empty stream on Linux and would read as "all defaults".
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return result<server_config>::failure(path + ": is a directory, not a configuration file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return result<server_config>::failure(path + ": cannot open the configuration file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return result<server_config>::failure(path + ": cannot read the configuration file");
  return parse_server_config_text(text.str(), path, overrides);
}

std::vector<std::string> server_config_keys() {
  std::vector<std::string> v;
  for (const auto& s : schema())
    for (const auto& k : s.keys) v.push_back(s.name + "." + k.name);
  return v;
}

std::string describe(const server_config& c, secrets sec) {
  std::string out;
  for (const auto& s : schema()) {
    if (!out.empty()) out += "\n";
    out += "[" + s.name + "]\n";
    for (const auto& k : s.keys) out += k.name + " = " + k.print(c, sec) + "\n";
  }
  return out;
}

}  // namespace hs
