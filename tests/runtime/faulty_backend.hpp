// A backend that forwards every call to another one (the CPU backend in tests) and throws
// hs::error from the calls a test picks: failure injection for the actors' error paths, which a
// healthy backend never takes.
#pragma once
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "hybridserve/backend.hpp"
#include "hybridserve/error.hpp"

namespace hs::test {

class faulty_backend final : public backend {
 public:
  /// `fail(op, s)` is asked before each enqueue of `op` ("copy_batch", "kv_rebuild", ...) on
  /// stream s; true makes the call throw instead. Called from the actors' threads.
  using predicate = std::function<bool(const std::string& op, stream s)>;
  /// `before(op, s)`, when given, runs first (a test may sleep there to order the actors).
  using hook = std::function<void(const std::string& op, stream s)>;
  faulty_backend(std::unique_ptr<backend> inner, predicate fail, hook before = {})
      : in_(std::move(inner)), fail_(std::move(fail)), before_(std::move(before)) {}
  int64_t failures() const { return failures_.load(); }
  /// kv_rebuild calls whose scratch was not (or no longer) a live device allocation: a job
  /// enqueued after its pass's buffers went back.
  int64_t stale_rebuilds() const { return stale_.load(); }

  std::string name() const override { return in_->name(); }
  int elem_bytes() const override { return in_->elem_bytes(); }
  void* device_alloc(std::size_t bytes, const std::string& what) override {
    void* p = in_->device_alloc(bytes, what);
    std::lock_guard<std::mutex> lk(m_);
    live_[static_cast<char*>(p)] = bytes;
    return p;
  }
  void device_free(void* p) override {
    {
      std::lock_guard<std::mutex> lk(m_);
      live_.erase(static_cast<char*>(p));
    }
    in_->device_free(p);
  }
  std::size_t device_budget() const override { return in_->device_budget(); }
  std::size_t device_used() const override { return in_->device_used(); }
  std::size_t device_peak() const override { return in_->device_peak(); }
  void reset_peak() override { in_->reset_peak(); }
  std::shared_ptr<void> host_alloc(std::size_t bytes) override { return in_->host_alloc(bytes); }
  event_ref record(stream s) override { return in_->record(s); }
  void wait(stream s, const event_ref& e) override { in_->wait(s, e); }
  void on_done(const event_ref& e, std::function<void()> fn) override {
    in_->on_done(e, std::move(fn));
  }
  void synchronize() override { in_->synchronize(); }
  std::size_t attention_scratch_bytes(int64_t n_head, int64_t head_dim,
                                      int64_t longest) const override {
    return in_->attention_scratch_bytes(n_head, head_dim, longest);
  }
  void share_table(const tensor_view& t, const void* device_copy, const event_ref& ready) override {
    in_->share_table(t, device_copy, ready);
  }
  void set_timing(bool on) override { in_->set_timing(on); }
  double elapsed_ms(const event_ref& a, const event_ref& b) const override {
    return in_->elapsed_ms(a, b);
  }
  void upload_tensor(stream s, void* dst, const tensor_view& t) override {
    check("upload_tensor", s);
    in_->upload_tensor(s, dst, t);
  }
  void copy(stream s, void* dst, const void* src, std::size_t bytes) override {
    check("copy", s);
    in_->copy(s, dst, src, bytes);
  }
  void copy_batch(stream s, std::vector<copy_op> ops) override {
    check("copy_batch", s);
    in_->copy_batch(s, std::move(ops));
  }
  void scatter_rows(stream s, const void* src, std::size_t src_stride, std::size_t row_bytes,
                    row_ptrs dst) override {
    check("scatter_rows", s);
    in_->scatter_rows(s, src, src_stride, row_bytes, std::move(dst));
  }
  void gather_rows(stream s, std::vector<const void*> src, std::size_t row_bytes,
                   void* dst) override {
    check("gather_rows", s);
    in_->gather_rows(s, std::move(src), row_bytes, dst);
  }
  void embed(stream s, const tensor_view& tok, const tensor_view* pos, std::vector<int32_t> ids,
             std::vector<int32_t> positions, void* x) override {
    check("embed", s);
    in_->embed(s, tok, pos, std::move(ids), std::move(positions), x);
  }
  void norm(stream s, const void* x, const void* w, const void* b, void* y, int64_t M, int64_t H,
            float eps, bool rms) override {
    check("norm", s);
    in_->norm(s, x, w, b, y, M, H, eps, rms);
  }
  void linear(stream s, const void* x, const void* w, const void* b, void* y, int64_t M, int64_t N,
              int64_t K) override {
    check("linear", s);
    in_->linear(s, x, w, b, y, M, N, K);
  }
  void rope(stream s, void* x, int64_t row_stride, std::vector<int32_t> positions, int64_t heads,
            int64_t D, float theta) override {
    check("rope", s);
    in_->rope(s, x, row_stride, std::move(positions), heads, D, theta);
  }
  void relu(stream s, void* x, int64_t n) override {
    check("relu", s);
    in_->relu(s, x, n);
  }
  void linear_relu(stream s, const void* x, const void* w, const void* b, void* y, int64_t M,
                   int64_t N, int64_t K) override {
    check("linear_relu", s);
    in_->linear_relu(s, x, w, b, y, M, N, K);
  }
  void linear_add(stream s, const void* x, const void* w, const void* b, void* y, int64_t M,
                  int64_t N, int64_t K) override {
    check("linear_add", s);
    in_->linear_add(s, x, w, b, y, M, N, K);
  }
  void silu_mul(stream s, const void* gate, const void* up, void* out, int64_t n) override {
    check("silu_mul", s);
    in_->silu_mul(s, gate, up, out, n);
  }
  void add(stream s, void* x, const void* y, int64_t n) override {
    check("add", s);
    in_->add(s, x, y, n);
  }
  void attention(stream s, const void* q, void* out, attention_args a) override {
    check("attention", s);
    in_->attention(s, q, out, std::move(a));
  }
  void attention_fresh(stream s, const void* q, void* out, fresh_attention_args a) override {
    check("attention_fresh", s);
    in_->attention_fresh(s, q, out, std::move(a));
  }
  void kv_rebuild(stream s, const model_config& cfg, const device_layer& w, const void* act,
                  int64_t M, std::vector<int32_t> positions, row_ptrs k_dst, row_ptrs v_dst,
                  void* scratch) override {
    check("kv_rebuild", s);
    if (!live(scratch)) ++stale_;
    in_->kv_rebuild(s, cfg, w, act, M, std::move(positions), std::move(k_dst), std::move(v_dst),
                    scratch);
  }
  void logits(stream s, const model_config& cfg, const void* x, int64_t R, const void* norm_w,
              const void* norm_b, const void* head, float* host_logits,
              int32_t* host_argmax) override {
    check("logits", s);
    in_->logits(s, cfg, x, R, norm_w, norm_b, head, host_logits, host_argmax);
  }

 private:
  void check(const char* op, stream s) {
    if (before_) before_(op, s);
    if (fail_ && fail_(op, s)) {
      ++failures_;
      throw error(std::string("injected failure in ") + op);
    }
  }
  bool live(const void* p) {
    std::lock_guard<std::mutex> lk(m_);
    auto it = live_.upper_bound(static_cast<char*>(const_cast<void*>(p)));
    if (it == live_.begin()) return false;
    --it;
    return static_cast<const char*>(p) < it->first + it->second;
  }
  std::unique_ptr<backend> in_;
  predicate fail_;
  hook before_;
  std::atomic<int64_t> failures_{0}, stale_{0};
  std::mutex m_;
  std::map<char*, std::size_t> live_;  // device allocations: start -> bytes
};

}  // namespace hs::test
