// Memory-mapped safetensors checkpoints (single file or sharded with an index).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hybridserve/tensor.hpp"

namespace hs {

/// All tensors of a checkpoint by name. Files are memory-mapped read-only, never copied; owned
/// buffers (synthetic weights) can be added too. Views stay valid while the store lives.
class tensor_store {
 public:
  tensor_store();
  tensor_store(const tensor_store&) = delete;
  tensor_store& operator=(const tensor_store&) = delete;
  ~tensor_store();

  /// Maps one .safetensors file and validates its header against the file size. Throws
  /// hs::error naming the file (and tensor) for: missing/unreadable file, truncated file,
  /// header longer than the file, bad JSON, unknown dtype, offsets out of range or not
  /// matching the shape, duplicate names.
  void add_file(const std::string& path);
  /// Loads a checkpoint folder: `model.safetensors`, or `model.safetensors.index.json` and its
  /// shards (only the shards the index names).
  void add_checkpoint_dir(const std::string& dir);
  /// Adds an owned tensor (synthetic weights). The store keeps `storage` alive.
  void add_owned(const std::string& name, dtype type, std::vector<int64_t> shape,
                 std::shared_ptr<void> storage, std::size_t nbytes);

  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  /// The tensor, checked for presence and (when given) shape. Throws naming file and tensor.
  const tensor_view& get(const std::string& name, const std::vector<int64_t>& shape = {}) const;
  /// Present tensor with the given shape, or an absent view when the name is missing.
  tensor_view optional(const std::string& name, const std::vector<int64_t>& shape) const;
  std::vector<std::string> names() const;
  /// Which file a tensor came from ("<synthetic>" for owned ones).
  const std::string& source_of(const std::string& name) const;
  std::size_t total_bytes() const;

 private:
  struct mapping;
  struct entry {
    tensor_view view;
    std::string source;
  };
  std::vector<std::unique_ptr<mapping>> maps_;
  std::vector<std::shared_ptr<void>> owned_;
  std::map<std::string, entry> tensors_;
};

}  // namespace hs
