// The composition root: backend, calibration, placement, actor system and the five actors.
#include "hybridserve/engine.hpp"

#include <map>

#include "hybridserve/cpu_backend.hpp"
#include "hybridserve/engine_internals.hpp"
#include "hybridserve/engine_plan.hpp"
#include "hybridserve/units.hpp"
#include "hybridserve/weight_placement.hpp"

namespace hs {

std::unique_ptr<backend> make_cuda_backend_if_built(std::size_t budget, std::string& why);

std::unique_ptr<backend> make_backend(const std::string& kind, std::size_t budget) {
  if (kind != "cpu" && kind != "cuda" && kind != "auto")
    throw error("backend '" + kind + "' unknown (cpu, cuda, auto)");
  if (kind == "cpu") return make_cpu_backend(budget);
  std::string why;
  auto cuda = make_cuda_backend_if_built(budget, why);
  if (cuda) return cuda;
  if (kind == "auto") return make_cpu_backend(budget);
  throw error("backend 'cuda' unavailable: " + why);
}

calibration h200_calibration() {
  calibration c;
  c.device = "NVIDIA H200 (BENCH.md figures)";
  c.h2d_bytes_per_s = 55e9;
  c.d2h_bytes_per_s = 55e9;
  c.mem_bytes_per_s = 4.2e12;
  c.gemm_flops = {{32, 81e12}, {128, 313e12}, {512, 606e12}, {2048, 727e12}};
  c.cache_elem_bytes = c.weight_elem_bytes = 2;
  return c;
}

engine::engine(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
engine::~engine() = default;
engine::impl& engine::internals() {
  return *impl_;
}
const model& engine::get_model() const {
  return *impl_->m;
}

result<std::unique_ptr<engine>> engine::start(std::shared_ptr<const model> m,
                                              const engine_options& o,
                                              std::unique_ptr<backend> given) {
  return capture([&]() -> std::unique_ptr<engine> {
    if (o.backend != "cpu" && o.backend != "cuda" && o.backend != "auto")
      throw error("backend '" + o.backend + "' unknown (cpu, cuda, auto)");
    if (o.block_size <= 0) throw error("block_size must be positive");
    if (o.max_batch <= 0 || o.max_step_tokens <= 0) throw error("batch limits must be positive");
    auto p = std::make_unique<impl>();
    p->m = m;
    const std::size_t budget = given                 ? given->device_budget()
                               : o.device_budget > 0 ? std::size_t(o.device_budget)
                                                     : (std::size_t(1) << 50);
    if (o.cal) {
      p->cal = *o.cal;
    } else if (given) {
      p->cal = measure_calibration(*given, m->config, o.block_size);  // before the weights
    } else {
      auto scratch = make_backend(o.backend, std::size_t(1) << 50);
      p->cal = measure_calibration(*scratch, m->config, o.block_size);
    }
    p->be = given ? std::move(given) : make_backend(o.backend, budget);
    p->cal.cache_elem_bytes = p->cal.weight_elem_bytes = p->be->elem_bytes();

    // The first plan, for the workload hint; the accountant re-plans as requests come.
    cache_policy policy;
    policy.auto_ratio = o.auto_ratio;
    policy.kv_ratio = o.kv_ratio;
    policy.block_size = o.block_size;
    budgets limits;
    limits.device_bytes = int64_t(budget);
    limits.host_bytes = o.host_budget;
    limits.head_resident = 1;  // the loader keeps the LM head on the device
    limits.resident_layers = o.resident_layers;
    limits.device_cache_cap = o.device_cache_cap;
    step_workload hint;
    hint.context.assign(std::size_t(std::max<int64_t>(1, o.batch_hint)), o.context_hint);
    hint.new_tokens = int64_t(hint.context.size());
    // The plan places weights and cache; a full prefill pass's buffers and the embedding tables
    // must fit beside it (engine_plan.hpp).
    const std::size_t attn_scratch =
        p->be->attention_scratch_bytes(m->config.n_head, m->config.head_dim, o.max_step_tokens);
    const auto plan =
        make_engine_plan(m->config, hint, limits, p->cal, policy, std::size_t(p->be->elem_bytes()),
                         o.max_step_tokens, attn_scratch);
    const int resident = o.resident_layers >= 0 ? o.resident_layers
                         : plan.feasible        ? plan.resident_layers
                                                : 0;
    p->weights = std::make_shared<weight_placement>(*p->be, m, resident, std::max(1, o.ring_slots));
    {
      // One lookup now, so a backend that keeps embedding tables on the device allocates them
      // before the cache cap is computed from what is left.
      void* tmp = p->be->device_alloc(
          std::size_t(m->config.hidden) * std::size_t(p->be->elem_bytes()), "embedding warm-up");
      p->be->embed(stream::compute, m->weights.tok_embed,
                   m->config.architecture == arch::opt ? &m->weights.pos_embed : nullptr, {0}, {0},
                   tmp);
      p->be->synchronize();  // also waits for the resident weights' upload
      p->be->device_free(tmp);
    }

    accountant_options ao;
    ao.policy = policy;
    ao.limits = limits;
    ao.cal = p->cal;
    ao.batch_hint = o.batch_hint;
    ao.context_hint = o.context_hint;
    if (o.device_cache_cap >= 0) {
      ao.device_cache_cap = o.device_cache_cap;
    } else {
      // The cache may take what the weights leave, minus what a pass allocates: buffers for its
      // new tokens and workspace for the cache it reads that is not read in place (worst case:
      // none is). A decode pass of the hinted batch reads the whole context; a prefill pass,
      // under prefill-first scheduling, its new tokens and at most one prompt's earlier chunks. The
      // buffer pool lets one pass's buffers go for the other's, so only the larger is reserved;
      // mixed passes need both at once.
      const auto& c = m->config;
      const std::size_t eb = std::size_t(p->be->elem_bytes());
      // Cache slots are whole blocks: the longest context rounded up to them.
      const int64_t longest =
          o.context_max_hint >= 0 ? o.context_max_hint : o.context_hint + o.block_size;
      const int64_t seq_ctx = (longest + o.block_size - 1) / o.block_size * o.block_size;
      const int64_t ctx = int64_t(o.batch_hint) * seq_ctx;
      const int64_t left = int64_t(budget) - int64_t(p->be->device_used());
      // Only host-tier cache is staged; what the cache cap keeps on the device is read in place
      // or rebuilt where it lies, so the reserve for a cap counts the host tier's share of the
      // hinted context beside it (pass_device_bytes_worst).
      const auto reserve_for = [&](int64_t cap) {
        const std::size_t dev = std::size_t(std::max<int64_t>(0, cap));
        const int64_t pass =
            o.prefill_first
                // A prefill pass may find the device cache full: its new tokens' blocks in the
                // host tier (host K/V rows pass through workspace slots on their way out) and a
                // prompt's earlier chunks there too, staged.
                ? int64_t(std::max(pass_device_bytes_worst(c, eb, o.max_step_tokens,
                                                           o.max_step_tokens + seq_ctx, 0),
                                   pass_device_bytes_worst(c, eb, o.batch_hint, ctx, dev)))
                : int64_t(pass_device_bytes_worst(
                      c, eb, std::max<int64_t>(o.max_step_tokens, o.batch_hint), ctx, dev));
        // With a known longest context the reserve is exact: the buffer pool's slack takes only
        // what the budget has left, and its first allocation then covers the growth. Without
        // one, 1/8 more (the pool's full slack) for contexts beyond the hint.
        const int64_t margin = o.context_max_hint >= 0 ? 0 : pass / 8;
        return pass + margin + int64_t(attn_scratch);  // attention scores (cuBLAS path)
      };
      // A budget that cannot hold one pass of the hinted workload beside the weights is refused
      // here, with the figures, rather than failing passes later. Then from "nothing on the
      // device" up: the reserve shrinks as the cap grows (fewer host-tier tokens to stage), and
      // each round's reserve is the one of the previous, smaller cap, so it covers the cap it
      // leads to.
      const int64_t reserve_none = reserve_for(0);
      if (left < reserve_none)
        throw error("device budget " + format_bytes(double(budget)) + " too small: weights and " +
                    "tables take " + format_bytes(double(p->be->device_used())) +
                    ", a pass of the hinted workload (batch " + std::to_string(o.batch_hint) +
                    ", context " + std::to_string(seq_ctx) + ") needs up to " +
                    format_bytes(double(reserve_none)) + " more");
      int64_t cap = left - reserve_none;
      for (int round = 0; round < 6; ++round) cap = std::max<int64_t>(cap, left - reserve_for(cap));
      ao.device_cache_cap = cap;
    }

    // Re-plans keep this placement and only move the ratio.
    ao.limits.resident_layers = p->weights->resident_layers();
    ao.limits.device_cache_cap = ao.device_cache_cap;
    if (o.scheduler_threads > 0) p->cfg.set("scheduler.max-threads", o.scheduler_threads);
    if (o.network) p->cfg.load<caf::io::middleman>();  // brokers for the TCP front ends
    p->sys = std::make_unique<caf::actor_system>(p->cfg);
    auto& sys = *p->sys;
    p->head = head_weights{p->weights->final_norm_w(), p->weights->final_norm_b(),
                           p->weights->head(),         p->weights->resident_layers(),
                           p->weights->ring_slots(),   p->weights->device_bytes()};
    p->accountant = spawn_cache_accountant(sys, p->be.get(), m, ao);
    p->loader = spawn_layer_loader(sys, p->be.get(), p->weights);
    p->recompute = spawn_recompute_engine(sys, p->be.get(), m);
    p->decoder = spawn_decoder(sys, p->be.get(), m, p->loader, p->recompute, p->accountant, p->head,
                               o.trace_passes);
    intake_options io;
    io.max_batch = o.max_batch;
    io.max_step_tokens = o.max_step_tokens;
    io.prefill_first = o.prefill_first;
    io.max_queue = o.max_queue;
    p->intake = spawn_request_intake(sys, m, p->decoder, p->accountant, io);
    // The accountant pins the first plan's host tier when it starts (on a CAF worker): wait
    // for it, so that cost lands in engine start and not in the first requests.
    {
      caf::scoped_actor self{sys};
      std::string failed;
      self->request(p->accountant, caf::infinite, usage_atom::value)
          .receive([](const cache_report&) {}, [&](caf::error& e) { failed = sys.render(e); });
      if (!failed.empty()) throw error("cache accountant failed to start: " + failed);
    }
    return std::unique_ptr<engine>(new engine(std::move(p)));
  });
}

std::vector<finished_event> engine::generate(
    const std::vector<generation_request>& reqs, const engine_token_callback& on_token,
    const std::function<bool(std::size_t, int32_t)>& keep_going) {
  caf::scoped_actor self{*impl_->sys};
  std::map<int64_t, std::size_t> index;
  std::vector<finished_event> out(reqs.size());
  // All requests go out before any answer is awaited, so intake sees the whole batch before
  // its first pass; the ids come back in order (one sender, one receiver).
  for (const auto& r : reqs) self->send(impl_->intake, submit_atom::value, r);
  std::size_t next_index = 0, left = reqs.size();
  while (left > 0) {
    self->receive([&](int64_t id) { index[id] = next_index++; },
                  [&](token_atom, const token_event& e) {
                    const std::size_t i = index.at(e.request);
                    if (on_token) on_token(i, e.token);
                    if (keep_going && !keep_going(i, e.token))
                      self->send(impl_->intake, cancel_atom::value, e.request);
                  },
                  [&](finished_atom, const finished_event& e) {
                    out[index.at(e.request)] = e;
                    --left;
                  });
  }
  return out;
}

engine_report engine::report() {
  caf::scoped_actor self{*impl_->sys};
  engine_report r;
  r.cal = impl_->cal;
  r.weights = impl_->head;
  r.backend = impl_->be->name();
  self->request(impl_->loader, caf::infinite, head_atom::value)
      .receive([&](const head_weights& h) { r.weights.prefetch_hits = h.prefetch_hits; },
               [&](caf::error&) {});
  self->request(impl_->accountant, caf::infinite, usage_atom::value)
      .receive([&](const cache_report& c) { r.cache = c; }, [&](caf::error&) {});
  self->request(impl_->intake, caf::infinite, stats_atom::value)
      .receive([&](const intake_stats& s) { r.intake = s; }, [&](caf::error&) {});
  return r;
}

cache_report engine::set_ratio(double ratio) {
  caf::scoped_actor self{*impl_->sys};
  cache_report r;
  self->request(impl_->accountant, caf::infinite, ratio_atom::value, ratio)
      .receive([&](const cache_report& c) { r = c; }, [&](caf::error&) {});
  return r;
}

}  // namespace hs
