// CPU implementation of the backend interface (float32 everywhere on the "device").
#include "hybridserve/cpu_backend.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "hybridserve/budget_ledger.hpp"
#include "hybridserve/error.hpp"
#include "hybridserve/kernels_cpu.hpp"
#include "hybridserve/sample_rows.hpp"

namespace hs {
namespace {

class cpu_event final : public device_event {
 public:
  bool done() const override {
    std::lock_guard<std::mutex> lk(m_);
    return done_;
  }
  void wait() const {
    std::unique_lock<std::mutex> lk(m_);
    cv_.wait(lk, [&] { return done_; });
  }
  void complete() {
    std::vector<std::function<void()>> cbs;
    {
      std::lock_guard<std::mutex> lk(m_);
      done_ = true;
      at_ = std::chrono::steady_clock::now();
      cbs.swap(callbacks_);
    }
    cv_.notify_all();
    for (auto& f : cbs) f();
  }
  // Returns false (and keeps fn) if not done yet; true if done (caller runs fn).
  bool add_callback(std::function<void()>& fn) {
    std::lock_guard<std::mutex> lk(m_);
    if (done_) return true;
    callbacks_.push_back(std::move(fn));
    return false;
  }

  /// When the stream reached the event; nullopt until then.
  std::optional<std::chrono::steady_clock::time_point> completed_at() const {
    std::lock_guard<std::mutex> lk(m_);
    if (!done_) return std::nullopt;
    return at_;
  }

 private:
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  std::chrono::steady_clock::time_point at_;
  std::vector<std::function<void()>> callbacks_;
};

// One in-order queue of work executed by its own thread, like a CUDA stream.
class worker_stream {
 public:
  worker_stream() : thread_([this] { loop(); }) {}
  ~worker_stream() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void push(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lk(m_);
      q_.push_back(std::move(fn));
    }
    cv_.notify_all();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;
        fn = std::move(q_.front());
        q_.pop_front();
      }
      fn();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

const float* F(const void* p) {
  return static_cast<const float*>(p);
}
float* F(void* p) {
  return static_cast<float*>(p);
}

class cpu_backend final : public backend {
 public:
  explicit cpu_backend(std::size_t budget) : ledger_(budget) {
    for (auto& s : streams_) s = std::make_unique<worker_stream>();
  }
  ~cpu_backend() override {
    synchronize();
    for (auto& s : streams_) s.reset();
    ledger_.release_all([](void* p) { std::free(p); });
  }

  std::string name() const override { return "cpu"; }
  int elem_bytes() const override { return 4; }

  void* device_alloc(std::size_t bytes, const std::string& what) override {
    return ledger_.allocate(bytes, what, [&](std::size_t n, std::size_t) {
      void* p = std::aligned_alloc(64, (std::max<std::size_t>(n, 1) + 63) / 64 * 64);
      if (!p) throw error("out of host memory allocating " + what);
      return p;
    });
  }
  void device_free(void* p) override {
    ledger_.release(p, [](void* q) { std::free(q); });
  }
  std::size_t device_budget() const override { return ledger_.budget(); }
  std::size_t device_used() const override { return ledger_.used(); }
  std::size_t device_peak() const override { return ledger_.peak(); }
  void reset_peak() override { ledger_.reset_peak(); }
  std::shared_ptr<void> host_alloc(std::size_t bytes) override {
    void* p = std::aligned_alloc(64, (std::max<std::size_t>(bytes, 1) + 63) / 64 * 64);
    if (!p) throw error("out of host memory (" + std::to_string(bytes) + " bytes)");
    return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  }

  // Every event keeps its completion time, so timing needs no switch here.
  double elapsed_ms(const event_ref& a, const event_ref& b) const override {
    const auto* x = dynamic_cast<const cpu_event*>(a.get());
    const auto* y = dynamic_cast<const cpu_event*>(b.get());
    const auto ta = x ? x->completed_at() : std::nullopt;
    const auto tb = y ? y->completed_at() : std::nullopt;
    if (!ta || !tb) return std::numeric_limits<double>::quiet_NaN();
    return std::chrono::duration<double, std::milli>(*tb - *ta).count();
  }
  event_ref record(stream s) override {
    auto e = std::make_shared<cpu_event>();
    enqueue(s, [e] { e->complete(); });
    return e;
  }
  void wait(stream s, const event_ref& e) override {
    if (!e) return;
    auto ce = std::static_pointer_cast<cpu_event>(e);
    enqueue(s, [ce] { ce->wait(); });
  }
  void on_done(const event_ref& e, std::function<void()> fn) override {
    if (!e || std::static_pointer_cast<cpu_event>(e)->add_callback(fn)) fn();
  }
  void synchronize() override {
    for (int i = 0; i < k_stream_count; ++i)
      std::static_pointer_cast<cpu_event>(record(stream(i)))->wait();
  }

  void upload_tensor(stream s, void* dst, const tensor_view& t) override {
    enqueue(s, [dst, t] { cpu::convert_to_f32(t, F(dst)); });
  }
  void copy(stream s, void* dst, const void* src, std::size_t bytes) override {
    enqueue(s, [=] { std::memcpy(dst, src, bytes); });
  }
  void copy_batch(stream s, std::vector<copy_op> ops) override {
    if (ops.empty()) return;
    enqueue(s, [ops = std::move(ops)] {
      for (const auto& o : ops) std::memcpy(o.dst, o.src, o.bytes);
    });
  }
  void scatter_rows(stream s, const void* src, std::size_t src_stride, std::size_t row_bytes,
                    row_ptrs dst) override {
    enqueue(s, [src, src_stride, row_bytes, dst = std::move(dst)] {
      for (std::size_t i = 0; i < dst.size(); ++i)
        if (dst[i]) std::memcpy(dst[i], static_cast<const char*>(src) + i * src_stride, row_bytes);
    });
  }
  void gather_rows(stream s, std::vector<const void*> src, std::size_t row_bytes,
                   void* dst) override {
    enqueue(s, [src = std::move(src), row_bytes, dst] {
      for (std::size_t i = 0; i < src.size(); ++i)
        std::memcpy(static_cast<char*>(dst) + i * row_bytes, src[i], row_bytes);
    });
  }

  void embed(stream s, const tensor_view& tok, const tensor_view* pos, std::vector<int32_t> ids,
             std::vector<int32_t> positions, void* x) override {
    tensor_view pv = pos ? *pos : tensor_view{};
    enqueue(s, [tok, pv, ids = std::move(ids), positions = std::move(positions), x] {
      const int64_t M = int64_t(ids.size()), H = tok.cols();
      cpu::embedding_cpu(tok, ids.data(), M, F(x));
      if (pv.present()) {
        std::vector<float> tmp(static_cast<std::size_t>(M * H));
        std::vector<int32_t> p2(positions);
        for (auto& p : p2) p += 2;  // OPT's learned positions start at offset 2
        cpu::embedding_cpu(pv, p2.data(), M, tmp.data());
        cpu::add_cpu(F(x), tmp.data(), M * H);
      }
    });
  }
  void norm(stream s, const void* x, const void* w, const void* b, void* y, int64_t M, int64_t H,
            float eps, bool rms) override {
    enqueue(s, [=] {
      if (rms)
        cpu::rmsnorm_cpu(F(x), F(w), F(y), M, H, eps);
      else
        cpu::layernorm_cpu(F(x), F(w), F(b), F(y), M, H, eps);
    });
  }
  void linear(stream s, const void* x, const void* w, const void* b, void* y, int64_t M, int64_t N,
              int64_t K) override {
    enqueue(s, [=] { cpu::linear_cpu(F(x), F(w), F(b), F(y), M, N, K); });
  }
  void linear_add(stream s, const void* x, const void* w, const void* b, void* y, int64_t M,
                  int64_t N, int64_t K) override {
    enqueue(s, [=] {
      std::vector<float> t(std::size_t(M * N));
      cpu::linear_cpu(F(x), F(w), F(b), t.data(), M, N, K);
      float* out = F(y);
      for (std::size_t i = 0; i < t.size(); ++i) out[i] += t[i];
    });
  }
  void rope(stream s, void* x, int64_t row_stride, std::vector<int32_t> positions, int64_t heads,
            int64_t D, float theta) override {
    enqueue(s, [=, positions = std::move(positions)] {
      for (std::size_t i = 0; i < positions.size(); ++i)
        cpu::rope_cpu(F(x) + int64_t(i) * row_stride, &positions[i], 1, heads, D, theta);
    });
  }
  void relu(stream s, void* x, int64_t n) override {
    enqueue(s, [=] { cpu::relu_cpu(F(x), n); });
  }
  void silu_mul(stream s, const void* g, const void* u, void* out, int64_t n) override {
    enqueue(s, [=] { cpu::silu_mul_cpu(F(g), F(u), F(out), n); });
  }
  void add(stream s, void* x, const void* y, int64_t n) override {
    enqueue(s, [=] { cpu::add_cpu(F(x), F(y), n); });
  }
  void attention(stream s, const void* q, void* out, attention_args a) override {
    enqueue(s, [q, out, a = std::move(a)] {
      std::vector<const float*> kb, vb;
      for (auto* p : a.k_blocks) kb.push_back(F(p));
      for (auto* p : a.v_blocks) vb.push_back(F(p));
      cpu::attention_paged_cpu(F(q), F(out), a.q_start.data(), a.ctx_len.data(), a.blk_start.data(),
                               kb.data(), vb.data(), int64_t(a.ctx_len.size()), a.n_head, a.n_kv,
                               a.head_dim, a.block_size, a.scale);
    });
  }
  // Gathers each sequence's q, k, v into token-major [n, heads, D] and runs the reference.
  void attention_fresh(stream s, const void* q, void* out, fresh_attention_args a) override {
    if (a.row0.size() != a.len.size())
      throw error("attention_fresh: row0 and len disagree in size");
    enqueue(s, [q, out, a = std::move(a)] {
      const int64_t QW = a.n_head * a.head_dim, KW = a.n_kv * a.head_dim;
      std::vector<float> k, v;
      for (std::size_t i = 0; i < a.row0.size(); ++i) {
        const int64_t r0 = a.row0[i], n = a.len[i];
        k.resize(std::size_t(n * KW));
        v.resize(k.size());
        for (int64_t t = 0; t < n; ++t) {
          std::memcpy(&k[std::size_t(t * KW)], F(a.k) + (r0 + t) * a.ld_kv, std::size_t(KW) * 4);
          std::memcpy(&v[std::size_t(t * KW)], F(a.v) + (r0 + t) * a.ld_kv, std::size_t(KW) * 4);
        }
        cpu::attention_cpu(F(q) + r0 * QW, k.data(), v.data(), F(out) + r0 * QW, n, n, a.n_head,
                           a.n_kv, a.head_dim, a.scale);
      }
    });
  }
  void kv_rebuild(stream s, const model_config& cfg, const device_layer& w, const void* act,
                  int64_t M, std::vector<int32_t> positions, row_ptrs k_dst, row_ptrs v_dst,
                  void* scratch) override {
    const bool rms = cfg.architecture == arch::llama;
    const int64_t H = cfg.hidden, KV = cfg.kv_dim();
    const float eps = cfg.norm_eps, theta = cfg.rope_theta;
    const int64_t heads = cfg.n_kv_head, D = cfg.head_dim;
    enqueue(s, [=, positions = std::move(positions), k_dst = std::move(k_dst),
                v_dst = std::move(v_dst)] {
      float* xn = F(scratch);
      float* kv = xn + M * H;  // [M, 2 * KV]: K then V per row
      if (rms)
        cpu::rmsnorm_cpu(F(act), F(w.attn_norm_w), xn, M, H, eps);
      else
        cpu::layernorm_cpu(F(act), F(w.attn_norm_w), F(w.attn_norm_b), xn, M, H, eps);
      cpu::linear_cpu(xn, F(w.wkv), F(w.bkv), kv, M, 2 * KV, H);
      for (int64_t i = 0; i < M; ++i) {
        float* row = kv + i * 2 * KV;
        if (rms) cpu::rope_cpu(row, &positions[std::size_t(i)], 1, heads, D, theta);
        std::memcpy(k_dst[std::size_t(i)], row, std::size_t(KV) * 4);
        std::memcpy(v_dst[std::size_t(i)], row + KV, std::size_t(KV) * 4);
      }
    });
  }
  void logits(stream s, const model_config& cfg, const void* x, int64_t R, const void* norm_w,
              const void* norm_b, const void* head, float* host_logits,
              int32_t* host_argmax) override {
    const bool rms = cfg.architecture == arch::llama;
    const int64_t H = cfg.hidden, V = cfg.vocab;
    const float eps = cfg.norm_eps;
    enqueue(s, [=] {
      std::vector<float> xn(static_cast<std::size_t>(R * H));
      if (rms)
        cpu::rmsnorm_cpu(F(x), F(norm_w), xn.data(), R, H, eps);
      else
        cpu::layernorm_cpu(F(x), F(norm_w), F(norm_b), xn.data(), R, H, eps);
      std::vector<float> own;
      float* lg = host_logits;
      if (!lg) {
        own.resize(static_cast<std::size_t>(R * V));
        lg = own.data();
      }
      cpu::linear_cpu(xn.data(), F(head), nullptr, lg, R, V, H);
      if (host_argmax)
        for (int64_t r = 0; r < R; ++r) host_argmax[r] = cpu::argmax_cpu(lg + r * V, V);
    });
  }

 private:
  void enqueue(stream s, std::function<void()> fn) { streams_[int(s)]->push(std::move(fn)); }

  budget_ledger ledger_;
  std::unique_ptr<worker_stream> streams_[k_stream_count];
};

}  // namespace

std::unique_ptr<backend> make_cpu_backend(std::size_t device_budget_bytes) {
  return std::make_unique<cpu_backend>(device_budget_bytes);
}

}  // namespace hs
