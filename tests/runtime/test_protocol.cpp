// Protocol v1: parsing and validation of client lines, reply shapes, the line splitter.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "hybridserve/protocol.hpp"

#include <nlohmann/json.hpp>

using namespace hs::proto;
using nlohmann::json;

namespace {

template <class T>
T parse_ok(const std::string& line, const limits& lim = {}) {
  auto r = parse_line(line, lim);
  if (auto* e = std::get_if<protocol_error>(&r)) FAIL("rejected: " << line << " -> " << e->message);
  auto& msg = std::get<client_msg>(r);
  REQUIRE(std::holds_alternative<T>(msg));
  return std::get<T>(msg);
}

protocol_error parse_err(const std::string& line, const limits& lim = {}) {
  auto r = parse_line(line, lim);
  if (std::holds_alternative<client_msg>(r)) FAIL("accepted: " << line);
  return std::get<protocol_error>(r);
}

/// Parses a reply and checks it is one compact line.
json reply(const std::string& line) {
  REQUIRE(line.find('\n') == std::string::npos);
  return json::parse(line);  // throws (fails the test) on invalid JSON or UTF-8
}

}  // namespace

TEST_CASE("every op parses", "[protocol]") {
  auto h = parse_ok<hello_msg>(R"({"op":"hello","version":1,"client":"cli 1.0","token":"s3"})");
  CHECK(h.version == 1);
  CHECK(h.client == "cli 1.0");
  CHECK(h.token == "s3");
  CHECK(parse_ok<hello_msg>(R"({"op":"hello","version":1})").token.empty());
  CHECK(parse_ok<ping_msg>(R"({"op":"ping","id":"p1"})").id == "p1");
  CHECK(parse_ok<cancel_msg>(R"({"op":"cancel","id":"r1"})").id == "r1");
  CHECK(parse_ok<models_msg>(R"({"op":"models","id":"m"})").id == "m");
  CHECK(parse_ok<stats_msg>(R"({"op":"stats","id":"s"})").id == "s");
  auto a = parse_ok<admin_msg>(R"({"op":"admin","id":"a1","command":"stats --json"})");
  CHECK(a.id == "a1");
  CHECK(a.command == "stats --json");

  auto g = parse_ok<generate_msg>(
      R"({"op":"generate","id":"g","prompt_ids":[1,2,2147483647],"max_tokens":0,)"
      R"("temperature":0,"top_p":0.5,"top_k":40,"seed":18446744073709551615,)"
      R"("stop":["\n\n","END"],"stop_ids":[2],"stream":false})");
  CHECK(g.id == "g");
  CHECK(!g.prompt);
  REQUIRE(g.prompt_ids);
  CHECK(*g.prompt_ids == std::vector<int32_t>{1, 2, 2147483647});
  CHECK(g.max_tokens == 0);
  CHECK(g.sampling.temperature == 0.f);
  CHECK(g.sampling.top_p == 0.5f);
  CHECK(g.sampling.top_k == 40);
  CHECK(g.sampling.seeded);
  CHECK(g.sampling.seed == std::numeric_limits<uint64_t>::max());
  CHECK(g.stop == std::vector<std::string>{"\n\n", "END"});
  CHECK(g.stop_ids == std::vector<int32_t>{2});
  CHECK(!g.stream);
}

TEST_CASE("generate defaults", "[protocol]") {
  auto g = parse_ok<generate_msg>(R"({"op":"generate","id":"a","prompt":"The old man said"})");
  REQUIRE(g.prompt);
  CHECK(*g.prompt == "The old man said");
  CHECK(!g.prompt_ids);
  CHECK(g.max_tokens == 128);
  CHECK(g.sampling.temperature == 1.0f);
  CHECK(g.sampling.top_p == 1.0f);
  CHECK(g.sampling.top_k == 0);
  CHECK(!g.sampling.seeded);
  CHECK(g.stop.empty());
  CHECK(g.stop_ids.empty());
  CHECK(g.stream);

  limits lim;
  lim.max_tokens_default = 7;
  CHECK(parse_ok<generate_msg>(R"({"op":"generate","id":"a","prompt":"x"})", lim).max_tokens == 7);
}

TEST_CASE("lenient parts: extra fields, nulls, \\r, single stop string", "[protocol]") {
  auto g = parse_ok<generate_msg>(
      "{\"op\":\"generate\",\"id\":\"a\",\"prompt\":\"x\",\"future\":{\"a\":[1]},"
      "\"top_p\":null,\"prompt_ids\":null,\"stop\":\"END\"}\r");
  CHECK(g.sampling.top_p == 1.0f);
  CHECK(g.stop == std::vector<std::string>{"END"});
  CHECK(parse_ok<ping_msg>(R"(  {"id":"x", "op":"ping"}  )").id == "x");
  auto e = parse_ok<generate_msg>(R"({"op":"generate","id":"a","prompt":""})");
  CHECK(e.prompt->empty());  // an empty prompt is the engine's call (BOS-only prompts)
}

TEST_CASE("bad inputs give the right code and say what is wrong", "[protocol]") {
  struct row {
    const char* line;
    error_code code;
    const char* word;  // must appear in the message
    const char* id;    // expected id, nullptr = none
  };
  const std::string long_id(129, 'x');
  const std::string id_line = R"({"op":"ping","id":")" + long_id + R"("})";
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  const row rows[] = {
      {"", error_code::bad_json, "JSON", nullptr},
      {"{", error_code::bad_json, "JSON", nullptr},
      {"not json", error_code::bad_json, "JSON", nullptr},
      {"[1,2]", error_code::bad_json, "object", nullptr},
      {"\"ping\"", error_code::bad_json, "object", nullptr},
      {"{\"op\":\"ping\",\"id\":\"\xff\"}", error_code::bad_json, "JSON", nullptr},
      {"{\"op\":\"ping\",\"id\":\"a\"} x", error_code::bad_json, "JSON", nullptr},
      {deep.c_str(), error_code::bad_json, "deeper", nullptr},
      {R"({"id":"a"})", error_code::bad_request, "op", "a"},
      {R"({"op":5,"id":"a"})", error_code::bad_request, "op", "a"},
      {R"({"op":"launch","id":"a"})", error_code::unknown_op, "launch", "a"},
      {R"({"op":"launch"})", error_code::unknown_op, "launch", nullptr},
      {R"({"op":"launch","id":7})", error_code::unknown_op, "launch", nullptr},
      {R"({"op":"ping"})", error_code::bad_request, "id", nullptr},
      {R"({"op":"ping","id":3})", error_code::bad_request, "id", nullptr},
      {R"({"op":"ping","id":""})", error_code::bad_request, "id", nullptr},
      {id_line.c_str(), error_code::bad_request, "128", nullptr},
      {R"({"op":"hello","version":2})", error_code::bad_request, "version 1", nullptr},
      {R"({"op":"hello","version":"1"})", error_code::bad_request, "version 1", nullptr},
      {R"({"op":"hello","version":1.0})", error_code::bad_request, "version 1", nullptr},
      {R"({"op":"hello","version":18446744073709551617})", error_code::bad_request, "version 1",
       nullptr},
      {R"({"op":"hello"})", error_code::bad_request, "version", nullptr},
      {R"({"op":"hello","version":1,"token":5})", error_code::bad_request, "token", nullptr},
      {R"({"op":"admin","id":"a"})", error_code::bad_request, "command", "a"},
      {R"({"op":"admin","id":"a","command":1})", error_code::bad_request, "command", "a"},
      {R"({"op":"generate","id":"g"})", error_code::bad_request, "prompt", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","prompt_ids":[1]})", error_code::bad_request,
       "both", "g"},
      {R"({"op":"generate","id":"g","prompt":5})", error_code::bad_request, "prompt", "g"},
      {R"({"op":"generate","id":"g","prompt_ids":[]})", error_code::bad_request, "empty", "g"},
      {R"({"op":"generate","id":"g","prompt_ids":"1 2"})", error_code::bad_request, "prompt_ids",
       "g"},
      {R"({"op":"generate","id":"g","prompt_ids":[1,1.5]})", error_code::bad_request,
       "prompt_ids[1]", "g"},
      {R"({"op":"generate","id":"g","prompt_ids":[-1]})", error_code::bad_request, "2147483647",
       "g"},
      {R"({"op":"generate","id":"g","prompt_ids":[2147483648]})", error_code::bad_request,
       "prompt_ids[0]", "g"},
      {R"({"op":"generate","id":"g","prompt_ids":[1e40]})", error_code::bad_request,
       "prompt_ids[0]", "g"},
      {R"({"op":"generate","id":"g","prompt_ids":[true]})", error_code::bad_request,
       "prompt_ids[0]", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","max_tokens":"12"})", error_code::bad_request,
       "max_tokens must be an integer in [0, 4096], got a string", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","max_tokens":-1})", error_code::bad_request,
       "[0, 4096]", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","max_tokens":4097})", error_code::bad_request,
       "[0, 4096]", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","max_tokens":12.0})", error_code::bad_request,
       "integer", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","temperature":"hot"})", error_code::bad_request,
       "temperature must be a number in [0, 100]", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","temperature":-0.1})", error_code::bad_request,
       "[0, 100]", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","temperature":100.5})", error_code::bad_request,
       "[0, 100]", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","temperature":NaN})", error_code::bad_json, "JSON",
       nullptr},
      {R"({"op":"generate","id":"g","prompt":"x","top_p":0})", error_code::bad_request, "(0, 1]",
       "g"},
      {R"({"op":"generate","id":"g","prompt":"x","top_p":1.01})", error_code::bad_request, "top_p",
       "g"},
      {R"({"op":"generate","id":"g","prompt":"x","top_p":1e-300})", error_code::bad_request,
       "top_p", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","top_k":-1})", error_code::bad_request, "top_k",
       "g"},
      {R"({"op":"generate","id":"g","prompt":"x","top_k":2.5})", error_code::bad_request, "top_k",
       "g"},
      {R"({"op":"generate","id":"g","prompt":"x","seed":-1})", error_code::bad_request, "unsigned",
       "g"},
      {R"({"op":"generate","id":"g","prompt":"x","seed":1.5})", error_code::bad_request, "seed",
       "g"},
      {R"({"op":"generate","id":"g","prompt":"x","seed":18446744073709551616})",
       error_code::bad_request, "seed", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","stop":[1]})", error_code::bad_request, "stop[0]",
       "g"},
      {R"({"op":"generate","id":"g","prompt":"x","stop":[""]})", error_code::bad_request, "stop[0]",
       "g"},
      {R"({"op":"generate","id":"g","prompt":"x","stop":{"a":1}})", error_code::bad_request, "stop",
       "g"},
      {R"({"op":"generate","id":"g","prompt":"x","stop":["1","2","3","4","5","6","7","8","9",)"
       R"("10","11","12","13","14","15","16","17"]})",
       error_code::bad_request, "16", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","stop_ids":[-5]})", error_code::bad_request,
       "stop_ids[0]", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","stream":"yes"})", error_code::bad_request,
       "stream", "g"},
      {R"({"op":"generate","id":"g","prompt":"x","stream":1})", error_code::bad_request, "stream",
       "g"},
  };
  for (const auto& r : rows) {
    INFO(r.line);
    auto e = parse_err(r.line);
    CHECK(code_name(e.code) == std::string(code_name(r.code)));
    CHECK_THAT(e.message, Catch::Contains(r.word));
    if (r.id) {
      REQUIRE(e.id);
      CHECK(*e.id == r.id);
    } else {
      CHECK(!e.id);
    }
  }
}

TEST_CASE("limits are configurable and exact", "[protocol]") {
  limits lim;
  lim.max_id_bytes = 3;
  lim.max_stop_bytes = 2;
  const std::string at = R"({"op":"ping","id":"abc"})";  // 24 bytes
  lim.max_line_bytes = at.size();
  CHECK(parse_ok<ping_msg>(at, lim).id == "abc");
  CHECK(parse_ok<ping_msg>(at + "\r", lim).id == "abc");  // the \r is not content
  CHECK(parse_err(at + " ", lim).code == error_code::line_too_long);
  lim.max_line_bytes = 1000;
  CHECK(parse_err(R"({"op":"ping","id":"abcd"})", lim).code == error_code::bad_request);
  CHECK(parse_err(R"({"op":"generate","id":"a","prompt":"x","stop":["abc"]})", lim)
            .message.find("2 bytes") != std::string::npos);
  lim.max_prompt_ids = 2;
  CHECK(parse_err(R"({"op":"generate","id":"a","prompt_ids":[1,2,3]})", lim)
            .message.find("at most 2") != std::string::npos);
  lim.max_depth = 2;
  CHECK(parse_ok<ping_msg>(R"({"op":"ping","id":"a","x":[1]})", lim).id == "a");
  CHECK(parse_err(R"({"op":"ping","id":"a","x":[[1]]})", lim).code == error_code::bad_json);
  // Brackets inside strings do not count.
  CHECK(parse_ok<ping_msg>(R"({"op":"ping","id":"[[[","x":"{{{\"[["})", lim).id == "[[[");
}

TEST_CASE("every error code has its wire name", "[protocol]") {
  CHECK(std::string(code_name(error_code::bad_json)) == "bad_json");
  CHECK(std::string(code_name(error_code::bad_request)) == "bad_request");
  CHECK(std::string(code_name(error_code::unknown_op)) == "unknown_op");
  CHECK(std::string(code_name(error_code::duplicate_id)) == "duplicate_id");
  CHECK(std::string(code_name(error_code::unknown_id)) == "unknown_id");
  CHECK(std::string(code_name(error_code::line_too_long)) == "line_too_long");
  CHECK(std::string(code_name(error_code::context_overflow)) == "context_overflow");
  CHECK(std::string(code_name(error_code::overloaded)) == "overloaded");
  CHECK(std::string(code_name(error_code::unauthorized)) == "unauthorized");
  CHECK(std::string(code_name(error_code::internal)) == "internal");
}

TEST_CASE("replies have the documented shapes", "[protocol]") {
  auto h = reply(hello_reply("hybridserve 0.1.0", "llama-tiny", 2048));
  CHECK(h == json{{"type", "hello"},
                  {"version", 1},
                  {"server", "hybridserve 0.1.0"},
                  {"model", "llama-tiny"},
                  {"max_context", 2048}});

  CHECK(pong("p1") == R"({"type":"pong","id":"p1"})");  // compact, type first
  CHECK(token_msg("r1", 0, 1234, "Hel") ==
        R"({"type":"token","id":"r1","index":0,"token":1234,"text":"Hel"})");

  done_info d;
  d.finish_reason = "length";
  d.prompt_tokens = 5;
  d.completion_tokens = 3;
  d.queue_ms = 0.5;
  d.ttft_ms = 12.25;
  d.prefill_ms = 10;
  d.decode_ms = 20;
  auto j = reply(done_msg("a", d));
  CHECK(j.size() == 5);
  CHECK(j["type"] == "done");
  CHECK(j["id"] == "a");
  CHECK(j["finish_reason"] == "length");
  CHECK(j["usage"] == json{{"prompt_tokens", 5}, {"completion_tokens", 3}});
  CHECK(j["timings"] ==
        json{{"queue_ms", 0.5}, {"ttft_ms", 12.25}, {"prefill_ms", 10.0}, {"decode_ms", 20.0}});
  CHECK(!j.contains("text"));
  CHECK(!j.contains("ids"));

  d.text = " the sea";
  d.ids = std::vector<int32_t>{262, 1110};
  d.decode_ms = std::nan("");
  j = reply(done_msg("a", d));
  CHECK(j["text"] == " the sea");
  CHECK(j["ids"] == json::array({262, 1110}));
  CHECK(j["timings"]["decode_ms"].is_null());  // still valid JSON

  j = reply(error_msg({error_code::unknown_id, "no request a", std::string("a")}));
  CHECK(j ==
        json{{"type", "error"}, {"id", "a"}, {"code", "unknown_id"}, {"message", "no request a"}});
  j = reply(error_msg({error_code::line_too_long, "too long", std::nullopt}));
  CHECK(j.contains("id"));
  CHECK(j["id"].is_null());
  CHECK(j["code"] == "line_too_long");

  const json models = json::array({{{"name", "llama-tiny"},
                                    {"arch", "llama"},
                                    {"params", 1000},
                                    {"max_context", 2048},
                                    {"dtype", "f16"}}});
  j = reply(models_reply("m", models));
  CHECK(j == json{{"type", "models"}, {"id", "m"}, {"models", models}});

  j = reply(stats_reply("s", {{"running", 2}, {"queued", 1}, {"tokens_per_s", 31.5}, {"id", "x"}}));
  CHECK(
      j ==
      json{{"type", "stats"}, {"id", "s"}, {"running", 2}, {"queued", 1}, {"tokens_per_s", 31.5}});
  CHECK(stats_reply("s", json::object()).rfind(R"({"type":"stats","id":"s")", 0) == 0);

  j = reply(admin_reply("a", true, "ok\n", {{"k", 1}}));
  CHECK(j ==
        json{{"type", "admin"}, {"id", "a"}, {"ok", true}, {"text", "ok\n"}, {"data", {{"k", 1}}}});
  CHECK(reply(admin_reply("a", false, "no", nullptr))["data"] == json::object());
}

TEST_CASE("invalid UTF-8 in text is replaced, never thrown", "[protocol]") {
  const std::string bad = std::string("a\xff") + "b\xe2\x82";  // stray byte, truncated euro sign
  auto t = reply(token_msg("r", 1, 7, bad));
  CHECK(t["text"] ==
        "a\xef\xbf\xbd"
        "b\xef\xbf\xbd");
  done_info d;
  d.finish_reason = "stop";
  d.text = bad;
  CHECK(reply(done_msg("r", d))["text"] ==
        "a\xef\xbf\xbd"
        "b\xef\xbf\xbd");
  CHECK(reply(admin_reply("a", true, bad, {{"k", bad}}))["data"]["k"].is_string());
  CHECK(reply(stats_reply("s", {{"model", bad}}))["model"].is_string());
  CHECK(reply(models_reply("m", json::array({{{"name", bad}}})))["models"][0]["name"].is_string());
  CHECK(reply(hello_reply(bad, bad, 1))["server"] ==
        "a\xef\xbf\xbd"
        "b\xef\xbf\xbd");
  CHECK(reply(error_msg({error_code::internal, bad, bad}))["id"].is_string());
  // A character cut between two tokens: the text field may be empty meanwhile.
  CHECK(reply(token_msg("r", 2, 8, ""))["text"] == "");
}

TEST_CASE("round trip: a parsed request echoes its id intact", "[protocol]") {
  const std::string id = "r\xc3\xa9q \\\"1\"\t";  // UTF-8, escapes, control character
  const std::string line = json{{"op", "ping"}, {"id", id}}.dump();
  auto p = parse_ok<ping_msg>(line);
  CHECK(p.id == id);
  CHECK(reply(pong(p.id))["id"] == id);
}

TEST_CASE("line_splitter", "[protocol]") {
  SECTION("lines split across reads and several per read") {
    line_splitter s(100);
    CHECK(s.feed("{\"a\":"));
    CHECK(s.lines.empty());
    CHECK(s.feed("1}\n{\"b\":2}\n{\"c\""));
    CHECK(s.lines == std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"});
    CHECK(s.pending() == 4);
    CHECK(s.feed(":3}\n"));
    CHECK(s.lines == std::vector<std::string>{"{\"c\":3}"});
    CHECK(s.pending() == 0);
  }
  SECTION("\\r\\n, including a \\r and \\n in different reads") {
    line_splitter s(100);
    CHECK(s.feed("a\r\nb\r"));
    CHECK(s.lines == std::vector<std::string>{"a"});
    CHECK(s.feed("\n"));
    CHECK(s.lines == std::vector<std::string>{"b"});
  }
  SECTION("empty lines are ignored") {
    line_splitter s(100);
    CHECK(s.feed("\n\r\n\nx\n\n"));
    CHECK(s.lines == std::vector<std::string>{"x"});
    CHECK(s.feed(""));
    CHECK(s.lines.empty());
  }
  SECTION("the limit exactly at and one above") {
    const std::string at(10, 'x'), above(11, 'x');
    line_splitter s(10);
    CHECK(s.feed(at + "\n"));
    CHECK(s.lines == std::vector<std::string>{at});
    CHECK(s.feed(at + "\r\n"));  // the \r does not count
    CHECK(s.lines == std::vector<std::string>{at});
    CHECK(s.feed(at));  // complete length, newline not yet here
    CHECK(s.feed("\r"));
    CHECK(s.feed("\n"));
    CHECK(s.lines == std::vector<std::string>{at});

    line_splitter t(10);
    CHECK(!t.feed("ok\n" + above + "\n"));
    CHECK(t.lines == std::vector<std::string>{"ok"});  // lines before it still delivered
    CHECK(t.failed());
    CHECK(!t.feed("more\n"));  // stays failed
    CHECK(t.lines.empty());

    line_splitter u(10);  // too long before any newline arrives, in small reads
    CHECK(u.feed("xxxxx"));
    CHECK(u.feed("xxxxx"));
    CHECK(!u.feed("x"));
    CHECK(u.pending() == 0);

    line_splitter v(10);  // a \r that turns out not to end the line
    CHECK(v.feed(at + "\r"));
    CHECK(!v.feed("y"));
  }
}
