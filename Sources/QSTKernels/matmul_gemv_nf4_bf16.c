// NF4 GEMV with bfloat16 dot products: the fast path for token generation.
//
// The exact GEMV spends three shuffles per 16 code bytes (vpmovzxbd + 2 vpermps) and the
// shuffle unit caps it at ~14 GB/s per core. Here 64 code bytes are read as 32 words;
// shifting each word by 4, 0, 12, 8 puts one of its four codes in the low bits, and one
// vpermw per shift looks the codes up in a 32-entry bfloat16 table (the 16 NF4 values
// twice, so the stray fifth index bit does not matter): 4 shuffles per 128 weights.
// Vector p, word w holds element 4w+p of the 128-element group; vdpbf16ps pairs words
// 2t, 2t+1, i.e. elements 8t+p and 8t+4+p, so dword t covers elements [8t, 8t+8) and
// dwords 0-7 / 8-15 are the two 64-element halves, each inside one absmax block
// (block % 64 == 0). x is rounded and reordered to match once per call.
// Error: NF4 constants and x rounded to bfloat16 (about 2^-9 relative each).
#include "matmul_internal.h"
#include "bf16_round.h"

// x86-64 only (AVX-512); other architectures link matmul_x86_absent.c instead.
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))
// 8 rows of x share one decoding of the weights (the vpermw lookups are a third of a 4-row pass):
// a server's batched decode step of 8 requests decodes each weight once. Each row's sums are formed
// in the same order whatever the rows per pass, so a row gets the same bits alone or with others.
#define ROWS_PER_PASS 8
#define MAX_JR 4
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 4096
#endif
// Weight rows per step: MC x JR accumulators plus the four decoded vectors stay in registers (beyond
// 4 rows of x, two weight rows spilled: 8 rows took 1.5x two passes of 4; one weight row per step
// takes 0.93x, Scripts/bench-kernels-rows).
#define JR_FOR(MC) ((MC) <= 2 ? 4 : (MC) <= 4 ? 2 : 1)

// x rows -> bfloat16, each 128-element group reordered to the decode order (word w of
// vector p = element 4w+p); zero padded to kp (a multiple of 128).
TARGET static void prepare_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int64_t kp, uint16_t *xp) {
    uint16_t index[4][32];
    for (int p = 0; p < 4; p++)
        for (int w = 0; w < 32; w++) index[p][w] = (uint16_t)((4 * w + p) & 63); // word of the pair (Za, Zb)
    for (int64_t i = 0; i < mc; i++) {
        const float *xi = x + i * ldx;
        for (int64_t g = 0; g < kp; g += 128) {
            __m512i z[4];
            for (int q = 0; q < 4; q++) {
                int64_t e = g + 32 * q, left = k - e;
                __mmask16 m0 = left >= 16 ? 0xFFFF : (left <= 0 ? 0 : (__mmask16)((1u << left) - 1));
                __mmask16 m1 = left >= 32 ? 0xFFFF : (left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1));
                __m512 a = _mm512_maskz_loadu_ps(m0, xi + e);
                __m512 b = _mm512_maskz_loadu_ps(m1, xi + e + 16);
                z[q] = (__m512i)_mm512_cvtne2ps_pbh(b, a);
            }
            for (int p = 0; p < 4; p++) {
                __m512i idx = _mm512_loadu_si512((const void *)index[p]);
                __m512i lo = _mm512_permutex2var_epi16(z[0], idx, z[1]); // words 0..15 valid
                __m512i hi = _mm512_permutex2var_epi16(z[2], idx, z[3]); // words 16..31 valid
                _mm512_storeu_si512((void *)(xp + i * kp + g + 32 * p), _mm512_mask_blend_epi16(0xFFFF0000u, lo, hi));
            }
        }
    }
}

// 64 code bytes -> four vectors of 32 bfloat16 weights (unscaled NF4 values).
TARGET INLINE void decode64(__m512i c, __m512i table, __m512i out[4]) {
    out[0] = _mm512_permutexvar_epi16(_mm512_srli_epi16(c, 4), table);
    out[1] = _mm512_permutexvar_epi16(c, table);
    out[2] = _mm512_permutexvar_epi16(_mm512_srli_epi16(c, 12), table);
    out[3] = _mm512_permutexvar_epi16(_mm512_srli_epi16(c, 8), table);
}

TARGET INLINE void nf4_dot_step(const int MC, const int JR, const uint16_t *xp, int64_t kp, const qst_weight *w,
                                __m512i table, float *y, int64_t ldy, int64_t j) {
    const int64_t k = w->k, block = w->block, blocks = k / block;
    __m512 total[ROWS_PER_PASS][MAX_JR];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) total[i][r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < k; g += 128) {
        const int full = g + 128 <= k;
        for (int r = 0; r < JR; r++) {
            const uint8_t *codes = (const uint8_t *)w->data + (j + r) * (k / 2) + g / 2;
            const float *scale = w->absmax + (j + r) * blocks;
            // Weights are read once per token, always from DRAM: prefetch ~4 KiB ahead so the
            // stream is at full speed from the first rows of these small matrices.
            _mm_prefetch((const char *)codes + PREFETCH_BYTES, _MM_HINT_T0);
            __m512i c = full ? _mm512_loadu_si512((const void *)codes)
                             : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)codes));
            __m512i wv[4];
            decode64(c, table, wv);
            __m512 s = _mm512_set1_ps(scale[g / block]);
            s = _mm512_insertf32x8(s, _mm256_set1_ps(full ? scale[(g + 64) / block] : 0.0f), 1);
            for (int i = 0; i < MC; i++) {
                const uint16_t *xi = xp + i * kp + g;
                __m512 d0 = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)wv[0], (__m512bh)_mm512_loadu_si512((const void *)xi));
                __m512 d1 = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)wv[2], (__m512bh)_mm512_loadu_si512((const void *)(xi + 64)));
                d0 = _mm512_dpbf16_ps(d0, (__m512bh)wv[1], (__m512bh)_mm512_loadu_si512((const void *)(xi + 32)));
                d1 = _mm512_dpbf16_ps(d1, (__m512bh)wv[3], (__m512bh)_mm512_loadu_si512((const void *)(xi + 96)));
                total[i][r] = _mm512_fmadd_ps(_mm512_add_ps(d0, d1), s, total[i][r]);
            }
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) y[i * ldy + j + r] = _mm512_reduce_add_ps(total[i][r]);
}

TARGET INLINE void nf4_dot_rows(const int MC, const uint16_t *xp, int64_t kp, const qst_weight *w, __m512i table,
                                float *y, int64_t ldy, int64_t n0, int64_t n1) {
    int64_t j = n0;
    for (; j + JR_FOR(MC) <= n1; j += JR_FOR(MC)) nf4_dot_step(MC, JR_FOR(MC), xp, kp, w, table, y, ldy, j);
    for (; j < n1; j++) nf4_dot_step(MC, 1, xp, kp, w, table, y, ldy, j);
}

TARGET int qst_mm_gemv_nf4_bf16(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                                float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const int64_t kp = (w->k + 127) & ~(int64_t)127;
    uint16_t values[32];
    for (int c = 0; c < 32; c++) values[c] = qst_bf16_round(qst_mm_nf4_values[c & 15]);
    const __m512i table = _mm512_loadu_si512((const void *)values);
    // Small x buffers live on the stack: a heap allocation per call is a measurable share
    // of a ~5 microsecond GEMV.
    uint16_t local[ROWS_PER_PASS * 2048] __attribute__((aligned(64)));
    uint16_t *xp = kp <= 2048 ? local : qst_mm_alloc((size_t)(ROWS_PER_PASS * kp) * sizeof(uint16_t));
    if (!xp) return QST_MATMUL_NO_MEMORY;
    for (int64_t i0 = 0; i0 < m; i0 += ROWS_PER_PASS) {
        int64_t mc = m - i0 < ROWS_PER_PASS ? m - i0 : ROWS_PER_PASS;
        prepare_x(x + i0 * ldx, mc, ldx, w->k, kp, xp);
        float *yi = y + i0 * ldy;
        switch (mc) {
        case 1: nf4_dot_rows(1, xp, kp, w, table, yi, ldy, n0, n1); break;
        case 2: nf4_dot_rows(2, xp, kp, w, table, yi, ldy, n0, n1); break;
        case 3: nf4_dot_rows(3, xp, kp, w, table, yi, ldy, n0, n1); break;
        case 4: nf4_dot_rows(4, xp, kp, w, table, yi, ldy, n0, n1); break;
        case 5: nf4_dot_rows(5, xp, kp, w, table, yi, ldy, n0, n1); break;
        case 6: nf4_dot_rows(6, xp, kp, w, table, yi, ldy, n0, n1); break;
        case 7: nf4_dot_rows(7, xp, kp, w, table, yi, ldy, n0, n1); break;
        default: nf4_dot_rows(8, xp, kp, w, table, yi, ldy, n0, n1); break;
        }
    }
    if (xp != local) free(xp);
    return QST_MATMUL_OK;
}
#endif // __x86_64__
