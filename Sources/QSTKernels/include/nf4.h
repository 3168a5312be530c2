#ifndef QST_NF4_H
#define QST_NF4_H
// NF4 (bitsandbytes / QLoRA NormalFloat-4) block kernels.
//
// Layout, as bitsandbytes stores it: the tensor flattened row-major, cut into blocks of
// `block_size` elements (power of two), one float32 absmax per block, two 4-bit codes per
// byte with element 2j in the HIGH nibble and 2j+1 in the low nibble.
//
// Every entry point takes an `impl` (the QST_IMPL_* values of kernel_impl.h) so tests can pin
// each path against the scalar one; QST_NF4_AUTO picks the fastest the CPU has. All paths
// give identical bits.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    QST_NF4_AUTO = 0,
    QST_NF4_SCALAR = 1,
    QST_NF4_AVX512 = 2,
    QST_NF4_AVX2 = 3,
    QST_NF4_NEON = 4,
};

/// 1 when the AVX-512 (F, BW, VL) path can run on this CPU (and QST_KERNELS allows it).
int qst_nf4_has_avx512(void);

/// The 16 NormalFloat code values (float32, ascending; code 7 is 0.0, code 15 is 1.0).
float qst_nf4_code_value(int code);

/// The 15 decision thresholds of bitsandbytes' dQuantizeNF4 tree, ascending:
/// code(x) = number of thresholds t with x > t (NaN -> 0).
float qst_nf4_threshold(int index);

/// Quantizes blocks [first_block, end_block) of a tensor of `count` elements.
/// Writes absmax[b] and the packed bytes of those blocks into `codes` (indexed from the
/// tensor's start). A partial last block is padded with 0.0 as bitsandbytes does, which
/// decides the low nibble of the final byte when `count` is odd.
/// Returns -1 when every element was finite, else the index of the first NaN/inf element
/// found (outputs for that block are then unspecified).
int64_t qst_nf4_quantize_blocks(const float *x, int64_t count, int64_t block_size,
                                int64_t first_block, int64_t end_block,
                                uint8_t *codes, float *absmax, int impl);

/// Dequantizes elements [start, start+n) to float32: out[i - start] = code[nibble] * absmax[block].
/// `start` must be even (byte aligned); `codes` and `absmax` point at the tensor's beginning.
void qst_nf4_dequantize_f32(const uint8_t *codes, const float *absmax, int64_t block_size,
                            int64_t start, int64_t n, float *out, int impl);

/// Same values as qst_nf4_dequantize_f32, rounded to bfloat16 (round to nearest even).
void qst_nf4_dequantize_bf16(const uint8_t *codes, const float *absmax, int64_t block_size,
                             int64_t start, int64_t n, uint16_t *out, int impl);

/// The scale search's weighted error of one block (n elements x, weights w) under each of `count`
/// candidate scales: errors[j] = sum_i f64(w_i) * d_i^2 with d_i = f64(x_i) - f64(NF4[c_i] * s_j) and
/// c_i the code of f32(x_i * f32(1 / s_j)), summed in element order in float64 (Formats/NF4.md §6).
/// Every path returns the scalar path's bits (one candidate per vector lane).
void qst_nf4_block_errors(const float *x, const float *w, int64_t n, const float *scales, int64_t count,
                          double *errors, int impl);

#ifdef __cplusplus
}
#endif
#endif
