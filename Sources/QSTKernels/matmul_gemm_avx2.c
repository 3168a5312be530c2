// AVX2 + FMA GEMM for many rows of x, exact float32 products.
//
// Same blocking as the AVX-512 GEMM: K is cut into chunks of at most KC elements; for each
// chunk and panel of NR = 16 output columns the weights are decoded ONCE to float32 into a
// panel [e][16] that stays in L1, then a 6 x 16 register-blocked microkernel (12
// accumulators, 2 weight vectors, 1 broadcast of x: 15 of the 16 ymm registers) sweeps
// every row of x over it. Every row is computed by the same instruction sequence whatever
// the row count or column range, so results are row-independent (BaseStateCache needs it).
//
// Per CPU second it runs as fast as OpenBLAS's Haswell sgemm on the model's shapes, without
// sgemm's separate dequantization pass, so it is the default many-row path on AVX2 CPUs.
#include "matmul_internal.h"

// x86 only: other architectures get a stub (the dispatcher never selects it there).
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))
#define NR 16
#define MR 6
#define KC 256 // 256 x 16 floats = 16 KiB panel

// Weight row r, elements [e0, e0 + count), as float32 (NF4: e0 and count multiples of 16).
TARGET static void decode_row(const qst_weight *w, int64_t r, int64_t e0, int64_t count, float *out) {
    if (w->type == QST_WEIGHT_F32) {
        memcpy(out, (const float *)w->data + r * w->ld + e0, (size_t)count * sizeof(float));
        return;
    }
    if (w->type == QST_WEIGHT_BF16) {
        const uint16_t *row = (const uint16_t *)w->data + r * w->ld + e0;
        int64_t e = 0;
        for (; e + 8 <= count; e += 8) {
            __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + e)));
            _mm256_storeu_ps(out + e, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
        }
        for (; e < count; e++) {
            uint32_t u = (uint32_t)row[e] << 16;
            memcpy(out + e, &u, sizeof u);
        }
        return;
    }
    // NF4: element order within 8 code bytes is (hi0, lo0, hi1, lo1, ...): look up both
    // nibbles, then interleave them back.
    const __m256 lut_lo = _mm256_loadu_ps(qst_mm_nf4_values), lut_hi = _mm256_loadu_ps(qst_mm_nf4_values + 8);
    const uint8_t *codes = (const uint8_t *)w->data + r * (w->k / 2);
    const float *absmax = w->absmax + r * (w->k / w->block);
    for (int64_t e = 0; e < count; e += 16) {
        const int64_t at = e0 + e;
        const __m256 s = _mm256_set1_ps(absmax[at / w->block]);
        __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(codes + at / 2)));
        __m256i ch = _mm256_srli_epi32(c, 4);
        __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lut_lo, ch), _mm256_permutevar8x32_ps(lut_hi, ch),
                                     _mm256_castsi256_ps(_mm256_slli_epi32(c, 24)));
        __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lut_lo, c), _mm256_permutevar8x32_ps(lut_hi, c),
                                     _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
        hi = _mm256_mul_ps(hi, s); // same float32 product as the reference (value * absmax)
        lo = _mm256_mul_ps(lo, s);
        __m256 a = _mm256_unpacklo_ps(hi, lo), b = _mm256_unpackhi_ps(hi, lo);
        _mm256_storeu_ps(out + e, _mm256_permute2f128_ps(a, b, 0x20));
        _mm256_storeu_ps(out + e + 8, _mm256_permute2f128_ps(a, b, 0x31));
    }
}

// Panel of columns [j0, j0 + nr), elements [k0, k0 + kk): panel[e * NR + c]; absent columns 0.
TARGET static void pack(const qst_weight *w, int64_t j0, int64_t nr, int64_t k0, int64_t kk, float *row, float *panel) {
    for (int64_t c = 0; c < NR; c++) {
        if (c >= nr) {
            for (int64_t e = 0; e < kk; e++) panel[e * NR + c] = 0;
            continue;
        }
        decode_row(w, j0 + c, k0, kk, row);
        for (int64_t e = 0; e < kk; e++) panel[e * NR + c] = row[e];
    }
}

TARGET INLINE __m256 load_c(const float *c, __m256i mask, int full) {
    return full ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, mask);
}
TARGET INLINE void store_c(float *c, __m256i mask, int full, __m256 v) {
    if (full) _mm256_storeu_ps(c, v);
    else _mm256_maskstore_ps(c, mask, v);
}

// R rows x 16 columns; R a compile-time constant after inlining.
TARGET INLINE void kernel(const int R, const float *a, int64_t lda, const float *b, int64_t kk, float *c,
                          int64_t ldc, __m256i m0, __m256i m1, int full0, int full1, int first) {
    __m256 acc[MR][2];
    for (int r = 0; r < R; r++) {
        acc[r][0] = first ? _mm256_setzero_ps() : load_c(c + r * ldc, m0, full0);
        acc[r][1] = first ? _mm256_setzero_ps() : load_c(c + r * ldc + 8, m1, full1);
    }
    for (int64_t e = 0; e < kk; e++) {
        __m256 b0 = _mm256_load_ps(b + e * NR), b1 = _mm256_load_ps(b + e * NR + 8);
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * lda + e);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        store_c(c + r * ldc, m0, full0, acc[r][0]);
        store_c(c + r * ldc + 8, m1, full1, acc[r][1]);
    }
}

TARGET static void sweep(const float *x, int64_t m, int64_t ldx, const float *panel, int64_t kk, float *y,
                         int64_t ldy, int64_t nr, int first) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr - 8), lane);
    const int full0 = nr >= 8, full1 = nr >= 16;
    for (int64_t i = 0; i < m; i += MR) {
        const int64_t rows = m - i < MR ? m - i : MR;
        const float *a = x + i * ldx;
        float *c = y + i * ldy;
        switch (rows) {
        case 1: kernel(1, a, ldx, panel, kk, c, ldy, m0, m1, full0, full1, first); break;
        case 2: kernel(2, a, ldx, panel, kk, c, ldy, m0, m1, full0, full1, first); break;
        case 3: kernel(3, a, ldx, panel, kk, c, ldy, m0, m1, full0, full1, first); break;
        case 4: kernel(4, a, ldx, panel, kk, c, ldy, m0, m1, full0, full1, first); break;
        case 5: kernel(5, a, ldx, panel, kk, c, ldy, m0, m1, full0, full1, first); break;
        default: kernel(MR, a, ldx, panel, kk, c, ldy, m0, m1, full0, full1, first); break;
        }
    }
}

// K chunk: at most KC, chunks balanced, a multiple of the NF4 block (never split a block).
static int64_t chunk_size(const qst_weight *w) {
    const int64_t unit = w->type == QST_WEIGHT_NF4 ? w->block : 32;
    int64_t chunks = (w->k + KC - 1) / KC;
    int64_t kc = (w->k + chunks - 1) / chunks;
    kc = (kc + unit - 1) / unit * unit;
    return kc < unit ? unit : kc;
}

TARGET int qst_mm_gemm_avx2(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                            float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const int64_t k = w->k, kc = chunk_size(w);
    float *panel = qst_mm_alloc((size_t)(kc * NR + kc) * sizeof(float));
    if (!panel) return QST_MATMUL_NO_MEMORY;
    float *row = panel + kc * NR;
    for (int64_t k0 = 0; k0 < k; k0 += kc) {
        const int64_t kk = k - k0 < kc ? k - k0 : kc;
        for (int64_t j0 = n0; j0 < n1; j0 += NR) {
            const int64_t nr = n1 - j0 < NR ? n1 - j0 : NR;
            pack(w, j0, nr, k0, kk, row, panel);
            sweep(x + k0, m, ldx, panel, kk, y + j0, ldy, nr, k0 == 0);
        }
    }
    free(panel);
    return QST_MATMUL_OK;
}

#else
int qst_mm_gemm_avx2(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                     float *y, int64_t ldy, int64_t n0, int64_t n1) {
    (void)x; (void)m; (void)ldx; (void)w; (void)y; (void)ldy; (void)n0; (void)n1;
    return QST_MATMUL_UNSUPPORTED;
}
#endif
