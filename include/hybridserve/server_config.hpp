// The settings of `hybridserve serve`, read from TOML (config/default.toml documents every key).
// TOML++ stays out of this header so front ends and tests need not compile it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hybridserve/error.hpp"

namespace hs {

/// One struct per TOML section, one field per key; the initialisers are the defaults and must
/// equal config/default.toml (tests/runtime/test_server_config.cpp compares them).
struct server_config {
  struct model_section {
    std::string path;   // Hugging Face folder; empty (with shape empty) = built-in model
    std::string shape;  // synthetic shape name or spec; exclusive with path
    uint64_t weight_seed = 1;
    std::string dtype = "float16";  // float16 | bfloat16 | float32 (synthetic weights only)
  };
  struct backend_section {
    std::string kind = "auto";  // cpu | cuda | auto
    int64_t device_budget = 0;  // bytes; 0 = the whole model fits
    int64_t host_budget = 0;    // bytes; 0 = no limit
  };
  struct cache_section {
    bool auto_ratio = true;  // kv_ratio = "auto"
    double kv_ratio = 1.0;   // 0..1, meaningful when !auto_ratio
    int block_size = 16;
  };
  struct batching_section {
    int max_batch = 64;
    int max_step_tokens = 2048;
    int max_queue = 1024;
    bool prefill_first = false;  // intake_options::prefill_first
  };
  struct server_section {  // newline-delimited JSON over TCP
    std::string listen = "127.0.0.1";
    int port = 7070;  // 0 = disabled
    int64_t max_line_bytes = 1048576;
    int max_requests_per_connection = 64;
    int max_requests_total = 1024;
    int max_connections = 256;
    std::vector<std::string> auth_tokens;  // empty = no authentication
    int max_tokens_default = 128;
    int max_tokens_limit = 4096;
  };
  struct http_section {  // OpenAI-compatible endpoint
    std::string listen = "127.0.0.1";
    int port = 8080;            // 0 = disabled
    std::string api_key;        // empty = no authentication
    std::string chat_template;  // chatml | llama2 | llama3 | zephyr | "" = tokenizer_config
  };
  struct admin_section {
    std::string listen = "127.0.0.1";
    int port = 0;  // 0 = disabled; enabling requires a token
    std::string token;
  };
  struct threads_section {
    int scheduler = 0;  // CAF workers; 0 = CAF's default
    int blas = 0;       // OpenBLAS threads; 0 = OpenBLAS's default
  };
  struct logging_section {
    std::string level = "info";  // error | warn | info | debug
    std::string file;            // empty = stderr
  };

  model_section model;
  backend_section backend;
  cache_section cache;
  batching_section batching;
  server_section server;
  http_section http;
  admin_section admin;
  threads_section threads;
  logging_section logging;
};

/// Reads a TOML file (empty path: defaults only), then applies `overrides`, each
/// "section.key=value" as given to --set; the value is read as a TOML value and, if that fails,
/// as a string. Errors name FILE:LINE:COLUMN (or "--set section.key=value"), the key and the
/// valid choices.
result<server_config> load_server_config(const std::string& path,
                                         const std::vector<std::string>& overrides = {});

/// The same for TOML text already in memory; `source_name` stands for the file in messages.
result<server_config> parse_server_config_text(const std::string& text,
                                               const std::string& source_name,
                                               const std::vector<std::string>& overrides = {});

/// Every key as "section.key", in config/default.toml's order (for console completion, docs).
std::vector<std::string> server_config_keys();

enum class secrets { hide, show };

/// The effective configuration as TOML that parse_server_config_text reads back (with
/// secrets::show). Tokens and keys print as "***" by default so that --print-config output and
/// the admin console can be pasted without leaking them.
std::string describe(const server_config& c, secrets s = secrets::hide);

}  // namespace hs
