// The admin command interpreter behind the console: each command gathers what it needs from
// the actors with asynchronous requests and answers with text for people and JSON for tools.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hybridserve/frontends.hpp"
#include "hybridserve/units.hpp"

namespace hs {
namespace {

using json = nlohmann::json;

struct admin_state {
  engine* e = nullptr;
  std::function<void()> on_shutdown;
  static inline const char* name = "admin";
};
using admin_ptr = admin_actor::stateful_pointer<admin_state>;

const char* k_help =
    "status                 model, backend, requests running and queued\n"
    "stats                  tokens/s, requests, step time predicted vs measured\n"
    "cache                  cache blocks and bytes by tier and form\n"
    "plan                   current KV/activation ratio and placement\n"
    "actors                 mailbox size of each actor\n"
    "requests               live requests\n"
    "cancel ID              cancel a request (ids from `requests`)\n"
    "set kv_ratio R|auto    pin the share of cached tokens kept as K/V, or let the plan choose\n"
    "set max_batch N        running sequences per pass\n"
    "set max_step_tokens N  new tokens per pass (prefill chunk)\n"
    "drain                  finish running requests, accept no new ones\n"
    "shutdown               stop the server\n"
    "help                   this list";

std::string fmt(const char* f, double a, double b = 0, double c = 0, double d = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c, d);
  return buf;
}

json cache_json(const cache_report& c) {
  const char* forms[] = {"kv", "act"};
  const char* tiers[] = {"device", "host"};
  json j;
  for (int f = 0; f < 2; ++f)
    for (int t = 0; t < 2; ++t)
      j[forms[f]][tiers[t]] = {{"blocks", c.usage.blocks[f][t]},
                               {"bytes", c.usage.bytes[f][t]},
                               {"tokens", c.usage.tokens[f][t]}};
  j["device_cap"] = c.device_cap;
  j["device_used"] = c.device_used;
  j["device_peak"] = c.device_peak;
  j["device_budget"] = c.device_budget;
  j["host_budget"] = c.host_budget;
  j["kv_ratio"] = c.kv_ratio;
  j["auto_ratio"] = c.auto_ratio;
  j["sequences"] = c.sequences;
  return j;
}

std::string cache_text(const cache_report& c) {
  std::ostringstream os;
  os << "form  tier     blocks        bytes   tokens\n";
  const char* forms[] = {"kv", "act"};
  const char* tiers[] = {"device", "host"};
  for (int f = 0; f < 2; ++f)
    for (int t = 0; t < 2; ++t) {
      char line[128];
      std::snprintf(line, sizeof line, "%-5s %-7s %7lld %12s %8lld\n", forms[f], tiers[t],
                    (long long)c.usage.blocks[f][t],
                    format_bytes(double(c.usage.bytes[f][t])).c_str(),
                    (long long)c.usage.tokens[f][t]);
      os << line;
    }
  os << "device: " << format_bytes(double(c.device_used)) << " used, "
     << format_bytes(double(c.device_peak)) << " peak, budget "
     << format_bytes(double(c.device_budget)) << "; cache cap "
     << format_bytes(double(c.device_cap));
  return os.str();
}

void answer(caf::typed_response_promise<admin_result> rp, bool ok, std::string text, json data) {
  rp.deliver(admin_result{ok, std::move(text), data.dump()});
}

admin_actor::behavior_type admin(admin_ptr self, engine* e, std::function<void()> on_shutdown) {
  self->state.e = e;
  self->state.on_shutdown = std::move(on_shutdown);
  return {
      [=](admin_cmd_atom, const std::string& line) -> caf::result<admin_result> {
        auto& in = self->state.e->internals();
        std::istringstream is(line);
        std::vector<std::string> w;
        for (std::string t; is >> t;) w.push_back(t);
        auto rp = self->make_response_promise<admin_result>();
        const std::string cmd = w.empty() ? "" : w[0];
        if (cmd.empty() || cmd == "help") {
          answer(rp, true, k_help, json{{"commands", admin_command_names()}});
        } else if (cmd == "status" || cmd == "stats") {
          self->request(in.intake, caf::infinite, stats_atom::value)
              .then([=](const intake_stats& s) {
                auto& i = self->state.e->internals();
                const auto& c = i.m->config;
                json d = {{"model", c.name},
                          {"arch", arch_name(c.architecture)},
                          {"backend", i.be->name()},
                          {"running", s.running},
                          {"queued", s.queued},
                          {"finished", s.finished},
                          {"generated_tokens", s.generated_tokens},
                          {"tokens_per_s", s.tokens_per_s},
                          {"steps", s.steps},
                          {"last_step_s", s.last_step_s},
                          {"draining", s.draining}};
                std::string text;
                if (cmd == "status") {
                  text = "model " + c.name + " (" + arch_name(c.architecture) + ") on " +
                         i.be->name() + (s.draining ? ", draining" : ", accepting") + "\n" +
                         fmt("running %.0f, queued %.0f, finished %.0f", double(s.running),
                             double(s.queued), double(s.finished));
                  answer(rp, true, text, d);
                  return;
                }
                self->request(i.accountant, caf::infinite, usage_atom::value)
                    .then([=](const cache_report& c2) mutable {
                      d["predicted_step_s"] = c2.plan.feasible ? c2.plan.step_s : 0.0;
                      std::string t =
                          fmt("tokens/s %.1f  generated %.0f  steps %.0f", s.tokens_per_s,
                              double(s.generated_tokens), double(s.steps)) +
                          "\n" +
                          fmt("running %.0f  queued %.0f  finished %.0f", double(s.running),
                              double(s.queued), double(s.finished)) +
                          "\n" +
                          fmt("step time: measured %.4f s, predicted %.4f s (plan for the current "
                              "batch)",
                              s.last_step_s, c2.plan.feasible ? c2.plan.step_s : 0.0);
                      answer(rp, true, t, d);
                    });
              });
        } else if (cmd == "cache" || cmd == "plan") {
          self->request(in.accountant, caf::infinite, usage_atom::value)
              .then([=](const cache_report& c) {
                if (cmd == "cache") return answer(rp, true, cache_text(c), cache_json(c));
                json d = cache_json(c);
                d["resident_layers"] = self->state.e->internals().head.resident_layers;
                d["ring_slots"] = self->state.e->internals().head.ring_slots;
                d["predicted_step_s"] = c.plan.feasible ? c.plan.step_s : 0.0;
                std::string t = std::string("kv_ratio ") + fmt("%.2f", c.kv_ratio) +
                                (c.auto_ratio ? " (auto)" : " (pinned)") + "\n" + c.plan_text;
                answer(rp, true, t, d);
              });
        } else if (cmd == "actors") {
          auto sizes = std::make_shared<json>(json::object());
          auto left = std::make_shared<int>(5);
          auto done = [=](const char* name, int64_t n) {
            (*sizes)[name] = n;
            if (--*left == 0) {
              std::string t;
              for (auto it = sizes->begin(); it != sizes->end(); ++it)
                t += it.key() + ": " + std::to_string(it.value().get<int64_t>()) + " messages\n";
              answer(rp, true, t, json{{"mailbox", *sizes}});
            }
          };
          self->request(in.intake, caf::infinite, mailbox_atom::value).then([=](int64_t n) {
            done("request_intake", n);
          });
          self->request(in.loader, caf::infinite, mailbox_atom::value).then([=](int64_t n) {
            done("layer_loader", n);
          });
          self->request(in.recompute, caf::infinite, mailbox_atom::value).then([=](int64_t n) {
            done("recompute_engine", n);
          });
          self->request(in.decoder, caf::infinite, mailbox_atom::value).then([=](int64_t n) {
            done("decoder", n);
          });
          self->request(in.accountant, caf::infinite, mailbox_atom::value).then([=](int64_t n) {
            done("cache_accountant", n);
          });
        } else if (cmd == "requests") {
          self->request(in.intake, caf::infinite, requests_atom::value)
              .then([=](const std::vector<request_info>& rs) {
                json d = json::array();
                std::string t = rs.empty() ? "no live requests"
                                           : "id      state    prompt  generated  max  age\n";
                for (const auto& r : rs) {
                  d.push_back({{"id", r.id},
                               {"state", r.state},
                               {"prompt_tokens", r.prompt_tokens},
                               {"generated", r.generated},
                               {"max_tokens", r.max_tokens},
                               {"age_s", r.age_s}});
                  char line[160];
                  std::snprintf(line, sizeof line, "%-7lld %-8s %6lld %10lld %4lld %5.1fs\n",
                                (long long)r.id, r.state.c_str(), (long long)r.prompt_tokens,
                                (long long)r.generated, (long long)r.max_tokens, r.age_s);
                  t += line;
                }
                answer(rp, true, t, json{{"requests", d}});
              });
        } else if (cmd == "cancel") {
          int64_t id = 0;
          if (w.size() != 2 || (id = std::atoll(w[1].c_str())) <= 0)
            answer(rp, false, "usage: cancel ID (a number from `requests`)", json::object());
          else {
            self->send(in.intake, cancel_atom::value, id);
            answer(rp, true, "cancel sent to request " + std::to_string(id),
                   json{{"cancelled", id}});
          }
        } else if (cmd == "set") {
          if (w.size() != 3) {
            answer(rp, false,
                   "usage: set kv_ratio R|auto | set max_batch N | set max_step_tokens N",
                   json::object());
          } else if (w[1] == "kv_ratio") {
            double r = -1;
            bool good = w[2] == "auto";
            if (!good) {
              char* end = nullptr;
              r = std::strtod(w[2].c_str(), &end);
              good = end && *end == 0 && r >= 0 && r <= 1;
            }
            if (!good) {
              answer(rp, false, "kv_ratio must be 'auto' or a number in [0, 1]", json::object());
            } else {
              self->request(in.accountant, caf::infinite, ratio_atom::value, r)
                  .then([=](const cache_report& c) {
                    answer(rp, true,
                           std::string("kv_ratio ") + fmt("%.2f", c.kv_ratio) +
                               (c.auto_ratio ? " (auto)" : " (pinned)") + ", from the next pass",
                           json{{"kv_ratio", c.kv_ratio}, {"auto_ratio", c.auto_ratio}});
                  });
            }
          } else {
            char* end = nullptr;
            const long long v = std::strtoll(w[2].c_str(), &end, 10);
            if (!end || *end != 0) {
              answer(rp, false, w[1] + " needs an integer", json::object());
            } else {
              self->request(in.intake, caf::infinite, set_atom::value, w[1], int64_t(v))
                  .then([=](const std::string& err) {
                    if (err.empty())
                      answer(rp, true, w[1] + " = " + w[2], json{{w[1], v}});
                    else
                      answer(rp, false, err, json::object());
                  });
            }
          }
        } else if (cmd == "drain") {
          self->send(in.intake, drain_atom::value);
          answer(rp, true, "draining: running requests finish, new ones are refused",
                 json{{"draining", true}});
        } else if (cmd == "shutdown") {
          answer(rp, true, "shutting down", json{{"shutdown", true}});
          if (self->state.on_shutdown) self->state.on_shutdown();
        } else {
          answer(rp, false, "unknown command '" + cmd + "'; try help", json::object());
        }
        return rp;
      },
  };
}

}  // namespace

std::vector<std::string> admin_command_names() {
  return {"status", "stats", "cache", "plan",     "actors", "requests",
          "cancel", "set",   "drain", "shutdown", "help"};
}

admin_actor spawn_admin(engine& e, std::function<void()> on_shutdown) {
  auto a = e.internals().sys->spawn(admin, &e, std::move(on_shutdown));
  e.internals().frontends.push_back(caf::actor_cast<caf::actor>(a));  // exits with the engine
  return a;
}

}  // namespace hs
