#ifndef QST_SMALL_GEMV_H
#define QST_SMALL_GEMV_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Products of small float32 matrices with a few rows of x: the side network's linears during decoding
/// (36–576 wide, one row per request per step), where a BLAS call's set-up costs more than the arithmetic.
///
/// The weights are stored transposed and padded, wt[i * ldw + j] = W[j][i] for i < in, j < out, zero for
/// out <= j < ldw, ldw = qst_small_gemv_ld(out) (a multiple of 16, so every path loads whole vectors).
/// For each row r < n and output j < out:
///
///   acc_p = fma-sum over i < in with i % P == p, in increasing i, of x[r*ldx + i] * wt[i*ldw + j]
///           (acc_p starts at 0; P = qst_small_gemv_chains(out))
///   s     = ((acc_0 + acc_1) + acc_2) + …                      (in order of p)
///   y[r*ldy + j] = (accumulate ? y[r*ldy + j] + s : s) (+ bias[j] when bias is not NULL)
///
/// Every path computes exactly this (fused multiply-adds, one lane per output), so all paths give the
/// same bits, and a row's result depends on that row alone: one row or several per call, the same bits.
/// Uses the vecmath.h paths (qst_vec_path); returns 0, or -1 if `path` cannot run here or the sizes are
/// invalid.
int qst_small_gemv(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const float *wt, int64_t ldw,
                   int64_t in, int64_t out, const float *bias, int accumulate, int path);

/// The row stride of the transposed weights for `out` outputs: out rounded up to a multiple of 16.
int64_t qst_small_gemv_ld(int64_t out);

/// The number of interleaved partial sums per output (P above): more for narrow outputs, so the vector
/// paths have enough independent chains of multiply-adds: 8 for out <= 16, 4 for <= 32, 2 for <= 96, else 1.
int qst_small_gemv_chains(int64_t out);

/// Packs row-major W [out, in] into wt [in, ldw] (ldw = qst_small_gemv_ld(out)), zero padded.
void qst_small_gemv_pack(float *wt, const float *w, int64_t in, int64_t out);

/// The same product over bfloat16 weights (a side network packed for `--matmul auto`: half the bytes a
/// decode step streams per request). wt holds bfloat16 bits in the layout above; each weight is widened
/// to float32 exactly (bits << 16) and the formula above runs unchanged, so every path gives the same
/// bits, alone or among other rows. Returns as qst_small_gemv.
int qst_small_gemv_bf16(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const uint16_t *wt,
                        int64_t ldw, int64_t in, int64_t out, const float *bias, int accumulate, int path);

/// qst_small_gemv_pack into bfloat16 bits, each weight rounded to nearest even; padding is +0.
void qst_small_gemv_pack_bf16(uint16_t *wt, const float *w, int64_t in, int64_t out);

#ifdef __cplusplus
}
#endif
#endif
