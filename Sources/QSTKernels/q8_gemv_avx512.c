// Q8 GEMV with AVX-512 VNNI (QST_Q8_AVX512_VNNI): the output head of a decode step, for 1 to 8 rows
// of x (a server stacks its requests' rows).
//
// Lanes are weight rows: 16 rows' 64-byte spans are loaded and transposed (16 x 16 dwords) so that one
// vector holds 4 consecutive weights of 16 rows, and one vpdpbusd per row of x (its 4 bytes broadcast)
// adds 64 products. Each 32-element group's int32 sums then take one float step for 16 weight rows at
// a time. The previous layout (lanes along k, one weight row at a time) took a conversion, a multiply
// and an FMA per 64 products and row of x: at 8 rows those, not the products, set its time (4.6 ms
// against 1.5 ms for one row on SmolLM2's 28 MB head, one thread; BENCHMARKS.md §27, §30).
//
// x arrives as x + 128 (unsigned bytes; q8_gemv.c flips the sign bits): vpdpbusd(x + 128, w) - 128 sum w
// is the exact int32 sum x w, and the -128 sum w start is one vpdpbusd per weight vector shared by the
// rows of x. Bits: per output, exact int32 sums per group, then acc = acc + float(sum) * xscale * scale
// in group order, y = acc / 127: the same for any row count and any row's neighbours.
#include "q8_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

// v[r]: 16 dwords of row r -> t[d]: dword d of rows 0-15.
T512 static inline __attribute__((always_inline)) void transpose16(const __m512i v[16], __m512i t[16]) {
    __m512i a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    // b[4i + p], 128-bit lane L: dword 4L + p of rows 4i .. 4i + 3.
    for (int i = 0; i < 4; i++) {
        b[4 * i + 0] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
    }
    for (int p = 0; p < 4; p++) { // 4 x 4 transpose of 128-bit lanes
        const __m512i c0 = _mm512_shuffle_i32x4(b[p], b[4 + p], 0x44);
        const __m512i c1 = _mm512_shuffle_i32x4(b[p], b[4 + p], 0xEE);
        const __m512i c2 = _mm512_shuffle_i32x4(b[8 + p], b[12 + p], 0x44);
        const __m512i c3 = _mm512_shuffle_i32x4(b[8 + p], b[12 + p], 0xEE);
        t[p] = _mm512_shuffle_i32x4(c0, c2, 0x88);
        t[4 + p] = _mm512_shuffle_i32x4(c0, c2, 0xDD);
        t[8 + p] = _mm512_shuffle_i32x4(c1, c3, 0x88);
        t[12 + p] = _mm512_shuffle_i32x4(c1, c3, 0xDD);
    }
}

// MC rows of x times weight rows [j, j + nr) (nr <= 16; the missing ones read row j + nr - 1 and are
// not stored), all of k.
T512 static inline __attribute__((always_inline)) void panel(const int MC, const uint8_t *xq, const float *xs,
        const int8_t *q, const float *scales, int64_t k, float *y, int64_t ldy, int64_t j, int64_t nr) {
    const int64_t spans = k / 64, groups = k / 32;
    const __mmask16 keep = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __m512i u128 = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i scale_offset = _mm512_mullo_epi32(_mm512_min_epi32(lane, _mm512_set1_epi32((int32_t)nr - 1)),
                                                    _mm512_set1_epi32((int32_t)spans));
    __m512 acc[QST_Q8_ROWS_PER_PASS];
    for (int i = 0; i < MC; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t s = 0; s < spans; s++) {
        __m512i v[16], t[16];
        for (int r = 0; r < 16; r++) {
            const int8_t *row = q + (j + (r < nr ? r : nr - 1)) * k + s * 64;
            // The next panel's span (its rows follow this panel's): one line per row.
            _mm_prefetch((const char *)row + 16 * k, _MM_HINT_T0);
            v[r] = _mm512_loadu_si512((const void *)row);
        }
        transpose16(v, t);
        const __m512 sc = _mm512_i32gather_ps(scale_offset, scales + j * spans + s, 4);
        for (int half = 0; half < 2; half++) {
            __m512i start = zero;
            for (int d = 8 * half; d < 8 * half + 8; d++)
                start = _mm512_dpbusd_epi32(start, u128, _mm512_sub_epi8(zero, t[d]));
            __m512i dot[QST_Q8_ROWS_PER_PASS];
            for (int i = 0; i < MC; i++) dot[i] = start;
            for (int d = 8 * half; d < 8 * half + 8; d++)
                for (int i = 0; i < MC; i++) {
                    int32_t four;
                    memcpy(&four, xq + i * k + s * 64 + 4 * d, 4);
                    dot[i] = _mm512_dpbusd_epi32(dot[i], _mm512_set1_epi32(four), t[d]);
                }
            for (int i = 0; i < MC; i++) {
                const __m512 sx = _mm512_set1_ps(xs[i * groups + 2 * s + half]);
                acc[i] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot[i]), sx), sc, acc[i]);
            }
        }
    }
    const __m512 inv = _mm512_set1_ps(127.0f);
    for (int i = 0; i < MC; i++) _mm512_mask_storeu_ps(y + i * ldy + j, keep, _mm512_div_ps(acc[i], inv));
}

T512 static inline __attribute__((always_inline)) void rows_mc(const int MC, const uint8_t *xq, const float *xs,
        const int8_t *q, const float *scales, int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1) {
    for (int64_t j = n0; j < n1; j += 16) panel(MC, xq, xs, q, scales, k, y, ldy, j, n1 - j < 16 ? n1 - j : 16);
}

T512 int qst_q8_rows_avx512(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,
                            int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const uint8_t *xu = (const uint8_t *)xq;
    switch (mc) { // constant row counts keep the accumulators in registers
    case 1: rows_mc(1, xu, xs, q, scales, k, y, ldy, n0, n1); break;
    case 2: rows_mc(2, xu, xs, q, scales, k, y, ldy, n0, n1); break;
    case 3: rows_mc(3, xu, xs, q, scales, k, y, ldy, n0, n1); break;
    case 4: rows_mc(4, xu, xs, q, scales, k, y, ldy, n0, n1); break;
    case 5: rows_mc(5, xu, xs, q, scales, k, y, ldy, n0, n1); break;
    case 6: rows_mc(6, xu, xs, q, scales, k, y, ldy, n0, n1); break;
    case 7: rows_mc(7, xu, xs, q, scales, k, y, ldy, n0, n1); break;
    default: rows_mc(8, xu, xs, q, scales, k, y, ldy, n0, n1); break;
    }
    return 0;
}

#else
int qst_q8_rows_avx512(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,
                       int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1) {
    (void)mc; (void)xq; (void)xs; (void)q; (void)scales; (void)k; (void)y; (void)ldy; (void)n0; (void)n1;
    return -1;
}
#endif
