// The reference generation loop (the oracle the actor runtime is compared against).
#include "hybridserve/generate.hpp"

#include <algorithm>

namespace hs {

const char* finish_reason_name(finish_reason r) {
  switch (r) {
    case finish_reason::stop:
      return "stop";
    case finish_reason::length:
      return "length";
    case finish_reason::cancelled:
      return "cancelled";
    case finish_reason::error:
      return "error";
  }
  return "?";
}

std::string generation_request::check(const model& m) const {
  const auto& c = m.config;
  if (prompt.empty()) return "prompt is empty";
  for (auto id : prompt)
    if (id < 0 || id >= c.vocab)
      return "prompt token id " + std::to_string(id) + " out of range [0, " +
             std::to_string(c.vocab) + ")";
  if (int64_t(prompt.size()) > c.max_pos)
    return "context overflow: prompt of " + std::to_string(prompt.size()) +
           " tokens exceeds the model's maximum context of " + std::to_string(c.max_pos);
  if (max_tokens < 0) return "max_tokens must be >= 0";
  for (auto id : stop_ids)
    if (id < 0 || id >= c.vocab) return "stop id " + std::to_string(id) + " out of range";
  for (auto id : forced)
    if (id < 0 || id >= c.vocab) return "forced id " + std::to_string(id) + " out of range";
  return sampling.check();
}

std::vector<generation_result> generate_reference(reference_forward& fwd,
                                                  const std::vector<generation_request>& reqs,
                                                  const token_callback& on_token) {
  const model& m = fwd.get_model();
  std::vector<generation_result> out(reqs.size());
  std::vector<sequence_kv> kv(reqs.size());
  std::vector<sampler> samplers;
  std::vector<std::size_t> active;
  std::vector<int32_t> next(reqs.size());
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    samplers.emplace_back(reqs[i].sampling);
    const std::string why = reqs[i].check(m);
    if (!why.empty()) {
      out[i].reason = finish_reason::error;
      out[i].error = why;
    } else if (reqs[i].max_tokens > 0) {
      active.push_back(i);
    }
  }
  bool prefill = true;
  while (!active.empty()) {
    std::vector<forward_item> batch;
    for (auto i : active)
      batch.push_back({prefill ? reqs[i].prompt : std::vector<int32_t>{next[i]}, &kv[i], false});
    prefill = false;
    const auto logits = fwd.run(batch);
    std::vector<std::size_t> still;
    for (std::size_t b = 0; b < active.size(); ++b) {
      const auto i = active[b];
      const int32_t id = samplers[i].sample(logits[b].data(), m.config.vocab);
      out[i].tokens.push_back(id);
      if (reqs[i].return_logits)
        out[i].logits.emplace_back(logits[b].begin(), logits[b].begin() + m.config.vocab);
      if (on_token) on_token(i, id);
      const auto& r = reqs[i];
      const bool stop = (r.stop_at_eos && m.is_eos(id)) ||
                        std::find(r.stop_ids.begin(), r.stop_ids.end(), id) != r.stop_ids.end();
      if (stop) {
        out[i].reason = finish_reason::stop;
      } else if (int(out[i].tokens.size()) >= r.max_tokens || kv[i].length >= m.config.max_pos) {
        out[i].reason = finish_reason::length;
      } else {
        const std::size_t k = out[i].tokens.size() - 1;
        next[i] = k < r.forced.size() ? r.forced[k] : id;
        still.push_back(i);
      }
    }
    active = std::move(still);
  }
  return out;
}

}  // namespace hs
