// The vector paths of vecmath.h, written once over a few lane macros and instantiated per instruction
// set by vecmath_x86.c and vecmath_neon.c. The includer defines:
//   SFX              suffix of the entry points (avx2, avx512, neon)
//   ATTR             the target attribute of every function
//   V, W             vector type and its lane count
//   V_LOAD(p) V_STORE(p, v) V_SET1(x) V_ZERO() V_ADD V_SUB V_MUL V_DIV V_MAX V_MIN
//   V_FMA(a, b, c)   a * b + c (fused)
//   V_HSUM(v) V_HMAX(v)  horizontal sum / max
//   V_EXP(v)         exp of lanes <= 88 (lanes below -87.3 give exp(-87.3))
// Tails shorter than W run the scalar formulas (libm expf).
#include <math.h>
#include <string.h>

#define VM_CAT2(a, b) a##b
#define VM_CAT(a, b) VM_CAT2(a, b)
#define VM_FN(name) VM_CAT(name, SFX)

ATTR static inline float VM_FN(vm_max_)(const float *row, int64_t n) {
    int64_t j = 0;
    float mx = -INFINITY;
    if (n >= W) {
        V m = V_LOAD(row);
        for (j = W; j + W <= n; j += W) m = V_MAX(m, V_LOAD(row + j));
        mx = V_HMAX(m);
    }
    for (; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    return mx;
}

// row[j] = exp(row[j] - shift); returns the sum.
ATTR static inline float VM_FN(vm_exp_shifted_)(float *row, int64_t n, float shift) {
    const V s = V_SET1(shift);
    V acc = V_ZERO();
    int64_t j = 0;
    for (; j + W <= n; j += W) {
        const V e = V_EXP(V_SUB(V_LOAD(row + j), s));
        V_STORE(row + j, e);
        acc = V_ADD(acc, e);
    }
    float sum = V_HSUM(acc);
    for (; j < n; j++) {
        row[j] = expf(row[j] - shift);
        sum += row[j];
    }
    return sum;
}

ATTR static inline void VM_FN(vm_scale_)(float *row, int64_t n, float c) {
    const V cv = V_SET1(c);
    int64_t j = 0;
    for (; j + W <= n; j += W) V_STORE(row + j, V_MUL(V_LOAD(row + j), cv));
    for (; j < n; j++) row[j] *= c;
}

ATTR static inline float VM_FN(vm_dot_)(const float *a, const float *b, int64_t n) {
    V a0 = V_ZERO(), a1 = V_ZERO();
    int64_t j = 0;
    for (; j + 2 * W <= n; j += 2 * W) {
        a0 = V_FMA(V_LOAD(a + j), V_LOAD(b + j), a0);
        a1 = V_FMA(V_LOAD(a + j + W), V_LOAD(b + j + W), a1);
    }
    if (j + W <= n) {
        a0 = V_FMA(V_LOAD(a + j), V_LOAD(b + j), a0);
        j += W;
    }
    float s = V_HSUM(V_ADD(a0, a1));
    for (; j < n; j++) s += a[j] * b[j];
    return s;
}

// dst[j] += a[j] * c
ATTR static inline void VM_FN(vm_axpy_)(float *dst, const float *a, float c, int64_t n) {
    const V cv = V_SET1(c);
    int64_t j = 0;
    for (; j + W <= n; j += W) V_STORE(dst + j, V_FMA(V_LOAD(a + j), cv, V_LOAD(dst + j)));
    for (; j < n; j++) dst[j] += a[j] * c;
}

ATTR static void VM_FN(vm_transpose_)(const float *src, int64_t ld, int64_t rows, int64_t T, int64_t hd, float *dst) {
    for (int64_t j = 0; j < rows; j++)
        for (int64_t d = 0; d < hd; d++) dst[d * T + j] = src[j * ld + d];
}

ATTR int VM_FN(qst_vec_softmax_)(float *row, int64_t n) {
    const float mx = VM_FN(vm_max_)(row, n);
    const float sum = VM_FN(vm_exp_shifted_)(row, n, mx);
    VM_FN(vm_scale_)(row, n, 1.0f / sum);
    return 0;
}

ATTR int VM_FN(qst_vec_exp_from_max_)(float *row, int64_t n, float *max, double *sum) {
    *max = VM_FN(vm_max_)(row, n);
    *sum = VM_FN(vm_exp_shifted_)(row, n, *max);
    return 0;
}

ATTR int VM_FN(qst_vec_silu_mul_)(float *out, const float *gate, const float *up, int64_t n) {
    const V one = V_SET1(1.0f), zero = V_ZERO(), cap = V_SET1(88.0f);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        const V g = V_LOAD(gate + i);
        // exp(-g) capped at exp(88): silu(g) = g / (1 + exp(-g)) is then below 1e-36 in magnitude anyway.
        const V e = V_EXP(V_MIN(V_SUB(zero, g), cap));
        V_STORE(out + i, V_MUL(V_DIV(g, V_ADD(one, e)), V_LOAD(up + i)));
    }
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
    return 0;
}

ATTR int VM_FN(qst_vec_attn_fwd_)(const float *q, int64_t ldq, const float *k, const float *v, int64_t ldk,
                                  int64_t T, int64_t hd, int64_t len, float scale, float *probs, float *out,
                                  int64_t ldo, float *scratch) {
    const int64_t rows = len < T ? len : T;
    float *kt = scratch, *vt = scratch + hd * T, *qs = scratch + 2 * hd * T;
    VM_FN(vm_transpose_)(k, ldk, rows, T, hd, kt);
    VM_FN(vm_transpose_)(v, ldk, rows, T, hd, vt);
    for (int64_t i = 0; i < T; i++) {
        const int64_t n = i + 1 < len ? i + 1 : len;
        float *row = probs + i * T, *o = out + i * ldo;
        if (n <= 0) {
            memset(o, 0, (size_t)hd * sizeof(float));
            continue;
        }
        for (int64_t d = 0; d < hd; d++) qs[d] = q[i * ldq + d] * scale;
        // Scores: each lane accumulates its key's dot product over d in a register.
        int64_t j = 0;
        for (; j + W <= n; j += W) {
            V acc = V_MUL(V_SET1(qs[0]), V_LOAD(kt + j));
            for (int64_t d = 1; d < hd; d++) acc = V_FMA(V_SET1(qs[d]), V_LOAD(kt + d * T + j), acc);
            V_STORE(row + j, acc);
        }
        for (; j < n; j++) {
            float s = qs[0] * kt[j];
            for (int64_t d = 1; d < hd; d++) s += qs[d] * kt[d * T + j];
            row[j] = s;
        }
        const float mx = VM_FN(vm_max_)(row, n);
        const float inv = 1.0f / VM_FN(vm_exp_shifted_)(row, n, mx);
        VM_FN(vm_scale_)(row, n, inv);
        for (int64_t d = 0; d < hd; d++) o[d] = VM_FN(vm_dot_)(row, vt + d * T, n);
    }
    return 0;
}

ATTR int VM_FN(qst_vec_attn_bwd_)(const float *q, const float *dout, float *dq, int64_t ldq, const float *k,
                                  const float *v, float *dk, float *dv, int64_t ldk, const float *probs,
                                  int64_t group, int64_t T, int64_t hd, int64_t len, float scale, float *scratch) {
    const int64_t rows = len < T ? len : T;
    float *kt = scratch, *vt = kt + hd * T, *dkt = vt + hd * T, *dvt = dkt + hd * T, *ds = dvt + hd * T;
    float *dov = ds + T;
    VM_FN(vm_transpose_)(k, ldk, rows, T, hd, kt);
    VM_FN(vm_transpose_)(v, ldk, rows, T, hd, vt);
    for (int64_t d = 0; d < hd; d++) {
        memset(dkt + d * T, 0, (size_t)rows * sizeof(float));
        memset(dvt + d * T, 0, (size_t)rows * sizeof(float));
    }
    for (int64_t g = 0; g < group; g++) {
        for (int64_t i = 0; i < T; i++) {
            const int64_t n = i + 1 < len ? i + 1 : len;
            if (n <= 0) continue;
            const float *p = probs + (g * T + i) * T;
            const float *qi = q + i * ldq + g * hd;
            for (int64_t d = 0; d < hd; d++) dov[d] = dout[i * ldq + g * hd + d];
            // dS row = dO·Vᵀ, dV += Pᵀ·dO, and the row sum of P ⊙ dS, in one pass over the keys.
            V vdot = V_ZERO();
            int64_t j = 0;
            for (; j + W <= n; j += W) {
                const V pj = V_LOAD(p + j);
                V acc = V_ZERO();
                for (int64_t d = 0; d < hd; d++) {
                    const V od = V_SET1(dov[d]);
                    acc = V_FMA(od, V_LOAD(vt + d * T + j), acc);
                    V_STORE(dvt + d * T + j, V_FMA(pj, od, V_LOAD(dvt + d * T + j)));
                }
                V_STORE(ds + j, acc);
                vdot = V_FMA(pj, acc, vdot);
            }
            float dot = V_HSUM(vdot);
            for (; j < n; j++) {
                float s = 0;
                for (int64_t d = 0; d < hd; d++) {
                    s += dov[d] * vt[d * T + j];
                    dvt[d * T + j] += p[j] * dov[d];
                }
                ds[j] = s;
                dot += p[j] * s;
            }
            const V dotv = V_SET1(dot), sv = V_SET1(scale);
            for (j = 0; j + W <= n; j += W)
                V_STORE(ds + j, V_MUL(sv, V_MUL(V_LOAD(p + j), V_SUB(V_LOAD(ds + j), dotv))));
            for (; j < n; j++) ds[j] = scale * p[j] * (ds[j] - dot);
            float *dqi = dq + i * ldq + g * hd;
            for (int64_t d = 0; d < hd; d++) {
                dqi[d] += VM_FN(vm_dot_)(ds, kt + d * T, n);
                VM_FN(vm_axpy_)(dkt + d * T, ds, qi[d], n);
            }
        }
    }
    for (int64_t j = 0; j < rows; j++)
        for (int64_t d = 0; d < hd; d++) {
            dk[j * ldk + d] += dkt[d * T + j];
            dv[j * ldk + d] += dvt[d * T + j];
        }
    return 0;
}

#undef VM_FN
#undef VM_CAT
#undef VM_CAT2
