// The recompute engine: for every cache block held as activations, rebuilds the layer's K and
// V (norm, x @ [Wk|Wv] + bias, RoPE) into the attention workspace on its own stream, starting
// as soon as the layer's Wk|Wv are on the device -- while the rest of the layer still streams.
#include "hybridserve/actors.hpp"

namespace hs {
namespace {

struct recompute_state {
  int64_t jobs = 0, rows = 0;
  static inline const char* name = "recompute_engine";
};

recompute_actor::behavior_type recompute_engine(
    recompute_actor::stateful_pointer<recompute_state> self, backend* be,
    std::shared_ptr<const model> m) {
  return {
      [=](mailbox_atom) -> int64_t { return int64_t(self->mailbox().size()); },
      [=](rebuild_atom, const rebuild_job& job) -> caf::result<event_ref> {
        self->state.jobs += 1;
        self->state.rows += job.M;
        try {
          return enqueue_rebuild(*be, m->config, job);
        } catch (const std::exception& e) {  // a backend error fails the pass, not this actor
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
      },
  };
}

}  // namespace

recompute_actor spawn_recompute_engine(caf::actor_system& sys, backend* be,
                                       std::shared_ptr<const model> m) {
  return sys.spawn(recompute_engine, be, std::move(m));
}

}  // namespace hs
