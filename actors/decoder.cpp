// The decoder: one pass over the weights per run message. Per layer it asks the loader for
// the weights, stages host-tier cache, hands activation blocks to the recompute engine and
// enqueues attention and FFN once both answered; then samples. It never waits on the device:
// completion of the pass comes back as a message from a backend callback.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "hybridserve/actors.hpp"

namespace hs {
namespace {

struct decoder_state {
  backend* be = nullptr;
  std::shared_ptr<const model> m;
  loader_actor loader;
  recompute_actor recompute;
  accountant_actor accountant;
  head_weights head;
  std::vector<int64_t> trace_passes;
  bool traced(int64_t step) const {
    return std::find(trace_passes.begin(), trace_passes.end(), step) != trace_passes.end();
  }
  std::map<int64_t, sampler> samplers;  // per sequence: seeded generators persist across passes
  // The pass in flight.
  std::unique_ptr<buffer_pool> pool;  // the passes' buffers, kept from pass to pass
  std::unique_ptr<step_pipeline> pipe;
  step_items items;
  caf::typed_response_promise<step_outcome> promise;
  std::map<int32_t, layer_ready> arrived;                        // weights placed
  std::map<int32_t, std::pair<layer_ready, event_ref>> rebuilt;  // rebuild enqueued
  std::map<int32_t, event_ref> computed;  // ring slot kept until load_cache(j + 2) is enqueued
  int32_t next_rebuild = 0, next_compute = 0, next_cache = 2;
  // Rebuild requests sent and not yet answered (of any pass), and a failed pass's outcome held
  // back until they are (fail_step).
  int rebuilds_in_flight = 0;
  std::unique_ptr<step_outcome> failed;
  std::chrono::steady_clock::time_point t0, t_layout, t_last_done;
  static inline const char* name = "decoder";
  // Exiting mid-pass (shutdown): the streams may still read this pass's buffers.
  ~decoder_state() {
    if ((pipe || pool) && be) be->synchronize();
    pipe.reset();
    pool.reset();
  }
};

using decoder_ptr = decoder_actor::stateful_pointer<decoder_state>;

// `held`: a layer taken out of the maps whose work may be enqueued; released after the sync.
void fail_step(decoder_ptr self, const std::string& why, int32_t held = -1) {
  auto& st = self->state;
  if (st.pipe) st.be->synchronize();  // buffers may still be read by enqueued work
  st.pipe.reset();
  // Ring slots of layers this pass holds go back to the loader (the device is idle), or the
  // next pass would wait for them forever. Requests still in flight release on arrival.
  if (held >= 0) self->send(st.loader, release_atom::value, held, event_ref{});
  for (const auto& [j, r] : st.arrived) self->send(st.loader, release_atom::value, j, event_ref{});
  for (const auto& [j, r] : st.rebuilt) self->send(st.loader, release_atom::value, j, event_ref{});
  for (const auto& [j, e] : st.computed) self->send(st.loader, release_atom::value, j, event_ref{});
  st.computed.clear();
  st.arrived.clear();
  st.rebuilt.clear();
  step_outcome o;
  o.step = st.items.step;
  o.error = why;
  for (const auto& it : st.items.items) {
    o.seqs.push_back(it.seq);
    o.tokens.push_back(-1);
  }
  if (st.rebuilds_in_flight > 0) {
    // A rebuild job still in the recompute engine's mailbox points into this pass's buffers and
    // would be enqueued after the sync above: the buffers stay, and the next pass waits (the
    // outcome is held), until every answer is in (finish_failure). This happens when layer
    // j + 1's weights arrive after compute(j): its rebuild is asked for, then load_cache(j + 2)
    // runs and may fail.
    st.failed = std::make_unique<step_outcome>(std::move(o));
    return;
  }
  if (st.pool) st.pool->clear();  // give the budget back: the next pass may be smaller
  st.promise.deliver(o);
}

// The last late rebuild answer of a failed pass: its work is enqueued; once the device is idle
// the buffers go and the outcome is delivered.
void finish_failure(decoder_ptr self) {
  auto& st = self->state;
  if (st.rebuilds_in_flight > 0 || !st.failed) return;
  st.be->synchronize();
  if (st.pool) st.pool->clear();
  const step_outcome o = std::move(*st.failed);
  st.failed.reset();
  st.promise.deliver(o);
}

// Moves the pass forward as far as the messages that arrived allow, in layer order:
//  - the rebuild request for layer j once its weights are placed and layer j - 1's compute is
//    enqueued (the rebuilt K/V slots are one set, free again when layer j - 1's attention has
//    read them); its host-tier cache was enqueued by load_cache(j) before layer j's weights;
//  - compute_layer(j) once its rebuild event arrived;
//  - load_cache(j + 2) once compute_layer(j) is enqueued and layer j + 1's weights are (its
//    layer_ready arrived), and only then the release of layer j's ring slot. The h2d stream then
//    runs W(j+1), cache(j+2), W(j+2), cache(j+3), ... whatever the threads' timing: a weight
//    upload never queues behind the wait of a later layer's cache load for a later compute (in
//    prefill passes, where the decoder runs ahead, W(j+2) waited for compute j+1, not j).
void advance(decoder_ptr self) {
  auto& st = self->state;
  const int32_t L = st.m->config.n_layer;
  for (bool progress = true; progress && st.pipe;) {
    progress = false;
    while (st.pipe && st.arrived.count(st.next_rebuild) && st.next_rebuild <= st.next_compute) {
      auto node = st.arrived.extract(st.next_rebuild++);
      const layer_ready r = node.mapped();
      rebuild_job job;
      try {
        job = st.pipe->rebuild_job_for(r);
      } catch (const std::exception& e) {
        return fail_step(self, e.what(), r.layer);
      }
      ++st.rebuilds_in_flight;
      // Counts the answer in; true when its pass is gone (failed): the ring slot goes back and a
      // held failure may be delivered.
      const auto late = [=](const event_ref& e) {
        auto& s = self->state;
        --s.rebuilds_in_flight;
        if (s.pipe && r.step == s.items.step) return false;
        self->send(s.loader, release_atom::value, r.layer, e);
        finish_failure(self);
        return true;
      };
      self->request(st.recompute, caf::infinite, rebuild_atom::value, job)
          .then(
              [=](const event_ref& e) {
                if (late(e)) return;
                self->state.rebuilt.emplace(r.layer, std::make_pair(r, e));
                advance(self);
              },
              [=](const caf::error& err) {
                if (late(event_ref{})) return;
                fail_step(self, self->system().render(err), r.layer);
              });
      progress = true;
    }
    while (st.pipe && st.rebuilt.count(st.next_compute)) {
      auto node = st.rebuilt.extract(st.next_compute);
      const auto& [ready, rebuilt] = node.mapped();
      event_ref done;
      try {
        done = st.pipe->compute_layer(ready, rebuilt);
      } catch (const std::exception& e) {
        return fail_step(self, e.what(), ready.layer);
      }
      if (ready.layer + 2 < L)
        st.computed.emplace(ready.layer, done);  // released after load_cache(layer + 2)
      else
        self->send(st.loader, release_atom::value, ready.layer, done);
      progress = true;
      if (++st.next_compute == L) {
        event_ref fin;
        try {
          // Greedy rows that return no logits need only their tokens back from the device.
          bool greedy_only = true;
          for (std::size_t i = 0; i < st.items.items.size(); ++i) {
            const auto& it = st.items.items[i];
            if (it.want_logits && !it.tokens.empty())
              greedy_only =
                  greedy_only && !it.return_logits && !(st.items.sampling.at(i).temperature > 0.f);
          }
          fin = st.pipe->finish(greedy_only);
        } catch (const std::exception& e) {
          return fail_step(self, e.what());
        }
        const int64_t step = st.items.step;
        auto me = caf::actor_cast<caf::actor>(self);
        st.be->on_done(fin, [me, step] { caf::anon_send(me, sampled_atom::value, step); });
      }
    }
    // With one ring slot, W(j+1) needs layer j's slot back: no waiting for its arrival then.
    const auto placed = [&](int32_t k) {
      return st.head.ring_slots < 2 || k < st.next_rebuild || st.arrived.count(k) > 0;
    };
    while (st.pipe && st.next_cache < L && st.next_cache <= st.next_compute + 1 &&
           placed(st.next_cache - 1)) {
      const int32_t j = st.next_cache++;
      try {
        st.pipe->load_cache(j);
      } catch (const std::exception& e) {
        return fail_step(self, e.what());
      }
      auto node = st.computed.extract(j - 2);
      self->send(st.loader, release_atom::value, j - 2, node.mapped());
      progress = true;
    }
  }
}

void start_step(decoder_ptr self, step_layout layout) {
  auto& st = self->state;
  try {
    if (!st.pool) st.pool = std::make_unique<buffer_pool>(*st.be);
    st.pipe = std::make_unique<step_pipeline>(*st.be, *st.pool, st.m, std::move(layout));
    st.be->set_timing(st.traced(st.items.step));
    if (st.traced(st.items.step)) st.pipe->enable_trace();
    st.pipe->begin(st.head.norm_w, st.head.norm_b, st.head.head);
    // The first two layers' cache goes before any weights are asked for.
    for (int j = 0; j < std::min(2, st.m->config.n_layer); ++j) st.pipe->load_cache(j);
  } catch (const std::exception& e) {
    return fail_step(self, e.what());
  }
  st.next_compute = st.next_rebuild = 0;
  st.next_cache = 2;  // layers 0 and 1: loaded above
  st.computed.clear();
  st.rebuilt.clear();
  st.arrived.clear();
  const int64_t step = st.items.step;
  for (int32_t j = 0; j < st.m->config.n_layer; ++j) {
    self->request(st.loader, caf::infinite, load_atom::value, step, j)
        .then([=](const layer_ready& r) {
          auto& s = self->state;
          if (!s.pipe || r.step != s.items.step) {  // pass abandoned: free the ring slot
            self->send(s.loader, release_atom::value, r.layer, event_ref{});
            return;
          }
          s.arrived.emplace(r.layer, r);
          advance(self);
        });
  }
}

decoder_actor::behavior_type decoder(decoder_ptr self, backend* be, std::shared_ptr<const model> m,
                                     loader_actor loader, recompute_actor recompute,
                                     accountant_actor accountant, head_weights head,
                                     std::vector<int64_t> trace_passes) {
  auto& st = self->state;
  st.trace_passes = std::move(trace_passes);
  st.be = be;
  st.m = std::move(m);
  st.loader = loader;
  st.recompute = recompute;
  st.accountant = accountant;
  st.head = head;
  return {
      [=](run_atom, const step_items& items) -> caf::result<step_outcome> {
        auto& s = self->state;
        s.promise = self->make_response_promise<step_outcome>();
        s.items = items;
        s.t0 = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < items.items.size(); ++i)
          if (!s.samplers.count(items.items[i].seq))
            s.samplers.emplace(items.items[i].seq, sampler(items.sampling[i]));
        self->request(s.accountant, caf::infinite, prepare_atom::value, items)
            .then(
                [=](const step_layout& layout) {
                  self->state.t_layout = std::chrono::steady_clock::now();
                  if (layout.error.empty())
                    start_step(self, layout);
                  else
                    fail_step(self, layout.error);
                },
                [=](const caf::error& e) { fail_step(self, self->system().render(e)); });
        return s.promise;
      },
      [=](sampled_atom, int64_t step) {
        auto& s = self->state;
        if (!s.pipe || step != s.items.step) return;
        const auto t_sample = std::chrono::steady_clock::now();
        step_outcome o;
        o.step = step;
        const auto& logits = s.pipe->logits();
        const auto& greedy = s.pipe->greedy();  // instead of logits when every row is greedy
        const int64_t V = s.m->config.vocab;
        std::size_t row = 0;
        std::vector<int64_t> seqs, counts;
        for (const auto& it : s.items.items) {
          int32_t tok = -1;
          if (it.want_logits && !it.tokens.empty()) {
            tok = !greedy.empty()
                      ? greedy.at(row)
                      : s.samplers.at(it.seq).sample(logits.data() + row * std::size_t(V), V);
            ++row;
          }
          o.seqs.push_back(it.seq);
          o.tokens.push_back(tok);
          o.logits.emplace_back();
          if (tok >= 0 && it.return_logits)
            o.logits.back().assign(logits.begin() + (row - 1) * std::size_t(V),
                                   logits.begin() + row * std::size_t(V));
          seqs.push_back(it.seq);
          counts.push_back(int64_t(it.tokens.size()));
        }
        o.new_tokens = s.pipe->new_tokens();
        o.rebuilt_rows = s.pipe->rebuilt_rows() * s.m->config.n_layer;
        o.h2d_bytes = s.pipe->host_to_device_bytes();
        o.d2h_bytes = s.pipe->device_to_host_bytes();
        o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.t0).count();
        if (!s.trace_passes.empty()) {
          // One line per pass whenever any pass is traced: where the time between passes goes.
          const auto now = std::chrono::steady_clock::now();
          const auto ms = [](auto a, auto b) {
            return std::chrono::duration<double, std::milli>(b - a).count();
          };
          char line[200];
          std::snprintf(
              line, sizeof line,
              "[pass %lld] %lld new tokens, %lld act rows a layer; idle before it %.1f ms, "
              "layout %.1f ms, on the device %.1f ms (sampling %.1f ms of it)\n",
              (long long)step, (long long)o.new_tokens, (long long)s.pipe->rebuilt_rows(),
              s.t_last_done.time_since_epoch().count() ? ms(s.t_last_done, s.t0) : 0.0,
              ms(s.t0, s.t_layout), ms(s.t_layout, now), ms(t_sample, now));
          o.trace = line;
          s.t_last_done = now;
        }
        if (s.traced(step)) o.trace += s.pipe->trace_table();
        s.pipe.reset();
        self->send(s.accountant, commit_atom::value, seqs, counts);
        s.promise.deliver(o);
      },
      [=](forget_atom, int64_t seq) { self->state.samplers.erase(seq); },
      [=](mailbox_atom) -> int64_t { return int64_t(self->mailbox().size()); },
  };
}

}  // namespace

decoder_actor spawn_decoder(caf::actor_system& sys, backend* be, std::shared_ptr<const model> m,
                            loader_actor loader, recompute_actor recompute,
                            accountant_actor accountant, head_weights head,
                            std::vector<int64_t> trace_passes) {
  return sys.spawn(decoder, be, std::move(m), loader, recompute, accountant, head,
                   std::move(trace_passes));
}

}  // namespace hs
