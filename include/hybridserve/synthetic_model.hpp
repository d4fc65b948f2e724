// Models of real shapes with seeded random weights, so throughput can be measured at real sizes
// without downloading anything.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hybridserve/model.hpp"

namespace hs {

/// Named shapes: opt-125m, opt-6.7b, opt-13b, opt-30b, opt-66b, llama-2-7b, llama-2-13b,
/// llama-3-8b, llama-2-70b, and "tiny" (a small OPT for tests; `--shape tiny`).
std::vector<std::string> synthetic_shape_names();

/// A named shape, or explicit dimensions:
///   "opt:hidden=256,layers=4,heads=4,ffn=1024,vocab=4096[,max_pos=2048]"
///   "llama:hidden=256,layers=4,heads=8,kv_heads=2,ffn=688,vocab=4096[,head_dim=..,theta=..]"
result<model_config> synthetic_config(const std::string& spec);

/// Host memory for synthetic weights; the CUDA backend passes a pinned allocator.
using host_allocator = std::function<std::shared_ptr<void>(std::size_t bytes)>;

/// Allocates and fills every weight of `cfg` (dtype cfg.weight_dtype: F16, BF16 or F32) from
/// `seed`: the same seed gives the same weights whatever the thread count. Comes with a
/// byte-level tokenizer (ids 0..2 = <s>, <pad>, </s>; 3..258 = the 256 bytes).
result<std::shared_ptr<const model>> make_synthetic_model(const model_config& cfg, uint64_t seed,
                                                          const host_allocator& alloc = {});

/// The byte-level tokenizer synthetic models use: every byte is one token; ids past 258 are
/// unnamed special tokens.
std::shared_ptr<const tokenizer> make_byte_tokenizer(int vocab);

}  // namespace hs
