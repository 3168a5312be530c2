// Private interface between small_gemv.c (scalar reference, dispatch) and its vector paths
// (small_gemv_x86.c, small_gemv_neon.c), which instantiate small_gemv_body.h once per instruction set.
// Arguments arrive validated; each entry point exists on every architecture and returns -1 where it was
// not built.
#ifndef QST_SMALL_GEMV_INTERNAL_H
#define QST_SMALL_GEMV_INTERNAL_H
#include "small_gemv.h"

#define QST_SG_DECLARE(SFX)                                                                               \
    int qst_small_gemv_##SFX(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const float *wt, \
                             int64_t ldw, int64_t in, int64_t out, const float *bias, int accumulate, int chains);

#define QST_SG_STUB(SFX)                                                                                  \
    int qst_small_gemv_##SFX(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const float *wt, \
                             int64_t ldw, int64_t in, int64_t out, const float *bias, int accumulate, int chains) { \
        (void)y; (void)ldy; (void)x; (void)ldx; (void)n; (void)wt; (void)ldw; (void)in; (void)out;      \
        (void)bias; (void)accumulate; (void)chains; return -1;                                           \
    }

QST_SG_DECLARE(avx2)
QST_SG_DECLARE(avx512)
QST_SG_DECLARE(neon)

#endif
