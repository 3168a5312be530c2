// vecmath.h's ARM64 Advanced SIMD path: vecmath_body.h over float32x4_t, with the same exponential
// as the x86 paths (vecmath_x86.c).
#include "vecmath_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

static inline float32x4_t exp_neon(float32x4_t x) {
    const float32x4_t magic = vdupq_n_f32(12582912.0f);
    x = vmaxq_f32(x, vdupq_n_f32(-87.3f));
    const float32x4_t t = vfmaq_f32(magic, x, vdupq_n_f32(1.44269504088896341f));
    const float32x4_t n = vsubq_f32(t, magic);
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.0f / 5040);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 720), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    const int32x4_t e = vshlq_n_s32(
        vaddq_s32(vsubq_s32(vreinterpretq_s32_f32(t), vreinterpretq_s32_f32(magic)), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

#define SFX neon
#define ATTR
#define V float32x4_t
#define W 4
#define V_LOAD(p) vld1q_f32(p)
#define V_STORE(p, v) vst1q_f32((p), (v))
#define V_SET1(x) vdupq_n_f32(x)
#define V_ZERO() vdupq_n_f32(0.0f)
#define V_ADD vaddq_f32
#define V_SUB vsubq_f32
#define V_MUL vmulq_f32
#define V_DIV vdivq_f32
#define V_MAX vmaxq_f32
#define V_MIN vminq_f32
#define V_FMA(a, b, c) vfmaq_f32((c), (a), (b))
#define V_HSUM vaddvq_f32
#define V_HMAX vmaxvq_f32
#define V_EXP exp_neon
#include "vecmath_body.h"

#else
QST_VEC_STUBS(neon)
#endif
