// The OpenAI-compatible HTTP front end in process, through httplib's client: completions, chat,
// SSE streams, usage, errors and their statuses, /health, /metrics; plus the chat templates and
// the Prometheus writer it uses.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "fixture_util.hpp"
#include "greedy_alone.hpp"
#include "hybridserve/chat_template.hpp"
#include "hybridserve/engine.hpp"
#include "hybridserve/http_frontend.hpp"
#include "hybridserve/metrics.hpp"
#include "hybridserve/model_source.hpp"
#include "hybridserve/reference_forward.hpp"

using nlohmann::json;

namespace {

struct http_fixture {
  std::unique_ptr<hs::engine> e;
  std::shared_ptr<const hs::model> m;
  uint16_t port = 0;

  explicit http_fixture(const std::string& api_key = "", int max_queue = 1024,
                        std::shared_ptr<const hs::model> model = nullptr) {
    signal(SIGPIPE, SIG_IGN);
    m = model ? model : *hs::load_model(hs::test::fixture("opt-tiny"));
    hs::engine_options o;
    hs::calibration cal = hs::h200_calibration();
    cal.cache_elem_bytes = cal.weight_elem_bytes = 4;
    o.cal = cal;
    o.block_size = 4;
    o.max_batch = 32;
    o.max_queue = max_queue;
    auto r = hs::engine::start(m, o);
    REQUIRE(r.ok());
    e = std::move(*r);
    hs::http_options ho;
    ho.api_key = api_key;
    ho.chat_template = "chatml";
    ho.heartbeat_ms = 200;
    auto p = hs::start_http_frontend(*e, ho);
    REQUIRE(p.ok());
    port = *p;
  }
  ~http_fixture() {
    if (e) hs::stop_http_frontend(*e);
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
};

json post(httplib::Client& c, const std::string& path, const json& body, int want_status,
          const httplib::Headers& h = {}) {
  auto r = c.Post(path.c_str(), h, body.dump(), "application/json");
  REQUIRE(r);
  INFO(r->body);
  CHECK(r->status == want_status);
  const std::string b = r->body;
  const auto j = json::parse(b, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

// The data lines of an SSE body; the last must be [DONE].
std::vector<json> sse_events(const std::string& body, bool* done) {
  std::vector<json> out;
  *done = false;
  std::size_t pos = 0;
  while (pos < body.size()) {
    auto end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    const std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) continue;  // comments (keep-alive)
    const std::string data = ev.substr(6);
    CHECK_FALSE(*done);  // nothing after [DONE]
    if (data == "[DONE]") {
      *done = true;
      continue;
    }
    out.push_back(json::parse(data));
  }
  return out;
}

}  // namespace

// ---- chat templates
TEST_CASE("chat template families are recognised by their markers", "[http][chat]") {
  using hs::chat_family;
  CHECK(hs::detect_chat_family("{% for m in messages %}<|im_start|>{{m.role}}\n") ==
        chat_family::chatml);
  CHECK(hs::detect_chat_family("{{ bos_token + '[INST] ' + content + ' [/INST]' }}") ==
        chat_family::llama2);
  CHECK(hs::detect_chat_family(
            "{{'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'}}") ==
        chat_family::llama3);
  CHECK(hs::detect_chat_family("{{ '<|user|>\n' + message['content'] + eos_token }}"
                               "{{ '<|assistant|>' }}") == chat_family::zephyr);
  CHECK_FALSE(hs::detect_chat_family("{{ messages }}").has_value());
  CHECK(hs::chat_family_from_name("llama3") == chat_family::llama3);
  CHECK_FALSE(hs::chat_family_from_name("jinja").has_value());
}

TEST_CASE("chat templates render as the reference templates do", "[http][chat]") {
  using hs::chat_family;
  const std::vector<hs::chat_message> msgs = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Why?"}};
  const hs::chat_special sp{"<s>", "</s>"};
  CHECK(hs::render_chat(chat_family::chatml, msgs, sp) ==
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n"
        "<|im_start|>assistant\n");
  CHECK(hs::render_chat(chat_family::llama2, msgs, sp) ==
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Why? [/INST]");
  CHECK(hs::render_chat(chat_family::llama3, msgs, {"<|begin_of_text|>", "<|eot_id|>"}) ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(hs::render_chat(chat_family::zephyr, msgs, sp) ==
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n"
        "<|user|>\nWhy?</s>\n<|assistant|>\n");
  CHECK(hs::render_chat(chat_family::plain, {{"user", "Hi"}}, sp) == "User: Hi\n\nAssistant:");
}

TEST_CASE("the chat template comes from tokenizer_config.json, else the configuration",
          "[http][chat]") {
  const hs::chat_special fb{"<s>", "</s>"};
  const std::string llama3 = json{{"bos_token", "<|begin_of_text|>"},
                                  {"eos_token", {{"content", "<|eot_id|>"}}},
                                  {"chat_template", "<|start_header_id|>x<|end_header_id|>"}}
                                 .dump();
  auto c = hs::choose_chat_template(llama3, "chatml", fb);
  CHECK(c.family == hs::chat_family::llama3);
  CHECK(c.special.bos == "<|begin_of_text|>");
  CHECK(c.special.eos == "<|eot_id|>");
  CHECK(c.how.find("detected in tokenizer_config.json") != std::string::npos);
  const std::string list =
      json{{"chat_template", json::array({{{"name", "tool_use"}, {"template", "[INST]"}},
                                          {{"name", "default"}, {"template", "<|im_start|>"}}})}}
          .dump();
  CHECK(hs::choose_chat_template(list, "", fb).family == hs::chat_family::chatml);
  c = hs::choose_chat_template(R"({"bos_token": "</s>"})", "zephyr", fb);
  CHECK(c.family == hs::chat_family::zephyr);
  CHECK(c.special.bos == "</s>");
  CHECK(c.how.find("from http.chat_template") != std::string::npos);
  c = hs::choose_chat_template("not json", "", fb);
  CHECK(c.family == hs::chat_family::plain);
  CHECK(c.how.find("not a JSON object") != std::string::npos);
  CHECK(hs::choose_chat_template(R"({"chat_template": "{{ weird }}"})", "llama2", fb).family ==
        hs::chat_family::llama2);
}

// ---- Prometheus text
TEST_CASE("histograms are cumulative and the exposition parses", "[http][metrics]") {
  hs::histogram h({0.1, 1, 10});
  for (double v : {0.05, 0.1, 0.5, 5.0, 50.0}) h.observe(v);
  const auto s = h.snap();
  CHECK(s.buckets == std::vector<uint64_t>{2, 3, 4, 5});
  CHECK(s.count == 5);
  CHECK(s.sum == Approx(55.65));
  hs::prometheus_writer w;
  w.gauge("x_bytes", "bytes\nby tier", 3, {{"tier", "device"}});
  w.counter("y_total", "a counter", 7);
  w.gauge("x_bytes", "ignored", 4.5, {{"tier", "ho\"st"}});  // joins its family
  w.histogram("lat_seconds", "latency", s);
  const std::string t = w.text();
  CHECK(t.find("# HELP x_bytes bytes\\nby tier\n# TYPE x_bytes gauge\n"
               "x_bytes{tier=\"device\"} 3\nx_bytes{tier=\"ho\\\"st\"} 4.5\n") !=
        std::string::npos);
  CHECK(t.find("lat_seconds_bucket{le=\"0.1\"} 2\n") != std::string::npos);
  CHECK(t.find("lat_seconds_bucket{le=\"+Inf\"} 5\n") != std::string::npos);
  CHECK(t.find("lat_seconds_count 5\n") != std::string::npos);
  auto p = hs::parse_prometheus_text(t);
  REQUIRE(p.ok());
  CHECK(p->size() == 2 + 1 + 4 + 2);
  CHECK((*p)[1].labels.at("tier") == "ho\"st");
  CHECK_FALSE(hs::parse_prometheus_text("undeclared 1\n").ok());
  CHECK_FALSE(hs::parse_prometheus_text("# TYPE a gauge\na{x=\"1} 2\n").ok());
  CHECK_FALSE(hs::parse_prometheus_text("# TYPE a gauge\na one\n").ok());
  CHECK(hs::prometheus_number(0.25) == "0.25");
  CHECK(hs::prometheus_number(1e20) == "1e+20");
  CHECK(hs::prometheus_number(1.0 / 0.0) == "+Inf");
}

// ---- the server
TEST_CASE("completions match the reference and carry usage", "[http]") {
  http_fixture f;
  auto c = f.client();
  hs::tensor_store ex;
  ex.add_file(hs::test::fixture("opt-tiny") + "/expected.safetensors");
  const auto prompt = hs::test::ints(ex, "p0.prompt");
  const auto expected = hs::test::greedy_alone(*f.m, prompt, 12);
  json j = post(c, "/v1/completions",
                {{"model", "x"}, {"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}}, 200);
  CHECK(j["object"] == "text_completion");
  REQUIRE(j["choices"].size() == 1);
  const std::string text = j["choices"][0]["text"];
  CHECK(text == f.m->tok->decode(expected, true));
  CHECK(j["usage"]["prompt_tokens"] == prompt.size());
  CHECK(j["usage"]["completion_tokens"] == expected.size());
  CHECK(j["usage"]["total_tokens"] == prompt.size() + expected.size());
  CHECK(j["choices"][0]["finish_reason"] == (expected.size() == 12 ? "length" : "stop"));

  SECTION("the same request streamed gives the same text, then [DONE]") {
    auto r = c.Post("/v1/completions",
                    json{{"prompt", prompt},
                         {"max_tokens", 12},
                         {"temperature", 0},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}}
                        .dump(),
                    "application/json");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->get_header_value("Content-Type").find("text/event-stream") == 0);
    bool done = false;
    const auto evs = sse_events(r->body, &done);
    CHECK(done);
    std::string streamed;
    json usage;
    for (const auto& ev : evs) {
      if (!ev["usage"].is_null()) usage = ev["usage"];
      if (!ev["choices"].empty()) streamed += ev["choices"][0]["text"].get<std::string>();
    }
    CHECK(streamed == text);
    REQUIRE(usage.is_object());
    CHECK(usage["completion_tokens"] == expected.size());
    CHECK(evs.back()["choices"].empty());  // include_usage: the last chunk has only usage
  }
  SECTION("a stop string ends the text before it") {
    REQUIRE(text.size() > 4);
    const std::string stop = text.substr(text.size() / 2, 2);
    json s =
        post(c, "/v1/completions",
             {{"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}, {"stop", {stop}}}, 200);
    const std::string got = s["choices"][0]["text"];
    CHECK(got == text.substr(0, text.find(stop)));
    CHECK(s["choices"][0]["finish_reason"] == "stop");
    // streamed, the held-back prefix of the stop string is never sent
    auto r = c.Post("/v1/completions",
                    json{{"prompt", prompt},
                         {"max_tokens", 12},
                         {"temperature", 0},
                         {"stop", stop},
                         {"stream", true}}
                        .dump(),
                    "application/json");
    REQUIRE(r);
    bool done = false;
    std::string streamed;
    for (const auto& ev : sse_events(r->body, &done))
      streamed += ev["choices"][0]["text"].get<std::string>();
    CHECK(done);
    CHECK(streamed == got);
  }
  SECTION("a seeded sampled completion repeats") {
    const json body = {{"prompt", "Hello"}, {"max_tokens", 8}, {"temperature", 0.9},
                       {"top_p", 0.9},      {"top_k", 20},     {"seed", 42}};
    CHECK(post(c, "/v1/completions", body, 200)["choices"][0]["text"] ==
          post(c, "/v1/completions", body, 200)["choices"][0]["text"]);
  }
}

TEST_CASE("chat completions: JSON and a stream of deltas", "[http]") {
  http_fixture f;
  auto c = f.client();
  const json msgs = json::array({{{"role", "system"}, {"content", "Be brief."}},
                                 {{"role", "user"}, {"content", "Hello there"}}});
  json j =
      post(c, "/v1/chat/completions",
           {{"model", "opt-tiny"}, {"messages", msgs}, {"max_tokens", 6}, {"temperature", 0}}, 200);
  CHECK(j["object"] == "chat.completion");
  CHECK(j["choices"][0]["message"]["role"] == "assistant");
  const std::string text = j["choices"][0]["message"]["content"];
  // the prompt is the chatml rendering, tokenized as is
  const auto ids = f.m->tok->encode(hs::render_chat(
      hs::chat_family::chatml, {{"system", "Be brief."}, {"user", "Hello there"}}, {}));
  CHECK(j["usage"]["prompt_tokens"] == ids.size());
  CHECK(j["usage"]["total_tokens"] ==
        j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());

  auto r = c.Post(
      "/v1/chat/completions",
      json{{"messages", msgs}, {"max_tokens", 6}, {"temperature", 0}, {"stream", true}}.dump(),
      "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  bool done = false;
  const auto evs = sse_events(r->body, &done);
  CHECK(done);
  REQUIRE(evs.size() >= 2);
  CHECK(evs.front()["object"] == "chat.completion.chunk");
  CHECK(evs.front()["choices"][0]["delta"]["role"] == "assistant");
  std::string streamed;
  for (const auto& ev : evs) streamed += ev["choices"][0]["delta"].value("content", std::string());
  CHECK(streamed == text);
  CHECK(evs.back()["choices"][0]["finish_reason"].is_string());
  CHECK(evs.back()["usage"]["completion_tokens"] == j["usage"]["completion_tokens"]);
}

TEST_CASE("errors have the OpenAI shape and the right status", "[http]") {
  http_fixture f("sekret");
  auto c = f.client();
  const httplib::Headers auth = {{"Authorization", "Bearer sekret"}};
  auto check_error = [](const json& j, const std::string& code) {
    REQUIRE(j.contains("error"));
    CHECK(j["error"]["message"].get<std::string>().size() > 10);
    CHECK(j["error"]["type"].is_string());
    CHECK(j["error"]["code"] == code);
  };
  check_error(post(c, "/v1/completions", {{"prompt", "x"}}, 401), "invalid_api_key");
  check_error(
      post(c, "/v1/completions", {{"prompt", "x"}}, 401, {{"Authorization", "Bearer wrong!"}}),
      "invalid_api_key");
  {
    auto r = c.Post("/v1/completions", auth, "{not json", "application/json");
    REQUIRE(r);
    CHECK(r->status == 400);
    check_error(json::parse(r->body), "invalid_json");
  }
  const std::vector<int32_t> too_long(300, 5);
  const std::pair<json, std::string> table[] = {
      {json::array({1, 2}), "invalid_json"},
      {{{"max_tokens", 3}}, "missing_required_parameter"},
      {{{"prompt", "x"}, {"temperature", 5}}, "invalid_value"},
      {{{"prompt", "x"}, {"temperature", "hot"}}, "invalid_type"},
      {{{"prompt", "x"}, {"top_p", 0}}, "invalid_value"},
      {{{"prompt", "x"}, {"max_tokens", -1}}, "invalid_value"},
      {{{"prompt", "x"}, {"max_tokens", 2.5}}, "invalid_type"},
      {{{"prompt", "x"}, {"n", 2}}, "invalid_value"},
      {{{"prompt", "x"}, {"stop", {1, 2}}}, "invalid_type"},
      {{{"prompt", "x"}, {"stream_options", {{"include_usage", true}}}}, "invalid_value"},
      {{{"prompt", {2, 999999}}}, "invalid_value"},
      {{{"prompt", too_long}}, "context_length_exceeded"},
      {{{"prompt", "x"}, {"max_tokens", 4000}}, "context_length_exceeded"},
  };
  for (const auto& [body, code] : table) {
    INFO(body.dump());
    check_error(post(c, "/v1/completions", body, 400, auth), code);
  }
  check_error(post(c, "/v1/chat/completions", {{"messages", json::array()}}, 400, auth),
              "invalid_type");
  check_error(post(c, "/v1/chat/completions",
                   {{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}, 400, auth),
              "invalid_value");
  check_error(post(c, "/v1/nothing", json::object(), 404, auth), "unknown_url");
  // the context limit is checked on the rendered chat prompt too
  check_error(
      post(c, "/v1/chat/completions",
           {{"messages", {{{"role", "user"}, {"content", std::string(2000, 'a')}}}}}, 400, auth),
      "context_length_exceeded");
  // models needs the key; health and metrics do not
  auto m = c.Get("/v1/models");
  REQUIRE(m);
  CHECK(m->status == 401);
  m = c.Get("/v1/models", auth);
  REQUIRE(m);
  CHECK(m->status == 200);
  const json models = json::parse(m->body);
  CHECK(models["object"] == "list");
  CHECK(models["data"][0]["object"] == "model");
  auto h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
}

TEST_CASE("overload is 429 with Retry-After", "[http]") {
  http_fixture f("", 0);  // intake queues nothing: every request is refused as overloaded
  auto c = f.client();
  auto r = c.Post("/v1/completions", json{{"prompt", "x"}, {"max_tokens", 3}}.dump(),
                  "application/json");
  REQUIRE(r);
  CHECK(r->status == 429);
  CHECK(r->get_header_value("Retry-After") == "1");
  CHECK(json::parse(r->body)["error"]["code"] == "overloaded");
  r = c.Post("/v1/chat/completions",
             json{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"stream", true}}.dump(),
             "application/json");
  REQUIRE(r);
  CHECK(r->status == 429);  // a stream refused before it starts is a plain JSON error
}

TEST_CASE("a client that disconnects mid-stream has its request cancelled and cache freed",
          "[http]") {
  // A model slow enough (about 10 ms a token here) that a request outlives its client; greedy
  // decoding of its random weights never meets EOS.
  hs::model_source src;
  src.shape = "opt:hidden=384,layers=6,heads=6,ffn=1536,vocab=259,max_pos=4096";
  src.dtype = "float32";
  auto slow = hs::open_model(src);
  REQUIRE(slow.ok());
  http_fixture f("", 1024, *slow);
  const std::string body = json{
      {"prompt", "Once upon a time"},
      {"max_tokens", 3000},
      {"temperature", 0},
      {"stream", true}}.dump();
  for (int round = 0; round < 2; ++round) {
    const bool streamed = round == 0;
    const std::string bs =
        streamed
            ? body
            : json{{"prompt", "Once upon a time"}, {"max_tokens", 3000}, {"temperature", 0}}.dump();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(f.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    const std::string req =
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
        std::to_string(bs.size()) + "\r\n\r\n" + bs;
    REQUIRE(write(fd, req.data(), req.size()) == ssize_t(req.size()));
    // wait until the request is running, then vanish
    bool running = false;
    for (int i = 0; i < 200 && !running; ++i) {
      running = f.e->report().intake.running > 0;
      if (!running) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (streamed) {
      char buf[256];
      CHECK(read(fd, buf, sizeof buf) > 0);  // headers and the first events
    }
    close(fd);
    bool freed = false;
    for (int i = 0; i < 500 && !freed; ++i) {
      const auto rep = f.e->report();
      freed = rep.intake.running == 0 && rep.intake.queued == 0 && rep.cache.sequences == 0;
      if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    INFO((streamed ? "streamed" : "not streamed"));
    CHECK(freed);
    const auto rep = f.e->report();
    CHECK(rep.intake.generated_tokens < 1000 * (round + 1));  // cancelled, not run to the end
  }
  auto c = f.client();
  auto m = c.Get("/metrics");
  REQUIRE(m);
  auto p = hs::parse_prometheus_text(m->body);
  REQUIRE(p.ok());
  double disconnects = -1;
  for (const auto& s : *p)
    if (s.name == "hybridserve_http_client_disconnects_total") disconnects = s.value;
  CHECK(disconnects == 2);
}

TEST_CASE("health is 503 while loading and metrics are Prometheus text", "[http]") {
  signal(SIGPIPE, SIG_IGN);
  hs::http_options o;
  auto srv = hs::http_server::start(o);
  REQUIRE(srv.ok());
  httplib::Client c("127.0.0.1", (*srv)->port());
  auto h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 503);
  CHECK(json::parse(h->body)["status"] == "loading");
  auto r = c.Post("/v1/completions", json{{"prompt", "x"}}.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(json::parse(r->body)["error"]["code"] == "loading");
  auto m = c.Get("/metrics");
  REQUIRE(m);
  CHECK(m->status == 200);
  REQUIRE(hs::parse_prometheus_text(m->body).ok());

  auto model = *hs::load_model(hs::test::fixture("llama-tiny"));
  hs::engine_options eo;
  hs::calibration cal = hs::h200_calibration();
  cal.cache_elem_bytes = cal.weight_elem_bytes = 4;
  eo.cal = cal;
  auto e = hs::engine::start(model, eo);
  REQUIRE(e.ok());
  const std::string how = (*srv)->attach(**e);
  CHECK(how.find("plain") != std::string::npos);  // the fixture has no template, none configured
  h = c.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
  r = c.Post("/v1/chat/completions",
             json{{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                  {"max_tokens", 3},
                  {"temperature", 0}}
                 .dump(),
             "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  m = c.Get("/metrics");
  REQUIRE(m);
  CHECK(m->get_header_value("Content-Type").find("text/plain; version=0.0.4") == 0);
  auto p = hs::parse_prometheus_text(m->body);
  REQUIRE(p.ok());
  std::map<std::string, double> v;
  for (const auto& s : *p) {
    std::string key = s.name;
    for (const auto& [k, val] : s.labels) key += "," + k + "=" + val;
    v[key] = s.value;
  }
  CHECK(v["hybridserve_ready"] == 1);
  CHECK(v["hybridserve_requests_finished_total"] >= 1);
  CHECK(v["hybridserve_generation_tokens_total"] >= 1);
  CHECK(v["hybridserve_prompt_tokens_total"] >= 1);
  CHECK(v.count("hybridserve_requests_running"));
  CHECK(v.count("hybridserve_requests_queued"));
  CHECK(v.count("hybridserve_step_duration_seconds,source=predicted"));
  CHECK(v.count("hybridserve_step_duration_seconds,source=measured"));
  CHECK(v.count("hybridserve_host_to_device_bytes_total"));
  CHECK(v.count("hybridserve_device_to_host_bytes_total"));
  CHECK(v.count("hybridserve_cache_blocks,form=act,tier=host"));
  CHECK(v.count("hybridserve_cache_bytes,form=kv,tier=device"));
  CHECK(v.count("hybridserve_kv_ratio"));
  CHECK(v["hybridserve_device_memory_budget_bytes"] > 0);
  CHECK(v.count("hybridserve_host_memory_used_bytes"));
  CHECK(v["hybridserve_time_to_first_token_seconds_count"] >= 1);
  CHECK(v["hybridserve_time_to_first_token_seconds_bucket,le=+Inf"] ==
        v["hybridserve_time_to_first_token_seconds_count"]);
  CHECK(v["hybridserve_time_per_output_token_seconds_count"] >= 1);
  CHECK(v["hybridserve_http_requests_total,code=200,endpoint=/v1/chat/completions"] == 1);
  (*srv)->stop();
  h = c.Get("/health");
  CHECK_FALSE(h);  // stopped: nobody listens
}
