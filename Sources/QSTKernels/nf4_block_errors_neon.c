// ARM64 NEON path of qst_nf4_block_errors (nf4_block_errors.c): 4 candidate scales per pass, one
// per lane, elements in order, the same float32 and float64 operations as the scalar loop, so
// the same bits.
#pragma STDC FP_CONTRACT OFF
#if defined(__aarch64__)
#include "nf4_internal.h"
#include <arm_neon.h>
#include <string.h>

void qst_nf4_block_errors_neon(const float *x, const float *w, int64_t n, const float *scales, int64_t count,
                               double *errors) {
    // The 16 code values as a 64-byte table; lane code c reads bytes 4c..4c+3.
    uint8x16x4_t table;
    memcpy(&table, qst_nf4_codes, sizeof table);
    const uint32x4_t spread = vdupq_n_u32(0x04040404u), bytes = vdupq_n_u32(0x03020100u);
    for (int64_t j = 0; j < count; j += 4) {
        float sb[4] = {1, 1, 1, 1};
        const int64_t m = count - j < 4 ? count - j : 4;
        for (int64_t t = 0; t < m; t++) sb[t] = scales[j + t];
        const float32x4_t s = vld1q_f32(sb);
        const float32x4_t r = vdivq_f32(vdupq_n_f32(1.0f), s);
        float64x2_t e0 = vdupq_n_f64(0.0), e1 = vdupq_n_f64(0.0);
        for (int64_t i = 0; i < n; i++) {
            const float32x4_t v = vmulq_f32(vdupq_n_f32(x[i]), r);
            const uint32x4_t c = qst_nf4_codes4_neon(v);
            const uint8x16_t idx = vreinterpretq_u8_u32(vmlaq_u32(bytes, c, spread));
            const float32x4_t q = vreinterpretq_f32_u8(vqtbl4q_u8(table, idx));
            const float32x4_t p = vmulq_f32(q, s);
            const float64x2_t xd = vdupq_n_f64((double)x[i]), wd = vdupq_n_f64((double)w[i]);
            const float64x2_t d0 = vsubq_f64(xd, vcvt_f64_f32(vget_low_f32(p)));
            const float64x2_t d1 = vsubq_f64(xd, vcvt_high_f64_f32(p));
            e0 = vaddq_f64(e0, vmulq_f64(vmulq_f64(wd, d0), d0));
            e1 = vaddq_f64(e1, vmulq_f64(vmulq_f64(wd, d1), d1));
        }
        double eb[4];
        vst1q_f64(eb, e0);
        vst1q_f64(eb + 2, e1);
        for (int64_t t = 0; t < m; t++) errors[j + t] = eb[t];
    }
}
#endif
