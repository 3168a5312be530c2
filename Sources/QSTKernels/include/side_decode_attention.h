#ifndef QST_SIDE_DECODE_ATTENTION_H
#define QST_SIDE_DECODE_ATTENTION_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// One query of the side network's cached attention (its heads are tiny: hd = 4–8), over keys and values
/// stored transposed per head, kt[d*ld + j] and vt[d*ld + j] for d < hd, j < n:
///   s_j   = sum over d in order of (q[d] * scale) * kt[d*ld + j]      (a multiply and an add per term)
///   p_j   = exp(s_j - max) / sum_j exp(...)   over the keys with mask[j] != 0 (all when mask is NULL),
///           by qst_exp_from_max on the same path
///   out[d] = sum_j p_j * vt[d*ld + j]   (zeros when every key is masked)
/// `scratch` holds n floats. The scores are exact in any order of j, so every path gives the same s_j;
/// the exponentials and the output sums agree across paths to float rounding (vecmath.h). Uses the
/// vecmath.h paths (qst_vec_path); returns 0, or -1 if `path` cannot run here or n < 1.
int qst_side_decode_attention(float *out, const float *q, const float *kt, const float *vt, int64_t ld, int64_t n,
                              int64_t hd, float scale, const uint8_t *mask, float *scratch, int path);

#ifdef __cplusplus
}
#endif
#endif
