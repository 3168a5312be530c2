// ARM64 NEON matmul paths (Apple Silicon, Graviton, Ampere), chosen by matmul.c.
//
// QST_KERNEL_NEON (exact float32 products): weight rows decoded to float32 exactly as the
// scalar reference (code value * absmax, bfloat16 bits << 16), four at a time, then a
// register-blocked micro-kernel of 4 x rows by 4 weight rows (16 float32x4 accumulators).
// One loop serves both shapes: for a single x row it streams each weight row once.
//
// QST_KERNEL_NEON_DOT (FEAT_DotProd, NF4 weights with block % 32 == 0): x rounded to int8
// per 32 elements (scale max|x| / 127, round to nearest even), NF4 codes mapped to the int8
// grid round(127 * value) by one byte-table lookup (vqtbl1q_s8), sdot into int32, and each
// 32-element group scaled back in float32 by x_scale * absmax / 127. Error per product
// <= |x| * absmax / 254 + |w| * x_scale / 2 (the C driver Tests/KernelsC checks that bound).
#if defined(__aarch64__)
#include "matmul_internal.h"
#include "nf4_internal.h"

#include <arm_neon.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QST_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

// Row j of W as float32: F32 rows are used in place, others decoded into `buf`.
static const float *weight_row(const qst_weight *w, int64_t j, float *buf) {
    switch (w->type) {
    case QST_WEIGHT_F32: return (const float *)w->data + j * w->ld;
    case QST_WEIGHT_BF16: {
        const uint16_t *row = (const uint16_t *)w->data + j * w->ld;
        int64_t t = 0;
        for (; t + 8 <= w->k; t += 8) {
            uint16x8_t h = vld1q_u16(row + t);
            vst1q_f32(buf + t, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
            vst1q_f32(buf + t + 4, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
        }
        for (; t < w->k; t++) {
            uint32_t u = (uint32_t)row[t] << 16;
            memcpy(buf + t, &u, 4);
        }
        return buf;
    }
    case QST_WEIGHT_NF4:
        for (int64_t b = 0; b < w->k; b += w->block) {
            const int64_t e = j * w->k + b;
            qst_nf4_dequant_f32_neon((const uint8_t *)w->data, w->absmax[e / w->block], e, w->block, buf + b);
        }
        return buf;
    }
    return buf;
}

// y[i, r] for RI x rows and 4 weight rows: 4 x 4 float32x4 accumulators.
#define MICRO(RI)                                                                                  \
    static void micro_##RI(const float *x, int64_t ldx, const float *const wr[4], int64_t k, float out[RI][4]) { \
        float32x4_t acc[RI][4];                                                                    \
        for (int i = 0; i < RI; i++)                                                               \
            for (int r = 0; r < 4; r++) acc[i][r] = vdupq_n_f32(0);                                \
        int64_t t = 0;                                                                             \
        for (; t + 4 <= k; t += 4) {                                                               \
            float32x4_t wv[4];                                                                     \
            for (int r = 0; r < 4; r++) wv[r] = vld1q_f32(wr[r] + t);                              \
            for (int i = 0; i < RI; i++) {                                                         \
                float32x4_t xv = vld1q_f32(x + i * ldx + t);                                       \
                for (int r = 0; r < 4; r++) acc[i][r] = vfmaq_f32(acc[i][r], xv, wv[r]);           \
            }                                                                                      \
        }                                                                                          \
        for (int i = 0; i < RI; i++)                                                               \
            for (int r = 0; r < 4; r++) {                                                          \
                float s = vaddvq_f32(acc[i][r]);                                                   \
                for (int64_t u = t; u < k; u++) s += x[i * ldx + u] * wr[r][u];                    \
                out[i][r] = s;                                                                     \
            }                                                                                      \
    }
MICRO(4)
MICRO(1)

static int matmul_exact(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                        float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const int64_t k = w->k;
    float *buf = NULL;
    if (w->type != QST_WEIGHT_F32 && !(buf = qst_mm_alloc((size_t)(4 * k) * sizeof(float)))) return QST_MATMUL_NO_MEMORY;
    for (int64_t j = n0; j < n1; j += 4) {
        const int64_t jr = n1 - j < 4 ? n1 - j : 4;
        const float *wr[4];
        for (int r = 0; r < 4; r++) wr[r] = weight_row(w, j + (r < jr ? r : 0), buf ? buf + r * k : NULL);
        int64_t i = 0;
        for (; i + 4 <= m; i += 4) {
            float out[4][4];
            micro_4(x + i * ldx, ldx, wr, k, out);
            for (int a = 0; a < 4; a++)
                for (int r = 0; r < jr; r++) y[(i + a) * ldy + j + r] = out[a][r];
        }
        for (; i < m; i++) {
            float out[1][4];
            micro_1(x + i * ldx, ldx, wr, k, out);
            for (int r = 0; r < jr; r++) y[i * ldy + j + r] = out[0][r];
        }
    }
    free(buf);
    return QST_MATMUL_OK;
}

// ------------------------------------------------------------------------------------------
// int8 dot-product path

// round(127 * NF4 value), code order.
static int8x16_t nf4_grid(void) {
    int8_t g[16];
    for (int c = 0; c < 16; c++) g[c] = (int8_t)lrintf(127.0f * qst_nf4_codes[c]);
    return vld1q_s8(g);
}

// One row of x (k % 32 == 0) -> int8 values and one float32 scale per 32 elements.
static void quantize_x_row(const float *x, int64_t k, int8_t *q, float *scale) {
    for (int64_t g = 0; g < k; g += 32) {
        float32x4_t v[8];
        float32x4_t mx = vdupq_n_f32(0);
        for (int u = 0; u < 8; u++) { v[u] = vld1q_f32(x + g + 4 * u); mx = vmaxq_f32(mx, vabsq_f32(v[u])); }
        const float amax = vmaxvq_f32(mx);
        const float inv = amax > 0 ? 127.0f / amax : 0.0f;
        scale[g / 32] = amax / 127.0f;
        int16x8_t h[4];
        for (int u = 0; u < 4; u++)
            h[u] = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * u], inv))),
                                vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[2 * u + 1], inv))));
        vst1q_s8(q + g, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
        vst1q_s8(q + g + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
    }
}

// Weight row j -> int8 grid values (k) and per-32 scale absmax / 127.
static void decode_row_int8(const qst_weight *w, int64_t j, int8x16_t grid, int8_t *q, float *scale) {
    const uint8_t *codes = (const uint8_t *)w->data + j * w->k / 2;
    const float *absmax = w->absmax + j * (w->k / w->block);
    for (int64_t g = 0; g < w->k; g += 32) {
        uint8x16_t b = vld1q_u8(codes + g / 2);
        uint8x16_t hi = vshrq_n_u8(b, 4), lo = vandq_u8(b, vdupq_n_u8(15));
        vst1q_s8(q + g, vqtbl1q_s8(grid, vzip1q_u8(hi, lo)));
        vst1q_s8(q + g + 16, vqtbl1q_s8(grid, vzip2q_u8(hi, lo)));
        scale[g / 32] = absmax[g / w->block] / 127.0f;
    }
}

QST_DOTPROD static float dot_row(const int8_t *xq, const float *xs, const int8_t *wq, const float *ws, int64_t k) {
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t g = 0; g < k; g += 32) {
        int32x4_t s = vdotq_s32(vdupq_n_s32(0), vld1q_s8(wq + g), vld1q_s8(xq + g));
        s = vdotq_s32(s, vld1q_s8(wq + g + 16), vld1q_s8(xq + g + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), xs[g / 32] * ws[g / 32]);
    }
    return vaddvq_f32(acc);
}

static int matmul_dot(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                      float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const int64_t k = w->k, groups = k / 32;
    int8_t *xq = qst_mm_alloc((size_t)(m * k + k));
    float *xs = qst_mm_alloc((size_t)(m * groups + groups) * sizeof(float));
    if (!xq || !xs) { free(xq); free(xs); return QST_MATMUL_NO_MEMORY; }
    int8_t *wq = xq + m * k;
    float *ws = xs + m * groups;
    for (int64_t i = 0; i < m; i++) quantize_x_row(x + i * ldx, k, xq + i * k, xs + i * groups);
    const int8x16_t grid = nf4_grid();
    for (int64_t j = n0; j < n1; j++) {
        decode_row_int8(w, j, grid, wq, ws);
        for (int64_t i = 0; i < m; i++) y[i * ldy + j] = dot_row(xq + i * k, xs + i * groups, wq, ws, k);
    }
    free(xq);
    free(xs);
    return QST_MATMUL_OK;
}

int qst_mm_neon(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                float *y, int64_t ldy, int64_t n0, int64_t n1, int use_dot) {
    if (use_dot && w->type == QST_WEIGHT_NF4) return matmul_dot(x, m, ldx, w, y, ldy, n0, n1);
    return matmul_exact(x, m, ldx, w, y, ldy, n0, n1);
}
#endif
