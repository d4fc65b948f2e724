// Resolves a model_source into a loaded model; finds the built-in model's folder.
#include "hybridserve/model_source.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "hybridserve/synthetic_model.hpp"

#ifndef HS_BUILTIN_MODEL_DIR  // set by CMake: <source tree>/models/builtin
#define HS_BUILTIN_MODEL_DIR ""
#endif

namespace hs {

namespace fs = std::filesystem;

std::vector<std::string> builtin_model_candidates() {
  if (const char* env = std::getenv(k_builtin_model_env); env && *env) return {env};
  std::vector<std::string> out;
  auto add = [&out](const fs::path& p) {
    std::error_code ec;
    const fs::path norm = fs::weakly_canonical(p, ec);
    const std::string s = (ec ? p : norm).lexically_normal().string();
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  };
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && exe.has_parent_path()) add(exe.parent_path().parent_path() / "models" / "builtin");
  if (*HS_BUILTIN_MODEL_DIR) add(fs::path(HS_BUILTIN_MODEL_DIR));
  return out;
}

result<model_source> locate_builtin_model(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(fs::path(c) / "config.json", ec)) {
      model_source s;
      s.dir = c;
      return s;
    }
  }
  std::string tried;
  for (const auto& c : candidates) tried += (tried.empty() ? "" : ", ") + c;
  if (tried.empty()) tried = "(no candidate folder)";
  return result<model_source>::failure(
      "the built-in model (models/builtin of the hybridserve source tree) was not found; "
      "looked for config.json in: " +
      tried + ". Set " + k_builtin_model_env +
      "=FOLDER, or give a model with --model DIR (model.path) or a synthetic one with --shape "
      "NAME (model.shape)");
}

result<model_source> default_model_source() {
  return locate_builtin_model(builtin_model_candidates());
}

result<std::shared_ptr<const model>> open_model(const model_source& src) {
  if (!src.dir.empty() && !src.shape.empty())
    return result<std::shared_ptr<const model>>::failure(
        "give either a model folder or a synthetic shape, not both");
  if (src.dir.empty() && src.shape.empty()) {
    auto def = default_model_source();
    if (!def) return result<std::shared_ptr<const model>>::failure(def.error());
    return load_model(def->dir);
  }
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
