#ifndef QST_DECODE_ATTENTION_H
#define QST_DECODE_ATTENTION_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// One query row of the frozen model's cached attention for one head (a decode step), over keys and
/// values stored by token, k[j*ld + d] and v[j*ld + d] for j < n, d < hd:
///   s_j    = sum over d of (q[d] * scale) * k[j*ld + d]: per 16 consecutive d a multiply and an add per
///            lane, the 16 lanes then added as a fixed tree (8 + 8, 4 + 4, 2 + 2, 1 + 1), the d beyond the
///            last multiple of 16 added in order
///   p_j    = exp(s_j - max) / sum_j exp(...)   over the keys with mask[j] != 0 (all when mask is NULL),
///            by qst_exp_from_max on the same path
///   out[d] = (sum over j in order of p_j * v[j*ld + d]) * (1 / sum)   (zeros when every key is masked)
/// hd <= 256. `scratch` holds n floats. The paths agree to float rounding (the exponentials are vecmath.h's).
/// Uses the vecmath.h paths (qst_vec_path); returns 0, or -1 if `path` cannot run here, n < 1 or hd > 256.
int qst_decode_attention(float *out, const float *q, const float *k, const float *v, int64_t ld, int64_t n,
                         int64_t hd, float scale, const uint8_t *mask, float *scratch, int path);

#ifdef __cplusplus
}
#endif
#endif
