// [gpu] the fused fresh-prompt attention against attention_cpu (Tq == Tk): the awkward token
// counts, every head dim it takes (16/32/64/128), GQA 1/4/8, q/k/v/out strided as the step
// pipeline lays them out, sharp softmax, and rows of `out` outside the sequence left untouched.
#include <catch2/catch.hpp>

#include "gpu_test_util.hpp"
#include "hybridserve/kernels_cpu.hpp"
#include "hybridserve/kernels_cuda.hpp"

namespace {

// Sequences of `lens` rows in one launch, laid out one after another with one untouched row
// before each and after the last. Per row: q [n_head*D]; k|v interleaved as the fused projection
// writes them ([2*n_kv*D], ld_kv = 2*n_kv*D); out [n_head*D]. Each sequence attends to itself only.
void run_case(const std::vector<int64_t>& lens, int64_t D, int64_t ratio, std::mt19937& rng,
              float spread = 2.f) {
  const int64_t n_kv = 2, n_head = n_kv * ratio, QW = n_head * D, KW = n_kv * D;
  const float scale = 1.f / std::sqrt(float(D));
  std::vector<int32_t> row0, len;
  int64_t rows = 1, longest = 0;
  for (const int64_t n : lens) {
    row0.push_back(int32_t(rows));
    len.push_back(int32_t(n));
    rows += n + 1;
    longest = std::max(longest, n);
  }
  const auto q = gt::rand16(std::size_t(rows * QW), rng, -spread, spread);
  const auto kv = gt::rand16(std::size_t(rows * 2 * KW), rng, -spread, spread);
  gt::dev16 dq(gt::to_f16(q)), dkv(gt::to_f16(kv)), out(std::size_t(rows * QW));
  std::vector<int32_t> args(row0);
  args.insert(args.end(), len.begin(), len.end());
  int32_t* dargs = nullptr;
  HS_CUDA_TRY(cudaMalloc(&dargs, args.size() * sizeof(int32_t)));
  HS_CUDA_TRY(
      cudaMemcpy(dargs, args.data(), args.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  REQUIRE(hs::cuda::attention_flash_supported(gt::h(dq), QW, gt::h(dkv), gt::h(dkv) + KW, 2 * KW,
                                              gt::h(out), QW, D));
  gt::stream st;
  out.poison();
  hs::cuda::attention_flash(gt::h(dq), QW, gt::h(dkv), gt::h(dkv) + KW, 2 * KW, gt::h(out), QW,
                            dargs, dargs + lens.size(), int64_t(lens.size()), longest, n_head, n_kv,
                            D, scale, st);
  st.sync();
  HS_CUDA_TRY(cudaFree(dargs));
  const auto all = out.host();
  for (std::size_t i = 0; i < lens.size(); ++i) {
    const int64_t n = lens[i], r0 = row0[i];
    std::vector<float> qs(q.begin() + r0 * QW, q.begin() + (r0 + n) * QW);
    std::vector<float> k(std::size_t(n * KW)), v(k.size());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t e = 0; e < KW; ++e) {
        k[std::size_t(t * KW + e)] = kv[std::size_t((r0 + t) * 2 * KW + e)];
        v[std::size_t(t * KW + e)] = kv[std::size_t((r0 + t) * 2 * KW + KW + e)];
      }
    std::vector<float> ref(qs.size());
    hs::cpu::attention_cpu(qs.data(), k.data(), v.data(), ref.data(), n, n, n_head, n_kv, D, scale);
    INFO("sequence " << i << " of " << lens.size() << ": n=" << n << " D=" << D << " gqa=" << ratio
                     << " spread=" << spread);
    const std::vector<uint16_t> mine(all.begin() + r0 * QW, all.begin() + (r0 + n) * QW);
    gt::check_close(gt::from_f16(mine), ref, 3e-3, 1e-2, "attention_flash");
  }
  // The separator rows are nobody's: still the poison.
  std::size_t touched = 0;
  for (std::size_t i = 0; i <= lens.size(); ++i) {
    const int64_t r = i == 0 ? 0 : row0[i - 1] + lens[i - 1];
    for (int64_t e = 0; e < QW; ++e) touched += all[std::size_t(r * QW + e)] != 0xFFFF;
  }
  CHECK(touched == 0);
}

}  // namespace

TEST_CASE("flash attention: token counts x head dims x GQA ratios", "[gpu]") {
  std::mt19937 rng(31);
  for (int64_t n : gt::token_counts())
    for (int64_t D : {16, 32, 64, 128})
      for (int64_t ratio : {1, 4, 8}) run_case({n}, D, ratio, rng);
}

TEST_CASE("flash attention: many sequences of different lengths in one launch", "[gpu]") {
  std::mt19937 rng(32);
  for (int64_t D : {16, 64, 128}) run_case({1, 733, 3, 64, 19, 0, 130, 7}, D, 4, rng);
}

TEST_CASE("flash attention: tile edges and sharp softmax (scores in the hundreds)", "[gpu]") {
  std::mt19937 rng(33);
  for (int64_t n : {63, 64, 65, 128, 129, 512})
    for (int64_t D : {16, 128}) {
      run_case({n}, D, 2, rng);
      run_case({n}, D, 2, rng, 8.f);
    }
}

TEST_CASE("flash attention: head dims it does not take and misaligned rows are refused", "[gpu]") {
  gt::dev16 buf(4096);
  const __half* p = gt::h(buf);
  CHECK_FALSE(hs::cuda::attention_flash_supported(p, 80, p, p, 80, gt::h(buf), 80, 80));
  CHECK_FALSE(hs::cuda::attention_flash_supported(p + 4, 64, p, p, 64, gt::h(buf), 64, 64));
  CHECK_FALSE(hs::cuda::attention_flash_supported(p, 68, p, p, 64, gt::h(buf), 64, 64));
  CHECK(hs::cuda::attention_flash_supported(p, 64, p, p, 64, gt::h(buf), 64, 64));
  gt::stream st;
  const int32_t* none = nullptr;  // never read: the shape is refused first
  CHECK_THROWS_WITH(hs::cuda::attention_flash(p, 80, p, p, 80, gt::h(buf), 80, none, none, 1, 4, 1,
                                              1, 80, 0.1f, st),
                    Catch::Contains("head dim"));
}
