// NF4 GEMV with bfloat16 dot products: the fast path for token generation.
//
// The exact GEMV spends three shuffles per 16 code bytes (vpmovzxbd + 2 vpermps) and the
// shuffle unit caps it at ~14 GB/s per core. Here 64 code bytes are read as 32 words;
// shifting each word by 4, 0, 12, 8 puts one of its four codes in the low bits, and one
// vpermw per shift looks the codes up in a 32-entry bfloat16 table: 4 shuffles per 128 weights.
// Vector p, word w holds element 4w+p of the 128-element group; vdpbf16ps pairs words
// 2t, 2t+1, i.e. elements 8t+p and 8t+4+p, so dword t covers elements [8t, 8t+8) and
// dwords 0-7 / 8-15 are the two 64-element halves, each inside one absmax block
// (block % 64 == 0). x is rounded and reordered to match once per call.
//
// The table holds the weights already scaled: entries 0-15 are the 16 NF4 values times the
// first half's absmax, 16-31 times the second half's, each product rounded to bfloat16, and a
// word's index is its code with bit 4 set in words 16-31 (the second half). So the products of
// every group accumulate straight into the running sums (2 per output, p = 0, 2 and p = 1, 3),
// with no per-group scaling: for 8 rows of x that removes 16 float adds/FMAs per group beside
// the 32 vdpbf16ps, at the price of a table (2 multiplies, 1 conversion) per weight row and group,
// which the rows of a pass share. At the end the outputs' 16-lane sums go through one
// shuffle-and-add tree for all of a step's outputs at once.
// Numerics: each weight is the float32 product NF4 value x absmax (the dequantized weight) rounded
// to bfloat16 (2^-9 relative), x is rounded to bfloat16 (2^-9 relative); products and sums in
// float32 (vdpbf16ps). A row's sums are formed in the same order whatever the other rows of the
// call (same accumulators, same reduction tree), so a row gets the same bits alone or with others.
#include "matmul_internal.h"

// x86-64 only (AVX-512); other architectures link matmul_x86_absent.c instead.
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))
// 8 rows of x share one decoding of the weights: a server's batched decode step of 8 requests
// decodes each weight once.
#define ROWS_PER_PASS 8
#define MAX_JR 4
#define ACCS 2
#ifndef PREFETCH_BYTES
// 8 KiB ahead: 4 KiB left one decoding row ~10 % slower when the 30 layers' weights stream from
// DRAM (2026-12-05, one thread, SmolLM2 shapes).
#define PREFETCH_BYTES 8192
#endif
// Weight rows per step: MC x JR x ACCS accumulators, the JR x 4 decoded vectors and the JR tables
// stay in registers (2 rows x 4 weight rows and 8 rows x 2 spilled: 20 % and 6-10 % slower).
// MC x JR <= 16: one reduce_many call takes all of a step's outputs.
#define JR_FOR(MC) ((MC) <= 1 ? 4 : (MC) <= 4 ? 2 : 1)

// x rows -> bfloat16, each 128-element group reordered to the decode order (word w of
// vector p = element 4w+p); zero padded to kp (a multiple of 128). Stored group-major: group g
// of row i at xp + g * ROWS_PER_PASS + i * 128, so a group's rows are 256 bytes apart whatever
// k (one base register for all rows' loads; 8 row pointers spilled).
TARGET static void prepare_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int64_t kp, uint16_t *xp) {
    uint16_t index[4][32];
    for (int p = 0; p < 4; p++)
        for (int w = 0; w < 32; w++) index[p][w] = (uint16_t)((4 * w + p) & 63); // word of the pair (Za, Zb)
    for (int64_t i = 0; i < mc; i++) {
        const float *xi = x + i * ldx;
        for (int64_t g = 0; g < kp; g += 128) {
            __m512i z[4];
            for (int q = 0; q < 4; q++) {
                int64_t e = g + 32 * q, left = k - e;
                __mmask16 m0 = left >= 16 ? 0xFFFF : (left <= 0 ? 0 : (__mmask16)((1u << left) - 1));
                __mmask16 m1 = left >= 32 ? 0xFFFF : (left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1));
                __m512 a = _mm512_maskz_loadu_ps(m0, xi + e);
                __m512 b = _mm512_maskz_loadu_ps(m1, xi + e + 16);
                z[q] = (__m512i)_mm512_cvtne2ps_pbh(b, a);
            }
            for (int p = 0; p < 4; p++) {
                __m512i idx = _mm512_loadu_si512((const void *)index[p]);
                __m512i lo = _mm512_permutex2var_epi16(z[0], idx, z[1]); // words 0..15 valid
                __m512i hi = _mm512_permutex2var_epi16(z[2], idx, z[3]); // words 16..31 valid
                _mm512_storeu_si512((void *)(xp + g * ROWS_PER_PASS + i * 128 + 32 * p), _mm512_mask_blend_epi16(0xFFFF0000u, lo, hi));
            }
        }
    }
}

// One weight row's 128-element group, scaled: bf16(NF4 value x sa) in words 0-15 (the first
// 64-element half's absmax), bf16(NF4 value x sb) in words 16-31 (round to nearest even).
TARGET INLINE __m512i scaled_table(__m512 nf4, float sa, float sb) {
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(nf4, _mm512_set1_ps(sb)), _mm512_mul_ps(nf4, _mm512_set1_ps(sa)));
}

// Each decoded word's index is its 4-bit code with bit 4 set in words 16-31 (vector p, word w =
// element 4w+p, so words 16-31 are elements 64-127, the second half). low4 = 0x0F0F per word and
// half = 0x1010 in words 16-31: (c & low4) | half holds the indices of p = 1 (bits 0-4) and p = 3
// (bits 8-12), the same of c >> 4 those of p = 0 and p = 2; vpermw reads only bits 0-4.
TARGET INLINE void decode_scaled(__m512i c, __m512i table, __m512i low4, __m512i half, __m512i out[4]) {
    const __m512i odd = _mm512_ternarylogic_epi32(c, low4, half, 0xEA); // (c & low4) | half
    const __m512i even = _mm512_ternarylogic_epi32(_mm512_srli_epi16(c, 4), low4, half, 0xEA);
    out[0] = _mm512_permutexvar_epi16(even, table);
    out[1] = _mm512_permutexvar_epi16(odd, table);
    out[2] = _mm512_permutexvar_epi16(_mm512_srli_epi16(even, 8), table);
    out[3] = _mm512_permutexvar_epi16(_mm512_srli_epi16(odd, 8), table);
}

// n (<= 16) vectors -> their 16-lane sums, all by one tree: lanes l + l+8, then + l+4, + l+2, + l+1
// (shuffles pair the vectors up, so 16 vectors take 15 adds instead of 16 separate reductions).
// Vector v's sum lands in lane 4 (v % 4) + v / 4. The tree is the same for every v and n, so a
// sum's bits do not depend on the other vectors reduced with it.
TARGET INLINE __m512 reduce_many(const int n, const __m512 *v) {
    __m512 a[8], b[4], c[2];
    const int na = (n + 1) / 2, nb = (na + 1) / 2, nc = (nb + 1) / 2;
    for (int t = 0; t < na; t++) {
        const __m512 p = v[2 * t], q = 2 * t + 1 < n ? v[2 * t + 1] : p;
        a[t] = _mm512_add_ps(_mm512_shuffle_f32x4(p, q, 0x44), _mm512_shuffle_f32x4(p, q, 0xEE));
    }
    for (int t = 0; t < nb; t++) {
        const __m512 p = a[2 * t], q = 2 * t + 1 < na ? a[2 * t + 1] : p;
        b[t] = _mm512_add_ps(_mm512_shuffle_f32x4(p, q, 0x88), _mm512_shuffle_f32x4(p, q, 0xDD));
    }
    for (int t = 0; t < nc; t++) {
        const __m512 p = b[2 * t], q = 2 * t + 1 < nb ? b[2 * t + 1] : p;
        c[t] = _mm512_add_ps((__m512)_mm512_unpacklo_pd((__m512d)p, (__m512d)q), (__m512)_mm512_unpackhi_pd((__m512d)p, (__m512d)q));
    }
    const __m512 p = c[0], q = nc > 1 ? c[1] : p;
    return _mm512_add_ps(_mm512_shuffle_ps(p, q, 0x88), _mm512_shuffle_ps(p, q, 0xDD));
}

TARGET INLINE void nf4_dot_step(const int MC, const int JR, const uint16_t *xp, const qst_weight *w,
                                const int64_t block, float *y, int64_t ldy, int64_t j) {
    const int64_t k = w->k, blocks = k / block;
    const __m512 nf4 = _mm512_loadu_ps(qst_mm_nf4_values);
    const __m512i low4 = _mm512_set1_epi16(0x0F0F);
    const __m512i half = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(0x1010), 1);
    __m512 acc[ROWS_PER_PASS][MAX_JR][ACCS];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++)
            for (int a = 0; a < ACCS; a++) acc[i][r][a] = _mm512_setzero_ps();
    const int64_t kfull = k & ~(int64_t)127;
    // Each group's table is built one group ahead: its multiply-convert-lookup chain then overlaps
    // the previous group's products instead of stalling them.
    __m512i table[MAX_JR];
    for (int r = 0; r < JR; r++) {
        const float *scale = w->absmax + (j + r) * blocks;
        table[r] = scaled_table(nf4, scale[0], kfull > 0 ? scale[64 / block] : 0.0f);
    }
    for (int64_t g = 0; g < kfull; g += 128) {
        const int64_t ga = (g + 128) / block, gb = (g + 192) / block;
        const int more = g + 128 < k, full_next = g + 256 <= k;
        __m512i wv[MAX_JR][4];
        for (int r = 0; r < JR; r++) {
            const uint8_t *codes = (const uint8_t *)w->data + (j + r) * (k / 2) + g / 2;
            const float *scale = w->absmax + (j + r) * blocks;
            // Weights are read once per token, always from DRAM: prefetch PREFETCH_BYTES ahead so
            // the stream is at full speed from the first rows of these small matrices.
            _mm_prefetch((const char *)codes + PREFETCH_BYTES, _MM_HINT_T0);
            decode_scaled(_mm512_loadu_si512((const void *)codes), table[r], low4, half, wv[r]);
            if (more) table[r] = scaled_table(nf4, scale[ga], full_next ? scale[gb] : 0.0f);
        }
        for (int i = 0; i < MC; i++) {
            const uint16_t *xi = xp + g * ROWS_PER_PASS + i * 128;
            for (int p = 0; p < 4; p++) {
                __m512i xv = _mm512_loadu_si512((const void *)(xi + 32 * p));
                // One load of x for all JR weight rows (the compiler would fold it into each product).
                if (JR > 1) __asm__("" : "+v"(xv));
                for (int r = 0; r < JR; r++)
                    acc[i][r][p % ACCS] = _mm512_dpbf16_ps(acc[i][r][p % ACCS], (__m512bh)wv[r][p], (__m512bh)xv);
            }
        }
    }
    if (kfull < k) {
        // A last half group (64 elements: block % 64 == 0): its words are the low halves of the
        // decoded vectors, and their products only reach lanes 0-7, so 256-bit products suffice.
        for (int r = 0; r < JR; r++) {
            const uint8_t *codes = (const uint8_t *)w->data + (j + r) * (k / 2) + kfull / 2;
            __m512i wv[4];
            decode_scaled(_mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)codes)), table[r], low4, half, wv);
            for (int i = 0; i < MC; i++) {
                const uint16_t *xi = xp + kfull * ROWS_PER_PASS + i * 128;
                __m256 lo[ACCS];
                for (int a = 0; a < ACCS; a++) lo[a] = _mm512_castps512_ps256(acc[i][r][a]);
                for (int p = 0; p < 4; p++)
                    lo[p % ACCS] = _mm256_dpbf16_ps(lo[p % ACCS], (__m256bh)_mm512_castsi512_si256(wv[p]),
                                                    (__m256bh)_mm256_loadu_si256((const __m256i *)(xi + 32 * p)));
                for (int a = 0; a < ACCS; a++) acc[i][r][a] = _mm512_insertf32x8(acc[i][r][a], lo[a], 0);
            }
        }
    }
    __m512 v[ROWS_PER_PASS * MAX_JR];
    for (int r = 0; r < JR; r++)
        for (int i = 0; i < MC; i++) v[r * MC + i] = ACCS == 2 ? _mm512_add_ps(acc[i][r][0], acc[i][r][1]) : acc[i][r][0];
    float sums[16] __attribute__((aligned(64)));
    _mm512_store_ps(sums, reduce_many(MC * JR, v));
    for (int r = 0; r < JR; r++)
        for (int i = 0; i < MC; i++) {
            const int t = r * MC + i;
            y[i * ldy + j + r] = sums[4 * (t % 4) + t / 4];
        }
}

TARGET INLINE void nf4_dot_rows(const int MC, const uint16_t *xp, const qst_weight *w, const int64_t block,
                                float *y, int64_t ldy, int64_t n0, int64_t n1) {
    int64_t j = n0;
    for (; j + JR_FOR(MC) <= n1; j += JR_FOR(MC)) nf4_dot_step(MC, JR_FOR(MC), xp, w, block, y, ldy, j);
    for (; j < n1; j++) nf4_dot_step(MC, 1, xp, w, block, y, ldy, j);
}

// The absmax block as a constant where it is the usual 64 (no division per group).
TARGET INLINE void nf4_dot_pass(const int MC, const uint16_t *xp, const qst_weight *w,
                                float *y, int64_t ldy, int64_t n0, int64_t n1) {
    if (w->block == 64) nf4_dot_rows(MC, xp, w, 64, y, ldy, n0, n1);
    else nf4_dot_rows(MC, xp, w, w->block, y, ldy, n0, n1);
}

TARGET int qst_mm_gemv_nf4_bf16(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                                float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const int64_t kp = (w->k + 127) & ~(int64_t)127;
    // Small x buffers live on the stack: a heap allocation per call is a measurable share
    // of a ~5 microsecond GEMV.
    uint16_t local[ROWS_PER_PASS * 2048] __attribute__((aligned(64)));
    uint16_t *xp = kp <= 2048 ? local : qst_mm_alloc((size_t)(ROWS_PER_PASS * kp) * sizeof(uint16_t));
    if (!xp) return QST_MATMUL_NO_MEMORY;
    for (int64_t i0 = 0; i0 < m; i0 += ROWS_PER_PASS) {
        int64_t mc = m - i0 < ROWS_PER_PASS ? m - i0 : ROWS_PER_PASS;
        prepare_x(x + i0 * ldx, mc, ldx, w->k, kp, xp);
        float *yi = y + i0 * ldy;
        switch (mc) {
        case 1: nf4_dot_pass(1, xp, w, yi, ldy, n0, n1); break;
        case 2: nf4_dot_pass(2, xp, w, yi, ldy, n0, n1); break;
        case 3: nf4_dot_pass(3, xp, w, yi, ldy, n0, n1); break;
        case 4: nf4_dot_pass(4, xp, w, yi, ldy, n0, n1); break;
        case 5: nf4_dot_pass(5, xp, w, yi, ldy, n0, n1); break;
        case 6: nf4_dot_pass(6, xp, w, yi, ldy, n0, n1); break;
        case 7: nf4_dot_pass(7, xp, w, yi, ldy, n0, n1); break;
        default: nf4_dot_pass(8, xp, w, yi, ldy, n0, n1); break;
        }
    }
    if (xp != local) free(xp);
    return QST_MATMUL_OK;
}
#endif // __x86_64__
