// Microkernel of the AVX2 integer NF4 GEMM, included twice by matmul_gemm_int8_avx2.c with
// VARIANT, TARGET and ROW_DOT(xv, wrow) defined: eight int32 lanes (low four: group A, high four:
// group B) whose sums are the dot products of one x span (xv[0..3]: 64 int16 in registers) and
// one weight row's 64 int16 grid values at wrow.
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define TILE CAT(int8_tile, VARIANT)
#define SWEEP CAT(int8_sweep, VARIANT)

// RM rows of x (from row i) times the GI_NR = 4 rows of the panel over spans [0, ns); adds
// into (first chunk: writes) y. Per x row and span the four row products are folded by a
// vphaddd tree into one vector (lane r: row r's low 128-bit halves = x group A, lane r + 4: its
// high halves = group B), converted and scaled by
// [absmax_r * xscale_A, absmax_r * xscale_B] in one FMA. Every
// output runs the same instruction sequence whatever RM, the row count or the column range,
// so a row's result does not depend on its neighbours.
TARGET static inline __attribute__((always_inline)) void TILE(const int RM, const int16_t *xq, int64_t ldq,
        const float *xs, int64_t lds, const int16_t *panel, const float *av, int64_t ns,
        float *y, int64_t ldy, int64_t nr, int first) {
    __m256 acc[GI_RM];
    for (int i = 0; i < RM; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        const int16_t *w = panel + s * GI_NR * 64;
        const __m256 a = _mm256_load_ps(av + s * 8);
        for (int i = 0; i < RM; i++) {
            __m256i xv[4];
            for (int t = 0; t < 4; t++) xv[t] = _mm256_load_si256((const __m256i *)(xq + i * ldq + s * 64 + 16 * t));
            const __m256i d01 = _mm256_hadd_epi32(ROW_DOT(xv, w), ROW_DOT(xv, w + 64));
            const __m256i d23 = _mm256_hadd_epi32(ROW_DOT(xv, w + 128), ROW_DOT(xv, w + 192));
            const __m256i d = _mm256_hadd_epi32(d01, d23);
            const __m256 scale = _mm256_mul_ps(a, _mm256_load_ps(xs + (i * lds + s) * 8));
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), scale, acc[i]);
        }
    }
    for (int i = 0; i < RM; i++) {
        const __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc[i]), _mm256_extractf128_ps(acc[i], 1));
        float *yi = y + i * ldy;
        if (nr == GI_NR) {
            _mm_storeu_ps(yi, first ? v : _mm_add_ps(_mm_loadu_ps(yi), v));
            continue;
        }
        float t[4];
        _mm_storeu_ps(t, v);
        for (int r = 0; r < nr; r++) yi[r] = first ? t[r] : yi[r] + t[r];
    }
}

// Rows of x in tiles of GI_RM, each tile over `np` consecutive panels (GI_NR columns each, panel p
// at panel + p * pstride, its scales at av + p * astride, nr columns in the
// last): the x tile stays in L1 across the panels.
TARGET static void SWEEP(const int16_t *xq, int64_t ldq, const float *xs, int64_t lds, int64_t m,
                         const int16_t *panel, int64_t pstride, const float *av, int64_t astride,
                         int64_t np, int64_t ns, float *y, int64_t ldy, int64_t nr, int first) {
    int64_t i = 0;
    for (; i + GI_RM <= m; i += GI_RM)
        for (int64_t p = 0; p < np; p++)
            TILE(GI_RM, xq + i * ldq, ldq, xs + i * lds * 8, lds, panel + p * pstride, av + p * astride, ns,
                 y + i * ldy + p * GI_NR, ldy, p == np - 1 ? nr : GI_NR, first);
    for (; i < m; i++)
        for (int64_t p = 0; p < np; p++)
            TILE(1, xq + i * ldq, ldq, xs + i * lds * 8, lds, panel + p * pstride, av + p * astride, ns,
                 y + i * ldy + p * GI_NR, ldy, p == np - 1 ? nr : GI_NR, first);
}

#undef TILE
#undef SWEEP
#undef CAT
#undef CAT2
