// AVX-512 GEMM for many rows of x (prompt processing, training batches).
//
// GotoBLAS-style blocking: the K dimension is cut into chunks of KC; for each chunk and
// each panel of NR = 32 output columns the weights are unpacked ONCE (NF4 decode, BF16
// widen or F32 gather) into a small panel that stays in L1, then a register-blocked
// microkernel (MR rows x 32 columns of accumulators) sweeps all rows of x over it.
// Exact path: float32 panel [e][32] + FMA with broadcast x.
// BF16 path: panel of bfloat16 pairs [p][32] (elements 2p, 2p+1 of one column in one
// dword, the operand layout of vdpbf16ps) + x rounded to bfloat16 once per call.
#include "matmul_internal.h"

// x86-64 only (AVX-512); other architectures link matmul_x86_absent.c instead.
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))
#define NR 32
#define MR 14
#define KC_F32 256   // 256 x 32 floats = 32 KiB panel
#ifdef KC_BF16_OVERRIDE
#define KC_BF16 KC_BF16_OVERRIDE
#else
#define KC_BF16 384  // 192 pairs x 32 dwords = 24 KiB panel
#endif

static const uint16_t interleave_words[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                               8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

TARGET INLINE __mmask16 lanes(int64_t count) {
    return count >= 16 ? (__mmask16)0xFFFF : (count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1));
}

// Stores 16 columns' (even, odd) element pairs as bfloat16 pairs, one dword per column.
TARGET INLINE void store_pairs(uint32_t *dst, __m512 even, __m512 odd, __m512i perm) {
    __m512i v = (__m512i)_mm512_cvtne2ps_pbh(odd, even);
    _mm512_storeu_si512((void *)dst, _mm512_permutexvar_epi16(perm, v));
}

// ---- weight panels: columns [j0, j0 + nr), elements [k0, k0 + kk); absent columns are 0 ----

TARGET static void pack_nf4(const qst_weight *w, int64_t j0, int64_t nr, int64_t k0, int64_t kk,
                            void *panel, int bf16) {
    const __m512 lut = _mm512_loadu_ps(qst_mm_nf4_values);
    const __m512i perm = _mm512_loadu_si512((const void *)interleave_words);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int64_t k = w->k, half = k / 2, block = w->block, per_row = k / block;
    const __m512i code_index = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)half));
    const __m512i scale_index = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)per_row));
    for (int64_t c16 = 0; c16 < NR; c16 += 16) {
        const __mmask16 mask = lanes(nr - c16);
        const uint8_t *codes = (const uint8_t *)w->data + (j0 + c16) * half;
        const float *scales = w->absmax + (j0 + c16) * per_row;
        for (int64_t kb = k0; kb < k0 + kk; kb += block) {
            __m512 a = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, scale_index, scales + kb / block, 4);
            for (int64_t e = kb; e < kb + block; e += 8) {
                __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, code_index, codes + e / 2, 1);
                for (int b = 0; b < 4; b++) {
                    __m512 hi = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(g, 8 * b + 4), lut), a);
                    __m512 lo = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(g, 8 * b), lut), a);
                    int64_t r = e - k0 + 2 * b;
                    if (bf16) {
                        store_pairs((uint32_t *)panel + (r / 2) * NR + c16, hi, lo, perm);
                    } else {
                        _mm512_storeu_ps((float *)panel + r * NR + c16, hi);
                        _mm512_storeu_ps((float *)panel + (r + 1) * NR + c16, lo);
                    }
                }
            }
        }
    }
}

// Element e of the 16 columns starting at `base` (row stride ld), zero outside [0, k).
TARGET INLINE __m512 gather_column_values(const qst_weight *w, const void *base, __m512i index, __mmask16 mask,
                                          int64_t e) {
    if (e >= w->k) return _mm512_setzero_ps();
    if (w->type == QST_WEIGHT_F32) return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, index, (const float *)base + e, 4);
    // BF16: gather 2-byte values via the dword starting 2 bytes earlier, keep its high half,
    // so no read goes past element e.
    if (e == 0) {
        __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, index, (const uint16_t *)base, 2);
        return _mm512_castsi512_ps(_mm512_slli_epi32(g, 16));
    }
    __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, index, (const uint16_t *)base + e - 1, 2);
    return _mm512_castsi512_ps(_mm512_and_si512(g, _mm512_set1_epi32((int)0xFFFF0000u)));
}

TARGET static void pack_dense(const qst_weight *w, int64_t j0, int64_t nr, int64_t k0, int64_t kk, void *panel,
                              int bf16) {
    const __m512i perm = _mm512_loadu_si512((const void *)interleave_words);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const size_t elem = w->type == QST_WEIGHT_F32 ? 4 : 2;
    // F32 gathers scale by 4 (element index), BF16 by 2 (element index of uint16).
    const __m512i index = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)w->ld));
    for (int64_t c16 = 0; c16 < NR; c16 += 16) {
        const __mmask16 mask = lanes(nr - c16);
        const void *base = (const char *)w->data + (size_t)(j0 + c16) * (size_t)w->ld * elem;
        if (bf16 && w->type == QST_WEIGHT_BF16) {
            // Elements 2p, 2p+1 of a bfloat16 row already form the dword vdpbf16ps wants.
            for (int64_t r = 0; r < kk; r += 2) {
                uint32_t *dst = (uint32_t *)panel + (r / 2) * NR + c16;
                if (k0 + r + 1 < w->k) {
                    __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, index,
                                                            (const uint16_t *)base + k0 + r, 2);
                    _mm512_storeu_si512((void *)dst, g);
                } else {
                    __m512 even = gather_column_values(w, base, index, mask, k0 + r);
                    store_pairs(dst, even, _mm512_setzero_ps(), perm);
                }
            }
        } else if (bf16) {
            for (int64_t r = 0; r < kk; r += 2) {
                __m512 even = gather_column_values(w, base, index, mask, k0 + r);
                __m512 odd = r + 1 < kk ? gather_column_values(w, base, index, mask, k0 + r + 1) : _mm512_setzero_ps();
                store_pairs((uint32_t *)panel + (r / 2) * NR + c16, even, odd, perm);
            }
        } else {
            for (int64_t r = 0; r < kk; r++)
                _mm512_storeu_ps((float *)panel + r * NR + c16, gather_column_values(w, base, index, mask, k0 + r));
        }
    }
}

// ---- microkernels: R rows x 32 columns, R a compile-time constant after inlining ----

TARGET INLINE void kernel_f32(const int R, const float *a, int64_t lda, const float *b, int64_t kk,
                              float *c, int64_t ldc, __mmask16 m0, __mmask16 m1, int first) {
    __m512 acc[MR][2];
    for (int r = 0; r < R; r++) {
        acc[r][0] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, c + r * ldc);
        acc[r][1] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    }
    for (int64_t e = 0; e < kk; e++) {
        __m512 b0 = _mm512_load_ps(b + e * NR), b1 = _mm512_load_ps(b + e * NR + 16);
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[r * lda + e]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
    }
}

TARGET INLINE void kernel_bf16(const int R, const uint16_t *a, int64_t lda, const uint32_t *b, int64_t pairs,
                               float *c, int64_t ldc, __mmask16 m0, __mmask16 m1, int first) {
    __m512 acc[MR][2];
    for (int r = 0; r < R; r++) {
        acc[r][0] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, c + r * ldc);
        acc[r][1] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    }
    for (int64_t p = 0; p < pairs; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)(b + p * NR));
        __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(b + p * NR + 16));
        for (int r = 0; r < R; r++) {
            int32_t pair;
            memcpy(&pair, a + r * lda + 2 * p, sizeof pair);
            __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
    }
}

#define CASE_ROWS(fn, r, ...) case r: fn(r, __VA_ARGS__); break;
#define DISPATCH_MR(fn, rows, ...)                                                                          \
    switch (rows) {                                                                                         \
    CASE_ROWS(fn, 1, __VA_ARGS__) CASE_ROWS(fn, 2, __VA_ARGS__) CASE_ROWS(fn, 3, __VA_ARGS__)              \
    CASE_ROWS(fn, 4, __VA_ARGS__) CASE_ROWS(fn, 5, __VA_ARGS__) CASE_ROWS(fn, 6, __VA_ARGS__)              \
    CASE_ROWS(fn, 7, __VA_ARGS__) CASE_ROWS(fn, 8, __VA_ARGS__) CASE_ROWS(fn, 9, __VA_ARGS__)              \
    CASE_ROWS(fn, 10, __VA_ARGS__) CASE_ROWS(fn, 11, __VA_ARGS__) CASE_ROWS(fn, 12, __VA_ARGS__)           \
    CASE_ROWS(fn, 13, __VA_ARGS__) default: fn(MR, __VA_ARGS__); break;                                    \
    }

TARGET static void sweep_f32(const float *x, int64_t m, int64_t ldx, const float *panel, int64_t kk,
                             float *y, int64_t ldy, __mmask16 m0, __mmask16 m1, int first) {
    for (int64_t i = 0; i < m; i += MR) {
        int64_t rows = m - i < MR ? m - i : MR;
        DISPATCH_MR(kernel_f32, rows, x + i * ldx, ldx, panel, kk, y + i * ldy, ldy, m0, m1, first);
    }
}

TARGET static void sweep_bf16(const uint16_t *xb, int64_t m, int64_t ldxb, const uint32_t *panel, int64_t pairs,
                              float *y, int64_t ldy, __mmask16 m0, __mmask16 m1, int first) {
    for (int64_t i = 0; i < m; i += MR) {
        int64_t rows = m - i < MR ? m - i : MR;
        DISPATCH_MR(kernel_bf16, rows, xb + i * ldxb, ldxb, panel, pairs, y + i * ldy, ldy, m0, m1, first);
    }
}

// K chunk: at most `target`, the chunks of K balanced (a short last chunk costs a full
// pass over C), and a multiple of the NF4 block so decoding never splits a block.
static int64_t chunk_size(const qst_weight *w, int64_t target) {
    const int64_t unit = w->type == QST_WEIGHT_NF4 ? w->block : 32;
    int64_t chunks = (w->k + target - 1) / target;
    int64_t kc = (w->k + chunks - 1) / chunks;
    kc = (kc + unit - 1) / unit * unit;
    return kc < unit ? unit : kc;
}

TARGET int qst_mm_gemm_avx512(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                              float *y, int64_t ldy, int64_t n0, int64_t n1, int use_bf16) {
    const int64_t k = w->k;
    const int64_t kc = chunk_size(w, use_bf16 ? KC_BF16 : KC_F32);
    const int64_t kc_even = (kc + 1) & ~(int64_t)1;
    void *panel = qst_mm_alloc((size_t)kc_even * NR * sizeof(float));
    if (!panel) return QST_MATMUL_NO_MEMORY;
    uint16_t *xb = NULL;
    // Row stride of the bfloat16 copy of x: padded so that it is an odd multiple of 64
    // bytes; strides that are multiples of 1 KiB make the MR row streams collide in the
    // same L1 sets (measured a few % on the K=1536 down projection).
    int64_t kp = (k + 31) & ~(int64_t)31;
    if (((kp * 2 / 64) & 1) == 0) kp += 32;
    if (use_bf16) {
        xb = qst_mm_alloc((size_t)(m * kp) * sizeof(uint16_t));
        if (!xb) { free(panel); return QST_MATMUL_NO_MEMORY; }
        qst_mm_x_to_bf16(x, m, ldx, k, kp, xb);
    }
    // K-chunk-outer order: the bfloat16 x chunk (M x KC) stays in L2 for all panels; each
    // panel is decoded once into L1 and swept by every row block. (Panel-outer order,
    // keeping C in L2 instead, measured the same on these shapes.)
    for (int64_t k0 = 0; k0 < k; k0 += kc) {
        const int64_t kk = k - k0 < kc ? k - k0 : kc;
        const int first = k0 == 0;
        for (int64_t j0 = n0; j0 < n1; j0 += NR) {
            const int64_t nr = n1 - j0 < NR ? n1 - j0 : NR;
            const __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
            if (w->type == QST_WEIGHT_NF4) pack_nf4(w, j0, nr, k0, kk, panel, use_bf16);
            else pack_dense(w, j0, nr, k0, kk, panel, use_bf16);
            if (use_bf16) sweep_bf16(xb + k0, m, kp, panel, (kk + 1) / 2, y + j0, ldy, m0, m1, first);
            else sweep_f32(x + k0, m, ldx, panel, kk, y + j0, ldy, m0, m1, first);
        }
    }
    free(xb);
    free(panel);
    return QST_MATMUL_OK;
}
#endif // __x86_64__
