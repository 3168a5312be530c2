// NF4 codec, ARM64 NEON path. Same float32 operations in the same order as the scalar path
// (nf4.c), so codes, absmax and dequantized values are bit-identical.
#pragma STDC FP_CONTRACT OFF
#if defined(__aarch64__)
#include "nf4_internal.h"
#include <arm_neon.h>
#include <string.h>

int64_t qst_nf4_absmax_neon(const float *x, int64_t len, float *absmax_out) {
    // Integer max of |x| bits: float order for non-negative values, NaN/inf at the top.
    const uint32x4_t absmask = vdupq_n_u32(0x7fffffffu);
    uint32x4_t m0 = vdupq_n_u32(0), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        m0 = vmaxq_u32(m0, vandq_u32(vld1q_u32((const uint32_t *)(x + i)), absmask));
        m1 = vmaxq_u32(m1, vandq_u32(vld1q_u32((const uint32_t *)(x + i + 4)), absmask));
        m2 = vmaxq_u32(m2, vandq_u32(vld1q_u32((const uint32_t *)(x + i + 8)), absmask));
        m3 = vmaxq_u32(m3, vandq_u32(vld1q_u32((const uint32_t *)(x + i + 12)), absmask));
    }
    uint32_t mx = vmaxvq_u32(vmaxq_u32(vmaxq_u32(m0, m1), vmaxq_u32(m2, m3)));
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

// 16 elements -> 16 codes (one byte each, element order).
static inline uint8x16_t codes16(const float *x, float32x4_t r) {
    uint16x8_t a = vcombine_u16(vmovn_u32(qst_nf4_codes4_neon(vmulq_f32(vld1q_f32(x), r))),
                                vmovn_u32(qst_nf4_codes4_neon(vmulq_f32(vld1q_f32(x + 4), r))));
    uint16x8_t b = vcombine_u16(vmovn_u32(qst_nf4_codes4_neon(vmulq_f32(vld1q_f32(x + 8), r))),
                                vmovn_u32(qst_nf4_codes4_neon(vmulq_f32(vld1q_f32(x + 12), r))));
    return vcombine_u8(vmovn_u16(a), vmovn_u16(b));
}

// 32 elements -> 16 packed bytes, element 2j in the high nibble.
static inline uint8x16_t quantize32(const float *x, float32x4_t r) {
    uint8x16_t e0 = codes16(x, r), e1 = codes16(x + 16, r);
    uint8x16_t even = vuzp1q_u8(e0, e1), odd = vuzp2q_u8(e0, e1);
    return vsliq_n_u8(odd, even, 4);
}

void qst_nf4_quantize_block_neon(const float *x, int64_t len, float recip, uint8_t *out) {
    const float32x4_t r = vdupq_n_f32(recip);
    int64_t j = 0;
    for (; j + 32 <= len; j += 32) vst1q_u8(out + j / 2, quantize32(x + j, r));
    if (j < len) {
        // Zero-filled lanes reproduce bitsandbytes' 0.0 padding of a partial block.
        float tail[32] = {0};
        memcpy(tail, x + j, (size_t)(len - j) * sizeof(float));
        uint8_t packed[16];
        vst1q_u8(packed, quantize32(tail, r));
        memcpy(out + j / 2, packed, (size_t)(len - j + 1) / 2);
    }
}

// The 16 code values split into byte planes: plane b holds byte b of each float, so four
// 16-entry byte lookups and two rounds of zips rebuild 16 floats.
typedef struct { uint8x16_t p0, p1, p2, p3; } planes;

static inline planes code_planes(void) {
    uint8_t b[4][16];
    for (int c = 0; c < 16; c++) {
        uint32_t u;
        memcpy(&u, &qst_nf4_codes[c], 4);
        for (int k = 0; k < 4; k++) b[k][c] = (uint8_t)(u >> (8 * k));
    }
    planes p = {vld1q_u8(b[0]), vld1q_u8(b[1]), vld1q_u8(b[2]), vld1q_u8(b[3])};
    return p;
}

// 16 indices -> 16 code values, times scale.
static inline void lookup16(const planes *t, uint8x16_t idx, float32x4_t s, float32x4_t out[4]) {
    uint8x16_t b0 = vqtbl1q_u8(t->p0, idx), b1 = vqtbl1q_u8(t->p1, idx);
    uint8x16_t b2 = vqtbl1q_u8(t->p2, idx), b3 = vqtbl1q_u8(t->p3, idx);
    uint16x8_t lo01 = vreinterpretq_u16_u8(vzip1q_u8(b0, b1)), hi01 = vreinterpretq_u16_u8(vzip2q_u8(b0, b1));
    uint16x8_t lo23 = vreinterpretq_u16_u8(vzip1q_u8(b2, b3)), hi23 = vreinterpretq_u16_u8(vzip2q_u8(b2, b3));
    out[0] = vmulq_f32(vreinterpretq_f32_u16(vzip1q_u16(lo01, lo23)), s);
    out[1] = vmulq_f32(vreinterpretq_f32_u16(vzip2q_u16(lo01, lo23)), s);
    out[2] = vmulq_f32(vreinterpretq_f32_u16(vzip1q_u16(hi01, hi23)), s);
    out[3] = vmulq_f32(vreinterpretq_f32_u16(vzip2q_u16(hi01, hi23)), s);
}

// 16 packed bytes -> 32 nibble indices in element order.
static inline void unpack32(const uint8_t *p, uint8x16_t *e0, uint8x16_t *e1) {
    uint8x16_t b = vld1q_u8(p);
    uint8x16_t hi = vshrq_n_u8(b, 4), lo = vandq_u8(b, vdupq_n_u8(15));
    *e0 = vzip1q_u8(hi, lo);
    *e1 = vzip2q_u8(hi, lo);
}

void qst_nf4_dequant_f32_neon(const uint8_t *codes, float scale, int64_t start, int64_t n, float *out) {
    const planes t = code_planes();
    const float32x4_t s = vdupq_n_f32(scale);
    if ((start & 1) && n > 0) { qst_nf4_dequant_f32_scalar(codes, scale, start, 1, out); start++; out++; n--; }
    const uint8_t *p = codes + (start >> 1);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32, p += 16) {
        uint8x16_t e0, e1;
        unpack32(p, &e0, &e1);
        float32x4_t v[4];
        lookup16(&t, e0, s, v);
        for (int q = 0; q < 4; q++) vst1q_f32(out + i + 4 * q, v[q]);
        lookup16(&t, e1, s, v);
        for (int q = 0; q < 4; q++) vst1q_f32(out + i + 16 + 4 * q, v[q]);
    }
    if (i < n) qst_nf4_dequant_f32_scalar(codes, scale, start + i, n - i, out + i);
}

// bfloat16 output: one scale per block, so the 16 possible outputs (code * scale rounded to
// nearest even, as the scalar qst_bf16_round) are computed once and split into low- and high-byte
// tables; 16 elements then cost two table lookups and two zips.
static inline void bf16_tables(float scale, uint8x16_t *lo_t, uint8x16_t *hi_t) {
    const uint32x4_t bias = vdupq_n_u32(0x7fff), one = vdupq_n_u32(1);
    uint16x8_t h[2];
    for (int half = 0; half < 2; half++) {
        uint32x4_t u[2];
        for (int q = 0; q < 2; q++) {
            u[q] = vreinterpretq_u32_f32(vmulq_n_f32(vld1q_f32(qst_nf4_codes + 8 * half + 4 * q), scale));
            u[q] = vaddq_u32(u[q], vaddq_u32(bias, vandq_u32(vshrq_n_u32(u[q], 16), one)));
        }
        h[half] = vcombine_u16(vshrn_n_u32(u[0], 16), vshrn_n_u32(u[1], 16));
    }
    *lo_t = vuzp1q_u8(vreinterpretq_u8_u16(h[0]), vreinterpretq_u8_u16(h[1]));
    *hi_t = vuzp2q_u8(vreinterpretq_u8_u16(h[0]), vreinterpretq_u8_u16(h[1]));
}

static inline void store_bf16x16(uint16_t *out, uint8x16_t lo_t, uint8x16_t hi_t, uint8x16_t idx) {
    const uint8x16_t lo = vqtbl1q_u8(lo_t, idx), hi = vqtbl1q_u8(hi_t, idx);
    vst1q_u16(out, vreinterpretq_u16_u8(vzip1q_u8(lo, hi)));
    vst1q_u16(out + 8, vreinterpretq_u16_u8(vzip2q_u8(lo, hi)));
}

void qst_nf4_dequant_bf16_neon(const uint8_t *codes, float scale, int64_t start, int64_t n, uint16_t *out) {
    if ((start & 1) && n > 0) { qst_nf4_dequant_bf16_scalar(codes, scale, start, 1, out); start++; out++; n--; }
    if (n < 32) { qst_nf4_dequant_bf16_scalar(codes, scale, start, n, out); return; }
    uint8x16_t lo_t, hi_t;
    bf16_tables(scale, &lo_t, &hi_t);
    const uint8_t *p = codes + (start >> 1);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32, p += 16) {
        uint8x16_t e0, e1;
        unpack32(p, &e0, &e1);
        store_bf16x16(out + i, lo_t, hi_t, e0);
        store_bf16x16(out + i + 16, lo_t, hi_t, e1);
    }
    if (i < n) qst_nf4_dequant_bf16_scalar(codes, scale, start + i, n - i, out + i);
}
#endif
