/* A persistent worker pool owned by one object (a state, a tape).
 *
 * elm__pool_create(n) starts n - 1 worker threads; the caller of
 * elm__pool_run is the n-th. elm__pool_run(p, fn, ctx) calls
 * fn(ctx, part, n) for part = 0 .. n - 1, part 0 on the calling thread, and
 * returns when every part has returned. run neither allocates nor starts
 * threads: workers wait (a short spin, then a condition variable) between
 * runs. One run at a time per pool: run is not re-entrant and must not be
 * called concurrently on the same pool. Everything fn wrote is visible to
 * the caller when run returns. */
#ifndef ELM_POOL_H
#define ELM_POOL_H

typedef struct elm__pool elm__pool;

/* NULL if n_threads < 1 or a thread or allocation fails (nothing leaks). */
elm__pool *elm__pool_create(int n_threads);
/* Stops and joins the workers; NULL is a no-op. */
void elm__pool_free(elm__pool *p);
int elm__pool_threads(const elm__pool *p);
void elm__pool_run(elm__pool *p, void (*fn)(void *ctx, int part, int n_parts), void *ctx);

#endif
