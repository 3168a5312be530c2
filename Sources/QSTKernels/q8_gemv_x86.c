// Q8 GEMV kernels for AVX2 (vpmaddubsw + vpmaddwd, or AVX-VNNI vpdpbusd; AVX-512 is in
// q8_gemv_avx512.c). Per 32 weights and row of x: one integer dot product of |w| (unsigned)
// with x carrying w's sign (vpsignb), then one float FMA with the two scales. |w| <= 127 and
// |x| <= 127, so a vpmaddubsw pair sum (at most 2 * 127 * 127) never saturates.
#include "q8_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define JR_MAX 4

#define Q8_AVX2_BODY(NAME, TARGET, DOT)                                                                        \
    TARGET static inline __attribute__((always_inline)) void NAME##_step(                                   \
        const int MC, const int JR, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,  \
        int64_t k, float *y, int64_t ldy, int64_t j) {                                                       \
        const int64_t spans = k / 64, groups = k / 32;                                                       \
        __m256 acc[QST_Q8_ROWS_PER_PASS][JR_MAX];                                                            \
        for (int i = 0; i < MC; i++)                                                                         \
            for (int r = 0; r < JR; r++) acc[i][r] = _mm256_setzero_ps();                                   \
        for (int64_t s = 0; s < spans; s++) {                                                                \
            for (int r = 0; r < JR; r++) {                                                                   \
                const int8_t *wr = q + (j + r) * k + s * 64;                                                 \
                _mm_prefetch((const char *)wr + QST_Q8_PREFETCH_BYTES, _MM_HINT_T0);                         \
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)wr);                                  \
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(wr + 32));                           \
                const __m256i a0 = _mm256_sign_epi8(w0, w0), a1 = _mm256_sign_epi8(w1, w1);                  \
                const __m256 sc = _mm256_set1_ps(scales[(j + r) * spans + s]);                               \
                for (int i = 0; i < MC; i++) {                                                               \
                    const int8_t *xi = xq + i * k + s * 64;                                                  \
                    const __m256i d0 = DOT(a0, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xi), w0)); \
                    const __m256i d1 = DOT(a1, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xi + 32)), w1)); \
                    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(d0), _mm256_broadcast_ss(xs + i * groups + 2 * s)); \
                    v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_broadcast_ss(xs + i * groups + 2 * s + 1), v); \
                    acc[i][r] = _mm256_fmadd_ps(v, sc, acc[i][r]);                                           \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
        for (int i = 0; i < MC; i++)                                                                         \
            for (int r = 0; r < JR; r++) {                                                                   \
                __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[i][r]), _mm256_extractf128_ps(acc[i][r], 1)); \
                h = _mm_add_ps(h, _mm_movehl_ps(h, h));                                                      \
                h = _mm_add_ss(h, _mm_movehdup_ps(h));                                                       \
                y[i * ldy + j + r] = _mm_cvtss_f32(h) / 127.0f;                                              \
            }                                                                                                \
    }                                                                                                        \
    TARGET static inline __attribute__((always_inline)) void NAME##_rows_mc(                                \
        const int MC, const int8_t *xq, const float *xs, const int8_t *q, const float *scales, int64_t k,     \
        float *y, int64_t ldy, int64_t n0, int64_t n1) {                                                     \
        int64_t j = n0;                                                                                      \
        if (MC <= 2) for (; j + 4 <= n1; j += 4) NAME##_step(MC, 4, xq, xs, q, scales, k, y, ldy, j);       \
        else if (MC <= 4) for (; j + 2 <= n1; j += 2) NAME##_step(MC, 2, xq, xs, q, scales, k, y, ldy, j);  \
        for (; j < n1; j++) NAME##_step(MC, 1, xq, xs, q, scales, k, y, ldy, j);                            \
    }                                                                                                        \
    TARGET static void NAME(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales, \
                            int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1) {                      \
        switch (mc) {                                                                                        \
        case 1: NAME##_rows_mc(1, xq, xs, q, scales, k, y, ldy, n0, n1); break;                             \
        case 2: NAME##_rows_mc(2, xq, xs, q, scales, k, y, ldy, n0, n1); break;                             \
        case 3: NAME##_rows_mc(3, xq, xs, q, scales, k, y, ldy, n0, n1); break;                             \
        case 4: NAME##_rows_mc(4, xq, xs, q, scales, k, y, ldy, n0, n1); break;                             \
        case 5: NAME##_rows_mc(5, xq, xs, q, scales, k, y, ldy, n0, n1); break;                             \
        case 6: NAME##_rows_mc(6, xq, xs, q, scales, k, y, ldy, n0, n1); break;                             \
        case 7: NAME##_rows_mc(7, xq, xs, q, scales, k, y, ldy, n0, n1); break;                             \
        default: NAME##_rows_mc(8, xq, xs, q, scales, k, y, ldy, n0, n1); break;                            \
        }                                                                                                    \
    }

#define DOT_PLAIN(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
#define DOT_VNNI(u, s) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
Q8_AVX2_BODY(q8_avx2_plain, __attribute__((target("avx2,fma"))), DOT_PLAIN)
Q8_AVX2_BODY(q8_avx2_vnni, __attribute__((target("avx2,fma,avxvnni"))), DOT_VNNI)

int qst_q8_rows_avx2(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,
                     int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni) {
    if (vnni) q8_avx2_vnni(mc, xq, xs, q, scales, k, y, ldy, n0, n1);
    else q8_avx2_plain(mc, xq, xs, q, scales, k, y, ldy, n0, n1);
    return 0;
}

#else
int qst_q8_rows_avx2(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,
                     int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni) {
    (void)mc; (void)xq; (void)xs; (void)q; (void)scales; (void)k; (void)y; (void)ldy; (void)n0; (void)n1; (void)vnni;
    return -1;
}
#endif
