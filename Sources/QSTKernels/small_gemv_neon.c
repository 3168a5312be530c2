// small_gemv.h's ARM64 Advanced SIMD path: small_gemv_body.h over float32x4_t.
#include "small_gemv_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#define SFX neon
#define ATTR
#define V float32x4_t
#define W 4
#define SG_MAX_ACC 16
#define V_LOAD(p) vld1q_f32(p)
#define V_STORE(p, v) vst1q_f32((p), (v))
#define V_SET1(x) vdupq_n_f32(x)
#define V_ZERO() vdupq_n_f32(0.0f)
#define V_ADD vaddq_f32
#define V_FMA(a, b, c) vfmaq_f32((c), (a), (b))
#include "small_gemv_body.h"

#else
QST_SG_STUB(neon)
#endif
