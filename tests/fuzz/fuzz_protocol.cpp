// libFuzzer target: arbitrary bytes through the line splitter, the parser and validation, and
// every accepted message back through the serialiser, which must produce valid JSON again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hybridserve/protocol.hpp"

#include <nlohmann/json.hpp>

namespace {

using namespace hs::proto;
using nlohmann::json;

// Not assert(): the fuzz build may define NDEBUG, and a broken invariant must still crash.
void check(bool ok) {
  if (!ok) std::abort();
}

/// Every reply must be one line of valid JSON (nlohmann's parser also rejects bad UTF-8).
json reparse(const std::string& line) {
  check(line.find('\n') == std::string::npos);
  json j = json::parse(line, nullptr, false);
  check(!j.is_discarded() && j.is_object() && j.contains("type"));
  return j;
}

void round_trip(const client_msg& msg) {
  std::visit(
      [](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, hello_msg>) {
          reparse(hello_reply(m.client, m.token, m.version));
        } else if constexpr (std::is_same_v<T, generate_msg>) {
          check(m.prompt.has_value() != m.prompt_ids.has_value());
          check(m.sampling.check().empty());
          int i = 0;
          for (const auto& s : m.stop) reparse(token_msg(m.id, i++, 0, s));
          done_info d;
          d.finish_reason = "stop";
          d.text = m.prompt.value_or("");
          d.ids = m.prompt_ids.value_or(std::vector<int32_t>{});
          // Token text is model output: cut the prompt anywhere, as a tokenizer might.
          if (d.text->size() > 1) reparse(token_msg(m.id, 0, 1, d.text->substr(1)));
          json j = reparse(done_msg(m.id, d));
          check(j["id"] == m.id);  // ids parsed from JSON are valid UTF-8: echoed intact
          check(j["ids"].size() == d.ids->size());
        } else if constexpr (std::is_same_v<T, admin_msg>) {
          reparse(admin_reply(m.id, true, m.command, json{{"command", m.command}}));
        } else {
          check(reparse(pong(m.id))["id"] == m.id);
          reparse(stats_reply(m.id, json{{"id", m.id}}));
        }
      },
      msg);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  limits lim;
  lim.max_line_bytes = 4096;  // small enough that the fuzzer reaches the limit
  line_splitter split(lim.max_line_bytes);
  // Feed in two reads split at a data-dependent point to exercise reassembly.
  const std::size_t cut = size ? data[0] % (size + 1) : 0;
  std::vector<std::string> lines;
  for (std::string_view part : {bytes.substr(0, cut), bytes.substr(cut)}) {
    if (!split.feed(part)) break;
    lines.insert(lines.end(), split.lines.begin(), split.lines.end());
  }
  // The whole input as one line as well, so bytes with '\n' inside still reach the parser.
  lines.emplace_back(bytes);
  for (const auto& line : lines) {
    check(line.size() <= lim.max_line_bytes || &line == &lines.back());
    auto r = parse_line(line, lim);
    if (auto* e = std::get_if<protocol_error>(&r)) {
      check(e->code != error_code::internal);
      json j = reparse(error_msg(*e));
      check(j["code"] == code_name(e->code));
    } else {
      round_trip(std::get<client_msg>(r));
    }
  }
  return 0;
}
