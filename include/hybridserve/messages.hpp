// Messages between the pipeline actors and their clients (plain structs, no CAF here, so
// front ends and tests can use them without compiling CAF headers).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hybridserve/cache_pool.hpp"
#include "hybridserve/cost_model.hpp"
#include "hybridserve/generate.hpp"
#include "hybridserve/step_pipeline.hpp"

namespace hs {

// ---- messages
/// One pass for the decoder: the items and, for sequences seen for the first time, how to
/// sample them.
struct step_items {
  int64_t step = 0;
  std::vector<step_item> items;
  std::vector<sampling_params> sampling;  // parallel to items
};

/// The decoder's answer to a pass: a token for each item that wanted logits (-1 otherwise).
struct step_outcome {
  int64_t step = 0;
  std::vector<int64_t> seqs;
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;  // parallel to tokens; filled for return_logits items
  std::string error;  // non-empty: the pass failed, its requests end with finish_reason::error
  double seconds = 0;
  int64_t new_tokens = 0, rebuilt_rows = 0;
  std::size_t h2d_bytes = 0, d2h_bytes = 0;
  std::string trace;  // per-layer timeline of this pass (engine_options::trace_passes)
};

struct admit_reply {
  bool ok = false;
  std::string why;
};

/// The accountant's report: usage by tier and form, budgets and the plan in force.
struct cache_report {
  cache_usage usage;
  cache_usage peak;  // the most each form and tier held at once since start (per field)
  int64_t device_cap = 0, host_budget = 0;
  int64_t device_used = 0, device_peak = 0, device_budget = 0;
  bool auto_ratio = true;
  double kv_ratio = 1.0;
  placement_plan plan;
  std::string plan_text;
  int64_t sequences = 0;
};

struct head_weights {
  const void* norm_w = nullptr;
  const void* norm_b = nullptr;
  const void* head = nullptr;
  int resident_layers = 0, ring_slots = 0;
  std::size_t device_bytes = 0;
  int64_t prefetch_hits = 0;  // layers a pass found uploaded ahead of it (engine::report)
};

/// What request intake sends to a requester for each generated token.
struct token_event {
  int64_t request = 0;
  int32_t index = 0;
  int32_t token = 0;
};

struct request_timings {
  double queue_ms = 0, ttft_ms = 0, prefill_ms = 0, decode_ms = 0;
};

/// The last message of a request.
struct finished_event {
  int64_t request = 0;
  generation_result result;
  int64_t prompt_tokens = 0;
  request_timings timings;
};

/// One live request, for the admin console.
struct request_info {
  int64_t id = 0;
  std::string state;  // queued | prefill | decode
  int64_t prompt_tokens = 0, generated = 0, max_tokens = 0;
  double age_s = 0;
};

struct intake_stats {
  int64_t running = 0, queued = 0, finished = 0;
  int64_t generated_tokens = 0, prompt_tokens = 0, steps = 0;
  double tokens_per_s = 0;      // generated tokens / busy seconds
  double last_step_s = 0;       // measured
  double predicted_step_s = 0;  // the plan's prediction for the last pass
  int64_t h2d_cache_bytes = 0;  // host-tier cache streamed to the device, all passes
  int64_t d2h_bytes = 0;        // new cache rows written to the host tier, all passes
  bool draining = false;
  std::string trace;  // the traced pass's timeline, when one was asked for
};

}  // namespace hs
