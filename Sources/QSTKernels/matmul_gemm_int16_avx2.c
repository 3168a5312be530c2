// AVX2 NF4 GEMM with int16 dot products, for many rows of x (prompts, training forward) on CPUs
// without AVX-512 (QST_KERNEL_AVX2_INT16, GEMM shape), and with AVX-512 VNNI's microkernel in
// matmul_gemm_int16_avx512.c (QST_KERNEL_AVX512_INT16). The arithmetic is matmul.h's: x rounded to
// int16 per 32 elements (8191 levels, scale max|x| / 8191), NF4 values to round(8191 * value),
// exact int32 sums per 32-element group, then one float32 step per group.
// Per call:
//   - every row of x is rounded once, in element order; pairs of int16 are read as one int32 and
//     broadcast;
//   - for each K chunk, panels of GI16_NR = 16 weight rows are decoded once, transposed so one
//     vector holds one element pair of 8 weight rows ([pair][8 rows][2] int16);
//   - the microkernel keeps GI16_RM x rows times 16 weight rows in int32 accumulators: per pair one
//     vpmaddwd + vpaddd per accumulator (AVX-VNNI: one vpdpwssd), no horizontal adds; after each
//     32-element group the sums are converted and added to float32 accumulators with the scale
//     absmax (per weight row) * x scale (per x row).
// Why not the previous layout (per x row and span, four weight rows folded by a vphaddd tree): vphaddd
// issues at ~1 per 2 cycles here, and the tree cost as much as the multiplies (1.1x the F32 GEMM).
// Why 8191 levels: a group's sum of 32 products of two values <= 8191 must fit an int32.
// Groups holding Inf or NaN give NaN outputs for their row (the reference gives Inf or NaN).
#include "matmul_internal.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GI16_LEVELS 8191.0f
#define GI16_KC QST_INT16_KC // GI16_NP panels of 16 x 256 int16 (32 KiB) stay in L1
#define GI16_NR 16
#define GI16_NP 4
#define GI16_RM 3

#define TARGET_BASE __attribute__((target("avx2,fma")))

// One 32-element group of x rounded to int16 in element order; returns its scale
// max|x| / GI16_LEVELS / GI16_LEVELS (the weight grid's scale folded in), NaN for a group with
// Inf or NaN (whose elements are then stored as 0).
TARGET_BASE static float quantize_group(const float *v, int16_t *q) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 f[4], amax = _mm256_setzero_ps();
    for (int t = 0; t < 4; t++) {
        f[t] = _mm256_loadu_ps(v + 8 * t);
        amax = _mm256_max_ps(amax, _mm256_and_ps(f[t], absmask));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float mx = _mm_cvtss_f32(h);
    const __m256 inv = _mm256_set1_ps(mx > 0 ? GI16_LEVELS / mx : 0.0f);
    __m256i n[4];
    for (int t = 0; t < 4; t++) n[t] = _mm256_cvtps_epi32(_mm256_mul_ps(f[t], inv));
    // packs gives [a 0-3, b 0-3 | a 4-7, b 4-7]; vpermq restores element order.
    const __m256i lo = _mm256_permute4x64_epi64(_mm256_packs_epi32(n[0], n[1]), 0xD8);
    const __m256i hi = _mm256_permute4x64_epi64(_mm256_packs_epi32(n[2], n[3]), 0xD8);
    // NaN, or Inf (whose inverse scale is 0: Inf * 0 = NaN), converts to INT_MIN -> -32768, a value
    // finite inputs never produce (|x * levels / max| <= levels).
    const __m256i m = _mm256_set1_epi16(-32768);
    const __m256i bad = _mm256_or_si256(_mm256_cmpeq_epi16(lo, m), _mm256_cmpeq_epi16(hi, m));
    if (!_mm256_testz_si256(bad, bad) || !(mx <= 3.4e38f)) {
        // Non-finite input (NaN outputs), or a max so small that levels / max overflowed.
        int finite = 1;
        for (int e = 0; e < 32; e++) finite &= isfinite(v[e]) != 0;
        for (int e = 0; e < 32; e++) q[e] = finite ? (int16_t)lrintf(v[e] / mx * GI16_LEVELS) : 0;
        return finite ? mx / GI16_LEVELS / GI16_LEVELS : NAN;
    }
    _mm256_storeu_si256((__m256i *)q, lo);
    _mm256_storeu_si256((__m256i *)(q + 16), hi);
    return mx / GI16_LEVELS / GI16_LEVELS;
}

TARGET_BASE void qst_mm_int16_quantize_rows(const float *x, int64_t m, int64_t ldx, int64_t k, int16_t *xq, float *xs) {
    const int64_t groups = k / 32;
    for (int64_t i = 0; i < m; i++)
        for (int64_t g = 0; g < groups; g++) xs[i * groups + g] = quantize_group(x + i * ldx + g * 32, xq + i * k + g * 32);
}

// Four int32 vectors of 8 rows x 8 pairs each (row r: pairs 0-7) -> 8 vectors of pair p: rows 0-7.
TARGET_BASE static inline void transpose8(const __m256i r[8], __m256i o[8]) {
    __m256i t[8], u[8];
    for (int a = 0; a < 4; a++) {
        t[2 * a] = _mm256_unpacklo_epi32(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm256_unpackhi_epi32(r[2 * a], r[2 * a + 1]);
    }
    for (int b = 0; b < 2; b++) {
        u[4 * b + 0] = _mm256_unpacklo_epi64(t[4 * b + 0], t[4 * b + 2]);
        u[4 * b + 1] = _mm256_unpackhi_epi64(t[4 * b + 0], t[4 * b + 2]);
        u[4 * b + 2] = _mm256_unpacklo_epi64(t[4 * b + 1], t[4 * b + 3]);
        u[4 * b + 3] = _mm256_unpackhi_epi64(t[4 * b + 1], t[4 * b + 3]);
    }
    for (int q = 0; q < 4; q++) {
        o[q] = _mm256_permute2x128_si256(u[q], u[4 + q], 0x20);
        o[q + 4] = _mm256_permute2x128_si256(u[q], u[4 + q], 0x31);
    }
}

// Panel of weight rows [j0, j0 + nr) (nr <= 16; absent rows zero), elements [e0, e0 + ne) (ne a
// multiple of 64): per element pair 16 int32 (pair p of rows 0-7, then of rows 8-15) of grid
// values round(GI16_LEVELS * value), and per 32-element group the 16 rows' absmax.
TARGET_BASE static void pack_panel(const qst_weight *w, int64_t j0, int64_t nr, int64_t e0, int64_t ne,
                                   const uint8_t *glo16, const uint8_t *ghi16, int16_t *panel, float *av) {
    const __m256i glo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)glo16));
    const __m256i ghi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ghi16));
    const __m256i low4 = _mm256_set1_epi8(0x0F), z = _mm256_setzero_si256();
    for (int64_t s = 0; s < ne / 64; s++) {
        const int64_t e = e0 + 64 * s;
        for (int half = 0; half < 2; half++) {
            // dec[r][c]: row r's elements 16c..16c+15 of this span.
            __m256i dec[8][4];
            for (int r = 0; r < 8; r++) {
                const int64_t jr = half * 8 + r;
                if (jr >= nr) {
                    for (int c = 0; c < 4; c++) dec[r][c] = z;
                    continue;
                }
                const __m256i cb = _mm256_loadu_si256((const __m256i *)((const uint8_t *)w->data + ((j0 + jr) * w->k + e) / 2));
                const __m256i ih = _mm256_and_si256(_mm256_srli_epi16(cb, 4), low4), il = _mm256_and_si256(cb, low4);
                // Byte t holds elements 2t (high nibble) and 2t+1: interleaved, code indices
                // [0-15 | 32-47] and [16-31 | 48-63]; the grid's bytes interleaved again give
                // int16 [16h..16h+7 | 32+16h..] and [16h+8..16h+15 | 32+16h+8..].
                for (int h = 0; h < 2; h++) {
                    const __m256i idx = h ? _mm256_unpackhi_epi8(ih, il) : _mm256_unpacklo_epi8(ih, il);
                    const __m256i lo = _mm256_shuffle_epi8(glo, idx), hi = _mm256_shuffle_epi8(ghi, idx);
                    const __m256i a = _mm256_unpacklo_epi8(lo, hi), b = _mm256_unpackhi_epi8(lo, hi);
                    dec[r][h] = _mm256_permute2x128_si256(a, b, 0x20);     // elements 16h .. 16h+15
                    dec[r][2 + h] = _mm256_permute2x128_si256(a, b, 0x31); // elements 32+16h ..
                }
            }
            // dec[r][c] as int32 pairs: pairs 8c..8c+7 of row r.
            for (int c = 0; c < 4; c++) {
                __m256i rows[8], pairs[8];
                for (int r = 0; r < 8; r++) rows[r] = dec[r][c];
                transpose8(rows, pairs);
                for (int p = 0; p < 8; p++)
                    _mm256_store_si256((__m256i *)(panel + ((32 * s + 8 * c + p) * 2 + half) * 16), pairs[p]);
            }
        }
        for (int g = 0; g < 2; g++)
            for (int r = 0; r < GI16_NR; r++)
                av[(2 * s + g) * GI16_NR + r] = r < nr ? w->absmax[((j0 + r) * w->k + e) / w->block] : 0.0f;
    }
}

TARGET_BASE static inline __attribute__((always_inline)) __m256i avx2_dot_acc(__m256i acc, __m256i x, __m256i w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
}
#define VARIANT avx2
#define TARGET TARGET_BASE
#define DOT_ACC(acc, x, w) avx2_dot_acc(acc, x, w)
#include "matmul_gemm_int16_body.h"
#undef VARIANT
#undef TARGET
#undef DOT_ACC

#define TARGET_VNNI __attribute__((target("avx2,fma,avxvnni")))
TARGET_VNNI static inline __attribute__((always_inline)) __m256i vnni_dot_acc(__m256i acc, __m256i x, __m256i w) {
    return qst_dpwssd_avx_vnni(acc, x, w);
}
#define VARIANT vnni
#define TARGET TARGET_VNNI
#define DOT_ACC(acc, x, w) vnni_dot_acc(acc, x, w)
#include "matmul_gemm_int16_body.h"
#undef VARIANT
#undef TARGET
#undef DOT_ACC

int qst_mm_gemm_nf4_int16_grid(int code) { return (int)lrintf(GI16_LEVELS * qst_mm_nf4_values[code & 15]); }

int qst_mm_gemm_nf4_int16(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, qst_int16_dot dot) {
    const int64_t k = w->k, groups = k / 32;
    const size_t xq_bytes = (size_t)(m * k) * sizeof(int16_t), xs_bytes = (size_t)(m * groups) * sizeof(float);
    const size_t panel_bytes = (size_t)GI16_KC * GI16_NR * sizeof(int16_t), aux_bytes = (size_t)(GI16_KC / 32) * GI16_NR * 4;
    char *buf = qst_mm_alloc(xq_bytes + xs_bytes + GI16_NP * (panel_bytes + aux_bytes) + 64);
    if (!buf) return QST_MATMUL_NO_MEMORY;
    int16_t *xq = (int16_t *)buf;
    float *xs = (float *)(buf + xq_bytes);
    int16_t *panel = (int16_t *)(buf + ((xq_bytes + xs_bytes + 63) & ~(size_t)63));
    float *av = (float *)((char *)panel + GI16_NP * panel_bytes);
    uint8_t glo[16], ghi[16];
    for (int c = 0; c < 16; c++) {
        const uint16_t g = (uint16_t)(int16_t)qst_mm_gemm_nf4_int16_grid(c);
        glo[c] = (uint8_t)(g & 0xFF);
        ghi[c] = (uint8_t)(g >> 8);
    }
    qst_mm_int16_quantize_rows(x, m, ldx, k, xq, xs);
    const int64_t pelems = GI16_KC * GI16_NR, aelems = (GI16_KC / 32) * GI16_NR;
    // Each output adds its K chunks in increasing order whichever loop is outside, so both orders give
    // the same bits. Column blocks outside when the outputs of the range outweigh x (the 49,152-column
    // head: its outputs stay in cache while each chunk adds to them, 1.25x); K chunks outside otherwise
    // (the down projection's 1536-wide x stays in cache across the column blocks, 3-5 %).
    const int columns_outside = (n1 - n0) * 4 > k * 2;
    const int64_t nj = (n1 - n0 + GI16_NR * GI16_NP - 1) / (GI16_NR * GI16_NP), ne_chunks = (k + GI16_KC - 1) / GI16_KC;
    for (int64_t outer = 0; outer < (columns_outside ? nj : ne_chunks); outer++)
        for (int64_t inner = 0; inner < (columns_outside ? ne_chunks : nj); inner++) {
            const int64_t j0 = n0 + (columns_outside ? outer : inner) * GI16_NR * GI16_NP;
            const int64_t e0 = (columns_outside ? inner : outer) * GI16_KC;
            const int64_t ne = k - e0 < GI16_KC ? k - e0 : GI16_KC;
            int64_t np = 0, nr = 0;
            for (int64_t j = j0; j < n1 && np < GI16_NP; j += GI16_NR, np++) {
                nr = n1 - j < GI16_NR ? n1 - j : GI16_NR;
#if defined(__x86_64__)
                if (dot == QST_INT16_DOT_AVX512_VNNI)
                    qst_mm_gemm_int16_pack_avx512(w, j, nr, e0, ne, panel + np * pelems, av + np * aelems);
                else
#endif
                    pack_panel(w, j, nr, e0, ne, glo, ghi, panel + np * pelems, av + np * aelems);
            }
#if defined(__x86_64__)
            if (dot == QST_INT16_DOT_AVX512_VNNI)
                qst_mm_gemm_int16_sweep_avx512(xq + e0, k, xs + e0 / 32, groups, m, panel, pelems, av, aelems, np,
                                               ne / 32, y + j0, ldy, nr, e0 == 0);
            else
#endif
            if (dot == QST_INT16_DOT_AVX_VNNI)
                int16_sweep_vnni(xq + e0, k, xs + e0 / 32, groups, m, panel, pelems, av, aelems, np, ne / 32,
                                 y + j0, ldy, nr, e0 == 0);
            else
                int16_sweep_avx2(xq + e0, k, xs + e0 / 32, groups, m, panel, pelems, av, aelems, np, ne / 32,
                                 y + j0, ldy, nr, e0 == 0);
        }
    free(buf);
    return QST_MATMUL_OK;
}

#else
int qst_mm_gemm_nf4_int16(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, qst_int16_dot dot) {
    (void)x; (void)m; (void)ldx; (void)w; (void)y; (void)ldy; (void)n0; (void)n1; (void)dot;
    return QST_MATMUL_UNSUPPORTED;
}
int qst_mm_gemm_nf4_int16_grid(int code) { (void)code; return 0; }
#endif
