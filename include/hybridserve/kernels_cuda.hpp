// CUDA kernels of the forward pass and of the K/V rebuild (fp16 storage, fp32 math), one op per
// .cu in kernels/cuda/, each checked against its CPU reference (kernels_cpu.hpp, sample_rows.hpp).
// Every pointer is a device pointer unless said otherwise. Launchers enqueue on `stream`, never
// synchronize, and throw hs::error (cuda_check.hpp) on a bad argument or a failed launch.
// Shapes: M = tokens (rows), H = hidden, N/K = GEMM output/input features, D = head dim.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

#include "hybridserve/sample_rows.hpp"

namespace hs::cuda {

// ---- convert (convert.cu)
/// out[n] = half(in[n]) (round to nearest even, overflow to inf).
void convert_f32_to_f16(const float* in, __half* out, int64_t n, cudaStream_t stream);
/// out[n] = float(in[n]) (exact).
void convert_f16_to_f32(const __half* in, float* out, int64_t n, cudaStream_t stream);
/// out[n] = half(float(in[n])) (BF16 checkpoints to the fp16 compute type).
void convert_bf16_to_f16(const __nv_bfloat16* in, __half* out, int64_t n, cudaStream_t stream);

// ---- embedding (embedding.cu)
/// out[M, H] = table[ids[m]] (+ pos_table[pos[m] + pos_offset] when pos_table != nullptr: OPT's
/// learned positions use pos_offset 2). table: [V, H]; pos_table: [n_pos, H]; ids, pos: [M].
/// An id or position out of range gives a zero row (ids are checked by the caller).
void embedding(const __half* table, int64_t V, int64_t H, const int32_t* ids, int64_t M,
               const __half* pos_table, int64_t n_pos, const int32_t* pos, int32_t pos_offset,
               __half* out, cudaStream_t stream);

// ---- norms (norm.cu)
/// LayerNorm per row: y = (x - mean) / sqrt(var + eps) * g + b (b may be nullptr).
/// x, y: [M, H] (y may alias x); g, b: [H].
void layernorm(const __half* x, const __half* g, const __half* b, __half* y, int64_t M, int64_t H,
               float eps, cudaStream_t stream);
/// RMSNorm per row: y = x / sqrt(mean(x^2) + eps) * g. x, y: [M, H] (may alias); g: [H].
void rmsnorm(const __half* x, const __half* g, __half* y, int64_t M, int64_t H, float eps,
             cudaStream_t stream);

// ---- element-wise (activation.cu)
enum class activation { none, relu };
/// y[M, N] = act(x[M, N] + b[N]) (b may be nullptr; y may alias x).
void bias_act(const __half* x, const __half* b, __half* y, int64_t M, int64_t N, activation act,
              cudaStream_t stream);
/// out[n] = silu(gate[n]) * up[n] (SwiGLU; out may alias gate or up).
void silu_mul(const __half* gate, const __half* up, __half* out, int64_t n, cudaStream_t stream);
/// x[n] += y[n] (residual).
void add(__half* x, const __half* y, int64_t n, cudaStream_t stream);

// ---- rotary embedding (rope.cu)
/// In place, HF rotate_half convention like rope_cpu: x: [M, n_heads, D] contiguous; pos: [M].
void rope(__half* x, const int32_t* pos, int64_t M, int64_t n_heads, int64_t D, float theta,
          cudaStream_t stream);
/// The same on rows `ld` halves apart (e.g. the Q or K part of a fused QKV output).
void rope_strided(__half* x, int64_t ld, const int32_t* pos, int64_t M, int64_t n_heads, int64_t D,
                  float theta, cudaStream_t stream);

// ---- paged attention (attention_paged.cu)
/// Causal GQA attention over paged K/V, the semantics of cpu::attention_paged_cpu:
///   q, out:   [n_rows, n_head, D], n_rows = q_start[n_seq] (host value, for the grid);
///             sequence s owns rows [q_start[s], q_start[s+1]): the LAST tokens of its context
///   q_start:  [n_seq + 1]; ctx_len, blk_start: [n_seq] (int32, device)
///   k_blocks, v_blocks: device arrays of device pointers; block b of sequence s is
///             k_blocks[blk_start[s] + b], token-major [block_size, n_kv, D], 16-byte aligned.
/// D in {32, 64, 128, 256}; n_head % n_kv == 0; any block_size >= 1. Prefill and decode alike.
/// ctx_len[s] < 0 skips sequence s (its rows of out are not written).
void attention_paged(const __half* q, __half* out, const int32_t* q_start, const int32_t* ctx_len,
                     const int32_t* blk_start, const __half* const* k_blocks,
                     const __half* const* v_blocks, int64_t n_seq, int64_t n_rows, int64_t n_head,
                     int64_t n_kv, int64_t D, int64_t block_size, float scale, cudaStream_t stream);

// ---- fresh-prompt attention on tensor cores (attention_fresh.cu)
/// Causal GQA attention of one sequence whose whole context is its n rows (cpu::attention_cpu
/// with Tq == Tk): q: [n, ldq] with head h at column h * D; k, v: [n, ld_kv] with kv head g at
/// column g * D; out: [n, ldo]. `scratch` (16-byte aligned device memory) holds 8 bytes per
/// score (fp32 logit, fp16 hi and lo parts of its probability), at least n_head * n of them; query
/// rows go in tiles of what fits (hs::fresh_attention_scratch_bytes, backend.hpp, is what the
/// CUDA backend keeps). Enqueued on the handle's stream (`stream` must be the same), host
/// pointer mode.
void attention_fresh(cublasHandle_t handle, const __half* q, int64_t ldq, const __half* k,
                     const __half* v, int64_t ld_kv, __half* out, int64_t ldo, int64_t n,
                     int64_t n_head, int64_t n_kv, int64_t D, float scale, void* scratch,
                     std::size_t scratch_bytes, cudaStream_t stream);

// ---- fused fresh-prompt attention (attention_flash.cu)
/// The same function as attention_fresh for n_seq sequences in one launch, with scores, softmax
/// and output kept on chip (no scratch, no n x n scores in memory): sequence i is rows row0[i] ..
/// row0[i] + len[i] - 1 of q, k, v and out (row0, len: device arrays; `longest` >= every len).
/// Head dims 16, 32, 64 and 128 (attention_flash_head_dim); q, k, v 16-byte aligned with ldq,
/// ld_kv multiples of 8, out 4-byte aligned with ldo even (attention_flash_supported, for the
/// base pointers; rows keep the alignment). Throws hs::error otherwise.
bool attention_flash_head_dim(int64_t D);
bool attention_flash_supported(const __half* q, int64_t ldq, const __half* k, const __half* v,
                               int64_t ld_kv, const __half* out, int64_t ldo, int64_t D);
void attention_flash(const __half* q, int64_t ldq, const __half* k, const __half* v, int64_t ld_kv,
                     __half* out, int64_t ldo, const int32_t* row0, const int32_t* len,
                     int64_t n_seq, int64_t longest, int64_t n_head, int64_t n_kv, int64_t D,
                     float scale, cudaStream_t stream);

// ---- linear (linear.cu)
/// y[M, N] = x[M, K] @ w[N, K]^T (fp16 in/out, fp32 compute) on the caller's handle, which
/// carries the stream; host pointer mode expected. Bias and activation: bias_act.
/// With `accumulate`, y += x w^T instead.
void linear(cublasHandle_t handle, const __half* x, const __half* w, __half* y, int64_t M,
            int64_t N, int64_t K, bool accumulate = false);

/// A cuBLASLt handle and the algorithm chosen for each GEMM shape, epilogue and alignment (the
/// heuristic runs once per key). One per stream; the caller serialises its use.
struct lt_context {
  struct key {
    int64_t M, N, K;
    int epilogue;
    bool accumulate;
    uint32_t align_w, align_x, align_y, align_b;
    bool operator<(const key& o) const {
      return std::tie(M, N, K, epilogue, accumulate, align_w, align_x, align_y, align_b) <
             std::tie(o.M, o.N, o.K, o.epilogue, o.accumulate, o.align_w, o.align_x, o.align_y,
                      o.align_b);
    }
  };
  struct choice {
    bool ok = false;
    cublasLtMatmulAlgo_t algo{};
  };
  cublasLtHandle_t handle = nullptr;
  std::map<key, choice> algos;
};
/// y = [relu](x w^T + b), or with `accumulate` y += x w^T + b (b may be null), in one cuBLASLt
/// GEMM whose epilogue adds the bias and applies the ReLU, y being read as C in place. Returns
/// false, having enqueued nothing, where cuBLASLt offers no algorithm for it (the caller then
/// runs linear() and the bias/activation kernel).
bool linear_lt(lt_context& ctx, const __half* x, const __half* w, const __half* bias, __half* y,
               int64_t M, int64_t N, int64_t K, bool relu, bool accumulate, cudaStream_t stream);
/// y = act(x w^T + b), or with `accumulate` (act none) y += x w^T + b; b may be null. The bias
/// and ReLU go in the GEMM's epilogue (linear_lt, given `lt`) where cuBLASLt has an algorithm,
/// else linear() and then bias_act: every projection with a bias, the K/V rebuild's included,
/// rounds the same way. `handle` must be bound to `stream`.
void linear_bias_act(lt_context* lt, cublasHandle_t handle, const __half* x, const __half* w,
                     const __half* bias, __half* y, int64_t M, int64_t N, int64_t K, activation act,
                     bool accumulate, cudaStream_t stream);

// ---- K/V rebuild from activation checkpoints (kv_rebuild.cu)
enum class norm_kind { none, layernorm, rmsnorm };

/// One layer's K/V rebuild: norm(x) -> [K | V] = xn @ w_kv^T (+ b_kv) -> RoPE on K -> paged store.
struct kv_rebuild_args {
  const __half* x = nullptr;  // [M, H] activation checkpoints (the layer's input)
  int64_t M = 0, H = 0;
  norm_kind norm = norm_kind::layernorm;
  const __half* norm_w = nullptr;  // [H]
  const __half* norm_b = nullptr;  // [H] or nullptr (layernorm only)
  float eps = 1e-5f;
  const __half* w_kv = nullptr;  // [2 * n_kv * D, H]: the rows of Wk, then those of Wv
  const __half* b_kv = nullptr;  // [2 * n_kv * D] or nullptr
  int64_t n_kv = 0, D = 0;
  const int32_t* pos = nullptr;  // [M] positions for RoPE on K; nullptr = no RoPE (OPT)
  float rope_theta = 10000.f;
  __half* const* k_dst = nullptr;  // [M] device array: the block that row m's K goes to
  __half* const* v_dst = nullptr;  // [M] the same for V; blocks are [block_size, n_kv, D]
  const int32_t* slot = nullptr;   // [M] token slot of row m within its block
  void* workspace = nullptr;       // kv_rebuild_workspace_bytes(M, H, n_kv, D) bytes, 256-B aligned
  // When given, the bias is added in the GEMM's epilogue (one rounding), as the layer's own K/V
  // projection (linear_lt) does: rebuilt and stored K/V then round alike.
  lt_context* lt = nullptr;
};

/// Scratch the rebuild needs (normed x and the GEMM output), 256-byte aligned pieces.
std::size_t kv_rebuild_workspace_bytes(int64_t M, int64_t H, int64_t n_kv, int64_t D);
/// Runs the rebuild on `stream`; `handle` must already be bound to that same stream (checked).
void kv_rebuild(const kv_rebuild_args& a, cublasHandle_t handle, cudaStream_t stream);
/// The last step alone: kv[M, 2 * n_kv * D] (+ b_kv), RoPE on the K half, scatter to blocks.
void kv_bias_rope_scatter(const __half* kv, const __half* b_kv, int64_t M, int64_t n_kv, int64_t D,
                          const int32_t* pos, float rope_theta, __half* const* k_dst,
                          __half* const* v_dst, const int32_t* slot, cudaStream_t stream);

// ---- sampling (sample.cu)
/// out[rows] = argmax of each row of logits [rows, V] (lowest index among equal maxima).
void argmax_rows(const float* logits, int64_t rows, int64_t V, int32_t* out, cudaStream_t stream);
/// out[rows] = token drawn per row, the algorithm of cpu::sample_rows_cpu (sample_rows.hpp).
/// logits: [rows, V] f32; params: [rows]; u: [rows] uniforms in [0, 1) chosen by the caller.
void sample_rows(const float* logits, int64_t rows, int64_t V, const sample_row_params* params,
                 const float* u, int32_t* out, cudaStream_t stream);

}  // namespace hs::cuda
