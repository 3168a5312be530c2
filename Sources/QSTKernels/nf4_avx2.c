// NF4 codec, AVX2 path (Haswell / Zen and later without AVX-512). Same float32 operations in
// the same order as the scalar path (nf4.c), so the codes, absmax and dequantized values are
// bit-identical; only the lane width differs.
#pragma STDC FP_CONTRACT OFF
#if defined(__x86_64__) || defined(__i386__)
#include "nf4_internal.h"
#include <immintrin.h>
#include <string.h>

#define QST_AVX2 __attribute__((target("avx2")))

QST_AVX2 int64_t qst_nf4_absmax_avx2(const float *x, int64_t len, float *absmax_out) {
    // Integer max of |x| bits: float order for non-negative values, NaN/inf at the top.
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        m0 = _mm256_max_epu32(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), absmask));
        m1 = _mm256_max_epu32(m1, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 8)), absmask));
    }
    __m256i m = _mm256_max_epu32(m0, m1);
    __m128i h = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    h = _mm_max_epu32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_max_epu32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    uint32_t mx = (uint32_t)_mm_cvtsi128_si32(h);
    for (; i < len; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        u &= 0x7fffffffu;
        mx = u > mx ? u : mx;
    }
    if (mx >= 0x7f800000u) return qst_nf4_absmax_scalar(x, len, absmax_out);
    memcpy(absmax_out, &mx, 4);
    return -1;
}

// 32 elements -> 16 packed bytes, element 2j in the high nibble.
QST_AVX2 static inline __m128i quantize32(const float *x, __m256 r) {
    __m256i c0 = qst_nf4_codes8_avx2(_mm256_mul_ps(_mm256_loadu_ps(x), r));
    __m256i c1 = qst_nf4_codes8_avx2(_mm256_mul_ps(_mm256_loadu_ps(x + 8), r));
    __m256i c2 = qst_nf4_codes8_avx2(_mm256_mul_ps(_mm256_loadu_ps(x + 16), r));
    __m256i c3 = qst_nf4_codes8_avx2(_mm256_mul_ps(_mm256_loadu_ps(x + 24), r));
    // Packs interleave the 128-bit lanes; the dword permute restores element order.
    __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3));
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // Each 16-bit word holds (e2j, e2j+1): byte = e2j << 4 | e2j+1.
    __m256i w = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x00ff)), 4),
                                _mm256_srli_epi16(b, 8));
    return _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

QST_AVX2 void qst_nf4_quantize_block_avx2(const float *x, int64_t len, float recip, uint8_t *out) {
    const __m256 r = _mm256_set1_ps(recip);
    int64_t j = 0;
    for (; j + 32 <= len; j += 32) _mm_storeu_si128((__m128i *)(out + j / 2), quantize32(x + j, r));
    if (j < len) {
        // Zero-filled lanes reproduce bitsandbytes' 0.0 padding of a partial block.
        float tail[32] = {0};
        memcpy(tail, x + j, (size_t)(len - j) * sizeof(float));
        uint8_t packed[16];
        _mm_storeu_si128((__m128i *)packed, quantize32(tail, r));
        memcpy(out + j / 2, packed, (size_t)(len - j + 1) / 2);
    }
}

// 16-entry float table lookup: two 8-lane permutes, bit 3 of the index picks the half.
QST_AVX2 static inline __m256 lookup8(__m128i idx8, __m256 lo, __m256 hi) {
    __m256i idx = _mm256_cvtepu8_epi32(idx8);
    __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), sel);
}

// 16 packed bytes -> 32 nibble indices in element order (two 16-byte halves).
QST_AVX2 static inline void unpack32(const uint8_t *p, __m128i *e0, __m128i *e1) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4), lo = _mm_and_si128(b, m4);
    *e0 = _mm_unpacklo_epi8(hi, lo);
    *e1 = _mm_unpackhi_epi8(hi, lo);
}

QST_AVX2 void qst_nf4_dequant_f32_avx2(const uint8_t *codes, float scale, int64_t start, int64_t n, float *out) {
    const __m256 lo = _mm256_loadu_ps(qst_nf4_codes), hi = _mm256_loadu_ps(qst_nf4_codes + 8);
    const __m256 s = _mm256_set1_ps(scale);
    if ((start & 1) && n > 0) { qst_nf4_dequant_f32_scalar(codes, scale, start, 1, out); start++; out++; n--; }
    const uint8_t *p = codes + (start >> 1);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32, p += 16) {
        __m128i e0, e1;
        unpack32(p, &e0, &e1);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(lookup8(e0, lo, hi), s));
        _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(lookup8(_mm_srli_si128(e0, 8), lo, hi), s));
        _mm256_storeu_ps(out + i + 16, _mm256_mul_ps(lookup8(e1, lo, hi), s));
        _mm256_storeu_ps(out + i + 24, _mm256_mul_ps(lookup8(_mm_srli_si128(e1, 8), lo, hi), s));
    }
    if (i < n) qst_nf4_dequant_f32_scalar(codes, scale, start + i, n - i, out + i);
}

// bfloat16 output: a block has one scale, so its 16 possible outputs are computed once (code *
// scale rounded to nearest even, as the scalar qst_bf16_round) and split into a low- and a high-byte
// table; each 32 elements then cost two byte shuffles and two interleaves.
QST_AVX2 static inline void bf16_tables(float scale, __m256i *lo_t, __m256i *hi_t) {
    const __m256 s = _mm256_set1_ps(scale);
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    __m256i u0 = _mm256_castps_si256(_mm256_mul_ps(_mm256_loadu_ps(qst_nf4_codes), s));
    __m256i u1 = _mm256_castps_si256(_mm256_mul_ps(_mm256_loadu_ps(qst_nf4_codes + 8), s));
    u0 = _mm256_srli_epi32(_mm256_add_epi32(u0, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u0, 16), one))), 16);
    u1 = _mm256_srli_epi32(_mm256_add_epi32(u1, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u1, 16), one))), 16);
    // 16-bit values h0..h15 in order, then per lane: low bytes of its 8, high bytes of its 8.
    __m256i h = _mm256_permute4x64_epi64(_mm256_packus_epi32(u0, u1), _MM_SHUFFLE(3, 1, 2, 0));
    const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                           0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    h = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(h, split), _MM_SHUFFLE(3, 1, 2, 0));
    *lo_t = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(h));
    *hi_t = _mm256_broadcastsi128_si256(_mm256_extracti128_si256(h, 1));
}

QST_AVX2 void qst_nf4_dequant_bf16_avx2(const uint8_t *codes, float scale, int64_t start, int64_t n, uint16_t *out) {
    if ((start & 1) && n > 0) { qst_nf4_dequant_bf16_scalar(codes, scale, start, 1, out); start++; out++; n--; }
    if (n < 32) { qst_nf4_dequant_bf16_scalar(codes, scale, start, n, out); return; }
    __m256i lo_t, hi_t;
    bf16_tables(scale, &lo_t, &hi_t);
    const uint8_t *p = codes + (start >> 1);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32, p += 16) {
        __m128i e0, e1;
        unpack32(p, &e0, &e1);
        const __m256i idx = _mm256_set_m128i(e1, e0); // elements 0-15 | 16-31
        const __m256i lo = _mm256_shuffle_epi8(lo_t, idx), hi = _mm256_shuffle_epi8(hi_t, idx);
        // Per 128-bit lane: unpacklo = elements 0-7 (16-23), unpackhi = 8-15 (24-31).
        const __m256i a = _mm256_unpacklo_epi8(lo, hi), b = _mm256_unpackhi_epi8(lo, hi);
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_permute2x128_si256(a, b, 0x20));
        _mm256_storeu_si256((__m256i *)(out + i + 16), _mm256_permute2x128_si256(a, b, 0x31));
    }
    if (i < n) qst_nf4_dequant_bf16_scalar(codes, scale, start + i, n - i, out + i);
}
#endif
