// The hybridserve program: one binary, one subcommand per job.
#include <cblas.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "hybridserve/generate.hpp"
#include "hybridserve/model_source.hpp"
#include "hybridserve/synthetic_model.hpp"

namespace {

struct generate_options {
  hs::model_source src;
  std::vector<std::string> prompts;
  std::string prompt_file;
  std::vector<int32_t> prompt_ids;
  int max_tokens = 32;
  hs::sampling_params sampling;
  int64_t seed = -1;
  std::vector<int32_t> stop_ids;
  bool ignore_eos = false;
  int threads = 0;
};

void add_model_options(CLI::App* cmd, hs::model_source& src) {
  cmd->add_option("--model", src.dir, "Hugging Face checkpoint folder (config.json, "
                                      "model.safetensors, tokenizer.json)");
  cmd->add_option("--shape", src.shape,
                  "synthetic model with random weights: tiny, opt-125m, opt-6.7b, opt-13b, "
                  "opt-30b, opt-66b, llama-2-7b, llama-2-13b, llama-3-8b, llama-2-70b, or "
                  "opt:hidden=..,layers=..,heads=..,ffn=..,vocab=..");
  cmd->add_option("--weight-seed", src.seed, "seed of synthetic weights");
  cmd->add_option("--dtype", src.dtype, "synthetic weight dtype")
      ->check(CLI::IsMember({"float16", "bfloat16", "float32"}));
}

int run_generate(const generate_options& o) {
  if (o.threads > 0) openblas_set_num_threads(o.threads);
  const auto t0 = std::chrono::steady_clock::now();
  auto m = hs::open_model(o.src);
  if (!m) {
    std::fprintf(stderr, "error: %s\n", m.error().c_str());
    return 1;
  }
  const auto& model = **m;
  std::vector<std::string> texts = o.prompts;
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file);
    if (!in) {
      std::fprintf(stderr, "error: cannot open prompt file %s\n", o.prompt_file.c_str());
      return 1;
    }
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) texts.push_back(line);
  }
  std::vector<hs::generation_request> reqs;
  auto make_req = [&](std::vector<int32_t> ids) {
    hs::generation_request r;
    r.prompt = std::move(ids);
    r.max_tokens = o.max_tokens;
    r.sampling = o.sampling;
    if (o.seed >= 0) {
      r.sampling.seeded = true;
      r.sampling.seed = uint64_t(o.seed) + reqs.size();
    }
    r.stop_ids = o.stop_ids;
    r.stop_at_eos = !o.ignore_eos;
    reqs.push_back(std::move(r));
  };
  if (!o.prompt_ids.empty()) make_req(o.prompt_ids);
  for (const auto& t : texts) make_req(model.encode_prompt(t));
  if (reqs.empty()) make_req(model.encode_prompt("The"));
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    const auto why = reqs[i].check(model);
    if (!why.empty()) {
      std::fprintf(stderr, "error: prompt %zu: %s\n", i, why.c_str());
      return 1;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  std::fprintf(stderr, "model %s (%s, %d layers, hidden %d, %.1fM parameters) loaded in %.2f s\n",
               model.config.name.c_str(), hs::arch_name(model.config.architecture),
               model.config.n_layer, model.config.hidden,
               double(model.config.parameter_count()) / 1e6,
               std::chrono::duration<double>(t1 - t0).count());

  hs::reference_forward fwd(*m);
  // One prompt streams its text as it comes; a batch prints each completion at the end.
  std::vector<hs::stream_decoder> decoders(reqs.size(), hs::stream_decoder(model.tok));
  const bool stream = reqs.size() == 1;
  if (stream) {
    std::cout << (texts.empty() ? model.tok->decode(reqs[0].prompt, true) : texts[0]) << std::flush;
  }
  auto res = hs::generate_reference(fwd, reqs, [&](std::size_t i, int32_t id) {
    if (stream) std::cout << decoders[i].push(id) << std::flush;
  });
  const auto t2 = std::chrono::steady_clock::now();
  std::size_t generated = 0;
  for (std::size_t i = 0; i < res.size(); ++i) {
    generated += res[i].tokens.size();
    if (stream) {
      std::cout << decoders[i].finish() << "\n";
    } else {
      std::cout << "[" << i << "] "
                << (i < texts.size() + (o.prompt_ids.empty() ? 0 : 1) ? "" : "")
                << model.tok->decode(reqs[i].prompt, true) << model.tok->decode(res[i].tokens, true)
                << "\n";
    }
    if (res[i].reason == hs::finish_reason::error)
      std::fprintf(stderr, "error: prompt %zu: %s\n", i, res[i].error.c_str());
  }
  const double secs = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "%zu sequences, %zu tokens generated in %.2f s (%.1f tokens/s)\n",
               res.size(), generated, secs, secs > 0 ? double(generated) / secs : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hybridserve: LLM inference beyond GPU memory (weights streamed, KV rebuilt "
               "from activation checkpoints)"};
  app.set_version_flag("--version", std::string("hybridserve ") + HS_VERSION);
  app.require_subcommand(0, 1);

  generate_options gen;
  auto* g = app.add_subcommand("generate", "generate text from prompts");
  add_model_options(g, gen.src);
  g->add_option("-p,--prompt", gen.prompts, "prompt text (repeat for a batch)");
  g->add_option("--prompt-file", gen.prompt_file, "file with one prompt per line (a batch)");
  g->add_option("--prompt-ids", gen.prompt_ids, "prompt as token ids")->delimiter(',');
  g->add_option("-n,--max-tokens", gen.max_tokens, "tokens to generate")->check(CLI::NonNegativeNumber);
  g->add_option("-t,--temperature", gen.sampling.temperature, "0 = greedy")->check(CLI::NonNegativeNumber);
  g->add_option("--top-k", gen.sampling.top_k, "0 = no limit")->check(CLI::NonNegativeNumber);
  g->add_option("--top-p", gen.sampling.top_p, "nucleus mass")->check(CLI::Range(0.0, 1.0));
  g->add_option("--seed", gen.seed, "sampling seed (same seed, same output)");
  g->add_option("--stop-id", gen.stop_ids, "stop at this token id (repeatable)");
  g->add_flag("--ignore-eos", gen.ignore_eos, "do not stop at EOS");
  g->add_option("--threads", gen.threads, "OpenBLAS threads (0 = its default)");

  auto* shapes = app.add_subcommand("shapes", "list the synthetic model shapes");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*shapes) {
      for (const auto& n : hs::synthetic_shape_names()) {
        auto c = hs::synthetic_config(n);
        std::printf("%-12s %-17s layers %3d hidden %5d heads %3d/%-3d ffn %6d vocab %6d  %.2fB\n",
                    n.c_str(), hs::arch_name(c->architecture), c->n_layer, c->hidden, c->n_head,
                    c->n_kv_head, c->ffn, c->vocab, double(c->parameter_count()) / 1e9);
      }
      return 0;
    }
    // No subcommand: the main job on the built-in default model.
    return run_generate(gen);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
