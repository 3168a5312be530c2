#ifndef QST_VECMATH_H
#define QST_VECMATH_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Float32 loops with exponentials: the softmax of attention rows, the SiLU gate of the MLP, and the
/// whole causal attention of the side network's tiny heads (forward and backward). Swift's own SIMD
/// code is compiled for baseline x86-64 (SSE2, no FMA); these run 8 or 16 lanes with FMA.
///
/// Every vector path computes exp(x) as 2^n · p(r) (Cody–Waite reduction x = n·ln2 + r, degree-7
/// polynomial; relative error below 2e-7, as libm's expf) and sums in a different order than the
/// scalar reference, so paths agree to float rounding, not bit for bit. Each path is deterministic and
/// a row's result depends only on that row (and, for attention, its own keys).
typedef enum {
    QST_VEC_AUTO = -1,
    /// Portable C with libm's expf: the reference.
    QST_VEC_SCALAR = 0,
    /// 8 lanes, AVX2 + FMA.
    QST_VEC_AVX2 = 1,
    /// 16 lanes, AVX-512 F/BW/VL/DQ.
    QST_VEC_AVX512 = 2,
    /// 4 lanes, ARM64 Advanced SIMD.
    QST_VEC_NEON = 3,
} qst_vec_path;

/// 1 if `path` can run on this CPU (after any QST_KERNELS cap).
int qst_vec_supported(int path);
/// The fastest path this CPU runs (what QST_VEC_AUTO uses).
int qst_vec_best_path(void);
/// "scalar", "avx2", "avx512", "neon".
const char *qst_vec_path_name(int path);

/// row[j] = exp(row[j] - max) / sum for j < n (n >= 1). Returns 0, or -1 if the path cannot run here.
int qst_softmax_inplace(float *row, int64_t n, int path);

/// Unnormalised softmax for a loss: *max = max_j row[j], row[j] = exp(row[j] - *max), *sum = sum_j row[j]
/// (n >= 1). The vector paths sum in float lanes, the reference in double.
int qst_exp_from_max(float *row, int64_t n, float *max, double *sum, int path);

/// out[i] = silu(gate[i]) * up[i] with silu(x) = x / (1 + exp(-x)), for i < n; out may alias gate or up.
int qst_silu_mul(float *out, const float *gate, const float *up, int64_t n, int path);

/// Floats of scratch the side-attention calls need for sequence length T and head size hd.
int64_t qst_side_attn_forward_scratch(int64_t T, int64_t hd);
int64_t qst_side_attn_backward_scratch(int64_t T, int64_t hd);

/// One (sequence, head) of causal attention. Rows are T tokens: query row i is q[i*ldq + d], key and
/// value rows k[j*ldk + d], v[j*ldk + d], d < hd. Query i attends keys j <= i, j < len (len <= T):
///   probs[i*T + j] = softmax_j(scale * q_i . k_j)   for j < min(i + 1, len) (the rest of the row is not written)
///   out[i*ldo + d] = sum_j probs[i*T + j] * v[j*ldk + d]   (zero where min(i + 1, len) = 0)
/// Returns 0, or -1 if the path cannot run here.
int qst_side_attn_forward(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldk, int64_t T,
                          int64_t hd, int64_t len, float scale, float *probs, float *out, int64_t ldo,
                          float *scratch, int path);

/// Gradients of `group` query heads sharing one key/value head, accumulated (+=). Query head g's rows
/// are q + g*hd (stride ldq), likewise dout and dq; its forward probabilities are probs + g*T*T.
///   dS = P ⊙ (dO·Vᵀ − rowsum(P ⊙ dO·Vᵀ)) · scale;  dq += dS·K;  dk += dSᵀ·Q;  dv += Pᵀ·dO.
int qst_side_attn_backward(const float *q, const float *dout, float *dq, int64_t ldq, const float *k,
                           const float *v, float *dk, float *dv, int64_t ldk, const float *probs, int64_t group,
                           int64_t T, int64_t hd, int64_t len, float scale, float *scratch, int path);

#ifdef __cplusplus
}
#endif
#endif
