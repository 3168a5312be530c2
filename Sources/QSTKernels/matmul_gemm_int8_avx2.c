// AVX2 NF4 GEMM with integer dot products, for many rows of x (prompts, training forward) on CPUs
// without AVX-512 (QST_KERNEL_AVX2_INT8, GEMM shape). Per call:
//   - every row of x is rounded to int16 once, one scale per 32 elements (max|x| / 8191), per
//     aligned 64-element span: the span lies in one NF4 absmax block (block % 64 == 0);
//   - for each K chunk and 4 panels of GI_NR = 4 weight rows, the NF4 codes are decoded once to
//     an int16 grid round(8191 * value), in the x layout; a microkernel sweeps GI_RM rows of x
//     at a time over the panels while they stay in L1;
//   - per x row and span, four weight rows' products (vpmaddwd, or AVX-VNNI vpdpwssd) are folded
//     by a vphaddd tree into one vector (lanes 0-3: group A = elements 0-31 of rows 0-3, lanes
//     4-7: group B), so conversion, scaling and accumulation cost one instruction each per four
//     outputs.
// Why 8191 levels: a lane of the folded vector sums 32 products, which must fit an int32 (32 *
// 8191 * 8191 < 2^31). Why not int8 (x to 127 levels, twice the products per instruction, 1.5x
// the F32 GEMM here): it left SmolLM2's logits 4.8 % off the reference (RealModelTests allows 1.5 %).
// Error, per output (the bound of matmul.h): each weight is off by at most absmax / 16382, each x
// element by at most the max|x| of its 32-element group / 16382.
// Groups holding Inf or NaN give NaN outputs for their row (the reference gives Inf or NaN).
#include "matmul_internal.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GI_KC 1024 // elements per K chunk: GI_NP panels of 4 x 1024 int16 (32 KiB) stay in L1
#define GI_LEVELS 8191.0f // x and weight grid levels: 32 products of two <= 8191 fit an int32 lane sum
#define GI_RM 3
#define GI_NR 4
#define GI_NP 4 // panels swept together by each x tile

#define TARGET_BASE __attribute__((target("avx2,fma")))

// One 64-element span of x rounded to int16 per 32-element half (group A = elements 0-31,
// B = 32-63), scale max|x of the half| / GI_LEVELS, stored as the microkernel reads it: four
// vectors [A 8t..8t+7 | B 8t..8t+7], so the low 128-bit lanes of every product carry group A and
// the high lanes group B. scale8 gets [sA x 4, sB x 4], s = max|x| / GI_LEVELS / GI_LEVELS (the
// weight grid's scale folded in).
TARGET_BASE static void quantize_span(const float *v, int16_t *q, float *scale8) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256i n[2][4];
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
        const __m256 inv = _mm256_set1_ps(mx[half] > 0 ? GI_LEVELS / mx[half] : 0.0f);
        for (int t = 0; t < 4; t++) n[half][t] = _mm256_cvtps_epi32(_mm256_mul_ps(f[t], inv));
    }
    __m256i out[4], bad = _mm256_setzero_si256();
    for (int t = 0; t < 4; t++) {
        // packs: [A 0-3, B 0-3 | A 4-7, B 4-7] of this 8-element step; vpermq puts A low, B high.
        out[t] = _mm256_permute4x64_epi64(_mm256_packs_epi32(n[0][t], n[1][t]), 0xD8);
        // NaN, or Inf (whose inverse scale is 0: Inf * 0 = NaN), converts to INT_MIN -> -32768,
        // a value finite inputs never produce (|x * levels / max| <= levels).
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi16(out[t], _mm256_set1_epi16(-32768)));
    }
    float sa = mx[0] / GI_LEVELS / GI_LEVELS, sb = mx[1] / GI_LEVELS / GI_LEVELS;
    if (!_mm256_testz_si256(bad, bad) || !(mx[0] <= 3.4e38f) || !(mx[1] <= 3.4e38f)) {
        // Non-finite input (NaN outputs), or a max so small that levels / max overflowed.
        int finite = 1;
        for (int e = 0; e < 64; e++) finite &= isfinite(v[e]) != 0;
        if (!finite) sa = sb = NAN;
        for (int t = 0; t < 4; t++)
            for (int l = 0; l < 16; l++) {
                const int e = (l < 8 ? 0 : 32) + 8 * t + (l & 7);
                q[16 * t + l] = finite ? (int16_t)lrintf(v[e] / mx[e / 32] * GI_LEVELS) : 0;
            }
    } else {
        for (int t = 0; t < 4; t++) _mm256_store_si256((__m256i *)(q + 16 * t), out[t]);
    }
    _mm256_store_ps(scale8, _mm256_setr_ps(sa, sa, sa, sa, sb, sb, sb, sb));
}

// Panel of weight rows [j0, j0 + nr) (nr <= 4; absent rows zero), spans [s0, s0 + ns): per
// span the rows' 64 int16 grid values round(GI_LEVELS * value) in the x layout and the scale
// vector av = [absmax_0..3, absmax_0..3].
TARGET_BASE static void pack_panel(const qst_weight *w, int64_t j0, int64_t nr, int64_t s0, int64_t ns,
                                   const uint8_t *glo16, const uint8_t *ghi16, int16_t *panel, float *av) {
    const __m256i glo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)glo16));
    const __m256i ghi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ghi16));
    const __m256i low4 = _mm256_set1_epi8(0x0F), z = _mm256_setzero_si256();
    const int64_t per_block = w->block / 64, blocks = w->k / w->block;
    for (int64_t s = 0; s < ns; s++)
        for (int r = 0; r < GI_NR; r++) {
            int16_t *o = panel + (s * GI_NR + r) * 64;
            if (r >= nr) {
                for (int t = 0; t < 4; t++) _mm256_store_si256((__m256i *)(o + 16 * t), z);
                av[s * 8 + r] = av[s * 8 + r + 4] = 0;
                continue;
            }
            const int64_t j = j0 + r;
            const __m256i c = _mm256_loadu_si256((const __m256i *)((const uint8_t *)w->data + j * (w->k / 2) + (s0 + s) * 32));
            const __m256i ih = _mm256_and_si256(_mm256_srli_epi16(c, 4), low4), il = _mm256_and_si256(c, low4);
            // Byte t holds elements 2t (high nibble) and 2t+1 (low nibble): interleaving the two
            // gives code indices [0-15 | 32-47] and [16-31 | 48-63]; the grid's low and high bytes
            // looked up and interleaved again give int16 [8u..8u+7 | 32+8u..32+8u+7].
            const __m256i idx[2] = {_mm256_unpacklo_epi8(ih, il), _mm256_unpackhi_epi8(ih, il)};
            for (int h = 0; h < 2; h++) {
                const __m256i lo = _mm256_shuffle_epi8(glo, idx[h]), hi = _mm256_shuffle_epi8(ghi, idx[h]);
                _mm256_store_si256((__m256i *)(o + 32 * h), _mm256_unpacklo_epi8(lo, hi));
                _mm256_store_si256((__m256i *)(o + 32 * h + 16), _mm256_unpackhi_epi8(lo, hi));
            }
            av[s * 8 + r] = av[s * 8 + r + 4] = w->absmax[j * blocks + (s0 + s) / per_block];
        }
}

// ---- the two microkernel variants ----

// x . w by four vpmaddwd (8 products per int32 lane).
TARGET_BASE static inline __attribute__((always_inline)) __m256i avx2_dot(const __m256i *xv, const int16_t *wr) {
    const __m256i a = _mm256_add_epi32(_mm256_madd_epi16(xv[0], _mm256_load_si256((const __m256i *)wr)),
                                       _mm256_madd_epi16(xv[1], _mm256_load_si256((const __m256i *)(wr + 16))));
    const __m256i b = _mm256_add_epi32(_mm256_madd_epi16(xv[2], _mm256_load_si256((const __m256i *)(wr + 32))),
                                       _mm256_madd_epi16(xv[3], _mm256_load_si256((const __m256i *)(wr + 48))));
    return _mm256_add_epi32(a, b);
}

#define VARIANT avx2
#define TARGET TARGET_BASE
#define ROW_DOT(xv, wr) avx2_dot(xv, wr)
#include "matmul_gemm_int8_body.h"
#undef VARIANT
#undef TARGET
#undef ROW_DOT

// x . w by four vpdpwssd.
#define TARGET_VNNI __attribute__((target("avx2,fma,avxvnni")))
TARGET_VNNI static inline __attribute__((always_inline)) __m256i vnni_dot(const __m256i *xv, const int16_t *wr) {
    __m256i d = _mm256_dpwssd_avx_epi32(_mm256_setzero_si256(), xv[0], _mm256_load_si256((const __m256i *)wr));
    d = _mm256_dpwssd_avx_epi32(d, xv[1], _mm256_load_si256((const __m256i *)(wr + 16)));
    d = _mm256_dpwssd_avx_epi32(d, xv[2], _mm256_load_si256((const __m256i *)(wr + 32)));
    return _mm256_dpwssd_avx_epi32(d, xv[3], _mm256_load_si256((const __m256i *)(wr + 48)));
}

#define VARIANT vnni
#define TARGET TARGET_VNNI
#define ROW_DOT(xv, wr) vnni_dot(xv, wr)
#include "matmul_gemm_int8_body.h"
#undef VARIANT
#undef TARGET
#undef ROW_DOT

int qst_mm_gemm_nf4_int16_grid(int code) { return (int)lrintf(GI_LEVELS * qst_mm_nf4_values[code & 15]); }

int qst_mm_gemm_nf4_int8(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni) {
    const int64_t k = w->k, spans = k / 64, kc_spans = GI_KC / 64, ldq = k;
    const size_t xq_bytes = (size_t)(m * ldq) * sizeof(int16_t), xs_bytes = (size_t)(m * spans) * 8 * sizeof(float);
    const size_t panel_bytes = (size_t)(kc_spans * GI_NR * 64) * sizeof(int16_t), aux_bytes = (size_t)(kc_spans * 8) * 4;
    char *buf = qst_mm_alloc(xq_bytes + xs_bytes + GI_NP * (panel_bytes + aux_bytes));
    if (!buf) return QST_MATMUL_NO_MEMORY;
    int16_t *xq = (int16_t *)buf;
    float *xs = (float *)(buf + xq_bytes);
    int16_t *panel = (int16_t *)(buf + xq_bytes + xs_bytes);
    float *av = (float *)((char *)panel + GI_NP * panel_bytes);
    uint8_t glo[16], ghi[16];
    for (int c = 0; c < 16; c++) {
        const uint16_t g = (uint16_t)(int16_t)qst_mm_gemm_nf4_int16_grid(c);
        glo[c] = (uint8_t)(g & 0xFF);
        ghi[c] = (uint8_t)(g >> 8);
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t s = 0; s < spans; s++) quantize_span(x + i * ldx + s * 64, xq + i * ldq + s * 64, xs + (i * spans + s) * 8);
    const int64_t pelems = (int64_t)(panel_bytes / sizeof(int16_t));
    for (int64_t s0 = 0; s0 < spans; s0 += kc_spans) {
        const int64_t ns = spans - s0 < kc_spans ? spans - s0 : kc_spans;
        for (int64_t j0 = n0; j0 < n1; j0 += GI_NR * GI_NP) {
            int64_t np = 0, nr = 0;
            for (int64_t j = j0; j < n1 && np < GI_NP; j += GI_NR, np++) {
                nr = n1 - j < GI_NR ? n1 - j : GI_NR;
                pack_panel(w, j, nr, s0, ns, glo, ghi, panel + np * pelems, av + np * kc_spans * 8);
            }
            if (vnni)
                int8_sweep_vnni(xq + s0 * 64, ldq, xs + s0 * 8, spans, m, panel, pelems, av, kc_spans * 8, np, ns,
                                y + j0, ldy, nr, s0 == 0);
            else
                int8_sweep_avx2(xq + s0 * 64, ldq, xs + s0 * 8, spans, m, panel, pelems, av, kc_spans * 8, np, ns,
                                y + j0, ldy, nr, s0 == 0);
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
int qst_mm_gemm_nf4_int16_grid(int code) { (void)code; return 0; }
#endif
