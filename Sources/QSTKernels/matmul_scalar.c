// Portable reference paths: plain C, one weight row dequantized at a time.
#include "matmul_internal.h"

#include <stdlib.h>
#include <string.h>

const float qst_mm_nf4_values[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

void qst_mm_nf4_dequantize(const uint8_t *codes, const float *absmax, int32_t block,
                           int64_t e0, int64_t count, float *out) {
    for (int64_t i = 0; i < count; i++) {
        int64_t e = e0 + i;
        uint8_t byte = codes[e >> 1];
        int code = (e & 1) ? (byte & 0x0F) : (byte >> 4);
        out[i] = qst_mm_nf4_values[code] * absmax[e / block];
    }
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void weight_row(const qst_weight *w, int64_t r, float *out) {
    switch (w->type) {
    case QST_WEIGHT_F32:
        memcpy(out, (const float *)w->data + r * w->ld, (size_t)w->k * sizeof(float));
        break;
    case QST_WEIGHT_BF16: {
        const uint16_t *row = (const uint16_t *)w->data + r * w->ld;
        for (int64_t i = 0; i < w->k; i++) out[i] = bf16_to_f32(row[i]);
        break;
    }
    case QST_WEIGHT_NF4: {
        // Rows start on a block boundary (block divides k) and blocks are even: decode a
        // block at a time, two codes per byte, with the block's absmax hoisted.
        const uint8_t *codes = (const uint8_t *)w->data + r * (w->k / 2);
        const float *scale = w->absmax + r * (w->k / w->block);
        for (int64_t b = 0; b < w->k / w->block; b++) {
            const float a = scale[b];
            for (int64_t t = 0; t < w->block / 2; t++) {
                uint8_t byte = codes[b * (w->block / 2) + t];
                out[b * w->block + 2 * t] = qst_mm_nf4_values[byte >> 4] * a;
                out[b * w->block + 2 * t + 1] = qst_mm_nf4_values[byte & 0x0F] * a;
            }
        }
        break;
    }
    }
}

int qst_mm_scalar(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                  float *y, int64_t ldy, int64_t n0, int64_t n1) {
    float *row = malloc((size_t)w->k * sizeof(float));
    if (!row) return QST_MATMUL_NO_MEMORY;
    for (int64_t j = n0; j < n1; j++) {
        weight_row(w, j, row);
        for (int64_t i = 0; i < m; i++) {
            const float *xi = x + i * ldx;
            // Four partial sums: shorter rounding chains than one running sum.
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t t = 0;
            for (; t + 4 <= w->k; t += 4) {
                s0 += xi[t] * row[t];
                s1 += xi[t + 1] * row[t + 1];
                s2 += xi[t + 2] * row[t + 2];
                s3 += xi[t + 3] * row[t + 3];
            }
            for (; t < w->k; t++) s0 += xi[t] * row[t];
            y[i * ldy + j] = (s0 + s1) + (s2 + s3);
        }
    }
    free(row);
    return QST_MATMUL_OK;
}

void *qst_mm_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}
