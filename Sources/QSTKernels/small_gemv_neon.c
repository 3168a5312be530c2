// small_gemv.h's ARM64 Advanced SIMD path: small_gemv_body.h over float32x4_t, for float32 weights and for
// bfloat16 weights (widened to float32 by a 16-bit shift-left-long).
#include "small_gemv_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

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
#define SFX neon
#define SG_WT float
#define V_LOAD_W V_LOAD
#include "small_gemv_body.h"
#undef SFX
#undef SG_WT
#undef V_LOAD_W
#define SFX bf16_neon
#define SG_WT uint16_t
#define V_LOAD_W(p) vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16))
#include "small_gemv_body.h"

#else
QST_SG_STUB(neon, float)
QST_SG_STUB(bf16_neon, uint16_t)
#endif
