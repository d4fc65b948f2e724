// `hybridserve client`: sends prompts over the TCP message protocol, streams the text, prints
// usage. Prompts come from -p, a file (one per line) or stdin ("-").
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "line_client.hpp"

namespace hs::cli {
namespace {

struct client_options {
  std::string connect = "127.0.0.1:7070";
  std::string token;
  std::vector<std::string> prompts;
  std::string file;  // "-" = stdin
  int max_tokens = 64;
  double temperature = 0.0;
  double top_p = 1.0;
  int top_k = 0;
  int64_t seed = -1;
  std::vector<std::string> stop;
  bool no_stream = false;
};

int run_client(const client_options& o) {
  std::vector<std::string> prompts = o.prompts;
  if (!o.file.empty()) {
    std::ifstream f;
    std::istream* in = &std::cin;
    if (o.file != "-") {
      f.open(o.file);
      if (!f) {
        std::cerr << "error: cannot open " << o.file << "\n";
        return 1;
      }
      in = &f;
    }
    for (std::string line; std::getline(*in, line);)
      if (!line.empty()) prompts.push_back(line);
  }
  if (prompts.empty()) {
    std::cerr << "error: give a prompt with -p, --file FILE or --file - (stdin)\n";
    return 2;
  }
  line_client c;
  if (auto err = c.connect(o.connect); !err.empty()) {
    std::cerr << "error: " << err << "\n";
    return 1;
  }
  nlohmann::json hello = {{"op", "hello"}, {"version", 1}, {"client", "hybridserve-client"}};
  if (!o.token.empty()) hello["token"] = o.token;
  c.send_line(hello.dump());
  const auto h = c.read_line(10000);
  if (!h) {
    std::cerr << "error: no answer from " << o.connect << "\n";
    return 1;
  }
  auto hj = nlohmann::json::parse(*h, nullptr, false);
  if (hj.is_discarded() || hj.value("type", "") != "hello") {
    std::cerr << "error: " << (hj.is_discarded() ? *h : hj.value("message", *h)) << "\n";
    return 1;
  }
  // Requests run concurrently on the one connection; with one prompt the text streams as it
  // comes, with several each completion prints when done.
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    nlohmann::json g = {{"op", "generate"},
                        {"id", std::to_string(i)},
                        {"prompt", prompts[i]},
                        {"max_tokens", o.max_tokens},
                        {"temperature", o.temperature},
                        {"stream", !o.no_stream && prompts.size() == 1}};
    if (o.top_p < 1.0) g["top_p"] = o.top_p;
    if (o.top_k > 0) g["top_k"] = o.top_k;
    if (o.seed >= 0) g["seed"] = o.seed + int64_t(i);
    if (!o.stop.empty()) g["stop"] = o.stop;
    c.send_line(g.dump());
  }
  std::size_t left = prompts.size();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  int status = 0;
  if (prompts.size() == 1) std::cout << prompts[0] << std::flush;
  while (left > 0) {
    const auto line = c.read_line();
    if (!line) {
      std::cerr << "\nerror: connection closed with " << left << " requests unfinished\n";
      return 1;
    }
    auto j = nlohmann::json::parse(*line, nullptr, false);
    if (j.is_discarded()) continue;
    const std::string type = j.value("type", "");
    if (type == "token") {
      std::cout << j.value("text", "") << std::flush;
    } else if (type == "done") {
      --left;
      prompt_tokens += j["usage"].value("prompt_tokens", 0);
      completion_tokens += j["usage"].value("completion_tokens", 0);
      if (prompts.size() == 1) {
        if (j.contains("text")) std::cout << j["text"].get<std::string>();
        std::cout << "\n";
      } else {
        const auto i = std::stoul(j.value("id", "0"));
        std::cout << "[" << i << "] " << prompts[i] << j.value("text", "") << "\n";
      }
      std::cerr << "[" << j.value("id", "") << "] " << j.value("finish_reason", "") << ", "
                << j["usage"].value("completion_tokens", 0) << " tokens, ttft "
                << j["timings"].value("ttft_ms", 0.0) << " ms\n";
    } else if (type == "error") {
      std::cerr << "error" << (j["id"].is_string() ? " [" + j["id"].get<std::string>() + "]" : "")
                << ": " << j.value("code", "") << ": " << j.value("message", "") << "\n";
      if (j["id"].is_string())
        --left;
      else if (j.value("code", "") == "line_too_long")
        return 1;
      status = 1;
    }
  }
  std::cerr << "usage: " << prompt_tokens << " prompt tokens, " << completion_tokens
            << " completion tokens\n";
  return status;
}

}  // namespace

void add_client_command(CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<client_options>();
  auto* c = app.add_subcommand("client", "send prompts to a running server and stream the text");
  c->add_option("--connect", o->connect, "HOST:PORT of `hybridserve serve`");
  c->add_option("--token", o->token, "auth token, when the server requires one");
  c->add_option("-p,--prompt", o->prompts, "prompt text (repeatable)");
  c->add_option("--file", o->file, "prompts, one per line; - = stdin");
  c->add_option("-n,--max-tokens", o->max_tokens, "tokens to generate");
  c->add_option("-t,--temperature", o->temperature, "0 = greedy");
  c->add_option("--top-p", o->top_p, "nucleus mass");
  c->add_option("--top-k", o->top_k, "0 = no limit");
  c->add_option("--seed", o->seed, "sampling seed");
  c->add_option("--stop", o->stop, "stop string (repeatable)");
  c->add_flag("--no-stream", o->no_stream, "ask for the whole text at the end");
  c->callback([o, &run] { run = [o] { return run_client(*o); }; });
}

}  // namespace hs::cli
