// Memory read rate with 1..T threads: each thread sums its own 256 MiB buffer (64-bit integer adds, which the
// compiler vectorises without reassociating floats), 4 passes, timed together. What decoding's streaming kernels
// (the NF4 GEMV, the Q8 head) are compared with in BENCHMARKS.md §35. Usage: bench_bandwidth THREADS REPEATS
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define WORDS (32L << 20) // 256 MiB of uint64 per thread
#define PASSES 4

typedef struct { uint64_t *buf; uint64_t sum; } job;

static void *reader(void *arg) {
    job *j = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int p = 0; p < PASSES; p++) {
        // A compiler barrier: every pass reads the buffer again (without it gcc merges the passes).
        __asm__ __volatile__("" ::: "memory");
        for (long i = 0; i < WORDS; i += 4) { s0 += j->buf[i]; s1 += j->buf[i + 1]; s2 += j->buf[i + 2]; s3 += j->buf[i + 3]; }
    }
    j->sum = s0 + s1 + s2 + s3;
    return NULL;
}

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2, repeats = argc > 2 ? atoi(argv[2]) : 5;
    if (threads < 1 || threads > 64 || repeats < 1) { fprintf(stderr, "usage: bench_bandwidth THREADS REPEATS\n"); return 2; }
    job jobs[64];
    for (int t = 0; t < threads; t++) {
        jobs[t].buf = malloc(WORDS * sizeof(uint64_t));
        if (!jobs[t].buf) { fprintf(stderr, "bench_bandwidth: out of memory\n"); return 1; }
        for (long i = 0; i < WORDS; i++) jobs[t].buf[i] = (uint64_t)i; // touched: no zero-page reads
    }
    double rate[64];
    uint64_t check = 0;
    for (int r = 0; r < repeats; r++) {
        struct timespec a, b;
        pthread_t id[64];
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int t = 0; t < threads; t++) pthread_create(&id[t], NULL, reader, &jobs[t]);
        for (int t = 0; t < threads; t++) pthread_join(id[t], NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        const double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
        rate[r] = (double)threads * PASSES * WORDS * sizeof(uint64_t) / s / 1e9;
        for (int t = 0; t < threads; t++) check += jobs[t].sum;
    }
    qsort(rate, (size_t)repeats, sizeof rate[0], cmp);
    printf("{\"threads\": %d, \"repeats\": %d, \"medianGBps\": %.2f, \"minGBps\": %.2f, \"maxGBps\": %.2f, \"check\": %llu}\n",
           threads, repeats, rate[repeats / 2], rate[0], rate[repeats - 1], (unsigned long long)(check & 1));
    return 0;
}
