// Quantization error statistics: sums of x², (x − y)² and max |x − y|.
//
// Every path keeps the same 16 float lanes (lane l sees elements i ≡ l mod 16 of each run of
// 512), the same operations in the same order (no FMA contraction) and the same reductions,
// so scalar, AVX2 and NEON give identical bits; only how many lanes one instruction covers
// differs.
#pragma STDC FP_CONTRACT OFF
#include "stats.h"
#include "kernel_impl.h"
#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QST_STATS_X86 1
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

// Lanes of a run: s += a·a, e += d·d, m = |d| > m ? |d| : m, for i in [i, end) in steps of 16.
typedef size_t (*lanes_fn)(const float *x, const float *y, size_t i, size_t end, float *s, float *e, float *m);

static size_t lanes_scalar(const float *x, const float *y, size_t i, size_t end, float *s, float *e, float *m) {
    for (; i + 16 <= end; i += 16) {
        for (int l = 0; l < 16; l++) {
            float a = x[i + l], d = a - y[i + l];
            s[l] += a * a;
            e[l] += d * d;
            float ad = fabsf(d);
            m[l] = ad > m[l] ? ad : m[l];
        }
    }
    return i;
}

#if QST_STATS_X86
__attribute__((target("avx2")))
static size_t lanes_avx2(const float *x, const float *y, size_t i, size_t end, float *s, float *e, float *m) {
    __m256 s0 = _mm256_loadu_ps(s), s1 = _mm256_loadu_ps(s + 8);
    __m256 e0 = _mm256_loadu_ps(e), e1 = _mm256_loadu_ps(e + 8);
    __m256 m0 = _mm256_loadu_ps(m), m1 = _mm256_loadu_ps(m + 8);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (; i + 16 <= end; i += 16) {
        __m256 a0 = _mm256_loadu_ps(x + i), a1 = _mm256_loadu_ps(x + i + 8);
        __m256 d0 = _mm256_sub_ps(a0, _mm256_loadu_ps(y + i)), d1 = _mm256_sub_ps(a1, _mm256_loadu_ps(y + i + 8));
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(a0, a0));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(a1, a1));
        e0 = _mm256_add_ps(e0, _mm256_mul_ps(d0, d0));
        e1 = _mm256_add_ps(e1, _mm256_mul_ps(d1, d1));
        // maxps(a, b) is exactly "a > b ? a : b", NaN included.
        m0 = _mm256_max_ps(_mm256_and_ps(d0, absmask), m0);
        m1 = _mm256_max_ps(_mm256_and_ps(d1, absmask), m1);
    }
    _mm256_storeu_ps(s, s0); _mm256_storeu_ps(s + 8, s1);
    _mm256_storeu_ps(e, e0); _mm256_storeu_ps(e + 8, e1);
    _mm256_storeu_ps(m, m0); _mm256_storeu_ps(m + 8, m1);
    return i;
}
#endif

#if defined(__aarch64__)
static size_t lanes_neon(const float *x, const float *y, size_t i, size_t end, float *s, float *e, float *m) {
    float32x4_t sv[4], ev[4], mv[4];
    for (int q = 0; q < 4; q++) { sv[q] = vld1q_f32(s + 4 * q); ev[q] = vld1q_f32(e + 4 * q); mv[q] = vld1q_f32(m + 4 * q); }
    for (; i + 16 <= end; i += 16) {
        for (int q = 0; q < 4; q++) {
            float32x4_t a = vld1q_f32(x + i + 4 * q), d = vsubq_f32(a, vld1q_f32(y + i + 4 * q));
            sv[q] = vaddq_f32(sv[q], vmulq_f32(a, a));
            ev[q] = vaddq_f32(ev[q], vmulq_f32(d, d));
            // fmax would propagate NaN; the reference keeps m when the compare fails.
            float32x4_t ad = vabsq_f32(d);
            mv[q] = vbslq_f32(vcgtq_f32(ad, mv[q]), ad, mv[q]);
        }
    }
    for (int q = 0; q < 4; q++) { vst1q_f32(s + 4 * q, sv[q]); vst1q_f32(e + 4 * q, ev[q]); vst1q_f32(m + 4 * q, mv[q]); }
    return i;
}
#endif

void qst_error_sums_impl(const float *x, const float *y, size_t n, double *signal, double *error, double *max_abs,
                         int impl) {
    lanes_fn lanes = lanes_scalar;
    switch (qst_impl_resolve(impl)) {
#if QST_STATS_X86
    case QST_IMPL_AVX512: // memory bound: the AVX2 loop is as fast
    case QST_IMPL_AVX2: lanes = lanes_avx2; break;
#endif
#if defined(__aarch64__)
    case QST_IMPL_NEON: lanes = lanes_neon; break;
#endif
    default: break;
    }
    double sig = 0, err = 0;
    float mx = 0;
    size_t i = 0;
    // Runs of 512 keep the float partial sums accurate.
    while (i < n) {
        size_t end = i + 512 < n ? i + 512 : n;
        float s[16] = {0}, e[16] = {0}, m[16] = {0};
        i = lanes(x, y, i, end, s, e, m);
        double ss = 0, ee = 0;
        for (int l = 0; l < 16; l++) { ss += s[l]; ee += e[l]; mx = m[l] > mx ? m[l] : mx; }
        for (; i < end; i++) {
            double a = x[i], d = a - (double)y[i];
            ss += a * a; ee += d * d;
            if (fabs(d) > mx) mx = (float)fabs(d);
        }
        sig += ss; err += ee;
    }
    *signal = sig; *error = err; *max_abs = mx;
}

void qst_error_sums(const float *x, const float *y, size_t n, double *signal, double *error, double *max_abs) {
    qst_error_sums_impl(x, y, n, signal, error, max_abs, QST_IMPL_AUTO);
}
