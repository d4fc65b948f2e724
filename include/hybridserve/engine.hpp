// The engine: a backend plus the five pipeline actors, behind a CAF-free interface so tools,
// front ends and tests need not compile CAF headers.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hybridserve/backend.hpp"
#include "hybridserve/messages.hpp"

namespace hs {

struct engine_options {
  std::string backend = "cpu";  // cpu | cuda | auto (cuda when a GPU is present)
  int64_t device_budget = 0;    // bytes; 0 = the whole model fits (weights + cache + buffers)
  int64_t host_budget = 0;      // bytes of host cache; 0 = unlimited
  bool auto_ratio = true;
  double kv_ratio = 1.0;  // when !auto_ratio
  int block_size = 16;
  int max_batch = 64;
  int max_step_tokens = 2048;
  bool prefill_first = false;  // intake_options::prefill_first
  int max_queue = 1024;
  int resident_layers = -1;  // -1: the plan decides
  int ring_slots = 2;
  int64_t device_cache_cap = -1;               // -1: the plan decides
  std::optional<calibration> cal;              // measured at start when absent
  int64_t batch_hint = 8, context_hint = 256;  // workload the first plan assumes
  // The longest context a sequence of the hinted batch reaches (what a pass's workspace is
  // reserved for); < 0: context_hint plus one block.
  int64_t context_max_hint = -1;
  int scheduler_threads = 0;          // CAF workers; 0 = CAF's default
  bool network = false;               // load CAF's middleman (TCP front ends)
  std::vector<int64_t> trace_passes;  // diagnostics: time the layers of these passes
                                      // (engine_report.intake.trace)
};

/// Everything the admin console and metrics show.
struct engine_report {
  cache_report cache;
  intake_stats intake;
  head_weights weights;
  calibration cal;
  std::string backend;
};

/// Callback for streamed tokens of generate(): (index of the request in the batch, token id).
using engine_token_callback = std::function<void(std::size_t, int32_t)>;

class engine {
 public:
  /// Creates the backend, measures it (unless options.cal is given), plans placement, uploads
  /// the resident weights and spawns the actors. Errors name what does not fit.
  /// `be` (optional) is a backend made with make_backend(); else one is made from options.
  static result<std::unique_ptr<engine>> start(std::shared_ptr<const model> m,
                                               const engine_options& o,
                                               std::unique_ptr<backend> be = nullptr);
  ~engine();

  /// Submits every request, waits for all of them; tokens stream through `on_token`. When
  /// `keep_going(i, token)` returns false, request i is cancelled (it ends with `cancelled`).
  std::vector<finished_event> generate(
      const std::vector<generation_request>& reqs, const engine_token_callback& on_token = {},
      const std::function<bool(std::size_t, int32_t)>& keep_going = {});
  engine_report report();
  /// ratio < 0: automatic. Takes effect at the next pass.
  cache_report set_ratio(double ratio);
  const model& get_model() const;

  struct impl;
  /// The actor system and actor handles, for front ends (see engine_internals.hpp).
  impl& internals();

 private:
  explicit engine(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// Times copies and GEMMs on a backend: the figures the cost model uses.
/// `block_size`: the cache's, whose block copies are timed too (calibration::kv_block_...).
calibration measure_calibration(backend& be, const model_config& cfg, int block_size = 16);

/// "cpu", "cuda" or "auto" (cuda when a GPU is present, else cpu). Throws hs::error.
std::unique_ptr<backend> make_backend(const std::string& kind, std::size_t device_budget);

/// BENCH.md's figures measured on an H200 host (PCIe gen5): for planning without a GPU.
calibration h200_calibration();

}  // namespace hs
