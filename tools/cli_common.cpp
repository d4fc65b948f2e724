// Options shared by several subcommands.
#include <cblas.h>

#include "commands.hpp"
#include "hybridserve/units.hpp"

namespace hs::cli {

void add_model_options(CLI::App* cmd, model_source& src) {
  cmd->add_option(
      "--model", src.dir,
      "Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer.json)");
  cmd->add_option("--shape", src.shape,
                  "synthetic model with random weights: tiny, opt-125m, opt-6.7b, opt-13b, "
                  "opt-30b, opt-66b, llama-2-7b, llama-2-13b, llama-3-8b, llama-2-70b, or "
                  "opt:hidden=..,layers=..,heads=..,ffn=..,vocab=..");
  cmd->add_option("--weight-seed", src.seed, "seed of synthetic weights");
  cmd->add_option("--dtype", src.dtype, "synthetic weight dtype")
      ->check(CLI::IsMember({"float16", "bfloat16", "float32"}));
}

void add_engine_options(CLI::App* cmd, engine_flags& f) {
  cmd->add_option("--backend", f.opts.backend, "cpu, cuda or auto (cuda when a GPU is present)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  cmd->add_option("--device-budget", f.device_budget,
                  "device memory for weights, cache and buffers, e.g. 24GiB (default: all)");
  cmd->add_option("--host-budget", f.host_budget, "host memory for the cache (default: no limit)");
  cmd->add_option("--kv-ratio", f.kv_ratio,
                  "share of cached tokens kept as K/V (rest as activations): auto or 0..1");
  cmd->add_option("--block-size", f.opts.block_size, "tokens per cache block")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-batch", f.opts.max_batch, "running sequences per pass")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--step-tokens", f.opts.max_step_tokens,
                  "new tokens per pass (prefill chunk size)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--ring-slots", f.opts.ring_slots,
                  "device buffers that streamed layers rotate through (2: double buffering)")
      ->check(CLI::Range(1, 8));
  cmd->add_option("--threads", f.opts.scheduler_threads,
                  "actor scheduler threads (0 = CAF default)");
}

std::string engine_flags::resolve() {
  if (!device_budget.empty()) {
    auto b = parse_bytes(device_budget);
    if (!b) return "--device-budget: " + b.error();
    opts.device_budget = *b;
  }
  if (!host_budget.empty()) {
    auto b = parse_bytes(host_budget);
    if (!b) return "--host-budget: " + b.error();
    opts.host_budget = *b;
  }
  if (kv_ratio == "auto") {
    opts.auto_ratio = true;
  } else {
    try {
      std::size_t used = 0;
      const double r = std::stod(kv_ratio, &used);
      if (used != kv_ratio.size() || !(r >= 0 && r <= 1)) throw std::invalid_argument(kv_ratio);
      opts.auto_ratio = false;
      opts.kv_ratio = r;
    } catch (const std::exception&) {
      return "--kv-ratio must be 'auto' or a number in [0, 1], got '" + kv_ratio + "'";
    }
  }
  return {};
}

}  // namespace hs::cli
