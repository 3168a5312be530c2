// AVX2 NF4 GEMM with integer dot products: the fast approximate path for many rows of x
// (prompts, training forward) on CPUs without AVX-512 (QST_KERNEL_AVX2_INT8, GEMM shape).
//
// The float32 AVX2 GEMM runs at the FMA peak, so the way past it is integer arithmetic. Per call:
//   - every row of x is rounded to int8 once, one scale per 32 elements (max|x| / 127), stored
//     biased, u = x + 128 (unsigned bytes), per aligned 64-element span: the span lies in one
//     NF4 absmax block (block % 64 == 0), so its two integer dot products with a weight row
//     need one float multiply-add (absmax * [xscale_A, xscale_B]);
//   - for each K chunk and 4 panels of GI_NR = 4 weight rows, the NF4 codes are decoded once
//     to the int8 grid, in the x layout, with their per-group sums; a microkernel sweeps GI_RM
//     rows of x at a time over the panels while they stay in L1;
//   - per x row and span the four rows' products are folded by a vphaddd tree into one vector
//     (lanes 0-3: group A of rows 0-3, lanes 4-7: group B), so conversion, scaling and
//     accumulation cost one instruction each per four outputs.
// The span product u . w of one x row and one weight row, and the grid:
//   - AVX-VNNI: vpdpbusd (u8 x s8, int32 accumulation, no saturation); grid round(127 * value);
//   - AVX2: vpmaddubsw, whose int16 pair sums saturate at 32767: with u <= 255 the grid is
//     round(63 * value) (|w| <= 63: pair sums <= 2 * 255 * 63 = 32130), then vpmaddwd with
//     ones widens to int32. (|w| times x signed by w, the other way around saturation, costs
//     two vpsignb per span and row: 1.3x slower here, for a 127-level grid.)
// Both take the bias back out exactly: u . w = x . w + 128 * sum(w), and the panel holds
// -128 * sum(w) per row and group.
// Error, per output (the bound of matmul.h): each weight is off by at most absmax / (2 G)
// (G = 127 or 63), each x element by at most the max|x| of its 32-element group / 254.
// Spans holding Inf or NaN give NaN outputs for their row (the reference gives Inf or NaN).
#include "matmul_internal.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GI_KC 2048 // elements per K chunk: GI_NP panels of 4 x 2048 bytes (32 KiB) stay in L1
#define GI_RM 3
#define GI_NR 4
#define GI_NP 4 // panels swept together by each x tile

#define TARGET_BASE __attribute__((target("avx2,fma")))

// One 64-element span of x rounded to int8 per 32-element half (group A = elements 0-31, B = 32-63),
// scale max|x of the half| / 127, stored biased (x + 128) as the microkernel reads it: the first
// 32 bytes hold A 0-15 then B 0-15, the next 32 A 16-31 then B 16-31, so the low 128-bit lanes of
// every product carry group A and the high lanes group B. scale8 gets [sA x 4, sB x 4] with
// s = max|x| / 127 / grid (the weight grid's scale folded in).
TARGET_BASE static void quantize_span(const float *v, uint8_t *q, float *scale8, float grid) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i bytes[2], bad = _mm256_setzero_si256();
    float mx[2];
    for (int half = 0; half < 2; half++) {
        __m256 f[4], amax = _mm256_setzero_ps();
        for (int t = 0; t < 4; t++) {
            f[t] = _mm256_loadu_ps(v + 32 * half + 8 * t);
            amax = _mm256_max_ps(amax, _mm256_and_ps(f[t], absmask));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        mx[half] = _mm_cvtss_f32(h);
        const __m256 inv = _mm256_set1_ps(mx[half] > 0 ? 127.0f / mx[half] : 0.0f);
        __m256i n[4];
        for (int t = 0; t < 4; t++) n[t] = _mm256_cvtps_epi32(_mm256_mul_ps(f[t], inv));
        // packs interleave 128-bit lanes: dwords come out as elements 0-3, 8-11, 16-19, 24-27,
        // 4-7, ...; vpermd restores the natural order.
        __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(n[0], n[1]), _mm256_packs_epi32(n[2], n[3]));
        b = _mm256_permutevar8x32_epi32(b, order);
        // NaN, or Inf (whose inverse scale is 0: Inf * 0 = NaN), converts to INT_MIN -> -128,
        // a value finite inputs never produce (|x * 127 / max| <= 127).
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi8(b, _mm256_set1_epi8(-128)));
        bytes[half] = b;
    }
    float sa = mx[0] / 127.0f / grid, sb = mx[1] / 127.0f / grid;
    if (!_mm256_testz_si256(bad, bad) || !(mx[0] <= 3.4e38f) || !(mx[1] <= 3.4e38f)) {
        // Non-finite input (NaN outputs), or a max so small that 127 / max overflowed.
        int finite = 1;
        for (int e = 0; e < 64; e++) finite &= isfinite(v[e]) != 0;
        int8_t t[64];
        for (int e = 0; e < 64; e++) t[e] = finite ? (int8_t)lrintf(v[e] / mx[e / 32] * 127.0f) : 0;
        if (!finite) sa = sb = NAN;
        bytes[0] = _mm256_loadu_si256((const __m256i *)t);
        bytes[1] = _mm256_loadu_si256((const __m256i *)(t + 32));
    }
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const __m256i u0 = _mm256_permute2x128_si256(bytes[0], bytes[1], 0x20);
    const __m256i u1 = _mm256_permute2x128_si256(bytes[0], bytes[1], 0x31);
    _mm256_store_si256((__m256i *)q, _mm256_xor_si256(u0, flip));
    _mm256_store_si256((__m256i *)(q + 32), _mm256_xor_si256(u1, flip));
    _mm256_store_ps(scale8, _mm256_setr_ps(sa, sa, sa, sa, sb, sb, sb, sb));
}

// Panel of weight rows [j0, j0 + nr) (nr <= 4; absent rows zero), spans [s0, s0 + ns): per
// span the rows' 64 grid values in the x layout (A 0-15, B 0-15, A 16-31, B 16-31), the scale
// vector av = [absmax_0..3, absmax_0..3] and the bias correction
// cv = [-128 * sum(w_r over A), r = 0..3; -128 * sum(w_r over B), r = 0..3].
TARGET_BASE static void pack_panel(const qst_weight *w, int64_t j0, int64_t nr, int64_t s0, int64_t ns,
                                   const int8_t *grid16, int8_t *panel, float *av, int32_t *cv) {
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)grid16));
    const __m256i low4 = _mm256_set1_epi8(0x0F), flip = _mm256_set1_epi8((char)0x80), z = _mm256_setzero_si256();
    const int64_t per_block = w->block / 64, blocks = w->k / w->block;
    for (int64_t s = 0; s < ns; s++)
        for (int r = 0; r < GI_NR; r++) {
            int8_t *o = panel + (s * GI_NR + r) * 64;
            if (r >= nr) {
                _mm256_store_si256((__m256i *)o, z);
                _mm256_store_si256((__m256i *)(o + 32), z);
                av[s * 8 + r] = av[s * 8 + r + 4] = 0;
                cv[s * 8 + r] = cv[s * 8 + r + 4] = 0;
                continue;
            }
            const int64_t j = j0 + r;
            const __m256i c = _mm256_loadu_si256((const __m256i *)((const uint8_t *)w->data + j * (w->k / 2) + (s0 + s) * 32));
            const __m256i hi = _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16(c, 4), low4));
            const __m256i lo = _mm256_shuffle_epi8(grid, _mm256_and_si256(c, low4));
            // Byte t holds elements 2t (high nibble) and 2t+1 (low nibble): interleaving the two
            // lookups per 128-bit lane gives elements [0-15 | 32-47] and [16-31 | 48-63].
            const __m256i w0 = _mm256_unpacklo_epi8(hi, lo), w1 = _mm256_unpackhi_epi8(hi, lo);
            _mm256_store_si256((__m256i *)o, w0);
            _mm256_store_si256((__m256i *)(o + 32), w1);
            av[s * 8 + r] = av[s * 8 + r + 4] = w->absmax[j * blocks + (s0 + s) / per_block];
            // Group sums: sum(w) = sum(w + 128) - 32 * 128, the biased bytes summed by vpsadbw
            // (64-bit lanes 0-1: group A, 2-3: group B).
            const __m256i t = _mm256_add_epi64(_mm256_sad_epu8(_mm256_xor_si256(w0, flip), z),
                                               _mm256_sad_epu8(_mm256_xor_si256(w1, flip), z));
            const int64_t sum_a = _mm256_extract_epi64(t, 0) + _mm256_extract_epi64(t, 1) - 32 * 128;
            const int64_t sum_b = _mm256_extract_epi64(t, 2) + _mm256_extract_epi64(t, 3) - 32 * 128;
            cv[s * 8 + r] = (int32_t)(-128 * sum_a);
            cv[s * 8 + r + 4] = (int32_t)(-128 * sum_b);
        }
}

// ---- the two microkernel variants ----

// u . w by vpmaddubsw (|w| <= 63: no saturation) and vpmaddwd with ones.
TARGET_BASE static inline __attribute__((always_inline)) __m256i avx2_dot(__m256i u0, __m256i u1, const int8_t *wr) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i p0 = _mm256_maddubs_epi16(u0, _mm256_load_si256((const __m256i *)wr));
    const __m256i p1 = _mm256_maddubs_epi16(u1, _mm256_load_si256((const __m256i *)(wr + 32)));
    return _mm256_add_epi32(_mm256_madd_epi16(p0, ones), _mm256_madd_epi16(p1, ones));
}

#define VARIANT avx2
#define TARGET TARGET_BASE
#define ROW_DOT(u0, u1, wr) avx2_dot(u0, u1, wr)
#include "matmul_gemm_int8_body.h"
#undef VARIANT
#undef TARGET
#undef ROW_DOT

// u . w by two vpdpbusd.
#define TARGET_VNNI __attribute__((target("avx2,fma,avxvnni")))
TARGET_VNNI static inline __attribute__((always_inline)) __m256i vnni_dot(__m256i u0, __m256i u1, const int8_t *wr) {
    const __m256i d = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u0, _mm256_load_si256((const __m256i *)wr));
    return _mm256_dpbusd_avx_epi32(d, u1, _mm256_load_si256((const __m256i *)(wr + 32)));
}

#define VARIANT vnni
#define TARGET TARGET_VNNI
#define ROW_DOT(u0, u1, wr) vnni_dot(u0, u1, wr)
#include "matmul_gemm_int8_body.h"
#undef VARIANT
#undef TARGET
#undef ROW_DOT

int qst_mm_gemm_nf4_int8_grid(int code, int vnni) {
    return (int)lrintf((vnni ? 127.0f : 63.0f) * qst_mm_nf4_values[code & 15]);
}

int qst_mm_gemm_nf4_int8(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni) {
    const int64_t k = w->k, spans = k / 64, kc_spans = GI_KC / 64, ldq = k;
    const size_t xq_bytes = (size_t)(m * ldq), xs_bytes = (size_t)(m * spans) * 8 * sizeof(float);
    const size_t panel_bytes = (size_t)(kc_spans * GI_NR * 64), aux_bytes = (size_t)(kc_spans * 8) * 8;
    char *buf = qst_mm_alloc(xq_bytes + xs_bytes + GI_NP * (panel_bytes + aux_bytes));
    if (!buf) return QST_MATMUL_NO_MEMORY;
    uint8_t *xq = (uint8_t *)buf;
    float *xs = (float *)(buf + xq_bytes);
    int8_t *panel = (int8_t *)(buf + xq_bytes + xs_bytes);
    float *av = (float *)(panel + GI_NP * panel_bytes);
    int32_t *cv = (int32_t *)(av + GI_NP * kc_spans * 8);
    int8_t grid[16];
    for (int c = 0; c < 16; c++) grid[c] = (int8_t)qst_mm_gemm_nf4_int8_grid(c, vnni);
    const float gscale = vnni ? 127.0f : 63.0f;
    for (int64_t i = 0; i < m; i++)
        for (int64_t s = 0; s < spans; s++) quantize_span(x + i * ldx + s * 64, xq + i * ldq + s * 64, xs + (i * spans + s) * 8, gscale);
    for (int64_t s0 = 0; s0 < spans; s0 += kc_spans) {
        const int64_t ns = spans - s0 < kc_spans ? spans - s0 : kc_spans;
        for (int64_t j0 = n0; j0 < n1; j0 += GI_NR * GI_NP) {
            int64_t np = 0, nr = 0;
            for (int64_t j = j0; j < n1 && np < GI_NP; j += GI_NR, np++) {
                nr = n1 - j < GI_NR ? n1 - j : GI_NR;
                pack_panel(w, j, nr, s0, ns, grid, panel + np * (int64_t)panel_bytes, av + np * kc_spans * 8,
                           cv + np * kc_spans * 8);
            }
            if (vnni)
                int8_sweep_vnni(xq + s0 * 64, ldq, xs + s0 * 8, spans, m, panel, (int64_t)panel_bytes, av, cv, kc_spans * 8, np,
                                ns, y + j0, ldy, nr, s0 == 0);
            else
                int8_sweep_avx2(xq + s0 * 64, ldq, xs + s0 * 8, spans, m, panel, (int64_t)panel_bytes, av, cv, kc_spans * 8, np,
                                ns, y + j0, ldy, nr, s0 == 0);
        }
    }
    free(buf);
    return QST_MATMUL_OK;
}

#else
int qst_mm_gemm_nf4_int8(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni) {
    (void)x; (void)m; (void)ldx; (void)w; (void)y; (void)ldy; (void)n0; (void)n1; (void)vnni;
    return QST_MATMUL_UNSUPPORTED;
}
int qst_mm_gemm_nf4_int8_grid(int code, int vnni) { (void)code; (void)vnni; return 0; }
#endif
