// Private interface between kv_half.c (scalar reference, dispatch) and its vector paths (kv_half_x86.c,
// kv_half_neon.c): the scalar conversions, the key tile layout, the scalar loops every path uses for its
// tails, and the path entry points (each exists only where it is built; kv_half.c calls it only there).
#ifndef QST_KV_HALF_INTERNAL_H
#define QST_KV_HALF_INTERNAL_H
#include "kv_half.h"
#include <math.h>
#include <string.h>

#define TILE 16
#define MAX_HD 256
#define HEADS_PER_PASS 4

// ---- scalar conversions (the reference the hardware instructions are tested against)

static inline uint16_t half_from_float(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff)); // NaN, quieted
    if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00);                          // rounds past 65504
    if (ax >= 0x38800000) {                                                           // normal: 2^-14 and up
        uint32_t r = ax - 0x38000000;                                                // exponent bias 127 -> 15
        r += 0xfff + ((r >> 13) & 1);                                                // nearest, ties to even
        return (uint16_t)(sign | (r >> 13));
    }
    const uint32_t e = ax >> 23;
    if (e < 102) return sign; // below 2^-25: rounds to zero (2^-25 itself is the tie, to even zero)
    // Subnormal result: m = round(mantissa * 2^(e - 126)), shift 14..24.
    const uint32_t mant = (ax & 0x7fffff) | 0x800000, s = 126 - e;
    uint32_t m = mant >> s;
    const uint32_t rem = mant & ((1u << s) - 1), half = 1u << (s - 1);
    if (rem > half || (rem == half && (m & 1))) m++;
    return (uint16_t)(sign | m); // m = 1024 is the smallest normal, as its bits say
}

static inline float float_from_half(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f;
    uint32_t m = h & 0x3ff, x;
    if (e == 0x1f) x = sign | 0x7f800000 | (m ? (m | 0x200) << 13 : 0); // a NaN comes out quiet, as F16C's
    else if (e) x = sign | ((e + 112) << 23) | (m << 13);
    else if (!m) x = sign;
    else {
        uint32_t sh = 0;
        while (!(m & 0x400)) m <<= 1, sh++;
        x = sign | ((113 - sh) << 23) | ((m & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static inline const uint16_t *key_tile(const uint16_t *kt, int64_t hd, int64_t j) { return kt + (j / TILE) * hd * TILE; }

// ---- the weighted values' scalar loop: the reference, and every vector path's last dimensions

// out[g*hd + d] for d in [d0, hd), from the weights p[g*ldp + j].
#define SCALAR_VALUES(NAME, ATTR)                                                                               \
    ATTR static void NAME(float *out, int G, const float *p, int64_t ldp, const float *inv, const uint16_t *v,   \
                          int64_t ldv, int64_t n, int64_t d0, int64_t hd) {                                     \
        for (int g = 0; g < G; g++)                                                                             \
            for (int64_t d = d0; d < hd; d++) {                                                                 \
                float acc = 0;                                                                                  \
                for (int64_t j = 0; j < n; j++) acc = fmaf(p[g * ldp + j], float_from_half(v[j * ldv + d]), acc); \
                out[g * hd + d] = acc * inv[g];                                                                 \
            }                                                                                                   \
    }


// Scores of keys [0, n) for G <= HEADS_PER_PASS query heads (qs pre-scaled), into sc[g*ldsc + j]; the weighted
// values into out[g*hd + d] (weights p[g*ldp + j], times inv[g]).
#define QST_KVH_DECLARE(SFX)                                                                                    \
    void qst_kvh_scores_##SFX(float *sc, int G, const float *qs, const uint16_t *kt, int64_t n, int64_t hd,      \
                              int64_t ldsc);                                                                   \
    void qst_kvh_values_##SFX(float *out, int G, const float *p, int64_t ldp, const float *inv,                 \
                              const uint16_t *v, int64_t ldv, int64_t n, int64_t d0, int64_t hd);             \
    void qst_kvh_to_half_##SFX(uint16_t *dst, const float *src, int64_t n);                                    \
    void qst_kvh_to_float_##SFX(float *dst, const uint16_t *src, int64_t n);

// Turns a run-time head count (1 ... HEADS_PER_PASS) into a compile-time one, so each count's accumulators stay in
// registers: CALL(k) is the body for k heads.
#define QST_KVH_BY_HEADS(G, CALL)                                                                               \
    switch (G) {                                                                                                \
    case 1: CALL(1); break;                                                                                     \
    case 2: CALL(2); break;                                                                                     \
    case 3: CALL(3); break;                                                                                     \
    default: CALL(4); break;                                                                                    \
    }

QST_KVH_DECLARE(avx512)
QST_KVH_DECLARE(avx2)
QST_KVH_DECLARE(neon)

#endif
