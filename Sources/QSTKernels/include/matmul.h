#ifndef QST_MATMUL_H
#define QST_MATMUL_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Storage of a weight matrix W [n out, k in], row-major (row r starts at element r * ld).
typedef enum {
    QST_WEIGHT_F32 = 0,
    /// Raw bfloat16 bits (upper half of an IEEE float32).
    QST_WEIGHT_BF16 = 1,
    /// bitsandbytes NF4: the row-major matrix flattened and cut into blocks of `block`
    /// elements (block divides k and is even); one float32 absmax per block; two 4-bit codes
    /// per byte with element 2j in the HIGH nibble; value = qst_mm_nf4_values[code] * absmax.
    /// `ld` must equal k.
    QST_WEIGHT_NF4 = 2,
} qst_weight_type;

typedef struct {
    qst_weight_type type;
    int32_t block;          ///< NF4 block size (elements); ignored otherwise.
    int64_t n;              ///< rows = output features
    int64_t k;              ///< columns = input features
    int64_t ld;             ///< elements between row starts (F32/BF16); must be k for NF4
    const void *data;       ///< float*, uint16_t* (bf16 bits) or uint8_t* (NF4 codes, n*k/2 bytes)
    const float *absmax;    ///< NF4 only: n*k/block scales
} qst_weight;

/// Which arithmetic to use. Every request resolves to a path the CPU supports or fails.
typedef enum {
    /// Fastest path available. For F32 weights it stays exact; for NF4/BF16 weights it
    /// rounds x (and NF4 values / dequantized W) to bfloat16 (~1e-3 relative error) on
    /// AVX512_BF16 CPUs; on AVX2-only CPUs NF4 takes QST_KERNEL_AVX2_INT16 (GEMV, and GEMM
    /// for blocks that are a multiple of 64); on other AVX-512 CPUs with AVX512_VNNI, NF4 products
    /// with such blocks (GEMV and GEMM) take QST_KERNEL_AVX512_INT16.
    QST_KERNEL_AUTO = 0,
    /// Fastest path whose products are full float32: AVX-512 > AVX2 > NEON > scalar.
    QST_KERNEL_EXACT = 1,
    /// Portable C, no vector intrinsics: the reference the others are tested against.
    QST_KERNEL_SCALAR = 2,
    /// AVX-512F FMA on float32 (weights dequantized to float32).
    QST_KERNEL_AVX512 = 3,
    /// AVX512_BF16 vdpbf16ps: x and weights rounded to bfloat16, float32 accumulation.
    /// GEMV with F32 weights, or NF4 with a block not a multiple of 64, runs the exact
    /// float32 loop instead (it is as fast there).
    QST_KERNEL_AVX512_BF16 = 4,
    /// AVX2 + FMA on float32 (weights decoded to float32 in registers): an exact path.
    QST_KERNEL_AVX2 = 5,
    /// AVX2 NF4 with integer dot products.
    /// GEMV: int16 dot products: x rounded to int16 per 32 elements (scale max|x|/32767), NF4
    /// values to round(16384 * value); AVX-VNNI vpdpwssd when present. Error per output
    /// <= sum_e absmax_e * (|x_e| / 32768 + 1.01 * max|x| over e's aligned 64-element span / 65534).
    /// GEMM (blocks a multiple of 64; other blocks run the GEMV loops): int16 dot products
    /// (vpmaddwd, AVX-VNNI vpdpwssd), x rounded per 32 elements to 8191 levels (scale max|x| / 8191),
    /// NF4 values to round(8191 * value). Error per output
    /// <= sum_e absmax_e * (|x_e| + 1.01 * max|x| over e's 32-element group) / 16382.
    /// NaN or Inf in an x group of the GEMM makes that row's outputs NaN. AUTO takes this GEMM for
    /// every NF4 product with such blocks beyond the GEMV rows (it measured faster than F32 there).
    QST_KERNEL_AVX2_INT16 = 6,
    /// ARM64 NEON float32 FMA (exact).
    QST_KERNEL_NEON = 7,
    /// ARM64 NEON int8 / bfloat16 dot products (approximate, fast).
    QST_KERNEL_NEON_DOT = 8,
    /// AVX-512 VNNI NF4: QST_KERNEL_AVX2_INT16's arithmetic and error bounds, its GEMM on 512-bit
    /// vpdpwssd (the same bits as the AVX2 GEMM, twice the products per instruction of the exact
    /// AVX-512 GEMM). With blocks a multiple of 64 the GEMV shape has that GEMM's arithmetic and bits
    /// too (a row's result does not depend on the shape, the row count or the other rows); other
    /// blocks run the AVX2_INT16 GEMV loops. AUTO takes it for NF4 products on AVX-512 CPUs with
    /// AVX512_VNNI and without AVX512_BF16 (Cascade Lake, Ice Lake, VMs hiding BF16).
    QST_KERNEL_AVX512_INT16 = 9,
} qst_kernel;

/// Loop shape. AUTO picks GEMV for few rows (weights streamed once, decoded in registers)
/// and GEMM for many (weights unpacked once into cache-resident panels).
typedef enum {
    QST_SHAPE_AUTO = 0,
    QST_SHAPE_GEMV = 1,
    QST_SHAPE_GEMM = 2,
} qst_shape;

enum {
    QST_MATMUL_OK = 0,
    QST_MATMUL_UNSUPPORTED = -1, ///< requested kernel not available on this CPU
    QST_MATMUL_BAD_ARGUMENT = -2,///< shape, stride, block or range invalid
    QST_MATMUL_NO_MEMORY = -3,
};

/// The 16 NF4 code values (bitsandbytes order).
extern const float qst_mm_nf4_values[16];

/// y[i, j] = sum_k x[i, k] * W[j, k] for rows i in [0, m) and output columns j in [n0, n1).
/// Only columns [n0, n1) of y are written, so threads can split the outputs by ranges
/// (any split is correct; multiples of 32 columns keep every GEMM panel full). Each call
/// prepares x for itself, so threads need no shared scratch. Thread-safe, no global state
/// besides the cached CPU features.
/// x: m rows, row stride ldx (>= k). y: row stride ldy (>= n1). Accumulation is float32.
/// Returns QST_MATMUL_OK or a negative QST_MATMUL_* code (y untouched on error).
int qst_matmul(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
               float *y, int64_t ldy, int64_t n0, int64_t n1, qst_kernel kernel);

/// Same as qst_matmul with an explicit loop shape (tests and benchmarks use it to reach
/// every path; QST_SHAPE_AUTO behaves like qst_matmul).
int qst_matmul_ex(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                  float *y, int64_t ldy, int64_t n0, int64_t n1, qst_kernel kernel, qst_shape shape);

/// 1 if `kernel` (with `shape`) can run on this CPU for this weight type, else 0.
int qst_matmul_supported(qst_weight_type type, qst_kernel kernel, qst_shape shape);

/// The concrete kernel qst_matmul_ex would use (resolving AUTO/EXACT), or -1 if none.
int qst_matmul_resolve(const qst_weight *w, int64_t m, qst_kernel kernel, qst_shape shape);

/// 1 when, for `m` rows of x times `w`, dequantize + BLAS sgemm is faster on this CPU than the
/// fastest kernel path (QST_KERNEL_AUTO), from a table of measurements: many rows where only
/// the scalar loops can run (no AVX2/AVX-512, or a layout the vector kernels decline). Depends
/// only on the CPU features, the weight layout and m, so the choice is the same on every run on
/// one machine. F32 weights: always 0.
int qst_matmul_prefers_blas(const qst_weight *w, int64_t m);

/// Short name of a qst_kernel value ("avx2", "avx512_bf16", ...); "none" for -1.
const char *qst_matmul_kernel_name(int kernel);

/// Rows at or below which QST_SHAPE_AUTO always uses the GEMV loops (it keeps them for a few
/// more rows where the GEMV path measured faster than the GEMM: qst_matmul_resolve_shape).
#define QST_GEMV_MAX_ROWS 4

/// The loop shape (QST_SHAPE_GEMV or QST_SHAPE_GEMM) qst_matmul_ex would run for m rows, or -1.
int qst_matmul_resolve_shape(const qst_weight *w, int64_t m, qst_kernel kernel, qst_shape shape);

/// Dequantizes NF4 elements [e0, e0 + count) of the flattened matrix into `out` (float32),
/// exactly as the reference: qst_mm_nf4_values[code] * absmax[e / block].
void qst_mm_nf4_dequantize(const uint8_t *codes, const float *absmax, int32_t block,
                              int64_t e0, int64_t count, float *out);

#ifdef __cplusplus
}
#endif
#endif
