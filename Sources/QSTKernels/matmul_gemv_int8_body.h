// Body of the AVX2 int8 NF4 GEMV, included twice by matmul_gemv_int8_avx2.c with TARGET,
// DOT(acc32, unsigned8, signed8) and VARIANT defined.
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define STEP CAT(int8_step, VARIANT)
#define ROWS CAT(int8_rows, VARIANT)
#define ENTRY CAT(gemv_int8, VARIANT)
#define STEP64 CAT(int8_step64, VARIANT)
#define ROWS64 CAT(int8_rows64, VARIANT)

// MC rows of x times JR weight rows starting at j.
TARGET static inline __attribute__((always_inline)) void STEP(const int MC, const int JR, const int8_t *xq,
        const float *xs, const qst_weight *w, __m256i grid, float *y, int64_t ldy, int64_t j) {
    const int64_t k = w->k, groups = k / 32, per_block = w->block / 32, blocks = k / w->block;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256 acc[ROWS_PER_PASS][4];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) acc[i][r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        for (int r = 0; r < JR; r++) {
            const uint8_t *codes = (const uint8_t *)w->data + (j + r) * (k / 2) + g * 16;
            if ((g & 3) == 0) _mm_prefetch((const char *)codes + 2048, _MM_HINT_T0);
            const __m128i c = _mm_loadu_si128((const __m128i *)codes);
            const __m256i idx = _mm256_and_si256(_mm256_set_m128i(c, _mm_srli_epi16(c, 4)), low4);
            const __m256i wq = _mm256_shuffle_epi8(grid, idx);
            const __m256i aw = _mm256_sign_epi8(wq, wq);
            const float a = w->absmax[(j + r) * blocks + g / per_block];
            for (int i = 0; i < MC; i++) {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + (i * groups + g) * 32));
                const __m256i dot = DOT(_mm256_setzero_si256(), aw, _mm256_sign_epi8(xv, wq));
                acc[i][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(a * xs[i * groups + g]), acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) {
            __m256 v = acc[i][r];
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            y[i * ldy + j + r] = _mm_cvtss_f32(s) / 127.0f;
        }
}

// Blocks of a multiple of 64: 32 code bytes per load; their high nibbles are the 32 even
// elements of a 64-element span (x group 2s), the low nibbles the 32 odd ones (x group 2s+1),
// both under one absmax: no cross-lane shuffle, one absmax load per two groups.
TARGET static inline __attribute__((always_inline)) void STEP64(const int MC, const int JR, const int8_t *xq,
        const float *xs, const qst_weight *w, __m256i grid, float *y, int64_t ldy, int64_t j) {
    const int64_t k = w->k, groups = k / 32, spans = k / 64, per_block = w->block / 64, blocks = k / w->block;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256 acc[ROWS_PER_PASS][4];
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) acc[i][r] = _mm256_setzero_ps();
    for (int64_t s = 0; s < spans; s++) {
        for (int r = 0; r < JR; r++) {
            const uint8_t *codes = (const uint8_t *)w->data + (j + r) * (k / 2) + s * 32;
            if ((s & 1) == 0) _mm_prefetch((const char *)codes + 2048, _MM_HINT_T0);
            const __m256i c = _mm256_loadu_si256((const __m256i *)codes);
            const __m256i we = _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16(c, 4), low4));
            const __m256i wo = _mm256_shuffle_epi8(grid, _mm256_and_si256(c, low4));
            const __m256i ae = _mm256_sign_epi8(we, we), ao = _mm256_sign_epi8(wo, wo);
            const __m256 a = _mm256_set1_ps(w->absmax[(j + r) * blocks + s / per_block]);
            for (int i = 0; i < MC; i++) {
                const int8_t *xi = xq + (i * groups + 2 * s) * 32;
                const __m256i de = DOT(_mm256_setzero_si256(), ae, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xi), we));
                const __m256i dd = DOT(_mm256_setzero_si256(), ao, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xi + 32)), wo));
                __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(de), _mm256_broadcast_ss(xs + i * groups + 2 * s));
                v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dd), _mm256_broadcast_ss(xs + i * groups + 2 * s + 1), v);
                acc[i][r] = _mm256_fmadd_ps(v, a, acc[i][r]);
            }
        }
    }
    for (int i = 0; i < MC; i++)
        for (int r = 0; r < JR; r++) {
            __m256 v = acc[i][r];
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_movehdup_ps(h));
            y[i * ldy + j + r] = _mm_cvtss_f32(h) / 127.0f;
        }
}

TARGET static inline __attribute__((always_inline)) void ROWS64(const int MC, const int8_t *xq, const float *xs,
        const qst_weight *w, __m256i grid, float *y, int64_t ldy, int64_t n0, int64_t n1) {
    int64_t j = n0;
    if (MC <= 2) for (; j + 4 <= n1; j += 4) STEP64(MC, 4, xq, xs, w, grid, y, ldy, j);
    else for (; j + 2 <= n1; j += 2) STEP64(MC, 2, xq, xs, w, grid, y, ldy, j);
    for (; j < n1; j++) STEP64(MC, 1, xq, xs, w, grid, y, ldy, j);
}

TARGET static inline __attribute__((always_inline)) void ROWS(const int MC, const int8_t *xq, const float *xs,
        const qst_weight *w, __m256i grid, float *y, int64_t ldy, int64_t n0, int64_t n1) {
    const int JR = MC <= 2 ? 4 : 2;
    int64_t j = n0;
    if (JR == 4) for (; j + 4 <= n1; j += 4) STEP(MC, 4, xq, xs, w, grid, y, ldy, j);
    else for (; j + 2 <= n1; j += 2) STEP(MC, 2, xq, xs, w, grid, y, ldy, j);
    for (; j < n1; j++) STEP(MC, 1, xq, xs, w, grid, y, ldy, j);
}

TARGET static void ENTRY(int mc, const int8_t *xq, const float *xs, const qst_weight *w, const int8_t *grid16,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int span64) {
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)grid16));
    if (span64) {
        switch (mc) {
        case 1: ROWS64(1, xq, xs, w, grid, y, ldy, n0, n1); break;
        case 2: ROWS64(2, xq, xs, w, grid, y, ldy, n0, n1); break;
        case 3: ROWS64(3, xq, xs, w, grid, y, ldy, n0, n1); break;
        default: ROWS64(4, xq, xs, w, grid, y, ldy, n0, n1); break;
        }
        return;
    }
    switch (mc) {
    case 1: ROWS(1, xq, xs, w, grid, y, ldy, n0, n1); break;
    case 2: ROWS(2, xq, xs, w, grid, y, ldy, n0, n1); break;
    case 3: ROWS(3, xq, xs, w, grid, y, ldy, n0, n1); break;
    default: ROWS(4, xq, xs, w, grid, y, ldy, n0, n1); break;
    }
}

#undef STEP
#undef ROWS
#undef ENTRY
#undef STEP64
#undef ROWS64
