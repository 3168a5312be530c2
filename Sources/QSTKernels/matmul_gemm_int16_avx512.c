// The int16 NF4 GEMM's sweep and panel pack with AVX-512 VNNI (QST_KERNEL_AVX512_INT16): 512-bit
// vpdpwssd does 32 int16 products per instruction at the issue rate of a 16-lane float32 FMA (measured
// on an Intel Xeon without AVX512_BF16: 0.17 ns per instruction for both), twice the multiplies of the
// exact AVX-512 GEMM, which is what such CPUs ran for prompts and training batches.
// The driver is matmul_gemm_int16_avx2.c's: x rounded per 32 elements, K chunks, column blocks of
// 16-row weight panels ([pair][16 rows] int32, i.e. one zmm per element pair). A tile takes two
// consecutive panels (32 weight rows, two zmm per pair) and up to RM rows of x, each x pair broadcast
// once for both panels. Per output the operations are the AVX2 tile's (exact int32 group sums, then
// acc += float(sum) * absmax * xscale in float32, chunk sums added to y in chunk order), and the pack
// writes the AVX2 pack's panel, so both paths give the same bits.
#include "matmul_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma")))
#define RM 6 // 6 x 2 int32 + 6 x 2 float32 accumulators, 2 weight and 2 scale vectors: 28 of 32 zmm

// `rows` (<= RM) rows of x times NH (1 or 2) panels of 16 weight rows over groups [0, ng); adds
// into (first chunk: writes) y. nr: columns of the last panel that exist (its others are padding).
TARGET static inline __attribute__((always_inline)) void tile(const int rows, const int NH, const int16_t *xq,
        int64_t ldq, const float *xs, int64_t lds, const int16_t *panel, int64_t pstride, const float *av,
        int64_t astride, int64_t ng, float *y, int64_t ldy, int64_t nr, int first) {
    __m512 acc[RM][2];
    for (int i = 0; i < rows; i++)
        for (int h = 0; h < NH; h++) acc[i][h] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m512i d[RM][2];
        for (int i = 0; i < rows; i++)
            for (int h = 0; h < NH; h++) d[i][h] = _mm512_setzero_si512();
        const int16_t *xp = xq + g * 32;
        for (int p = 0; p < 16; p++) {
            __m512i w[2];
            for (int h = 0; h < NH; h++) w[h] = _mm512_load_si512((const void *)(panel + h * pstride + (g * 16 + p) * 32));
            for (int i = 0; i < rows; i++) {
                int32_t pair;
                memcpy(&pair, xp + i * ldq + 2 * p, 4);
                const __m512i xb = _mm512_set1_epi32(pair); // vpbroadcastd from memory: a load, no shuffle
                for (int h = 0; h < NH; h++) d[i][h] = qst_dpwssd_avx512(d[i][h], w[h], xb);
            }
        }
        __m512 a[2];
        for (int h = 0; h < NH; h++) a[h] = _mm512_load_ps(av + h * astride + g * 16);
        for (int i = 0; i < rows; i++) {
            const __m512 s = _mm512_set1_ps(xs[i * lds + g]);
            for (int h = 0; h < NH; h++)
                acc[i][h] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d[i][h]), a[h]), s, acc[i][h]);
        }
    }
    for (int i = 0; i < rows; i++)
        for (int h = 0; h < NH; h++) {
            const int64_t cols = h == NH - 1 ? nr : 16;
            const __mmask16 keep = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1);
            float *yo = y + i * ldy + 16 * h;
            const __m512 v = first ? acc[i][h] : _mm512_add_ps(_mm512_maskz_loadu_ps(keep, yo), acc[i][h]);
            _mm512_mask_storeu_ps(yo, keep, v);
        }
}

// The AVX2 pack's panel (matmul_gemm_int16_avx2.c), built without its transposes: one dword gather
// reads 8 codes (4 element pairs) of each of the 16 rows, and per pair two vpermd table lookups give
// each lane its int32 (grid value of the even element, the high nibble, in the low half; of the odd
// element in the high half). At 16 rows of x the AVX2 pack took more time than the products.
TARGET void qst_mm_gemm_int16_pack_avx512(const qst_weight *w, int64_t j0, int64_t nr, int64_t e0, int64_t ne,
                                          int16_t *panel, float *av) {
    int32_t even[16], odd[16];
    for (int c = 0; c < 16; c++) {
        const uint32_t g = (uint16_t)(int16_t)qst_mm_gemm_nf4_int16_grid(c);
        even[c] = (int32_t)g;
        odd[c] = (int32_t)(g << 16);
    }
    const __m512i even_t = _mm512_loadu_si512((const void *)even), odd_t = _mm512_loadu_si512((const void *)odd);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __mmask16 rows = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const int64_t k = w->k, per_row = k / w->block;
    const __m512i code_offset = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int32_t)(k / 2)));
    const __m512i scale_offset = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int32_t)per_row));
    const uint8_t *codes = (const uint8_t *)w->data + (j0 * k + e0) / 2;
    int32_t *out = (int32_t *)(void *)panel;
    for (int64_t q = 0; q < ne / 8; q++) {
        const __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, code_offset, codes + 4 * q, 1);
        for (int b = 0; b < 4; b++) { // byte b: element 2b in its high nibble, 2b + 1 in its low one
            const __m512i e = _mm512_permutexvar_epi32(_mm512_srli_epi32(g, 8 * b + 4), even_t);
            const __m512i o = _mm512_permutexvar_epi32(_mm512_srli_epi32(g, 8 * b), odd_t);
            _mm512_store_si512((void *)(out + (4 * q + b) * 16), _mm512_maskz_or_epi32(rows, e, o));
        }
    }
    const float *scales = w->absmax + j0 * per_row;
    for (int64_t gi = 0; gi < ne / 32; gi++)
        _mm512_store_ps(av + gi * 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), rows, scale_offset,
                                                               scales + (e0 + 32 * gi) / w->block, 4));
}

// `rows` rows of x over every panel, in pairs (a last odd one alone).
TARGET static inline __attribute__((always_inline)) void row_tile(const int rows, const int16_t *xq, int64_t ldq,
        const float *xs, int64_t lds, const int16_t *panel, int64_t pstride, const float *av, int64_t astride,
        int64_t np, int64_t ng, float *y, int64_t ldy, int64_t nr, int first) {
    for (int64_t p = 0; p < np; p += 2) {
        const int64_t last = p + 2 >= np ? nr : 16;
        const int16_t *pp = panel + p * pstride;
        const float *ap = av + p * astride;
        if (p + 1 < np)
            tile(rows, 2, xq, ldq, xs, lds, pp, pstride, ap, astride, ng, y + p * 16, ldy, last, first);
        else
            tile(rows, 1, xq, ldq, xs, lds, pp, pstride, ap, astride, ng, y + p * 16, ldy, last, first);
    }
}

// Rows of x in tiles of RM, the rest in one smaller tile (one row at a time would load the weights
// once per row: 16 rows ran 1.2x slower than the exact GEMM that way); the x tile stays in L1 across
// the panels. Arguments as the AVX2 sweep's (matmul_internal.h).
TARGET void qst_mm_gemm_int16_sweep_avx512(const int16_t *xq, int64_t ldq, const float *xs, int64_t lds, int64_t m,
                                           const int16_t *panel, int64_t pstride, const float *av, int64_t astride,
                                           int64_t np, int64_t ng, float *y, int64_t ldy, int64_t nr, int first) {
    int64_t i = 0;
    for (; i + RM <= m; i += RM)
        row_tile(RM, xq + i * ldq, ldq, xs + i * lds, lds, panel, pstride, av, astride, np, ng, y + i * ldy, ldy, nr, first);
    const int64_t rest = m - i;
    xq += i * ldq, xs += i * lds, y += i * ldy;
    switch (rest) { // the tile's row count must be a constant for its accumulators to stay in registers
    case 1: row_tile(1, xq, ldq, xs, lds, panel, pstride, av, astride, np, ng, y, ldy, nr, first); break;
    case 2: row_tile(2, xq, ldq, xs, lds, panel, pstride, av, astride, np, ng, y, ldy, nr, first); break;
    case 3: row_tile(3, xq, ldq, xs, lds, panel, pstride, av, astride, np, ng, y, ldy, nr, first); break;
    case 4: row_tile(4, xq, ldq, xs, lds, panel, pstride, av, astride, np, ng, y, ldy, nr, first); break;
    case 5: row_tile(5, xq, ldq, xs, lds, panel, pstride, av, astride, np, ng, y, ldy, nr, first); break;
    default: break;
    }
}

#endif
