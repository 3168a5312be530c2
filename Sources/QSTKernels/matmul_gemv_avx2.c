// AVX2 + FMA GEMV loops for few rows of x (token generation), exact float32 products.
//
// Same plan as the AVX-512 loops: each weight byte is read once and decoded in registers,
// several weight rows side by side (more cache misses in flight), x prepared once per call
// in the order the decode produces. A 16-element group of x is stored as its 8 even
// elements, then its 8 odd ones: an NF4 byte holds elements 2t (high nibble) and 2t+1 (low
// nibble), a bfloat16 dword holds 2t (low half) and 2t+1 (high half), so both decodes
// yield "evens" and "odds" vectors without shuffling x in the hot loop.
//
// NF4 lookup: vpermps indexes 8 entries only, so the 16-entry table (already scaled by
// the block's absmax, giving exactly the reference's float32 weights) is two registers,
// and code bit 3, moved to the sign bit, picks between the two lookups (vblendvps).
#include "matmul_internal.h"

// x86 only: other architectures get a stub (the dispatcher never selects it there).
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stdlib.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))
#define ROWS_PER_PASS 4
#define MAX_JR 4
#define JR_FOR(MC) ((MC) <= 2 ? 4 : 2)

TARGET INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// x rows -> per 16-element group: 8 even elements, then 8 odd ones; only full groups
// (the callers handle a tail of k % 16 elements from x itself).
TARGET static void deinterleave_x(const float *x, int64_t mc, int64_t ldx, int64_t k, float *xd, int64_t kp) {
    const __m256i even_first = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int64_t i = 0; i < mc; i++) {
        const float *xi = x + i * ldx;
        float *di = xd + i * kp;
        for (int64_t g = 0; g + 16 <= k; g += 16) {
            __m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xi + g), even_first);     // e0..e3 | o0..o3
            __m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xi + g + 8), even_first); // e4..e7 | o4..o7
            _mm256_storeu_ps(di + g, _mm256_permute2f128_ps(a, b, 0x20));
            _mm256_storeu_ps(di + g + 8, _mm256_permute2f128_ps(a, b, 0x31));
        }
    }
}

// 16-entry table lookup: entries 0-7 in lo, 8-15 in hi; `sign` holds code bit 3 in bit 31.
TARGET INLINE __m256 lookup16(__m256 lo, __m256 hi, __m256i idx, __m256i sign) {
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx),
                            _mm256_castsi256_ps(sign));
}

TARGET INLINE void nf4_step(const int MC, const int JR, const float *xd, int64_t kp, const qst_weight *w,
                            float *y, int64_t ldy, int64_t j) {
    const __m256 lut_lo = _mm256_loadu_ps(qst_mm_nf4_values), lut_hi = _mm256_loadu_ps(qst_mm_nf4_values + 8);
    const int64_t k = w->k, groups_per_block = w->block / 16, blocks = k / w->block;
    const uint8_t *codes[MAX_JR];
    const float *scale[MAX_JR];
    for (int r = 0; r < JR; r++) {
        codes[r] = (const uint8_t *)w->data + (j + r) * (k / 2);
        scale[r] = w->absmax + (j + r) * blocks;
    }
    __m256 acc[ROWS_PER_PASS][MAX_JR];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) acc[i][r] = _mm256_setzero_ps();
    int64_t g = 0;
    for (int64_t b = 0; b < blocks; b++) {
        __m256 tlo[MAX_JR], thi[MAX_JR];
        for (int r = 0; r < JR; r++) {
            const __m256 s = _mm256_set1_ps(scale[r][b]);
            tlo[r] = _mm256_mul_ps(lut_lo, s);
            thi[r] = _mm256_mul_ps(lut_hi, s);
        }
        for (int64_t t = 0; t < groups_per_block; t++, g++) {
            for (int r = 0; r < JR; r++) {
                // Weights come from DRAM once per token: prefetch ahead (one per cache line).
                if ((g & 7) == 0) _mm_prefetch((const char *)codes[r] + g * 8 + 2048, _MM_HINT_T0);
                __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(codes[r] + g * 8)));
                __m256 we = lookup16(tlo[r], thi[r], _mm256_srli_epi32(c, 4), _mm256_slli_epi32(c, 24));
                __m256 wo = lookup16(tlo[r], thi[r], c, _mm256_slli_epi32(c, 28));
                for (int i = 0; i < MC; i++) {
                    const float *xi = xd + i * kp + g * 16;
                    acc[i][r] = _mm256_fmadd_ps(we, _mm256_loadu_ps(xi), acc[i][r]);
                    acc[i][r] = _mm256_fmadd_ps(wo, _mm256_loadu_ps(xi + 8), acc[i][r]);
                }
            }
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) y[i * ldy + j + r] = hsum(acc[i][r]);
}

static inline float bf16_value(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

// BF16: 8 dwords = 16 elements; shift/mask split them into evens and odds as float32.
TARGET INLINE void bf16_step(const int MC, const int JR, const float *xd, int64_t kp, const float *x, int64_t ldx,
                             const qst_weight *w, float *y, int64_t ldy, int64_t j) {
    const int64_t k = w->k, full = k & ~(int64_t)15;
    const __m256i high = _mm256_set1_epi32((int)0xFFFF0000u);
    __m256 acc[ROWS_PER_PASS][MAX_JR];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) acc[i][r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < full; g += 16) {
        for (int r = 0; r < JR; r++) {
            const uint16_t *row = (const uint16_t *)w->data + (j + r) * w->ld + g;
            __m256i v = _mm256_loadu_si256((const __m256i *)row);
            __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(v, high));
            for (int i = 0; i < MC; i++) {
                const float *xi = xd + i * kp + g;
                acc[i][r] = _mm256_fmadd_ps(we, _mm256_loadu_ps(xi), acc[i][r]);
                acc[i][r] = _mm256_fmadd_ps(wo, _mm256_loadu_ps(xi + 8), acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) {
            float s = hsum(acc[i][r]);
            const uint16_t *row = (const uint16_t *)w->data + (j + r) * w->ld;
            for (int64_t t = full; t < k; t++) s += x[i * ldx + t] * bf16_value(row[t]);
            y[i * ldy + j + r] = s;
        }
}

TARGET INLINE void f32_step(const int MC, const int JR, const float *x, int64_t ldx, const qst_weight *w,
                            float *y, int64_t ldy, int64_t j) {
    const int64_t k = w->k, full = k & ~(int64_t)15;
    __m256 acc[ROWS_PER_PASS][MAX_JR];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) acc[i][r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < full; g += 16) {
        for (int r = 0; r < JR; r++) {
            const float *row = (const float *)w->data + (j + r) * w->ld + g;
            __m256 v0 = _mm256_loadu_ps(row), v1 = _mm256_loadu_ps(row + 8);
            for (int i = 0; i < MC; i++) {
                acc[i][r] = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x + i * ldx + g), acc[i][r]);
                acc[i][r] = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x + i * ldx + g + 8), acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) {
            float s = hsum(acc[i][r]);
            const float *row = (const float *)w->data + (j + r) * w->ld;
            for (int64_t t = full; t < k; t++) s += x[i * ldx + t] * row[t];
            y[i * ldy + j + r] = s;
        }
}

TARGET INLINE void nf4_rows(const int MC, const float *xd, int64_t kp, const qst_weight *w,
                            float *y, int64_t ldy, int64_t n0, int64_t n1) {
    int64_t j = n0;
    for (; j + JR_FOR(MC) <= n1; j += JR_FOR(MC)) nf4_step(MC, JR_FOR(MC), xd, kp, w, y, ldy, j);
    for (; j < n1; j++) nf4_step(MC, 1, xd, kp, w, y, ldy, j);
}
TARGET INLINE void bf16_rows(const int MC, const float *xd, int64_t kp, const float *x, int64_t ldx,
                             const qst_weight *w, float *y, int64_t ldy, int64_t n0, int64_t n1) {
    int64_t j = n0;
    for (; j + JR_FOR(MC) <= n1; j += JR_FOR(MC)) bf16_step(MC, JR_FOR(MC), xd, kp, x, ldx, w, y, ldy, j);
    for (; j < n1; j++) bf16_step(MC, 1, xd, kp, x, ldx, w, y, ldy, j);
}
TARGET INLINE void f32_rows(const int MC, const float *x, int64_t ldx, const qst_weight *w,
                            float *y, int64_t ldy, int64_t n0, int64_t n1) {
    int64_t j = n0;
    for (; j + JR_FOR(MC) <= n1; j += JR_FOR(MC)) f32_step(MC, JR_FOR(MC), x, ldx, w, y, ldy, j);
    for (; j < n1; j++) f32_step(MC, 1, x, ldx, w, y, ldy, j);
}

// Row count as a compile-time constant, so the inner loops unroll and stay in registers.
#define DISPATCH_ROWS(fn, mc, ...)                 \
    switch (mc) {                                  \
    case 1: fn(1, __VA_ARGS__); break;             \
    case 2: fn(2, __VA_ARGS__); break;             \
    case 3: fn(3, __VA_ARGS__); break;             \
    default: fn(4, __VA_ARGS__); break;            \
    }

TARGET int qst_mm_gemv_avx2(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                            float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const int64_t k = w->k, kp = (k + 15) & ~(int64_t)15;
    if (w->type == QST_WEIGHT_F32) {
        for (int64_t i0 = 0; i0 < m; i0 += ROWS_PER_PASS) {
            int64_t mc = m - i0 < ROWS_PER_PASS ? m - i0 : ROWS_PER_PASS;
            DISPATCH_ROWS(f32_rows, mc, x + i0 * ldx, ldx, w, y + i0 * ldy, ldy, n0, n1);
        }
        return QST_MATMUL_OK;
    }
    // Small x buffers live on the stack (a heap allocation per call is measurable here).
    float local[ROWS_PER_PASS * 2048] __attribute__((aligned(32)));
    float *xd = kp <= 2048 ? local : qst_mm_alloc((size_t)(ROWS_PER_PASS * kp) * sizeof(float));
    if (!xd) return QST_MATMUL_NO_MEMORY;
    for (int64_t i0 = 0; i0 < m; i0 += ROWS_PER_PASS) {
        int64_t mc = m - i0 < ROWS_PER_PASS ? m - i0 : ROWS_PER_PASS;
        const float *xi = x + i0 * ldx;
        float *yi = y + i0 * ldy;
        deinterleave_x(xi, mc, ldx, k, xd, kp);
        if (w->type == QST_WEIGHT_NF4) {
            DISPATCH_ROWS(nf4_rows, mc, xd, kp, w, yi, ldy, n0, n1);
        } else {
            DISPATCH_ROWS(bf16_rows, mc, xd, kp, xi, ldx, w, yi, ldy, n0, n1);
        }
    }
    if (xd != local) free(xd);
    return QST_MATMUL_OK;
}

#else
int qst_mm_gemv_avx2(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                     float *y, int64_t ldy, int64_t n0, int64_t n1) {
    (void)x; (void)m; (void)ldx; (void)w; (void)y; (void)ldy; (void)n0; (void)n1;
    return QST_MATMUL_UNSUPPORTED;
}
#endif
