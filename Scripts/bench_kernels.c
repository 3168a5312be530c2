// Standalone benchmark of the QSTKernels matmul paths on SmolLM2-135M shapes, next to
// OpenBLAS cblas_sgemm in the same process. Built and run by Scripts/bench-kernels.
//
//   bench_kernels [--repeats N] [--blas-only] [--quick]
//
// Each measurement starts T threads once; every thread loops over its column range
// [n0, n1) (the split QSTCore's Parallel.forRanges makes) with a barrier around the timed
// calls. For one-row (generation) shapes the weights rotate over enough copies to exceed
// the L3 cache, so the numbers are memory-bound like a real token step.
#include "cpu.h"
#include "matmul.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);
char *openblas_get_corename(void);

typedef struct { int k, n; const char *name; } shape_t;
static const shape_t shapes[] = {
    {576, 576, "q/o 576->576"}, {576, 192, "k/v 576->192"}, {576, 1536, "gate/up 576->1536"},
    {1536, 576, "down 1536->576"}, {576, 49152, "head 576->49152"},
};
enum { NSHAPES = 5, LAYERS = 30 };
// Per layer: q, k, v, o, gate, up, down.
static const int layer_uses[NSHAPES] = {2, 2, 2, 1, 0};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float frand(void) { return ((float)(rnd() & 0xFFFFFF) / 16777216.0f) * 2.0f - 1.0f; }
static uint16_t to_bf16(float f) { uint32_t u; memcpy(&u, &f, 4); u += 0x7FFF + ((u >> 16) & 1); return (uint16_t)(u >> 16); }

typedef struct {
    int copies;
    qst_weight *w;      // one per copy (NF4 / BF16 / F32 variants share the random values)
} weights_t;

static weights_t make_weights(qst_weight_type type, int n, int k, int copies) {
    weights_t r = {copies, calloc((size_t)copies, sizeof(qst_weight))};
    size_t count = (size_t)n * (size_t)k;
    for (int c = 0; c < copies; c++) {
        qst_weight w = {.type = type, .block = 64, .n = n, .k = k, .ld = k};
        if (type == QST_WEIGHT_NF4) {
            uint8_t *codes = malloc(count / 2);
            float *absmax = malloc(count / 64 * sizeof(float));
            for (size_t i = 0; i < count / 2; i++) codes[i] = (uint8_t)rnd();
            for (size_t i = 0; i < count / 64; i++) absmax[i] = 0.02f + 0.05f * fabsf(frand());
            w.data = codes; w.absmax = absmax;
        } else if (type == QST_WEIGHT_BF16) {
            uint16_t *d = malloc(count * 2);
            for (size_t i = 0; i < count; i++) d[i] = to_bf16(0.05f * frand());
            w.data = d;
        } else {
            float *d = malloc(count * 4);
            for (size_t i = 0; i < count; i++) d[i] = 0.05f * frand();
            w.data = d;
        }
        r.w[c] = w;
    }
    return r;
}

static void free_weights(weights_t *w) {
    for (int c = 0; c < w->copies; c++) { free((void *)w->w[c].data); free((void *)w->w[c].absmax); }
    free(w->w);
}

static size_t weight_bytes(const qst_weight *w) {
    size_t count = (size_t)w->n * (size_t)w->k;
    if (w->type == QST_WEIGHT_NF4) return count / 2 + count / (size_t)w->block * 4;
    return count * (w->type == QST_WEIGHT_BF16 ? 2 : 4);
}

// ---- threaded timing ----
typedef struct {
    const weights_t *w; const float *x; float *y; int m, iters, tid, threads;
    qst_kernel kernel; qst_shape shape; int use_blas; pthread_barrier_t *bar; int status;
    double cpu; // seconds this thread spent on the CPU during the timed calls
    double start, end; // wall clock around this thread's timed calls
} job_t;

static void *worker(void *arg) {
    job_t *j = arg;
    const qst_weight *w0 = &j->w->w[0];
    int64_t n = w0->n, chunk = (n + j->threads - 1) / j->threads;
    int64_t n0 = j->tid * chunk, n1 = n0 + chunk < n ? n0 + chunk : n;
    pthread_barrier_wait(j->bar);
    struct timespec c0, c1;
    j->start = now();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    for (int it = 0; it < j->iters; it++) {
        const qst_weight *w = &j->w->w[it % j->w->copies];
        if (j->use_blas) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->m, (int)(n1 - n0), (int)w->k, 1.0f, j->x,
                        (int)w->k, (const float *)w->data + n0 * w->k, (int)w->k, 0.0f, j->y + n0, (int)n);
        } else {
            int s = qst_matmul_ex(j->x, j->m, w->k, w, j->y, n, n0, n1, j->kernel, j->shape);
            if (s != 0) j->status = s;
        }
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    j->end = now();
    j->cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
    pthread_barrier_wait(j->bar);
    return NULL;
}

// Seconds per call: runs `iters` calls on `threads` threads, returns wall time / iters.
// *cpu receives the busiest thread's CPU time / iters: what the call costs when the
// shared cores are not taken by other processes (wall time is inflated by preemption).
static double timed(const weights_t *w, const float *x, float *y, int m, int threads, int iters,
                    qst_kernel kernel, qst_shape shape, int use_blas, int *status, double *cpu) {
    pthread_t th[8]; job_t jobs[8]; pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job_t){w, x, y, m, iters, t, threads, kernel, shape, use_blas, &bar, 0};
        pthread_create(&th[t], NULL, worker, &jobs[t]);
    }
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    // Wall time from the workers' own clocks: the main thread may wake late from a barrier.
    double t0 = jobs[0].start, t1 = jobs[0].end;
    for (int t = 1; t < threads; t++) {
        if (jobs[t].start < t0) t0 = jobs[t].start;
        if (jobs[t].end > t1) t1 = jobs[t].end;
    }
    *cpu = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        if (jobs[t].status) *status = jobs[t].status;
        if (jobs[t].cpu / iters > *cpu) *cpu = jobs[t].cpu / iters;
    }
    pthread_barrier_destroy(&bar);
    return (t1 - t0) / iters;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct { double min, median, cpu_min; } stat_t;

static stat_t measure(const weights_t *w, const float *x, float *y, int m, int threads, int repeats,
                      qst_kernel kernel, qst_shape shape, int use_blas, int *status) {
    if (use_blas) openblas_set_num_threads(1); // our threads split the columns, as the engine does
    double cpu, cpu_min = 1e30;
    double one = timed(w, x, y, m, threads, 1, kernel, shape, use_blas, status, &cpu); // warm-up + calibration
    one = cpu < one ? cpu : one;
    int iters = (int)(0.02 / (one > 1e-7 ? one : 1e-7));
    if (iters < 1) iters = 1;
    if (iters > 20000) iters = 20000;
    double t[32];
    for (int r = 0; r < repeats && r < 32; r++) {
        t[r] = timed(w, x, y, m, threads, iters, kernel, shape, use_blas, status, &cpu);
        if (cpu < cpu_min) cpu_min = cpu;
    }
    qsort(t, (size_t)repeats, sizeof(double), cmp_double);
    return (stat_t){t[0], t[repeats / 2], cpu_min};
}


// ---- accuracy against a double-precision reference on the dequantized weights ----
static void dequant_row(const qst_weight *w, int64_t r, double *out) {
    float tmp[2048];
    if (w->type == QST_WEIGHT_NF4) {
        qst_mm_nf4_dequantize(w->data, w->absmax, w->block, r * w->k, w->k, tmp);
        for (int64_t i = 0; i < w->k; i++) out[i] = tmp[i];
    } else if (w->type == QST_WEIGHT_BF16) {
        for (int64_t i = 0; i < w->k; i++) {
            uint32_t u = (uint32_t)((const uint16_t *)w->data)[r * w->ld + i] << 16; float f; memcpy(&f, &u, 4); out[i] = f;
        }
    } else {
        for (int64_t i = 0; i < w->k; i++) out[i] = ((const float *)w->data)[r * w->ld + i];
    }
}

static void accuracy(void) {
    const char *tname[] = {"f32", "bf16", "nf4"};
    const int kinds[] = {QST_KERNEL_AUTO, QST_KERNEL_EXACT, QST_KERNEL_SCALAR, QST_KERNEL_AVX512, QST_KERNEL_AVX512_BF16,
                         QST_KERNEL_AVX2, QST_KERNEL_AVX2_INT16};
    int ms[] = {1, 3, 64};
    printf("\n# accuracy vs double reference (K=576 N=576): rel_l2 = |y-ref|/|ref|, worst = max |y-ref| / sum|x*w|\n");
    for (int t = 0; t < 3; t++) {
        weights_t w = make_weights((qst_weight_type)t, 576, 576, 1);
        for (int mi = 0; mi < 3; mi++) {
            int m = ms[mi];
            float *x = malloc((size_t)m * 576 * 4), *y = malloc((size_t)m * 576 * 4);
            double *ref = malloc((size_t)m * 576 * 8), *bound = malloc((size_t)m * 576 * 8), row[576];
            for (int i = 0; i < m * 576; i++) x[i] = frand();
            for (int j = 0; j < 576; j++) {
                dequant_row(&w.w[0], j, row);
                for (int i = 0; i < m; i++) {
                    double s = 0, b = 0;
                    for (int e = 0; e < 576; e++) { s += (double)x[i * 576 + e] * row[e]; b += fabs((double)x[i * 576 + e] * row[e]); }
                    ref[i * 576 + j] = s; bound[i * 576 + j] = b;
                }
            }
            for (int ki = 2; ki < (int)(sizeof kinds / sizeof kinds[0]); ki++) {
                const int kk = kinds[ki];
                int status = qst_matmul(x, m, 576, &w.w[0], y, 576, 0, 576, (qst_kernel)kk);
                if (status != 0) { printf("%-5s m=%-3d %-12s unsupported (%d)\n", tname[t], m, qst_matmul_kernel_name(kk), status); continue; }
                double num = 0, den = 0, worst = 0;
                for (int i = 0; i < m * 576; i++) {
                    double d = y[i] - ref[i];
                    num += d * d; den += ref[i] * ref[i];
                    if (fabs(d) / bound[i] > worst) worst = fabs(d) / bound[i];
                }
                printf("%-5s m=%-3d %-12s rel_l2 %.2e  worst %.2e\n", tname[t], m, qst_matmul_kernel_name(kk), sqrt(num / den), worst);
            }
            free(x); free(y); free(ref); free(bound);
        }
        free_weights(&w);
    }
}

// ---- performance ----
enum { P_SCALAR, P_EXACT, P_BF16, P_AVX2, P_INT8, P_BLAS, NPATHS };
static const char *path_names[NPATHS] = {"scalar", "avx512-f32", "avx512-bf16", "avx2-f32", "avx2-int8", "sgemm"};
// best[m index][shape][weight type][path][threads-1]: seconds per call (min over repeats)
static double best[2][NSHAPES][3][NPATHS][2];
static int use_cpu_time = 0; // --cpu-time: estimates from CPU time instead of wall time

static int only_m = 0;
static int skip_scalar = 0; // --no-scalar
static int only_type = -1; // --type f32|bf16|nf4 // --m N: measure only M = N (512 or 1)

static void perf(int blas_only, int repeats) {
    const int mlist[2] = {512, 1};
    const char *tname[] = {"f32", "bf16", "nf4"};
    printf("\n# performance: ms per call, wall min / median of %d repeats and busiest thread's CPU time (min);\n"
           "# GFLOP/s and weight GB/s from wall min (cpu_* columns: from CPU time, immune to preemption by other processes)\n", repeats);
    printf("%-4s %-18s %-5s %-12s %-3s %9s %9s %9s %8s %7s %8s %7s\n", "M", "shape", "W", "path", "thr", "min_ms", "med_ms", "cpu_ms",
           "GFLOP/s", "GB/s", "cpuGFLOP", "cpuGB/s");
    for (int mi = 0; mi < 2; mi++) {
        int m = mlist[mi];
        if (only_m && m != only_m) continue;
        for (int s = 0; s < NSHAPES; s++) {
            int k = shapes[s].k, n = shapes[s].n;
            float *x = malloc((size_t)m * k * 4), *y = calloc((size_t)m * n, 4);
            for (int i = 0; i < m * k; i++) x[i] = frand();
            for (int t = blas_only ? 0 : 2; t >= 0; t--) {
                if (blas_only && t != 0) continue;
                if (only_type >= 0 && t != only_type && !blas_only) continue;
                qst_weight probe = {.type = (qst_weight_type)t, .block = 64, .n = n, .k = k, .ld = k};
                size_t bytes = weight_bytes(&probe);
                int copies = m == 1 ? (int)((160u << 20) / bytes + 1) : 1;
                weights_t w = make_weights((qst_weight_type)t, n, k, copies);
                for (int p = 0; p < NPATHS; p++) {
                    if (blas_only && p != P_BLAS) continue;
                    if (p == P_BLAS && t != QST_WEIGHT_F32) continue;
                    if (p == P_SCALAR && (m != 1 || skip_scalar)) continue;             // minutes per call at M=512
                    if (p == P_BF16 && m == 1 && t == QST_WEIGHT_F32) continue; // F32 GEMV stays exact
                    qst_kernel kern = p == P_SCALAR ? QST_KERNEL_SCALAR : p == P_BF16 ? QST_KERNEL_AVX512_BF16
                                    : p == P_AVX2 ? QST_KERNEL_AVX2 : p == P_INT8 ? QST_KERNEL_AVX2_INT16 : QST_KERNEL_AVX512;
                    if (p != P_BLAS && qst_matmul_resolve(&probe, m, kern, QST_SHAPE_AUTO) < 0) continue;
                    for (int th = 1; th <= 2; th++) {
                        int status = 0;
                        stat_t st = measure(&w, x, y, m, th, repeats, kern, QST_SHAPE_AUTO, p == P_BLAS, &status);
                        if (status) { printf("%-4d %-18s %-5s %-12s %-3d status %d\n", m, shapes[s].name, tname[t], path_names[p], th, status); continue; }
                        best[mi][s][t][p][th - 1] = use_cpu_time ? st.cpu_min : st.min;
                        double flops = 2.0 * m * k * n;
                        printf("%-4d %-18s %-5s %-12s %-3d %9.4f %9.4f %9.4f %8.1f %7.2f %8.1f %7.2f\n", m, shapes[s].name, tname[t],
                               path_names[p], th, st.min * 1e3, st.median * 1e3, st.cpu_min * 1e3, flops / st.min * 1e-9,
                               (double)bytes / st.min * 1e-9, flops / st.cpu_min * 1e-9, (double)bytes / st.cpu_min * 1e-9);
                        fflush(stdout);
                    }
                }
                free_weights(&w);
            }
            free(x); free(y);
        }
    }
}

// Whole-model estimate for SmolLM2-135M from the per-shape times (2 threads).
static void estimate(int blas_only) {
    printf("\n# SmolLM2-135M estimates from %s (2 threads, 30 layers; norms/rope/softmax not counted)\n",
           use_cpu_time ? "CPU time" : "wall min");
    // Causal attention at 512 tokens: QK^T and PV, 9 heads x 64, about half the square.
    const double attn_flops = LAYERS * 2.0 * 2.0 * 9 * 64 * (512.0 * 513.0 / 2.0);
    if (blas_only) {
        double layer = 0;
        for (int s = 0; s < 4; s++) layer += (layer_uses[s] + (s == 3 ? 0 : 0)) * best[0][s][0][P_BLAS][1];
        layer += best[0][3][0][P_BLAS][1]; // down
        double rate = 2.0 * 512 * 576 * 576 / best[0][0][0][P_BLAS][1];
        double total = LAYERS * layer + attn_flops / rate;
        printf("sgemm (f32 weights) pp512 ~ %.0f tok/s (attention at the 576x576 sgemm rate %.0f GFLOP/s)\n", 512 / total, rate * 1e-9);
        return;
    }
    for (int p = P_EXACT; p <= P_INT8; p++) {
        if (best[0][0][2][p][1] <= 0) continue; // path not measured (not on this CPU)
        double layer = 0;
        for (int s = 0; s < 4; s++) layer += layer_uses[s] * best[0][s][2][p][1];
        layer += best[0][3][2][p][1]; // down (1536->576) once
        double rate = 2.0 * 512 * 576 * 576 / best[0][0][2][p][1];
        double head = best[1][4][1][P_EXACT][1]; // logits for the last prompt token, faster BF16 GEMV
        if (best[1][4][1][P_BF16][1] > 0 && best[1][4][1][P_BF16][1] < head) head = best[1][4][1][P_BF16][1];
        double total = LAYERS * layer + attn_flops / rate + head;
        printf("pp512 NF4 %-12s ~ %6.0f tok/s (linear %.1f ms, attention ~%.1f ms at %.0f GFLOP/s, head %.2f ms)\n",
               path_names[p], 512 / total, LAYERS * layer * 1e3, attn_flops / rate * 1e3, rate * 1e-9, head * 1e3);
    }
    for (int lp = P_EXACT; lp <= P_INT8; lp++) {
        if (best[1][0][2][lp][1] <= 0) continue;
        double layer = 0;
        for (int s = 0; s < 4; s++) layer += layer_uses[s] * best[1][s][2][lp][1];
        layer += best[1][3][2][lp][1];
        for (int p = P_EXACT; p <= P_INT8; p++) {
            double head = best[1][4][1][p][1];
            if (head <= 0) continue;
            printf("tg NF4 GEMV %-12s + BF16 head %-12s ~ %6.0f tok/s (layers %.2f ms, head %.2f ms)\n", path_names[lp],
                   path_names[p], 1.0 / (LAYERS * layer + head), LAYERS * layer * 1e3, head * 1e3);
        }
    }
}

int main(int argc, char **argv) {
    int repeats = 5, blas_only = 0, skip_accuracy = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--blas-only")) blas_only = 1;
        else if (!strcmp(argv[i], "--cpu-time")) use_cpu_time = 1;
        else if (!strcmp(argv[i], "--m") && i + 1 < argc) only_m = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-accuracy")) skip_accuracy = 1;
        else if (!strcmp(argv[i], "--no-scalar")) skip_scalar = 1;
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            const char *t = argv[++i];
            only_type = !strcmp(t, "f32") ? 0 : !strcmp(t, "bf16") ? 1 : !strcmp(t, "nf4") ? 2 : -1;
        }
        else { fprintf(stderr, "usage: %s [--repeats N] [--blas-only] [--cpu-time] [--m 512|1] [--no-accuracy] [--no-scalar] [--type f32|bf16|nf4]\n", argv[0]); return 2; }
    }
    if (repeats < 1) repeats = 1;
    if (repeats > 31) repeats = 31;
    char feat[256];
    const char *core_env = getenv("OPENBLAS_CORETYPE");
    printf("cpu features: %s\nOPENBLAS_CORETYPE=%s, OpenBLAS core: %s\n", qst_cpu_describe(feat, sizeof feat),
           core_env ? core_env : "(unset)", openblas_get_corename());
    if (!blas_only && !skip_accuracy) accuracy();
    perf(blas_only, repeats);
    if (!only_m && only_type < 0) estimate(blas_only);
    return 0;
}
