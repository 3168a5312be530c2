// decode_attention.h: one generic body over 16-float vectors (the compiler's vector extension), built
// for AVX-512, for AVX2 (two ymm per vector) and for the portable baseline (the scalar path; on ARM64
// the baseline is Advanced SIMD), as side_decode_attention.c.
// Why: a decode step multiplied one query row by each head's cache with two OpenBLAS calls (q K^T, then
// p V), 2 x 9 heads x 30 layers per token on SmolLM2; at these sizes (1 x n x 64) the calls' set-up
// cost as much as the arithmetic: 8 % of a batched server's time (BENCHMARKS.md §30).
#include "decode_attention.h"
#include "vecmath.h"
#include <string.h>

typedef float da_v16 __attribute__((vector_size(64)));
typedef float da_v16u __attribute__((vector_size(64), aligned(4)));
#define DA_LOAD(p) (*(const da_v16u *)(const void *)(p))

#define DA_BODY(NAME, ATTR)                                                                                  \
    ATTR static void NAME(float *out, const float *q, const float *k, const float *v, int64_t ld, int64_t n,  \
                          int64_t hd, float scale, const uint8_t *mask, float *sc, int path) {                \
        const int64_t hv = hd / 16 * 16;                                                                     \
        float qs[256];                                                                                       \
        for (int64_t d = 0; d < hd; d++) qs[d] = q[d] * scale;                                               \
        for (int64_t j = 0; j < n; j++) {                                                                    \
            const float *kj = k + j * ld;                                                                    \
            da_v16 acc = {0};                                                                                \
            for (int64_t d = 0; d < hv; d += 16) acc = acc + DA_LOAD(qs + d) * DA_LOAD(kj + d);             \
            float t[16];                                                                                     \
            memcpy(t, &acc, sizeof t);                                                                       \
            for (int w = 8; w >= 1; w /= 2)                                                                  \
                for (int l = 0; l < w; l++) t[l] = t[l] + t[l + w];                                          \
            float s = t[0];                                                                                  \
            for (int64_t d = hv; d < hd; d++) s = s + qs[d] * kj[d];                                        \
            sc[j] = s;                                                                                       \
        }                                                                                                    \
        if (mask)                                                                                            \
            for (int64_t j = 0; j < n; j++)                                                                  \
                if (!mask[j]) sc[j] = -__builtin_inff();                                                     \
        float mx = 0;                                                                                        \
        double sum = 0;                                                                                      \
        qst_exp_from_max(sc, n, &mx, &sum, path);                                                            \
        if (!(mx > -__builtin_inff())) {                                                                     \
            for (int64_t d = 0; d < hd; d++) out[d] = 0;                                                     \
            return;                                                                                          \
        }                                                                                                    \
        if (mask)                                                                                            \
            for (int64_t j = 0; j < n; j++)                                                                  \
                if (!mask[j]) sc[j] = 0;                                                                     \
        const float inv = 1.0f / (float)sum;                                                                 \
        for (int64_t d = 0; d < hv; d += 16) {                                                               \
            da_v16 acc = {0};                                                                                \
            for (int64_t j = 0; j < n; j++) acc = acc + sc[j] * DA_LOAD(v + j * ld + d);                    \
            acc = acc * inv;                                                                                 \
            memcpy(out + d, &acc, sizeof acc);                                                               \
        }                                                                                                    \
        for (int64_t d = hv; d < hd; d++) {                                                                  \
            float s = 0;                                                                                     \
            for (int64_t j = 0; j < n; j++) s = s + sc[j] * v[j * ld + d];                                   \
            out[d] = s * inv;                                                                                \
        }                                                                                                    \
    }

DA_BODY(da_base, )
#if defined(__x86_64__) || defined(__i386__)
DA_BODY(da_avx2, __attribute__((target("avx2,fma"))))
DA_BODY(da_avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))))
#endif

int qst_decode_attention(float *out, const float *q, const float *k, const float *v, int64_t ld, int64_t n,
                         int64_t hd, float scale, const uint8_t *mask, float *scratch, int path) {
    if (n < 1 || hd < 0 || hd > 256) return -1;
    if (path == QST_VEC_AUTO) path = qst_vec_best_path();
    if (!qst_vec_supported(path)) return -1;
    switch (path) {
#if defined(__x86_64__) || defined(__i386__)
    case QST_VEC_AVX512: da_avx512(out, q, k, v, ld, n, hd, scale, mask, scratch, path); return 0;
    case QST_VEC_AVX2: da_avx2(out, q, k, v, ld, n, hd, scale, mask, scratch, path); return 0;
#endif
    default: da_base(out, q, k, v, ld, n, hd, scale, mask, scratch, path); return 0;
    }
}
