// small_gemv.h: the scalar reference (the formula of the header, literally, with fmaf) and the dispatch
// to the vector paths.
#include "small_gemv_internal.h"
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

static void small_gemv_scalar(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const float *wt,
                              int64_t ldw, int64_t in, int64_t out, const float *bias, int accumulate, int chains) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        for (int64_t j = 0; j < out; j++) {
            float acc[8] = {0};
            for (int64_t i = 0; i < in; i++) acc[i % chains] = fmaf(xr[i], wt[i * ldw + j], acc[i % chains]);
            float s = acc[0];
            for (int p = 1; p < chains; p++) s = s + acc[p];
            if (accumulate) s = yr[j] + s;
            if (bias) s = s + bias[j];
            yr[j] = s;
        }
    }
}

int qst_small_gemv(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const float *wt, int64_t ldw,
                   int64_t in, int64_t out, const float *bias, int accumulate, int path) {
    if (n < 0 || in < 0 || out < 0 || ldw < qst_small_gemv_ld(out) || ldw % 16 != 0 || ldy < out || ldx < in)
        return -1;
    if (path == QST_VEC_AUTO) path = qst_vec_best_path();
    if (!qst_vec_supported(path)) return -1;
    if (n == 0 || out == 0) return 0;
    const int chains = qst_small_gemv_chains(out);
    switch (path) {
    case QST_VEC_SCALAR:
        small_gemv_scalar(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
        return 0;
    case QST_VEC_AVX2: return qst_small_gemv_avx2(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
    case QST_VEC_AVX512: return qst_small_gemv_avx512(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
    case QST_VEC_NEON: return qst_small_gemv_neon(y, ldy, x, ldx, n, wt, ldw, in, out, bias, accumulate, chains);
    }
    return -1;
}
