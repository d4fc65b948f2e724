// The layer loader actor alone, on the CPU backend: ring-slot bookkeeping that a silent mistake
// would turn into weights overwritten while a pass reads them.
#include <catch2/catch.hpp>
#include <chrono>

#include "hybridserve/actors.hpp"
#include "hybridserve/cpu_backend.hpp"
#include "hybridserve/synthetic_model.hpp"
#include "hybridserve/weight_placement.hpp"

namespace {

// Waits up to `ms` for the loader's answer to a load sent with send(); true if it came.
bool answered_within(caf::scoped_actor& self, int ms, hs::layer_ready& out) {
  bool got = false;
  self->receive([&](hs::layer_ready& r) { got = true, out = r; },
                caf::after(std::chrono::milliseconds(ms)) >> [] {});
  return got;
}

}  // namespace

TEST_CASE("a layer still in a ring slot is not uploaded into a second one", "[loader]") {
  // A pass that failed leaves loads in flight; their layers are released only when the late
  // deliveries reach the decoder. If the next pass's request for the same layer took another
  // slot, the late release (which finds its slot by layer) could free the live copy instead.
  auto cfg = hs::synthetic_config("opt:hidden=16,layers=2,heads=2,ffn=32,vocab=260");
  REQUIRE(cfg.ok());
  auto m = hs::make_synthetic_model(*cfg, 3);
  REQUIRE(m.ok());
  auto be = hs::make_cpu_backend(64 << 20);
  auto weights = std::make_shared<hs::weight_placement>(*be, *m, 0, 2);  // all streamed, 2 slots
  caf::actor_system_config sys_cfg;
  caf::actor_system sys{sys_cfg};
  auto loader = hs::spawn_layer_loader(sys, be.get(), weights);
  caf::scoped_actor self{sys};

  hs::layer_ready first, second, other;
  self->send(loader, hs::load_atom::value, int64_t(1), int32_t(0));
  REQUIRE(answered_within(self, 5000, first));
  CHECK(first.step == 1);
  // The next pass asks for layer 0 while the first copy is unreleased (slot 1 is free).
  self->send(loader, hs::load_atom::value, int64_t(2), int32_t(0));
  CHECK_FALSE(answered_within(self, 300, second));
  // The release of the first copy lets it through, into the same device memory or the other
  // slot, but never while two slots hold layer 0.
  self->send(loader, hs::release_atom::value, int32_t(0), hs::event_ref{});
  REQUIRE(answered_within(self, 5000, second));
  CHECK(second.step == 2);
  CHECK(second.layer == 0);
  // A second release frees layer 0's only slot: layer 1 then finds room at once.
  self->send(loader, hs::release_atom::value, int32_t(0), hs::event_ref{});
  self->send(loader, hs::load_atom::value, int64_t(2), int32_t(1));
  REQUIRE(answered_within(self, 5000, other));
  CHECK(other.layer == 1);
  self->send_exit(loader, caf::exit_reason::user_shutdown);
  be->synchronize();
}
