// Few rows of x (decode steps, a server's batched step) with the int16 NF4 GEMM's arithmetic on AVX-512
// VNNI (QST_KERNEL_AVX512_INT16, GEMV shape, blocks a multiple of 64). Same bits as that GEMM
// (matmul_gemm_int16_avx2.c), so a row gets the same result whether it is decoded alone, stacked
// with other requests' rows, or part of a prompt.
//
// Why not the GEMM itself: it writes each 16-row weight panel to a buffer and reads it back once per
// tile of x rows, which at 1-12 rows costs as much as the products. Here the panel is decoded into
// registers (row loads, a 4 x 4 dword transpose and vpermw lookups; the GEMM pack's dword gathers were
// twice as slow here) and used at once by every row of the pass.
// Why not the float32 GEMV: its 8-row step is bound by float32 FMAs (one 16-wide FMA per 16 products
// and row); vpdpwssd does 32 products per instruction at the same rate (BENCHMARKS.md §27, §29).
//
// Bits: per output, the int32 sum of each 32-element group is exact whatever order it is formed in (it
// is split over two accumulators for a single row of x), then
// acc = acc + float(sum) * absmax * xscale in the GEMM's operation order, one accumulator per K chunk of
// QST_INT16_KC elements, the chunk sums added to y in chunk order.
#include "matmul_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma")))
#define ROWS_PER_PASS 8

typedef struct {
    __m512i grid;          // vpermw table: entry e holds the grid value of code e & 15
    __m512i scale_offset;  // lane r: index offset of weight row r's absmax
} tables;

// R rows of x times NP panels of 16 weight rows from row j (nr rows in the last, the others masked),
// over the whole of k. Per 32-element group, each row's 16 code bytes are loaded and transposed so that
// vector q holds dword q (8 elements) of the 16 rows, one per lane; a vpermw then looks up, in every lane,
// the grid values of elements (0, 4), (1, 5), (2, 6) or (3, 7) of those 8 (shifting the dword's two words
// right by 4, 0, 12 or 8 bits brings those elements' nibbles to their bottoms; vpermw reads only an index
// word's low 5 bits, so the neighbouring nibbles need no masking). x is stored with its elements in that
// order (0 4 1 5 2 6 3 7), so one broadcast x pair feeds one vpdpwssd per panel.
//
// Each lookup is made just before the R rows use it, the rows innermost, and the float32 accumulators live
// in an L1 array, not in registers: R x NP int32 sums stay in registers (16 at 8 rows and two panels), so
// every broadcast x pair feeds two panels. At 8 rows this ran 12 % faster than one panel per step with the
// float32 accumulators in registers (46 against 52 ns per group and 16-row panel, BENCHMARKS.md §32).
TARGET static inline __attribute__((always_inline)) void panels(const int R, const int NP, const int S,
        const int16_t *xq, const float *xs, const qst_weight *w, const tables *t, int64_t j, int64_t nr, float *y,
        int64_t ldy) {
    static const int shift[4] = {4, 0, 12, 8};
    const int64_t k = w->k, groups = k / 32, per_row = k / w->block;
    __mmask16 rows[2];
    for (int h = 0; h < NP; h++) {
        const int64_t left = nr - 16 * h;
        rows[h] = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
    }
    const uint8_t *codes = (const uint8_t *)w->data + j * (k / 2);
    // Row r of panel h at rowp[h][r] (rows beyond the matrix read its last row; their lanes are not
    // stored): one pointer load per row and group instead of 16 clamped addresses kept in registers.
    const uint8_t *rowp[2][16];
    for (int h = 0; h < NP; h++)
        for (int r = 0; r < 16; r++) rowp[h][r] = codes + (16 * h + (r < nr - 16 * h ? r : nr - 16 * h - 1)) * (k / 2);
    const float *scales = w->absmax + j * per_row;
    __m512 a[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}; // the panels' absmax of the block (set at g = 0)
    for (int64_t e0 = 0; e0 < k; e0 += QST_INT16_KC) {
        const int64_t g1 = (e0 + QST_INT16_KC < k ? e0 + QST_INT16_KC : k) / 32;
        float acc[ROWS_PER_PASS][2][16] __attribute__((aligned(64)));
        for (int i = 0; i < R; i++)
            for (int h = 0; h < NP; h++) _mm512_store_ps(acc[i][h], _mm512_setzero_ps());
        for (int64_t g = e0 / 32; g < g1; g++) {
            __m512i d[ROWS_PER_PASS][2][2]; // [row][panel][split]
            for (int i = 0; i < R; i++)
                for (int h = 0; h < NP; h++)
                    for (int s = 0; s < S; s++) d[i][h][s] = _mm512_setzero_si512();
            // The hardware prefetchers do not keep up with 16 interleaved rows: each group fetches the next
            // step's rows (one contiguous block, 4 lines per panel and group) in address order, which ran
            // faster than fetching them in the order they are read (1 row: 152-164 against 172-182 us per
            // layer, 30 layers streaming).
            {
                const char *p = (const char *)codes + 16 * NP * (k / 2) + g * 4 * NP * 64;
                for (int l = 0; l < 4 * NP; l++) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
            }
            __m512i cq[2][4];
            for (int h = 0; h < NP; h++) {
                __m512i z[4];
                for (int i = 0; i < 4; i++) {
                    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rowp[h][i] + g * 16)));
                    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rowp[h][i + 4] + g * 16)), 1);
                    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rowp[h][i + 8] + g * 16)), 2);
                    z[i] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rowp[h][i + 12] + g * 16)), 3);
                }
                const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
                const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
                cq[h][0] = _mm512_unpacklo_epi64(t0, t2);
                cq[h][1] = _mm512_unpackhi_epi64(t0, t2);
                cq[h][2] = _mm512_unpacklo_epi64(t1, t3);
                cq[h][3] = _mm512_unpackhi_epi64(t1, t3);
            }
            for (int q = 0; q < 4; q++)
                for (int u = 0; u < 4; u++) {
                    // Lane r of wv[h]: elements (u, u + 4) of row r's 8 in dword q.
                    __m512i wv[2];
                    for (int h = 0; h < NP; h++)
                        wv[h] = _mm512_permutexvar_epi16(
                            shift[u] ? _mm512_srli_epi16(cq[h][q], shift[u]) : cq[h][q], t->grid);
                    const int s = (4 * q + u) % S;
                    for (int i = 0; i < R; i++) {
                        int32_t pair;
                        memcpy(&pair, xq + i * k + g * 32 + 8 * q + 2 * u, 4);
                        const __m512i xb = _mm512_set1_epi32(pair);
                        for (int h = 0; h < NP; h++) d[i][h][s] = qst_dpwssd_avx512(d[i][h][s], wv[h], xb);
                    }
                }
            if ((g * 32) % w->block == 0)
                for (int h = 0; h < NP; h++)
                    a[h] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), rows[h], t->scale_offset,
                                                    scales + 16 * h * per_row + (g * 32) / w->block, 4);
            for (int i = 0; i < R; i++) {
                const __m512 sx = _mm512_set1_ps(xs[i * groups + g]);
                for (int h = 0; h < NP; h++) {
                    __m512i sum = d[i][h][0];
                    for (int s = 1; s < S; s++) sum = _mm512_add_epi32(sum, d[i][h][s]);
                    _mm512_store_ps(acc[i][h], _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sum), a[h]), sx,
                                                               _mm512_load_ps(acc[i][h])));
                }
            }
        }
        for (int i = 0; i < R; i++)
            for (int h = 0; h < NP; h++) {
                float *yo = y + i * ldy + j + 16 * h;
                const __m512 v = _mm512_load_ps(acc[i][h]);
                _mm512_mask_storeu_ps(yo, rows[h], e0 == 0 ? v : _mm512_add_ps(_mm512_maskz_loadu_ps(rows[h], yo), v));
            }
    }
}

// Weight rows [n0, n1) for R rows of x: two panels (32 weight rows) per step, then one panel at a time for
// the last rows (fewer than 32); a single row of x splits its int32 sums over two accumulators per panel
// (alone, its two chains of vpdpwssd are too few to hide their latency).
TARGET static inline __attribute__((always_inline)) void rows_pass(const int R, const int16_t *xq, const float *xs,
        const qst_weight *w, const tables *t, float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const int S = R == 1 ? 2 : 1;
    int64_t j = n0;
    for (; j + 32 <= n1; j += 32) panels(R, 2, S, xq, xs, w, t, j, 32, y, ldy);
    for (; j < n1; j += 16) panels(R, 1, S, xq, xs, w, t, j, n1 - j < 16 ? n1 - j : 16, y, ldy);
}

TARGET static void gemv_pass(int r, const int16_t *xq, const float *xs, const qst_weight *w, const tables *t, float *y,
                             int64_t ldy, int64_t n0, int64_t n1) {
    switch (r) { // constant row counts keep the accumulators in registers
    case 1: rows_pass(1, xq, xs, w, t, y, ldy, n0, n1); break;
    case 2: rows_pass(2, xq, xs, w, t, y, ldy, n0, n1); break;
    case 3: rows_pass(3, xq, xs, w, t, y, ldy, n0, n1); break;
    case 4: rows_pass(4, xq, xs, w, t, y, ldy, n0, n1); break;
    case 5: rows_pass(5, xq, xs, w, t, y, ldy, n0, n1); break;
    case 6: rows_pass(6, xq, xs, w, t, y, ldy, n0, n1); break;
    case 7: rows_pass(7, xq, xs, w, t, y, ldy, n0, n1); break;
    default: rows_pass(8, xq, xs, w, t, y, ldy, n0, n1); break;
    }
}

TARGET int qst_mm_gemv_nf4_int16_avx512(const float *x, int64_t m, int64_t ldx, const qst_weight *w, float *y,
                                        int64_t ldy, int64_t n0, int64_t n1) {
    const int64_t k = w->k;
    int16_t local_q[ROWS_PER_PASS * 2048] __attribute__((aligned(64)));
    float local_s[ROWS_PER_PASS * 64];
    int16_t *xq;
    float *xs;
    if (qst_mm_x16_scratch(ROWS_PER_PASS, k, local_q, local_s, &xq, &xs) != QST_MATMUL_OK) return QST_MATMUL_NO_MEMORY;
    tables t;
    int16_t grid[32];
    for (int c = 0; c < 32; c++) grid[c] = (int16_t)qst_mm_gemm_nf4_int16_grid(c & 15);
    t.grid = _mm512_loadu_si512((const void *)grid);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    t.scale_offset = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int32_t)(k / w->block)));
    for (int64_t i0 = 0; i0 < m; i0 += ROWS_PER_PASS) {
        const int64_t r = m - i0 < ROWS_PER_PASS ? m - i0 : ROWS_PER_PASS;
        qst_mm_int16_quantize_rows(x + i0 * ldx, r, ldx, k, xq, xs);
        // Every 8 elements to the order 0 4 1 5 2 6 3 7: the element pairs of panels' lookups.
        for (int64_t e = 0; e < r * k; e += 8) {
            int16_t v[8];
            memcpy(v, xq + e, sizeof v);
            for (int u = 0; u < 4; u++) xq[e + 2 * u] = v[u], xq[e + 2 * u + 1] = v[u + 4];
        }
        gemv_pass((int)r, xq, xs, w, &t, y + i0 * ldy, ldy, n0, n1);
    }
    qst_mm_x16_release(xq, xs, local_q, local_s);
    return QST_MATMUL_OK;
}

#endif
