// small_gemv.h's AVX2 (+FMA) and AVX-512 paths: small_gemv_body.h instantiated per instruction set, for
// float32 weights and for bfloat16 weights (widened to float32 by a zero extension and a 16-bit shift).
#include "small_gemv_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define V __m256
#define W 8
#define SG_MAX_ACC 12
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ZERO() _mm256_setzero_ps()
#define V_ADD _mm256_add_ps
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define ATTR __attribute__((target("avx2,fma")))
#define SFX avx2
#define SG_WT float
#define V_LOAD_W V_LOAD
#include "small_gemv_body.h"
#undef SFX
#undef SG_WT
#undef V_LOAD_W
#define SFX bf16_avx2
#define SG_WT uint16_t
#define V_LOAD_W(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#include "small_gemv_body.h"
#undef SFX
#undef SG_WT
#undef V_LOAD_W
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

#define V __m512
#define W 16
#define SG_MAX_ACC 16
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ZERO() _mm512_setzero_ps()
#define V_ADD _mm512_add_ps
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define SFX avx512
#define SG_WT float
#define V_LOAD_W V_LOAD
#include "small_gemv_body.h"
#undef SFX
#undef SG_WT
#undef V_LOAD_W
#define SFX bf16_avx512
#define SG_WT uint16_t
#define V_LOAD_W(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#include "small_gemv_body.h"

#else
QST_SG_STUB(avx2, float)
QST_SG_STUB(avx512, float)
QST_SG_STUB(bf16_avx2, uint16_t)
QST_SG_STUB(bf16_avx512, uint16_t)
#endif
