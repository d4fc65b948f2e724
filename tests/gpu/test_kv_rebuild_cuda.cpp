// [gpu] K/V rebuild from activation checkpoints against a reference built from the CPU ops:
// norm -> (fp16) -> linear against [Wk; Wv] -> (fp16) -> bias -> RoPE on K -> paged slots.
#include <cublas_v2.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>

#include "gpu_test_util.hpp"
#include "hybridserve/kernels_cpu.hpp"
#include "hybridserve/kernels_cuda.hpp"

namespace {

struct variant {
  hs::cuda::norm_kind norm;
  bool bias, rope;
};

void run_case(const variant& vt, int64_t M, int64_t H, int64_t D, int64_t block_size,
              cublasHandle_t handle, cudaStream_t stream, std::mt19937& rng) {
  const int64_t n_kv = 2, kv_dim = n_kv * D, p0 = 5;  // rows are tokens p0 .. p0 + M - 1
  const float eps = 1e-5f, theta = 10000.f;
  const auto x = gt::rand16(M * H, rng, -3.f, 3.f);
  const auto nw = gt::rand16(H, rng, 0.5f, 1.5f), nb = gt::rand16(H, rng);
  const auto w = gt::rand16(2 * kv_dim * H, rng, -0.1f, 0.1f), b = gt::rand16(2 * kv_dim, rng);
  std::vector<int32_t> pos(M);
  std::iota(pos.begin(), pos.end(), int32_t(p0));

  // Reference, rounding to fp16 where the GPU stores: the normed x and the GEMM output.
  std::vector<float> xn(M * H), kv(M * 2 * kv_dim);
  if (vt.norm == hs::cuda::norm_kind::layernorm)
    hs::cpu::layernorm_cpu(x.data(), nw.data(), nb.data(), xn.data(), M, H, eps);
  else if (vt.norm == hs::cuda::norm_kind::rmsnorm)
    hs::cpu::rmsnorm_cpu(x.data(), nw.data(), xn.data(), M, H, eps);
  else
    xn = x;
  xn = gt::round16(xn);
  hs::cpu::linear_cpu(xn.data(), w.data(), nullptr, kv.data(), M, 2 * kv_dim, H);
  kv = gt::round16(kv);
  if (vt.bias) hs::cpu::add_bias_cpu(kv.data(), b.data(), M, 2 * kv_dim);
  std::vector<float> k_ref(M * kv_dim), v_ref(M * kv_dim);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < kv_dim; ++j) {
      k_ref[m * kv_dim + j] = kv[m * 2 * kv_dim + j];
      v_ref[m * kv_dim + j] = kv[m * 2 * kv_dim + kv_dim + j];
    }
  if (vt.rope) hs::cpu::rope_cpu(k_ref.data(), pos.data(), M, n_kv, D, theta);

  // Destination: shuffled blocks of one sequence plus two spare blocks nobody may touch.
  const int64_t n_blocks = (p0 + M + block_size - 1) / block_size + 2;
  const int64_t blk_elems = block_size * kv_dim;
  std::vector<int64_t> perm(n_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  gt::dev16 k_pool(n_blocks * blk_elems), v_pool(n_blocks * blk_elems);
  k_pool.poison();
  v_pool.poison();
  std::vector<uint64_t> kd(M), vd(M);
  std::vector<int32_t> slot(M);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t blk = perm[(p0 + m) / block_size];
    kd[m] = reinterpret_cast<uint64_t>(gt::h(k_pool) + blk * blk_elems);
    vd[m] = reinterpret_cast<uint64_t>(gt::h(v_pool) + blk * blk_elems);
    slot[m] = int32_t((p0 + m) % block_size);
  }
  gt::dev16 dx(gt::to_f16(x)), dnw(gt::to_f16(nw)), dnb(gt::to_f16(nb)), dw(gt::to_f16(w)),
      db(gt::to_f16(b));
  gt::dev<int32_t> dpos(pos), dslot(slot);
  gt::dev<uint64_t> dkd(kd), dvd(vd);
  gt::dev<uint8_t> ws(hs::cuda::kv_rebuild_workspace_bytes(M, H, n_kv, D));

  hs::cuda::kv_rebuild_args a;
  a.x = gt::h(dx);
  a.M = M;
  a.H = H;
  a.norm = vt.norm;
  a.norm_w = gt::h(dnw);
  a.norm_b = vt.norm == hs::cuda::norm_kind::layernorm ? gt::h(dnb) : nullptr;
  a.eps = eps;
  a.w_kv = gt::h(dw);
  a.b_kv = vt.bias ? gt::h(db) : nullptr;
  a.n_kv = n_kv;
  a.D = D;
  a.pos = vt.rope ? dpos.get() : nullptr;
  a.rope_theta = theta;
  a.k_dst = reinterpret_cast<__half* const*>(dkd.get());
  a.v_dst = reinterpret_cast<__half* const*>(dvd.get());
  a.slot = dslot.get();
  a.workspace = ws.get();
  hs::cuda::kv_rebuild(a, handle, stream);

  // Gather the written slots back into row order; every other slot must still be the sentinel.
  const auto kh = k_pool.host(), vh = v_pool.host();
  std::vector<float> k_got(M * kv_dim), v_got(M * kv_dim);
  std::vector<char> used(n_blocks * block_size, 0);
  for (int64_t m = 0; m < M; ++m) {
    const int64_t blk = perm[(p0 + m) / block_size], s = slot[m];
    used[blk * block_size + s] = 1;
    for (int64_t j = 0; j < kv_dim; ++j) {
      k_got[m * kv_dim + j] = hs::f16_to_f32(kh[blk * blk_elems + s * kv_dim + j]);
      v_got[m * kv_dim + j] = hs::f16_to_f32(vh[blk * blk_elems + s * kv_dim + j]);
    }
  }
  std::size_t touched = 0;
  for (int64_t i = 0; i < n_blocks * block_size; ++i)
    if (!used[i])
      for (int64_t j = 0; j < kv_dim; ++j)
        touched += kh[i * kv_dim + j] != 0xFFFF || vh[i * kv_dim + j] != 0xFFFF;
  INFO("M=" << M << " H=" << H << " D=" << D << " block_size=" << block_size
            << " norm=" << int(vt.norm) << " bias=" << vt.bias << " rope=" << vt.rope);
  CHECK(touched == 0);
  gt::check_close(k_got, k_ref, 5e-3, 5e-3, "rebuilt K");
  gt::check_close(v_got, v_ref, 5e-3, 5e-3, "rebuilt V");
}

}  // namespace

TEST_CASE("kv rebuild matches norm + linear + bias + rope + paged store on the CPU", "[gpu]") {
  gt::stream st;
  cublasHandle_t handle;
  HS_CUBLAS_TRY(cublasCreate(&handle));
  HS_CUBLAS_TRY(cublasSetStream(handle, st));
  std::mt19937 rng(21);
  const variant opt{hs::cuda::norm_kind::layernorm, true, false};
  const variant llama{hs::cuda::norm_kind::rmsnorm, false, true};
  const variant bare{hs::cuda::norm_kind::none, true, true};
  for (int64_t M : gt::token_counts()) {
    run_case(opt, M, 256, 64, 16, handle, st, rng);
    run_case(llama, M, 256, 128, 16, handle, st, rng);
    run_case(llama, M, 100, 64, 7, handle, st, rng);
    run_case(opt, M, 200, 128, 7, handle, st, rng);
    run_case(bare, M, 64, 64, 16, handle, st, rng);
    // Head dims whose halves are not multiples of 8 take the scalar path (the others move 16
    // bytes at a time): both must give the reference.
    run_case(llama, M, 96, 20, 7, handle, st, rng);
    run_case(opt, M, 96, 10, 5, handle, st, rng);  // kv_dim 20: rows of 40 bytes
  }
  // The cuBLAS handle must be bound to the launch stream, or the GEMM would race the kernels.
  hs::cuda::kv_rebuild_args a;
  a.M = 1;
  a.x = a.w_kv = reinterpret_cast<const __half*>(16);
  a.norm = hs::cuda::norm_kind::none;
  a.k_dst = a.v_dst = reinterpret_cast<__half* const*>(16);
  a.slot = reinterpret_cast<const int32_t*>(16);
  a.workspace = reinterpret_cast<void*>(16);
  CHECK_THROWS_AS(hs::cuda::kv_rebuild(a, handle, nullptr), hs::error);
  cublasDestroy(handle);
}
