// Resolves a model_source into a loaded model.
#include "hybridserve/model_source.hpp"

#include "hybridserve/synthetic_model.hpp"

namespace hs {

model_source default_model_source() {
  model_source s;
  s.shape = "tiny";  // a small synthetic model until the project ships a trained one
  s.seed = 1;
  return s;
}

result<std::shared_ptr<const model>> open_model(const model_source& src) {
  if (!src.dir.empty() && !src.shape.empty())
    return result<std::shared_ptr<const model>>::failure(
        "give either a model folder or a synthetic shape, not both");
  if (src.dir.empty() && src.shape.empty()) return open_model(default_model_source());
  if (!src.dir.empty()) return load_model(src.dir);
  auto cfg = synthetic_config(src.shape);
  if (!cfg) return result<std::shared_ptr<const model>>::failure(cfg.error());
  if (src.dtype == "float16")
    cfg->weight_dtype = dtype::f16;
  else if (src.dtype == "bfloat16")
    cfg->weight_dtype = dtype::bf16;
  else if (src.dtype == "float32")
    cfg->weight_dtype = dtype::f32;
  else
    return result<std::shared_ptr<const model>>::failure("dtype '" + src.dtype +
                                                         "' unknown (float16, bfloat16, float32)");
  return make_synthetic_model(*cfg, src.seed);
}

}  // namespace hs
