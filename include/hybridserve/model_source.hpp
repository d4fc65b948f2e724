// Where a model comes from: a checkpoint folder or a synthetic shape; the built-in default.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hybridserve/model.hpp"

namespace hs {

struct model_source {
  std::string dir;                // Hugging Face checkpoint folder, or
  std::string shape;              // synthetic shape name/spec
  uint64_t seed = 0;              // synthetic weights' seed
  std::string dtype = "float16";  // synthetic weights' dtype: float16, bfloat16, float32
};

/// Environment variable that names the built-in model's folder explicitly (an installed copy).
inline constexpr const char* k_builtin_model_env = "HYBRIDSERVE_BUILTIN_MODEL";

/// The folders where the built-in model (the repository's `models/builtin`, docs/MODEL.md) is
/// looked for, in order: $HYBRIDSERVE_BUILTIN_MODEL alone when it is set; else
/// `<folder of the running executable>/../models/builtin` (build/hybridserve in the source
/// tree), then `<source tree at compile time>/models/builtin`. Duplicates are dropped.
std::vector<std::string> builtin_model_candidates();

/// A source naming the first of `candidates` that holds a config.json, or an error naming
/// every path tried.
result<model_source> locate_builtin_model(const std::vector<std::string>& candidates);

/// The built-in default model (used when neither dir nor shape is given):
/// locate_builtin_model(builtin_model_candidates()).
result<model_source> default_model_source();

/// Opens the model a source names (the built-in model when neither dir nor shape is set).
result<std::shared_ptr<const model>> open_model(const model_source& src);

}  // namespace hs
