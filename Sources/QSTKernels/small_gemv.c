// small_gemv.h: the scalar reference (the formula of the header, literally, with fmaf) and the dispatch
// to the vector paths, for float32 and for bfloat16 weights.
#include "small_gemv_internal.h"
#include "bf16_round.h"
#include "vecmath.h"
#include <math.h>
#include <string.h>

int64_t qst_small_gemv_ld(int64_t out) { return (out + 15) / 16 * 16; }

int qst_small_gemv_chains(int64_t out) { return out <= 16 ? 8 : out <= 32 ? 4 : out <= 96 ? 2 : 1; }

void qst_small_gemv_pack(float *wt, const float *w, int64_t in, int64_t out) {
    const int64_t ldw = qst_small_gemv_ld(out);
    for (int64_t i = 0; i < in; i++) {
        float *row = wt + i * ldw;
        for (int64_t j = 0; j < out; j++) row[j] = w[j * in + i];
        for (int64_t j = out; j < ldw; j++) row[j] = 0.0f;
    }
}

void qst_small_gemv_pack_bf16(uint16_t *wt, const float *w, int64_t in, int64_t out) {
    const int64_t ldw = qst_small_gemv_ld(out);
    for (int64_t i = 0; i < in; i++) {
        uint16_t *row = wt + i * ldw;
        for (int64_t j = 0; j < out; j++) row[j] = qst_bf16_round(w[j * in + i]);
        for (int64_t j = out; j < ldw; j++) row[j] = 0;
    }
}

// Weight i * ldw + j as float32: wf for float32 weights, else wb's bfloat16 bits widened.
static inline float weight_at(const float *wf, const uint16_t *wb, int64_t e) {
    if (wf) return wf[e];
    const uint32_t u = (uint32_t)wb[e] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void small_gemv_scalar(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const float *wf,
                              const uint16_t *wb, int64_t ldw, int64_t in, int64_t out, const float *bias,
                              int accumulate, int chains) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        for (int64_t j = 0; j < out; j++) {
            float acc[8] = {0};
            for (int64_t i = 0; i < in; i++)
                acc[i % chains] = fmaf(xr[i], weight_at(wf, wb, i * ldw + j), acc[i % chains]);
            float s = acc[0];
            for (int p = 1; p < chains; p++) s = s + acc[p];
            if (accumulate) s = yr[j] + s;
            if (bias) s = s + bias[j];
            yr[j] = s;
        }
    }
}

// Validates and resolves the path; 1 when the caller should compute, 0 when there is nothing to do, -1 on
// invalid arguments or a path this CPU cannot run.
static int prepare(int64_t ldy, int64_t ldx, int64_t n, int64_t ldw, int64_t in, int64_t out, int *path) {
    if (n < 0 || in < 0 || out < 0 || ldw < qst_small_gemv_ld(out) || ldw % 16 != 0 || ldy < out || ldx < in)
        return -1;
    if (*path == QST_VEC_AUTO) *path = qst_vec_best_path();
    if (!qst_vec_supported(*path)) return -1;
    return n == 0 || out == 0 ? 0 : 1;
}

int qst_small_gemv(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const float *wt, int64_t ldw,
                   int64_t in, int64_t out, const float *bias, int accumulate, int path) {
    const int go = prepare(ldy, ldx, n, ldw, in, out, &path);
    if (go <= 0) return go;
    const int chains = qst_small_gemv_chains(out);
    switch (path) {
    case QST_VEC_SCALAR:
        small_gemv_scalar(y, ldy, x, ldx, n, wt, NULL, ldw, in, out, bias, accumulate, chains);
        return 0;
    case QST_VEC_AVX2: return qst_small_gemv_avx2(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
    case QST_VEC_AVX512: return qst_small_gemv_avx512(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
    case QST_VEC_NEON: return qst_small_gemv_neon(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
    }
    return -1;
}

int qst_small_gemv_bf16(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const uint16_t *wt,
                        int64_t ldw, int64_t in, int64_t out, const float *bias, int accumulate, int path) {
    const int go = prepare(ldy, ldx, n, ldw, in, out, &path);
    if (go <= 0) return go;
    const int chains = qst_small_gemv_chains(out);
    switch (path) {
    case QST_VEC_SCALAR:
        small_gemv_scalar(y, ldy, x, ldx, n, NULL, wt, ldw, in, out, bias, accumulate, chains);
        return 0;
    case QST_VEC_AVX2:
        return qst_small_gemv_bf16_avx2(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
    case QST_VEC_AVX512:
        return qst_small_gemv_bf16_avx512(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
    case QST_VEC_NEON:
        return qst_small_gemv_bf16_neon(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
    }
    return -1;
}
