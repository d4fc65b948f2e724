// The layer loader: keeps the layers the budget allows resident and streams the others through
// a ring of device buffers, layer j+1 loading while layer j computes. A slot is reused only
// after the decoder has released its previous layer (with the event of its last reader).
#include <deque>

#include "hybridserve/actors.hpp"
#include "hybridserve/weight_placement.hpp"

namespace hs {
namespace {

struct pending_load {
  int64_t step;
  int32_t layer;
  caf::typed_response_promise<layer_ready> promise;
};

struct layer_loader_state {
  backend* be = nullptr;
  std::shared_ptr<weight_placement> weights;
  std::deque<pending_load> pending;
  struct slot {
    int32_t layer = -1;  // occupant not yet released, or -1
    event_ref free_after;
  };
  std::vector<slot> slots;
  std::size_t next_slot = 0;
  static inline const char* name = "layer_loader";
};

using loader_ptr = loader_actor::stateful_pointer<layer_loader_state>;

// Starts uploads in request order while the next ring slot is free.
void pump(loader_ptr self) {
  auto& st = self->state;
  while (!st.pending.empty()) {
    auto& p = st.pending.front();
    layer_ready r;
    r.step = p.step;
    r.layer = p.layer;
    if (st.weights->resident(p.layer)) {
      const auto up = st.weights->load(p.layer, 0, nullptr);
      r.w = up.ptrs;
      r.kv_ready = up.kv_ready;
      r.all_ready = up.all_ready;
    } else {
      auto& s = st.slots[st.next_slot];
      if (s.layer >= 0) return;  // wait for the release of its occupant
      const auto up = st.weights->load(p.layer, int(st.next_slot), s.free_after);
      s.layer = p.layer;
      st.next_slot = (st.next_slot + 1) % st.slots.size();
      r.w = up.ptrs;
      r.kv_ready = up.kv_ready;
      r.all_ready = up.all_ready;
    }
    p.promise.deliver(r);
    st.pending.pop_front();
  }
}

loader_actor::behavior_type layer_loader(loader_ptr self, backend* be,
                                         std::shared_ptr<weight_placement> weights) {
  self->state.be = be;
  self->state.weights = std::move(weights);
  self->state.slots.resize(std::size_t(self->state.weights->ring_slots()));
  return {
      [=](load_atom, int64_t step, int32_t layer) -> caf::result<layer_ready> {
        auto rp = self->make_response_promise<layer_ready>();
        self->state.pending.push_back({step, layer, rp});
        pump(self);
        return rp;
      },
      [=](release_atom, int32_t layer, event_ref done) {
        for (auto& s : self->state.slots) {
          if (s.layer == layer) {
            s.layer = -1;
            s.free_after = std::move(done);
            break;
          }
        }
        pump(self);
      },
      [=](mailbox_atom) -> int64_t { return int64_t(self->mailbox().size()); },
      [=](head_atom) -> head_weights {
        const auto& w = *self->state.weights;
        return head_weights{w.final_norm_w(),    w.final_norm_b(), w.head(),
                            w.resident_layers(), w.ring_slots(),   w.device_bytes()};
      },
  };
}

}  // namespace

loader_actor spawn_layer_loader(caf::actor_system& sys, backend* be,
                                std::shared_ptr<weight_placement> weights) {
  return sys.spawn(layer_loader, be, std::move(weights));
}

}  // namespace hs
