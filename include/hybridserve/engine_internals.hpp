// What front ends (TCP, admin, HTTP) need of a running engine: the actor system and the actor
// handles. CAF types: include only from actor code.
#pragma once
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <memory>

#include "hybridserve/actors.hpp"
#include "hybridserve/engine.hpp"
#include "hybridserve/weight_placement.hpp"

namespace hs {

struct engine::impl {
  std::shared_ptr<const model> m;
  std::unique_ptr<backend> be;
  calibration cal;
  head_weights head;
  std::shared_ptr<weight_placement> weights;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  accountant_actor accountant;
  loader_actor loader;
  recompute_actor recompute;
  decoder_actor decoder;
  intake_actor intake;
  std::vector<caf::actor> frontends;  // listeners and the admin actor: exit with the engine
  std::vector<caf::actor> listeners;  // stop accepting first (stop_frontends)

  ~impl() {
    if (sys) {
      for (auto& f : frontends) caf::anon_send_exit(f, caf::exit_reason::user_shutdown);
      for (auto a : {caf::actor_cast<caf::actor>(intake), caf::actor_cast<caf::actor>(decoder),
                     caf::actor_cast<caf::actor>(recompute), caf::actor_cast<caf::actor>(loader),
                     caf::actor_cast<caf::actor>(accountant)})
        if (a) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      sys->await_all_actors_done();
    }
    if (be) be->synchronize();
    weights.reset();
    sys.reset();
  }
};

}  // namespace hs
