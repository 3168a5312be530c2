// vecmath.h's AVX2 (+FMA) and AVX-512 paths: vecmath_body.h instantiated twice. The exponential:
// clamp below, n = round(x·log2 e) by the 1.5·2²³ trick,
// r = x − n·ln2 in two parts, a degree-7 Taylor polynomial, 2ⁿ from exponent bits.
#include "vecmath_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define VM_EXP_CONSTANTS(SET1)                                                                        \
    const __typeof__(SET1(0.0f)) lo = SET1(-87.3f), magic = SET1(12582912.0f), log2e = SET1(1.44269504088896341f), \
        ln2hi = SET1(0.693359375f), ln2lo = SET1(-2.12194440e-4f)

// ---- AVX2
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
TARGET_AVX2 static inline __m256 exp_avx2(__m256 x) {
    VM_EXP_CONSTANTS(_mm256_set1_ps);
    x = _mm256_max_ps(x, lo);
    const __m256 t = _mm256_fmadd_ps(x, log2e, magic);
    const __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, ln2hi, x);
    r = _mm256_fnmadd_ps(n, ln2lo, r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic)), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
TARGET_AVX2 static inline float hsum_avx2(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
TARGET_AVX2 static inline float hmax_avx2(__m256 v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

#define SFX avx2
#define ATTR TARGET_AVX2
#define V __m256
#define W 8
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ZERO() _mm256_setzero_ps()
#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
#define V_DIV _mm256_div_ps
#define V_MAX _mm256_max_ps
#define V_MIN _mm256_min_ps
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_HSUM hsum_avx2
#define V_HMAX hmax_avx2
#define V_EXP exp_avx2
#include "vecmath_body.h"
#undef SFX
#undef ATTR
#undef V
#undef W
#undef V_LOAD
#undef V_STORE
#undef V_SET1
#undef V_ZERO
#undef V_ADD
#undef V_SUB
#undef V_MUL
#undef V_DIV
#undef V_MAX
#undef V_MIN
#undef V_FMA
#undef V_HSUM
#undef V_HMAX
#undef V_EXP

// ---- AVX-512
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
TARGET_AVX512 static inline __m512 exp_avx512(__m512 x) {
    VM_EXP_CONSTANTS(_mm512_set1_ps);
    x = _mm512_max_ps(x, lo);
    const __m512 t = _mm512_fmadd_ps(x, log2e, magic);
    const __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fnmadd_ps(n, ln2hi, x);
    r = _mm512_fnmadd_ps(n, ln2lo, r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(magic)), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}
TARGET_AVX512 static inline float hsum_avx512(__m512 v) { return _mm512_reduce_add_ps(v); }
TARGET_AVX512 static inline float hmax_avx512(__m512 v) { return _mm512_reduce_max_ps(v); }

#define SFX avx512
#define ATTR TARGET_AVX512
#define V __m512
#define W 16
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ZERO() _mm512_setzero_ps()
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_DIV _mm512_div_ps
#define V_MAX _mm512_max_ps
#define V_MIN _mm512_min_ps
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_HSUM hsum_avx512
#define V_HMAX hmax_avx512
#define V_EXP exp_avx512
#include "vecmath_body.h"

#else
QST_VEC_STUBS(avx2)
QST_VEC_STUBS(avx512)
#endif
