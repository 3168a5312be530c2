#ifndef QST_Q8_H
#define QST_Q8_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Q8 rows: int8 values with one float scale per 64-element block along a row. Element e of row j
/// is q[j*k + e] * scales[j*(k/64) + e/64] / 127, with q in [-127, 127] and the scale the block's
/// largest magnitude. The engine keeps a Q8 copy of a BF16/F32 output head for decoding: half the
/// bytes of BF16 per token, where decoding is bound by memory bandwidth.
#define QST_Q8_BLOCK 64

typedef enum {
    QST_Q8_AUTO = -1,
    /// Portable C, float32 products of x with the Q8 values: the reference.
    QST_Q8_SCALAR = 0,
    /// x rounded to int8 per 32 elements, vpmaddubsw + vpmaddwd (AVX2).
    QST_Q8_AVX2 = 1,
    /// The same with AVX-VNNI vpdpbusd.
    QST_Q8_AVX2_VNNI = 2,
    /// 512-bit vpdpbusd (AVX512-VNNI + BW).
    QST_Q8_AVX512_VNNI = 3,
    /// x rounded to int8 per 32 elements, NEON widening multiplies.
    QST_Q8_NEON = 4,
    /// The same with sdot (FEAT_DotProd).
    QST_Q8_NEON_DOT = 5,
} qst_q8_path;

/// Quantizes `rows` rows of k elements (k a multiple of 64; row stride ld elements) of BF16 bits
/// (src_is_bf16 = 1) or float32 into q (rows*k bytes) and scales (rows*k/64 floats).
void qst_q8_quantize_rows(const void *src, int src_is_bf16, int64_t rows, int64_t k, int64_t ld,
                          int8_t *q, float *scales);

/// y[i*ldy + j] = sum_e x[i*ldx + e] * W[j][e] for i < m, n0 <= j < n1. The int8 paths round x
/// to int8 per 32-element group (scale max|x| / 127), so per output
///   |y - y_scalar| <= sum_e |W[j][e]| * max|x| over e's group / 254   (+ float rounding).
/// Returns 0, or -1 when the path cannot run on this CPU (or k is not a multiple of 64).
int qst_q8_gemv(const float *x, int64_t m, int64_t ldx, const int8_t *q, const float *scales, int64_t k,
                float *y, int64_t ldy, int64_t n0, int64_t n1, int path);

/// 1 if `path` can run on this CPU (after any QST_KERNELS cap).
int qst_q8_supported(int path);

/// The fastest path this CPU runs (what QST_Q8_AUTO uses).
int qst_q8_best_path(void);

/// "scalar", "avx2_int8", ... for reports.
const char *qst_q8_path_name(int path);

#ifdef __cplusplus
}
#endif
#endif
