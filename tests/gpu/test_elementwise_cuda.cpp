// [gpu] convert, embedding, norms, element-wise ops, RoPE, linear and the error macros, each
// against its CPU reference over awkward sizes, from the same fp16-rounded inputs.
#include <cublas_v2.h>

#include <catch2/catch.hpp>

#include "gpu_test_util.hpp"
#include "hybridserve/error.hpp"
#include "hybridserve/kernels_cpu.hpp"
#include "hybridserve/kernels_cuda.hpp"
#include "hybridserve/tensor.hpp"

using gt::dev;
using gt::dev16;

TEST_CASE("convert f32/f16/bf16 matches the CPU conversions bit for bit", "[gpu]") {
  gt::stream st;
  std::mt19937 rng(1);
  for (int64_t n : {1, 3, 7, 19, 733, 70001}) {
    std::uniform_real_distribution<float> d(-80000.f, 80000.f);  // past fp16's max: inf
    std::vector<float> f(n);
    for (auto& x : f) x = d(rng) * (rng() % 2 ? 1.f : 1e-9f);  // fp16 subnormals too
    dev<float> in(f);
    dev16 out(n);
    out.poison();
    hs::cuda::convert_f32_to_f16(in.get(), gt::h(out), n, st);
    CHECK(out.host() == gt::to_f16(f));

    dev<float> back(n);
    back.poison();
    hs::cuda::convert_f16_to_f32(gt::h(out), back.get(), n, st);
    CHECK(back.host() == gt::from_f16(gt::to_f16(f)));

    std::vector<uint16_t> bf(n), want(n);
    for (int64_t i = 0; i < n; ++i) {
      bf[i] = hs::f32_to_bf16(f[i]);
      want[i] = hs::f32_to_f16(hs::bf16_to_f32(bf[i]));
    }
    dev16 bin(bf), hout(n);
    hout.poison();
    hs::cuda::convert_bf16_to_f16(reinterpret_cast<const __nv_bfloat16*>(bin.get()), gt::h(hout), n,
                                  st);
    CHECK(hout.host() == want);
  }
}

TEST_CASE("embedding gathers rows and adds OPT positions at offset 2", "[gpu]") {
  gt::stream st;
  std::mt19937 rng(2);
  const int64_t V = 50, n_pos = 740;
  for (int64_t H : {64, 7, 768})
    for (int64_t M : gt::token_counts()) {
      const auto table = gt::rand16(V * H, rng), ptable = gt::rand16(n_pos * H, rng);
      std::vector<int32_t> ids(M), pos(M);
      for (int64_t m = 0; m < M; ++m) {
        ids[m] = int32_t(rng() % V);
        pos[m] = int32_t(m);  // + 2 stays below n_pos for M <= 733
      }
      const auto t16 = gt::to_f16(table);
      hs::tensor_view tv{"table", hs::dtype::f16, {V, H}, t16.data(), t16.size() * 2};
      std::vector<float> ref(M * H);
      hs::cpu::embedding_cpu(tv, ids.data(), M, ref.data());
      dev16 dt(t16), dp(gt::to_f16(ptable)), out(M * H);
      dev<int32_t> dids(ids), dpos(pos);
      out.poison();
      hs::cuda::embedding(gt::h(dt), V, H, dids.get(), M, nullptr, 0, nullptr, 0, gt::h(out), st);
      gt::check_close(gt::from_f16(out.host()), ref, 0, 0, "embedding");

      for (int64_t m = 0; m < M; ++m)
        for (int64_t j = 0; j < H; ++j) ref[m * H + j] += ptable[(pos[m] + 2) * H + j];
      out.poison();
      hs::cuda::embedding(gt::h(dt), V, H, dids.get(), M, gt::h(dp), n_pos, dpos.get(), 2,
                          gt::h(out), st);
      gt::check_close(gt::from_f16(out.host()), ref, 1e-3, 1e-3, "embedding + positions");
    }
}

TEST_CASE("layernorm and rmsnorm match the CPU over rows", "[gpu]") {
  gt::stream st;
  std::mt19937 rng(3);
  for (int64_t H : {64, 100, 4096})
    for (int64_t M : gt::token_counts()) {
      const auto x = gt::rand16(M * H, rng, 1.f, 5.f);  // mean far from 0: centred variance
      const auto g = gt::rand16(H, rng, 0.5f, 1.5f), b = gt::rand16(H, rng);
      dev16 dx(gt::to_f16(x)), dg(gt::to_f16(g)), db(gt::to_f16(b)), dy(M * H);
      std::vector<float> ref(M * H);
      INFO("M=" << M << " H=" << H);

      hs::cpu::layernorm_cpu(x.data(), g.data(), b.data(), ref.data(), M, H, 1e-5f);
      dy.poison();
      hs::cuda::layernorm(gt::h(dx), gt::h(dg), gt::h(db), gt::h(dy), M, H, 1e-5f, st);
      gt::check_close(gt::from_f16(dy.host()), ref, 2e-3, 2e-3, "layernorm");

      hs::cpu::layernorm_cpu(x.data(), g.data(), nullptr, ref.data(), M, H, 1e-5f);
      dy.poison();
      hs::cuda::layernorm(gt::h(dx), gt::h(dg), nullptr, gt::h(dy), M, H, 1e-5f, st);
      gt::check_close(gt::from_f16(dy.host()), ref, 2e-3, 2e-3, "layernorm without bias");

      hs::cpu::rmsnorm_cpu(x.data(), g.data(), ref.data(), M, H, 1e-6f);
      dy.poison();
      hs::cuda::rmsnorm(gt::h(dx), gt::h(dg), gt::h(dy), M, H, 1e-6f, st);
      gt::check_close(gt::from_f16(dy.host()), ref, 2e-3, 2e-3, "rmsnorm");

      hs::cuda::rmsnorm(gt::h(dx), gt::h(dg), gt::h(dx), M, H, 1e-6f, st);  // in place
      gt::check_close(gt::from_f16(dx.host()), ref, 2e-3, 2e-3, "rmsnorm in place");
    }
}

TEST_CASE("bias + activation, silu_mul and residual add", "[gpu]") {
  gt::stream st;
  std::mt19937 rng(4);
  for (int64_t N : {64, 36, 8})
    for (int64_t M : gt::token_counts()) {
      const int64_t n = M * N;
      const auto x = gt::rand16(n, rng, -4.f, 4.f), y = gt::rand16(n, rng, -4.f, 4.f);
      const auto b = gt::rand16(N, rng);
      dev16 dx(gt::to_f16(x)), dy(gt::to_f16(y)), db(gt::to_f16(b)), out(n);
      INFO("M=" << M << " N=" << N);
      for (bool relu : {false, true})
        for (bool bias : {false, true}) {
          auto ref = x;
          if (bias) hs::cpu::add_bias_cpu(ref.data(), b.data(), M, N);
          if (relu) hs::cpu::relu_cpu(ref.data(), n);
          out.poison();
          hs::cuda::bias_act(gt::h(dx), bias ? gt::h(db) : nullptr, gt::h(out), M, N,
                             relu ? hs::cuda::activation::relu : hs::cuda::activation::none, st);
          gt::check_close(gt::from_f16(out.host()), ref, 1e-3, 1e-3, "bias_act");
        }
      std::vector<float> ref(n);
      hs::cpu::silu_mul_cpu(x.data(), y.data(), ref.data(), n);
      out.poison();
      hs::cuda::silu_mul(gt::h(dx), gt::h(dy), gt::h(out), n, st);
      gt::check_close(gt::from_f16(out.host()), ref, 1e-3, 2e-3, "silu_mul");

      ref = x;
      hs::cpu::add_cpu(ref.data(), y.data(), n);
      hs::cuda::add(gt::h(dx), gt::h(dy), n, st);
      gt::check_close(gt::from_f16(dx.host()), ref, 1e-3, 1e-3, "add");
    }
}

TEST_CASE("rope matches rope_cpu (rotate_half pairs, fp32 angles)", "[gpu]") {
  gt::stream st;
  std::mt19937 rng(5);
  const int64_t n_heads = 4;
  for (int64_t D : {64, 128})
    for (float theta : {10000.f, 500000.f})
      for (int64_t M : gt::token_counts()) {
        auto x = gt::rand16(M * n_heads * D, rng);
        std::vector<int32_t> pos(M);
        for (auto& p : pos) p = int32_t(rng() % 8192);
        dev16 dx(gt::to_f16(x));
        dev<int32_t> dpos(pos);
        hs::cuda::rope(gt::h(dx), dpos.get(), M, n_heads, D, theta, st);
        hs::cpu::rope_cpu(x.data(), pos.data(), M, n_heads, D, theta);
        INFO("D=" << D << " theta=" << theta << " M=" << M);
        gt::check_close(gt::from_f16(dx.host()), x, 2e-3, 2e-3, "rope");
      }
  // Strided: the first 2 heads of rows holding 3 heads; the third head stays untouched.
  const int64_t M = 19, D = 64, ld = 3 * D;
  auto x = gt::rand16(M * ld, rng);
  std::vector<int32_t> pos(M);
  for (auto& p : pos) p = int32_t(rng() % 4096);
  dev16 dx(gt::to_f16(x));
  dev<int32_t> dpos(pos);
  hs::cuda::rope_strided(gt::h(dx), ld, dpos.get(), M, 2, D, 10000.f, st);
  auto ref = x;
  for (int64_t m = 0; m < M; ++m) hs::cpu::rope_cpu(&ref[m * ld], &pos[m], 1, 2, D, 10000.f);
  gt::check_close(gt::from_f16(dx.host()), ref, 2e-3, 2e-3, "rope_strided");
}

TEST_CASE("linear (cuBLAS) is x @ W^T", "[gpu]") {
  gt::stream st;
  cublasHandle_t handle;
  HS_CUBLAS_TRY(cublasCreate(&handle));
  HS_CUBLAS_TRY(cublasSetStream(handle, st));
  std::mt19937 rng(6);
  const std::vector<std::pair<int64_t, int64_t>> nk{{64, 64}, {19, 7}, {1000, 256}, {384, 768}};
  for (auto [N, K] : nk)
    for (int64_t M : gt::token_counts()) {
      const auto x = gt::rand16(M * K, rng), w = gt::rand16(N * K, rng);
      std::vector<float> ref(M * N);
      hs::cpu::linear_cpu(x.data(), w.data(), nullptr, ref.data(), M, N, K);
      dev16 dx(gt::to_f16(x)), dw(gt::to_f16(w)), dy(M * N);
      dy.poison();
      hs::cuda::linear(handle, gt::h(dx), gt::h(dw), gt::h(dy), M, N, K);
      INFO("M=" << M << " N=" << N << " K=" << K);
      gt::check_close(gt::from_f16(dy.host()), ref, 2e-3 * std::sqrt(double(K)), 2e-3, "linear");
    }
  cublasDestroy(handle);
}

namespace {
// One projection with an epilogue and its CPU reference. mode 0: + bias; 1: + bias, ReLU;
// 2: y += .. + bias; 3: y += .. (no bias). y0 is y's value before an accumulating call.
struct epilogue_case {
  bool relu, acc, with_bias;
  std::vector<float> x, w, b, y0, ref;
  epilogue_case(int64_t M, int64_t N, int64_t K, int mode, std::mt19937& rng)
      : relu(mode == 1), acc(mode >= 2), with_bias(mode != 3) {
    x = gt::rand16(M * K, rng), w = gt::rand16(N * K, rng);
    b = gt::rand16(N, rng), y0 = gt::rand16(M * N, rng);
    ref.assign(std::size_t(M * N), 0.f);
    hs::cpu::linear_cpu(x.data(), w.data(), with_bias ? b.data() : nullptr, ref.data(), M, N, K);
    for (std::size_t i = 0; i < ref.size(); ++i) {
      if (relu) ref[i] = std::max(ref[i], 0.f);
      if (acc) ref[i] += y0[i];
    }
  }
};
}  // namespace

TEST_CASE("linear on cuBLASLt: bias, ReLU and the residual add in the epilogue", "[gpu]") {
  gt::stream st;
  hs::cuda::lt_context ctx;
  HS_CUBLAS_TRY(cublasLtCreate(&ctx.handle));
  std::mt19937 rng(16);
  const std::vector<std::pair<int64_t, int64_t>> nk{{64, 64}, {24, 8}, {1000, 256}, {384, 768}};
  int taken = 0;
  for (auto [N, K] : nk)
    for (int64_t M : gt::token_counts())
      for (int mode = 0; mode < 4; ++mode) {  // bias; bias + ReLU; y += .. + bias; y += ..
        const epilogue_case t(M, N, K, mode, rng);
        dev16 dx(gt::to_f16(t.x)), dw(gt::to_f16(t.w)), db(gt::to_f16(t.b)), dy(gt::to_f16(t.y0));
        if (!t.acc) dy.poison();
        const bool ok =
            hs::cuda::linear_lt(ctx, gt::h(dx), gt::h(dw), t.with_bias ? gt::h(db) : nullptr,
                                gt::h(dy), M, N, K, t.relu, t.acc, st);
        if (!ok) continue;  // no algorithm: the backend falls back (checked there)
        ++taken;
        st.sync();
        INFO("M=" << M << " N=" << N << " K=" << K << " mode " << mode);
        gt::check_close(gt::from_f16(dy.host()), t.ref, 2e-3 * std::sqrt(double(K)), 2e-3,
                        "linear_lt");
      }
  // The shapes the engine uses (16-byte aligned, even sizes) must not all fall back.
  CHECK(taken > 40);
  cublasLtDestroy(ctx.handle);
}

TEST_CASE(
    "linear_bias_act: the cuBLASLt epilogue and the GEMM + bias_act fallback agree with the CPU",
    "[gpu]") {
  // The fallback (no cuBLASLt context, or no Lt algorithm for a shape) is a cuBLAS GEMM followed
  // by the bias/activation kernel; the engine reaches it rarely, so it is run here on purpose.
  gt::stream st;
  cublasHandle_t handle;
  HS_CUBLAS_TRY(cublasCreate(&handle));
  HS_CUBLAS_TRY(cublasSetStream(handle, st));
  hs::cuda::lt_context ctx;
  HS_CUBLAS_TRY(cublasLtCreate(&ctx.handle));
  std::mt19937 rng(26);
  const std::vector<std::pair<int64_t, int64_t>> nk{{64, 64}, {19, 7}, {384, 768}};
  for (auto [N, K] : nk)
    for (int64_t M : gt::token_counts())
      for (int mode = 0; mode < 4; ++mode) {  // bias; bias + ReLU; y += .. + bias; y += ..
        const epilogue_case t(M, N, K, mode, rng);
        for (const bool use_lt : {false, true}) {
          dev16 dx(gt::to_f16(t.x)), dw(gt::to_f16(t.w)), db(gt::to_f16(t.b)), dy(gt::to_f16(t.y0));
          if (!t.acc) dy.poison();
          hs::cuda::linear_bias_act(
              use_lt ? &ctx : nullptr, handle, gt::h(dx), gt::h(dw),
              t.with_bias ? gt::h(db) : nullptr, gt::h(dy), M, N, K,
              t.relu ? hs::cuda::activation::relu : hs::cuda::activation::none, t.acc, st);
          st.sync();
          INFO("M=" << M << " N=" << N << " K=" << K << " mode " << mode << " lt " << use_lt);
          gt::check_close(gt::from_f16(dy.host()), t.ref, 2e-3 * std::sqrt(double(K)), 2e-3,
                          "linear_bias_act");
        }
      }
  cublasLtDestroy(ctx.handle);
  cublasDestroy(handle);
}

TEST_CASE("CUDA and cuBLAS failures become hs::error, not an abort", "[gpu]") {
  void* p = nullptr;
  try {
    HS_CUDA_TRY(cudaMalloc(&p, std::size_t(1) << 60));
    FAIL("cudaMalloc of 2^60 bytes succeeded");
  } catch (const hs::error& e) {
    const std::string what = e.what();
    CHECK(what.find("cudaMalloc") != std::string::npos);
    CHECK(what.find("cudaErrorMemoryAllocation") != std::string::npos);
    CHECK(what.find("test_elementwise_cuda.cpp") != std::string::npos);
  }
  CHECK(cudaGetLastError() == cudaSuccess);  // the macro left no error behind

  cublasHandle_t handle;
  HS_CUBLAS_TRY(cublasCreate(&handle));
  const float one = 1.f;
  auto bad_gemm = [&] {
    HS_CUBLAS_TRY(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, -1, 1, 1, &one, nullptr, 1, nullptr,
                              1, &one, nullptr, 1));
  };
  CHECK_THROWS_AS(bad_gemm(), hs::error);
  cublasDestroy(handle);

  // Launchers reject what they cannot do with an hs::error, too.
  CHECK_THROWS_AS(hs::cuda::attention_paged(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                            nullptr, 1, 1, 8, 2, 80, 16, 1.f, nullptr),
                  hs::error);
}
