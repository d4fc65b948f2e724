// The cache accountant: owns every cache byte (paged blocks, kv or act, device or host) and the
// cost model. It re-plans the KV/activation ratio whenever the set of running sequences
// changes, and gives each new block the form that keeps the cache at the planned ratio.
#include <algorithm>
#include <set>

#include "hybridserve/actors.hpp"

namespace hs {
namespace {

struct accountant_state {
  backend* be = nullptr;
  std::shared_ptr<const model> m;
  std::unique_ptr<cache_pool> pool;
  accountant_options o;
  placement_plan plan;
  std::string plan_text;
  double ratio = 1.0;
  std::set<int64_t> planned_for;
  std::map<int64_t, int64_t> admitted;  // seq -> most tokens it may hold
  cache_usage peak;                     // cache_report::peak
  // Blocks grow at a pass's reservation, tokens at its commit: the peak is taken after both.
  void note_peak() {
    const auto u = pool->usage();
    for (int f = 0; f < 2; ++f)
      for (int t = 0; t < 2; ++t) {
        peak.blocks[f][t] = std::max(peak.blocks[f][t], u.blocks[f][t]);
        peak.bytes[f][t] = std::max(peak.bytes[f][t], u.bytes[f][t]);
        peak.tokens[f][t] = std::max(peak.tokens[f][t], u.tokens[f][t]);
      }
  }
  static inline const char* name = "cache_accountant";
  // Blocks may still be read by enqueued work when the accountant exits first.
  ~accountant_state() {
    if (be) be->synchronize();
  }
};

using accountant_ptr = accountant_actor::stateful_pointer<accountant_state>;

void replan(accountant_ptr self) {
  auto& st = self->state;
  // Plan for the context each sequence will reach (what it was admitted for), not what it
  // holds now: block forms are fixed when allocated, so a plan made at prefill (no past yet)
  // must already see the cache the decode steps will read.
  // Every admitted sequence counts, prefilled or not, so the first passes of a batch already
  // plan for the whole batch.
  step_workload w;
  std::set<int64_t> seqs;
  for (const auto& [seq, t] : st.admitted) seqs.insert(seq);
  for (auto seq : st.pool->sequences()) seqs.insert(seq);
  for (auto seq : seqs) {
    auto a = st.admitted.find(seq);
    w.context.push_back(std::max(st.pool->length(seq), a == st.admitted.end() ? 0 : a->second));
  }
  if (w.context.empty()) w.context.assign(std::size_t(st.o.batch_hint), st.o.context_hint);
  w.new_tokens = int64_t(w.context.size());
  st.plan = make_plan(st.m->config, w, st.o.limits, st.o.cal, st.o.policy);
  st.ratio =
      st.o.policy.auto_ratio ? (st.plan.feasible ? st.plan.kv_ratio : 1.0) : st.o.policy.kv_ratio;
  st.plan_text = describe_plan(st.m->config, w, st.plan);
}

// The form that moves the cache toward the planned share of activation blocks.
cache_form choose_form(const accountant_state& st) {
  if (st.ratio >= 1.0) return cache_form::kv;
  if (st.ratio <= 0.0) return cache_form::act;
  const auto u = st.pool->usage();
  const double act = double(u.blocks[1][0] + u.blocks[1][1]);
  const double kv = double(u.blocks[0][0] + u.blocks[0][1]);
  return act < (1.0 - st.ratio) * (act + kv + 1.0) - 1e-9 ? cache_form::act : cache_form::kv;
}

cache_report report(accountant_ptr self) {
  auto& st = self->state;
  cache_report r;
  r.usage = st.pool->usage();
  r.peak = st.peak;
  r.device_cap = st.o.device_cache_cap;
  r.host_budget = st.o.limits.host_bytes;
  r.device_used = int64_t(st.be->device_used());
  r.device_peak = int64_t(st.be->device_peak());
  r.device_budget = int64_t(st.be->device_budget());
  r.auto_ratio = st.o.policy.auto_ratio;
  r.kv_ratio = st.ratio;
  r.plan = st.plan;
  r.plan_text = st.plan_text;
  r.sequences = int64_t(st.pool->sequences().size());
  return r;
}

accountant_actor::behavior_type cache_accountant(accountant_ptr self, backend* be,
                                                 std::shared_ptr<const model> m,
                                                 accountant_options o) {
  auto& st = self->state;
  st.be = be;
  st.m = m;
  st.o = o;
  st.pool = std::make_unique<cache_pool>(*be, m->config, o.policy.block_size);
  st.pool->set_device_cap(o.device_cache_cap);
  st.pool->set_host_budget(o.limits.host_bytes);
  replan(self);
  // Allocate the blocks the first plan expects now, not while the first batch runs: pinning
  // host memory runs at a few GB/s, and hundreds of cudaMalloc calls stall the passes that
  // make them. Per form and tier: its tokens per layer in blocks, plus one partly filled block
  // per hinted sequence (within the device cap and host budget).
  if (st.plan.feasible)
    for (const cache_tier t : {cache_tier::device, cache_tier::host})
      for (const cache_form f : {cache_form::kv, cache_form::act}) {
        const int64_t tok = st.plan.tokens[int(f)][int(t)];
        if (tok > 0)
          st.pool->prewarm(f, t,
                           (tok + o.policy.block_size - 1) / o.policy.block_size + o.batch_hint);
      }
  return {
      [=](admit_atom, int64_t seq, int64_t tokens) -> admit_reply {
        auto& s = self->state;
        if (s.o.limits.host_bytes > 0) {
          const auto per_token =
              int64_t(s.pool->block_bytes(cache_form::kv)) / s.pool->block_size();
          int64_t tokens_admitted = tokens;
          for (const auto& [q, t] : s.admitted) tokens_admitted += t;
          if (tokens_admitted * per_token > s.o.device_cache_cap + s.o.limits.host_bytes)
            return {false, "cache full: " + std::to_string(tokens_admitted) +
                               " tokens would exceed the device cache cap plus the host budget"};
        }
        s.admitted[seq] = tokens;
        return {true, {}};
      },
      [=](prepare_atom, const step_items& items) -> step_layout {
        auto& s = self->state;
        std::set<int64_t> seqs;
        for (const auto& it : items.items) seqs.insert(it.seq);
        for (auto q : s.pool->sequences()) seqs.insert(q);
        for (const auto& [q, t] : s.admitted) seqs.insert(q);
        if (seqs != s.planned_for) {  // the batch changed: re-plan the ratio
          replan(self);
          s.planned_for = seqs;
        }
        step_layout L;
        L.step = items.step;
        L.items = items.items;
        L.block_size = s.pool->block_size();
        L.kv_layer_bytes = s.pool->layer_bytes(cache_form::kv);
        L.act_layer_bytes = s.pool->layer_bytes(cache_form::act);
        try {
          for (const auto& it : items.items) {
            if (s.pool->length(it.seq) != it.past)
              throw error("sequence " + std::to_string(it.seq) + " has " +
                          std::to_string(s.pool->length(it.seq)) + " cached tokens, the pass " +
                          "expects " + std::to_string(it.past));
            s.pool->reserve(it.seq, int64_t(it.tokens.size()), choose_form(s));
          }
        } catch (const std::exception& e) {
          L.error = e.what();
          return L;
        }
        s.note_peak();
        for (const auto& it : items.items) {
          std::vector<cache_block> blocks;
          for (auto id : s.pool->blocks_of(it.seq)) blocks.push_back(s.pool->block(id));
          L.blocks.push_back(std::move(blocks));
        }
        return L;
      },
      [=](commit_atom, const std::vector<int64_t>& seqs, const std::vector<int64_t>& counts) {
        for (std::size_t i = 0; i < seqs.size(); ++i)
          if (self->state.pool->has(seqs[i])) self->state.pool->commit(seqs[i], counts[i]);
        self->state.note_peak();
      },
      [=](release_atom, int64_t seq) {
        self->state.pool->release(seq);
        self->state.admitted.erase(seq);
      },
      [=](usage_atom) -> cache_report { return report(self); },
      [=](mailbox_atom) -> int64_t { return int64_t(self->mailbox().size()); },
      [=](ratio_atom, double r) -> cache_report {
        auto& s = self->state;
        s.o.policy.auto_ratio = r < 0;
        if (r >= 0) s.o.policy.kv_ratio = std::min(1.0, r);
        replan(self);
        return report(self);
      },
  };
}

}  // namespace

accountant_actor spawn_cache_accountant(caf::actor_system& sys, backend* be,
                                        std::shared_ptr<const model> m,
                                        const accountant_options& o) {
  return sys.spawn(cache_accountant, be, std::move(m), o);
}

}  // namespace hs
