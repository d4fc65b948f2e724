// The byte-level BPE tokenizer against ids and text produced by HF `tokenizers` (fixtures).
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hybridserve/tokenizer.hpp"
#include "hybridserve/utf8.hpp"

namespace {

using json = nlohmann::json;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string fixture(const std::string& model, const std::string& file) {
  return std::string(HS_FIXTURES_DIR) + "/" + model + "/" + file;
}

std::shared_ptr<const hs::tokenizer> load_fixture(const std::string& model) {
  auto r = hs::tokenizer::load(fixture(model, "tokenizer.json"));
  INFO((r.ok() ? std::string() : r.error()));
  REQUIRE(r.ok());
  return r.value();
}

std::shared_ptr<const hs::tokenizer> from_json(const json& j, const std::string& name) {
  auto r = hs::tokenizer::from_json_text(j.dump(), name);
  INFO((r.ok() ? std::string() : r.error()));
  REQUIRE(r.ok());
  return r.value();
}

// Vocab string of a single byte, from GPT-2's bytes_to_unicode() written out independently.
std::string byte_char(unsigned b) {
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  unsigned cp = b;
  if (!printable) {
    cp = 256;
    for (unsigned x = 0; x < b; ++x)
      if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) ++cp;
  }
  std::string s;
  hs::utf8::append_codepoint(s, cp);
  return s;
}

int32_t byte_id(const hs::tokenizer& tok, unsigned b) {
  const int32_t id = tok.token_to_id(byte_char(b));
  REQUIRE(id >= 0);
  return id;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_CASE("tokenizer reproduces the reference ids and text", "[tokenizer]") {
  const std::string model = GENERATE(as<std::string>{}, "opt-tiny", "llama-tiny");
  const auto tok = load_fixture(model);
  const json cases = json::parse(read_text(fixture(model, "tokenizer_cases.json")));
  REQUIRE(cases.size() >= 5);
  CHECK(tok->vocab_size() == 1024);
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const auto ids = c.at("ids").get<std::vector<int32_t>>();
    INFO(model << ": " << text);
    CHECK(tok->encode(text) == ids);
    CHECK(tok->decode(ids) == c.at("decoded").get<std::string>());
  }
}

TEST_CASE("tokenizer agrees with an independent GPT-2 reference on more text", "[tokenizer]") {
  // Ids from OpenAI's GPT-2 encoder algorithm (Python `regex` module, Unicode \s) run on the
  // opt-tiny vocab and merges; that script reproduces every fixture case first. These cover
  // non-ASCII whitespace (needs PCRE2_UCP), contractions in capitals, and non-ASCII digits.
  const std::vector<std::pair<std::string, std::vector<int32_t>>> cases = {
      {u8"a \u00a0b", {68, 224, 130, 258, 69}},
      {u8"end \u3000!", {268, 71, 224, 163, 226, 226, 4}},
      {u8"p\u2003\u2003 q", {83, 622, 229, 622, 229, 224, 84}},
      {u8"u\u0085v", {88, 130, 231, 89}},
      {u8"m\u2028n", {80, 622, 105, 81}},
      {u8"\u00a0\u00a0x", {130, 258, 130, 258, 91}},
      {"tab\t\tz \n\n end  ", {87, 68, 69, 201, 201, 93, 224, 202, 202, 714, 71, 260}},
      {"THEY'RE ok'S", {55, 363, 60, 10, 53, 40, 826, 78, 10, 54}},
      {u8"\u0663\u0664\u0665 \u2177 \u00b2",
       {153, 100, 153, 101, 153, 102, 224, 162, 231, 119, 694, 114}},
      {"hello</s>world </s> x<s>", {399, 378, 82, 2, 90, 267, 830, 224, 2, 224, 91, 0}},
      {" \t", {224, 201}},
  };
  const auto tok = load_fixture("opt-tiny");
  for (const auto& [text, ids] : cases) {
    INFO(text);
    CHECK(tok->encode(text) == ids);
    CHECK(tok->decode(ids) == text);
  }
}

TEST_CASE("BPE merges equal-rank pairs leftmost first", "[tokenizer]") {
  // A minimal byte-level model: the 256 byte characters, then "aa" and "aaaa".
  json vocab = json::object();
  for (unsigned b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab["aa"] = 256;
  vocab["aaaa"] = 257;
  const json j = {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", json::array({json::array({"a", "a"}), json::array({"aa", "aa"})})}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"added_tokens", json::array()},
  };
  const auto tok = from_json(j, "tiny.json");
  CHECK(tok->vocab_size() == 258);
  // Leftmost first: aa|a, then aa|aa|a -> aaaa|a (rightmost first would give a|aaaa).
  CHECK(tok->encode("aaa") == std::vector<int32_t>{256, 'a'});
  CHECK(tok->encode("aaaaa") == std::vector<int32_t>{257, 'a'});
  CHECK(tok->encode("aaaaaa") == std::vector<int32_t>{257, 256});
  CHECK(tok->decode({257, 'a', 256}) == "aaaaaaa");
}

TEST_CASE("special tokens written in the text become their ids", "[tokenizer]") {
  const auto tok = load_fixture("opt-tiny");
  const int32_t eos = tok->token_to_id("</s>");
  REQUIRE(eos == 2);
  CHECK(tok->is_special(eos));
  CHECK_FALSE(tok->is_special(tok->encode("hello").at(0)));
  CHECK(tok->token_bytes(eos) == "</s>");

  const auto ids = tok->encode("hello</s>world");
  CHECK(ids == concat(concat(tok->encode("hello"), {eos}), tok->encode("world")));
  CHECK(tok->decode(ids) == "hello</s>world");
  CHECK(tok->decode(ids, /*skip_special=*/true) == "helloworld");
  // Pieces on either side are split separately: the trailing space stays its own piece.
  CHECK(tok->encode("a </s>") == concat(tok->encode("a "), {eos}));
  CHECK(tok->encode("<s></s><pad>") == std::vector<int32_t>{0, 2, 1});
  // An unfinished special token is ordinary text.
  const auto partial = tok->encode("</s");
  CHECK(std::find(partial.begin(), partial.end(), eos) == partial.end());
  CHECK(tok->decode(partial) == "</s");
}

TEST_CASE("added tokens match longest first; non-special ones survive skip_special",
          "[tokenizer]") {
  json j = json::parse(read_text(fixture("opt-tiny", "tokenizer.json")));
  j["added_tokens"].push_back({{"id", 1024}, {"content", "<|x|>"}, {"special", true}});
  j["added_tokens"].push_back({{"id", 1025}, {"content", "<|x|>y"}, {"special", false}});
  const auto tok = from_json(j, "added.json");
  CHECK(tok->vocab_size() == 1026);
  CHECK(tok->encode("a<|x|>yb") == concat(concat(tok->encode("a"), {1025}), tok->encode("b")));
  CHECK(tok->encode("<|x|>z") == concat({1024}, tok->encode("z")));
  CHECK(tok->decode({1024, 1025}) == "<|x|><|x|>y");
  CHECK(tok->decode({1024, 1025}, true) == "<|x|>y");
}

TEST_CASE("old-format merges (\"a b\" strings) give the same ids", "[tokenizer]") {
  json j = json::parse(read_text(fixture("llama-tiny", "tokenizer.json")));
  json old_merges = json::array();
  for (const auto& m : j["model"]["merges"])
    old_merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  j["model"]["merges"] = old_merges;
  const auto tok = from_json(j, "old-merges.json");
  const json cases = json::parse(read_text(fixture("llama-tiny", "tokenizer_cases.json")));
  for (const auto& c : cases) {
    INFO(c.at("text").get<std::string>());
    CHECK(tok->encode(c.at("text").get<std::string>()) == c.at("ids").get<std::vector<int32_t>>());
  }
}

TEST_CASE("add_prefix_space is honoured", "[tokenizer]") {
  const auto plain = load_fixture("opt-tiny");
  json j = json::parse(read_text(fixture("opt-tiny", "tokenizer.json")));
  j["pre_tokenizer"]["add_prefix_space"] = true;
  const auto tok = from_json(j, "prefix.json");
  CHECK(tok->encode("Hello world") == plain->encode(" Hello world"));
  CHECK(tok->encode(" Hello") == plain->encode(" Hello"));  // no second space
  CHECK(tok->encode("") == std::vector<int32_t>{});
}

TEST_CASE("ill-formed UTF-8 input is encoded byte for byte", "[tokenizer]") {
  const auto tok = load_fixture("opt-tiny");
  const std::string text = "ab\xff\xe2(cd \xf0\x9f";
  const auto ids = tok->encode(text);
  std::string bytes;
  for (int32_t id : ids) bytes += tok->token_bytes(id);
  CHECK(bytes == text);
  CHECK(tok->decode(ids) == hs::utf8::sanitize(text));
}

TEST_CASE("decode rejects ids outside the vocab", "[tokenizer]") {
  const auto tok = load_fixture("opt-tiny");
  CHECK_THROWS_WITH(tok->decode({5, 1024}),
                    Catch::Contains("token id 1024 out of range [0, 1024)"));
  CHECK_THROWS_AS(tok->decode({-1}), hs::error);
  CHECK_THROWS_AS(tok->token_bytes(4096), hs::error);
}

TEST_CASE("stream_decoder never emits part of a character", "[tokenizer][stream]") {
  const auto tok = load_fixture("llama-tiny");
  const std::string text = "naïve café — Ünïcödé ✓ 日本語 🤖";
  const auto ids = tok->encode(text);
  hs::stream_decoder dec(tok);
  std::string all;
  int held = 0;
  for (int32_t id : ids) {
    const std::string piece = dec.push(id);
    // Valid UTF-8 and no U+FFFD: the input was well formed, so nothing may be cut.
    CHECK(hs::utf8::sanitize(piece) == piece);
    CHECK(piece.find("\xef\xbf\xbd") == std::string::npos);
    if (piece.empty()) ++held;
    all += piece;
  }
  all += dec.finish();
  CHECK(all == tok->decode(ids));
  CHECK(all == text);
  CHECK(held > 0);  // some characters really were split across tokens
}

TEST_CASE("stream_decoder replaces invalid bytes at once and matches decode", "[stream]") {
  const auto tok = load_fixture("opt-tiny");
  const int32_t e2 = byte_id(*tok, 0xE2), x82 = byte_id(*tok, 0x82), xac = byte_id(*tok, 0xAC);
  const int32_t paren = tok->token_to_id("(");
  {
    hs::stream_decoder dec(tok);
    CHECK(dec.push(e2).empty());  // could still become '€'
    CHECK(dec.push(x82).empty());
    CHECK(dec.push(xac) == "\xe2\x82\xac");
    CHECK(dec.finish().empty());
  }
  {
    hs::stream_decoder dec(tok);
    CHECK(dec.push(e2).empty());
    CHECK(dec.push(paren) == "\xef\xbf\xbd(");  // E2 ( is already known to be bad
    CHECK(dec.push(xac) == "\xef\xbf\xbd");     // a lone continuation byte, too
  }
  {
    hs::stream_decoder dec(tok);
    CHECK(dec.push(e2).empty());
    CHECK(dec.push(x82).empty());
    CHECK(dec.finish() == "\xef\xbf\xbd");  // b"\xe2\x82" -> one U+FFFD, as in Python
  }
  // Special tokens in the middle of a split character, with and without skipping.
  const std::vector<int32_t> ids = {e2, 2, x82, xac, paren, e2, e2};
  for (bool skip : {true, false}) {
    hs::stream_decoder dec(tok, skip);
    std::string all;
    for (int32_t id : ids) all += dec.push(id);
    all += dec.finish();
    CHECK(all == tok->decode(ids, skip));
  }
}

TEST_CASE("encode is safe from several threads", "[tokenizer]") {
  const auto tok = load_fixture("opt-tiny");
  const json cases = json::parse(read_text(fixture("opt-tiny", "tokenizer_cases.json")));
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 50; ++rep)
        for (const auto& c : cases)
          if (tok->encode(c.at("text").get<std::string>()) !=
              c.at("ids").get<std::vector<int32_t>>())
            ++failures[t];
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == std::vector<int>(4, 0));
}

TEST_CASE("bad tokenizer files fail with the file named", "[tokenizer][errors]") {
  const json good = json::parse(read_text(fixture("opt-tiny", "tokenizer.json")));

  auto bad_text = hs::tokenizer::from_json_text("{ not json", "broken/tokenizer.json");
  REQUIRE_FALSE(bad_text.ok());
  CHECK_THAT(bad_text.error(), Catch::Contains("broken/tokenizer.json"));
  CHECK_THAT(bad_text.error(), Catch::Contains("JSON"));

  json wrong_model = good;
  wrong_model["model"]["type"] = "WordPiece";
  auto r1 = hs::tokenizer::from_json_text(wrong_model.dump(), "wp/tokenizer.json");
  REQUIRE_FALSE(r1.ok());
  CHECK_THAT(r1.error(), Catch::Contains("wp/tokenizer.json") && Catch::Contains("WordPiece"));

  json wrong_pre = good;
  wrong_pre["pre_tokenizer"] = {{"type", "Metaspace"}};
  auto r2 = hs::tokenizer::from_json_text(wrong_pre.dump(), "meta/tokenizer.json");
  REQUIRE_FALSE(r2.ok());
  CHECK_THAT(r2.error(), Catch::Contains("meta/tokenizer.json") && Catch::Contains("Metaspace"));

  json normalized = good;
  normalized["normalizer"] = {{"type", "NFC"}};
  auto rn = hs::tokenizer::from_json_text(normalized.dump(), "nfc/tokenizer.json");
  REQUIRE_FALSE(rn.ok());
  CHECK_THAT(rn.error(), Catch::Contains("nfc/tokenizer.json") && Catch::Contains("NFC"));

  json no_vocab = good;
  no_vocab["model"].erase("vocab");
  auto r3 = hs::tokenizer::from_json_text(no_vocab.dump(), "novocab/tokenizer.json");
  REQUIRE_FALSE(r3.ok());
  CHECK_THAT(r3.error(), Catch::Contains("novocab/tokenizer.json") && Catch::Contains("vocab"));

  json bad_merge = good;
  bad_merge["model"]["merges"].push_back({"no-such-token", "x"});
  auto r4 = hs::tokenizer::from_json_text(bad_merge.dump(), "merge/tokenizer.json");
  REQUIRE_FALSE(r4.ok());
  CHECK_THAT(r4.error(),
             Catch::Contains("merge/tokenizer.json") && Catch::Contains("no-such-token"));

  json bad_type = good;
  bad_type["model"]["vocab"]["Ġthe"] = "not an id";
  auto r5 = hs::tokenizer::from_json_text(bad_type.dump(), "types/tokenizer.json");
  REQUIRE_FALSE(r5.ok());
  CHECK_THAT(r5.error(), Catch::Contains("types/tokenizer.json"));

  // load(): a missing file and a file that is not JSON both name the path.
  const std::string missing = fixture("opt-tiny", "no-such-tokenizer.json");
  auto r6 = hs::tokenizer::load(missing);
  REQUIRE_FALSE(r6.ok());
  CHECK_THAT(r6.error(), Catch::Contains(missing));

  const auto tmp = std::filesystem::temp_directory_path() / "hs_test_bad_tokenizer.json";
  { std::ofstream(tmp) << "[1, 2"; }
  auto r7 = hs::tokenizer::load(tmp.string());
  std::filesystem::remove(tmp);
  REQUIRE_FALSE(r7.ok());
  CHECK_THAT(r7.error(), Catch::Contains(tmp.string()));
}
