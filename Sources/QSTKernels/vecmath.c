// Scalar references of vecmath.h and the dispatch to the vector paths. The references follow the
// formulas in vecmath.h literally (libm expf, sums in double) so tests can hold every vector path
// against them.
#include "vecmath_internal.h"
#include "cpu.h"
#include <math.h>
#include <string.h>

int qst_vec_supported(int path) {
    const uint32_t f = qst_cpu_features();
    switch (path) {
    case QST_VEC_SCALAR: return 1;
    case QST_VEC_AVX2: return (f & QST_CPU_AVX2_BASE) == QST_CPU_AVX2_BASE;
    case QST_VEC_AVX512: return (f & QST_CPU_AVX512_BASE) == QST_CPU_AVX512_BASE;
    case QST_VEC_NEON: return (f & QST_CPU_NEON) != 0;
    }
    return 0;
}

int qst_vec_best_path(void) {
    static const int order[] = {QST_VEC_AVX512, QST_VEC_AVX2, QST_VEC_NEON};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (qst_vec_supported(order[i])) return order[i];
    return QST_VEC_SCALAR;
}

const char *qst_vec_path_name(int path) {
    switch (path) {
    case QST_VEC_SCALAR: return "scalar";
    case QST_VEC_AVX2: return "avx2";
    case QST_VEC_AVX512: return "avx512";
    case QST_VEC_NEON: return "neon";
    }
    return "none";
}

static int resolve(int path) {
    if (path == QST_VEC_AUTO) path = qst_vec_best_path();
    return qst_vec_supported(path) ? path : -1;
}

// ---- scalar references

static void softmax_scalar(float *row, int64_t n) {
    float mx = row[0];
    for (int64_t j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j < n; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; j++) row[j] *= inv;
}

static void exp_from_max_scalar(float *row, int64_t n, float *max, double *sum) {
    float mx = row[0];
    for (int64_t j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    double s = 0;
    for (int64_t j = 0; j < n; j++) {
        row[j] = expf(row[j] - mx);
        s += row[j];
    }
    *max = mx;
    *sum = s;
}

static void silu_mul_scalar(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void attn_fwd_scalar(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldk, int64_t T,
                            int64_t hd, int64_t len, float scale, float *probs, float *out, int64_t ldo) {
    for (int64_t i = 0; i < T; i++) {
        const int64_t n = i + 1 < len ? i + 1 : len;
        float *row = probs + i * T, *o = out + i * ldo;
        for (int64_t d = 0; d < hd; d++) o[d] = 0;
        if (n <= 0) continue;
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t d = 0; d < hd; d++) s += (double)q[i * ldq + d] * k[j * ldk + d];
            row[j] = (float)(s * scale);
        }
        softmax_scalar(row, n);
        for (int64_t d = 0; d < hd; d++) {
            double s = 0;
            for (int64_t j = 0; j < n; j++) s += (double)row[j] * v[j * ldk + d];
            o[d] = (float)s;
        }
    }
}

static void attn_bwd_scalar(const float *q, const float *dout, float *dq, int64_t ldq, const float *k,
                            const float *v, float *dk, float *dv, int64_t ldk, const float *probs, int64_t group,
                            int64_t T, int64_t hd, int64_t len, float scale, float *ds) {
    for (int64_t g = 0; g < group; g++) {
        for (int64_t i = 0; i < T; i++) {
            const int64_t n = i + 1 < len ? i + 1 : len;
            if (n <= 0) continue;
            const float *p = probs + (g * T + i) * T;
            const float *qi = q + i * ldq + g * hd, *doi = dout + i * ldq + g * hd;
            float *dqi = dq + i * ldq + g * hd;
            double dot = 0;
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t d = 0; d < hd; d++) {
                    s += (double)doi[d] * v[j * ldk + d];
                    dv[j * ldk + d] += p[j] * doi[d];
                }
                ds[j] = (float)s;
                dot += (double)p[j] * ds[j];
            }
            for (int64_t j = 0; j < n; j++) ds[j] = scale * p[j] * (ds[j] - (float)dot);
            for (int64_t d = 0; d < hd; d++) {
                double s = 0;
                for (int64_t j = 0; j < n; j++) {
                    s += (double)ds[j] * k[j * ldk + d];
                    dk[j * ldk + d] += ds[j] * qi[d];
                }
                dqi[d] += (float)s;
            }
        }
    }
}

// ---- dispatch

int qst_softmax_inplace(float *row, int64_t n, int path) {
    path = resolve(path);
    if (path < 0) return -1;
    if (n <= 0) return 0;
    switch (path) {
    case QST_VEC_AVX2: return qst_vec_softmax_avx2(row, n);
    case QST_VEC_AVX512: return qst_vec_softmax_avx512(row, n);
    case QST_VEC_NEON: return qst_vec_softmax_neon(row, n);
    }
    softmax_scalar(row, n);
    return 0;
}

int qst_exp_from_max(float *row, int64_t n, float *max, double *sum, int path) {
    path = resolve(path);
    if (path < 0 || n <= 0) return -1;
    switch (path) {
    case QST_VEC_AVX2: return qst_vec_exp_from_max_avx2(row, n, max, sum);
    case QST_VEC_AVX512: return qst_vec_exp_from_max_avx512(row, n, max, sum);
    case QST_VEC_NEON: return qst_vec_exp_from_max_neon(row, n, max, sum);
    }
    exp_from_max_scalar(row, n, max, sum);
    return 0;
}

int qst_silu_mul(float *out, const float *gate, const float *up, int64_t n, int path) {
    path = resolve(path);
    if (path < 0) return -1;
    if (n <= 0) return 0;
    switch (path) {
    case QST_VEC_AVX2: return qst_vec_silu_mul_avx2(out, gate, up, n);
    case QST_VEC_AVX512: return qst_vec_silu_mul_avx512(out, gate, up, n);
    case QST_VEC_NEON: return qst_vec_silu_mul_neon(out, gate, up, n);
    }
    silu_mul_scalar(out, gate, up, n);
    return 0;
}

// Vector paths: keys and values transposed to [hd][T] (contiguous over keys), their gradients likewise,
// one row of dS, and the scaled query / dO row.
int64_t qst_side_attn_forward_scratch(int64_t T, int64_t hd) { return 2 * hd * T + 2 * hd + 16; }
int64_t qst_side_attn_backward_scratch(int64_t T, int64_t hd) { return 4 * hd * T + T + 2 * hd + 16; }

int qst_side_attn_forward(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldk, int64_t T,
                          int64_t hd, int64_t len, float scale, float *probs, float *out, int64_t ldo,
                          float *scratch, int path) {
    path = resolve(path);
    if (path < 0 || hd <= 0 || len > T) return -1;
    switch (path) {
    case QST_VEC_AVX2: return qst_vec_attn_fwd_avx2(q, ldq, k, v, ldk, T, hd, len, scale, probs, out, ldo, scratch);
    case QST_VEC_AVX512: return qst_vec_attn_fwd_avx512(q, ldq, k, v, ldk, T, hd, len, scale, probs, out, ldo, scratch);
    case QST_VEC_NEON: return qst_vec_attn_fwd_neon(q, ldq, k, v, ldk, T, hd, len, scale, probs, out, ldo, scratch);
    }
    attn_fwd_scalar(q, ldq, k, v, ldk, T, hd, len, scale, probs, out, ldo);
    return 0;
}

int qst_side_attn_backward(const float *q, const float *dout, float *dq, int64_t ldq, const float *k,
                           const float *v, float *dk, float *dv, int64_t ldk, const float *probs, int64_t group,
                           int64_t T, int64_t hd, int64_t len, float scale, float *scratch, int path) {
    path = resolve(path);
    if (path < 0 || hd <= 0 || len > T) return -1;
    switch (path) {
    case QST_VEC_AVX2:
        return qst_vec_attn_bwd_avx2(q, dout, dq, ldq, k, v, dk, dv, ldk, probs, group, T, hd, len, scale, scratch);
    case QST_VEC_AVX512:
        return qst_vec_attn_bwd_avx512(q, dout, dq, ldq, k, v, dk, dv, ldk, probs, group, T, hd, len, scale, scratch);
    case QST_VEC_NEON:
        return qst_vec_attn_bwd_neon(q, dout, dq, ldq, k, v, dk, dv, ldk, probs, group, T, hd, len, scale, scratch);
    }
    attn_bwd_scalar(q, dout, dq, ldq, k, v, dk, dv, ldk, probs, group, T, hd, len, scale, scratch);
    return 0;
}
