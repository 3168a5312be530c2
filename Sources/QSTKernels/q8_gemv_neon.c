// Q8 GEMV kernels for ARM64: signed int8 products of w and x summed per 32-element group
// (sdot with FEAT_DotProd; otherwise widening multiplies, whose pair sums of at most
// 2 * 127 * 127 fit int16), then one float multiply-add with the two scales.
#include "q8_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#define QST_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

static inline int32x4_t dot_plain(int32x4_t acc, int8x16_t a, int8x16_t b) {
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));
    return vpadalq_s16(acc, p);
}

QST_DOTPROD static inline int32x4_t dot_sdot(int32x4_t acc, int8x16_t a, int8x16_t b) {
    return vdotq_s32(acc, a, b);
}

#define Q8_NEON_BODY(NAME, ATTR, DOT)                                                                     \
    ATTR static void NAME(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales, \
                          int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1) {                    \
        const int64_t spans = k / 64, groups = k / 32;                                                   \
        for (int64_t j = n0; j < n1; j++) {                                                              \
            float32x4_t acc[QST_Q8_ROWS_PER_PASS];                                                       \
            for (int i = 0; i < mc; i++) acc[i] = vdupq_n_f32(0);                                       \
            for (int64_t g = 0; g < groups; g++) {                                                       \
                const int8_t *wr = q + j * k + g * 32;                                                   \
                __builtin_prefetch(wr + QST_Q8_PREFETCH_BYTES);                                          \
                const int8x16_t w0 = vld1q_s8(wr), w1 = vld1q_s8(wr + 16);                               \
                const float sc = scales[j * spans + g / 2];                                              \
                for (int i = 0; i < mc; i++) {                                                           \
                    const int8_t *xi = xq + i * k + g * 32;                                              \
                    int32x4_t d = DOT(vdupq_n_s32(0), w0, vld1q_s8(xi));                                 \
                    d = DOT(d, w1, vld1q_s8(xi + 16));                                                   \
                    acc[i] = vmlaq_n_f32(acc[i], vcvtq_f32_s32(d), sc * xs[i * groups + g]);             \
                }                                                                                        \
            }                                                                                            \
            for (int i = 0; i < mc; i++) y[i * ldy + j] = vaddvq_f32(acc[i]) / 127.0f;                  \
        }                                                                                                \
    }

Q8_NEON_BODY(q8_neon_plain, , dot_plain)
Q8_NEON_BODY(q8_neon_dot, QST_DOTPROD, dot_sdot)

int qst_q8_rows_neon(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,
                     int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1, int dot) {
    if (dot) q8_neon_dot(mc, xq, xs, q, scales, k, y, ldy, n0, n1);
    else q8_neon_plain(mc, xq, xs, q, scales, k, y, ldy, n0, n1);
    return 0;
}
#else
int qst_q8_rows_neon(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,
                     int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1, int dot) {
    (void)mc; (void)xq; (void)xs; (void)q; (void)scales; (void)k; (void)y; (void)ldy; (void)n0; (void)n1; (void)dot;
    return -1;
}
#endif
