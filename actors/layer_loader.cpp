// The layer loader: keeps the layers the budget allows resident and streams the others through
// a ring of device buffers, layer j+1 loading while layer j computes. A slot is reused only
// after the decoder has released its previous layer (with the event of its last reader).
// Every pass walks the layers from the first, so once the last streamed layer of a pass is
// placed, the first streamed layers of the next pass are uploaded into the slots as they free
// up: the next pass finds them there instead of starting with the link's 10-20 ms for them.
#include <deque>
#include <map>

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
  std::map<int32_t, layer_ready> prefetched;  // uploaded for the next pass, not yet asked for
  int32_t prefetch_next = -1;                 // next layer to prefetch, -1: none
  int64_t prefetch_hits = 0;
  static inline const char* name = "layer_loader";
};

using loader_ptr = loader_actor::stateful_pointer<layer_loader_state>;

// Whether layer j occupies a ring slot not yet released. Releases find slots by layer, so a layer
// is never uploaded into a second slot while it holds one: an abandoned pass's copy (released
// when its late delivery reaches the decoder) or the previous pass's last layers may still be
// there when the next pass asks, and a release meant for one copy must not free the other.
bool in_slot(const layer_loader_state& st, int32_t j) {
  for (const auto& s : st.slots)
    if (s.layer == j) return true;
  return false;
}

// Uploads layer j into the next ring slot when it is free; false when it is not.
bool upload_streamed(layer_loader_state& st, int32_t j, layer_ready& r) {
  auto& s = st.slots[st.next_slot];
  if (s.layer >= 0) return false;  // wait for the release of its occupant
  const auto up = st.weights->load(j, int(st.next_slot), s.free_after);
  s.layer = j;
  st.next_slot = (st.next_slot + 1) % st.slots.size();
  r.layer = j;
  r.w = up.ptrs;
  r.kv_ready = up.kv_ready;
  r.all_ready = up.all_ready;
  return true;
}

// Starts uploads in request order while the next ring slot is free; then, with no request
// waiting, the next pass's first streamed layers.
void pump(loader_ptr self) {
  auto& st = self->state;
  const int32_t L = int32_t(st.weights->layer_count());
  int32_t last_streamed = L - 1;  // resident layers come first
  while (last_streamed >= 0 && st.weights->resident(last_streamed)) --last_streamed;
  while (!st.pending.empty()) {
    st.prefetch_next = -1;  // a pass is asking: it takes the slots in its own order
    auto& p = st.pending.front();
    layer_ready r;
    r.layer = p.layer;
    if (st.weights->resident(p.layer)) {
      const auto up = st.weights->load(p.layer, 0, nullptr);
      r.w = up.ptrs;
      r.kv_ready = up.kv_ready;
      r.all_ready = up.all_ready;
    } else if (auto it = st.prefetched.find(p.layer); it != st.prefetched.end()) {
      r = it->second;
      st.prefetched.erase(it);
      ++st.prefetch_hits;
    } else if (in_slot(st, p.layer) || !upload_streamed(st, p.layer, r)) {
      return;  // pumped again by the release it waits for
    }
    r.step = p.step;
    p.promise.deliver(r);
    const bool pass_placed = p.layer == last_streamed;
    st.pending.pop_front();  // p is gone from here on
    if (pass_placed) st.prefetch_next = 0;
  }
  while (st.prefetch_next >= 0 && st.prefetch_next < L &&
         int(st.prefetched.size()) < int(st.slots.size())) {
    const int32_t j = st.prefetch_next;
    if (st.weights->resident(j)) {
      ++st.prefetch_next;
      continue;
    }
    // A layer still in a slot (a model with fewer streamed layers than slots) waits for its
    // release.
    if (in_slot(st, j)) return;
    layer_ready r;
    if (!upload_streamed(st, j, r)) return;
    st.prefetched.emplace(j, r);
    ++st.prefetch_next;
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
        return head_weights{w.final_norm_w(),         w.final_norm_b(), w.head(),
                            w.resident_layers(),      w.ring_slots(),   w.device_bytes(),
                            self->state.prefetch_hits};
      },
  };
}

}  // namespace

loader_actor spawn_layer_loader(caf::actor_system& sys, backend* be,
                                std::shared_ptr<weight_placement> weights) {
  return sys.spawn(layer_loader, be, std::move(weights));
}

}  // namespace hs
