// small_gemv.h's AVX2 (+FMA) and AVX-512 paths: small_gemv_body.h instantiated twice.
#include "small_gemv_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define SFX avx2
#define ATTR __attribute__((target("avx2,fma")))
#define V __m256
#define W 8
#define SG_MAX_ACC 12
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ZERO() _mm256_setzero_ps()
#define V_ADD _mm256_add_ps
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#include "small_gemv_body.h"
#undef SFX
#undef ATTR
#undef V
#undef W
#undef SG_MAX_ACC
#undef V_LOAD
#undef V_STORE
#undef V_SET1
#undef V_ZERO
#undef V_ADD
#undef V_FMA

#define SFX avx512
#define ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define V __m512
#define W 16
#define SG_MAX_ACC 16
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ZERO() _mm512_setzero_ps()
#define V_ADD _mm512_add_ps
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#include "small_gemv_body.h"

#else
QST_SG_STUB(avx2)
QST_SG_STUB(avx512)
#endif
