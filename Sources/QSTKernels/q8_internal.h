// Private interface between the Q8 dispatcher (q8_gemv.c) and its vector kernels.
#ifndef QST_Q8_INTERNAL_H
#define QST_Q8_INTERNAL_H
#include "q8.h"

// Rows per pass of x: the AVX2 and NEON kernels hold MC x JR accumulators (JR = 4 weight rows for up
// to 4 rows of x, fewer beyond), the AVX-512 one MC accumulators of 16 weight rows. 8 rows: a server's
// batched decode step of 8 requests reads the 28 MB head of SmolLM2 once, not twice (BENCHMARKS.md §16).
// Every row's sums are formed in the same order whatever MC and JR, so a row of x gets the same bits alone
// or with others.
#define QST_Q8_ROWS_PER_PASS 8

// Every weight load also prefetches the head this many bytes further on (its rows are contiguous).
// The head (28 MB for SmolLM2) streams from DRAM at every decoded token; left to the hardware
// prefetchers alone, the same kernel took ~40 % more time in one build than in another that differed
// only in where unrelated code moved it (BENCHMARKS.md §26).
#define QST_Q8_PREFETCH_BYTES 8192

// Rounds mc rows of x (k elements, stride ldx) to int8 per contiguous 32-element group:
// xq[i*k + e], scale xs[i*(k/32) + g] = max|x of group g| / 127.
void qst_q8_quantize_x(const float *x, int64_t mc, int64_t ldx, int64_t k, int8_t *xq, float *xs);

// Kernels: arguments already validated (k % 64 == 0, 1 <= mc <= QST_Q8_ROWS_PER_PASS). y rows
// are written for n0 <= j < n1. Each returns 0, or -1 when not built for this architecture.
int qst_q8_rows_avx2(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,
                     int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1, int vnni);
// xq: the rows of x as x + 128 (unsigned bytes, the int8 values with the sign bit flipped), for
// vpdpbusd without a sign transfer per row.
int qst_q8_rows_avx512(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,
                       int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1);
int qst_q8_rows_neon(int mc, const int8_t *xq, const float *xs, const int8_t *q, const float *scales,
                     int64_t k, float *y, int64_t ldy, int64_t n0, int64_t n1, int dot);
#endif
