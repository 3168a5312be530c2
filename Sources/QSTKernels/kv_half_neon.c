// kv_half.h's ARM64 Advanced SIMD path: 4 keys or dimensions per vector, binary16 widened by vcvt_f32_f16.
#include "kv_half_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>
SCALAR_VALUES(values_scalar_neon, )

static inline float32x4_t neon_load4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static inline __attribute__((always_inline)) void scoresneon_g(const int G, float *sc, const float *qs,
                                                               const uint16_t *kt, int64_t n, int64_t hd,
                                                               int64_t ldsc) {
    for (int64_t b = 0; b * TILE < n; b++) {
        const uint16_t *t0 = kt + b * hd * TILE;
        const int64_t left = n - b * TILE;
        float32x4_t a[HEADS_PER_PASS][4];
        for (int g = 0; g < G; g++)
            for (int c = 0; c < 4; c++) a[g][c] = vdupq_n_f32(0);
        for (int64_t d = 0; d < hd; d++) {
            if (!(d & 1)) __builtin_prefetch(t0 + 2 * hd * TILE + d * TILE);
            float32x4_t k[4];
            for (int c = 0; c < 4; c++) k[c] = neon_load4(t0 + d * TILE + 4 * c);
            for (int g = 0; g < G; g++) {
                const float32x4_t qb = vdupq_n_f32(qs[g * hd + d]);
                for (int c = 0; c < 4; c++) a[g][c] = vfmaq_f32(a[g][c], qb, k[c]);
            }
        }
        for (int g = 0; g < G; g++) {
            float t[TILE];
            for (int c = 0; c < 4; c++) vst1q_f32(t + 4 * c, a[g][c]);
            memcpy(sc + g * ldsc + b * TILE, t, (size_t)(left < TILE ? left : TILE) * sizeof(float));
        }
    }
}

void qst_kvh_scores_neon(float *sc, int G, const float *qs, const uint16_t *kt, int64_t n, int64_t hd,
                           int64_t ldsc) {
#define SCORES(k) scoresneon_g(k, sc, qs, kt, n, hd, ldsc)
    QST_KVH_BY_HEADS(G, SCORES)
#undef SCORES
}

static inline __attribute__((always_inline)) void valuesneon_g(const int G, float *out, const float *p, int64_t ldp,
                                                               const float *inv, const uint16_t *v, int64_t ldv,
                                                               int64_t n, int64_t hd) {
    const int64_t hv = hd / 4 * 4;
    for (int64_t d0 = 0; d0 < hv; d0 += 16) {
        const int C = (int)((hv - d0) / 4 < 4 ? (hv - d0) / 4 : 4);
        float32x4_t a[HEADS_PER_PASS][4];
        for (int g = 0; g < G; g++)
            for (int c = 0; c < 4; c++) a[g][c] = vdupq_n_f32(0);
        for (int64_t j = 0; j < n; j++) {
            const uint16_t *row = v + j * ldv + d0;
            __builtin_prefetch(row + 8 * ldv);
            for (int c = 0; c < C; c++) {
                const float32x4_t x = neon_load4(row + 4 * c);
                for (int g = 0; g < G; g++) a[g][c] = vfmaq_f32(a[g][c], vdupq_n_f32(p[g * ldp + j]), x);
            }
        }
        for (int g = 0; g < G; g++)
            for (int c = 0; c < C; c++) vst1q_f32(out + g * hd + d0 + 4 * c, vmulq_n_f32(a[g][c], inv[g]));
    }
    values_scalar_neon(out, G, p, ldp, inv, v, ldv, n, hv, hd);
}

void qst_kvh_values_neon(float *out, int G, const float *p, int64_t ldp, const float *inv, const uint16_t *v,
                       int64_t ldv, int64_t n, int64_t d0, int64_t hd) {
    (void)d0;
#define VALUES(k) valuesneon_g(k, out, p, ldp, inv, v, ldv, n, hd)
    QST_KVH_BY_HEADS(G, VALUES)
#undef VALUES
}

void qst_kvh_to_half_neon(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    for (; i < n; i++) dst[i] = half_from_float(src[i]);
}
void qst_kvh_to_float_neon(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, neon_load4(src + i));
    for (; i < n; i++) dst[i] = float_from_half(src[i]);
}
#endif
