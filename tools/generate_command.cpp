// `hybridserve generate`: prompts in, text out, through the actor runtime (or the reference
// path with --reference).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "commands.hpp"
#include "hybridserve/generate.hpp"

namespace hs::cli {
namespace {

struct generate_options {
  model_source src;
  engine_flags eng;
  std::vector<std::string> prompts;
  std::string prompt_file;
  std::vector<int32_t> prompt_ids;
  int batch = 0;
  int max_tokens = 32;
  sampling_params sampling;
  int64_t seed = -1;
  std::vector<int32_t> stop_ids;
  bool ignore_eos = false;
  bool reference = false;
  bool show_plan = false;
};

int run_generate(generate_options& o) {
  if (const auto why = o.eng.resolve(); !why.empty()) {
    std::fprintf(stderr, "error: %s\n", why.c_str());
    return 2;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto m = open_model(o.src);
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
  std::vector<std::vector<int32_t>> prompts;
  if (!o.prompt_ids.empty()) prompts.push_back(o.prompt_ids);
  for (const auto& t : texts) prompts.push_back(model.encode_prompt(t));
  if (prompts.empty()) prompts.push_back(model.encode_prompt("The"));
  // --batch N: N sequences, cycling through the prompts given.
  for (std::size_t i = prompts.size(); int(i) < o.batch; ++i)
    prompts.push_back(prompts[i % prompts.size()]);
  std::vector<generation_request> reqs;
  for (auto& p : prompts) {
    generation_request r;
    r.prompt = p;
    r.max_tokens = o.max_tokens;
    r.sampling = o.sampling;
    if (o.seed >= 0) {
      r.sampling.seeded = true;
      r.sampling.seed = uint64_t(o.seed) + reqs.size();
    }
    r.stop_ids = o.stop_ids;
    r.stop_at_eos = !o.ignore_eos;
    if (const auto why = r.check(model); !why.empty()) {
      std::fprintf(stderr, "error: prompt %zu: %s\n", reqs.size(), why.c_str());
      return 1;
    }
    reqs.push_back(std::move(r));
  }
  const auto t1 = std::chrono::steady_clock::now();
  std::fprintf(stderr, "model %s (%s, %d layers, hidden %d, %.1fM parameters) ready in %.2f s\n",
               model.config.name.c_str(), arch_name(model.config.architecture),
               model.config.n_layer, model.config.hidden,
               double(model.config.parameter_count()) / 1e6,
               std::chrono::duration<double>(t1 - t0).count());

  // One prompt streams its text as it comes; a batch prints each completion at the end.
  const bool stream = reqs.size() == 1;
  std::vector<stream_decoder> decoders(reqs.size(), stream_decoder(model.tok));
  auto on_token = [&](std::size_t i, int32_t id) {
    if (stream) std::cout << decoders[i].push(id) << std::flush;
  };
  std::vector<generation_result> res;
  std::unique_ptr<engine> eng;
  auto print_prompt = [&] {
    if (stream) std::cout << model.tok->decode(reqs[0].prompt, true) << std::flush;
  };
  if (o.reference) {
    print_prompt();
    reference_forward fwd(*m);
    res = generate_reference(fwd, reqs, on_token);
  } else {
    auto e = engine::start(*m, o.eng.opts);
    if (!e) {
      std::fprintf(stderr, "error: %s\n", e.error().c_str());
      return 1;
    }
    eng = std::move(*e);
    const auto t2 = std::chrono::steady_clock::now();
    std::fprintf(stderr, "engine (%s) started in %.2f s\n", eng->report().backend.c_str(),
                 std::chrono::duration<double>(t2 - t1).count());
    print_prompt();
    for (auto& f : eng->generate(reqs, on_token)) res.push_back(f.result);
  }
  const auto t3 = std::chrono::steady_clock::now();
  std::size_t generated = 0;
  for (std::size_t i = 0; i < res.size(); ++i) {
    generated += res[i].tokens.size();
    if (stream)
      std::cout << decoders[i].finish() << "\n";
    else
      std::cout << "[" << i << "] " << model.tok->decode(reqs[i].prompt, true)
                << model.tok->decode(res[i].tokens, true) << "\n";
    if (res[i].reason == finish_reason::error)
      std::fprintf(stderr, "error: prompt %zu: %s\n", i, res[i].error.c_str());
  }
  const double secs = std::chrono::duration<double>(t3 - t1).count();
  std::fprintf(stderr, "%zu sequences, %zu tokens generated in %.2f s (%.1f tokens/s)\n",
               res.size(), generated, secs, secs > 0 ? double(generated) / secs : 0.0);
  if (eng && o.show_plan) std::fprintf(stderr, "%s\n", eng->report().cache.plan_text.c_str());
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<generate_options>();
  auto* g = app.add_subcommand("generate", "generate text from prompts (the default command)");
  add_model_options(g, o->src);
  g->get_option("--model")->description(
      "Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer.json); with "
      "neither --model nor --shape: the built-in model (models/builtin, docs/MODEL.md)");
  add_engine_options(g, o->eng);
  g->add_option("-p,--prompt", o->prompts, "prompt text (repeat for a batch)");
  g->add_option("--prompt-file", o->prompt_file, "file with one prompt per line (a batch)");
  g->add_option("--prompt-ids", o->prompt_ids, "prompt as token ids")->delimiter(',');
  g->add_option("--batch", o->batch, "run N sequences (prompts repeat to fill the batch)");
  g->add_option("-n,--max-tokens", o->max_tokens, "tokens to generate")
      ->check(CLI::NonNegativeNumber);
  g->add_option("-t,--temperature", o->sampling.temperature, "0 = greedy")
      ->check(CLI::NonNegativeNumber);
  g->add_option("--top-k", o->sampling.top_k, "0 = no limit")->check(CLI::NonNegativeNumber);
  g->add_option("--top-p", o->sampling.top_p, "nucleus mass")->check(CLI::Range(0.0, 1.0));
  g->add_option("--seed", o->seed, "sampling seed (same seed, same output)");
  g->add_option("--stop-id", o->stop_ids, "stop at this token id (repeatable)");
  g->add_flag("--ignore-eos", o->ignore_eos, "do not stop at EOS");
  g->add_flag("--reference", o->reference, "use the plain reference forward pass, not the actors");
  g->add_flag("--show-plan", o->show_plan, "print the placement plan at the end");
  g->callback([o, &run] { run = [o] { return run_generate(*o); }; });
}

}  // namespace hs::cli
