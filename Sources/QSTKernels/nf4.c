// NF4 block quantization and dequantization, bit-compatible with bitsandbytes
// (csrc kernels dQuantizeNF4 / kQuantizeBlockwise / dDequantizeNF4 / kDequantizeBlockwise).
//
// Both paths perform the same float32 operations in the same order (one IEEE division for
// the reciprocal, one multiply per element, strict `>` comparisons, one multiply per
// dequantized element), so they agree bit for bit. Contraction into FMA is disabled: a fused
// multiply-add would round differently from bitsandbytes.
#pragma STDC FP_CONTRACT OFF

#include "nf4.h"
#include "kernel_impl.h"
#include "nf4_internal.h"
#include "bf16_round.h"
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QST_NF4_X86 1
#endif

// bitsandbytes' NormalFloat-4 values (dDequantizeNF4), as float32 literals.
const float qst_nf4_codes[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

// The split points of bitsandbytes' dQuantizeNF4 decision tree, sorted. Index 0 is a pad so
// that qst_nf4_thresholds16[k] separates code k-1 from code k (used by the 16-lane table lookup).
const float qst_nf4_thresholds16[16] = {
    0.0f,
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f,
};

int qst_nf4_has_avx512(void) { return qst_impl_supported(QST_IMPL_AVX512); }

float qst_nf4_code_value(int code) { return qst_nf4_codes[code & 15]; }
float qst_nf4_threshold(int index) { return qst_nf4_thresholds16[1 + (index % 15)]; }

// ---------------------------------------------------------------------------------------
// Scalar path

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// For non-negative floats integer order is float order, and every NaN/inf lies at or above
// 0x7f800000, so one integer max gives both the absmax and the finiteness check.
int64_t qst_nf4_absmax_scalar(const float *x, int64_t len, float *absmax_out) {
    uint32_t m = 0;
    for (int64_t i = 0; i < len; i++) {
        uint32_t u = f32_bits(x[i]) & 0x7fffffffu;
        m = u > m ? u : m;
    }
    if (m >= 0x7f800000u) {
        for (int64_t i = 0; i < len; i++)
            if ((f32_bits(x[i]) & 0x7fffffffu) >= 0x7f800000u) return i;
    }
    *absmax_out = bits_f32(m);
    return -1;
}

void qst_nf4_quantize_block_scalar(const float *x, int64_t len, float recip, uint8_t *out) {
    int64_t j = 0;
    for (; j + 1 < len; j += 2) {
        unsigned hi = qst_nf4_code_scalar(x[j] * recip);
        unsigned lo = qst_nf4_code_scalar(x[j + 1] * recip);
        out[j / 2] = (uint8_t)((hi << 4) | lo);
    }
    if (j < len) {
        // bitsandbytes loads the missing partner as 0.0 and quantizes it like any element.
        unsigned hi = qst_nf4_code_scalar(x[j] * recip);
        unsigned lo = qst_nf4_code_scalar(0.0f * recip);
        out[j / 2] = (uint8_t)((hi << 4) | lo);
    }
}

void qst_nf4_dequant_f32_scalar(const uint8_t *codes, float scale, int64_t start, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        int64_t e = start + i;
        uint8_t b = codes[e >> 1];
        unsigned nib = (e & 1) ? (b & 15u) : (b >> 4);
        out[i] = qst_nf4_codes[nib] * scale;
    }
}


void qst_nf4_dequant_bf16_scalar(const uint8_t *codes, float scale, int64_t start, int64_t n, uint16_t *out) {
    for (int64_t i = 0; i < n; i++) {
        int64_t e = start + i;
        uint8_t b = codes[e >> 1];
        unsigned nib = (e & 1) ? (b & 15u) : (b >> 4);
        out[i] = qst_bf16_round(qst_nf4_codes[nib] * scale);
    }
}

// ---------------------------------------------------------------------------------------
// AVX-512 path

#if QST_NF4_X86
#define QST_AVX512 QST_NF4_AVX512

// 32 codes (two vectors of 16) -> 16 packed bytes, element 2j in the high nibble.
QST_AVX512 static inline __m128i pack_codes32(__m512i c0, __m512i c1) {
    __m128i b0 = _mm512_cvtepi32_epi8(c0), b1 = _mm512_cvtepi32_epi8(c1);
    const __m128i low = _mm_set1_epi16(0x00ff);
    __m128i p0 = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b0, low), 4), _mm_srli_epi16(b0, 8));
    __m128i p1 = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b1, low), 4), _mm_srli_epi16(b1, 8));
    return _mm_packus_epi16(p0, p1);
}

static inline __mmask16 mask16(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

QST_AVX512 static int64_t block_absmax_avx512(const float *x, int64_t len, float *absmax_out) {
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
    __m512i m = _mm512_setzero_si512();
    int64_t i = 0;
    for (; i + 16 <= len; i += 16)
        m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_loadu_si512((const void *)(x + i)), absmask));
    if (i < len)
        m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_maskz_loadu_epi32(mask16(len - i), x + i), absmask));
    uint32_t mx = _mm512_reduce_max_epu32(m);
    if (mx >= 0x7f800000u) return qst_nf4_absmax_scalar(x, len, absmax_out);
    *absmax_out = bits_f32(mx);
    return -1;
}

QST_AVX512 static void quantize_block_avx512(const float *x, int64_t len, float recip, uint8_t *out) {
    const __m512 thr = _mm512_loadu_ps(qst_nf4_thresholds16);
    const __m512 r = _mm512_set1_ps(recip);
    int64_t j = 0;
    for (; j + 32 <= len; j += 32) {
        __m512i c0 = qst_nf4_codes16_avx512(_mm512_mul_ps(_mm512_loadu_ps(x + j), r), thr);
        __m512i c1 = qst_nf4_codes16_avx512(_mm512_mul_ps(_mm512_loadu_ps(x + j + 16), r), thr);
        _mm_storeu_si128((__m128i *)(out + j / 2), pack_codes32(c0, c1));
    }
    if (j < len) {
        // Zero-filled lanes reproduce bitsandbytes' 0.0 padding of a partial block.
        int64_t rest = len - j;
        __m512 v0 = _mm512_maskz_loadu_ps(mask16(rest), x + j);
        __m512 v1 = _mm512_maskz_loadu_ps(mask16(rest - 16), x + j + 16);
        __m128i packed = pack_codes32(qst_nf4_codes16_avx512(_mm512_mul_ps(v0, r), thr),
                                      qst_nf4_codes16_avx512(_mm512_mul_ps(v1, r), thr));
        _mm_mask_storeu_epi8(out + j / 2, mask16((rest + 1) / 2), packed);
    }
}

// 16 packed bytes -> the 32 nibble indices in element order, as two 16-byte halves.
QST_AVX512 static inline void unpack32(const uint8_t *p, __m512i *i0, __m512i *i1) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    __m128i lo = _mm_and_si128(b, m4);
    *i0 = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo));
    *i1 = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(hi, lo));
}

QST_AVX512 static inline __m256i bf16_rne16(__m512 f) {
    __m512i u = _mm512_castps_si512(f);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16));
}

// Any start and n: an odd start or a ragged end goes through the scalar loop.
QST_AVX512 static void dequant_f32_avx512(const uint8_t *codes, float scale, int64_t start, int64_t n, float *out) {
    const __m512 lut = _mm512_loadu_ps(qst_nf4_codes);
    const __m512 s = _mm512_set1_ps(scale);
    if ((start & 1) && n > 0) { qst_nf4_dequant_f32_scalar(codes, scale, start, 1, out); start++; out++; n--; }
    const uint8_t *p = codes + (start >> 1);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32, p += 16) {
        __m512i i0, i1;
        unpack32(p, &i0, &i1);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_permutexvar_ps(i0, lut), s));
        _mm512_storeu_ps(out + i + 16, _mm512_mul_ps(_mm512_permutexvar_ps(i1, lut), s));
    }
    if (i < n) qst_nf4_dequant_f32_scalar(codes, scale, start + i, n - i, out + i);
}

QST_AVX512 static void dequant_bf16_avx512(const uint8_t *codes, float scale, int64_t start, int64_t n, uint16_t *out) {
    const __m512 lut = _mm512_loadu_ps(qst_nf4_codes);
    const __m512 s = _mm512_set1_ps(scale);
    if ((start & 1) && n > 0) { qst_nf4_dequant_bf16_scalar(codes, scale, start, 1, out); start++; out++; n--; }
    const uint8_t *p = codes + (start >> 1);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32, p += 16) {
        __m512i i0, i1;
        unpack32(p, &i0, &i1);
        _mm256_storeu_si256((__m256i *)(out + i), bf16_rne16(_mm512_mul_ps(_mm512_permutexvar_ps(i0, lut), s)));
        _mm256_storeu_si256((__m256i *)(out + i + 16), bf16_rne16(_mm512_mul_ps(_mm512_permutexvar_ps(i1, lut), s)));
    }
    if (i < n) qst_nf4_dequant_bf16_scalar(codes, scale, start + i, n - i, out + i);
}
#endif

// ---------------------------------------------------------------------------------------
// Entry points: one table of block functions per implementation.

typedef struct {
    int64_t (*absmax)(const float *, int64_t, float *);
    void (*quantize)(const float *, int64_t, float, uint8_t *);
    void (*dequant_f32)(const uint8_t *, float, int64_t, int64_t, float *);
    void (*dequant_bf16)(const uint8_t *, float, int64_t, int64_t, uint16_t *);
} nf4_ops;

static nf4_ops ops_for(int impl) {
    nf4_ops o = {qst_nf4_absmax_scalar, qst_nf4_quantize_block_scalar,
                 qst_nf4_dequant_f32_scalar, qst_nf4_dequant_bf16_scalar};
    switch (qst_impl_resolve(impl)) {
#if QST_NF4_X86
    case QST_IMPL_AVX512:
        o = (nf4_ops){block_absmax_avx512, quantize_block_avx512, dequant_f32_avx512, dequant_bf16_avx512};
        break;
    case QST_IMPL_AVX2:
        o = (nf4_ops){qst_nf4_absmax_avx2, qst_nf4_quantize_block_avx2, qst_nf4_dequant_f32_avx2,
                      qst_nf4_dequant_bf16_avx2};
        break;
#endif
#if defined(__aarch64__)
    case QST_IMPL_NEON:
        o = (nf4_ops){qst_nf4_absmax_neon, qst_nf4_quantize_block_neon, qst_nf4_dequant_f32_neon,
                      qst_nf4_dequant_bf16_neon};
        break;
#endif
    default: break;
    }
    return o;
}

int64_t qst_nf4_quantize_blocks(const float *x, int64_t count, int64_t block_size,
                                int64_t first_block, int64_t end_block,
                                uint8_t *codes, float *absmax, int impl) {
    const nf4_ops o = ops_for(impl);
    for (int64_t b = first_block; b < end_block; b++) {
        int64_t begin = b * block_size;
        int64_t len = count - begin < block_size ? count - begin : block_size;
        float amax = 0.0f;
        int64_t bad = o.absmax(x + begin, len, &amax);
        if (bad >= 0) return begin + bad;
        absmax[b] = amax;
        // As kQuantizeBlockwise: an all-zero block gives 1/0 = inf and 0*inf = NaN, which the
        // tree sends to code 0 (-1.0); dequantizing -1.0 * 0 still yields (negative) zero.
        float recip = 1.0f / amax;
        o.quantize(x + begin, len, recip, codes + begin / 2);
    }
    return -1;
}

void qst_nf4_dequantize_f32(const uint8_t *codes, const float *absmax, int64_t block_size,
                            int64_t start, int64_t n, float *out, int impl) {
    const nf4_ops o = ops_for(impl);
    int64_t e = start, end = start + n;
    while (e < end) {
        int64_t b = e / block_size;
        int64_t stop = (b + 1) * block_size < end ? (b + 1) * block_size : end;
        o.dequant_f32(codes, absmax[b], e, stop - e, out + (e - start));
        e = stop;
    }
}

void qst_nf4_dequantize_bf16(const uint8_t *codes, const float *absmax, int64_t block_size,
                             int64_t start, int64_t n, uint16_t *out, int impl) {
    const nf4_ops o = ops_for(impl);
    int64_t e = start, end = start + n;
    while (e < end) {
        int64_t b = e / block_size;
        int64_t stop = (b + 1) * block_size < end ? (b + 1) * block_size : end;
        o.dequant_bf16(codes, absmax[b], e, stop - e, out + (e - start));
        e = stop;
    }
}
