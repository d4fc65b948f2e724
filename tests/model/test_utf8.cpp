// hs::utf8 against values produced by CPython 3 (bytes.decode("utf-8", "replace") and its
// incremental decoder), so "matches Python" is checked, not assumed.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "hybridserve/utf8.hpp"

namespace {

// {input bytes, Python's input.decode("utf-8", "replace").encode("utf-8")}. Literals are split
// where a hex escape would otherwise swallow the next character ("\xa4" "b").
const std::vector<std::pair<std::string, std::string>> kPythonReplaceCases = {
    {"", ""},
    {"abc", "abc"},
    {"\xe2\x82", "\xef\xbf\xbd"},
    {"\xe2\x82\xac", "\xe2\x82\xac"},
    {"\xe2(\xa1", "\xef\xbf\xbd(\xef\xbf\xbd"},
    {"\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xc1\xbf", "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xed\x9f\xbf", "\xed\x9f\xbf"},
    {"\xe0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xe0\xa0\x80", "\xe0\xa0\x80"},
    {"\xf0\x8f\xbf\xbf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xf0\x90\x80\x80", "\xf0\x90\x80\x80"},
    {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},
    {"\xf5\x80", "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xff\xfe", "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\x80\x80x", "\xef\xbf\xbd\xef\xbf\xbdx"},
    {"\xf0\x9f\xa4", "\xef\xbf\xbd"},
    {"a\xf0\x9f\xa4"
     "b",
     "a\xef\xbf\xbd"
     "b"},
    {"\xe6\x97\xa5\xe6", "\xe6\x97\xa5\xef\xbf\xbd"},
    {"\xc3", "\xef\xbf\xbd"},
    {"\xf8\x88\x80\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xe2\x82\xe2\x82\xac", "\xef\xbf\xbd\xe2\x82\xac"},
    {"\xed\xbf\xbf\xee\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xee\x80\x80"},
    {"\xf0\x9f\xa4\x96\xf0", "\xf0\x9f\xa4\x96\xef\xbf\xbd"},
    {"\xc3(", "\xef\xbf\xbd("},
    {"\xe1\x80\xe2\xf0\x91\x92\xf1\xbf"
     "A",
     "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
     "A"},
};

}  // namespace

TEST_CASE("utf8::sanitize matches Python's errors='replace'", "[utf8]") {
  for (const auto& [in, expected] : kPythonReplaceCases) {
    INFO("input of " << in.size() << " bytes");
    CHECK(hs::utf8::sanitize(in) == expected);
  }
}

TEST_CASE("utf8::sanitize keeps valid text byte for byte", "[utf8]") {
  const std::string text = "naïve café — Ünïcödé ✓ 日本語 🤖 \x01\x7f";
  CHECK(hs::utf8::sanitize(text) == text);
  // NUL is a valid character, not a terminator.
  const std::string with_nul("a\0b", 3);
  CHECK(hs::utf8::sanitize(with_nul) == with_nul);
}

TEST_CASE("utf8::complete_prefix holds back only a valid-so-far tail", "[utf8]") {
  // {bytes, len(bytes) - len(held back)} from Python's incremental UTF-8 decoder
  // (codecs.getincrementaldecoder("utf-8")("replace"), final=False).
  const std::vector<std::pair<std::string, std::size_t>> cases = {
      {"", 0},
      {"abc", 3},
      {"a\xe2\x82", 1},
      {"a\xe2", 1},
      {"\xe2\x82\xac", 3},
      {"a\xe2(", 3},
      {"\xed\x9f", 0},
      {"\xf0\x9f\xa4", 0},
      {"\xf0\x8f", 2},
      {"\xc3", 0},
      {"\xff", 1},
      {"\xf4\x8f\xbf", 0},
      {"\xf4\x90", 2},
      {"\xe0\x9f", 2},
      {"\xe0\xa0", 0},
      {"\xc0", 1},
      {"\xf0\x9f\xa4\x96\xf0\x9f", 4},
  };
  for (const auto& [in, expected] : cases) {
    INFO("input of " << in.size() << " bytes");
    CHECK(hs::utf8::complete_prefix(in) == expected);
  }
  // Python holds back ED A0 (for the sake of surrogatepass), but with errors="replace" it can
  // only ever become two U+FFFD, so emitting it at once is the stricter, equivalent choice.
  CHECK(hs::utf8::complete_prefix("\xed\xa0") == 2);
}

TEST_CASE("utf8::complete_prefix splits where sanitize is compositional", "[utf8]") {
  // Whatever follows, sanitize(prefix) + sanitize(rest) must equal sanitize(all): this is
  // what lets the stream decoder emit early.
  const std::vector<std::string> heads = {"a\xe2\x82", "\xf0\x9f", "\xe2(", "\xed", "x\xc3"};
  const std::vector<std::string> tails = {"\xac", "\xa4\x96", "", "\xa0\x80", "\xa9z", "(", "\xff"};
  for (const auto& h : heads) {
    for (const auto& t : tails) {
      const std::string all = h + t;
      const std::size_t n = hs::utf8::complete_prefix(h);
      const std::string streamed =
          hs::utf8::sanitize(h.substr(0, n)) + hs::utf8::sanitize(h.substr(n) + t);
      CHECK(streamed == hs::utf8::sanitize(all));
    }
  }
}

TEST_CASE("utf8::append_codepoint encodes every length", "[utf8]") {
  std::string out;
  hs::utf8::append_codepoint(out, U'A');
  hs::utf8::append_codepoint(out, 0xE9);      // é
  hs::utf8::append_codepoint(out, 0x65E5);    // 日
  hs::utf8::append_codepoint(out, 0x1F916);   // 🤖
  hs::utf8::append_codepoint(out, 0x10FFFF);  // the last code point
  CHECK(out == "A\xc3\xa9\xe6\x97\xa5\xf0\x9f\xa4\x96\xf4\x8f\xbf\xbf");

  // No UTF-8 form: U+FFFD instead of bytes that would not decode.
  std::string bad;
  hs::utf8::append_codepoint(bad, 0xD800);
  hs::utf8::append_codepoint(bad, 0x110000);
  CHECK(bad == "\xef\xbf\xbd\xef\xbf\xbd");
}
