// The CUDA implementation of the backend interface (backend.hpp): fp16 storage on device 0,
// four non-blocking streams ordered by CUDA events, the kernels of kernels/cuda. Per-stream
// state (cuBLAS handle, kernel-argument staging, scratch) lives in stream_lane.hpp.
#include "hybridserve/cuda_backend.hpp"
#include "hybridserve/budget_ledger.hpp"

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "hybridserve/cuda_check.hpp"
#include "hybridserve/error.hpp"
#include "hybridserve/half.hpp"
#include "hybridserve/kernels_cuda.hpp"
#include "stream_lane.hpp"

namespace hs {

namespace {

const __half* H(const void* p) {
  return static_cast<const __half*>(p);
}
__half* H(void* p) {
  return static_cast<__half*>(p);
}
std::string num(std::size_t n) {
  return std::to_string(n);
}

// Host functions run on a CUDA driver thread: they must not call CUDA, and must not throw.
void CUDART_CB run_callback(void* p) {
  std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()>*>(p));
  try {
    (*f)();
  } catch (...) {
  }
}
struct host_copy_job {
  void* dst;
  const void* src;
  std::size_t bytes;
};
void CUDART_CB run_host_copy(void* p) {
  std::unique_ptr<host_copy_job> j(static_cast<host_copy_job*>(p));
  std::memcpy(j->dst, j->src, j->bytes);
}

class cuda_event final : public device_event {
 public:
  cuda_event(cudaEvent_t e, int lane) : e_(e), lane_(lane) {}
  ~cuda_event() override { (void)cudaEventDestroy(e_); }
  bool done() const override {
    const cudaError_t r = cudaEventQuery(e_);
    if (r == cudaSuccess) return true;
    if (r == cudaErrorNotReady) return false;
    HS_CUDA_TRY(r);
    return false;
  }
  cudaEvent_t get() const { return e_; }
  int lane() const { return lane_; }

 private:
  cudaEvent_t e_;
  int lane_;
};

const cuda_event& as_cuda(const event_ref& e) {
  const auto* c = dynamic_cast<const cuda_event*>(e.get());
  if (!c) throw error("cuda backend: event was not recorded by a CUDA backend");
  return *c;
}

class cuda_backend final : public backend {
 public:
  explicit cuda_backend(std::size_t budget) : ledger_(budget) {
    HS_CUDA_TRY(cudaGetDevice(&dev_));
    cudaDeviceProp prop;
    HS_CUDA_TRY(cudaGetDeviceProperties(&prop, dev_));
    name_ = std::string("cuda:") + prop.name;
    if (!prop.unifiedAddressing || !prop.canMapHostMemory)
      throw error(name_ + " lacks unified addressing or mapped host memory");
    try {
      for (auto& l : lanes_) {
        l.ring_waits = &ring_waits_;
        HS_CUDA_TRY(cudaStreamCreateWithFlags(&l.s, cudaStreamNonBlocking));
      }
      for (auto& c : cb_) HS_CUDA_TRY(cudaStreamCreateWithFlags(&c.s, cudaStreamNonBlocking));
    } catch (...) {
      release();
      throw;
    }
  }
  ~cuda_backend() override {
    try {
      synchronize();
    } catch (...) {  // a sticky device error: release what we can
    }
    release();
  }

  std::string name() const override { return name_; }
  int elem_bytes() const override { return 2; }

  // ---- memory
  void* device_alloc(std::size_t bytes, const std::string& what) override {
    return ledger_.allocate(bytes, what, [&](std::size_t n, std::size_t left) {
      void* p = nullptr;
      const cudaError_t e = cudaMalloc(&p, std::max<std::size_t>(n, 1));
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        throw error("device out of memory: " + what + " needs " + num(n) + " bytes (" +
                    cudaGetErrorString(e) + "); " + num(left) + " of the " + num(ledger_.budget()) +
                    "-byte budget left");
      }
      return p;
    });
  }
  // Never throws (destructors call it); cudaFree waits for work still using the memory.
  void device_free(void* p) override {
    ledger_.release(p, [](void* q) {
      if (cudaFree(q) != cudaSuccess) (void)cudaGetLastError();
    });
  }
  std::size_t device_budget() const override { return ledger_.budget(); }
  std::size_t device_used() const override { return ledger_.used(); }
  std::size_t device_peak() const override { return ledger_.peak(); }
  void reset_peak() override { ledger_.reset_peak(); }
  std::shared_ptr<void> host_alloc(std::size_t bytes) override {
    auto p = cuda::pinned_alloc(bytes, cudaHostAllocPortable | cudaHostAllocMapped);
    return std::shared_ptr<void>(p.release(), cuda::host_free{});
  }

  // ---- ordering
  event_ref record(stream s) override {
    cuda::stream_lane& L = lane_of(s);
    cudaEvent_t e;
    HS_CUDA_TRY(cudaEventCreateWithFlags(&e, timing_ ? cudaEventDefault : cudaEventDisableTiming));
    auto ev = std::make_shared<cuda_event>(e, int(s));  // owns e from here on
    std::lock_guard<std::mutex> lk(L.m);
    HS_CUDA_TRY(cudaEventRecord(e, L.s));
    return ev;
  }
  void wait(stream s, const event_ref& e) override {
    if (!e) return;
    const cuda_event& ce = as_cuda(e);
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    HS_CUDA_TRY(cudaStreamWaitEvent(L.s, ce.get(), 0));
  }
  void set_timing(bool on) override { timing_ = on; }
  std::size_t attention_scratch_bytes(int64_t n_head, int64_t head_dim,
                                      int64_t longest) const override {
    return fresh_attention_scratch_bytes(n_head, head_dim, longest);
  }
  double elapsed_ms(const event_ref& a, const event_ref& b) const override {
    const auto* x = a ? dynamic_cast<const cuda_event*>(a.get()) : nullptr;
    const auto* y = b ? dynamic_cast<const cuda_event*>(b.get()) : nullptr;
    float ms = 0;
    if (!x || !y || cudaEventElapsedTime(&ms, x->get(), y->get()) != cudaSuccess) {
      (void)cudaGetLastError();  // untimed event or not complete: not measurable
      return std::numeric_limits<double>::quiet_NaN();
    }
    return double(ms);
  }
  // One callback stream per source stream: events of one stream complete in order, so a
  // callback never waits behind one whose event completes later.
  void on_done(const event_ref& e, std::function<void()> fn) override {
    if (!e || e->done()) {
      fn();
      return;
    }
    const cuda_event& ce = as_cuda(e);
    auto& c = cb_[ce.lane()];
    std::lock_guard<std::mutex> lk(c.m);
    HS_CUDA_TRY(cudaStreamWaitEvent(c.s, ce.get(), 0));
    auto* heap = new std::function<void()>(std::move(fn));
    const cudaError_t r = cudaLaunchHostFunc(c.s, run_callback, heap);
    if (r != cudaSuccess) {
      delete heap;
      HS_CUDA_TRY(r);
    }
  }
  void synchronize() override {
    for (auto& l : lanes_)
      if (l.s) HS_CUDA_TRY(cudaStreamSynchronize(l.s));
    for (auto& c : cb_)
      if (c.s) HS_CUDA_TRY(cudaStreamSynchronize(c.s));
  }

  // ---- transfers
  void upload_tensor(stream s, void* dst, const tensor_view& t) override {
    if (!t.present() || t.numel() == 0) return;
    const void* src = f16_source(t);
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    HS_CUDA_TRY(cudaMemcpyAsync(dst, src, std::size_t(t.numel()) * 2, cudaMemcpyDefault, L.s));
  }
  void copy(stream s, void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0) return;
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    HS_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, L.s));
  }
  // One driver call for the whole batch (CUDA 12.8+); where the driver refuses batches, one
  // cudaMemcpyAsync each.
  void copy_batch(stream s, std::vector<copy_op> ops) override {
    ops.erase(std::remove_if(ops.begin(), ops.end(), [](const copy_op& o) { return o.bytes == 0; }),
              ops.end());
    if (ops.empty()) return;
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    if (ops.size() > 1 && batch_copies_ok_) {
      std::vector<void*> dst(ops.size());
      std::vector<const void*> src(ops.size());
      std::vector<std::size_t> bytes(ops.size());
      for (std::size_t i = 0; i < ops.size(); ++i) {
        dst[i] = ops[i].dst;
        src[i] = ops[i].src;
        bytes[i] = ops[i].bytes;
      }
      cudaMemcpyAttributes attr{};
      attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
      attr.flags = cudaMemcpyFlagPreferOverlapWithCompute;
      std::size_t idx = 0;
#if CUDART_VERSION >= 13000
      const cudaError_t e = cudaMemcpyBatchAsync(dst.data(), src.data(), bytes.data(), ops.size(),
                                                 &attr, &idx, 1, L.s);
#elif CUDART_VERSION >= 12080
      std::size_t fail_idx = 0;
      const cudaError_t e =
          cudaMemcpyBatchAsync(dst.data(), const_cast<void**>(src.data()), bytes.data(), ops.size(),
                               &attr, &idx, 1, &fail_idx, L.s);
#else
      const cudaError_t e = cudaErrorNotSupported;  // no batch API before CUDA 12.8
#endif
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotSupported && e != cudaErrorCallRequiresNewerDriver) HS_CUDA_TRY(e);
      (void)cudaGetLastError();
      batch_copies_ok_ = false;  // this driver or toolkit: one copy each from now on
    }
    for (const auto& o : ops)
      HS_CUDA_TRY(cudaMemcpyAsync(o.dst, o.src, o.bytes, cudaMemcpyDefault, L.s));
  }
  void scatter_rows(stream s, const void* src, std::size_t src_stride, std::size_t row_bytes,
                    row_ptrs dst) override {
    if (dst.empty() || row_bytes == 0) return;
    std::uintptr_t bits = row_bytes | src_stride | reinterpret_cast<std::uintptr_t>(src);
    for (auto* p : dst) bits |= reinterpret_cast<std::uintptr_t>(p);
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    auto d = L.stage({cuda::arg_of(dst)});
    cuda::copy_rows(src, src_stride, nullptr, nullptr, 0, reinterpret_cast<void* const*>(d[0]),
                    int64_t(dst.size()), row_bytes, align_of(bits), L.s);
  }
  void gather_rows(stream s, std::vector<const void*> src, std::size_t row_bytes,
                   void* dst) override {
    if (src.empty() || row_bytes == 0) return;
    std::uintptr_t bits = row_bytes | reinterpret_cast<std::uintptr_t>(dst);
    for (auto* p : src) bits |= reinterpret_cast<std::uintptr_t>(p);
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    auto d = L.stage({cuda::arg_of(src)});
    cuda::copy_rows(nullptr, 0, reinterpret_cast<const void* const*>(d[0]), dst, row_bytes, nullptr,
                    int64_t(src.size()), row_bytes, align_of(bits), L.s);
  }

  // ---- ops
  void embed(stream s, const tensor_view& tok, const tensor_view* pos, std::vector<int32_t> ids,
             std::vector<int32_t> positions, void* x) override {
    const int64_t M = int64_t(ids.size()), V = tok.rows(), Hd = tok.cols();
    if (M == 0) return;
    for (auto id : ids)
      if (id < 0 || id >= V)
        throw error("embed: token id " + std::to_string(id) + " outside the vocabulary [0, " +
                    std::to_string(V) + ")");
    const bool use_pos = pos && pos->present();
    if (use_pos) {
      if (positions.size() != ids.size() || pos->cols() != Hd)
        throw error("embed: positions or position table do not match the tokens");
      for (auto p : positions)
        if (p < 0 || int64_t(p) + 2 >= pos->rows())
          throw error("embed: position " + std::to_string(p) + " beyond the position table");
    }
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    const void* tt = table(L, tok, true);
    const void* pt = use_pos ? table(L, *pos, false) : nullptr;
    auto d =
        L.stage({cuda::arg_of(ids), use_pos ? cuda::arg_of(positions) : cuda::arg{nullptr, 0}});
    cuda::embedding(H(tt), V, Hd, reinterpret_cast<const int32_t*>(d[0]), M, H(pt),
                    use_pos ? pos->rows() : 0, reinterpret_cast<const int32_t*>(d[1]), 2, H(x),
                    L.s);
  }
  void norm(stream s, const void* x, const void* w, const void* b, void* y, int64_t M, int64_t Hd,
            float eps, bool rms) override {
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    if (rms)
      cuda::rmsnorm(H(x), H(w), H(y), M, Hd, eps, L.s);
    else
      cuda::layernorm(H(x), H(w), H(b), H(y), M, Hd, eps, L.s);
  }
  void linear(stream s, const void* x, const void* w, const void* b, void* y, int64_t M, int64_t N,
              int64_t K) override {
    linear_act(s, x, w, b, y, M, N, K, cuda::activation::none);
  }
  void rope(stream s, void* x, int64_t row_stride, std::vector<int32_t> positions, int64_t heads,
            int64_t D, float theta) override {
    if (positions.empty()) return;
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    auto d = L.stage({cuda::arg_of(positions)});
    cuda::rope_strided(H(x), row_stride, reinterpret_cast<const int32_t*>(d[0]),
                       int64_t(positions.size()), heads, D, theta, L.s);
  }
  void linear_relu(stream s, const void* x, const void* w, const void* b, void* y, int64_t M,
                   int64_t N, int64_t K) override {
    linear_act(s, x, w, b, y, M, N, K, cuda::activation::relu);
  }
  void linear_add(stream s, const void* x, const void* w, const void* b, void* y, int64_t M,
                  int64_t N, int64_t K) override {
    linear_act(s, x, w, b, y, M, N, K, cuda::activation::none, true);
  }
  void relu(stream s, void* x, int64_t n) override {
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    cuda::bias_act(H(x), nullptr, H(x), 1, n, cuda::activation::relu, L.s);
  }
  void silu_mul(stream s, const void* g, const void* u, void* out, int64_t n) override {
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    cuda::silu_mul(H(g), H(u), H(out), n, L.s);
  }
  void add(stream s, void* x, const void* y, int64_t n) override {
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    cuda::add(H(x), H(y), n, L.s);
  }
  void attention(stream s, const void* q, void* out, attention_args a) override {
    const std::size_t n_seq = a.ctx_len.size();
    if (n_seq == 0) return;
    if (a.q_start.size() != n_seq + 1 || a.blk_start.size() != n_seq ||
        a.k_blocks.size() != a.v_blocks.size())
      throw error("attention: q_start, ctx_len, blk_start or the block lists disagree in size");
    const int64_t n_rows = a.q_start.back();
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    auto d = L.stage({cuda::arg_of(a.q_start), cuda::arg_of(a.ctx_len), cuda::arg_of(a.blk_start),
                      cuda::arg_of(a.k_blocks), cuda::arg_of(a.v_blocks)});
    cuda::attention_paged(
        H(q), H(out), reinterpret_cast<const int32_t*>(d[0]),
        reinterpret_cast<const int32_t*>(d[1]), reinterpret_cast<const int32_t*>(d[2]),
        reinterpret_cast<const __half* const*>(d[3]), reinterpret_cast<const __half* const*>(d[4]),
        int64_t(n_seq), n_rows, a.n_head, a.n_kv, a.head_dim, a.block_size, a.scale, L.s);
  }
  void attention_fresh(stream s, const void* q, void* out, fresh_attention_args a) override {
    if (a.row0.size() != a.len.size())
      throw error("attention_fresh: row0 and len disagree in size");
    if (a.row0.empty()) return;
    const int64_t QW = a.n_head * a.head_dim;
    int64_t longest = 0;
    for (auto n : a.len) longest = std::max<int64_t>(longest, n);
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    // Fused on chip, every sequence in one launch, where the head dim and alignment allow
    // (every shipped shape); else the cuBLAS path with its scores scratch.
    if (cuda::attention_flash_supported(H(q), QW, H(a.k), H(a.v), a.ld_kv, H(out), QW,
                                        a.head_dim)) {
      auto d = L.stage({cuda::arg_of(a.row0), cuda::arg_of(a.len)});
      cuda::attention_flash(H(q), QW, H(a.k), H(a.v), a.ld_kv, H(out), QW,
                            reinterpret_cast<const int32_t*>(d[0]),
                            reinterpret_cast<const int32_t*>(d[1]), int64_t(a.row0.size()), longest,
                            a.n_head, a.n_kv, a.head_dim, a.scale, L.s);
      return;
    }
    cublasHandle_t handle = L.blas();
    // Scores scratch, counted in the budget: enough for 1024-row tiles, capped at 384 MiB
    // (longer prompts take smaller tiles), never below one query row of every head.
    const std::size_t want = fresh_attention_scores_bytes(a.n_head, longest);
    auto& sc = fresh_scratch_[int(s)];
    if (sc.bytes < want) {
      if (sc.p) device_free(sc.p);  // cudaFree waits for the kernels still reading it
      sc.p = nullptr;
      sc.bytes = 0;
      sc.p = device_alloc(want, "prefill attention scores");
      sc.bytes = want;
    }
    for (std::size_t i = 0; i < a.row0.size(); ++i) {
      const int64_t r0 = a.row0[i];
      cuda::attention_fresh(handle, H(q) + r0 * QW, QW, H(a.k) + r0 * a.ld_kv,
                            H(a.v) + r0 * a.ld_kv, a.ld_kv, H(out) + r0 * QW, QW, a.len[i],
                            a.n_head, a.n_kv, a.head_dim, a.scale, sc.p, sc.bytes, L.s);
    }
  }
  void kv_rebuild(stream s, const model_config& cfg, const device_layer& w, const void* act,
                  int64_t M, std::vector<int32_t> positions, row_ptrs k_dst, row_ptrs v_dst,
                  void* scratch) override {
    if (M <= 0) return;
    const bool rms = cfg.architecture == arch::llama;
    const int64_t Hd = cfg.hidden, KV = cfg.kv_dim(), n_kv = cfg.n_kv_head, D = cfg.head_dim;
    if (k_dst.size() != std::size_t(M) || v_dst.size() != std::size_t(M) ||
        (rms && positions.size() < std::size_t(M)))
      throw error("kv_rebuild: " + std::to_string(M) + " rows but " + num(k_dst.size()) + "/" +
                  num(v_dst.size()) + " destinations and " + num(positions.size()) + " positions");
    positions.resize(std::size_t(M));
    const std::vector<int32_t> slot(std::size_t(M), 0);  // k_dst[i] already points at the row
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    cublasHandle_t handle = L.blas();
    auto d = L.stage({rms ? cuda::arg_of(positions) : cuda::arg{nullptr, 0}, cuda::arg_of(k_dst),
                      cuda::arg_of(v_dst), cuda::arg_of(slot)});
    const auto* dpos = rms ? reinterpret_cast<const int32_t*>(d[0]) : nullptr;
    auto* dk = reinterpret_cast<__half* const*>(d[1]);
    auto* dv = reinterpret_cast<__half* const*>(d[2]);
    const auto* dslot = reinterpret_cast<const int32_t*>(d[3]);
    // The caller's scratch holds M * (H + 2 KV) elements; the launcher wants 256-byte aligned
    // pieces, which fit only when M * H * 2 bytes is a multiple of 256. Otherwise the same
    // three steps run here on the exact layout [xn | kv].
    const std::size_t given = std::size_t(M * (Hd + 2 * KV)) * 2;
    if (reinterpret_cast<std::uintptr_t>(scratch) % 256 == 0 &&
        cuda::kv_rebuild_workspace_bytes(M, Hd, n_kv, D) <= given) {
      cuda::kv_rebuild_args a;
      a.x = H(act);
      a.M = M;
      a.H = Hd;
      a.norm = rms ? cuda::norm_kind::rmsnorm : cuda::norm_kind::layernorm;
      a.norm_w = H(w.attn_norm_w);
      a.norm_b = rms ? nullptr : H(w.attn_norm_b);
      a.eps = cfg.norm_eps;
      a.w_kv = H(w.wkv);
      a.b_kv = H(w.bkv);
      a.n_kv = n_kv;
      a.D = D;
      a.pos = dpos;
      a.rope_theta = cfg.rope_theta;
      a.k_dst = dk;
      a.v_dst = dv;
      a.slot = dslot;
      a.workspace = scratch;
      a.lt = &L.lt();
      cuda::kv_rebuild(a, handle, L.s);
    } else {
      __half* xn = H(scratch);
      __half* kv = xn + M * Hd;
      if (rms)
        cuda::rmsnorm(H(act), H(w.attn_norm_w), xn, M, Hd, cfg.norm_eps, L.s);
      else
        cuda::layernorm(H(act), H(w.attn_norm_w), H(w.attn_norm_b), xn, M, Hd, cfg.norm_eps, L.s);
      cuda::linear_bias_act(&L.lt(), handle, xn, H(w.wkv), H(w.bkv), kv, M, 2 * KV, Hd,
                            cuda::activation::none, false, L.s);
      cuda::kv_bias_rope_scatter(kv, nullptr, M, n_kv, D, dpos, cfg.rope_theta, dk, dv, dslot, L.s);
    }
  }
  void logits(stream s, const model_config& cfg, const void* x, int64_t R, const void* norm_w,
              const void* norm_b, const void* head, float* host_logits,
              int32_t* host_argmax) override {
    if (R <= 0) return;
    const bool rms = cfg.architecture == arch::llama;
    const int64_t Hd = cfg.hidden, V = cfg.vocab;
    if (R >= (int64_t(1) << 31) || V >= (int64_t(1) << 31) || Hd >= (int64_t(1) << 31))
      throw error("logits: shape too large for cuBLAS");
    const std::size_t xn_bytes = std::size_t(R * Hd) * 2, lg_bytes = std::size_t(R * V) * 4;
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    cublasHandle_t handle = L.blas();
    L.ensure_device(L.xn, L.xn_cap, xn_bytes, "logits: normed rows");
    // [R, V] f32 logits, then (greedy) the R row tokens, 256-byte aligned.
    const std::size_t ids_at = (lg_bytes + 255) & ~std::size_t(255), ids = std::size_t(R) * 4;
    const std::size_t need = host_argmax ? ids_at + ids : lg_bytes;
    L.ensure_device(L.lg, L.lg_cap, need, "logits: f32 logits");
    L.ensure_pinned(L.lg_host, L.lg_host_cap, need);
    __half* xn = H(L.xn.get());
    if (rms)
      cuda::rmsnorm(H(x), H(norm_w), xn, R, Hd, cfg.norm_eps, L.s);
    else
      cuda::layernorm(H(x), H(norm_w), H(norm_b), xn, R, Hd, cfg.norm_eps, L.s);
    // Column-major view as in cuda::linear: logits^T [V, R] = head [V, H] (OP_T) x xn^T.
    const float alpha = 1.f, beta = 0.f;
    HS_CUBLAS_TRY(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(V), int(R), int(Hd), &alpha,
                               head, CUDA_R_16F, int(Hd), xn, CUDA_R_16F, int(Hd), &beta,
                               L.lg.get(), CUDA_R_32F, int(V), CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
    // The caller's buffers are pageable: host functions copy into them in stream order.
    const auto to_caller = [&](void* dst, const void* pinned, std::size_t bytes) {
      auto* job = new host_copy_job{dst, pinned, bytes};
      const cudaError_t r = cudaLaunchHostFunc(L.s, run_host_copy, job);
      if (r != cudaSuccess) {
        delete job;
        HS_CUDA_TRY(r);
      }
    };
    if (host_argmax) {
      auto* dev_ids = reinterpret_cast<int32_t*>(static_cast<char*>(L.lg.get()) + ids_at);
      cuda::argmax_rows(reinterpret_cast<const float*>(L.lg.get()), R, V, dev_ids, L.s);
      char* pinned = static_cast<char*>(L.lg_host.get()) + ids_at;
      HS_CUDA_TRY(cudaMemcpyAsync(pinned, dev_ids, ids, cudaMemcpyDeviceToHost, L.s));
      to_caller(host_argmax, pinned, ids);
    }
    if (host_logits) {
      HS_CUDA_TRY(
          cudaMemcpyAsync(L.lg_host.get(), L.lg.get(), lg_bytes, cudaMemcpyDeviceToHost, L.s));
      to_caller(host_logits, L.lg_host.get(), lg_bytes);
    }
  }

  cuda_backend_stats stats() const {
    cuda_backend_stats st;
    st.pinned_copies = pinned_copies_.load();
    st.pinned_copy_bytes = pinned_copy_bytes_.load();
    st.arg_ring_waits = ring_waits_.load();
    return st;
  }

 private:
  struct host_copy {
    dtype type;
    std::size_t nbytes;
    bool direct;  // already pinned (or device) F16: copy from the source itself
    cuda::pinned_ptr f16;
  };
  struct device_table {
    void* dev;          // what the embedding kernel reads: device memory, or mapped host memory
    cudaEvent_t ready;  // null: nothing to wait for (mapped host memory)
    dtype type;
    std::size_t nbytes;
    event_ref shared;   // set: a copy the caller owns (share_table), ready is its event's
    bool host = false;  // dev points into the pinned F16 image (f16_source): not ours to free
  };
  struct callback_lane {
    std::mutex m;
    cudaStream_t s = nullptr;
  };

  // y = act(x w^T + b): one cuBLAS GEMM, then bias and activation in one pass when there is
  // either.
  void linear_act(stream s, const void* x, const void* w, const void* b, void* y, int64_t M,
                  int64_t N, int64_t K, cuda::activation act, bool accumulate = false) {
    cuda::stream_lane& L = lane_of(s);
    std::lock_guard<std::mutex> lk(L.m);
    cuda::linear_bias_act(&L.lt(), L.blas(), H(x), H(w), b ? H(b) : nullptr, H(y), M, N, K, act,
                          accumulate, L.s);
  }
  cuda::stream_lane& lane_of(stream s) {
    const int i = int(s);
    if (i < 0 || i >= k_stream_count) throw error("cuda backend: bad stream");
    return lanes_[i];
  }
  static int align_of(std::uintptr_t bits) {
    return bits % 16 == 0 ? 16 : bits % 4 == 0 ? 4 : 1;
  }

  // An F16 image of host tensor t that the copy engine reads at full speed: t itself when it is
  // pinned (or device) F16, else a pinned copy (converted from BF16/F32) made once per source.
  const void* f16_source(const tensor_view& t) {
    const std::size_t need = std::size_t(t.numel()) * dtype_size(t.type);
    if (t.type != dtype::f16 && t.type != dtype::bf16 && t.type != dtype::f32)
      throw error("upload: tensor '" + t.name + "' is " + dtype_name(t.type) +
                  "; the CUDA backend takes F16, BF16 or F32");
    if (t.nbytes < need)
      throw error("upload: tensor '" + t.name + "' holds " + num(t.nbytes) + " bytes, " +
                  shape_string(t.shape) + " needs " + num(need));
    std::lock_guard<std::mutex> lk(pin_m_);
    auto it = pinned_.find(t.data);
    if (it != pinned_.end() && it->second.type == t.type && it->second.nbytes == t.nbytes)
      return it->second.direct ? t.data : it->second.f16.get();
    host_copy c{t.type, t.nbytes, false, nullptr};
    if (t.type == dtype::f16) {
      cudaPointerAttributes at{};
      const cudaError_t e = cudaPointerGetAttributes(&at, t.data);
      if (e != cudaSuccess) (void)cudaGetLastError();  // old drivers: pageable memory
      c.direct = e == cudaSuccess && at.type != cudaMemoryTypeUnregistered;
    }
    if (!c.direct) {
      const std::size_t n = std::size_t(t.numel());
      // Mapped: kernels may read it in place (a token table, see table()).
      c.f16 = cuda::pinned_alloc(n * 2, cudaHostAllocPortable | cudaHostAllocMapped);
      auto* out = reinterpret_cast<uint16_t*>(c.f16.get());
      if (t.type == dtype::f16) {
        std::memcpy(out, t.data, n * 2);
      } else if (t.type == dtype::bf16) {
        const auto* in = static_cast<const uint16_t*>(t.data);
        for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_f16(bf16_to_f32(in[i]));
      } else {
        const auto* in = static_cast<const float*>(t.data);
        for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_f16(in[i]);
      }
      ++pinned_copies_;
      pinned_copy_bytes_ += n * 2;
    }
    const void* src = c.direct ? t.data : c.f16.get();
    // A stale entry (same address, other tensor) may still be read by enqueued copies: its
    // buffer is kept until the backend goes away.
    if (it != pinned_.end() && it->second.f16) retired_.push_back(std::move(it->second.f16));
    pinned_[t.data] = std::move(c);
    return src;
  }

  void share_table(const tensor_view& t, const void* device_copy, const event_ref& ready) override {
    std::lock_guard<std::mutex> lk(tab_m_);
    auto it = tables_.find(t.data);
    if (!device_copy) {  // the sharing ends: forget the caller's copy (never our own)
      if (it != tables_.end() && it->second.shared) tables_.erase(it);
      return;
    }
    if (it != tables_.end() && it->second.host) {  // the device copy beats reads over the link
      tables_.erase(it);
      it = tables_.end();
    }
    if (it != tables_.end() || !ready) return;  // a copy of our own already serves embed()
    const cudaEvent_t ev = as_cuda(ready).get();
    tables_.emplace(t.data,
                    device_table{const_cast<void*>(device_copy), ev, t.type, t.nbytes, ready});
  }
  // What the embedding kernel reads for table t (lane lock held): a copy shared by the caller
  // (a tied LM head), else, where `host_ok`, the pinned F16 image in host memory, mapped (a pass
  // reads only its tokens' rows over the link: a decode step ~1 MB, a 16k-token prefill ~0.1 GB,
  // while a device copy of Llama-3-8B's token table holds 1 GB of the budget all the time), else
  // a device copy made on first use on L's stream.
  const void* table(cuda::stream_lane& L, const tensor_view& t, bool host_ok) {
    std::lock_guard<std::mutex> lk(tab_m_);
    auto it = tables_.find(t.data);
    if (it == tables_.end() || it->second.type != t.type || it->second.nbytes != t.nbytes) {
      if (it != tables_.end())
        throw error("embed: table '" + t.name + "' changed under a cached device copy");
      if (host_ok) {
        void* mapped = nullptr;
        const void* src = f16_source(t);
        if (cudaHostGetDevicePointer(&mapped, const_cast<void*>(src), 0) == cudaSuccess)
          it = tables_
                   .emplace(t.data, device_table{mapped, nullptr, t.type, t.nbytes, nullptr, true})
                   .first;
        else
          (void)cudaGetLastError();  // registered without mapping: a device copy then
      }
    }
    if (it == tables_.end()) {
      void* dev = device_alloc(std::size_t(t.numel()) * 2, "embedding table " + t.name);
      cudaEvent_t ev = nullptr;
      try {
        const void* src = f16_source(t);
        HS_CUDA_TRY(cudaMemcpyAsync(dev, src, std::size_t(t.numel()) * 2, cudaMemcpyDefault, L.s));
        HS_CUDA_TRY(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
        HS_CUDA_TRY(cudaEventRecord(ev, L.s));
      } catch (...) {
        if (ev) (void)cudaEventDestroy(ev);
        device_free(dev);
        throw;
      }
      it = tables_.emplace(t.data, device_table{dev, ev, t.type, t.nbytes, nullptr}).first;
    }
    if (it->second.ready)  // made on another stream?
      HS_CUDA_TRY(cudaStreamWaitEvent(L.s, it->second.ready, 0));
    return it->second.dev;
  }

  void release() noexcept {
    for (auto& sc : fresh_scratch_) {
      if (sc.p) device_free(sc.p);
      sc = {};
    }
    for (auto& [key, t] : tables_) {
      if (t.shared || t.host) continue;  // the caller's, or the pinned image's
      (void)cudaEventDestroy(t.ready);
      device_free(t.dev);
    }
    tables_.clear();
    for (auto& l : lanes_) {
      l.release();
    }
    for (auto& c : cb_) {
      if (c.s) (void)cudaStreamDestroy(c.s);
      c.s = nullptr;
    }
    pinned_.clear();
    retired_.clear();
    ledger_.release_all([](void* p) { (void)cudaFree(p); });
    (void)cudaGetLastError();
  }

  int dev_ = 0;
  std::string name_;
  budget_ledger ledger_;
  cuda::stream_lane lanes_[k_stream_count];
  callback_lane cb_[k_stream_count];
  std::mutex pin_m_, tab_m_;
  std::unordered_map<const void*, host_copy> pinned_;
  std::vector<cuda::pinned_ptr> retired_;
  std::unordered_map<const void*, device_table> tables_;
  struct scratch {
    void* p = nullptr;
    std::size_t bytes = 0;
  };
  scratch fresh_scratch_[k_stream_count];    // attention_fresh scores, per stream (lane lock)
  std::atomic<bool> batch_copies_ok_{true};  // cudaMemcpyBatchAsync accepted by the driver
  std::atomic<bool> timing_{false};          // record() makes timing events (diagnostics)
  std::atomic<std::size_t> pinned_copies_{0}, pinned_copy_bytes_{0}, ring_waits_{0};
};

}  // namespace

std::unique_ptr<backend> make_cuda_backend_if_built(std::size_t device_budget_bytes,
                                                    std::string& why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    why = std::string("no usable CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(e) + ")";
    return nullptr;
  }
  if (n == 0) {
    why = "no CUDA device";
    return nullptr;
  }
  try {
    return std::make_unique<cuda_backend>(device_budget_bytes);
  } catch (const std::exception& ex) {
    why = std::string("CUDA backend failed to start: ") + ex.what();
    return nullptr;
  }
}

std::unique_ptr<backend> make_cuda_backend(std::size_t device_budget_bytes) {
  std::string why;
  auto be = make_cuda_backend_if_built(device_budget_bytes, why);
  if (!be) throw error(why);
  return be;
}

cuda_backend_stats cuda_stats(const backend& be) {
  const auto* c = dynamic_cast<const cuda_backend*>(&be);
  return c ? c->stats() : cuda_backend_stats{};
}

}  // namespace hs
