// Scripts/bench-side-stream's harness: the products of SIDES SmolLM2 side networks (r = 8, adapter
// downsampler) for one decode token each, layer by layer as a batched server step runs them, with the
// cache cleared between tokens as the base's weight stream clears it. One thread, CPU time; microseconds
// per side network and token, median of REPEATS:
//   blas       OpenBLAS sgemv on row-major matrices, each allocated on its own (the tensor buffer's case)
//   scattered  small_gemv on transposed matrices, each allocated on its own
//   packed     small_gemv on one buffer per side network in visiting order, 2 MB pages (SideInferenceWeights)
//   warm       the same as blas / packed for one side network repeated (weights in cache)
//
//   bench_side_stream SIDES REPEATS
#include "QSTKernels.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { L = 30, NM = 9, MAXS = 64 };
// (in, out) of one layer's products in visiting order: adapter A, B; q, k, v, o; gate, up, down.
static const int shape[NM][2] = {{576, 16}, {16, 72}, {72, 72}, {72, 24}, {72, 24}, {72, 72}, {72, 192}, {72, 192}, {192, 72}};

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static float frand(void) { return (float)rand() / (float)RAND_MAX - 0.5f; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static float *row_major[MAXS][L][NM], *scattered[MAXS][L][NM], *packed[MAXS][L][NM];
static float x[576], y[576];
static char *junk;
static const size_t junk_bytes = 100u << 20;

// mode 0: blas, 1: scattered, 2: packed. Returns µs per side network and token.
static double token(int mode, int sides) {
    memset(junk, rand(), junk_bytes);
    const double t0 = cpu_now();
    for (int l = 0; l < L; l++)
        for (int s = 0; s < sides; s++)
            for (int m = 0; m < NM; m++) {
                const int in = shape[m][0], out = shape[m][1];
                if (mode == 0) cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1, row_major[s][l][m], in, x, 1, 0, y, 1);
                else qst_small_gemv(y, out, x, in, 1, mode == 1 ? scattered[s][l][m] : packed[s][l][m],
                                    qst_small_gemv_ld(out), in, out, NULL, 0, QST_VEC_AUTO);
            }
    return (cpu_now() - t0) / sides * 1e6;
}

static double warm(int mode) {
    const double t0 = cpu_now();
    for (int r = 0; r < 100; r++)
        for (int l = 0; l < L; l++)
            for (int m = 0; m < NM; m++) {
                const int in = shape[m][0], out = shape[m][1];
                if (mode == 0) cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1, row_major[0][l][m], in, x, 1, 0, y, 1);
                else qst_small_gemv(y, out, x, in, 1, packed[0][l][m], qst_small_gemv_ld(out), in, out, NULL, 0, QST_VEC_AUTO);
            }
    return (cpu_now() - t0) / 100 * 1e6;
}

int main(int argc, char **argv) {
    const int sides = argc > 1 ? atoi(argv[1]) : 8, repeats = argc > 2 ? atoi(argv[2]) : 9;
    if (sides < 1 || sides > MAXS || repeats < 1) { fprintf(stderr, "usage: bench_side_stream SIDES(1-64) REPEATS\n"); return 2; }
    size_t per_side = 0;
    for (int m = 0; m < NM; m++) per_side += (size_t)shape[m][0] * (size_t)qst_small_gemv_ld(shape[m][1]);
    per_side *= L;
    const size_t page = 2u << 20, bytes = (per_side * sizeof(float) + page - 1) / page * page;
    for (int s = 0; s < sides; s++) {
        float *buf = aligned_alloc(page, bytes);
        madvise(buf, bytes, MADV_HUGEPAGE);
        float *p = buf;
        for (int l = 0; l < L; l++)
            for (int m = 0; m < NM; m++) {
                const int in = shape[m][0], out = shape[m][1];
                float *w = malloc(sizeof(float) * in * out);
                for (int i = 0; i < in * out; i++) w[i] = frand();
                row_major[s][l][m] = w;
                scattered[s][l][m] = malloc(sizeof(float) * in * qst_small_gemv_ld(out));
                qst_small_gemv_pack(scattered[s][l][m], w, in, out);
                packed[s][l][m] = p;
                qst_small_gemv_pack(p, w, in, out);
                p += in * qst_small_gemv_ld(out);
            }
    }
    for (int i = 0; i < 576; i++) x[i] = frand();
    junk = malloc(junk_bytes);
    const char *names[3] = {"blas", "scattered", "packed"};
    double t[3][64];
    const int n = repeats < 64 ? repeats : 64;
    for (int r = 0; r < n; r++)
        for (int mode = 0; mode < 3; mode++) t[mode][r] = token(mode, sides);
    printf("%d side networks, %.1f MB of weights each; µs per side network and token (median of %d):\n", sides,
           per_side * 4.0 / 1e6, n);
    for (int mode = 0; mode < 3; mode++) {
        qsort(t[mode], (size_t)n, sizeof(double), cmp);
        printf("  %-10s %8.1f\n", names[mode], t[mode][n / 2]);
    }
    printf("  warm blas  %8.1f\n  warm packed%8.1f\n", warm(0), warm(2));
    return 0;
}
