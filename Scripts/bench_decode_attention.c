// One decode step's attention per request and layer on SmolLM2-135M's shape (9 query heads, 3 key/value heads of
// 64), over many requests' caches so they stream from memory as in a batched server step: the float32 cache with
// two OpenBLAS products and a softmax per query head (what the engine ran before the float16 cache), against the
// float16 cache with qst_decode_attention_f16 per key/value head. Prints the median of the repeats per call.
//   bench_decode_attention POSITIONS [CACHES [REPEATS]]
#include "QSTKernels.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const int L = argc > 1 ? atoi(argv[1]) : 150, C = argc > 2 ? atoi(argv[2]) : 240;
    const int R = argc > 3 ? atoi(argv[3]) : 7, H = 9, KV = 3, hd = 64, kvd = KV * hd, group = H / KV;
    if (L < 1 || C < 1 || R < 1 || R > 64) { fprintf(stderr, "bench_decode_attention: bad arguments\n"); return 2; }
    const int64_t tiles = qst_f16_key_tile_halves(L, hd);
    float *kf = malloc((size_t)C * L * kvd * sizeof(float)), *vf = malloc((size_t)C * L * kvd * sizeof(float));
    uint16_t *kt = malloc((size_t)C * KV * tiles * 2), *vh = malloc((size_t)C * L * kvd * 2);
    for (long i = 0; i < (long)C * L * kvd; i++) {
        kf[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        vf[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    }
    for (int c = 0; c < C; c++) {
        for (int h = 0; h < KV; h++)
            qst_f16_key_tiles_store(kt + ((long)c * KV + h) * tiles, hd, 0, kf + (long)c * L * kvd + h * hd, kvd, L);
        qst_f16_from_f32(vh + (long)c * L * kvd, kvd, vf + (long)c * L * kvd, kvd, L, kvd, QST_VEC_AUTO);
    }
    float q[9 * 64], out[9 * 64], *sc = malloc((size_t)group * L * sizeof(float));
    for (int i = 0; i < H * hd; i++) q[i] = (float)rand() / (float)RAND_MAX;
    const float scale = 0.125f;
    double t32[64], t16[64];
    for (int r = 0; r < R; r++) {
        const double t0 = now();
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++) {
                const float *K = kf + (long)c * L * kvd + h / group * hd, *V = vf + (long)c * L * kvd + h / group * hd;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, L, hd, scale, q + h * hd, H * hd, K, kvd, 0,
                            sc, L);
                qst_softmax_inplace(sc, L, QST_VEC_AUTO);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, hd, L, 1, sc, L, V, kvd, 0, out + h * hd,
                            H * hd);
            }
        const double t1 = now();
        for (int c = 0; c < C; c++)
            for (int g = 0; g < KV; g++)
                qst_decode_attention_f16(out + g * group * hd, q + g * group * hd, group,
                                         kt + ((long)c * KV + g) * tiles, vh + (long)c * L * kvd + g * hd, kvd, L, hd,
                                         scale, NULL, sc, QST_VEC_AUTO);
        const double t2 = now();
        t32[r] = (t1 - t0) / C * 1e6;
        t16[r] = (t2 - t1) / C * 1e6;
    }
    qsort(t32, (size_t)R, sizeof(double), by_value);
    qsort(t16, (size_t)R, sizeof(double), by_value);
    printf("positions %d, %d caches (%.1f MB float32, %.1f MB float16), %s path, median of %d:\n", L, C,
           (double)C * L * kvd * 8 / 1e6, (double)C * L * kvd * 4 / 1e6, qst_vec_path_name(qst_vec_best_path()), R);
    printf("  float32 cache, OpenBLAS   %7.2f us per request and layer\n", t32[R / 2]);
    printf("  float16 cache, kv_half.h  %7.2f us per request and layer  (%.2fx)\n", t16[R / 2], t32[R / 2] / t16[R / 2]);
    return 0;
}
