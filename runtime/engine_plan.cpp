// The engine's starting plan (engine_plan.hpp).
#include "hybridserve/engine_plan.hpp"

#include "hybridserve/step_pipeline.hpp"

namespace hs {

int64_t engine_fixed_device_bytes(const model_config& c, std::size_t elem_bytes,
                                  int64_t max_step_tokens, std::size_t scratch_bytes) {
  const int64_t eb = int64_t(elem_bytes);
  const int64_t buffers =
      int64_t(pass_device_bytes(c, elem_bytes, max_step_tokens, 0, 0, 0)) * 9 / 8;
  // Token rows are read where they are: a tied head's device copy, else host memory (the CUDA
  // backend maps its pinned image). OPT's learned positions (offset 2) stay on the device.
  const int64_t table_rows = c.architecture == arch::opt ? c.max_pos + 2 : 0;
  return buffers + table_rows * c.hidden * eb + int64_t(scratch_bytes);
}

placement_plan make_engine_plan(const model_config& cfg, const step_workload& w, const budgets& b,
                                const calibration& cal, const cache_policy& p,
                                std::size_t elem_bytes, int64_t max_step_tokens,
                                std::size_t scratch_bytes) {
  auto plan = make_plan(cfg, w, b, cal, p);
  const int64_t fixed = engine_fixed_device_bytes(cfg, elem_bytes, max_step_tokens, scratch_bytes);
  if (plan.feasible && plan.device_peak_bytes + fixed > b.device_bytes && b.device_bytes > fixed) {
    budgets fewer = b;
    fewer.device_bytes = b.device_bytes - fixed;
    auto second = make_plan(cfg, w, fewer, cal, p);
    if (second.feasible) return second;
  }
  return plan;
}

}  // namespace hs
