// The hybridserve program: one binary, one subcommand per job. With no subcommand it runs
// `generate` on the built-in default model.
#include <cstdio>

#include "commands.hpp"
#include "hybridserve/synthetic_model.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "hybridserve: LLM inference beyond GPU memory (weights streamed, KV rebuilt "
      "from activation checkpoints)"};
  app.set_version_flag("--version", std::string("hybridserve ") + HS_VERSION);
  app.require_subcommand(0, 1);
  std::function<int()> run;
  hs::cli::add_generate_command(app, run);
  hs::cli::add_plan_command(app, run);
  hs::cli::add_bench_command(app, run);
  hs::cli::add_serve_command(app, run);
  hs::cli::add_client_command(app, run);
  hs::cli::add_console_command(app, run);
  auto* shapes = app.add_subcommand("shapes", "list the synthetic model shapes");
  shapes->callback([&run] {
    run = [] {
      for (const auto& n : hs::synthetic_shape_names()) {
        auto c = hs::synthetic_config(n);
        std::printf("%-12s %-17s layers %3d hidden %5d heads %3d/%-3d ffn %6d vocab %6d  %.2fB\n",
                    n.c_str(), hs::arch_name(c->architecture), c->n_layer, c->hidden, c->n_head,
                    c->n_kv_head, c->ffn, c->vocab, double(c->parameter_count()) / 1e9);
      }
      return 0;
    };
  });
  if (argc == 1) {  // the main job: generate with the built-in model
    const char* args[] = {argv[0], "generate"};
    CLI11_PARSE(app, 2, const_cast<char**>(args));
  } else {
    CLI11_PARSE(app, argc, argv);
  }
  if (!run) {
    std::printf("%s", app.help().c_str());
    return 0;
  }
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
