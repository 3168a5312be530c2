// The vector paths of small_gemv.h, written once over a few lane macros and instantiated per instruction
// set by small_gemv_x86.c and small_gemv_neon.c. The includer defines:
//   SFX, ATTR       entry point suffix and target attribute
//   V, W            vector type and lane count (W divides 16, so whole vectors never pass ldw)
//   V_LOAD V_STORE V_SET1 V_ZERO V_ADD V_FMA(a, b, c) = a * b + c fused
//   SG_WT, V_LOAD_W weight element type (float, or uint16_t bfloat16 bits) and its load as a V of float32
//   SG_MAX_ACC      vector accumulators one block may keep in registers
// One lane per output j; a block of CB vectors × P chains of accumulators walks all of i once. The
// lanes' arithmetic is the scalar reference's, in the same order, so the bits do not depend on W or CB.
#define SG_CAT2(a, b) a##b
#define SG_CAT(a, b) SG_CAT2(a, b)
#define SG_FN(name) SG_CAT(name, SFX)
// How far ahead of the loads the weights are prefetched (BENCHMARKS.md §16, session 6: 2–8 KB alike).
#define SG_PREFETCH_BYTES 4096

// Outputs j0 … j0 + CB·W − 1 (clipped to out) of one row; CB and P are constants after inlining.
ATTR static inline __attribute__((always_inline)) void SG_FN(sg_block_)(
    float *y, const float *x, const SG_WT *wt, int64_t ldw, int64_t in, int64_t out, int64_t j0,
    const float *bias, int accumulate, const int CB, const int P) {
    V acc[SG_MAX_ACC];
    for (int k = 0; k < CB * P; k++) acc[k] = V_ZERO();
    const SG_WT *w = wt + j0;
    int64_t i = 0;
    for (; i + P <= in; i += P) {
        for (int p = 0; p < P; p++) {
            const V xv = V_SET1(x[i + p]);
            const SG_WT *wr = w + (i + p) * ldw;
            for (int c = 0; c < CB; c++) {
                // The weights stream from memory once per token: ask for them a page ahead, across the
                // 4 KB boundaries where the hardware prefetcher stops (the next matrix follows in the pack).
                __builtin_prefetch((const char *)(wr + c * W) + SG_PREFETCH_BYTES);
                acc[c * P + p] = V_FMA(xv, V_LOAD_W(wr + c * W), acc[c * P + p]);
            }
        }
    }
    for (int p = 0; i < in; i++, p++) {
        const V xv = V_SET1(x[i]);
        const SG_WT *wr = w + i * ldw;
        for (int c = 0; c < CB; c++) acc[c * P + p] = V_FMA(xv, V_LOAD_W(wr + c * W), acc[c * P + p]);
    }
    for (int c = 0; c < CB; c++) {
        V s = acc[c * P];
        for (int p = 1; p < P; p++) s = V_ADD(s, acc[c * P + p]);
        const int64_t j = j0 + (int64_t)c * W;
        if (j >= out) break;
        if (j + W <= out) {
            if (accumulate) s = V_ADD(V_LOAD(y + j), s);
            if (bias) s = V_ADD(s, V_LOAD(bias + j));
            V_STORE(y + j, s);
        } else {
            float t[W];
            V_STORE(t, s);
            for (int64_t l = 0; l < out - j; l++) {
                float v = t[l];
                if (accumulate) v = y[j + l] + v;
                if (bias) v = v + bias[j + l];
                y[j + l] = v;
            }
        }
    }
}

// All outputs of one row: blocks of as many vectors as fit SG_MAX_ACC accumulators with P chains.
ATTR static void SG_FN(sg_row_)(float *y, const float *x, const SG_WT *wt, int64_t ldw, int64_t in, int64_t out,
                                const float *bias, int accumulate, int P) {
    const int64_t vecs = (out + W - 1) / W;
    const int per = SG_MAX_ACC / P;
    for (int64_t v0 = 0; v0 < vecs; v0 += per) {
        const int64_t left = vecs - v0;
        const int cb = (int)(left < per ? left : per);
        const int64_t j0 = v0 * W;
#define SG_CASE(P_, CB_)                                                                       \
    case (P_) * 64 + (CB_):                                                                     \
        SG_FN(sg_block_)(y, x, wt, ldw, in, out, j0, bias, accumulate, CB_, P_);                \
        break;
        switch (P * 64 + cb) {
#if SG_MAX_ACC >= 16
            SG_CASE(1, 16) SG_CASE(1, 15) SG_CASE(1, 14) SG_CASE(1, 13) SG_CASE(2, 8) SG_CASE(2, 7)
            SG_CASE(4, 4) SG_CASE(8, 2)
#endif
#if SG_MAX_ACC >= 12
            SG_CASE(1, 12) SG_CASE(1, 11) SG_CASE(1, 10) SG_CASE(1, 9)
#endif
            SG_CASE(1, 8) SG_CASE(1, 7) SG_CASE(1, 6) SG_CASE(1, 5) SG_CASE(1, 4) SG_CASE(1, 3) SG_CASE(1, 2) SG_CASE(1, 1)
            SG_CASE(2, 6) SG_CASE(2, 5) SG_CASE(2, 4) SG_CASE(2, 3) SG_CASE(2, 2) SG_CASE(2, 1)
            SG_CASE(4, 3) SG_CASE(4, 2) SG_CASE(4, 1) SG_CASE(8, 1)
        default: __builtin_trap(); // every (P, cb) the loop above can form has a case
        }
#undef SG_CASE
    }
}

int SG_FN(qst_small_gemv_)(float *y, int64_t ldy, const float *x, int64_t ldx, int64_t n, const SG_WT *wt,
                           int64_t ldw, int64_t in, int64_t out, const float *bias, int accumulate, int chains) {
    for (int64_t r = 0; r < n; r++) SG_FN(sg_row_)(y + r * ldy, x + r * ldx, wt, ldw, in, out, bias, accumulate, chains);
    return 0;
}

#undef SG_CAT2
#undef SG_CAT
#undef SG_FN
#undef SG_PREFETCH_BYTES
