#ifndef QST_WORKER_POOL_H
#define QST_WORKER_POOL_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A fixed set of worker threads that wait for work by spinning for a short while before they sleep,
/// so a loop can be split over the cores for a few microseconds' cost instead of the tens of
/// microseconds a wake-up through the scheduler takes (decoding one token runs ~200 small products).
typedef struct qst_pool qst_pool;

/// Called on each worker (and the caller) with one contiguous range [start, end) of the loop.
typedef void (*qst_pool_task)(void *context, int64_t start, int64_t end);

/// A pool for `threads` threads in all: the caller plus threads - 1 workers. NULL if threads < 2
/// or a thread cannot be started. `spin_microseconds` is how long an idle worker polls before it
/// sleeps on a condition variable.
qst_pool *qst_pool_create(int threads, int spin_microseconds);

/// Stops and joins the workers. The pool must be idle.
void qst_pool_destroy(qst_pool *pool);

/// Threads the pool runs a loop on (caller included).
int qst_pool_threads(const qst_pool *pool);

/// Splits 0..<count into `parts` contiguous ranges (at most qst_pool_threads) and runs them, the
/// first on the calling thread; returns when all are done. Returns 0 without running anything when
/// the pool is in use (another thread's loop, or a loop started from inside a task): the caller
/// then runs the loop another way.
int qst_pool_run(qst_pool *pool, int64_t count, int parts, qst_pool_task task, void *context);

#ifdef __cplusplus
}
#endif
#endif
