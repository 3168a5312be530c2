// Body of the AVX2 integer NF4 GEMV, included twice by matmul_gemv_int16_avx2.c with TARGET,
// DOT(acc32, int16 weights, int16 x) and VARIANT defined. The int16 grid values come from two
// byte lookups (low and high bytes) interleaved by vpunpck{l,h}bw, which orders a 32-weight
// group as [0..7, 16..23] and [8..15, 24..31] per register: x is stored in that order.
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define STEP CAT(int8_step, VARIANT)
#define ROWS CAT(int8_rows, VARIANT)
#define ENTRY CAT(gemv_int8, VARIANT)
#define STEP64 CAT(int8_step64, VARIANT)
#define ROWS64 CAT(int8_rows64, VARIANT)

// MC rows of x times JR weight rows starting at j.
TARGET static inline __attribute__((always_inline)) void STEP(const int MC, const int JR, const int16_t *xq,
        const float *xs, const qst_weight *w, __m256i grid_lo, __m256i grid_hi, float *y, int64_t ldy, int64_t j) {
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
            const __m256i lo = _mm256_shuffle_epi8(grid_lo, idx), hi = _mm256_shuffle_epi8(grid_hi, idx);
            const __m256i w0 = _mm256_unpacklo_epi8(lo, hi), w1 = _mm256_unpackhi_epi8(lo, hi);
            const float a = w->absmax[(j + r) * blocks + g / per_block];
            for (int i = 0; i < MC; i++) {
                const int16_t *xi = xq + (i * groups + g) * 32;
                const __m256i dot = DOT(DOT(_mm256_setzero_si256(), w0, _mm256_loadu_si256((const __m256i *)xi)), w1,
                                        _mm256_loadu_si256((const __m256i *)(xi + 16)));
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
            y[i * ldy + j + r] = _mm_cvtss_f32(s) * (1.0f / QST_NF4_INT16_GRID);
        }
}

// Blocks of a multiple of 64: 32 code bytes per load; their high nibbles are the 32 even
// elements of a 64-element span (x group 2s), the low nibbles the 32 odd ones (x group 2s+1),
// both under one absmax: no cross-lane shuffle, one absmax load per two groups.
TARGET static inline __attribute__((always_inline)) void STEP64(const int MC, const int JR, const int16_t *xq,
        const float *xs, const qst_weight *w, __m256i grid_lo, __m256i grid_hi, float *y, int64_t ldy, int64_t j) {
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
            const __m256i ie = _mm256_and_si256(_mm256_srli_epi16(c, 4), low4), io = _mm256_and_si256(c, low4);
            const __m256i el = _mm256_shuffle_epi8(grid_lo, ie), eh = _mm256_shuffle_epi8(grid_hi, ie);
            const __m256i ol = _mm256_shuffle_epi8(grid_lo, io), oh = _mm256_shuffle_epi8(grid_hi, io);
            const __m256i e0 = _mm256_unpacklo_epi8(el, eh), e1 = _mm256_unpackhi_epi8(el, eh);
            const __m256i o0 = _mm256_unpacklo_epi8(ol, oh), o1 = _mm256_unpackhi_epi8(ol, oh);
            const __m256 a = _mm256_set1_ps(w->absmax[(j + r) * blocks + s / per_block]);
            for (int i = 0; i < MC; i++) {
                const int16_t *xi = xq + (i * groups + 2 * s) * 32;
                const __m256i de = DOT(DOT(_mm256_setzero_si256(), e0, _mm256_loadu_si256((const __m256i *)xi)), e1,
                                       _mm256_loadu_si256((const __m256i *)(xi + 16)));
                const __m256i dd = DOT(DOT(_mm256_setzero_si256(), o0, _mm256_loadu_si256((const __m256i *)(xi + 32))), o1,
                                       _mm256_loadu_si256((const __m256i *)(xi + 48)));
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
            y[i * ldy + j + r] = _mm_cvtss_f32(h) * (1.0f / QST_NF4_INT16_GRID);
        }
}

TARGET static inline __attribute__((always_inline)) void ROWS64(const int MC, const int16_t *xq, const float *xs,
        const qst_weight *w, __m256i grid_lo, __m256i grid_hi, float *y, int64_t ldy, int64_t n0, int64_t n1) {
    int64_t j = n0;
    // Beyond 4 rows of x, one weight row per step (MC accumulators of the 16 ymm registers).
    if (MC <= 2) for (; j + 4 <= n1; j += 4) STEP64(MC, 4, xq, xs, w, grid_lo, grid_hi, y, ldy, j);
    else if (MC <= 4) for (; j + 2 <= n1; j += 2) STEP64(MC, 2, xq, xs, w, grid_lo, grid_hi, y, ldy, j);
    for (; j < n1; j++) STEP64(MC, 1, xq, xs, w, grid_lo, grid_hi, y, ldy, j);
}

TARGET static inline __attribute__((always_inline)) void ROWS(const int MC, const int16_t *xq, const float *xs,
        const qst_weight *w, __m256i grid_lo, __m256i grid_hi, float *y, int64_t ldy, int64_t n0, int64_t n1) {
    int64_t j = n0;
    if (MC <= 2) for (; j + 4 <= n1; j += 4) STEP(MC, 4, xq, xs, w, grid_lo, grid_hi, y, ldy, j);
    else if (MC <= 4) for (; j + 2 <= n1; j += 2) STEP(MC, 2, xq, xs, w, grid_lo, grid_hi, y, ldy, j);
    for (; j < n1; j++) STEP(MC, 1, xq, xs, w, grid_lo, grid_hi, y, ldy, j);
}

TARGET static void ENTRY(int mc, const int16_t *xq, const float *xs, const qst_weight *w, const uint8_t *grid_bytes,
                         float *y, int64_t ldy, int64_t n0, int64_t n1, int span64) {
    const __m256i grid_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)grid_bytes));
    const __m256i grid_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(grid_bytes + 16)));
    if (span64) {
        switch (mc) {
        case 1: ROWS64(1, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
        case 2: ROWS64(2, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
        case 3: ROWS64(3, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
        case 4: ROWS64(4, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
        case 5: ROWS64(5, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
        case 6: ROWS64(6, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
        case 7: ROWS64(7, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
        default: ROWS64(8, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
        }
        return;
    }
    switch (mc) {
    case 1: ROWS(1, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
    case 2: ROWS(2, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
    case 3: ROWS(3, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
    case 4: ROWS(4, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
    case 5: ROWS(5, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
    case 6: ROWS(6, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
    case 7: ROWS(7, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
    default: ROWS(8, xq, xs, w, grid_lo, grid_hi, y, ldy, n0, n1); break;
    }
}

#undef STEP
#undef ROWS
#undef ENTRY
#undef STEP64
#undef ROWS64
