// kv_half.h's x86 paths: AVX-512 (16 keys or dimensions per vector) and AVX2 + F16C (8). Lanes are keys for the
// scores and head dimensions for the weighted values; each lane makes the scalar reference's fused multiply-adds
// in its order.
#include "kv_half_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define T256 __attribute__((target("avx2,fma,f16c")))
#define AI inline __attribute__((always_inline))

SCALAR_VALUES(values_scalar_fma512, T512)
SCALAR_VALUES(values_scalar_fma256, T256)

// Two tiles (32 keys) per step: 2 * G independent chains. Every path prefetches the tiles two ahead and the
// value rows eight ahead: one core's hardware prefetchers alone read a request's cache at half the speed
// (decode attention per request and layer, SmolLM2 at 150 positions: 14.5 against 9.4-12.4 us, BENCHMARKS §33).
T512 static AI void scores512_g(const int G, float *sc, const float *qs, const uint16_t *kt, int64_t n, int64_t hd,
                                int64_t ldsc) {
    const int64_t whole = n / TILE;
    int64_t b = 0;
    for (; b + 2 <= whole; b += 2) {
        const uint16_t *t0 = kt + b * hd * TILE, *t1 = t0 + hd * TILE;
        __m512 a[HEADS_PER_PASS][2];
        for (int g = 0; g < G; g++) a[g][0] = a[g][1] = _mm512_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
            if (!(d & 1)) _mm_prefetch((const char *)(t1 + hd * TILE + d * TILE), _MM_HINT_T0);
            if (!(d & 1)) _mm_prefetch((const char *)(t1 + 2 * hd * TILE + d * TILE), _MM_HINT_T0);
            const __m512 k0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(t0 + d * TILE)));
            const __m512 k1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(t1 + d * TILE)));
            for (int g = 0; g < G; g++) {
                const __m512 qb = _mm512_set1_ps(qs[g * hd + d]);
                a[g][0] = _mm512_fmadd_ps(qb, k0, a[g][0]);
                a[g][1] = _mm512_fmadd_ps(qb, k1, a[g][1]);
            }
        }
        for (int g = 0; g < G; g++) {
            _mm512_storeu_ps(sc + g * ldsc + b * TILE, a[g][0]);
            _mm512_storeu_ps(sc + g * ldsc + b * TILE + TILE, a[g][1]);
        }
    }
    // The last tiles, the partial one included: its lanes past n hold whatever the cache holds there and are
    // not stored.
    for (; b * TILE < n; b++) {
        const uint16_t *t0 = kt + b * hd * TILE;
        const int64_t left = n - b * TILE;
        const __mmask16 keep = left >= TILE ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512 a[HEADS_PER_PASS];
        for (int g = 0; g < G; g++) a[g] = _mm512_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
            const __m512 k0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(t0 + d * TILE)));
            for (int g = 0; g < G; g++) a[g] = _mm512_fmadd_ps(_mm512_set1_ps(qs[g * hd + d]), k0, a[g]);
        }
        for (int g = 0; g < G; g++) _mm512_mask_storeu_ps(sc + g * ldsc + b * TILE, keep, a[g]);
    }
}

T512 void qst_kvh_scores_avx512(float *sc, int G, const float *qs, const uint16_t *kt, int64_t n, int64_t hd,
                           int64_t ldsc) {
#define SCORES(k) scores512_g(k, sc, qs, kt, n, hd, ldsc)
    QST_KVH_BY_HEADS(G, SCORES)
#undef SCORES
}

// Up to 4 chunks of 16 dimensions per pass over the values: G * C accumulators.
T512 static AI void values512_g(const int G, float *out, const float *p, int64_t ldp, const float *inv,
                                const uint16_t *v, int64_t ldv, int64_t n, int64_t hd) {
    const int64_t hv = hd / 16 * 16;
    for (int64_t d0 = 0; d0 < hv; d0 += 64) {
        const int C = (int)((hv - d0) / 16 < 4 ? (hv - d0) / 16 : 4);
        __m512 a[HEADS_PER_PASS][4];
        for (int g = 0; g < G; g++)
            for (int c = 0; c < 4; c++) a[g][c] = _mm512_setzero_ps();
        for (int64_t j = 0; j < n; j++) {
            const uint16_t *row = v + j * ldv + d0;
            _mm_prefetch((const char *)(row + 8 * ldv), _MM_HINT_T0);
            _mm_prefetch((const char *)(row + 8 * ldv + 32), _MM_HINT_T0);
            __m512 pb[HEADS_PER_PASS];
            for (int g = 0; g < G; g++) pb[g] = _mm512_set1_ps(p[g * ldp + j]);
            for (int c = 0; c < C; c++) {
                const __m512 x = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 16 * c)));
                for (int g = 0; g < G; g++) a[g][c] = _mm512_fmadd_ps(pb[g], x, a[g][c]);
            }
        }
        for (int g = 0; g < G; g++)
            for (int c = 0; c < C; c++)
                _mm512_storeu_ps(out + g * hd + d0 + 16 * c, _mm512_mul_ps(a[g][c], _mm512_set1_ps(inv[g])));
    }
    values_scalar_fma512(out, G, p, ldp, inv, v, ldv, n, hv, hd);
}

T512 void qst_kvh_values_avx512(float *out, int G, const float *p, int64_t ldp, const float *inv, const uint16_t *v,
                           int64_t ldv, int64_t n, int64_t d0, int64_t hd) {
    (void)d0;
#define VALUES(k) values512_g(k, out, p, ldp, inv, v, ldv, n, hd)
    QST_KVH_BY_HEADS(G, VALUES)
#undef VALUES
}

// A tile as two vectors of 8 keys.
T256 static AI void scores256_g(const int G, float *sc, const float *qs, const uint16_t *kt, int64_t n, int64_t hd,
                                int64_t ldsc) {
    for (int64_t b = 0; b * TILE < n; b++) {
        const uint16_t *t0 = kt + b * hd * TILE;
        const int64_t left = n - b * TILE;
        __m256 a[HEADS_PER_PASS][2];
        for (int g = 0; g < G; g++) a[g][0] = a[g][1] = _mm256_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
            if (!(d & 1)) _mm_prefetch((const char *)(t0 + 2 * hd * TILE + d * TILE), _MM_HINT_T0);
            const __m256 k0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(t0 + d * TILE)));
            const __m256 k1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(t0 + d * TILE + 8)));
            for (int g = 0; g < G; g++) {
                const __m256 qb = _mm256_set1_ps(qs[g * hd + d]);
                a[g][0] = _mm256_fmadd_ps(qb, k0, a[g][0]);
                a[g][1] = _mm256_fmadd_ps(qb, k1, a[g][1]);
            }
        }
        for (int g = 0; g < G; g++) {
            float *o = sc + g * ldsc + b * TILE;
            if (left >= TILE) {
                _mm256_storeu_ps(o, a[g][0]);
                _mm256_storeu_ps(o + 8, a[g][1]);
            } else { // the partial last tile: lanes past n are not stored
                float t[TILE];
                _mm256_storeu_ps(t, a[g][0]);
                _mm256_storeu_ps(t + 8, a[g][1]);
                memcpy(o, t, (size_t)left * sizeof(float));
            }
        }
    }
}

T256 void qst_kvh_scores_avx2(float *sc, int G, const float *qs, const uint16_t *kt, int64_t n, int64_t hd,
                           int64_t ldsc) {
#define SCORES(k) scores256_g(k, sc, qs, kt, n, hd, ldsc)
    QST_KVH_BY_HEADS(G, SCORES)
#undef SCORES
}

T256 static AI void values256_g(const int G, float *out, const float *p, int64_t ldp, const float *inv,
                                const uint16_t *v, int64_t ldv, int64_t n, int64_t hd) {
    const int64_t hv = hd / 8 * 8;
    for (int64_t d0 = 0; d0 < hv; d0 += 32) {
        const int C = (int)((hv - d0) / 8 < 4 ? (hv - d0) / 8 : 4);
        __m256 a[HEADS_PER_PASS][4];
        for (int g = 0; g < G; g++)
            for (int c = 0; c < 4; c++) a[g][c] = _mm256_setzero_ps();
        for (int64_t j = 0; j < n; j++) {
            const uint16_t *row = v + j * ldv + d0;
            _mm_prefetch((const char *)(row + 8 * ldv), _MM_HINT_T0);
            for (int c = 0; c < C; c++) {
                const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 8 * c)));
                for (int g = 0; g < G; g++) a[g][c] = _mm256_fmadd_ps(_mm256_set1_ps(p[g * ldp + j]), x, a[g][c]);
            }
        }
        for (int g = 0; g < G; g++)
            for (int c = 0; c < C; c++)
                _mm256_storeu_ps(out + g * hd + d0 + 8 * c, _mm256_mul_ps(a[g][c], _mm256_set1_ps(inv[g])));
    }
    values_scalar_fma256(out, G, p, ldp, inv, v, ldv, n, hv, hd);
}

T256 void qst_kvh_values_avx2(float *out, int G, const float *p, int64_t ldp, const float *inv, const uint16_t *v,
                           int64_t ldv, int64_t n, int64_t d0, int64_t hd) {
    (void)d0;
#define VALUES(k) values256_g(k, out, p, ldp, inv, v, ldv, n, hd)
    QST_KVH_BY_HEADS(G, VALUES)
#undef VALUES
}

T512 void qst_kvh_to_half_avx512(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = half_from_float(src[i]);
}
T512 void qst_kvh_to_float_avx512(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = float_from_half(src[i]);
}
T256 void qst_kvh_to_half_avx2(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = half_from_float(src[i]);
}
T256 void qst_kvh_to_float_avx2(float *dst, const uint16_t *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = float_from_half(src[i]);
}
#endif
