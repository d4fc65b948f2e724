// Request intake: validates and queues requests, admits them when the accountant has room,
// composes each pass (running decodes first, then prefill chunks: continuous batching), streams
// tokens back to each requester and ends requests on stop, length, cancel or error.
#include <chrono>
#include <deque>
#include <map>

#include "hybridserve/actors.hpp"

namespace hs {
namespace {

using clock_type = std::chrono::steady_clock;

struct live_request {
  int64_t id = 0;
  caf::actor requester;
  generation_request req;
  std::vector<int32_t> out;
  int64_t prefilled = 0;
  std::vector<std::vector<float>> logits;
  bool cancelled = false;
  bool in_step = false;
  clock_type::time_point t_submit, t_admit, t_first, t_prefilled;
};

struct intake_state {
  std::shared_ptr<const model> m;
  decoder_actor decoder;
  accountant_actor accountant;
  intake_options o;
  std::map<int64_t, live_request> live;  // queued and running
  std::deque<int64_t> queue;             // not yet admitted
  std::vector<int64_t> running;          // admitted, in arrival order
  bool step_in_flight = false, admitting = false, draining = false;
  int64_t next_id = 1, next_step = 1;
  intake_stats stats;
  double busy_s = 0;
  static inline const char* name = "request_intake";
};

using intake_ptr = intake_actor::stateful_pointer<intake_state>;

double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return a.time_since_epoch().count() == 0 || b.time_since_epoch().count() == 0
             ? 0.0
             : std::chrono::duration<double, std::milli>(b - a).count();
}

void schedule(intake_ptr self);

void finish(intake_ptr self, int64_t id, finish_reason why, const std::string& err = {}) {
  auto& st = self->state;
  auto it = st.live.find(id);
  if (it == st.live.end()) return;
  auto& r = it->second;
  const auto now = clock_type::now();
  finished_event ev;
  ev.request = id;
  ev.result.tokens = r.out;
  ev.result.reason = why;
  ev.result.error = err;
  ev.result.logits = std::move(r.logits);
  ev.prompt_tokens = int64_t(r.req.prompt.size());
  ev.timings.queue_ms = ms_between(r.t_submit, r.t_admit);
  ev.timings.ttft_ms = ms_between(r.t_submit, r.t_first);
  ev.timings.prefill_ms = ms_between(r.t_admit, r.t_prefilled);
  ev.timings.decode_ms = ms_between(r.t_prefilled, now);
  caf::anon_send(r.requester, finished_atom::value, ev);
  self->send(st.accountant, release_atom::value, id);
  self->send(st.decoder, forget_atom::value, id);
  st.running.erase(std::remove(st.running.begin(), st.running.end(), id), st.running.end());
  st.queue.erase(std::remove(st.queue.begin(), st.queue.end(), id), st.queue.end());
  st.stats.finished += 1;
  st.live.erase(it);
}

void on_step_done(intake_ptr self, const step_outcome& o) {
  auto& st = self->state;
  st.step_in_flight = false;
  st.stats.steps += 1;
  st.stats.last_step_s = o.seconds;
  st.busy_s += o.seconds;
  st.stats.h2d_cache_bytes += int64_t(o.h2d_bytes);
  st.stats.d2h_bytes += int64_t(o.d2h_bytes);
  if (!o.trace.empty()) st.stats.trace += o.trace;
  const auto now = clock_type::now();
  for (std::size_t i = 0; i < o.seqs.size(); ++i) {
    auto it = st.live.find(o.seqs[i]);
    if (it == st.live.end()) continue;
    auto& r = it->second;
    r.in_step = false;
    if (!o.error.empty()) {
      finish(self, r.id, finish_reason::error, o.error);
      continue;
    }
    const int32_t tok = o.tokens[i];
    if (tok >= 0) {
      if (r.out.empty()) {
        r.t_first = now;
        r.t_prefilled = now;
      }
      r.out.push_back(tok);
      if (r.req.return_logits && i < o.logits.size()) r.logits.push_back(o.logits[i]);
      st.stats.generated_tokens += 1;
      caf::anon_send(r.requester, token_atom::value,
                     token_event{r.id, int32_t(r.out.size() - 1), tok});
    }
    if (r.cancelled) {
      finish(self, r.id, finish_reason::cancelled);
      continue;
    }
    if (tok < 0) continue;
    const auto& q = r.req;
    const bool stop = (q.stop_at_eos && st.m->is_eos(tok)) ||
                      std::find(q.stop_ids.begin(), q.stop_ids.end(), tok) != q.stop_ids.end();
    const int64_t ctx = int64_t(q.prompt.size() + r.out.size());
    if (stop)
      finish(self, r.id, finish_reason::stop);
    else if (int(r.out.size()) >= q.max_tokens || ctx >= st.m->config.max_pos)
      finish(self, r.id, finish_reason::length);
  }
  if (st.busy_s > 0) st.stats.tokens_per_s = double(st.stats.generated_tokens) / st.busy_s;
  schedule(self);
}

// Admits queued requests (one accountant round trip at a time), then runs a pass if idle.
void schedule(intake_ptr self) {
  auto& st = self->state;
  if (!st.admitting && !st.queue.empty() && int(st.running.size()) < st.o.max_batch) {
    const int64_t id = st.queue.front();
    auto& r = st.live.at(id);
    const int64_t need =
        std::min<int64_t>(st.m->config.max_pos, int64_t(r.req.prompt.size()) + r.req.max_tokens);
    st.admitting = true;
    self->request(st.accountant, caf::infinite, admit_atom::value, id, need)
        .then([=](const admit_reply& a) {
          auto& s = self->state;
          s.admitting = false;
          auto it = s.live.find(id);
          if (it != s.live.end() && !s.queue.empty() && s.queue.front() == id) {
            if (a.ok) {
              s.queue.pop_front();
              s.running.push_back(id);
              it->second.t_admit = clock_type::now();
            } else if (s.running.empty()) {
              // Nothing will ever free room for it: refuse rather than wait forever.
              finish(self, id, finish_reason::error, a.why);
            }
          }
          schedule(self);
        });
  }
  // Admit what is waiting before the next pass, so the pass (and the accountant's plan) sees
  // the whole batch rather than its first arrival.
  if (st.admitting && int(st.running.size()) < st.o.max_batch) return;
  if (st.step_in_flight || st.running.empty()) return;
  step_items items;
  items.step = st.next_step++;
  int64_t budget = st.o.max_step_tokens;
  bool prefilling = false;
  for (auto id : st.running) {
    const auto& r = st.live.at(id);
    prefilling = prefilling || r.prefilled < int64_t(r.req.prompt.size());
  }
  const bool decodes = !(st.o.prefill_first && prefilling);
  // Decodes first: one token each; then prefill chunks in arrival order.
  for (auto id : st.running) {
    auto& r = st.live.at(id);
    if (!decodes || r.prefilled < int64_t(r.req.prompt.size()) || budget <= 0) continue;
    step_item it;
    it.seq = id;
    const std::size_t k = r.out.size() - 1;
    it.tokens = {k < r.req.forced.size() ? r.req.forced[k] : r.out.back()};
    it.return_logits = r.req.return_logits;
    it.past = int64_t(r.req.prompt.size() + r.out.size()) - 1;
    it.want_logits = true;
    items.items.push_back(it);
    items.sampling.push_back(r.req.sampling);
    r.in_step = true;
    budget -= 1;
  }
  for (auto id : st.running) {
    auto& r = st.live.at(id);
    const int64_t left = int64_t(r.req.prompt.size()) - r.prefilled;
    if (left <= 0 || budget <= 0) continue;
    const int64_t n = std::min(left, budget);
    step_item it;
    it.seq = id;
    it.tokens.assign(r.req.prompt.begin() + r.prefilled, r.req.prompt.begin() + r.prefilled + n);
    it.past = r.prefilled;
    it.want_logits = n == left;
    it.return_logits = r.req.return_logits;
    items.items.push_back(it);
    items.sampling.push_back(r.req.sampling);
    r.in_step = true;
    r.prefilled += n;  // a failed pass ends the request, so no rollback is needed
    budget -= n;
  }
  if (items.items.empty()) return;
  st.step_in_flight = true;
  self->request(st.decoder, caf::infinite, run_atom::value, items)
      .then([=](const step_outcome& o) { on_step_done(self, o); },
            [=](const caf::error& e) {
              step_outcome o;
              o.error = self->system().render(e);
              for (const auto& it : items.items) {
                o.seqs.push_back(it.seq);
                o.tokens.push_back(-1);
              }
              on_step_done(self, o);
            });
}

intake_actor::behavior_type request_intake(intake_ptr self, std::shared_ptr<const model> m,
                                           decoder_actor decoder, accountant_actor accountant,
                                           intake_options o) {
  auto& st = self->state;
  st.m = std::move(m);
  st.decoder = decoder;
  st.accountant = accountant;
  st.o = o;
  return {
      [=](submit_atom, generation_request req) -> caf::result<int64_t> {
        auto& s = self->state;
        const int64_t id = s.next_id++;
        live_request r;
        r.id = id;
        r.requester = caf::actor_cast<caf::actor>(self->current_sender());
        r.req = std::move(req);
        r.t_submit = clock_type::now();
        if (r.req.prompt.empty() && !r.req.prompt_text.empty())
          r.req.prompt = s.m->encode_prompt(r.req.prompt_text);
        std::string why = r.req.check(*s.m);
        if (why.empty() && s.draining) why = "the server is draining: no new requests";
        if (why.empty() && int(s.queue.size()) >= s.o.max_queue)
          why = "overloaded: " + std::to_string(s.queue.size()) + " requests queued";
        s.live.emplace(id, std::move(r));
        s.stats.prompt_tokens += int64_t(s.live.at(id).req.prompt.size());
        // The id goes out first: a requester must know it before any event that names it.
        auto rp = self->make_response_promise<int64_t>();
        rp.deliver(id);
        if (!why.empty()) {
          finish(self, id, finish_reason::error, why);
        } else if (s.live.at(id).req.max_tokens == 0) {
          finish(self, id, finish_reason::length);
        } else {
          s.queue.push_back(id);
          schedule(self);
        }
        return rp;
      },
      [=](cancel_atom, int64_t id) {
        auto& s = self->state;
        auto it = s.live.find(id);
        if (it == s.live.end()) return;
        if (it->second.in_step)
          it->second.cancelled = true;  // ends when its pass returns
        else
          finish(self, id, finish_reason::cancelled);
      },
      [=](stats_atom) -> intake_stats {
        auto& s = self->state;
        intake_stats out = s.stats;
        out.running = int64_t(s.running.size());
        out.queued = int64_t(s.queue.size());
        out.draining = s.draining;
        return out;
      },
      [=](drain_atom) { self->state.draining = true; },
      [=](cancel_all_atom) {
        auto& s = self->state;
        s.draining = true;
        std::vector<int64_t> ids;
        for (const auto& [id, r] : s.live) ids.push_back(id);
        for (auto id : ids) {
          auto it = s.live.find(id);
          if (it == s.live.end()) continue;
          if (it->second.in_step)
            it->second.cancelled = true;
          else
            finish(self, id, finish_reason::cancelled);
        }
      },
      [=](requests_atom) -> std::vector<request_info> {
        auto& s = self->state;
        std::vector<request_info> out;
        const auto now = clock_type::now();
        for (const auto& [id, r] : s.live) {
          request_info i;
          i.id = id;
          const bool admitted =
              std::find(s.running.begin(), s.running.end(), id) != s.running.end();
          i.state = !admitted                                                     ? "queued"
                    : r.prefilled < int64_t(r.req.prompt.size()) || r.out.empty() ? "prefill"
                                                                                  : "decode";
          i.prompt_tokens = int64_t(r.req.prompt.size());
          i.generated = int64_t(r.out.size());
          i.max_tokens = r.req.max_tokens;
          i.age_s = std::chrono::duration<double>(now - r.t_submit).count();
          out.push_back(i);
        }
        return out;
      },
      [=](set_atom, const std::string& key, int64_t v) -> std::string {
        auto& s = self->state;
        if (v <= 0) return key + " must be positive";
        if (key == "max_batch")
          s.o.max_batch = int(v);
        else if (key == "max_step_tokens")
          s.o.max_step_tokens = int(v);
        else if (key == "max_queue")
          s.o.max_queue = int(v);
        else
          return "unknown setting '" + key + "' (max_batch, max_step_tokens, max_queue, kv_ratio)";
        schedule(self);
        return {};
      },
      [=](mailbox_atom) -> int64_t { return int64_t(self->mailbox().size()); },
  };
}

}  // namespace

intake_actor spawn_request_intake(caf::actor_system& sys, std::shared_ptr<const model> m,
                                  decoder_actor decoder, accountant_actor accountant,
                                  const intake_options& o) {
  return sys.spawn(request_intake, std::move(m), decoder, accountant, o);
}

}  // namespace hs
