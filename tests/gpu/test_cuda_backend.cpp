// [gpu] The CUDA backend against the CPU backend: the same backend calls on tiny Llama- and
// OPT-shaped workloads (embed, norm, linear, rope, kv_rebuild into scattered cache rows,
// scatter/gather to device and mapped host memory, paged attention, logits), compared within
// fp16 tolerance; plus events across streams, on_done, pinned-copy caching and budget errors.
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <numeric>
#include <random>

#include "gpu_test_util.hpp"
#include "hybridserve/backend.hpp"
#include "hybridserve/cpu_backend.hpp"
#include "hybridserve/cuda_backend.hpp"
#include "hybridserve/error.hpp"
#include "hybridserve/half.hpp"

namespace {

using hs::stream;
constexpr int GPU = 0, CPU = 1;

// Both backends side by side: be[0] the CUDA one (fp16), be[1] the CPU one (fp32).
struct duo {
  std::unique_ptr<hs::backend> be[2];
  duo() {
    be[GPU] = hs::make_cuda_backend(std::size_t(1) << 30);
    be[CPU] = hs::make_cpu_backend(std::size_t(1) << 30);
  }
  ~duo() {
    for (auto& b : be) b->synchronize();
  }
  std::size_t eb(int k) const { return std::size_t(be[k]->elem_bytes()); }
  template <class F>
  void both(F&& f) {
    for (int k = 0; k < 2; ++k) f(*be[k], k);
  }
};

// n elements in each backend's device memory (freed with the backends).
struct buf {
  void* p[2] = {nullptr, nullptr};
  int64_t n = 0;
  char* at(const duo& d, int k, int64_t elem) const {
    return static_cast<char*>(p[k]) + std::size_t(elem) * d.eb(k);
  }
};
buf alloc(duo& d, int64_t n, const char* what) {
  buf b;
  b.n = n;
  for (int k = 0; k < 2; ++k) b.p[k] = d.be[k]->device_alloc(std::size_t(n) * d.eb(k), what);
  return b;
}

// Elements of a backend buffer as floats, once every stream is idle.
std::vector<float> read(hs::backend& be, const void* p, int64_t n) {
  be.synchronize();
  const std::size_t eb = std::size_t(be.elem_bytes());
  std::vector<char> raw(std::size_t(n) * eb);
  be.copy(stream::d2h, raw.data(), p, raw.size());
  be.synchronize();
  std::vector<float> out(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (eb == 2) {
      uint16_t h;
      std::memcpy(&h, raw.data() + 2 * i, 2);
      out[i] = hs::f16_to_f32(h);
    } else {
      std::memcpy(&out[i], raw.data() + 4 * i, 4);
    }
  }
  return out;
}
void check(duo& d, const buf& b, double atol, double rtol, const std::string& what) {
  gt::check_close(read(*d.be[GPU], b.p[GPU], b.n), read(*d.be[CPU], b.p[CPU], b.n), atol, rtol,
                  what);
}

// A host tensor owning its memory: pinned (host_alloc of `pinned_from`) or pageable.
struct host_tensor {
  std::shared_ptr<void> mem;
  hs::tensor_view view;
};
host_tensor make_tensor(const std::string& name, hs::dtype t, std::vector<int64_t> shape,
                        std::vector<float> values, hs::backend* pinned_from = nullptr) {
  host_tensor h;
  const std::size_t n = values.size(), bytes = n * hs::dtype_size(t);
  h.mem = pinned_from ? pinned_from->host_alloc(bytes)
                      : std::shared_ptr<void>(new char[bytes], std::default_delete<char[]>());
  for (std::size_t i = 0; i < n; ++i) {
    char* dst = static_cast<char*>(h.mem.get()) + i * hs::dtype_size(t);
    if (t == hs::dtype::f32) {
      std::memcpy(dst, &values[i], 4);
    } else {
      const uint16_t b =
          t == hs::dtype::f16 ? hs::f32_to_f16(values[i]) : hs::f32_to_bf16(values[i]);
      std::memcpy(dst, &b, 2);
    }
  }
  h.view.name = name;
  h.view.type = t;
  h.view.shape = std::move(shape);
  h.view.data = h.mem.get();
  h.view.nbytes = bytes;
  return h;
}
std::vector<float> round_bf16(std::vector<float> v) {
  for (auto& x : v) x = hs::bf16_to_f32(hs::f32_to_bf16(x));
  return v;
}

hs::model_config tiny_config(hs::arch a) {
  hs::model_config c;
  c.architecture = a;
  c.name = a == hs::arch::llama ? "tiny-llama" : "tiny-opt";
  c.n_layer = 1;
  c.head_dim = 32;
  if (a == hs::arch::llama) {
    c.hidden = 128, c.n_head = 4, c.n_kv_head = 2, c.ffn = 256, c.vocab = 97;
  } else {  // H = 96: M * H * 2 bytes is not a multiple of 256, the other kv_rebuild path
    c.hidden = 96, c.n_head = 3, c.n_kv_head = 3, c.ffn = 192, c.vocab = 61;
  }
  c.max_pos = 64;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.f;
  return c;
}

// One layer's attention half over two sequences in paged blocks of 4 tokens: A has 5 cached
// tokens (rebuilt from activation checkpoints) and 3 new ones, B has 2 new ones.
void run_workload(hs::arch arch) {
  const auto c = tiny_config(arch);
  const bool opt = arch == hs::arch::opt;
  const int64_t H = c.hidden, Q = c.q_dim(), KV = c.kv_dim(), V = c.vocab, D = c.head_dim;
  const int64_t bs = 4, N = 5, M = 5;
  std::mt19937 rng(opt ? 7 : 8);
  duo d;
  hs::backend& gpu = *d.be[GPU];
  const float wa = 1.f / std::sqrt(float(H));

  // Host weights in every form upload_tensor takes.
  auto tok = make_tensor("tok", hs::dtype::f16, {V, H}, gt::rand16(V * H, rng));  // pageable
  auto pos = make_tensor("pos", hs::dtype::f32, {c.max_pos + 2, H},
                         gt::rand16((c.max_pos + 2) * H, rng, -0.5f, 0.5f));
  auto wq = make_tensor("wq", hs::dtype::f16, {Q, H}, gt::rand16(Q * H, rng, -wa, wa), &gpu);
  auto wkv = make_tensor("wkv", hs::dtype::bf16, {2 * KV, H},
                         round_bf16(gt::rand16(2 * KV * H, rng, -wa, wa)));
  auto wo = make_tensor("wo", hs::dtype::f16, {H, Q}, gt::rand16(H * Q, rng, -wa, wa), &gpu);
  auto head = make_tensor("head", hs::dtype::f32, {V, H}, gt::rand16(V * H, rng, -wa, wa));
  auto nw = make_tensor("norm_w", hs::dtype::f32, {H}, gt::rand16(H, rng, 0.5f, 1.5f));
  auto nb = make_tensor("norm_b", hs::dtype::f16, {H}, gt::rand16(H, rng, -0.2f, 0.2f));
  auto fw = make_tensor("final_w", hs::dtype::f16, {H}, gt::rand16(H, rng, 0.5f, 1.5f));
  auto fb = make_tensor("final_b", hs::dtype::f32, {H}, gt::rand16(H, rng, -0.2f, 0.2f));
  auto bq = make_tensor("bq", hs::dtype::f16, {Q}, gt::rand16(Q, rng, -0.2f, 0.2f));
  auto bkv = make_tensor("bkv", hs::dtype::f32, {2 * KV}, gt::rand16(2 * KV, rng, -0.2f, 0.2f));
  auto bo = make_tensor("bo", hs::dtype::f16, {H}, gt::rand16(H, rng, -0.2f, 0.2f));
  auto act = make_tensor("act", hs::dtype::f16, {M, H}, gt::rand16(M * H, rng, -2.f, 2.f), &gpu);

  buf b_wq = alloc(d, Q * H, "wq"), b_wkv = alloc(d, 2 * KV * H, "wkv"),
      b_wo = alloc(d, H * Q, "wo");
  buf b_head = alloc(d, V * H, "head"), b_nw = alloc(d, H, "nw"), b_nb = alloc(d, H, "nb");
  buf b_fw = alloc(d, H, "fw"), b_fb = alloc(d, H, "fb"), b_bq = alloc(d, Q, "bq");
  buf b_bkv = alloc(d, 2 * KV, "bkv"), b_bo = alloc(d, H, "bo"), b_act = alloc(d, M * H, "act");
  const std::vector<std::pair<buf*, const hs::tensor_view*>> uploads{
      {&b_wq, &wq.view}, {&b_wkv, &wkv.view}, {&b_wo, &wo.view}, {&b_head, &head.view},
      {&b_nw, &nw.view}, {&b_nb, &nb.view},   {&b_fw, &fw.view}, {&b_fb, &fb.view},
      {&b_bq, &bq.view}, {&b_bkv, &bkv.view}, {&b_bo, &bo.view}, {&b_act, &act.view}};
  const auto st0 = hs::cuda_stats(gpu);
  std::array<hs::event_ref, 2> up;
  d.both([&](hs::backend& be, int k) {
    for (auto& [b, t] : uploads) be.upload_tensor(stream::h2d, b->p[k], *t);
    up[std::size_t(k)] = be.record(stream::h2d);
    be.wait(stream::compute, up[std::size_t(k)]);
    be.wait(stream::rebuild, up[std::size_t(k)]);
  });
  // Pageable and converted tensors get one pinned copy each; pinned F16 ones (wq, wo, act) none.
  const auto st1 = hs::cuda_stats(gpu);
  CHECK(st1.pinned_copies - st0.pinned_copies == uploads.size() - 3);
  gpu.upload_tensor(stream::h2d, b_bq.p[GPU], bq.view);  // again: the cached copy is reused
  gpu.upload_tensor(stream::h2d, b_wq.p[GPU], wq.view);
  CHECK(hs::cuda_stats(gpu).pinned_copies == st1.pinned_copies);
  check(d, b_wkv, 1e-6, 0, "BF16 upload");
  check(d, b_head, 0, 0, "F32 upload");
  check(d, b_wq, 0, 0, "pinned F16 upload");

  // Token ids and positions in batch order: A's tokens 5, 6, 7, then B's tokens 0, 1.
  std::vector<int32_t> ids(N), positions{5, 6, 7, 0, 1};
  for (auto& id : ids) id = int32_t(rng() % uint32_t(V));
  buf x = alloc(d, N * H, "x"), xn = alloc(d, N * H, "xn"), q = alloc(d, N * Q, "q");
  buf kvn = alloc(d, N * 2 * KV, "kvn"), attn = alloc(d, N * Q, "attn"),
      tmp = alloc(d, N * H, "tmp");
  const std::size_t used0 = gpu.device_used();
  d.both([&](hs::backend& be, int k) {
    be.embed(stream::compute, tok.view, opt ? &pos.view : nullptr, ids, positions, x.p[k]);
  });
  check(d, x, 2e-3, 2e-3, "embed");
  // OPT's position table is copied to the device (on the budget); the token table is read from
  // its mapped pinned image in host memory.
  const std::size_t tables = std::size_t(opt ? (c.max_pos + 2) * H : 0) * 2;
  CHECK(gpu.device_used() - used0 == tables);

  d.both([&](hs::backend& be, int k) {
    be.norm(stream::compute, x.p[k], b_nw.p[k], opt ? b_nb.p[k] : nullptr, xn.p[k], N, H,
            c.norm_eps, !opt);
    be.linear(stream::compute, xn.p[k], b_wq.p[k], opt ? b_bq.p[k] : nullptr, q.p[k], N, Q, H);
    be.linear(stream::compute, xn.p[k], b_wkv.p[k], opt ? b_bkv.p[k] : nullptr, kvn.p[k], N, 2 * KV,
              H);
  });
  check(d, xn, 1e-2, 1e-2, "norm");
  check(d, q, 1e-2, 1e-2, "linear q");
  if (!opt) {
    d.both([&](hs::backend& be, int k) {
      be.rope(stream::compute, q.p[k], Q, positions, c.n_head, D, c.rope_theta);
      be.rope(stream::compute, kvn.p[k], 2 * KV, positions, c.n_kv_head, D, c.rope_theta);
    });
    check(d, q, 1e-2, 1e-2, "rope q");
  }
  check(d, kvn, 1e-2, 1e-2, "linear + rope kv");

  // Cache: a pool of 4 blocks per K and V; A uses blocks 2 then 0, B block 3 (1 stays unused).
  const int64_t blk = bs * KV;
  buf kpool = alloc(d, 4 * blk, "k pool"), vpool = alloc(d, 4 * blk, "v pool");
  const std::vector<int64_t> blocks{2, 0, 3};
  auto slot = [&](int64_t b, int64_t t) { return blocks[std::size_t(b)] * blk + t * KV; };
  const std::vector<char> zeros(std::size_t(4 * blk) * 4, 0);
  buf scratch = alloc(d, M * (H + 2 * KV), "rebuild scratch");
  d.both([&](hs::backend& be, int k) {
    be.copy(stream::compute, kpool.p[k], zeros.data(), std::size_t(4 * blk) * d.eb(k));
    be.copy(stream::compute, vpool.p[k], zeros.data(), std::size_t(4 * blk) * d.eb(k));
    be.wait(stream::rebuild, be.record(stream::compute));
    // Rebuild A's cached tokens 0..4 (block 0 slots 0-3, block 1 slot 0) from checkpoints.
    hs::device_layer w;
    w.wkv = b_wkv.p[k];
    w.bkv = opt ? b_bkv.p[k] : nullptr;
    w.attn_norm_w = b_nw.p[k];
    w.attn_norm_b = opt ? b_nb.p[k] : nullptr;
    hs::row_ptrs kd, vd;
    std::vector<int32_t> ppos;
    for (int64_t t = 0; t < M; ++t) {
      kd.push_back(kpool.at(d, k, slot(t / bs, t % bs)));
      vd.push_back(vpool.at(d, k, slot(t / bs, t % bs)));
      ppos.push_back(int32_t(t));
    }
    be.kv_rebuild(stream::rebuild, c, w, b_act.p[k], M, ppos, kd, vd, scratch.p[k]);
    be.wait(stream::compute, be.record(stream::rebuild));
    // The new tokens' K/V rows into their slots (A: block 1 slots 1-3, B: block 2 slots 0-1).
    hs::row_ptrs nk, nv;
    for (int64_t i = 0; i < N; ++i) {
      const int64_t b = i < 3 ? 1 : 2, t = i < 3 ? i + 1 : i - 3;
      nk.push_back(kpool.at(d, k, slot(b, t)));
      nv.push_back(vpool.at(d, k, slot(b, t)));
    }
    const std::size_t row = std::size_t(KV) * d.eb(k);
    be.scatter_rows(stream::compute, kvn.p[k], 2 * row, row, nk);
    be.scatter_rows(stream::compute, kvn.at(d, k, KV), 2 * row, row, nv);
  });
  check(d, kpool, 2e-2, 2e-2, "K cache (kv_rebuild + scatter_rows)");
  check(d, vpool, 2e-2, 2e-2, "V cache (kv_rebuild + scatter_rows)");

  d.both([&](hs::backend& be, int k) {
    hs::attention_args a;
    a.q_start = {0, 3, 5};
    a.ctx_len = {8, 2};
    a.blk_start = {0, 2};
    for (int64_t b = 0; b < 3; ++b) {
      a.k_blocks.push_back(kpool.at(d, k, slot(b, 0)));
      a.v_blocks.push_back(vpool.at(d, k, slot(b, 0)));
    }
    a.n_head = c.n_head;
    a.n_kv = c.n_kv_head;
    a.head_dim = D;
    a.block_size = bs;
    a.scale = 1.f / std::sqrt(float(D));
    be.attention(stream::compute, q.p[k], attn.p[k], std::move(a));
  });
  check(d, attn, 2e-2, 2e-2, "attention");

  d.both([&](hs::backend& be, int k) {
    be.linear(stream::compute, attn.p[k], b_wo.p[k], b_bo.p[k], tmp.p[k], N, H, Q);
    be.add(stream::compute, x.p[k], tmp.p[k], N * H);
  });
  check(d, x, 2e-2, 2e-2, "linear + bias + residual add");
  // The same in one call (cuBLASLt epilogue on CUDA), with and without the bias.
  d.both([&](hs::backend& be, int k) {
    be.linear_add(stream::compute, attn.p[k], b_wo.p[k], b_bo.p[k], x.p[k], N, H, Q);
  });
  check(d, x, 2e-2, 2e-2, "linear_add with bias");
  d.both([&](hs::backend& be, int k) {
    be.linear_add(stream::compute, attn.p[k], b_wo.p[k], nullptr, x.p[k], N, H, Q);
  });
  check(d, x, 2e-2, 2e-2, "linear_add without bias");
  // The fused ReLU (CUDA) against linear then relu (the CPU backend's default).
  d.both([&](hs::backend& be, int k) {
    be.linear_relu(stream::compute, attn.p[k], b_wo.p[k], b_bo.p[k], tmp.p[k], N, H, Q);
  });
  check(d, tmp, 2e-2, 2e-2, "linear + bias + relu");
  d.both([&](hs::backend& be, int k) {
    be.silu_mul(stream::compute, q.p[k], attn.p[k], attn.p[k], N * Q);
    be.relu(stream::compute, tmp.p[k], N * H);
  });
  check(d, attn, 2e-2, 2e-2, "silu_mul");
  check(d, tmp, 2e-2, 2e-2, "relu");

  // The last row of each sequence -> logits in (pageable) host vectors.
  buf rows = alloc(d, 2 * H, "logit rows");
  std::array<std::vector<float>, 2> lg;
  std::array<hs::event_ref, 2> fin;
  d.both([&](hs::backend& be, int k) {
    lg[std::size_t(k)].assign(std::size_t(2 * V), -1.f);
    be.gather_rows(stream::compute, {x.at(d, k, 2 * H), x.at(d, k, 4 * H)},
                   std::size_t(H) * d.eb(k), rows.p[k]);
    be.logits(stream::compute, c, rows.p[k], 2, b_fw.p[k], opt ? b_fb.p[k] : nullptr, b_head.p[k],
              lg[std::size_t(k)].data(), nullptr);
    fin[std::size_t(k)] = be.record(stream::compute);
  });
  check(d, rows, 2e-2, 2e-2, "gather_rows");
  // The host copy is part of the stream: the event alone says the values are there.
  for (auto& e : fin) {
    const auto t0 = std::chrono::steady_clock::now();
    while (!e->done() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
    }
    REQUIRE(e->done());
  }
  gt::check_close(lg[GPU], lg[CPU], 2e-2, 2e-2, "logits");

  // Greedy rows: only the tokens come back, each the first maximum of that backend's logits.
  std::array<std::vector<int32_t>, 2> greedy;
  d.both([&](hs::backend& be, int k) {
    greedy[std::size_t(k)].assign(2, -1);
    be.logits(stream::compute, c, rows.p[k], 2, b_fw.p[k], opt ? b_fb.p[k] : nullptr, b_head.p[k],
              nullptr, greedy[std::size_t(k)].data());
    be.synchronize();
    for (int r = 0; r < 2; ++r) {
      const auto* row = lg[std::size_t(k)].data() + std::size_t(r) * std::size_t(V);
      CHECK(greedy[std::size_t(k)][std::size_t(r)] ==
            int32_t(std::max_element(row, row + V) - row));
    }
  });

  // Rows to mapped pinned host memory (as host-tier cache blocks are) and back.
  buf back = alloc(d, N * KV, "gathered rows");
  std::array<std::shared_ptr<void>, 2> host;
  d.both([&](hs::backend& be, int k) {
    const std::size_t row = std::size_t(KV) * d.eb(k);
    host[std::size_t(k)] = be.host_alloc(std::size_t(N) * row);
    char* h = static_cast<char*>(host[std::size_t(k)].get());
    hs::row_ptrs dst;
    std::vector<const void*> src;
    for (int64_t i = 0; i < N; ++i) dst.push_back(h + std::size_t(N - 1 - i) * row);  // reversed
    for (int64_t i = 0; i < N; ++i) src.push_back(h + std::size_t(i) * row);
    be.wait(stream::d2h, be.record(stream::compute));
    be.scatter_rows(stream::d2h, kvn.p[k], 2 * row, row, dst);
    be.wait(stream::h2d, be.record(stream::d2h));
    be.gather_rows(stream::h2d, src, row, back.p[k]);
  });
  check(d, back, 1e-2, 1e-2, "scatter to mapped host + gather back");
  for (int k = 0; k < 2; ++k) d.be[k]->synchronize();
  const auto* h16 = static_cast<const uint16_t*>(host[GPU].get());
  const auto* h32 = static_cast<const float*>(host[CPU].get());
  std::vector<float> g(std::size_t(N * KV)), r(g.size());
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = hs::f16_to_f32(h16[i]), r[i] = h32[i];
  gt::check_close(g, r, 1e-2, 1e-2, "rows in mapped host memory");
}

}  // namespace

TEST_CASE("cuda backend: a Llama-shaped layer matches the CPU backend", "[gpu]") {
  run_workload(hs::arch::llama);
}

TEST_CASE("cuda backend: an OPT-shaped layer matches the CPU backend", "[gpu]") {
  run_workload(hs::arch::opt);
}

TEST_CASE("cuda backend: a token table is read from host memory, positions from the device",
          "[gpu]") {
  // An untied token table costs no device bytes (the kernel reads its pinned image through the
  // mapping); OPT's position table is copied to the device once. Rows must be exact copies (fp16
  // table, fp16 output; positions zero so the sum is the token row).
  const int64_t V = 50000, Hd = 264, P = 40;  // 26 MB of table: far above any staging
  std::vector<uint16_t> tok(std::size_t(V * Hd)), posv(std::size_t(P * Hd), 0);
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  for (auto& v : tok) v = hs::f32_to_f16(u(rng));
  const hs::tensor_view tv{"tok", hs::dtype::f16, {V, Hd}, tok.data(), tok.size() * 2};
  const hs::tensor_view pv{"pos", hs::dtype::f16, {P, Hd}, posv.data(), posv.size() * 2};
  auto be = hs::make_cuda_backend(std::size_t(64) << 20);
  const std::vector<int32_t> ids{0, 49999, 17, 17, 25000, 3000, 1};
  std::vector<int32_t> positions(ids.size());
  std::iota(positions.begin(), positions.end(), 0);
  const std::size_t row = std::size_t(Hd) * 2;
  void* x = be->device_alloc(ids.size() * row, "rows");
  const std::size_t before = be->device_used();
  be->embed(stream::compute, tv, &pv, ids, positions, x);
  be->synchronize();
  // The position table (P x Hd) and the kernel's argument staging at most; never V x Hd.
  CHECK(be->device_used() - before < std::size_t(V * Hd) * 2 / 4);
  std::vector<uint16_t> got(ids.size() * std::size_t(Hd));
  be->copy(stream::compute, got.data(), x, got.size() * 2);
  be->synchronize();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    INFO("row " << i << " id " << ids[i]);
    CHECK(std::memcmp(&got[i * std::size_t(Hd)], &tok[std::size_t(ids[i]) * std::size_t(Hd)],
                      row) == 0);
  }
  be->device_free(x);
}

TEST_CASE("cuda backend: identity, factory and the byte budget", "[gpu]") {
  std::string why;
  auto be = hs::make_cuda_backend_if_built(std::size_t(1) << 20, why);
  REQUIRE(be);
  CHECK(be->elem_bytes() == 2);
  CHECK(be->name().rfind("cuda:", 0) == 0);
  CHECK(be->device_budget() == std::size_t(1) << 20);
  void* p = be->device_alloc(1000, "small buffer");
  CHECK(be->device_used() == 1000);
  try {
    be->device_alloc(std::size_t(2) << 20, "huge activations");
    FAIL("an over-budget device_alloc succeeded");
  } catch (const hs::error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("huge activations") != std::string::npos);
    CHECK(what.find("2097152") != std::string::npos);  // needed
    CHECK(what.find("1047576") != std::string::npos);  // left
    CHECK(what.find("1048576") != std::string::npos);  // the budget
  }
  CHECK(be->device_used() == 1000);
  be->device_free(p);
  CHECK(be->device_used() == 0);
  CHECK(be->device_peak() == 1000);
  be->reset_peak();
  CHECK(be->device_peak() == 0);

  // Within the budget but beyond the device: cudaMalloc fails, an hs::error names the buffer.
  auto big = hs::make_cuda_backend(std::size_t(1) << 60);
  try {
    big->device_alloc(std::size_t(1) << 50, "absurd cache");
    FAIL("a 2^50-byte cudaMalloc succeeded");
  } catch (const hs::error& e) {
    CHECK(std::string(e.what()).find("absurd cache") != std::string::npos);
  }
  CHECK(big->device_used() == 0);
  void* q = big->device_alloc(4096, "after the failure");  // the error did not stick
  std::vector<char> h(4096, 3), r(4096, 0);
  big->copy(hs::stream::compute, q, h.data(), h.size());
  big->copy(hs::stream::compute, r.data(), q, r.size());
  big->synchronize();
  CHECK(r == h);
  big->device_free(q);
}

TEST_CASE("cuda backend: events order h2d before compute; on_done fires", "[gpu]") {
  auto be = hs::make_cuda_backend(std::size_t(1) << 30);
  const std::size_t bytes = std::size_t(64) << 20;
  auto src = be->host_alloc(bytes), out = be->host_alloc(bytes), zero = be->host_alloc(bytes);
  std::memset(zero.get(), 0, bytes);
  void* a = be->device_alloc(bytes, "a");
  void* b = be->device_alloc(bytes, "b");
  for (int round = 0; round < 3; ++round) {
    const unsigned char pattern = static_cast<unsigned char>(0x5A + round);
    std::memset(src.get(), pattern, bytes);
    std::memset(out.get(), 0, bytes);
    be->copy(stream::compute, a, zero.get(), bytes);
    be->copy(stream::compute, b, zero.get(), bytes);
    be->synchronize();
    be->copy(stream::h2d, a, src.get(), bytes);  // 64 MiB: long enough to lose a race
    auto e1 = be->record(stream::h2d);
    be->wait(stream::compute, e1);
    be->copy(stream::compute, b, a, bytes);
    be->wait(stream::d2h, be->record(stream::compute));
    be->copy(stream::d2h, out.get(), b, bytes);
    auto e3 = be->record(stream::d2h);
    std::promise<void> fired;
    auto f = fired.get_future();
    be->on_done(e3, [&fired] { fired.set_value(); });
    REQUIRE(f.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    CHECK(e3->done());
    CHECK(e1->done());
    be->synchronize();  // the callback thread is out of set_value before `fired` goes
    const auto* o = static_cast<const unsigned char*>(out.get());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < bytes; i += 4093) bad += o[i] != pattern;
    CHECK(bad == 0);
  }
  // A null or finished event: fn runs right away, on the caller's thread.
  bool ran = false;
  be->on_done(nullptr, [&] { ran = true; });
  CHECK(ran);
  auto e = be->record(stream::compute);
  be->synchronize();
  ran = false;
  be->on_done(e, [&] { ran = true; });
  CHECK(ran);
  // Many callbacks on events of several streams all fire.
  std::atomic<int> count{0};
  std::promise<void> all;
  constexpr int n_cb = 64;
  for (int i = 0; i < n_cb; ++i) {
    const stream s = stream(i % hs::k_stream_count);
    be->copy(s, b, a, std::size_t(1) << 20);
    be->on_done(be->record(s), [&] {
      if (++count == n_cb) all.set_value();
    });
  }
  REQUIRE(all.get_future().wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  be->synchronize();
  be->device_free(a);
  be->device_free(b);
}

TEST_CASE("cuda backend: scatter/gather rows at 16-, 4- and 1-byte alignment", "[gpu]") {
  auto be = hs::make_cuda_backend(std::size_t(1) << 26);
  const std::size_t pool_bytes = 1 << 16;
  char* pool = static_cast<char*>(be->device_alloc(pool_bytes, "pool"));
  char* flat = static_cast<char*>(be->device_alloc(pool_bytes, "flat"));
  auto mapped = be->host_alloc(pool_bytes);
  std::vector<unsigned char> init(pool_bytes);
  for (std::size_t i = 0; i < pool_bytes; ++i) init[i] = static_cast<unsigned char>(i * 7 + 1);
  for (const std::size_t row : {std::size_t(64), std::size_t(12), std::size_t(7)}) {
    for (const bool to_host : {false, true}) {
      char* base = to_host ? static_cast<char*>(mapped.get()) : pool;
      std::memset(mapped.get(), 0, pool_bytes);
      be->copy(stream::compute, pool, std::vector<char>(pool_bytes, 0).data(), pool_bytes);
      be->copy(stream::compute, flat, init.data(), pool_bytes);
      const std::size_t rows = 37, stride = row + (row % 16 == 0 ? 16 : 4);
      hs::row_ptrs dst;
      std::vector<const void*> src;
      for (std::size_t i = 0; i < rows; ++i) {
        dst.push_back(base + ((i * 13) % rows) * stride + (row == 7 ? 1 : 0));
        src.push_back(dst.back());
      }
      be->scatter_rows(stream::compute, flat, stride, row, dst);
      be->gather_rows(stream::compute, src, row, flat + pool_bytes / 2);
      be->synchronize();
      std::vector<unsigned char> got(pool_bytes);
      be->copy(stream::d2h, got.data(), flat, pool_bytes);
      be->synchronize();
      std::size_t bad = 0;
      for (std::size_t i = 0; i < rows; ++i)
        bad += std::memcmp(&got[pool_bytes / 2 + i * row], &init[i * stride], row) != 0;
      INFO("row bytes " << row << (to_host ? " via mapped host memory" : " via device memory"));
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("cuda backend: scatter_rows skips rows whose destination is null", "[gpu]") {
  auto be = hs::make_cuda_backend(std::size_t(1) << 26);
  const std::size_t rows = 50, row = 80, bytes = rows * row;
  char* flat = static_cast<char*>(be->device_alloc(bytes, "flat"));
  char* pool = static_cast<char*>(be->device_alloc(bytes, "pool"));
  std::vector<unsigned char> init(bytes);
  for (std::size_t i = 0; i < bytes; ++i) init[i] = static_cast<unsigned char>(i * 5 + 3);
  be->copy(stream::compute, flat, init.data(), bytes);
  be->copy(stream::compute, pool, std::vector<char>(bytes, 0).data(), bytes);
  hs::row_ptrs dst(rows, nullptr);
  for (std::size_t i = 0; i < rows; ++i)
    if (i % 3 != 1) dst[i] = pool + (rows - 1 - i) * row;  // reversed, every third row skipped
  be->scatter_rows(stream::compute, flat, row, row, dst);
  be->synchronize();
  std::vector<unsigned char> got(bytes);
  be->copy(stream::d2h, got.data(), pool, bytes);
  be->synchronize();
  std::size_t bad = 0;
  for (std::size_t i = 0; i < rows; ++i) {
    const unsigned char* at = &got[(rows - 1 - i) * row];
    if (i % 3 != 1)
      bad += std::memcmp(at, &init[i * row], row) != 0;
    else
      bad += std::count(at, at + row, 0) != std::ptrdiff_t(row);  // untouched: still zeros
  }
  CHECK(bad == 0);
}

TEST_CASE("cuda backend: copy_batch moves many blocks host->device, device->host, device->device",
          "[gpu]") {
  auto be = hs::make_cuda_backend(std::size_t(1) << 26);
  const std::size_t n_ops = 300, bytes = 4096 + 48;  // an odd size, not a power of two
  auto host_src = be->host_alloc(n_ops * bytes);
  auto host_dst = be->host_alloc(n_ops * bytes);
  char* dev_a = static_cast<char*>(be->device_alloc(n_ops * bytes, "a"));
  char* dev_b = static_cast<char*>(be->device_alloc(n_ops * bytes, "b"));
  auto* hs_ = static_cast<unsigned char*>(host_src.get());
  for (std::size_t i = 0; i < n_ops * bytes; ++i) hs_[i] = static_cast<unsigned char>(i * 31 + 5);
  std::memset(host_dst.get(), 0, n_ops * bytes);
  // Block order reversed on the way up and on the way down (not across), so one contiguous
  // copy each way would fail the check.
  std::vector<hs::copy_op> up, across, down;
  for (std::size_t i = 0; i < n_ops; ++i) {
    const std::size_t r = n_ops - 1 - i;
    up.push_back({dev_a + r * bytes, hs_ + i * bytes, bytes});
    across.push_back({dev_b + i * bytes, dev_a + i * bytes, bytes});
    down.push_back({static_cast<char*>(host_dst.get()) + r * bytes, dev_b + i * bytes, bytes});
  }
  up.push_back({dev_a, hs_, 0});  // empty copies are allowed and do nothing
  be->copy_batch(stream::h2d, up);
  be->wait(stream::compute, be->record(stream::h2d));
  be->copy_batch(stream::compute, across);
  be->wait(stream::d2h, be->record(stream::compute));
  be->copy_batch(stream::d2h, down);
  be->synchronize();
  // Reversed twice: block i lands back at i.
  CHECK(std::memcmp(host_dst.get(), hs_, n_ops * bytes) == 0);
  be->device_free(dev_a);
  be->device_free(dev_b);
}
