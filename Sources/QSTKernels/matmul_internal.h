// Private interface between the matmul dispatcher (matmul.c) and its kernels.
#ifndef QST_MATMUL_INTERNAL_H
#define QST_MATMUL_INTERNAL_H
#include "matmul.h"
#include <stddef.h>
#include <stdlib.h>

// All kernels receive arguments already validated by matmul.c: m > 0, n0 < n1 <= w->n,
// ldx >= k, ldy >= n1, NF4 block even and dividing k.

int qst_mm_scalar(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                  float *y, int64_t ldy, int64_t n0, int64_t n1);

// use_bf16: 0 = exact float32 products, 1 = vdpbf16ps with x (and W) rounded to bfloat16.
int qst_mm_gemv_avx512(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                       float *y, int64_t ldy, int64_t n0, int64_t n1, int use_bf16);
int qst_mm_gemm_avx512(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                       float *y, int64_t ldy, int64_t n0, int64_t n1, int use_bf16);

// AVX2 + FMA, exact float32 products (NF4 block % 16 == 0).
int qst_mm_gemv_avx2(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                     float *y, int64_t ldy, int64_t n0, int64_t n1);
int qst_mm_gemm_avx2(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                     float *y, int64_t ldy, int64_t n0, int64_t n1);

// AVX2 NF4 GEMV with int16 dot products (block % 32 == 0); vnni: use AVX-VNNI vpdpwssd.
int qst_mm_gemv_nf4_int16(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni);
// The int16 GEMM's dot-product instructions: AVX2 vpmaddwd + vpaddd, AVX-VNNI vpdpwssd (256-bit),
// AVX-512 VNNI vpdpwssd (512-bit). All three give the same bits.
typedef enum { QST_INT16_DOT_AVX2 = 0, QST_INT16_DOT_AVX_VNNI = 1, QST_INT16_DOT_AVX512_VNNI = 2 } qst_int16_dot;
// NF4 GEMM with int16 dot products (block % 64 == 0, x rounded to 8191 levels per 32 elements).
int qst_mm_gemm_nf4_int16(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, qst_int16_dot dot);
// Its AVX-512 VNNI sweep (matmul_gemm_int16_avx512.c): m rows of rounded x (int16 xq, row stride ldq;
// per-group scales xs, row stride lds) times np panels of 16 weight rows (panel p at panel + p *
// pstride, its per-group absmax at av + p * astride; nr columns in the last) over ng groups; writes
// (first) or adds to y.
// Its AVX-512 panel pack: weight rows [j0, j0 + nr) (nr <= 16), elements [e0, e0 + ne) (ne a multiple of
// 64), into the AVX2 pack's layout (per element pair 16 int32, one per row; absent rows 0) and per
// 32-element group the rows' absmax (av, 16 floats per group).
void qst_mm_gemm_int16_pack_avx512(const qst_weight *w, int64_t j0, int64_t nr, int64_t e0, int64_t ne,
                                   int16_t *panel, float *av);
void qst_mm_gemm_int16_sweep_avx512(const int16_t *xq, int64_t ldq, const float *xs, int64_t lds, int64_t m,
                                    const int16_t *panel, int64_t pstride, const float *av, int64_t astride,
                                    int64_t np, int64_t ng, float *y, int64_t ldy, int64_t nr, int first);
// Its weight grid: round(8191 * value).
int qst_mm_gemm_nf4_int16_grid(int code);
// Its x rounding: m rows (stride ldx, k a multiple of 32) to int16 per 32-element group, xq row stride k,
// xs (one scale per group, row stride k / 32) with the grid's scale folded in; NaN for a group with Inf/NaN.
void qst_mm_int16_quantize_rows(const float *x, int64_t m, int64_t ldx, int64_t k, int16_t *xq, float *xs);
// Its K chunk: each output sums its chunks of this many elements separately, then adds them in order.
#define QST_INT16_KC 256
// The same arithmetic for few rows, the panels decoded in registers (matmul_gemv_int16_avx512.c): the
// GEMM's bits for every row.
int qst_mm_gemv_nf4_int16_avx512(const float *x, int64_t m, int64_t ldx, const qst_weight *w, float *y,
                                 int64_t ldy, int64_t n0, int64_t n1);
// round(QST_NF4_INT16_GRID * NF4 value of code): the int16 grid of the AVX2_INT16 path.
#define QST_NF4_INT16_GRID 16384.0f
int16_t qst_mm_nf4_int16_grid(int code);
// Its x rounding (x86 only): mc rows to int16 groups of 32 in its decode order and one scale per group
// (NaN for a group with Inf/NaN); vector: the AVX2 loop for blocks of a multiple of 64 (span64), which
// gives the scalar loop's bits.
void qst_mm_int16_gemv_quantize_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int span64, int vector,
                                  int16_t *xq, float *xs);

// NF4 GEMV through bfloat16 dot products; needs block % 64 == 0.
int qst_mm_gemv_nf4_bf16(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1);

// Rounds m rows of x (stride ldx, k used) to bfloat16 (nearest even) into xb with row
// stride kp (a multiple of 32 >= k), zero padding columns [k, kp).
void qst_mm_x_to_bf16(const float *x, int64_t m, int64_t ldx, int64_t k, int64_t kp, uint16_t *xb);

// ARM64 NEON (matmul_neon.c): use_dot 0 = exact float32 FMA, 1 = int8 sdot (NF4 only,
// block % 32 == 0, FEAT_DotProd present; other weight types run the exact loop).
int qst_mm_neon(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                float *y, int64_t ldy, int64_t n0, int64_t n1, int use_dot);

// 64-byte aligned scratch; NULL on failure. Free with free().
void *qst_mm_alloc(size_t bytes);

// Frees what qst_mm_x16_scratch allocated (nothing when it handed out the caller's stack arrays).
static inline void qst_mm_x16_release(int16_t *xq, float *xs, const int16_t *local_q, const float *local_s) {
    if (xq != local_q) free(xq);
    if (xs != local_s) free(xs);
}
// x rounded to int16 for one pass of the int16 GEMVs (`rows` rows of k, one scale per 32 elements): the
// caller's stack arrays (rows x 2048 and rows x 64) when k <= 2048, else allocated. QST_MATMUL_OK or
// QST_MATMUL_NO_MEMORY (nothing left allocated); release with qst_mm_x16_release.
static inline int qst_mm_x16_scratch(int64_t rows, int64_t k, int16_t *local_q, float *local_s, int16_t **xq, float **xs) {
    *xq = k <= 2048 ? local_q : qst_mm_alloc((size_t)(rows * k) * sizeof(int16_t));
    *xs = k <= 2048 ? local_s : qst_mm_alloc((size_t)(rows * (k / 32)) * sizeof(float));
    if (*xq && *xs) return QST_MATMUL_OK;
    qst_mm_x16_release(*xq, *xs, local_q, local_s);
    return QST_MATMUL_NO_MEMORY;
}

#if defined(__x86_64__)
#include <immintrin.h>
// acc + the pairwise int16 products of a and b (vpdpwssd), AVX-VNNI (256-bit, VEX) and AVX-512 VNNI
// (512-bit). In assembly because LLVM's machine combiner rewrites the intrinsics into vpmaddwd + vpaddd
// on every CPU it does not tune as fast for vpdpwssd (llvm-project issue 84182; only AMD Zen 4 and 5
// are), two instructions where the CPU has one: one SmolLM2 layer in the 512-bit int16 GEMM took 1.45x as long
// that way (128 rows, Intel Xeon without AVX512_BF16).
__attribute__((target("avx2,avxvnni"))) static inline __attribute__((always_inline)) __m256i
qst_dpwssd_avx_vnni(__m256i acc, __m256i a, __m256i b) {
    __asm__("%{vex%} vpdpwssd %2, %1, %0" : "+x"(acc) : "x"(a), "x"(b)); // "x": ymm0-15, VEX-encodable
    return acc;
}
__attribute__((target("avx512f,avx512vnni"))) static inline __attribute__((always_inline)) __m512i
qst_dpwssd_avx512(__m512i acc, __m512i a, __m512i b) {
    __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
}
#endif

#endif
