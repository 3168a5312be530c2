// kv_half.h: binary16 conversions and the decode attention over a binary16 cache, scalar reference plus
// AVX-512, AVX2 + F16C and NEON paths. Every path forms the scores and the weighted value sums with a fused
// multiply-add per term in the reference's order (lanes are keys for the scores, head dimensions for the
// values); the exponentials are vecmath.h's, which differ between paths by float rounding.
#include "kv_half_internal.h"
#include "cpu.h"
#include "vecmath.h"

int64_t qst_f16_key_tile_halves(int64_t n, int64_t hd) { return (n + TILE - 1) / TILE * hd * TILE; }

void qst_f16_key_tiles_store(uint16_t *kt, int64_t hd, int64_t first, const float *k, int64_t ldk, int64_t rows) {
    for (int64_t r = 0; r < rows; r++) {
        const int64_t j = first + r;
        uint16_t *t = kt + (j / TILE) * hd * TILE + j % TILE;
        for (int64_t d = 0; d < hd; d++) t[d * TILE] = half_from_float(k[r * ldk + d]);
    }
}

// ---- the scalar reference of the attention's phases, and the softmax every path shares

// sc[g*ldsc + j] for keys [0, n), qs[g*hd + d] = q * scale.
static void scores_scalar(float *sc, int G, const float *qs, const uint16_t *kt, int64_t n, int64_t hd, int64_t ldsc) {
    for (int64_t j = 0; j < n; j++) {
        const uint16_t *t = key_tile(kt, hd, j) + j % TILE;
        for (int g = 0; g < G; g++) {
            float s = 0;
            for (int64_t d = 0; d < hd; d++) s = fmaf(qs[g * hd + d], float_from_half(t[d * TILE]), s);
            sc[g * ldsc + j] = s;
        }
    }
}

SCALAR_VALUES(values_scalar, )

// Masks the scores, turns them into weights and returns each head's 1 / sum (0 when every key is masked).
static void softmax_rows(float *sc, int G, int64_t n, const uint8_t *mask, float *inv, int path) {
    for (int g = 0; g < G; g++) {
        float *row = sc + g * n;
        if (mask)
            for (int64_t j = 0; j < n; j++)
                if (!mask[j]) row[j] = -INFINITY;
        float mx = 0;
        double sum = 0;
        qst_exp_from_max(row, n, &mx, &sum, path);
        if (!(mx > -INFINITY)) {
            for (int64_t j = 0; j < n; j++) row[j] = 0;
            inv[g] = 0;
            continue;
        }
        if (mask)
            for (int64_t j = 0; j < n; j++)
                if (!mask[j]) row[j] = 0;
        inv[g] = 1.0f / (float)sum;
    }
}

typedef void (*scores_fn)(float *, int, const float *, const uint16_t *, int64_t, int64_t, int64_t);
typedef void (*values_fn)(float *, int, const float *, int64_t, const float *, const uint16_t *, int64_t, int64_t,
                          int64_t, int64_t);

static void to_half_scalar(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = half_from_float(src[i]);
}
static void to_float_scalar(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = float_from_half(src[i]);
}

// The path to run: -1 if it cannot run here; the AVX2 path without F16C runs the scalar loops.
static int resolve(int path) {
    if (path == QST_VEC_AUTO) path = qst_vec_best_path();
    if (!qst_vec_supported(path)) return -1;
    if (path == QST_VEC_AVX2 && !(qst_cpu_features() & QST_CPU_F16C)) return QST_VEC_SCALAR;
    return path;
}

typedef void (*to_half_fn)(uint16_t *, const float *, int64_t);
typedef void (*to_float_fn)(float *, const uint16_t *, int64_t);

// The conversion loops of a resolved path.
static to_half_fn to_half_path(int p) {
#if defined(__x86_64__)
    if (p == QST_VEC_AVX512) return qst_kvh_to_half_avx512;
    if (p == QST_VEC_AVX2) return qst_kvh_to_half_avx2;
#elif defined(__aarch64__)
    if (p == QST_VEC_NEON) return qst_kvh_to_half_neon;
#endif
    (void)p;
    return to_half_scalar;
}
static to_float_fn to_float_path(int p) {
#if defined(__x86_64__)
    if (p == QST_VEC_AVX512) return qst_kvh_to_float_avx512;
    if (p == QST_VEC_AVX2) return qst_kvh_to_float_avx2;
#elif defined(__aarch64__)
    if (p == QST_VEC_NEON) return qst_kvh_to_float_neon;
#endif
    (void)p;
    return to_float_scalar;
}

int qst_f16_from_f32(uint16_t *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t cols,
                     int path) {
    const int p = resolve(path);
    if (p < 0) return -1;
    const to_half_fn f = to_half_path(p);
    for (int64_t r = 0; r < rows; r++) f(dst + r * ldd, src + r * lds, cols);
    return 0;
}

int qst_f32_from_f16(float *dst, int64_t ldd, const uint16_t *src, int64_t lds, int64_t rows, int64_t cols,
                     int path) {
    const int p = resolve(path);
    if (p < 0) return -1;
    const to_float_fn f = to_float_path(p);
    for (int64_t r = 0; r < rows; r++) f(dst + r * ldd, src + r * lds, cols);
    return 0;
}

int qst_f16_key_tiles_widen(float *dst, int64_t ldd, const uint16_t *kt, int64_t hd, int64_t rows, int path) {
    const int p = resolve(path);
    if (p < 0) return -1;
    const to_float_fn f = to_float_path(p);
    for (int64_t b = 0; b * TILE < rows; b++) {
        const int64_t count = rows - b * TILE < TILE ? rows - b * TILE : TILE;
        for (int64_t d = 0; d < hd; d++) f(dst + d * ldd + b * TILE, kt + (b * hd + d) * TILE, count);
    }
    return 0;
}

int qst_decode_attention_f16(float *out, const float *q, int64_t group, const uint16_t *kt, const uint16_t *v,
                             int64_t ldv, int64_t n, int64_t hd, float scale, const uint8_t *mask, float *scratch,
                             int path) {
    const int p = resolve(path);
    if (p < 0 || n < 1 || group < 1 || hd < 1 || hd > MAX_HD) return -1;
    scores_fn scores = scores_scalar;
    values_fn values = values_scalar;
#if defined(__x86_64__)
    if (p == QST_VEC_AVX512) scores = qst_kvh_scores_avx512, values = qst_kvh_values_avx512;
    if (p == QST_VEC_AVX2) scores = qst_kvh_scores_avx2, values = qst_kvh_values_avx2;
#elif defined(__aarch64__)
    if (p == QST_VEC_NEON) scores = qst_kvh_scores_neon, values = qst_kvh_values_neon;
#endif
    // The exponentials of the scalar fallback (AVX2 without F16C) stay on the requested vector path.
    const int exp_path = path == QST_VEC_AUTO ? qst_vec_best_path() : path;
    for (int64_t g0 = 0; g0 < group; g0 += HEADS_PER_PASS) {
        const int G = (int)(group - g0 < HEADS_PER_PASS ? group - g0 : HEADS_PER_PASS);
        float qs[HEADS_PER_PASS * MAX_HD], inv[HEADS_PER_PASS];
        for (int g = 0; g < G; g++)
            for (int64_t d = 0; d < hd; d++) qs[g * hd + d] = q[(g0 + g) * hd + d] * scale;
        float *sc = scratch + g0 * n;
        scores(sc, G, qs, kt, n, hd, n);
        softmax_rows(sc, G, n, mask, inv, exp_path);
        values(out + g0 * hd, G, sc, n, inv, v, ldv, n, 0, hd);
    }
    return 0;
}
