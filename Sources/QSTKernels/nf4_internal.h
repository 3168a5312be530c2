// Private pieces shared by the NF4 codec paths (nf4.c, nf4_avx2.c, nf4_neon.c) and the scale
// search's block errors (nf4_block_errors*.c).
#ifndef QST_NF4_INTERNAL_H
#define QST_NF4_INTERNAL_H
#include <stdint.h>

// bitsandbytes' 16 code values, ascending.
extern const float qst_nf4_codes[16];
// Index 0 is a pad; [k] separates code k-1 from code k (x > t moves up).
extern const float qst_nf4_thresholds16[16];

// The code of a value, one per path. The tree in dQuantizeNF4 is a binary search over sorted
// thresholds with `x > t` tests, so it equals the number of thresholds below x; NaN fails every
// test and lands on code 0.
static inline unsigned qst_nf4_code_scalar(float v) {
    unsigned c = 0;
    for (int k = 1; k < 16; k++) c += v > qst_nf4_thresholds16[k];
    return c;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QST_NF4_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

// 16 lanes: branch-free binary search over the 15 thresholds with a 16-lane permute as the table
// (`thr` = qst_nf4_thresholds16 loaded).
QST_NF4_AVX512 static inline __m512i qst_nf4_codes16_avx512(__m512 v, __m512 thr) {
    __m512i c = _mm512_setzero_si512();
    for (int s = 8; s >= 1; s >>= 1) {
        __m512i step = _mm512_set1_epi32(s);
        __m512i idx = _mm512_add_epi32(c, step);
        __mmask16 gt = _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(idx, thr), _CMP_GT_OQ);
        c = _mm512_mask_add_epi32(c, gt, c, step);
    }
    return c;
}

// 8 lanes: 15 independent compares, each true lane subtracting -1.
__attribute__((target("avx2"))) static inline __m256i qst_nf4_codes8_avx2(__m256 v) {
    __m256i c = _mm256_setzero_si256();
    for (int k = 1; k < 16; k++) {
        __m256 gt = _mm256_cmp_ps(v, _mm256_set1_ps(qst_nf4_thresholds16[k]), _CMP_GT_OQ);
        c = _mm256_sub_epi32(c, _mm256_castps_si256(gt));
    }
    return c;
}
#endif

#if defined(__aarch64__)
#include <arm_neon.h>
// 4 lanes, as the AVX2 helper.
static inline uint32x4_t qst_nf4_codes4_neon(float32x4_t v) {
    uint32x4_t c = vdupq_n_u32(0);
    for (int k = 1; k < 16; k++) c = vsubq_u32(c, vcgtq_f32(v, vdupq_n_f32(qst_nf4_thresholds16[k])));
    return c;
}
#endif

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
