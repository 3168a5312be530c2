// Private interface between small_gemv.c (scalar reference, dispatch) and its vector paths
// (small_gemv_x86.c, small_gemv_neon.c), which instantiate small_gemv_body.h once per instruction set and
// weight type (float32, and bfloat16 under the suffix bf16_<path>). Arguments arrive validated; each entry
// point exists on every architecture and returns -1 where it was not built.
#ifndef QST_SMALL_GEMV_INTERNAL_H
#define QST_SMALL_GEMV_INTERNAL_H
#include "small_gemv.h"

#define QST_SG_DECLARE(SFX, WT)                                                                           \
    int qst_small_gemv_##SFX(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const WT *wt,    \
                             int64_t ldw, int64_t in, int64_t out, const float *bias, int accumulate, int chains);

#define QST_SG_STUB(SFX, WT)                                                                              \
    int qst_small_gemv_##SFX(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const WT *wt,    \
                             int64_t ldw, int64_t in, int64_t out, const float *bias, int accumulate, int chains) { \
        (void)y; (void)ldy; (void)x; (void)ldx; (void)n; (void)wt; (void)ldw; (void)in; (void)out;      \
        (void)bias; (void)accumulate; (void)chains; return -1;                                           \
    }

QST_SG_DECLARE(avx2, float)
QST_SG_DECLARE(avx512, float)
QST_SG_DECLARE(neon, float)
QST_SG_DECLARE(bf16_avx2, uint16_t)
QST_SG_DECLARE(bf16_avx512, uint16_t)
QST_SG_DECLARE(bf16_neon, uint16_t)

#endif
