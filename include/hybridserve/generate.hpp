// Batched generation on the reference path: prefill every prompt, then one token per step.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "hybridserve/reference_forward.hpp"
#include "hybridserve/sampler.hpp"

namespace hs {

struct generation_request {
  std::vector<int32_t> prompt;  // ids, BOS included when the model wants one
  std::string prompt_text;      // used when `prompt` is empty: request intake tokenizes it
  int max_tokens = 128;
  sampling_params sampling;
  std::vector<int32_t> stop_ids;  // besides EOS
  bool stop_at_eos = true;
  /// Teacher forcing (scoring, tests): the token fed after step i is forced[i], whatever was
  /// sampled. Empty = feed the sampled tokens.
  std::vector<int32_t> forced;
  /// Return the logits of every sampled position (engine only).
  bool return_logits = false;

  /// Empty when the request can run on `m`, else what is wrong with it.
  std::string check(const model& m) const;
};

enum class finish_reason { stop, length, cancelled, error };
const char* finish_reason_name(finish_reason r);

struct generation_result {
  std::vector<int32_t> tokens;  // generated ids (a stop id is included)
  finish_reason reason = finish_reason::length;
  std::string error;                       // for finish_reason::error
  std::vector<std::vector<float>> logits;  // [generated][vocab] when return_logits
};

/// Called for every generated token: (request index, token id).
using token_callback = std::function<void(std::size_t, int32_t)>;

/// Generates for all requests together. A request that fails its check ends with
/// finish_reason::error and does not disturb the others. Generation also stops (with
/// `length`) when the context reaches the model's maximum.
std::vector<generation_result> generate_reference(reference_forward& fwd,
                                                  const std::vector<generation_request>& reqs,
                                                  const token_callback& on_token = {});

}  // namespace hs
