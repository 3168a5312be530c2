// AVX2 NF4 GEMV with integer dot products: the fast approximate path for token generation
// on CPUs without AVX-512 (QST_KERNEL_AVX2_INT8).
//
// The float32 AVX2 GEMV spends ~10 shuffle/blend operations per 16 weights on the 16-entry
// table lookup and is compute bound at ~9 GB/s per core. Here the 16 NF4 values are held
// as an int8 grid (round(127 * value)), which vpshufb looks up 32 at a time, and x is
// rounded to int8 per 32-element group (scale max|x| / 127), so one 32-weight group costs
// a load, a shift, a mask, a vpshufb, and per row of x a sign fix-up and one integer dot
// product (vpmaddubsw + vpmaddwd, or AVX-VNNI vpdpbusd) plus one float FMA with the scale
// absmax / 127 * xscale. (The same route llama.cpp takes for IQ4_NL; this code is ours.)
//
// Error (the bound MatmulTests checks): each weight is off by at most absmax / 254, each x
// element by at most max|x of its group| / 254, and a group lies within one aligned 64-element
// span (the 32-element run for blocks not a multiple of 64), so per output
//   |y - exact| <= sum_e absmax_e * (|x_e| + 1.01 * max|x| over e's 64-span) / 254   (+ rounding).
//
// Layout: 16 code bytes hold elements 2t (high nibble) and 2t+1 (low nibble); the low
// 128-bit lane takes the high nibbles (the 16 even elements), the high lane the low ones,
// and x is stored per group in that order (evens, then odds).
#include "matmul_internal.h"

// x86 only: other architectures get a stub (the dispatcher never selects it there).
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#define ROWS_PER_PASS 4

// Rounds 32 elements v[0], v[stride], ... to int8 with scale max|v| / 127.
static void quantize_group(const float *v, int stride, int8_t *q, float *scale) {
    float amax = 0;
    for (int e = 0; e < 32; e++) amax = fmaxf(amax, fabsf(v[e * stride]));
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    for (int e = 0; e < 32; e++) q[e] = (int8_t)lrintf(v[e * stride] * inv);
    *scale = amax / 127.0f;
}

// x rows -> int8 groups of 32 in decode order, plus one float scale per group. span64: each
// 64-element span gives two groups, its even elements then its odd ones; otherwise each
// 32-element run is a group, stored as its 16 even elements, then its 16 odd ones.
static void quantize_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int span64, int8_t *xq, float *xs) {
    const int64_t groups = k / 32;
    for (int64_t i = 0; i < mc; i++) {
        const float *xi = x + i * ldx;
        if (span64) {
            for (int64_t g = 0; g < groups; g += 2) {
                quantize_group(xi + g * 32, 2, xq + (i * groups + g) * 32, xs + i * groups + g);
                quantize_group(xi + g * 32 + 1, 2, xq + (i * groups + g + 1) * 32, xs + i * groups + g + 1);
            }
            continue;
        }
        for (int64_t g = 0; g < groups; g++) {
            float tmp[32];
            for (int t = 0; t < 16; t++) { tmp[t] = xi[g * 32 + 2 * t]; tmp[16 + t] = xi[g * 32 + 2 * t + 1]; }
            quantize_group(tmp, 1, xq + (i * groups + g) * 32, xs + i * groups + g);
        }
    }
}

int8_t qst_mm_nf4_int8_grid(int code) { return (int8_t)lrintf(127.0f * qst_mm_nf4_values[code & 15]); }

// The loop body twice: with AVX-VNNI vpdpbusd and with vpmaddubsw + vpmaddwd.
#define VARIANT vnni
#define TARGET __attribute__((target("avx2,fma,avxvnni")))
#define DOT(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#include "matmul_gemv_int8_body.h"
#undef VARIANT
#undef TARGET
#undef DOT
#define VARIANT plain
#define TARGET __attribute__((target("avx2,fma")))
#define DOT(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
#include "matmul_gemv_int8_body.h"

int qst_mm_gemv_nf4_int8(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni) {
    const int64_t k = w->k, groups = k / 32;
    int8_t local_q[ROWS_PER_PASS * 2048] __attribute__((aligned(32)));
    float local_s[ROWS_PER_PASS * 64];
    int8_t *xq = k <= 2048 ? local_q : qst_mm_alloc((size_t)(ROWS_PER_PASS * k));
    float *xs = k <= 2048 ? local_s : qst_mm_alloc((size_t)(ROWS_PER_PASS * groups) * sizeof(float));
    if (!xq || !xs) {
        if (xq != local_q) free(xq);
        if (xs != local_s) free(xs);
        return QST_MATMUL_NO_MEMORY;
    }
    const int span64 = w->block % 64 == 0;
    int8_t grid[32];
    for (int c = 0; c < 32; c++) grid[c] = qst_mm_nf4_int8_grid(c);
    for (int64_t i0 = 0; i0 < m; i0 += ROWS_PER_PASS) {
        int64_t mc = m - i0 < ROWS_PER_PASS ? m - i0 : ROWS_PER_PASS;
        quantize_x(x + i0 * ldx, mc, ldx, k, span64, xq, xs);
        if (vnni) gemv_int8_vnni((int)mc, xq, xs, w, grid, y + i0 * ldy, ldy, n0, n1, span64);
        else gemv_int8_plain((int)mc, xq, xs, w, grid, y + i0 * ldy, ldy, n0, n1, span64);
    }
    if (xq != local_q) free(xq);
    if (xs != local_s) free(xs);
    return QST_MATMUL_OK;
}

#else
int qst_mm_gemv_nf4_int8(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni) {
    (void)x; (void)m; (void)ldx; (void)w; (void)y; (void)ldy; (void)n0; (void)n1; (void)vnni;
    return QST_MATMUL_UNSUPPORTED;
}
int8_t qst_mm_nf4_int8_grid(int code) { (void)code; return 0; }
#endif
