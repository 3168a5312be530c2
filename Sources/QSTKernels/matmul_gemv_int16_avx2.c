// AVX2 NF4 GEMV with integer dot products: the fast approximate path for token generation
// on CPUs without AVX-512 (QST_KERNEL_AVX2_INT16).
//
// The float32 AVX2 GEMV spends ~10 shuffle/blend operations per 16 weights on the 16-entry
// table lookup and is compute bound at ~9 GB/s per core. Here the 16 NF4 values are held as an
// int16 grid (round(16384 * value)), which two vpshufb (low and high bytes) and two unpacks
// look up 32 at a time, and x is rounded to int16 per 32-element group (scale max|x| / 32767),
// so one 32-weight group costs a load, a shift, a mask, two vpshufb, two unpacks, and per row of
// x two vpmaddwd (or AVX-VNNI vpdpwssd) plus one float FMA with the scale absmax * xscale.
// Overflow: a dword lane sums 4 products of at most 16384 * 32767, i.e. < 2^31.
//
// Why not int8 (llama.cpp's Q8 activations, and this path until 2026-12-04): real models' hidden
// states have outlier channels, and rounding a 32-element group to 127 levels of its largest
// element left SmolLM2's logits 5.3 % off (relative Frobenius; BF16 products: 0.8 %); int16 x
// with the int8 grid round(127 * value) still left 2.1 %. With both in int16 the error is ~1e-4
// of the weights, at about the same instruction count.
//
// Error (the bound MatmulTests checks): each weight is off by at most absmax / 32768, each x
// element by at most max|x of its group| / 65534, and a group lies within one aligned 64-element
// span (the 32-element run for blocks not a multiple of 64), so per output
//   |y - exact| <= sum_e absmax_e * (|x_e| / 32768 + 1.01 * max|x| over e's 64-span / 65534)   (+ rounding).
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

// 8 rows of x share one decoding of the weights (a server's batched decode step of 8 requests);
// each row's sums are formed in the same order whatever the rows per pass (same bits alone or not).
#define ROWS_PER_PASS 8

// Rounds 32 elements v[0], v[stride], ... to int16 with scale max|v| / 32767, stored in the
// kernel's register order: elements 0-7, 16-23, 8-15, 24-31 (matmul_gemv_int16_body.h).
static void quantize_group(const float *v, int stride, int16_t *q, float *scale) {
    float amax = 0;
    for (int e = 0; e < 32; e++) amax = fmaxf(amax, fabsf(v[e * stride]));
    const float inv = amax > 0 ? 32767.0f / amax : 0.0f;
    for (int e = 0; e < 32; e++) {
        const int p = e < 8 ? e : e < 16 ? e + 8 : e < 24 ? e - 8 : e;
        q[p] = (int16_t)lrintf(v[e * stride] * inv);
    }
    *scale = amax / 32767.0f;
}

// x rows -> int16 groups of 32 in decode order, plus one float scale per group. span64: each
// 64-element span gives two groups, its even elements then its odd ones; otherwise each
// 32-element run is a group, stored as its 16 even elements, then its 16 odd ones.
static void quantize_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int span64, int16_t *xq, float *xs) {
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

int16_t qst_mm_nf4_int16_grid(int code) { return (int16_t)lrintf(QST_NF4_INT16_GRID * qst_mm_nf4_values[code & 15]); }

// The loop body twice: with AVX-VNNI vpdpwssd and with vpmaddwd + vpaddd.
#define VARIANT vnni
#define TARGET __attribute__((target("avx2,fma,avxvnni")))
#define DOT(acc, w, x) qst_dpwssd_avx_vnni(acc, w, x)
#include "matmul_gemv_int16_body.h"
#undef VARIANT
#undef TARGET
#undef DOT
#define VARIANT plain
#define TARGET __attribute__((target("avx2,fma")))
#define DOT(acc, w, x) _mm256_add_epi32(acc, _mm256_madd_epi16(w, x))
#include "matmul_gemv_int16_body.h"

int qst_mm_gemv_nf4_int16(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni) {
    const int64_t k = w->k;
    int16_t local_q[ROWS_PER_PASS * 2048] __attribute__((aligned(32)));
    float local_s[ROWS_PER_PASS * 64];
    int16_t *xq;
    float *xs;
    if (qst_mm_x16_scratch(ROWS_PER_PASS, k, local_q, local_s, &xq, &xs) != QST_MATMUL_OK) return QST_MATMUL_NO_MEMORY;
    const int span64 = w->block % 64 == 0;
    uint8_t grid[32]; // low bytes of the 16 grid values, then their high bytes
    for (int c = 0; c < 16; c++) {
        const uint16_t g = (uint16_t)qst_mm_nf4_int16_grid(c);
        grid[c] = (uint8_t)(g & 0xFF);
        grid[16 + c] = (uint8_t)(g >> 8);
    }
    for (int64_t i0 = 0; i0 < m; i0 += ROWS_PER_PASS) {
        int64_t mc = m - i0 < ROWS_PER_PASS ? m - i0 : ROWS_PER_PASS;
        quantize_x(x + i0 * ldx, mc, ldx, k, span64, xq, xs);
        if (vnni) gemv_int8_vnni((int)mc, xq, xs, w, grid, y + i0 * ldy, ldy, n0, n1, span64);
        else gemv_int8_plain((int)mc, xq, xs, w, grid, y + i0 * ldy, ldy, n0, n1, span64);
    }
    qst_mm_x16_release(xq, xs, local_q, local_s);
    return QST_MATMUL_OK;
}

#else
int qst_mm_gemv_nf4_int16(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni) {
    (void)x; (void)m; (void)ldx; (void)w; (void)y; (void)ldy; (void)n0; (void)n1; (void)vnni;
    return QST_MATMUL_UNSUPPORTED;
}
int16_t qst_mm_nf4_int16_grid(int code) { (void)code; return 0; }
#endif
