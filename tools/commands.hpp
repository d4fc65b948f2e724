// Subcommands of the hybridserve program; each registers its options and runs.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "hybridserve/engine.hpp"
#include "hybridserve/model_source.hpp"

namespace hs::cli {

/// --model / --shape / --weight-seed / --dtype
void add_model_options(CLI::App* cmd, model_source& src);

/// Engine options shared by generate, serve and bench: --backend, --device-budget,
/// --host-budget, --kv-ratio, --block-size, --max-batch, --step-tokens.
struct engine_flags {
  engine_options opts;
  std::string device_budget, host_budget, kv_ratio = "auto";
  /// Applies the string flags to opts; empty string or an error message.
  std::string resolve();
};
void add_engine_options(CLI::App* cmd, engine_flags& f);

/// Registers the subcommand; `run` is set to its entry point when it is chosen.
void add_generate_command(CLI::App& app, std::function<int()>& run);
void add_plan_command(CLI::App& app, std::function<int()>& run);
void add_bench_command(CLI::App& app, std::function<int()>& run);
void add_serve_command(CLI::App& app, std::function<int()>& run);
void add_client_command(CLI::App& app, std::function<int()>& run);
void add_console_command(CLI::App& app, std::function<int()>& run);

}  // namespace hs::cli
