// Typed interfaces of the five pipeline actors and the messages they exchange. In-process
// only: messages carry device pointers and event handles, so they are never serialised.
#pragma once
#include <caf/all.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hybridserve/backend.hpp"
#include "hybridserve/cache_pool.hpp"
#include "hybridserve/cost_model.hpp"
#include "hybridserve/generate.hpp"
#include "hybridserve/messages.hpp"
#include "hybridserve/step_pipeline.hpp"

namespace hs {

// ---- atoms (at most 10 characters)
using admit_atom = caf::atom_constant<caf::atom("admit")>;
using prepare_atom = caf::atom_constant<caf::atom("prepare")>;
using commit_atom = caf::atom_constant<caf::atom("commit")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using usage_atom = caf::atom_constant<caf::atom("usage")>;
using ratio_atom = caf::atom_constant<caf::atom("ratio")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using head_atom = caf::atom_constant<caf::atom("head")>;
using rebuild_atom = caf::atom_constant<caf::atom("rebuild")>;
using run_atom = caf::atom_constant<caf::atom("run")>;
using sampled_atom = caf::atom_constant<caf::atom("sampled")>;
using forget_atom = caf::atom_constant<caf::atom("forget")>;
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using token_atom = caf::atom_constant<caf::atom("token")>;
using finished_atom = caf::atom_constant<caf::atom("finished")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using mailbox_atom = caf::atom_constant<caf::atom("mailbox")>;
using requests_atom = caf::atom_constant<caf::atom("requests")>;
using set_atom = caf::atom_constant<caf::atom("set")>;
using cancel_all_atom = caf::atom_constant<caf::atom("cancelall")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;

}  // namespace hs

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::step_items)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::step_outcome)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::step_layout)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::admit_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::cache_report)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::head_weights)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::layer_ready)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::rebuild_job)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::event_ref)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::token_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::finished_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::intake_stats)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::generation_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hs::request_info)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<hs::request_info>)

namespace hs {

// ---- typed interfaces
/// Owns every cache byte and the cost model.
using accountant_actor = caf::typed_actor<
    caf::replies_to<admit_atom, int64_t, int64_t>::with<admit_reply>,  // seq, max tokens
    caf::replies_to<prepare_atom, step_items>::with<step_layout>,
    caf::reacts_to<commit_atom, std::vector<int64_t>, std::vector<int64_t>>,  // seqs, tokens
    caf::reacts_to<release_atom, int64_t>, caf::replies_to<usage_atom>::with<cache_report>,
    caf::replies_to<ratio_atom, double>::with<cache_report>,  // ratio < 0: automatic
    caf::replies_to<mailbox_atom>::with<int64_t>>;

/// Owns weight placement: resident layers, the ring, the LM head.
using loader_actor = caf::typed_actor<
    caf::replies_to<load_atom, int64_t, int32_t>::with<layer_ready>,  // step, layer
    caf::reacts_to<release_atom, int32_t, event_ref>,                 // layer's last reader
    caf::replies_to<head_atom>::with<head_weights>, caf::replies_to<mailbox_atom>::with<int64_t>>;

/// Rebuilds K/V from activation checkpoints as soon as a layer's Wk|Wv are on the device.
using recompute_actor =
    caf::typed_actor<caf::replies_to<rebuild_atom, rebuild_job>::with<event_ref>,
                     caf::replies_to<mailbox_atom>::with<int64_t>>;

/// Runs passes over the weights and samples.
using decoder_actor =
    caf::typed_actor<caf::replies_to<run_atom, step_items>::with<step_outcome>,
                     caf::reacts_to<sampled_atom, int64_t>, caf::reacts_to<forget_atom, int64_t>,
                     caf::replies_to<mailbox_atom>::with<int64_t>>;

/// Accepts requests, batches them continuously, streams tokens back to each requester.
/// Requesters receive (token_atom, token_event) and finally (finished_atom, finished_event).
using intake_actor = caf::typed_actor<
    caf::replies_to<submit_atom, generation_request>::with<int64_t>,  // request id
    caf::reacts_to<cancel_atom, int64_t>, caf::replies_to<stats_atom>::with<intake_stats>,
    caf::reacts_to<drain_atom>,
    caf::reacts_to<cancel_all_atom>,  // shutdown: end everything
    caf::replies_to<requests_atom>::with<std::vector<request_info>>,
    caf::replies_to<set_atom, std::string, int64_t>::with<std::string>,  // live setting; "" = ok
    caf::replies_to<mailbox_atom>::with<int64_t>>;

// ---- spawning
struct accountant_options {
  cache_policy policy;
  budgets limits;
  calibration cal;
  int64_t device_cache_cap = 0;
  int64_t batch_hint = 1;  // sequences the plan is made for before any arrive
  int64_t context_hint = 0;
};
accountant_actor spawn_cache_accountant(caf::actor_system& sys, backend* be,
                                        std::shared_ptr<const model> m,
                                        const accountant_options& o);
class weight_placement;
/// The placement is made by the caller (its allocation can fail; an actor's start cannot).
loader_actor spawn_layer_loader(caf::actor_system& sys, backend* be,
                                std::shared_ptr<weight_placement> weights);
recompute_actor spawn_recompute_engine(caf::actor_system& sys, backend* be,
                                       std::shared_ptr<const model> m);
decoder_actor spawn_decoder(caf::actor_system& sys, backend* be, std::shared_ptr<const model> m,
                            loader_actor loader, recompute_actor recompute,
                            accountant_actor accountant, head_weights head,
                            std::vector<int64_t> trace_passes = {});
struct intake_options {
  int max_batch = 64;          // running sequences per pass
  int max_step_tokens = 2048;  // new tokens per pass (decodes first, then prefill chunks)
  int max_queue = 1024;
  // While any running sequence has prompt left, passes carry only prefill chunks (vLLM's
  // default without chunked prefill): decodes would add their K/V rebuild to GPU-bound prefill
  // passes. Off: decodes join every pass (lower latency for running sequences).
  bool prefill_first = false;
};
intake_actor spawn_request_intake(caf::actor_system& sys, std::shared_ptr<const model> m,
                                  decoder_actor decoder, accountant_actor accountant,
                                  const intake_options& o);

}  // namespace hs
