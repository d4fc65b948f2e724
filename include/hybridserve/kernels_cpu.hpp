// CPU reference of every op of the forward pass and of the K/V rebuild. Plain float32 loops
// (GEMMs on OpenBLAS); the CUDA kernels are checked against these.
// Shapes: M = tokens in the batch, H = hidden, N/K = GEMM output/input features.
#pragma once
#include <cstdint>

#include "hybridserve/tensor.hpp"

namespace hs::cpu {

/// Converts any float tensor (F16, BF16, F32) to float32: out[numel].
void convert_to_f32(const tensor_view& t, float* out);
/// Converts rows [row0, row0 + n_rows) of a 2-D float tensor: out[n_rows, cols].
void convert_rows_to_f32(const tensor_view& t, int64_t row0, int64_t n_rows, float* out);

/// y[M, N] = x[M, K] @ w[N, K]^T (+ b[N] when b != nullptr). PyTorch's nn.Linear.
void linear_cpu(const float* x, const float* w, const float* b, float* y, int64_t M, int64_t N,
                int64_t K);

/// out[M, H] = table[ids[i], :] (table F16/BF16/F32 [V, H]); ids checked by the caller.
void embedding_cpu(const tensor_view& table, const int32_t* ids, int64_t M, float* out);

/// LayerNorm over the last dim: y = (x - mean) / sqrt(var + eps) * g + b. x, y: [M, H].
void layernorm_cpu(const float* x, const float* g, const float* b, float* y, int64_t M, int64_t H,
                   float eps);
/// RMSNorm (Llama): y = x / sqrt(mean(x^2) + eps) * g. x, y: [M, H].
void rmsnorm_cpu(const float* x, const float* g, float* y, int64_t M, int64_t H, float eps);

/// Rotary embedding in place, HF "rotate_half" layout: pairs (i, i + D/2) of each head.
/// x: [M, n_heads, D]; pos: [M] absolute positions; inv_freq[i] = theta^(-2i/D).
void rope_cpu(float* x, const int32_t* pos, int64_t M, int64_t n_heads, int64_t D, float theta);

/// In place x = max(x, 0). x: [n].
void relu_cpu(float* x, int64_t n);
/// out[i] = silu(gate[i]) * up[i] (SwiGLU). [n].
void silu_mul_cpu(const float* gate, const float* up, float* out, int64_t n);
/// x[M, N] += b[N].
void add_bias_cpu(float* x, const float* b, int64_t M, int64_t N);
/// x[n] += y[n] (residual).
void add_cpu(float* x, const float* y, int64_t n);

/// Causal attention of one sequence, grouped-query.
///   q: [Tq, n_head, D] (new tokens, at positions past .. past + Tq - 1)
///   k, v: [Tk, n_kv, D] with Tk = past + Tq (cache + new tokens), token-major
///   out: [Tq, n_head, D]. Query head h reads kv head h / (n_head / n_kv).
void attention_cpu(const float* q, const float* k, const float* v, float* out, int64_t Tq,
                   int64_t Tk, int64_t n_head, int64_t n_kv, int64_t D, float scale);

/// Paged causal attention over a batch of sequences (the layout both backends use).
/// Each sequence's context (cache + new tokens) lives in blocks of `block_size` tokens,
/// token-major [block_size, n_kv, D]; block b of sequence s is k_blocks[blk_start[s] + b].
///   q, out:  [q_start[n_seq], n_head, D]; sequence s owns rows [q_start[s], q_start[s+1]),
///            which are the LAST (q_start[s+1] - q_start[s]) tokens of its ctx_len[s] tokens
///            (their K/V are already written into the blocks).
///   ctx_len: [n_seq]; blk_start: [n_seq] (sequence s uses ceil(ctx_len[s] / block_size) blocks).
///            ctx_len[s] < 0 skips sequence s: its rows of `out` are not written.
void attention_paged_cpu(const float* q, float* out, const int32_t* q_start, const int32_t* ctx_len,
                         const int32_t* blk_start, const float* const* k_blocks,
                         const float* const* v_blocks, int64_t n_seq, int64_t n_head, int64_t n_kv,
                         int64_t D, int64_t block_size, float scale);

}  // namespace hs::cpu
