// Resident layers, the streaming ring and the LM head on the device.
#include "hybridserve/weight_placement.hpp"

#include "hybridserve/error.hpp"
#include "hybridserve/step_pipeline.hpp"

namespace hs {

weight_placement::weight_placement(backend& be, std::shared_ptr<const model> m, int resident_layers,
                                   int ring_slots)
    : be_(be), model_(std::move(m)) {
  const auto& c = model_->config;
  resident_ = std::clamp(resident_layers, 0, c.n_layer);
  if (resident_ < c.n_layer && ring_slots < 1)
    throw error("streamed layers need at least one ring slot");
  const int n_slots = resident_ < c.n_layer ? std::min(ring_slots, c.n_layer - resident_) : 0;
  const std::size_t eb = std::size_t(be_.elem_bytes());
  layer_bytes_ = layer_device_elems(c) * eb;
  auto alloc = [&](std::size_t bytes, const std::string& what) {
    void* p = be_.device_alloc(bytes, what);
    owned_.push_back(p);
    device_bytes_ += bytes;
    return p;
  };
  try {
    const std::size_t H = std::size_t(c.hidden);
    void* norm = alloc(2 * H * eb, "final norm");
    be_.upload_tensor(stream::h2d, norm, model_->weights.final_norm_w);
    final_norm_w_ = norm;
    if (model_->weights.final_norm_b.present()) {
      be_.upload_tensor(stream::h2d, static_cast<char*>(norm) + H * eb,
                        model_->weights.final_norm_b);
      final_norm_b_ = static_cast<char*>(norm) + H * eb;
    }
    void* head = alloc(std::size_t(c.vocab) * H * eb, "LM head");
    be_.upload_tensor(stream::h2d, head, model_->weights.lm_head);
    head_ = head;
    // A tied head is the token table: embed() reads this copy instead of making another.
    if (model_->weights.lm_head.data == model_->weights.tok_embed.data)
      be_.share_table(model_->weights.tok_embed, head, be_.record(stream::h2d));
    for (int j = 0; j < resident_; ++j) {
      void* dst = alloc(layer_bytes_, "resident layer " + std::to_string(j));
      resident_info_.push_back(upload_layer(be_, stream::h2d, c, model_->weights.layers[j], dst));
    }
    for (int k = 0; k < n_slots; ++k)
      slots_.push_back(alloc(layer_bytes_, "weight ring slot " + std::to_string(k)));
  } catch (...) {
    be_.share_table(model_->weights.tok_embed, nullptr, {});
    be_.synchronize();
    for (auto* p : owned_) be_.device_free(p);
    throw;
  }
  ready_ = be_.record(stream::h2d);
}

weight_placement::~weight_placement() {
  be_.share_table(model_->weights.tok_embed, nullptr, {});
  be_.synchronize();
  for (auto* p : owned_) be_.device_free(p);
}

int weight_placement::layer_count() const {
  return model_->config.n_layer;
}

layer_upload weight_placement::load(int j, int slot, const event_ref& slot_free) {
  if (resident(j)) return resident_info_[std::size_t(j)];
  be_.wait(stream::h2d, slot_free);
  return upload_layer(be_, stream::h2d, model_->config, model_->weights.layers[std::size_t(j)],
                      slots_[std::size_t(slot)]);
}

}  // namespace hs
