// Validation and run-time choice of the matmul path.
#include "cpu.h"
#include "matmul_internal.h"

static int has_avx512(uint32_t f) { return (f & QST_CPU_AVX512_BASE) == QST_CPU_AVX512_BASE; }
static int has_bf16(uint32_t f) { return has_avx512(f) && (f & QST_CPU_AVX512_BF16); }
static int has_avx2(uint32_t f) { return (f & QST_CPU_AVX2_BASE) == QST_CPU_AVX2_BASE; }
static int has_vnni512(uint32_t f) { return has_avx512(f) && has_avx2(f) && (f & QST_CPU_AVX512_VNNI); }

// Vector kernels decode NF4 in 32-element groups sharing one absmax, and read BF16
// through dword gathers that need at least two elements per row.
// LAYOUT_INT_GEMM: NF4 blocks a multiple of 64 (the integer GEMM's absmax per pair of x groups),
// where the AVX2 int16 GEMM measured faster than the F32 one on every SmolLM2 shape from 4 rows on
// (BENCHMARKS.md §13, session 6).
enum { LAYOUT_VECTOR = 1, LAYOUT_INT_GEMM = 2 };
static int vector_layout_ok(const qst_weight *w) {
    if (w->type == QST_WEIGHT_NF4)
        return w->block % 32 == 0 ? LAYOUT_VECTOR | (w->block % 64 == 0 ? LAYOUT_INT_GEMM : 0) : 0;
    if (w->type == QST_WEIGHT_BF16) return w->k >= 2;
    return 1;
}

static qst_shape resolve_shape(int64_t m, qst_shape shape) {
    if (shape == QST_SHAPE_GEMV || shape == QST_SHAPE_GEMM) return shape;
    return m <= QST_GEMV_MAX_ROWS ? QST_SHAPE_GEMV : QST_SHAPE_GEMM;
}

#if defined(__aarch64__)
// ARM64: NEON (exact float32) everywhere; NEON_DOT (int8 sdot) for NF4 with 32-aligned
// blocks on CPUs with FEAT_DotProd. AUTO takes NEON_DOT there (NF4 decode with int8
// activations, the accuracy class of llama.cpp's Q8_0 activations), else exact NEON.
static int resolve_neon(qst_weight_type type, int layout_ok, qst_kernel kernel, uint32_t f) {
    const int neon = (f & QST_CPU_NEON) != 0;
    const int dot = neon && (f & QST_CPU_NEON_DOTPROD) && type == QST_WEIGHT_NF4 && layout_ok;
    switch (kernel) {
    case QST_KERNEL_SCALAR: return QST_KERNEL_SCALAR;
    case QST_KERNEL_NEON: return neon ? QST_KERNEL_NEON : -1;
    case QST_KERNEL_NEON_DOT: return dot ? QST_KERNEL_NEON_DOT : -1;
    case QST_KERNEL_EXACT: return neon ? QST_KERNEL_NEON : QST_KERNEL_SCALAR;
    // Not NEON_DOT: its x rounded to int8 per 32 elements costs real models' outlier channels
    // their precision (the same scheme on x86 left SmolLM2's logits 5.3 % off); it stays opt-in.
    case QST_KERNEL_AUTO: return neon ? QST_KERNEL_NEON : QST_KERNEL_SCALAR;
    default: return -1;
    }
}
#endif

static int resolve(qst_weight_type type, int layout_ok, qst_shape shape, qst_kernel kernel, uint32_t f) {
#if defined(__aarch64__)
    return resolve_neon(type, layout_ok, kernel, f);
#endif
    const int vec = has_avx512(f) && layout_ok;
    const int avx2 = has_avx2(f) && layout_ok;
    switch (kernel) {
    case QST_KERNEL_SCALAR: return QST_KERNEL_SCALAR;
    case QST_KERNEL_AVX512: return vec ? QST_KERNEL_AVX512 : -1;
    case QST_KERNEL_AVX512_BF16: return vec && has_bf16(f) ? QST_KERNEL_AVX512_BF16 : -1;
    case QST_KERNEL_AVX2: return avx2 ? QST_KERNEL_AVX2 : -1;
    case QST_KERNEL_AVX2_INT16: return avx2 && type == QST_WEIGHT_NF4 ? QST_KERNEL_AVX2_INT16 : -1;
    case QST_KERNEL_AVX512_INT16: return vec && has_vnni512(f) && type == QST_WEIGHT_NF4 ? QST_KERNEL_AVX512_INT16 : -1;
    case QST_KERNEL_NEON:
    case QST_KERNEL_NEON_DOT:
        return -1;
    case QST_KERNEL_EXACT: return vec ? QST_KERNEL_AVX512 : avx2 ? QST_KERNEL_AVX2 : QST_KERNEL_SCALAR;
    case QST_KERNEL_AUTO:
        // Without AVX-512: NF4 takes the integer dot products for decoding (the float32 table
        // lookup is compute bound) and for many rows with blocks a multiple of 64 (the int16 GEMM,
        // 1.1-1.6x the float32 FMA GEMM on every SmolLM2 shape: BENCHMARKS.md §13); everything else
        // the exact AVX2 loops.
        if (!vec && avx2) {
            const int int_gemm = (layout_ok & LAYOUT_INT_GEMM) != 0;
            return type == QST_WEIGHT_NF4 && (shape == QST_SHAPE_GEMV || int_gemm) ? QST_KERNEL_AVX2_INT16 : QST_KERNEL_AVX2;
        }
        if (!vec) return QST_KERNEL_SCALAR;
        // F32 weights stay exact (bfloat16 would only add rounding: GEMV is memory bound and
        // the F32 GEMM is the engine's reference). NF4/BF16 take the bfloat16 kernels,
        // which decode faster (GEMV) and do twice the multiplies per instruction (GEMM).
        if (type == QST_WEIGHT_F32) return QST_KERNEL_AVX512;
        if (has_bf16(f)) return QST_KERNEL_AVX512_BF16;
        // Without bfloat16, NF4 takes the int16 products where they run (AVX512_VNNI, blocks a multiple
        // of 64): the GEMM does twice the products per instruction of the exact one (BENCHMARKS.md §29);
        // its GEMV loops, with the same bits, decode 1.07x faster than the exact GEMV on 2 threads (one row
        // on one thread: 10 % slower) and take 0.65x its time on a server's 8 stacked rows, where the exact
        // one is FMA bound (BENCHMARKS.md §30).
        if (type == QST_WEIGHT_NF4 && (layout_ok & LAYOUT_INT_GEMM) && has_vnni512(f))
            return QST_KERNEL_AVX512_INT16;
        return QST_KERNEL_AVX512;
    }
    return -1;
}

// Rows up to which QST_SHAPE_AUTO keeps the GEMV loops (4 rows per pass; 8 in the NF4 bf16 and int16 ones) rather than the
// GEMM, by the GEMV path that would run: the GEMMs decode their weight panels once per call, a
// cost that only pays off over enough rows. Measured on one SmolLM2 layer's seven NF4 linears, one
// thread, kernels built with the package's flags (Scripts/bench-kernels-rows, QST_BENCH_SHAPE=gemv|gemm;
// BENCHMARKS.md §23): the AVX-512 bf16 GEMV wins up to 24 rows (582 against 604 us at 24, 680
// against 652 at 28); the AVX2 int16 GEMV ties the int16 GEMM (NF4 blocks a multiple of 64) at 9 rows
// and loses from 10 (775 against 686 us at 12), so it stops at 8 there, and at 32 where that GEMM
// cannot run (the exact F32 GEMM's packing costs ~280 us); BF16 "Few rows" in §13.
// The exact AVX-512 NF4 GEMV (what AUTO runs on AVX-512 CPUs without AVX512_BF16: Skylake-SP to Ice
// Lake, or a VM hiding it) decodes its weights once per 4 rows: with the 30 layers streaming
// (QST_BENCH_LAYERS=30, Intel Xeon, BENCHMARKS.md §27) it ties the exact GEMM at 12 rows (845 against
// 847-865 us) and loses from 14 (1,020 against 924-969 us; 1,690 against 1,330-1,395 at 24). With
// AVX512_VNNI the GEMM beyond is the int16 one, which beats that GEMV from 5 rows on one cache-resident
// layer (BENCHMARKS.md §29), but AUTO runs that int16 arithmetic's own GEMV loops there, which have the
// GEMM's bits and beat it up to 16 rows with the 30 layers streaming (801 against 852 us at 16, §30).
// A fixed table: the same m always takes the same path, so results are reproducible run to run.
static int64_t gemv_row_limit(int gemv_path, qst_weight_type type, int layout_ok) {
    switch (gemv_path) {
    case QST_KERNEL_AVX512: return type == QST_WEIGHT_BF16 ? 32 : type == QST_WEIGHT_NF4 ? 12 : QST_GEMV_MAX_ROWS;
    case QST_KERNEL_AVX512_BF16: return type == QST_WEIGHT_BF16 ? 32 : type == QST_WEIGHT_NF4 ? 24 : QST_GEMV_MAX_ROWS;
    case QST_KERNEL_AVX2_INT16: return (layout_ok & LAYOUT_INT_GEMM) ? 8 : 32;
    case QST_KERNEL_AVX512_INT16: return (layout_ok & LAYOUT_INT_GEMM) ? 16 : 32;
    case QST_KERNEL_AVX2: return type == QST_WEIGHT_BF16 ? 32 : type == QST_WEIGHT_NF4 ? 12 : QST_GEMV_MAX_ROWS;
    default: return QST_GEMV_MAX_ROWS;
    }
}

static qst_shape pick_shape(qst_weight_type type, int layout_ok, int64_t m, qst_shape shape, qst_kernel kernel,
                            uint32_t f) {
    if (shape == QST_SHAPE_GEMV || shape == QST_SHAPE_GEMM) return shape;
    if (m <= QST_GEMV_MAX_ROWS) return QST_SHAPE_GEMV;
    const int gemv = resolve(type, layout_ok, QST_SHAPE_GEMV, kernel, f);
    return m <= gemv_row_limit(gemv, type, layout_ok) ? QST_SHAPE_GEMV : QST_SHAPE_GEMM;
}

int qst_matmul_resolve_shape(const qst_weight *w, int64_t m, qst_kernel kernel, qst_shape shape) {
    if (!w) return -1;
    return pick_shape(w->type, vector_layout_ok(w), m, shape, kernel, qst_cpu_features());
}

int qst_matmul_supported(qst_weight_type type, qst_kernel kernel, qst_shape shape) {
    return resolve(type, 1, resolve_shape(QST_GEMV_MAX_ROWS + 1, shape), kernel, qst_cpu_features()) >= 0;
}

int qst_matmul_resolve(const qst_weight *w, int64_t m, qst_kernel kernel, qst_shape shape) {
    if (!w) return -1;
    const uint32_t f = qst_cpu_features();
    const int ok = vector_layout_ok(w);
    return resolve(w->type, ok, pick_shape(w->type, ok, m, shape, kernel, f), kernel, f);
}

static int valid(const float *x, int64_t m, int64_t ldx, const qst_weight *w, const float *y, int64_t ldy,
                 int64_t n0, int64_t n1) {
    if (!w || m < 0 || n0 < 0 || n1 < n0 || w->n < 0 || n1 > w->n || w->k < 1) return 0;
    if (m == 0 || n0 == n1) return 1;
    if (!x || !y || !w->data || ldx < w->k || (m > 1 && ldy < n1)) return 0;
    switch (w->type) {
    case QST_WEIGHT_F32:
    case QST_WEIGHT_BF16:
        return w->ld >= w->k;
    case QST_WEIGHT_NF4:
        return w->absmax && w->ld == w->k && w->block > 0 && w->block % 2 == 0 && w->k % w->block == 0;
    }
    return 0;
}

int qst_matmul_ex(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                  float *y, int64_t ldy, int64_t n0, int64_t n1, qst_kernel kernel, qst_shape shape) {
    if (!valid(x, m, ldx, w, y, ldy, n0, n1)) return QST_MATMUL_BAD_ARGUMENT;
    const uint32_t f = qst_cpu_features();
    const int ok = vector_layout_ok(w);
    const qst_shape s = pick_shape(w->type, ok, m, shape, kernel, f);
    const int path = resolve(w->type, ok, s, kernel, f);
    if (path < 0) return QST_MATMUL_UNSUPPORTED;
    if (m == 0 || n0 == n1) return QST_MATMUL_OK;
#if defined(__aarch64__)
    if (path == QST_KERNEL_NEON || path == QST_KERNEL_NEON_DOT)
        return qst_mm_neon(x, m, ldx, w, y, ldy, n0, n1, path == QST_KERNEL_NEON_DOT);
#endif
    if (path == QST_KERNEL_SCALAR) return qst_mm_scalar(x, m, ldx, w, y, ldy, n0, n1);
    if (path == QST_KERNEL_AVX2_INT16 || path == QST_KERNEL_AVX512_INT16) {
        // The GEMM needs 64-element x spans; other 32-multiple blocks run the GEMV loops.
        const int vnni = (f & QST_CPU_AVX_VNNI) != 0;
        if (s == QST_SHAPE_GEMM && w->block % 64 == 0) {
            const qst_int16_dot dot = path == QST_KERNEL_AVX512_INT16 ? QST_INT16_DOT_AVX512_VNNI
                                      : vnni                          ? QST_INT16_DOT_AVX_VNNI
                                                                      : QST_INT16_DOT_AVX2;
            return qst_mm_gemm_nf4_int16(x, m, ldx, w, y, ldy, n0, n1, dot);
        }
#if defined(__x86_64__)
        if (path == QST_KERNEL_AVX512_INT16 && w->block % 64 == 0)
            return qst_mm_gemv_nf4_int16_avx512(x, m, ldx, w, y, ldy, n0, n1);
#endif
        return qst_mm_gemv_nf4_int16(x, m, ldx, w, y, ldy, n0, n1, vnni);
    }
    if (path == QST_KERNEL_AVX2) {
        if (s == QST_SHAPE_GEMV) return qst_mm_gemv_avx2(x, m, ldx, w, y, ldy, n0, n1);
        return qst_mm_gemm_avx2(x, m, ldx, w, y, ldy, n0, n1);
    }
    const int bf16 = path == QST_KERNEL_AVX512_BF16;
    if (s == QST_SHAPE_GEMV) return qst_mm_gemv_avx512(x, m, ldx, w, y, ldy, n0, n1, bf16);
    return qst_mm_gemm_avx512(x, m, ldx, w, y, ldy, n0, n1, bf16);
}

int qst_matmul(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
               float *y, int64_t ldy, int64_t n0, int64_t n1, qst_kernel kernel) {
    return qst_matmul_ex(x, m, ldx, w, y, ldy, n0, n1, kernel, QST_SHAPE_AUTO);
}

// Measured with Scripts/bench-kernels (BENCHMARKS.md, "AVX2 kernels"): for many rows the
// AVX-512 GEMMs and the AVX2 GEMM (6 x 16 FMA microkernel, as fast per CPU second as OpenBLAS's
// Haswell sgemm on the same shapes, and sgemm must first dequantize the weights) beat
// dequantize + sgemm; only the scalar loops lose (7.7x on pp512). GEMV (<= QST_GEMV_MAX_ROWS
// rows) always wins in the kernels. A fixed table, not a run-time timing, so every run on a
// machine takes the same path and gets the same bits.
int qst_matmul_prefers_blas(const qst_weight *w, int64_t m) {
    if (!w || w->type == QST_WEIGHT_F32) return 0;
    if (m <= QST_GEMV_MAX_ROWS) return 0;
    return qst_matmul_resolve(w, m, QST_KERNEL_AUTO, QST_SHAPE_AUTO) == QST_KERNEL_SCALAR;
}

const char *qst_matmul_kernel_name(int kernel) {
    switch (kernel) {
    case QST_KERNEL_AUTO: return "auto";
    case QST_KERNEL_EXACT: return "exact";
    case QST_KERNEL_SCALAR: return "scalar";
    case QST_KERNEL_AVX512: return "avx512";
    case QST_KERNEL_AVX512_BF16: return "avx512_bf16";
    case QST_KERNEL_AVX2: return "avx2";
    case QST_KERNEL_AVX2_INT16: return "avx2_int16";
    case QST_KERNEL_AVX512_INT16: return "avx512_int16";
    case QST_KERNEL_NEON: return "neon";
    case QST_KERNEL_NEON_DOT: return "neon_dot";
    }
    return "none";
}
