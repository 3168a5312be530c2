// Private interface between the dispatcher (vecmath.c) and its vector paths (vecmath_x86.c,
// vecmath_neon.c), which instantiate vecmath_body.h once per instruction set. Arguments arrive
// validated; each entry point exists on every architecture and returns -1 where it was not built.
#ifndef QST_VECMATH_INTERNAL_H
#define QST_VECMATH_INTERNAL_H
#include "vecmath.h"

#define QST_VEC_DECLARE(SFX)                                                                              \
    int qst_vec_softmax_##SFX(float *row, int64_t n);                                                    \
    int qst_vec_exp_from_max_##SFX(float *row, int64_t n, float *max, double *sum);                      \
    int qst_vec_silu_mul_##SFX(float *out, const float *gate, const float *up, int64_t n);               \
    int qst_vec_attn_fwd_##SFX(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldk, \
                               int64_t T, int64_t hd, int64_t len, float scale, float *probs, float *out, \
                               int64_t ldo, float *scratch);                                             \
    int qst_vec_attn_bwd_##SFX(const float *q, const float *dout, float *dq, int64_t ldq, const float *k, \
                               const float *v, float *dk, float *dv, int64_t ldk, const float *probs,    \
                               int64_t group, int64_t T, int64_t hd, int64_t len, float scale, float *scratch);

// Entry points of a path not built on this architecture: each refuses (-1).
#define QST_VEC_STUBS(SFX)                                                                                \
    int qst_vec_softmax_##SFX(float *row, int64_t n) { (void)row; (void)n; return -1; }                  \
    int qst_vec_exp_from_max_##SFX(float *row, int64_t n, float *max, double *sum) {                     \
        (void)row; (void)n; (void)max; (void)sum; return -1;                                             \
    }                                                                                                    \
    int qst_vec_silu_mul_##SFX(float *out, const float *gate, const float *up, int64_t n) {             \
        (void)out; (void)gate; (void)up; (void)n; return -1;                                             \
    }                                                                                                    \
    int qst_vec_attn_fwd_##SFX(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldk, \
                               int64_t T, int64_t hd, int64_t len, float scale, float *probs, float *out, \
                               int64_t ldo, float *scratch) {                                            \
        (void)q; (void)ldq; (void)k; (void)v; (void)ldk; (void)T; (void)hd; (void)len; (void)scale;      \
        (void)probs; (void)out; (void)ldo; (void)scratch; return -1;                                     \
    }                                                                                                    \
    int qst_vec_attn_bwd_##SFX(const float *q, const float *dout, float *dq, int64_t ldq, const float *k, \
                               const float *v, float *dk, float *dv, int64_t ldk, const float *probs,    \
                               int64_t group, int64_t T, int64_t hd, int64_t len, float scale, float *scratch) { \
        (void)q; (void)dout; (void)dq; (void)ldq; (void)k; (void)v; (void)dk; (void)dv; (void)ldk;      \
        (void)probs; (void)group; (void)T; (void)hd; (void)len; (void)scale; (void)scratch; return -1;   \
    }

QST_VEC_DECLARE(avx2)
QST_VEC_DECLARE(avx512)
QST_VEC_DECLARE(neon)

#endif
