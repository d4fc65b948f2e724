// [gpu] paged attention against attention_paged_cpu: head dims 64/128, GQA 1/4/8, block sizes
// 16 and 7, decode rows over long contexts, chunked prefill and a 733-row prefill.
#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>

#include "gpu_test_util.hpp"
#include "hybridserve/kernels_cpu.hpp"
#include "hybridserve/kernels_cuda.hpp"

namespace {

struct seq_shape {
  int32_t nq, ctx;  // query rows (the last nq tokens) and context length
};

// Builds a block pool with blocks handed out in a shuffled order, runs both backends, compares.
void run_case(int64_t D, int64_t ratio, int64_t block_size, const std::vector<seq_shape>& seqs,
              std::mt19937& rng) {
  const int64_t n_kv = 2, n_head = n_kv * ratio, n_seq = int64_t(seqs.size());
  const float scale = 1.f / std::sqrt(float(D));
  std::vector<int32_t> q_start{0}, ctx_len, blk_start;
  int64_t n_blocks = 0;
  for (auto s : seqs) {
    q_start.push_back(q_start.back() + s.nq);
    ctx_len.push_back(s.ctx);
    blk_start.push_back(int32_t(n_blocks));
    n_blocks += (s.ctx + block_size - 1) / block_size;
  }
  const int64_t n_rows = q_start.back(), blk_elems = block_size * n_kv * D;
  std::vector<int64_t> perm(n_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);

  // Spread values so the softmax is neither flat nor one-hot.
  const auto q = gt::rand16(n_rows * n_head * D, rng, -2.f, 2.f);
  const auto k_pool = gt::rand16(n_blocks * blk_elems, rng, -2.f, 2.f);
  const auto v_pool = gt::rand16(n_blocks * blk_elems, rng);
  std::vector<const float*> kb(n_blocks), vb(n_blocks);
  for (int64_t b = 0; b < n_blocks; ++b) {
    kb[b] = k_pool.data() + perm[b] * blk_elems;
    vb[b] = v_pool.data() + perm[b] * blk_elems;
  }
  std::vector<float> ref(n_rows * n_head * D);
  hs::cpu::attention_paged_cpu(q.data(), ref.data(), q_start.data(), ctx_len.data(),
                               blk_start.data(), kb.data(), vb.data(), n_seq, n_head, n_kv, D,
                               block_size, scale);

  gt::dev16 dq(gt::to_f16(q)), dk(gt::to_f16(k_pool)), dv(gt::to_f16(v_pool));
  gt::dev16 out(n_rows * n_head * D);
  std::vector<uint64_t> kp(n_blocks), vp(n_blocks);
  for (int64_t b = 0; b < n_blocks; ++b) {
    kp[b] = reinterpret_cast<uint64_t>(gt::h(dk) + perm[b] * blk_elems);
    vp[b] = reinterpret_cast<uint64_t>(gt::h(dv) + perm[b] * blk_elems);
  }
  gt::dev<uint64_t> dkp(kp), dvp(vp);
  gt::dev<int32_t> dqs(q_start), dctx(ctx_len), dbs(blk_start);
  gt::stream st;
  out.poison();
  hs::cuda::attention_paged(gt::h(dq), gt::h(out), dqs.get(), dctx.get(), dbs.get(),
                            reinterpret_cast<const __half* const*>(dkp.get()),
                            reinterpret_cast<const __half* const*>(dvp.get()), n_seq, n_rows,
                            n_head, n_kv, D, block_size, scale, st);
  INFO("D=" << D << " gqa=" << ratio << " block_size=" << block_size << " rows=" << n_rows);
  gt::check_close(gt::from_f16(out.host()), ref, 2e-3, 1e-2, "attention_paged");
}

}  // namespace

TEST_CASE("paged attention: decode and chunked prefill over head dims, GQA, block sizes", "[gpu]") {
  std::mt19937 rng(11);
  // Single tokens, tiny prompts, chunked prefill past a block edge, decode over 733+ tokens.
  const std::vector<seq_shape> seqs{{1, 1}, {3, 3}, {7, 100}, {1, 733}, {19, 26}, {1, 1000}};
  for (int64_t D : {64, 128})
    for (int64_t ratio : {1, 4, 8})
      for (int64_t bs : {16, 7}) run_case(D, ratio, bs, seqs, rng);
}

TEST_CASE("paged attention: 733-row prefill", "[gpu]") {
  std::mt19937 rng(12);
  run_case(128, 4, 16, {{733, 733}}, rng);
  run_case(64, 8, 7, {{733, 740}, {1, 5}}, rng);
  run_case(64, 1, 1, {{19, 19}}, rng);  // one token per block
}

TEST_CASE("paged attention: M query rows of one sequence, each sweep size", "[gpu]") {
  std::mt19937 rng(13);
  for (int64_t M : gt::token_counts()) {
    const int32_t m = int32_t(M);
    run_case(128, 8, 16, {{m, m + 11}}, rng);
  }
}
