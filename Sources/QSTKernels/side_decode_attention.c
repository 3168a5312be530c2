// side_decode_attention.h: one generic body over 16-float vectors (the compiler's vector extension),
// built for AVX-512, for AVX2 (two ymm per vector) and for the portable baseline (the scalar path; on
// ARM64 the baseline is Advanced SIMD). Scores: a multiply and an add per term in the order of d, the
// same in every lane and in the tail, so every path forms the same scores.
#include "side_decode_attention.h"
#include "vecmath.h"
#include <string.h>

typedef float sda_v16 __attribute__((vector_size(64)));
// An unaligned load of 16 floats as an expression (no function returning a vector: that would change
// the calling convention between the target variants).
typedef float sda_v16u __attribute__((vector_size(64), aligned(4)));
#define SDA_LOAD(p) (*(const sda_v16u *)(const void *)(p))

#define SDA_BODY(NAME, ATTR)                                                                                  \
    ATTR static void NAME(float *out, const float *q, const float *kt, const float *vt, int64_t ld, int64_t n, \
                          int64_t hd, float scale, const uint8_t *mask, float *sc, int path) {                \
        int64_t j = 0;                                                                                       \
        for (; j + 16 <= n; j += 16) {                                                                       \
            sda_v16 acc = {0};                                                                               \
            for (int64_t d = 0; d < hd; d++) acc = acc + (q[d] * scale) * SDA_LOAD(kt + d * ld + j);      \
            memcpy(sc + j, &acc, sizeof acc);                                                                \
        }                                                                                                    \
        for (; j < n; j++) {                                                                                 \
            float a = 0;                                                                                     \
            for (int64_t d = 0; d < hd; d++) a = a + (q[d] * scale) * kt[d * ld + j];                        \
            sc[j] = a;                                                                                       \
        }                                                                                                    \
        if (mask)                                                                                            \
            for (j = 0; j < n; j++)                                                                          \
                if (!mask[j]) sc[j] = -__builtin_inff();                                                     \
        float mx = 0;                                                                                        \
        double sum = 0;                                                                                      \
        qst_exp_from_max(sc, n, &mx, &sum, path);                                                            \
        if (!(mx > -__builtin_inff())) {                                                                     \
            for (int64_t d = 0; d < hd; d++) out[d] = 0;                                                     \
            return;                                                                                          \
        }                                                                                                    \
        if (mask)                                                                                            \
            for (j = 0; j < n; j++)                                                                          \
                if (!mask[j]) sc[j] = 0;                                                                     \
        const float inv = 1.0f / (float)sum;                                                                 \
        for (int64_t d = 0; d < hd; d++) {                                                                   \
            const float *v = vt + d * ld;                                                                    \
            sda_v16 acc = {0};                                                                               \
            for (j = 0; j + 16 <= n; j += 16) acc = acc + SDA_LOAD(sc + j) * SDA_LOAD(v + j);          \
            float s = 0;                                                                                     \
            for (int l = 0; l < 16; l++) s = s + acc[l];                                                     \
            for (; j < n; j++) s = s + sc[j] * v[j];                                                         \
            out[d] = s * inv;                                                                                \
        }                                                                                                    \
    }

SDA_BODY(sda_base, )
#if defined(__x86_64__) || defined(__i386__)
SDA_BODY(sda_avx2, __attribute__((target("avx2,fma"))))
SDA_BODY(sda_avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))))
#endif

int qst_side_decode_attention(float *out, const float *q, const float *kt, const float *vt, int64_t ld, int64_t n,
                              int64_t hd, float scale, const uint8_t *mask, float *scratch, int path) {
    if (n < 1 || hd < 0) return -1;
    if (path == QST_VEC_AUTO) path = qst_vec_best_path();
    if (!qst_vec_supported(path)) return -1;
    switch (path) {
#if defined(__x86_64__) || defined(__i386__)
    case QST_VEC_AVX512: sda_avx512(out, q, kt, vt, ld, n, hd, scale, mask, scratch, path); return 0;
    case QST_VEC_AVX2: sda_avx2(out, q, kt, vt, ld, n, hd, scale, mask, scratch, path); return 0;
#endif
    default: sda_base(out, q, kt, vt, ld, n, hd, scale, mask, scratch, path); return 0;
    }
}
