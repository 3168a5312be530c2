// Worker pool with spin-then-sleep waiting and shared claiming of a loop's parts.
//
// One job at a time. The caller stores the job's fields, then publishes a new `state` word
// (generation << 32 | next part) with a release store. Every thread that sees the new
// generation, the caller included, claims parts with a compare-and-swap on `state` and runs
// them; the caller returns when `done` reaches the part count. A part is only ever run by the
// thread whose CAS took it, and a worker that wakes late (descheduled on a busy machine) finds
// every part taken and does nothing: the caller never waits for a worker that is not running,
// it runs the parts itself (the GCD behaviour this pool replaces, without its wake-up cost).
// A worker reading the fields of a newer job than the one it saw cannot claim anything: a job
// is only replaced once all its parts are claimed, and then the CAS on the old generation fails.
#define _GNU_SOURCE
#include "worker_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct qst_pool {
    int workers;
    int64_t spin_ns;
    pthread_t *threads;
    // The job, stored (relaxed) before `state` publishes its generation (release).
    _Atomic(qst_pool_task) task;
    _Atomic(void *) context;
    _Atomic int64_t count, chunk;
    _Atomic int parts;
    _Atomic uint64_t state; // generation << 32 | index of the next unclaimed part
    _Atomic int done;       // parts finished in the current job
    _Atomic int busy;       // a caller owns the pool
    _Atomic int stop;
    _Atomic int sleepers;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline uint32_t generation_of(uint64_t state) { return (uint32_t)(state >> 32); }

// Claims and runs parts of the job of generation `gen` until none is left.
static void run_parts(qst_pool *p, uint32_t gen) {
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        if (generation_of(s) != gen) return;
        const int part = (int)(uint32_t)s;
        const int parts = atomic_load_explicit(&p->parts, memory_order_relaxed);
        if (part >= parts) return;
        if (!atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel, memory_order_acquire))
            continue; // s now holds the current state
        const int64_t count = atomic_load_explicit(&p->count, memory_order_relaxed);
        const int64_t chunk = atomic_load_explicit(&p->chunk, memory_order_relaxed);
        const int64_t start = part * chunk;
        const int64_t end = start + chunk < count ? start + chunk : count;
        if (start < end)
            atomic_load_explicit(&p->task, memory_order_relaxed)(atomic_load_explicit(&p->context, memory_order_relaxed),
                                                                 start, end);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        s = atomic_load_explicit(&p->state, memory_order_acquire);
    }
}

// Polls until the generation moves past `seen` or the spin budget runs out; then sleeps.
static uint32_t wait_for_job(qst_pool *p, uint32_t seen) {
    uint32_t g = generation_of(atomic_load_explicit(&p->state, memory_order_acquire));
    if (g != seen) return g;
    const int64_t deadline = now_ns() + p->spin_ns;
    for (unsigned i = 1;; i++) {
        cpu_relax();
        g = generation_of(atomic_load_explicit(&p->state, memory_order_acquire));
        if (g != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) return g;
        if ((i & 127) == 0 && now_ns() > deadline) break;
        // On a machine with more runnable threads than cores, let the others run now and then.
        if ((i & 1023) == 0) sched_yield();
    }
    pthread_mutex_lock(&p->mutex);
    // sleepers is raised before the state is read again, and the caller publishes the state
    // before it reads sleepers (both sequentially consistent): one of the two sees the other.
    atomic_fetch_add(&p->sleepers, 1);
    while ((g = generation_of(atomic_load(&p->state))) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mutex);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mutex);
    return g;
}

static void *worker_main(void *raw) {
    qst_pool *p = raw;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load(&p->stop)) return NULL;
        run_parts(p, seen);
    }
}

qst_pool *qst_pool_create(int threads, int spin_microseconds) {
    if (threads < 2) return NULL;
    qst_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->workers = threads - 1;
    p->spin_ns = (int64_t)(spin_microseconds > 0 ? spin_microseconds : 0) * 1000;
    p->threads = calloc((size_t)p->workers, sizeof *p->threads);
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (!p->threads) { qst_pool_destroy(p); return NULL; }
    for (int i = 0; i < p->workers; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            p->workers = i; // join the ones that started
            qst_pool_destroy(p);
            return NULL;
        }
    }
    return p;
}

void qst_pool_destroy(qst_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mutex);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    for (int i = 0; i < p->workers && p->threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p);
}

int qst_pool_threads(const qst_pool *p) { return p ? p->workers + 1 : 1; }

int qst_pool_run(qst_pool *p, int64_t count, int parts, qst_pool_task task, void *context) {
    if (!p || count <= 0) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&p->busy, &expected, 1)) return 0;
    if (parts > p->workers + 1) parts = p->workers + 1;
    if (parts < 1) parts = 1;
    atomic_store_explicit(&p->task, task, memory_order_relaxed);
    atomic_store_explicit(&p->context, context, memory_order_relaxed);
    atomic_store_explicit(&p->count, count, memory_order_relaxed);
    atomic_store_explicit(&p->chunk, (count + parts - 1) / parts, memory_order_relaxed);
    atomic_store_explicit(&p->parts, parts, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    const uint32_t gen = generation_of(atomic_load_explicit(&p->state, memory_order_relaxed)) + 1;
    atomic_store(&p->state, (uint64_t)gen << 32); // sequentially consistent: publish, then read sleepers
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mutex);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mutex);
    }
    run_parts(p, gen);
    // Parts a worker claimed and still runs; yield now and then so it gets a core on a busy machine.
    for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < parts; i++) {
        if ((i & 1023) == 0) sched_yield(); else cpu_relax();
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
    return 1;
}
