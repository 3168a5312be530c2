// Microkernel of the AVX2 int16 NF4 GEMM, included twice by matmul_gemm_int16_avx2.c with VARIANT,
// TARGET and DOT_ACC(acc, x, w) defined (acc + the pairwise int16 products of x and w as int32).
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define TILE CAT(int16_tile, VARIANT)
#define SWEEP CAT(int16_sweep, VARIANT)

// RM rows of x (from row i) times the panel's 16 weight rows over groups [0, ng); adds into (first
// chunk: writes) y. Per group: int32 sums over its 16 pairs, then acc += float(sum) * absmax * xscale.
// Every output runs the same instruction sequence whatever RM, the row count or the column range,
// so a row's result does not depend on its neighbours.
TARGET static inline __attribute__((always_inline)) void TILE(const int RM, const int16_t *xq, int64_t ldq,
        const float *xs, int64_t lds, const int16_t *panel, const float *av, int64_t ng,
        float *y, int64_t ldy, int64_t nr, int first) {
    __m256 acc[GI16_RM][2];
    for (int i = 0; i < RM; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m256i d[GI16_RM][2];
        for (int i = 0; i < RM; i++) d[i][0] = d[i][1] = _mm256_setzero_si256();
        const int16_t *wp = panel + g * 16 * 32;
        const int16_t *xp = xq + g * 32;
        for (int p = 0; p < 16; p++) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)(wp + p * 32));
            const __m256i w1 = _mm256_load_si256((const __m256i *)(wp + p * 32 + 16));
            for (int i = 0; i < RM; i++) {
                int32_t pair;
                memcpy(&pair, xp + i * ldq + 2 * p, 4);
                const __m256i xb = _mm256_set1_epi32(pair);
                d[i][0] = DOT_ACC(d[i][0], xb, w0);
                d[i][1] = DOT_ACC(d[i][1], xb, w1);
            }
        }
        const __m256 a0 = _mm256_load_ps(av + g * 16), a1 = _mm256_load_ps(av + g * 16 + 8);
        for (int i = 0; i < RM; i++) {
            const __m256 s = _mm256_broadcast_ss(xs + i * lds + g);
            acc[i][0] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(d[i][0]), a0), s, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(d[i][1]), a1), s, acc[i][1]);
        }
    }
    for (int i = 0; i < RM; i++) {
        float *yi = y + i * ldy;
        if (nr == GI16_NR) {
            for (int h = 0; h < 2; h++)
                _mm256_storeu_ps(yi + 8 * h, first ? acc[i][h] : _mm256_add_ps(_mm256_loadu_ps(yi + 8 * h), acc[i][h]));
            continue;
        }
        float t[16];
        _mm256_storeu_ps(t, acc[i][0]);
        _mm256_storeu_ps(t + 8, acc[i][1]);
        for (int r = 0; r < nr; r++) yi[r] = first ? t[r] : yi[r] + t[r];
    }
}

// Rows of x in tiles of GI16_RM, each tile over `np` consecutive panels (16 columns each, panel p at
// panel + p * pstride, its scales at av + p * astride, nr columns in the last): the x tile stays in
// L1 across the panels.
TARGET static void SWEEP(const int16_t *xq, int64_t ldq, const float *xs, int64_t lds, int64_t m,
                         const int16_t *panel, int64_t pstride, const float *av, int64_t astride,
                         int64_t np, int64_t ng, float *y, int64_t ldy, int64_t nr, int first) {
    int64_t i = 0;
    for (; i + GI16_RM <= m; i += GI16_RM)
        for (int64_t p = 0; p < np; p++)
            TILE(GI16_RM, xq + i * ldq, ldq, xs + i * lds, lds, panel + p * pstride, av + p * astride, ng,
                 y + i * ldy + p * GI16_NR, ldy, p == np - 1 ? nr : GI16_NR, first);
    for (; i < m; i++)
        for (int64_t p = 0; p < np; p++)
            TILE(1, xq + i * ldq, ldq, xs + i * lds, lds, panel + p * pstride, av + p * astride, ng,
                 y + i * ldy + p * GI16_NR, ldy, p == np - 1 ? nr : GI16_NR, first);
}

#undef TILE
#undef SWEEP
#undef CAT
#undef CAT2
