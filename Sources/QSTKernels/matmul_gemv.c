// AVX-512 GEMV loops for few rows of x (token generation): every weight byte is read
// once and decoded in registers, so the loops run at memory bandwidth. x is prepared
// once per call into the layout the decode produces (even/odd elements apart), which
// keeps the hot loop free of shuffles on x.
#include "matmul_internal.h"

// x86-64 only (AVX-512); other architectures link matmul_x86_absent.c instead.
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))
#define ROWS_PER_PASS 4

// x rows -> per 32-element group: 16 even elements, then 16 odd elements; zero padded.
TARGET static void deinterleave_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int64_t kp, float *xd) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t i = 0; i < mc; i++) {
        const float *xi = x + i * ldx;
        float *di = xd + i * kp;
        for (int64_t g = 0; g < kp; g += 32) {
            int64_t left = k - g;
            __mmask16 m0 = left >= 16 ? 0xFFFF : (left <= 0 ? 0 : (__mmask16)((1u << left) - 1));
            int64_t left1 = left - 16;
            __mmask16 m1 = left1 >= 16 ? 0xFFFF : (left1 <= 0 ? 0 : (__mmask16)((1u << left1) - 1));
            __m512 a = _mm512_maskz_loadu_ps(m0, xi + g);
            __m512 b = _mm512_maskz_loadu_ps(m1, xi + g + 16);
            _mm512_storeu_ps(di + g, _mm512_permutex2var_ps(a, even, b));
            _mm512_storeu_ps(di + g + 16, _mm512_permutex2var_ps(a, odd, b));
        }
    }
}

// x rows -> bfloat16 pairs in natural order, zero padded to kp (multiple of 32).
TARGET void qst_mm_x_to_bf16(const float *x, int64_t mc, int64_t ldx, int64_t k, int64_t kp, uint16_t *xb) {
    for (int64_t i = 0; i < mc; i++) {
        const float *xi = x + i * ldx;
        for (int64_t g = 0; g < kp; g += 32) {
            int64_t left = k - g;
            __mmask16 m0 = left >= 16 ? 0xFFFF : (left <= 0 ? 0 : (__mmask16)((1u << left) - 1));
            int64_t left1 = left - 16;
            __mmask16 m1 = left1 >= 16 ? 0xFFFF : (left1 <= 0 ? 0 : (__mmask16)((1u << left1) - 1));
            __m512 a = _mm512_maskz_loadu_ps(m0, xi + g);
            __m512 b = _mm512_maskz_loadu_ps(m1, xi + g + 16);
            __m512bh v = _mm512_cvtne2ps_pbh(b, a);
            _mm512_storeu_si512((void *)(xb + i * kp + g), (__m512i)v);
        }
    }
}

// Weight rows decoded side by side: several independent memory streams keep more cache
// misses in flight than one row at a time (one row at a time reached only ~7 GB/s).
#define JR_FOR(MC) ((MC) <= 2 ? 4 : 2)
#define MAX_JR 4

// NF4: per block the 16-entry table is scaled by absmax once, then vpermps turns codes
// into weights directly (vpermps reads only the low 4 index bits, so no masking).
TARGET INLINE void nf4_step(const int MC, const int JR, const float *xd, int64_t kp, const qst_weight *w,
                            float *y, int64_t ldy, int64_t j) {
    const __m512 lut = _mm512_loadu_ps(qst_mm_nf4_values);
    const int64_t k = w->k, groups_per_block = w->block / 32, blocks = k / w->block;
    const uint8_t *codes[MAX_JR];
    const float *scale[MAX_JR];
    for (int r = 0; r < JR; r++) {
        codes[r] = (const uint8_t *)w->data + (j + r) * (k / 2);
        scale[r] = w->absmax + (j + r) * blocks;
    }
    __m512 acc[ROWS_PER_PASS][MAX_JR][2];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) acc[i][r][0] = acc[i][r][1] = _mm512_setzero_ps();
    int64_t g = 0;
    for (int64_t b = 0; b < blocks; b++) {
        __m512 table[MAX_JR];
        for (int r = 0; r < JR; r++) table[r] = _mm512_mul_ps(lut, _mm512_set1_ps(scale[r][b]));
        for (int64_t t = 0; t < groups_per_block; t++, g++) {
            for (int r = 0; r < JR; r++) {
                // Weights come from DRAM once per token: prefetch ahead (one per cache line).
                if ((g & 3) == 0) _mm_prefetch((const char *)codes[r] + g * 16 + 4096, _MM_HINT_T0);
                __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes[r] + g * 16)));
                __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), table[r]);
                __m512 wl = _mm512_permutexvar_ps(idx, table[r]);
                for (int i = 0; i < MC; i++) {
                    const float *xi = xd + i * kp + g * 32;
                    acc[i][r][0] = _mm512_fmadd_ps(wh, _mm512_loadu_ps(xi), acc[i][r][0]);
                    acc[i][r][1] = _mm512_fmadd_ps(wl, _mm512_loadu_ps(xi + 16), acc[i][r][1]);
                }
            }
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) y[i * ldy + j + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][r][0], acc[i][r][1]));
}

// BF16 weights, exact: a dword holds elements 2t (low half) and 2t+1 (high half); shifting
// and masking yields them as float32 already split even/odd, matching the x layout.
TARGET INLINE void bf16_exact_step(const int MC, const int JR, const float *xd, int64_t kp, const qst_weight *w,
                                   float *y, int64_t ldy, int64_t j) {
    const int64_t k = w->k;
    const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512 acc[ROWS_PER_PASS][MAX_JR][2];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) acc[i][r][0] = acc[i][r][1] = _mm512_setzero_ps();
    // Full groups unmasked (masked loads in the hot loop cost about half the bandwidth).
    int64_t g = 0;
    for (; g < kp; g += 32) {
        int64_t left = k - g;
        __mmask32 mk = left >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << left) - 1);
        for (int r = 0; r < JR; r++) {
            const uint16_t *row = (const uint16_t *)w->data + (j + r) * w->ld + g;
            __m512i v = left >= 32 ? _mm512_loadu_si512((const void *)row) : _mm512_maskz_loadu_epi16(mk, row);
            __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            __m512 wo = _mm512_castsi512_ps(_mm512_and_si512(v, high));
            for (int i = 0; i < MC; i++) {
                const float *xi = xd + i * kp + g;
                acc[i][r][0] = _mm512_fmadd_ps(we, _mm512_loadu_ps(xi), acc[i][r][0]);
                acc[i][r][1] = _mm512_fmadd_ps(wo, _mm512_loadu_ps(xi + 16), acc[i][r][1]);
            }
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) y[i * ldy + j + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][r][0], acc[i][r][1]));
}

// BF16 weights with vdpbf16ps: one instruction per 32 weights and row of x.
TARGET INLINE void bf16_dot_step(const int MC, const int JR, const uint16_t *xb, int64_t kp, const qst_weight *w,
                                 float *y, int64_t ldy, int64_t j) {
    const int64_t k = w->k;
    __m512 acc[ROWS_PER_PASS][MAX_JR][2];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) acc[i][r][0] = acc[i][r][1] = _mm512_setzero_ps();
    // Accumulators are indexed by constants only: a run-time index would keep them in memory.
    int64_t g = 0;
    for (; g + 64 <= k; g += 64) {
        for (int r = 0; r < JR; r++) {
            const uint16_t *row = (const uint16_t *)w->data + (j + r) * w->ld + g;
            __m512bh v0 = (__m512bh)_mm512_loadu_si512((const void *)row);
            __m512bh v1 = (__m512bh)_mm512_loadu_si512((const void *)(row + 32));
            for (int i = 0; i < MC; i++) {
                const uint16_t *xi = xb + i * kp + g;
                acc[i][r][0] = _mm512_dpbf16_ps(acc[i][r][0], v0, (__m512bh)_mm512_loadu_si512((const void *)xi));
                acc[i][r][1] = _mm512_dpbf16_ps(acc[i][r][1], v1, (__m512bh)_mm512_loadu_si512((const void *)(xi + 32)));
            }
        }
    }
    for (; g < k; g += 32) {
        int64_t left = k - g;
        __mmask32 mk = left >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << left) - 1);
        for (int r = 0; r < JR; r++) {
            __m512bh v = (__m512bh)_mm512_maskz_loadu_epi16(mk, (const uint16_t *)w->data + (j + r) * w->ld + g);
            for (int i = 0; i < MC; i++) {
                __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + i * kp + g));
                acc[i][r][0] = _mm512_dpbf16_ps(acc[i][r][0], v, xv);
            }
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) y[i * ldy + j + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][r][0], acc[i][r][1]));
}

TARGET INLINE void f32_step(const int MC, const int JR, const float *x, int64_t ldx, const qst_weight *w,
                            float *y, int64_t ldy, int64_t j) {
    const int64_t k = w->k;
    __m512 acc[ROWS_PER_PASS][MAX_JR][2];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) acc[i][r][0] = acc[i][r][1] = _mm512_setzero_ps();
    int64_t g = 0;
    for (; g + 32 <= k; g += 32) {
        for (int r = 0; r < JR; r++) {
            const float *row = (const float *)w->data + (j + r) * w->ld + g;
            __m512 v0 = _mm512_loadu_ps(row), v1 = _mm512_loadu_ps(row + 16);
            for (int i = 0; i < MC; i++) {
                acc[i][r][0] = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + i * ldx + g), acc[i][r][0]);
                acc[i][r][1] = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + i * ldx + g + 16), acc[i][r][1]);
            }
        }
    }
    for (; g < k; g += 16) {
        int64_t left = k - g;
        __mmask16 mk = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        for (int r = 0; r < JR; r++) {
            __m512 v = _mm512_maskz_loadu_ps(mk, (const float *)w->data + (j + r) * w->ld + g);
            for (int i = 0; i < MC; i++)
                acc[i][r][0] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(mk, x + i * ldx + g), acc[i][r][0]);
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) y[i * ldy + j + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][r][0], acc[i][r][1]));
}

// Walks output rows [n0, n1) JR at a time, the remainder one at a time.
#define ROW_LOOP(step, MC, xarg, xstride)                                                    \
    do {                                                                                     \
        int64_t j = n0;                                                                      \
        for (; j + JR_FOR(MC) <= n1; j += JR_FOR(MC)) step(MC, JR_FOR(MC), xarg, xstride, w, y, ldy, j); \
        for (; j < n1; j++) step(MC, 1, xarg, xstride, w, y, ldy, j);                        \
    } while (0)

TARGET INLINE void gemv_nf4_rows(const int MC, const float *xd, int64_t kp, const qst_weight *w,
                                 float *y, int64_t ldy, int64_t n0, int64_t n1) {
    ROW_LOOP(nf4_step, MC, xd, kp);
}
TARGET INLINE void gemv_bf16_exact_rows(const int MC, const float *xd, int64_t kp, const qst_weight *w,
                                        float *y, int64_t ldy, int64_t n0, int64_t n1) {
    ROW_LOOP(bf16_exact_step, MC, xd, kp);
}
TARGET INLINE void gemv_bf16_dot_rows(const int MC, const uint16_t *xb, int64_t kp, const qst_weight *w,
                                      float *y, int64_t ldy, int64_t n0, int64_t n1) {
    ROW_LOOP(bf16_dot_step, MC, xb, kp);
}
TARGET INLINE void gemv_f32_rows(const int MC, const float *x, int64_t ldx, const qst_weight *w,
                                 float *y, int64_t ldy, int64_t n0, int64_t n1) {
    ROW_LOOP(f32_step, MC, x, ldx);
}

// Instantiates a row loop for 1..4 rows of x with the row count as a constant, so the
// inner loops unroll and the accumulators stay in registers.
#define DISPATCH_ROWS(fn, mc, ...)                 \
    switch (mc) {                                  \
    case 1: fn(1, __VA_ARGS__); break;             \
    case 2: fn(2, __VA_ARGS__); break;             \
    case 3: fn(3, __VA_ARGS__); break;             \
    default: fn(4, __VA_ARGS__); break;            \
    }

TARGET int qst_mm_gemv_avx512(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                              float *y, int64_t ldy, int64_t n0, int64_t n1, int use_bf16) {
    const int64_t k = w->k, kp = (k + 31) & ~(int64_t)31;
    if (w->type == QST_WEIGHT_F32) {
        for (int64_t i0 = 0; i0 < m; i0 += ROWS_PER_PASS) {
            int64_t mc = m - i0 < ROWS_PER_PASS ? m - i0 : ROWS_PER_PASS;
            DISPATCH_ROWS(gemv_f32_rows, mc, x + i0 * ldx, ldx, w, y + i0 * ldy, ldy, n0, n1);
        }
        return QST_MATMUL_OK;
    }
    if (use_bf16 && w->type == QST_WEIGHT_NF4 && w->block % 64 == 0)
        return qst_mm_gemv_nf4_bf16(x, m, ldx, w, y, ldy, n0, n1);
    const int dot = use_bf16 && w->type == QST_WEIGHT_BF16;
    // Small x buffers live on the stack (a heap allocation per call is measurable here).
    float local[ROWS_PER_PASS * 2048] __attribute__((aligned(64)));
    void *scratch = kp <= 2048 ? (void *)local
                               : qst_mm_alloc((size_t)(ROWS_PER_PASS * kp) * (dot ? sizeof(uint16_t) : sizeof(float)));
    if (!scratch) return QST_MATMUL_NO_MEMORY;
    for (int64_t i0 = 0; i0 < m; i0 += ROWS_PER_PASS) {
        int64_t mc = m - i0 < ROWS_PER_PASS ? m - i0 : ROWS_PER_PASS;
        const float *xi = x + i0 * ldx;
        float *yi = y + i0 * ldy;
        if (dot) {
            qst_mm_x_to_bf16(xi, mc, ldx, k, kp, scratch);
            DISPATCH_ROWS(gemv_bf16_dot_rows, mc, scratch, kp, w, yi, ldy, n0, n1);
        } else {
            deinterleave_x(xi, mc, ldx, k, kp, scratch);
            if (w->type == QST_WEIGHT_NF4) {
                DISPATCH_ROWS(gemv_nf4_rows, mc, scratch, kp, w, yi, ldy, n0, n1);
            } else {
                DISPATCH_ROWS(gemv_bf16_exact_rows, mc, scratch, kp, w, yi, ldy, n0, n1);
            }
        }
    }
    if (scratch != (void *)local) free(scratch);
    return QST_MATMUL_OK;
}
#endif // __x86_64__
