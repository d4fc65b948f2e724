// The plan an engine starts from: the placement planner's plan, made again for a smaller budget
// when what the engine holds besides weights and cache would not fit beside it. Shared by the
// engine and `hybridserve plan`, so the command predicts what the engine will do.
#pragma once
#include <cstddef>
#include <cstdint>

#include "hybridserve/cost_model.hpp"

namespace hs {

/// Device bytes an engine holds besides the plan's weights and cache: a full prefill pass's
/// buffers (max_step_tokens rows, with the buffer pool's 1/8 slack), OPT's position table
/// (token rows are read from a tied head's device copy or from host memory), and
/// `scratch_bytes` (the backend's attention scratch, backend::attention_scratch_bytes).
int64_t engine_fixed_device_bytes(const model_config& c, std::size_t elem_bytes,
                                  int64_t max_step_tokens, std::size_t scratch_bytes);

/// make_plan(); when that plan's device peak plus engine_fixed_device_bytes() exceeds the
/// budget (Llama-3-8B's weights alone fill 16 GiB), the plan for the budget less those bytes,
/// which streams more layers, if that one is feasible.
placement_plan make_engine_plan(const model_config& cfg, const step_workload& w, const budgets& b,
                                const calibration& cal, const cache_policy& p,
                                std::size_t elem_bytes, int64_t max_step_tokens,
                                std::size_t scratch_bytes);

}  // namespace hs
