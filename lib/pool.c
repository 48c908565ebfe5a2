/* Worker pool: see pool.h. A run publishes (fn, ctx) and bumps a generation
 * counter; workers notice the new generation (spinning briefly, then
 * sleeping on `start`), run their part and count `pending` down; the last
 * one wakes the caller if it went to sleep on `done`. The counter and the
 * count are C11 atomics (sequentially consistent), so the writes of a part
 * happen-before the caller's return from run. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ELM_PAUSE() _mm_pause()
#else
#define ELM_PAUSE() ((void)0)
#endif

/* Pause iterations before sleeping: some 10-100 us (a pause is ~10-65
 * cycles depending on the core), enough to catch the back-to-back runs of
 * a time loop without burning a shared core for long while the owner is
 * idle. */
#define ELM_POOL_SPIN 4000

struct worker {
    elm__pool *pool;
    int part;
    pthread_t th;
};

struct elm__pool {
    int n;
    struct worker *w; /* (n - 1) */
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    void (*fn)(void *, int, int);
    void *ctx;
    atomic_uint gen;
    atomic_int pending;
    atomic_int stop;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    elm__pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load(&p->gen);
        for (int i = 0; i < ELM_POOL_SPIN && g == seen; i++) {
            ELM_PAUSE();
            g = atomic_load(&p->gen);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->start, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        p->fn(p->ctx, w->part, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void stop_workers(elm__pool *p, int started) {
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++) pthread_join(p->w[i].th, NULL);
}

elm__pool *elm__pool_create(int n_threads) {
    if (n_threads < 1) return NULL;
    elm__pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1 && !(p->w = calloc((size_t)n_threads - 1, sizeof *p->w))) {
        free(p);
        return NULL;
    }
    if (pthread_mutex_init(&p->mu, NULL)) goto fail_mu;
    if (pthread_cond_init(&p->start, NULL)) goto fail_start;
    if (pthread_cond_init(&p->done, NULL)) goto fail_done;
    for (int i = 0; i < n_threads - 1; i++) {
        p->w[i].pool = p;
        p->w[i].part = i + 1;
        if (pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i])) {
            stop_workers(p, i);
            goto fail_threads;
        }
    }
    return p;
fail_threads:
    pthread_cond_destroy(&p->done);
fail_done:
    pthread_cond_destroy(&p->start);
fail_start:
    pthread_mutex_destroy(&p->mu);
fail_mu:
    free(p->w);
    free(p);
    return NULL;
}

void elm__pool_free(elm__pool *p) {
    if (!p) return;
    stop_workers(p, p->n - 1);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->start);
    pthread_mutex_destroy(&p->mu);
    free(p->w);
    free(p);
}

int elm__pool_threads(const elm__pool *p) { return p ? p->n : 0; }

void elm__pool_run(elm__pool *p, void (*fn)(void *ctx, int part, int n_parts), void *ctx) {
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n);
    for (int i = 0; i < ELM_POOL_SPIN && atomic_load(&p->pending) > 0; i++) ELM_PAUSE();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
