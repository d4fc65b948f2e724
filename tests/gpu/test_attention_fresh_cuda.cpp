// [gpu] fresh-prompt attention on tensor cores against attention_cpu (Tq == Tk): the awkward
// token counts, head dims 64/128, GQA 1/4/8, strided q/k/v/out as the step pipeline lays them
// out, and a scratch small enough to force query tiles.
#include <cublas_v2.h>

#include <catch2/catch.hpp>

#include "gpu_test_util.hpp"
#include "hybridserve/backend.hpp"
#include "hybridserve/kernels_cpu.hpp"
#include "hybridserve/kernels_cuda.hpp"

namespace {

// q: [n, n_head*D] (ldq = n_head*D); k|v interleaved per row as the fused projection writes
// them ([n, 2*n_kv*D], ld_kv = 2*n_kv*D); out: [n, n_head*D]. `scores`: how many scores the scratch
// holds, 0 = the default.
void run_case(int64_t n, int64_t D, int64_t ratio, std::size_t scores, std::mt19937& rng,
              float spread = 2.f) {
  const int64_t n_kv = 2, n_head = n_kv * ratio, QW = n_head * D, KW = n_kv * D;
  const float scale = 1.f / std::sqrt(float(D));
  const auto q = gt::rand16(std::size_t(n * QW), rng, -spread, spread);
  const auto kv = gt::rand16(std::size_t(n * 2 * KW), rng, -spread, spread);
  std::vector<float> k(std::size_t(n * KW)), v(k.size());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t e = 0; e < KW; ++e) {
      k[std::size_t(t * KW + e)] = kv[std::size_t(t * 2 * KW + e)];
      v[std::size_t(t * KW + e)] = kv[std::size_t(t * 2 * KW + KW + e)];
    }
  std::vector<float> ref(q.size());
  hs::cpu::attention_cpu(q.data(), k.data(), v.data(), ref.data(), n, n, n_head, n_kv, D, scale);

  gt::dev16 dq(gt::to_f16(q)), dkv(gt::to_f16(kv)), out(q.size());
  const std::size_t bytes = scores ? scores * 8 : hs::fresh_attention_scores_bytes(n_head, n);
  gt::dev16 scratch((bytes + 1) / 2);
  gt::stream st;
  cublasHandle_t handle;
  HS_CUBLAS_TRY(cublasCreate(&handle));
  HS_CUBLAS_TRY(cublasSetStream(handle, st));
  out.poison();
  scratch.poison();  // masked probabilities must be written as zeros, never read as garbage
  hs::cuda::attention_fresh(handle, gt::h(dq), QW, gt::h(dkv), gt::h(dkv) + KW, 2 * KW, gt::h(out),
                            QW, n, n_head, n_kv, D, scale, scratch.get(), bytes, st);
  st.sync();
  cublasDestroy(handle);
  INFO("n=" << n << " D=" << D << " gqa=" << ratio << " scratch bytes=" << bytes);
  gt::check_close(gt::from_f16(out.host()), ref, 3e-3, 1e-2, "attention_fresh");
}

}  // namespace

TEST_CASE("fresh attention: token counts x head dims x GQA ratios", "[gpu]") {
  std::mt19937 rng(21);
  for (int64_t n : gt::token_counts())
    for (int64_t D : {64, 128})
      for (int64_t ratio : {1, 4, 8}) run_case(n, D, ratio, 0, rng);
}

TEST_CASE("fresh attention: small head dims and sharp softmax (scores in the hundreds)", "[gpu]") {
  std::mt19937 rng(23);
  for (int64_t D : {16, 32})
    for (int64_t n : {7, 19, 100}) {
      run_case(n, D, 2, 0, rng);
      run_case(n, D, 2, 0, rng, 8.f);
    }
}

TEST_CASE("fresh attention: query tiles when the scratch is small", "[gpu]") {
  std::mt19937 rng(22);
  // One query row of every head per tile, then 5 rows, then 100 (733 = 7 x 100 + 33).
  for (std::size_t rows : {1, 5, 100}) run_case(733, 64, 4, std::size_t(8 * 733) * rows, rng);
  run_case(19, 128, 1, std::size_t(2 * 19) * 3, rng);
}

TEST_CASE("fresh attention: a scratch below one row of every head is refused", "[gpu]") {
  gt::dev16 q(64 * 8), scratch(64);
  gt::stream st;
  cublasHandle_t handle;
  HS_CUBLAS_TRY(cublasCreate(&handle));
  HS_CUBLAS_TRY(cublasSetStream(handle, st));
  CHECK_THROWS_WITH(
      hs::cuda::attention_fresh(handle, gt::h(q), 64, gt::h(q), gt::h(q), 64, gt::h(q), 64, 8, 1, 1,
                                64, 0.125f, scratch.get(), 7 * 8, st),
      Catch::Contains("scratch too small"));
  cublasDestroy(handle);
}
