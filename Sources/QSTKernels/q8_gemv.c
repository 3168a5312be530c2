// Q8 GEMV dispatch, the scalar reference, and the quantizers (q8.h). The vector kernels are in
// q8_gemv_x86.c and q8_gemv_neon.c.
#include "q8_internal.h"
#include "cpu.h"
#include "group_range.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void qst_q8_quantize_rows(const void *src, int src_is_bf16, int64_t rows, int64_t k, int64_t ld,
                          int8_t *q, float *scales) {
    const int64_t blocks = k / QST_Q8_BLOCK;
    float v[QST_Q8_BLOCK];
    for (int64_t j = 0; j < rows; j++) {
        for (int64_t b = 0; b < blocks; b++) {
            float amax = 0;
            for (int e = 0; e < QST_Q8_BLOCK; e++) {
                const int64_t at = j * ld + b * QST_Q8_BLOCK + e;
                v[e] = src_is_bf16 ? bf16_to_f32(((const uint16_t *)src)[at]) : ((const float *)src)[at];
                amax = fmaxf(amax, fabsf(v[e]));
            }
            const float inv = amax > 0 ? 127.0f / amax : 0.0f;
            for (int e = 0; e < QST_Q8_BLOCK; e++) q[j * k + b * QST_Q8_BLOCK + e] = (int8_t)lrintf(v[e] * inv);
            scales[j * blocks + b] = amax;
        }
    }
}

void qst_q8_quantize_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int8_t *xq, float *xs) {
    const int64_t groups = k / 32;
    for (int64_t i = 0; i < mc; i++) {
        for (int64_t g = 0; g < groups; g++) {
            const float *v = x + i * ldx + g * 32;
            float amax, inv;
            if (!qst_group_range(v, 1, 127.0f, &amax, &inv)) { // Inf or NaN: codes 0, scale NaN
                memset(xq + i * k + g * 32, 0, 32);
                xs[i * groups + g] = NAN;
                continue;
            }
            for (int e = 0; e < 32; e++) xq[i * k + g * 32 + e] = (int8_t)lrintf(v[e] * inv);
            xs[i * groups + g] = amax / 127.0f;
        }
    }
}

// Float32 products with the Q8 values, summed per block then scaled (the order the tests' float64
// reference need not follow: their bound covers float reordering).
static void q8_scalar(const float *x, int64_t m, int64_t ldx, const int8_t *q, const float *scales, int64_t k,
                      float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const int64_t blocks = k / QST_Q8_BLOCK;
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = n0; j < n1; j++) {
            float sum = 0;
            for (int64_t b = 0; b < blocks; b++) {
                const int8_t *w = q + j * k + b * QST_Q8_BLOCK;
                const float *xv = x + i * ldx + b * QST_Q8_BLOCK;
                float part = 0;
                for (int e = 0; e < QST_Q8_BLOCK; e++) part += (float)w[e] * xv[e];
                sum += part * (scales[j * blocks + b] / 127.0f);
            }
            y[i * ldy + j] = sum;
        }
    }
}

int qst_q8_supported(int path) {
    const uint32_t f = qst_cpu_features();
    switch (path) {
    case QST_Q8_SCALAR: return 1;
    case QST_Q8_AVX2: return (f & QST_CPU_AVX2_BASE) == QST_CPU_AVX2_BASE;
    case QST_Q8_AVX2_VNNI: return (f & QST_CPU_AVX2_BASE) == QST_CPU_AVX2_BASE && (f & QST_CPU_AVX_VNNI);
    case QST_Q8_AVX512_VNNI: return (f & QST_CPU_AVX512_BASE) == QST_CPU_AVX512_BASE && (f & QST_CPU_AVX512_VNNI);
    case QST_Q8_NEON: return (f & QST_CPU_NEON) != 0;
    case QST_Q8_NEON_DOT: return (f & QST_CPU_NEON) && (f & QST_CPU_NEON_DOTPROD);
    }
    return 0;
}

int qst_q8_best_path(void) {
    static const int order[] = {QST_Q8_AVX512_VNNI, QST_Q8_AVX2_VNNI, QST_Q8_AVX2, QST_Q8_NEON_DOT, QST_Q8_NEON};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (qst_q8_supported(order[i])) return order[i];
    return QST_Q8_SCALAR;
}

const char *qst_q8_path_name(int path) {
    switch (path) {
    case QST_Q8_SCALAR: return "scalar";
    case QST_Q8_AVX2: return "avx2_int8";
    case QST_Q8_AVX2_VNNI: return "avx2_vnni_int8";
    case QST_Q8_AVX512_VNNI: return "avx512_vnni_int8";
    case QST_Q8_NEON: return "neon_int8";
    case QST_Q8_NEON_DOT: return "neon_dot_int8";
    }
    return "none";
}

int qst_q8_gemv(const float *x, int64_t m, int64_t ldx, const int8_t *q, const float *scales, int64_t k,
                float *y, int64_t ldy, int64_t n0, int64_t n1, int path) {
    if (path == QST_Q8_AUTO) path = qst_q8_best_path();
    if (k <= 0 || k % QST_Q8_BLOCK != 0 || !qst_q8_supported(path)) return -1;
    if (m <= 0 || n0 >= n1) return 0;
    if (path == QST_Q8_SCALAR) {
        q8_scalar(x, m, ldx, q, scales, k, y, ldy, n0, n1);
        return 0;
    }
    // x for one pass: on the stack up to k = 8192 (heads are 576 to 8192 wide), else allocated.
    int8_t local_q[QST_Q8_ROWS_PER_PASS * 8192] __attribute__((aligned(64)));
    float local_s[QST_Q8_ROWS_PER_PASS * 256];
    int8_t *stack_q = k <= 8192 ? local_q : malloc((size_t)(QST_Q8_ROWS_PER_PASS * k));
    float *stack_s = k <= 8192 ? local_s : malloc((size_t)(QST_Q8_ROWS_PER_PASS * (k / 32)) * sizeof(float));
    int status = 0;
    if (!stack_q || !stack_s) status = -1;
    for (int64_t i0 = 0; status == 0 && i0 < m; i0 += QST_Q8_ROWS_PER_PASS) {
        const int mc = (int)(m - i0 < QST_Q8_ROWS_PER_PASS ? m - i0 : QST_Q8_ROWS_PER_PASS);
        qst_q8_quantize_x(x + i0 * ldx, mc, ldx, k, stack_q, stack_s);
        float *yi = y + i0 * ldy;
        int rc = -1;
        switch (path) {
        case QST_Q8_AVX2: rc = qst_q8_rows_avx2(mc, stack_q, stack_s, q, scales, k, yi, ldy, n0, n1, 0); break;
        case QST_Q8_AVX2_VNNI: rc = qst_q8_rows_avx2(mc, stack_q, stack_s, q, scales, k, yi, ldy, n0, n1, 1); break;
        case QST_Q8_AVX512_VNNI:
            // x + 128 as unsigned bytes (flipping the sign bit adds 128 to an int8).
            for (int64_t e = 0; e < mc * k; e++) stack_q[e] = (int8_t)((uint8_t)stack_q[e] ^ 0x80u);
            rc = qst_q8_rows_avx512(mc, stack_q, stack_s, q, scales, k, yi, ldy, n0, n1);
            break;
        case QST_Q8_NEON: rc = qst_q8_rows_neon(mc, stack_q, stack_s, q, scales, k, yi, ldy, n0, n1, 0); break;
        case QST_Q8_NEON_DOT: rc = qst_q8_rows_neon(mc, stack_q, stack_s, q, scales, k, yi, ldy, n0, n1, 1); break;
        }
        if (rc != 0) status = -1;
    }
    if (stack_q != local_q) free(stack_q);
    if (stack_s != local_s) free(stack_s);
    return status;
}
