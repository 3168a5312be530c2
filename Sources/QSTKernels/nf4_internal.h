// Private pieces shared by the NF4 codec paths (nf4.c, nf4_avx2.c, nf4_neon.c).
#ifndef QST_NF4_INTERNAL_H
#define QST_NF4_INTERNAL_H
#include <stdint.h>

// bitsandbytes' 16 code values, ascending.
extern const float qst_nf4_codes[16];
// Index 0 is a pad; [k] separates code k-1 from code k (x > t moves up).
extern const float qst_nf4_thresholds16[16];

// Block functions. absmax: returns -1 and writes the block's max |x|, or the index of the
// first non-finite element. quantize: packed codes of `len` elements (0.0-padded to even).
// dequant: elements [start, start+n) of one block with scale `scale`, any start parity.
int64_t qst_nf4_absmax_scalar(const float *x, int64_t len, float *absmax_out);
void qst_nf4_quantize_block_scalar(const float *x, int64_t len, float recip, uint8_t *out);
void qst_nf4_dequant_f32_scalar(const uint8_t *codes, float scale, int64_t start, int64_t n, float *out);
void qst_nf4_dequant_bf16_scalar(const uint8_t *codes, float scale, int64_t start, int64_t n, uint16_t *out);

#if defined(__x86_64__) || defined(__i386__)
int64_t qst_nf4_absmax_avx2(const float *x, int64_t len, float *absmax_out);
void qst_nf4_quantize_block_avx2(const float *x, int64_t len, float recip, uint8_t *out);
void qst_nf4_dequant_f32_avx2(const uint8_t *codes, float scale, int64_t start, int64_t n, float *out);
void qst_nf4_dequant_bf16_avx2(const uint8_t *codes, float scale, int64_t start, int64_t n, uint16_t *out);
#endif

#if defined(__aarch64__)
int64_t qst_nf4_absmax_neon(const float *x, int64_t len, float *absmax_out);
void qst_nf4_quantize_block_neon(const float *x, int64_t len, float recip, uint8_t *out);
void qst_nf4_dequant_f32_neon(const uint8_t *codes, float scale, int64_t start, int64_t n, float *out);
void qst_nf4_dequant_bf16_neon(const uint8_t *codes, float scale, int64_t start, int64_t n, uint16_t *out);
void qst_nf4_block_errors_neon(const float *x, const float *w, int64_t n, const float *scales, int64_t count,
                               double *errors);
#endif
#endif
