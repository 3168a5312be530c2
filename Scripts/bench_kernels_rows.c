// Few-row products as a batched decode step runs them (Scripts/bench-kernels-rows): one SmolLM2-135M
// layer's NF4 linears (block 64) and its Q8 output head, for m rows of x, on one thread (thread CPU
// time, best of 5, so other processes on the machine count little).
//
//   bench_kernels_rows M [M...]      (QST_BENCH_SHAPE=gemv|gemm forces the loops instead of the auto choice;
//                                     QST_BENCH_LAYERS=30 runs 30 such layers, each its own weights, and reports
//                                     the time per layer: 53 MB that stream from DRAM as in decoding, where one
//                                     layer's 1.8 MB stays in the L3 cache between repeats)
#include "QSTKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float uniform(void) { return (float)(rand() % 2001) / 1000.0f - 1.0f; }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s M [M...]\n", argv[0]); return 2; }
    // q, k, v, o, gate, up, down: [out, in]
    static const int shapes[7][2] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};
    const char *layers_env = getenv("QST_BENCH_LAYERS");
    const int layers = layers_env && atoi(layers_env) > 1 && atoi(layers_env) <= 64 ? atoi(layers_env) : 1;
    qst_weight *w = malloc(sizeof(qst_weight) * 7 * (size_t)layers);
    for (int s = 0; s < 7 * layers; s++) {
        const int n = shapes[s % 7][0], k = shapes[s % 7][1];
        uint8_t *codes = malloc((size_t)n * k / 2);
        float *absmax = malloc((size_t)n * k / 64 * sizeof(float));
        for (int i = 0; i < n * k / 2; i++) codes[i] = (uint8_t)rand();
        for (int i = 0; i < n * k / 64; i++) absmax[i] = 0.02f + 0.01f * uniform();
        w[s] = (qst_weight){.type = QST_WEIGHT_NF4, .block = 64, .n = n, .k = k, .ld = k, .data = codes, .absmax = absmax};
    }
    const int vocab = 49152, hk = 576;
    int8_t *q = malloc((size_t)vocab * hk);
    float *qs = malloc((size_t)vocab * hk / 64 * sizeof(float));
    for (size_t i = 0; i < (size_t)vocab * hk; i++) q[i] = (int8_t)(rand() % 255 - 127);
    for (int i = 0; i < vocab * hk / 64; i++) qs[i] = 0.05f;
    float *x = malloc(128 * 1536 * sizeof(float)), *y = malloc((size_t)128 * vocab * sizeof(float));
    for (int i = 0; i < 128 * 1536; i++) x[i] = uniform();
    const char *forced = getenv("QST_BENCH_SHAPE");
    const qst_shape shape = !forced ? QST_SHAPE_AUTO : forced[2] == 'm' && forced[3] == 'v' ? QST_SHAPE_GEMV : QST_SHAPE_GEMM;
    printf("%6s %12s %12s\n", "rows", "layer us", "q8 head us");
    for (int a = 1; a < argc; a++) {
        const int m = atoi(argv[a]);
        if (m < 1 || m > 128) { fprintf(stderr, "rows must be 1..128\n"); return 2; }
        double layer = 1e30, head = 1e30;
        for (int r = 0; r < 5; r++) {
            double t0 = cpu_now();
            const int reps = layers > 1 ? 3 : 50;
            for (int rep = 0; rep < reps; rep++)
                for (int s = 0; s < 7 * layers; s++)
                    if (qst_matmul_ex(x, m, w[s].k, &w[s], y, w[s].n, 0, w[s].n, QST_KERNEL_AUTO, shape)) return 1;
            double t = (cpu_now() - t0) / reps / layers;
            if (t < layer) layer = t;
            t0 = cpu_now();
            for (int rep = 0; rep < 4; rep++)
                if (qst_q8_gemv(x, m, hk, q, qs, hk, y, vocab, 0, vocab, QST_Q8_AUTO)) return 1;
            t = (cpu_now() - t0) / 4;
            if (t < head) head = t;
        }
        printf("%6d %12.1f %12.1f\n", m, layer * 1e6, head * 1e6);
    }
    return 0;
}
