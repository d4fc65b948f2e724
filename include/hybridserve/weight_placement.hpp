// Weight placement, owned by the layer loader: the first `resident` layers stay on the device;
// the rest stream through a ring of device buffers, one layer per slot.
#pragma once
#include <memory>
#include <vector>

#include "hybridserve/backend.hpp"
#include "hybridserve/model.hpp"

namespace hs {

class weight_placement {
 public:
  /// Allocates the resident layers, the ring and the LM head on the device and enqueues their
  /// upload. Throws hs::error when the device budget cannot hold them.
  weight_placement(backend& be, std::shared_ptr<const model> m, int resident_layers,
                   int ring_slots);
  ~weight_placement();

  bool resident(int j) const { return j < resident_; }
  int resident_layers() const { return resident_; }
  int ring_slots() const { return int(slots_.size()); }
  int layer_count() const;
  /// Device bytes of one layer (elem type of the backend).
  std::size_t layer_bytes() const { return layer_bytes_; }
  std::size_t device_bytes() const { return device_bytes_; }

  /// Layer j on the device. Resident: the pointers and their (long done) upload events.
  /// Streamed: uploads into `slot`, after `slot_free` (the previous occupant's last reader).
  layer_upload load(int j, int slot, const event_ref& slot_free);

  const void* final_norm_w() const { return final_norm_w_; }
  const void* final_norm_b() const { return final_norm_b_; }
  const void* head() const { return head_; }
  /// Completion of the start-up uploads.
  const event_ref& ready() const { return ready_; }

 private:
  backend& be_;
  std::shared_ptr<const model> model_;
  int resident_;
  std::size_t layer_bytes_ = 0, device_bytes_ = 0;
  std::vector<void*> owned_;
  std::vector<layer_upload> resident_info_;
  std::vector<void*> slots_;
  const void *final_norm_w_ = nullptr, *final_norm_b_ = nullptr, *head_ = nullptr;
  event_ref ready_;
};

}  // namespace hs
