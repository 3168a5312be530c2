#ifndef QST_KV_HALF_H
#define QST_KV_HALF_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A decoding cache of keys and values in IEEE binary16: half the bytes of float32, and a batched server's
/// decode attention reads every request's cache once per step, at memory speed. Uses the vecmath.h paths
/// (qst_vec_path); the AVX2 path also needs F16C (without it, that path runs the scalar loops).
///
/// Layout. Values by token, v[j*ldv + d]. Keys of one key/value head in tiles of 16 tokens, each tile `hd`
/// rows of 16 lanes: key j's element d at kt[((j / 16) * hd + d) * 16 + j % 16], so one decode step reads
/// each tile as one contiguous run and scores 16 keys per vector without a horizontal sum.

/// Halves needed for the key tiles of `n` tokens of one head.
int64_t qst_f16_key_tile_halves(int64_t n, int64_t hd);

/// dst[r*ldd + c] = binary16 of src[r*lds + c] for r < rows, c < cols: round to nearest, ties to even; from
/// 65520 up ±Inf; a NaN stays a quiet NaN with its payload's top bits. Every path gives these bits.
int qst_f16_from_f32(uint16_t *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t cols,
                     int path);

/// dst[r*ldd + c] = float32 of src[r*lds + c] (exact; a NaN comes out quiet). Every path gives these bits.
int qst_f32_from_f16(float *dst, int64_t ldd, const uint16_t *src, int64_t lds, int64_t rows, int64_t cols,
                     int path);

/// Stores the keys of tokens first ..< first + rows (k[r*ldk + d], d < hd) into key tiles, rounded as
/// qst_f16_from_f32 rounds.
void qst_f16_key_tiles_store(uint16_t *kt, int64_t hd, int64_t first, const float *k, int64_t ldk, int64_t rows);

/// The keys of tokens 0 ..< rows widened to float32 and transposed: dst[d*ldd + j] = key j's element d
/// (exact; each tile row is one contiguous conversion). Returns 0, or -1 if `path` cannot run here.
int qst_f16_key_tiles_widen(float *dst, int64_t ldd, const uint16_t *kt, int64_t hd, int64_t rows, int path);

/// One decode step's attention for the `group` query heads that share one key/value head (GQA), over n
/// cached keys (tiles `kt`) and values (`v`, by token, stride ldv). Query head g is q[g*hd ..], its output
/// out[g*hd ..]:
///   s_gj = fma(q[g*hd + d] * scale, key(j, d), s) over d in order, from 0
///   p_gj = exp(s_gj - max_g) over the keys with mask[j] != 0 (all when mask is NULL), by qst_exp_from_max
///   out[g*hd + d] = (fma(p_gj, value(j, d), acc) over j in order, from 0) * (1 / sum_j p_gj)
///   (zeros when every key is masked)
/// Each path is deterministic (a head's output depends only on its own inputs); paths agree to float
/// rounding (their exponentials differ, vecmath.h). hd <= 256; `scratch` holds group * n floats. Returns 0, or -1 if `path` cannot run here,
/// n < 1, group < 1 or hd is not in 1...256.
int qst_decode_attention_f16(float *out, const float *q, int64_t group, const uint16_t *kt, const uint16_t *v,
                             int64_t ldv, int64_t n, int64_t hd, float scale, const uint8_t *mask, float *scratch,
                             int path);

#ifdef __cplusplus
}
#endif
#endif
