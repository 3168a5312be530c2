// The weighted NF4 error of one block under many candidate scales: the inner loop of the
// scale search (Formats/NF4.md §6), which `qst-quantize --search`, `--calibrate` and
// `--method gptq` run ~20 times per block.
//
// For scale s the reference evaluates, in element order,
//     r = f32(1 / s);  c = number of thresholds below f32(x_i * r);
//     d = f64(x_i) - f64(f32(NF4[c] * s));  e = e + (f64(w_i) * d) * d
// (NF4ScaleSearch.Block in Swift did exactly this). The vector paths put one candidate scale in
// each lane and walk the elements in the same order, so every candidate's sum is formed by the
// same operations as the scalar loop: all paths return the scalar path's bits, and a file
// written with any of them is the same file. Contraction into FMA is off (package flag and
// pragma): a fused multiply-add would round differently.
#pragma STDC FP_CONTRACT OFF

#include "kernel_impl.h"
#include "nf4.h"
#include "nf4_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QST_BLOCK_ERRORS_X86 1
#endif

static void errors_scalar(const float *x, const float *w, int64_t n, const float *scales, int64_t count,
                          double *errors) {
    for (int64_t j = 0; j < count; j++) {
        const float s = scales[j], r = 1.0f / s;
        double e = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const unsigned c = qst_nf4_code_scalar(x[i] * r);
            const double d = (double)x[i] - (double)(qst_nf4_codes[c] * s);
            e = e + ((double)w[i] * d) * d;
        }
        errors[j] = e;
    }
}

#if QST_BLOCK_ERRORS_X86
#define QST_AVX2 __attribute__((target("avx2")))

// 16 candidates per pass. Codes by the codec's binary search, values by the same permute over
// the 16 code values.
QST_NF4_AVX512 static void errors_avx512(const float *x, const float *w, int64_t n, const float *scales,
                                     int64_t count, double *errors) {
    const __m512 thr = _mm512_loadu_ps(qst_nf4_thresholds16), val = _mm512_loadu_ps(qst_nf4_codes);
    for (int64_t j = 0; j < count; j += 16) {
        const __mmask16 k = count - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (count - j)) - 1);
        // Unused lanes compute with scale 1 and are not stored.
        const __m512 s = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), k, scales + j);
        const __m512 r = _mm512_div_ps(_mm512_set1_ps(1.0f), s);
        __m512d e0 = _mm512_setzero_pd(), e1 = _mm512_setzero_pd();
        for (int64_t i = 0; i < n; i++) {
            const __m512 v = _mm512_mul_ps(_mm512_set1_ps(x[i]), r);
            const __m512i c = qst_nf4_codes16_avx512(v, thr);
            const __m512 p = _mm512_mul_ps(_mm512_permutexvar_ps(c, val), s);
            const __m512d xd = _mm512_set1_pd((double)x[i]), wd = _mm512_set1_pd((double)w[i]);
            const __m512d d0 = _mm512_sub_pd(xd, _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
            const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1));
            const __m512d d1 = _mm512_sub_pd(xd, _mm512_cvtps_pd(hi));
            e0 = _mm512_add_pd(e0, _mm512_mul_pd(_mm512_mul_pd(wd, d0), d0));
            e1 = _mm512_add_pd(e1, _mm512_mul_pd(_mm512_mul_pd(wd, d1), d1));
        }
        _mm512_mask_storeu_pd(errors + j, (__mmask8)(k & 0xff), e0);
        _mm512_mask_storeu_pd(errors + j + 8, (__mmask8)(k >> 8), e1);
    }
}

// 8 candidates per pass. Codes by the codec's 15 compares, values by two 8-entry
// permutes chosen by the code's top bit (the compare against threshold 8).
QST_AVX2 static void errors_avx2(const float *x, const float *w, int64_t n, const float *scales, int64_t count,
                                 double *errors) {
    const __m256 lo = _mm256_loadu_ps(qst_nf4_codes), hi = _mm256_loadu_ps(qst_nf4_codes + 8);
    for (int64_t j = 0; j < count; j += 8) {
        float sb[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        const int64_t m = count - j < 8 ? count - j : 8;
        for (int64_t t = 0; t < m; t++) sb[t] = scales[j + t];
        const __m256 s = _mm256_loadu_ps(sb);
        const __m256 r = _mm256_div_ps(_mm256_set1_ps(1.0f), s);
        __m256d e0 = _mm256_setzero_pd(), e1 = _mm256_setzero_pd();
        for (int64_t i = 0; i < n; i++) {
            const __m256 v = _mm256_mul_ps(_mm256_set1_ps(x[i]), r);
            const __m256i c = qst_nf4_codes8_avx2(v);
            const __m256 upper = _mm256_cmp_ps(v, _mm256_set1_ps(qst_nf4_thresholds16[8]), _CMP_GT_OQ);
            const __m256 q = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c), _mm256_permutevar8x32_ps(hi, c), upper);
            const __m256 p = _mm256_mul_ps(q, s);
            const __m256d xd = _mm256_set1_pd((double)x[i]), wd = _mm256_set1_pd((double)w[i]);
            const __m256d d0 = _mm256_sub_pd(xd, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
            const __m256d d1 = _mm256_sub_pd(xd, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
            e0 = _mm256_add_pd(e0, _mm256_mul_pd(_mm256_mul_pd(wd, d0), d0));
            e1 = _mm256_add_pd(e1, _mm256_mul_pd(_mm256_mul_pd(wd, d1), d1));
        }
        double eb[8];
        _mm256_storeu_pd(eb, e0);
        _mm256_storeu_pd(eb + 4, e1);
        for (int64_t t = 0; t < m; t++) errors[j + t] = eb[t];
    }
}
#endif

void qst_nf4_block_errors(const float *x, const float *w, int64_t n, const float *scales, int64_t count,
                          double *errors, int impl) {
    if (n < 0 || count <= 0) return;
    switch (qst_impl_resolve(impl)) {
#if QST_BLOCK_ERRORS_X86
    case QST_IMPL_AVX512: errors_avx512(x, w, n, scales, count, errors); return;
    case QST_IMPL_AVX2: errors_avx2(x, w, n, scales, count, errors); return;
#endif
#if defined(__aarch64__)
    case QST_IMPL_NEON: qst_nf4_block_errors_neon(x, w, n, scales, count, errors); return;
#endif
    default: errors_scalar(x, w, n, scales, count, errors); return;
    }
}
