// Where a model comes from: a checkpoint folder or a synthetic shape; the built-in default.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "hybridserve/model.hpp"

namespace hs {

struct model_source {
  std::string dir;                // Hugging Face checkpoint folder, or
  std::string shape;              // synthetic shape name/spec
  uint64_t seed = 0;              // synthetic weights' seed
  std::string dtype = "float16";  // synthetic weights' dtype: float16, bfloat16, float32
};

/// The built-in default model (used when neither dir nor shape is given).
model_source default_model_source();

/// Opens the model a source names.
result<std::shared_ptr<const model>> open_model(const model_source& src);

}  // namespace hs
