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
#include "group_range.h"

// x86 only: other architectures get a stub (the dispatcher never selects it there).
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// 8 rows of x share one decoding of the weights (a server's batched decode step of 8 requests);
// each row's sums are formed in the same order whatever the rows per pass (same bits alone or not).
#define ROWS_PER_PASS 8

// Rounds 32 elements v[0], v[stride], ... to int16 with scale max|v| / 32767, stored in the
// kernel's register order: elements 0-7, 16-23, 8-15, 24-31 (matmul_gemv_int16_body.h). A group
// holding Inf or NaN gets the scale NaN and zero codes (group_range.h; the int16 GEMM does the same).
static void quantize_group(const float *v, int stride, int16_t *q, float *scale) {
    float amax, inv;
    if (!qst_group_range(v, stride, 32767.0f, &amax, &inv)) {
        memset(q, 0, 32 * sizeof *q);
        *scale = NAN;
        return;
    }
    for (int e = 0; e < 32; e++) {
        const int p = e < 8 ? e : e < 16 ? e + 8 : e < 24 ? e - 8 : e;
        q[p] = (int16_t)lrintf(v[e * stride] * inv);
    }
    *scale = amax / 32767.0f;
}

// quantize_group for the 32 elements of e[0..3] (8 each, in element order), vectorised: the same
// maximum, the same scalar 32767 / max, the same products, and vcvtps2dq rounds to nearest even as
// lrintf does; |product| <= 32767 * (1 + 2^-22), so the saturating pack never saturates.
__attribute__((target("avx2,fma"))) static void quantize_group_avx2(const __m256 e[4], int16_t *q, float *scale) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 a0 = _mm256_and_ps(e[0], magnitude), a1 = _mm256_and_ps(e[1], magnitude);
    const __m256 a2 = _mm256_and_ps(e[2], magnitude), a3 = _mm256_and_ps(e[3], magnitude);
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    // Not <= FLT_MAX: Inf, or NaN (unordered).
    const __m256 bad = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(a0, big, _CMP_NLE_UQ), _mm256_cmp_ps(a1, big, _CMP_NLE_UQ)),
                                    _mm256_or_ps(_mm256_cmp_ps(a2, big, _CMP_NLE_UQ), _mm256_cmp_ps(a3, big, _CMP_NLE_UQ)));
    if (_mm256_movemask_ps(bad)) {
        memset(q, 0, 32 * sizeof *q);
        *scale = NAN;
        return;
    }
    __m256 m = _mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    float inv = amax > 0 ? 32767.0f / amax : 0.0f;
    if (!(inv <= FLT_MAX)) inv = 0.0f;
    const __m256 vi = _mm256_set1_ps(inv);
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(e[0], vi)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(e[1], vi));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(e[2], vi)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(e[3], vi));
    // packs works per 128-bit lane: [0-3, 16-19 | 4-7, 20-23] -> 64-bit quarters reordered 0, 2, 1, 3.
    _mm256_storeu_si256((__m256i *)q, _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i2), 0xD8));
    _mm256_storeu_si256((__m256i *)(q + 16), _mm256_permute4x64_epi64(_mm256_packs_epi32(i1, i3), 0xD8));
    *scale = amax / 32767.0f;
}

// One aligned 64-element span: its even elements (group qe) and its odd ones (group qo).
__attribute__((target("avx2,fma"))) static void quantize_span64_avx2(const float *v, int16_t *qe, float *se,
                                                                     int16_t *qo, float *so) {
    __m256 ev[4], od[4];
    for (int t = 0; t < 4; t++) {
        const __m256 lo = _mm256_loadu_ps(v + 16 * t), hi = _mm256_loadu_ps(v + 16 * t + 8);
        // Per 128-bit lane [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6]: 64-bit quarters reordered 0, 2, 1, 3.
        ev[t] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
        od[t] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
    }
    quantize_group_avx2(ev, qe, se);
    quantize_group_avx2(od, qo, so);
}

// x rows -> int16 groups of 32 in decode order, plus one float scale per group. span64: each
// 64-element span gives two groups, its even elements then its odd ones; otherwise each
// 32-element run is a group, stored as its 16 even elements, then its 16 odd ones. vector: the
// span64 groups through quantize_span64_avx2 (the same bits; the C driver compares the two).
void qst_mm_int16_gemv_quantize_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int span64, int vector,
                                  int16_t *xq, float *xs) {
    const int64_t groups = k / 32;
    for (int64_t i = 0; i < mc; i++) {
        const float *xi = x + i * ldx;
        if (span64) {
            for (int64_t g = 0; g < groups; g += 2) {
                int16_t *q = xq + (i * groups + g) * 32;
                float *sc = xs + i * groups + g;
                if (vector) {
                    quantize_span64_avx2(xi + g * 32, q, sc, q + 32, sc + 1);
                } else {
                    quantize_group(xi + g * 32, 2, q, sc);
                    quantize_group(xi + g * 32 + 1, 2, q + 32, sc + 1);
                }
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
        qst_mm_int16_gemv_quantize_x(x + i0 * ldx, mc, ldx, k, span64, 1, xq, xs);
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
void qst_mm_int16_gemv_quantize_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int span64, int vector,
                                  int16_t *xq, float *xs) {
    (void)x; (void)mc; (void)ldx; (void)k; (void)span64; (void)vector; (void)xq; (void)xs;
}
#endif
