/* elm_dataset: the one iterator over batches. It owns the order of an
 * epoch (identity or a permutation drawn from (seed, epoch) with libelm's
 * own generator, so the order is the same on every platform), padding or
 * dropping the last batch, splits and the prefetch worker. Samples come
 * from a source (lib/source.h) read one at a time by index; caller
 * sources (elm_source) are adapted here, streaming ones included. */
#include "source.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED_MAX 9007199254740992.0 /* 2^53: every integer up to it is exact */

/* Shared by a dataset and its split halves; freed with the last of them. */
typedef struct source_ref {
    atomic_int refs;
    elm__source_shape shape;
    /* Built-in sources: the vtable. */
    const elm__source_vt *vt;
    void *self;
    /* Caller sources: the callbacks, run one at a time under `lock`. */
    bool is_user;
    elm_source user;
    pthread_mutex_t lock;
} source_ref;

/* One batch built ahead by the prefetch worker, or staged from a streaming
 * source. Holds every channel the dataset has, whatever the caller asks. */
typedef struct batch_buf {
    size_t B;
    float *x;        /* (B, T, n_in) */
    float *target;   /* (B, T, n_target) or NULL */
    int32_t *labels; /* (B, n_label) or NULL */
    int64_t *lengths;/* (B) */
} batch_buf;

/* The prefetch worker: builds the batch at (epoch, pos, B, drop_last) into
 * `ahead` while the caller uses the previous one. */
typedef struct prefetch {
    pthread_t thread;
    bool running;      /* thread created */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool quit;
    bool job;          /* a request is pending or being worked on */
    bool done;         /* `ahead` holds the result of the request */
    /* The request. */
    uint64_t epoch;
    size_t pos, B;
    int drop_last;
    /* The result. */
    batch_buf ahead;
    size_t count;
    int rc;
    char msg[512];
} prefetch;

struct elm_dataset {
    source_ref *src;
    size_t N, T, n_in, n_target, n_label;
    size_t *index;  /* (N) source index of each sample of this view, or NULL: i */

    int shuffle, drop_last, prefetch_on;
    uint64_t seed;     /* as set; takes effect at the next epoch start */
    uint64_t key_seed; /* the seed of the current epoch, for sample keys */

    size_t *order;  /* (N) this epoch's order (positions into index) */
    size_t pos;     /* samples of `order` already returned; N = epoch over */
    uint64_t epoch;
    bool started;   /* an epoch's order is in `order` */

    /* Streaming sources: samples pulled but not yet returned (after a
     * failure, or when the caller's B was reached). */
    batch_buf stage;
    size_t staged;
    bool stream_end;

    prefetch pf;
};

/* ---- sources -------------------------------------------------------------- */

static void source_release(source_ref *s) {
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
    if (s->is_user) {
        if (s->user.free) s->user.free(s->user.user);
        pthread_mutex_destroy(&s->lock);
    } else if (s->vt->free) {
        s->vt->free(s->self);
    }
    free(s);
}

/* 64 random bits for (seed, epoch, source index i): the key sources draw
 * from. Domain constant ("key") apart from the order's. */
static uint64_t sample_key(uint64_t seed, uint64_t epoch, size_t i) {
    return elm__mix64(elm__mix64(elm__mix64(seed ^ 0x6b65790000000000ULL) ^ epoch) ^ (uint64_t)i);
}

/* Sample `i` of the source (a source index) into one row of a batch; the
 * row arrives zero-filled with *length = T. */
static int read_sample(const elm_dataset *ds, uint64_t epoch, size_t i, float *x, float *target,
                       int32_t *labels, int64_t *length) {
    source_ref *s = ds->src;
    int rc;
    if (s->is_user) {
        pthread_mutex_lock(&s->lock);
        rc = s->user.read(s->user.user, epoch, i, x, target, labels, length);
        pthread_mutex_unlock(&s->lock);
        if (rc)
            return elm__fail(rc < 0 ? rc : ELM_E_INVALID, "elm_dataset_next: the source's read() "
                             "failed on sample %zu with %d (%s)", i, rc, elm_strerror(rc));
    } else {
        rc = s->vt->read(s->self, i, sample_key(ds->key_seed, epoch, i), x, target, labels,
                         length);
        if (rc) return rc;
    }
    if (*length < 1 || (uint64_t)*length > (uint64_t)ds->T)
        return elm__fail(ELM_E_INVALID, "elm_dataset_next: %s source gave sample %zu length %lld, "
                         "outside [1, T = %zu]", s->is_user ? "the caller's" : s->vt->name, i,
                         (long long)*length, ds->T);
    return ELM_OK;
}

/* ---- creation ------------------------------------------------------------- */

/* a * b * c * elem bytes without overflow; false if it overflows. */
static bool bytes_ok(size_t a, size_t b, size_t c, size_t elem, size_t *out) {
    size_t n;
    return elm__mul_ok(a, b, &n) && elm__mul_ok(n, c, &n) && elm__mul_ok(n, elem, out);
}

static int check_shape(const char *fn, const elm__source_shape *sh, bool streaming) {
    if ((!streaming && sh->N == 0) || sh->T == 0 || sh->n_in == 0)
        return elm__fail(ELM_E_SHAPE, "%s: N = %zu, T = %zu, n_in = %zu must all be >= 1", fn,
                         sh->N, sh->T, sh->n_in);
    if (sh->n_label != 0 && sh->n_label != 1 && sh->n_label != sh->T)
        return elm__fail(ELM_E_SHAPE,
                         "%s: n_label = %zu must be 0, 1 (one per sample) or T = %zu (one per step)",
                         fn, sh->n_label, sh->T);
    size_t bytes;
    if (!bytes_ok(sh->N, sh->T, sh->n_in, sizeof(float), &bytes) ||
        !bytes_ok(sh->N, sh->T, sh->n_target, sizeof(float), &bytes) ||
        !bytes_ok(sh->N, sh->n_label, 1, sizeof(int32_t), &bytes) ||
        !bytes_ok(sh->N, 1, 1, sizeof(size_t), &bytes))
        return elm__fail(ELM_E_NOMEM, "%s: sizes overflow (N = %zu, T = %zu, n_in = %zu, "
                         "n_target = %zu, n_label = %zu)", fn, sh->N, sh->T, sh->n_in,
                         sh->n_target, sh->n_label);
    return ELM_OK;
}

/* A dataset viewing `src` (one reference taken on success). index (N) or
 * NULL is adopted. */
static int dataset_new(const char *fn, source_ref *src, size_t N, size_t *index,
                       elm_dataset **out) {
    elm_dataset *ds = calloc(1, sizeof *ds);
    size_t *order = N ? malloc(N * sizeof *order) : NULL;
    if (!ds || (N && !order)) {
        free(ds);
        free(order);
        free(index);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory for the order of %zu samples", fn, N);
    }
    ds->src = src;
    ds->N = N;
    ds->T = src->shape.T;
    ds->n_in = src->shape.n_in;
    ds->n_target = src->shape.n_target;
    ds->n_label = src->shape.n_label;
    ds->index = index;
    ds->order = order;
    ds->shuffle = 1;
    atomic_fetch_add(&src->refs, 1);
    *out = ds;
    return ELM_OK;
}

int elm__dataset_from_source(const char *fn, const elm__source_vt *vt, void *self,
                             elm__source_shape shape, elm_dataset **out) {
    int rc = check_shape(fn, &shape, false);
    source_ref *s = rc ? NULL : calloc(1, sizeof *s);
    if (!rc && !s) rc = elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    if (rc) {
        if (vt->free) vt->free(self);
        return rc;
    }
    atomic_init(&s->refs, 1);
    s->shape = shape;
    s->vt = vt;
    s->self = self;
    rc = dataset_new(fn, s, shape.N, NULL, out);
    source_release(s); /* the dataset's reference, or the last one on failure */
    return rc;
}

/* ---- caller arrays -------------------------------------------------------- */

typedef struct arrays {
    size_t T, n_in, n_target, n_label;
    const float *x;         /* (N, T, n_in) */
    const float *target;    /* (N, T, n_target) or NULL */
    const int32_t *labels;  /* (N, n_label) or NULL */
    const int64_t *lengths; /* (N) or NULL: all T */
} arrays;

static int arrays_read(void *self, size_t i, uint64_t key, float *x, float *target,
                       int32_t *labels, int64_t *length) {
    (void)key;
    const arrays *a = self;
    size_t sx = a->T * a->n_in, st = a->T * a->n_target;
    if (a->lengths) {
        /* Borrowed: checked at creation, but the caller may have changed it. */
        int64_t len = a->lengths[i];
        if (len < 1 || (uint64_t)len > (uint64_t)a->T)
            return elm__fail(ELM_E_INVALID,
                             "elm_dataset_next: lengths[%zu] = %lld is outside [1, T = %zu] (the "
                             "caller's array changed after elm_dataset_from_arrays)",
                             i, (long long)len, a->T);
        *length = len;
    }
    memcpy(x, a->x + i * sx, sx * sizeof *x);
    if (target) memcpy(target, a->target + i * st, st * sizeof *target);
    if (labels) memcpy(labels, a->labels + i * a->n_label, a->n_label * sizeof *labels);
    return ELM_OK;
}

static const elm__source_vt arrays_vt = {"arrays", arrays_read, free};

ELM_API int elm_dataset_from_arrays(size_t N, size_t T, size_t n_in, const float *x,
                                    const float *target, size_t n_target,
                                    const int32_t *labels, size_t n_label,
                                    const int64_t *lengths, elm_dataset **out) {
    static const char *fn = "elm_dataset_from_arrays";
    if (!out) return elm__fail(ELM_E_NULL, "%s: out is NULL", fn);
    if (!x) return elm__fail(ELM_E_NULL, "%s: x is NULL", fn);
    if ((target == NULL) != (n_target == 0))
        return elm__fail(ELM_E_INVALID,
                         target ? "%s: target given but n_target = %zu"
                                : "%s: target is NULL but n_target = %zu",
                         fn, n_target);
    if ((labels == NULL) != (n_label == 0))
        return elm__fail(ELM_E_INVALID,
                         labels ? "%s: labels given but n_label = %zu"
                                : "%s: labels is NULL but n_label = %zu",
                         fn, n_label);
    elm__source_shape sh = {N, T, n_in, n_target, n_label};
    int rc = check_shape(fn, &sh, false);
    if (rc) return rc;
    if (lengths)
        for (size_t i = 0; i < N; i++)
            if (lengths[i] < 1 || (uint64_t)lengths[i] > (uint64_t)T)
                return elm__fail(ELM_E_INVALID, "%s: lengths[%zu] = %lld is outside [1, T = %zu]",
                                 fn, i, (long long)lengths[i], T);
    arrays *a = malloc(sizeof *a);
    if (!a) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    *a = (arrays){T, n_in, n_target, n_label, x, target, labels, lengths};
    return elm__dataset_from_source(fn, &arrays_vt, a, sh, out);
}

/* ---- caller sources ------------------------------------------------------- */

ELM_API int elm_dataset_from_source(const elm_source *src, elm_dataset **out) {
    static const char *fn = "elm_dataset_from_source";
    if (!out) {
        if (src && src->free) src->free(src->user);
        return elm__fail(ELM_E_NULL, "%s: out is NULL", fn);
    }
    if (!src) return elm__fail(ELM_E_NULL, "%s: src is NULL", fn);
    int rc = ELM_OK;
    bool streaming = src->next != NULL;
    if (!src->read == !src->next)
        rc = elm__fail(ELM_E_INVALID, "%s: give exactly one of read (random access) and next "
                       "(streaming)", fn);
    elm__source_shape sh = {src->N, src->T, src->n_in, src->n_target, src->n_label};
    if (!rc) rc = check_shape(fn, &sh, streaming);
    source_ref *s = rc ? NULL : calloc(1, sizeof *s);
    if (!rc && !s) rc = elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    if (!rc && pthread_mutex_init(&s->lock, NULL)) {
        free(s);
        s = NULL;
        rc = elm__fail(ELM_E_NOMEM, "%s: cannot create a mutex", fn);
    }
    if (rc) {
        if (src->free) src->free(src->user);
        return rc;
    }
    atomic_init(&s->refs, 1);
    s->shape = sh;
    s->is_user = true;
    s->user = *src;
    rc = dataset_new(fn, s, sh.N, NULL, out);
    source_release(s);
    return rc;
}

static bool is_streaming(const elm_dataset *ds) {
    return ds->src->is_user && ds->src->user.next;
}

/* ---- order and epochs ----------------------------------------------------- */

/* The order of epoch `epoch` from the current settings: identity without
 * shuffling, else a Fisher-Yates permutation from a generator seeded by a
 * mix of (seed, epoch). A function of (N, shuffle, seed, epoch) only. */
static void compute_order(elm_dataset *ds, uint64_t epoch) {
    size_t N = ds->N;
    for (size_t i = 0; i < N; i++) ds->order[i] = i;
    if (ds->shuffle && N > 1) {
        elm_rng r;
        /* Domain constant ("dataset") so that a dataset seed does not
         * replay the stream of a model initialised from the same seed. */
        elm__rng_seed(&r, elm__mix64(elm__mix64(ds->seed ^ 0x6461746173657400ULL) ^ epoch));
        for (size_t i = N - 1; i > 0; i--) {
            size_t j = (size_t)elm__rng_below(&r, (uint64_t)i + 1);
            size_t t = ds->order[i];
            ds->order[i] = ds->order[j];
            ds->order[j] = t;
        }
    }
    ds->pos = 0;
    ds->epoch = epoch;
    ds->key_seed = ds->seed;
    ds->started = true;
}

static void prefetch_stop(elm_dataset *ds);
static void prefetch_cancel(elm_dataset *ds);

static int start_epoch(elm_dataset *ds, uint64_t epoch) {
    prefetch_cancel(ds);
    if (is_streaming(ds)) {
        source_ref *s = ds->src;
        int rc = ELM_OK;
        if (s->user.reset) {
            pthread_mutex_lock(&s->lock);
            rc = s->user.reset(s->user.user, epoch);
            pthread_mutex_unlock(&s->lock);
        }
        if (rc)
            return elm__fail(rc < 0 ? rc : ELM_E_INVALID,
                             "elm_dataset_start_epoch: the source's reset() failed with %d", rc);
        ds->staged = 0;
        ds->stream_end = false;
        ds->epoch = epoch;
        ds->pos = 0;
        ds->started = true;
        return ELM_OK;
    }
    compute_order(ds, epoch);
    return ELM_OK;
}

ELM_API void elm_dataset_free(elm_dataset *ds) {
    if (!ds) return;
    prefetch_stop(ds);
    source_release(ds->src);
    free(ds->stage.x);
    free(ds->stage.target);
    free(ds->stage.labels);
    free(ds->stage.lengths);
    free(ds->index);
    free(ds->order);
    free(ds);
}

ELM_API int elm_dataset_set(elm_dataset *ds, elm_dataset_option key, double value) {
    static const char *fn = "elm_dataset_set";
    if (!ds) return elm__fail(ELM_E_NULL, "%s: dataset is NULL", fn);
    const char *name;
    double hi;
    switch (key) {
    case ELM_DATASET_SHUFFLE: name = "shuffle"; hi = 1; break;
    case ELM_DATASET_SEED: name = "seed"; hi = SEED_MAX; break;
    case ELM_DATASET_DROP_LAST: name = "drop_last"; hi = 1; break;
    case ELM_DATASET_PREFETCH: name = "prefetch"; hi = 1; break;
    default: return elm__fail(ELM_E_UNKNOWN_NAME, "%s: unknown option %d", fn, (int)key);
    }
    if (!isfinite(value))
        return elm__fail(ELM_E_INVALID, "%s: %s must be finite", fn, name);
    if (value != floor(value))
        return elm__fail(ELM_E_INVALID, "%s: %s must be an integer, got %g", fn, name, value);
    if (value < 0 || value > hi)
        return elm__fail(ELM_E_INVALID, "%s: %s = %.17g is outside [0, %.17g]", fn, name, value,
                         hi);
    switch (key) {
    case ELM_DATASET_SHUFFLE: ds->shuffle = (int)value; break;
    case ELM_DATASET_SEED: ds->seed = (uint64_t)value; break;
    case ELM_DATASET_DROP_LAST: ds->drop_last = (int)value; break;
    default:
        ds->prefetch_on = (int)value;
        if (!ds->prefetch_on) prefetch_stop(ds);
        break;
    }
    return ELM_OK;
}

ELM_API int elm_dataset_get(const elm_dataset *ds, elm_dataset_option key, double *value) {
    if (!ds || !value) return elm__fail(ELM_E_NULL, "elm_dataset_get: NULL argument");
    switch (key) {
    case ELM_DATASET_SHUFFLE: *value = ds->shuffle; break;
    case ELM_DATASET_SEED: *value = (double)ds->seed; break;
    case ELM_DATASET_DROP_LAST: *value = ds->drop_last; break;
    case ELM_DATASET_PREFETCH: *value = ds->prefetch_on; break;
    default: return elm__fail(ELM_E_UNKNOWN_NAME, "elm_dataset_get: unknown option %d", (int)key);
    }
    return ELM_OK;
}

ELM_API int elm_dataset_size(const elm_dataset *ds, elm_dataset_dim what, size_t *value) {
    if (!ds || !value) return elm__fail(ELM_E_NULL, "elm_dataset_size: NULL argument");
    switch (what) {
    case ELM_DATASET_SAMPLES: *value = ds->N; break;
    case ELM_DATASET_STEPS: *value = ds->T; break;
    case ELM_DATASET_INPUTS: *value = ds->n_in; break;
    case ELM_DATASET_TARGETS: *value = ds->n_target; break;
    case ELM_DATASET_LABELS: *value = ds->n_label; break;
    default: return elm__fail(ELM_E_UNKNOWN_NAME, "elm_dataset_size: unknown dimension %d", (int)what);
    }
    return ELM_OK;
}

ELM_API int elm_dataset_start_epoch(elm_dataset *ds, uint64_t epoch) {
    if (!ds) return elm__fail(ELM_E_NULL, "elm_dataset_start_epoch: dataset is NULL");
    return start_epoch(ds, epoch);
}

/* ---- building batches ----------------------------------------------------- */

static void buf_free(batch_buf *b) {
    free(b->x);
    free(b->target);
    free(b->labels);
    free(b->lengths);
    memset(b, 0, sizeof *b);
}

/* Room for at least B samples with every channel of the dataset; grows
 * only, keeping the rows already there. */
static int buf_grow(const elm_dataset *ds, batch_buf *b, size_t B) {
    if (b->B >= B) return ELM_OK;
    size_t sx = ds->T * ds->n_in, st = ds->T * ds->n_target;
    float *x = realloc(b->x, B * sx * sizeof *x);
    if (x) b->x = x;
    float *tg = st ? realloc(b->target, B * st * sizeof *tg) : NULL;
    if (tg) b->target = tg;
    int32_t *lb = ds->n_label ? realloc(b->labels, B * ds->n_label * sizeof *lb) : NULL;
    if (lb) b->labels = lb;
    int64_t *len = realloc(b->lengths, B * sizeof *len);
    if (len) b->lengths = len;
    if (!x || (st && !tg) || (ds->n_label && !lb) || !len)
        return elm__fail(ELM_E_NOMEM, "elm_dataset_next: out of memory for a batch of %zu", B);
    b->B = B;
    return ELM_OK;
}

/* Rows [from, B) of a batch: zeros, label 0, length 0. */
static void pad_rows(const elm_dataset *ds, size_t from, size_t B, float *x, float *target,
                     int32_t *labels, int64_t *lengths) {
    size_t n = B - from, sx = ds->T * ds->n_in, st = ds->T * ds->n_target;
    if (!n) return;
    memset(x + from * sx, 0, n * sx * sizeof *x);
    if (target) memset(target + from * st, 0, n * st * sizeof *target);
    if (labels) memset(labels + from * ds->n_label, 0, n * ds->n_label * sizeof *labels);
    if (lengths) memset(lengths + from, 0, n * sizeof *lengths);
}

/* The batch of the random-access dataset at (epoch, pos) with B samples:
 * *count real samples, the rest padding. Reads positions order[pos ..];
 * changes nothing in ds. lengths must not be NULL. */
static int build_batch(const elm_dataset *ds, uint64_t epoch, size_t pos, size_t B,
                       int drop_last, float *x, float *target, int32_t *labels, int64_t *lengths,
                       size_t *count) {
    size_t left = ds->N - pos;
    size_t n = left < B ? left : B;
    if (n < B && drop_last) n = 0;
    size_t sx = ds->T * ds->n_in, st = ds->T * ds->n_target;
    pad_rows(ds, 0, B, x, target, labels, lengths);
    for (size_t b = 0; b < n; b++) {
        size_t i = ds->order[pos + b];
        if (ds->index) i = ds->index[i];
        lengths[b] = (int64_t)ds->T;
        int rc = read_sample(ds, epoch, i, x + b * sx, target ? target + b * st : NULL,
                             labels ? labels + b * ds->n_label : NULL, lengths + b);
        if (rc) return rc;
    }
    *count = n;
    return ELM_OK;
}

/* Copies the first B rows of `src` (all channels) into the caller's arrays. */
static void copy_out(const elm_dataset *ds, const batch_buf *src, size_t B, float *x,
                     float *target, int32_t *labels, int64_t *lengths) {
    size_t sx = ds->T * ds->n_in, st = ds->T * ds->n_target;
    memcpy(x, src->x, B * sx * sizeof *x);
    if (target) memcpy(target, src->target, B * st * sizeof *target);
    if (labels) memcpy(labels, src->labels, B * ds->n_label * sizeof *labels);
    if (lengths) memcpy(lengths, src->lengths, B * sizeof *lengths);
}

/* Drops the first n rows of the stage, moving the rest to the front. */
static void stage_shift(elm_dataset *ds, size_t n) {
    batch_buf *b = &ds->stage;
    size_t rest = ds->staged - n, sx = ds->T * ds->n_in, st = ds->T * ds->n_target;
    if (rest) {
        memmove(b->x, b->x + n * sx, rest * sx * sizeof *b->x);
        if (st) memmove(b->target, b->target + n * st, rest * st * sizeof *b->target);
        if (ds->n_label)
            memmove(b->labels, b->labels + n * ds->n_label, rest * ds->n_label * sizeof *b->labels);
        memmove(b->lengths, b->lengths + n, rest * sizeof *b->lengths);
    }
    ds->staged = rest;
}

/* Streaming: pull samples from the caller's next() into the stage until it
 * holds B or the epoch ends. Samples pulled before a failure stay staged
 * for the retry. */
static int stream_fill(elm_dataset *ds, size_t B) {
    int rc = buf_grow(ds, &ds->stage, B);
    if (rc) return rc;
    source_ref *s = ds->src;
    size_t sx = ds->T * ds->n_in, st = ds->T * ds->n_target;
    while (ds->staged < B && !ds->stream_end) {
        size_t b = ds->staged;
        float *x = ds->stage.x + b * sx;
        float *tg = ds->stage.target ? ds->stage.target + b * st : NULL;
        int32_t *lb = ds->stage.labels ? ds->stage.labels + b * ds->n_label : NULL;
        memset(x, 0, sx * sizeof *x);
        if (tg) memset(tg, 0, st * sizeof *tg);
        if (lb) memset(lb, 0, ds->n_label * sizeof *lb);
        ds->stage.lengths[b] = (int64_t)ds->T;
        pthread_mutex_lock(&s->lock);
        rc = s->user.next(s->user.user, x, tg, lb, ds->stage.lengths + b);
        pthread_mutex_unlock(&s->lock);
        if (rc == 1) {
            ds->stream_end = true;
            break;
        }
        if (rc)
            return elm__fail(rc < 0 ? rc : ELM_E_INVALID,
                             "elm_dataset_next: the source's next() failed with %d (%s)", rc,
                             elm_strerror(rc));
        int64_t len = ds->stage.lengths[b];
        if (len < 1 || (uint64_t)len > (uint64_t)ds->T)
            return elm__fail(ELM_E_INVALID, "elm_dataset_next: the caller's source gave length "
                             "%lld, outside [1, T = %zu]", (long long)len, ds->T);
        ds->staged++;
    }
    return ELM_OK;
}

static int stream_next(elm_dataset *ds, size_t B, float *x, float *target, int32_t *labels,
                       int64_t *lengths, size_t *count) {
    int rc = stream_fill(ds, B);
    if (rc) return rc;
    size_t n = ds->staged < B ? ds->staged : B;
    if (n < B && ds->drop_last) n = 0;
    if (n) copy_out(ds, &ds->stage, n, x, target, labels, lengths);
    pad_rows(ds, n, B, x, target, labels, lengths);
    stage_shift(ds, n == 0 ? ds->staged : n); /* n == 0: a dropped partial batch */
    ds->pos += n;
    *count = n;
    return ELM_OK;
}

/* ---- prefetch ------------------------------------------------------------- */

static void *prefetch_main(void *arg) {
    elm_dataset *ds = arg;
    prefetch *p = &ds->pf;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->quit && (!p->job || p->done)) pthread_cond_wait(&p->cond, &p->lock);
        if (p->quit) break;
        uint64_t epoch = p->epoch;
        size_t pos = p->pos, B = p->B;
        int drop = p->drop_last;
        pthread_mutex_unlock(&p->lock);
        /* ds->order and the source are not written while a job is out:
         * start_epoch and free wait for it (prefetch_cancel). */
        size_t count = 0;
        int rc = build_batch(ds, epoch, pos, B, drop, p->ahead.x, p->ahead.target,
                             p->ahead.labels, p->ahead.lengths, &count);
        pthread_mutex_lock(&p->lock);
        p->rc = rc;
        p->count = count;
        if (rc) snprintf(p->msg, sizeof p->msg, "%s", elm_last_error());
        p->done = true;
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Waits until no job is out; the result, if any, is discarded. */
static void prefetch_cancel(elm_dataset *ds) {
    prefetch *p = &ds->pf;
    if (!p->running) return;
    pthread_mutex_lock(&p->lock);
    while (p->job && !p->done) pthread_cond_wait(&p->cond, &p->lock);
    p->job = p->done = false;
    pthread_mutex_unlock(&p->lock);
}

static void prefetch_stop(elm_dataset *ds) {
    prefetch *p = &ds->pf;
    if (!p->running) return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    buf_free(&p->ahead);
    memset(p, 0, sizeof *p);
}

/* Starts the worker (once) with room for batches of B; no job is out
 * here. Failing is not an error: batches are then built on the caller's
 * thread. */
static bool prefetch_ready(elm_dataset *ds, size_t B) {
    prefetch *p = &ds->pf;
    if (buf_grow(ds, &p->ahead, B)) {
        elm__clear_error();
        return false;
    }
    if (p->running) return true;
    if (pthread_mutex_init(&p->lock, NULL)) goto fail_buf;
    if (pthread_cond_init(&p->cond, NULL)) goto fail_lock;
    if (pthread_create(&p->thread, NULL, prefetch_main, ds)) goto fail_cond;
    p->running = true;
    return true;
fail_cond:
    pthread_cond_destroy(&p->cond);
fail_lock:
    pthread_mutex_destroy(&p->lock);
fail_buf:
    buf_free(&p->ahead);
    return false;
}

static void prefetch_request(elm_dataset *ds, size_t pos, size_t B) {
    prefetch *p = &ds->pf;
    pthread_mutex_lock(&p->lock);
    p->epoch = ds->epoch;
    p->pos = pos;
    p->B = B;
    p->drop_last = ds->drop_last;
    p->job = true;
    p->done = false;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* The prefetched batch if it is the one asked for: waits for it, copies it
 * out and returns true (*rc its status). False: none matching (discarded). */
static bool prefetch_take(elm_dataset *ds, size_t B, float *x, float *target, int32_t *labels,
                          int64_t *lengths, size_t *count, int *rc) {
    prefetch *p = &ds->pf;
    if (!p->running) return false;
    pthread_mutex_lock(&p->lock);
    bool match = p->job && p->epoch == ds->epoch && p->pos == ds->pos && p->B == B &&
                 p->drop_last == ds->drop_last;
    while (p->job && !p->done) pthread_cond_wait(&p->cond, &p->lock);
    p->job = p->done = false;
    pthread_mutex_unlock(&p->lock);
    if (!match) return false;
    if (p->rc) {
        *rc = elm__fail(p->rc, "%s", p->msg);
        return true;
    }
    copy_out(ds, &p->ahead, B, x, target, labels, lengths);
    *count = p->count;
    *rc = ELM_OK;
    return true;
}

/* ---- next ----------------------------------------------------------------- */

ELM_API int elm_dataset_next(elm_dataset *ds, size_t B, float *x, float *target,
                             int32_t *labels, int64_t *lengths, size_t *count) {
    static const char *fn = "elm_dataset_next";
    if (!ds) return elm__fail(ELM_E_NULL, "%s: dataset is NULL", fn);
    if (!x) return elm__fail(ELM_E_NULL, "%s: x is NULL", fn);
    if (!count) return elm__fail(ELM_E_NULL, "%s: count is NULL", fn);
    if (B == 0) return elm__fail(ELM_E_INVALID, "%s: batch size B must be >= 1", fn);
    if (target && ds->n_target == 0)
        return elm__fail(ELM_E_INVALID, "%s: target requested but the dataset has none", fn);
    if (labels && ds->n_label == 0)
        return elm__fail(ELM_E_INVALID, "%s: labels requested but the dataset has none", fn);
    size_t bytes;
    if (!bytes_ok(B, ds->T, ds->n_in, sizeof(float), &bytes) ||
        !bytes_ok(B, ds->T, ds->n_target, sizeof(float), &bytes) ||
        !bytes_ok(B, ds->n_label, 1, sizeof(int32_t), &bytes) ||
        !bytes_ok(B, 1, 1, sizeof(int64_t), &bytes))
        return elm__fail(ELM_E_NOMEM, "%s: batch of B = %zu samples overflows the address space",
                         fn, B);

    /* next before any start_epoch: epoch 0. If this call fails, the
     * dataset stays unstarted (settings made afterwards still apply). */
    bool fresh = !ds->started;
    if (fresh) {
        int rc = start_epoch(ds, 0);
        if (rc) return rc;
    }
    if (is_streaming(ds)) {
        int rc = stream_next(ds, B, x, target, labels, lengths, count);
        if (rc && fresh && ds->staged == 0) ds->started = false;
        return rc;
    }

    size_t n = 0;
    int rc = ELM_OK;
    bool taken = ds->prefetch_on &&
                 prefetch_take(ds, B, x, target, labels, lengths, &n, &rc);
    if (!taken) {
        /* Build on this thread. Every channel is built (into the caller's
         * arrays where given) so a source never has to test for NULL
         * lengths; the copy of the worker's batch covers all channels. */
        int64_t *len = lengths;
        if (!len) {
            if ((rc = buf_grow(ds, &ds->stage, B))) return rc;
            len = ds->stage.lengths;
        }
        rc = build_batch(ds, ds->epoch, ds->pos, B, ds->drop_last, x, target, labels, len, &n);
    }
    if (rc) { /* nothing consumed: the same call can be retried */
        if (fresh) ds->started = false;
        return rc;
    }
    ds->pos = n == 0 ? ds->N : ds->pos + n;
    if (ds->prefetch_on && ds->pos < ds->N && prefetch_ready(ds, B))
        prefetch_request(ds, ds->pos, B);
    *count = n;
    return ELM_OK;
}

/* ---- splits --------------------------------------------------------------- */

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

ELM_API int elm_dataset_split(const elm_dataset *ds, size_t n_val, uint64_t seed,
                              elm_dataset **train, elm_dataset **val) {
    static const char *fn = "elm_dataset_split";
    if (!ds || !train || !val) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    if (is_streaming(ds))
        return elm__fail(ELM_E_UNSUPPORTED, "%s: a streaming source (elm_source.next) cannot be "
                         "split; give it a read() callback", fn);
    size_t N = ds->N;
    if (n_val < 1 || n_val >= N)
        return elm__fail(ELM_E_INVALID, "%s: n_val = %zu must be in [1, N - 1 = %zu]", fn, n_val,
                         N - 1);
    size_t *perm = malloc(N * sizeof *perm);
    size_t *vi = malloc(n_val * sizeof *vi);
    size_t *ti = malloc((N - n_val) * sizeof *ti);
    if (!perm || !vi || !ti) {
        free(perm);
        free(vi);
        free(ti);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    }
    /* Fisher-Yates from the split seed ("split" domain), then each half in
     * increasing index order so that it does not depend on N's history. */
    elm_rng r;
    elm__rng_seed(&r, elm__mix64(seed ^ 0x73706c6974000000ULL));
    for (size_t i = 0; i < N; i++) perm[i] = i;
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)elm__rng_below(&r, (uint64_t)i + 1);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    qsort(perm, n_val, sizeof *perm, cmp_size);
    qsort(perm + n_val, N - n_val, sizeof *perm, cmp_size);
    for (size_t i = 0; i < N; i++) {
        size_t k = ds->index ? ds->index[perm[i]] : perm[i];
        if (i < n_val) vi[i] = k;
        else ti[i - n_val] = k;
    }
    free(perm);
    elm_dataset *t = NULL, *v = NULL;
    int rc = dataset_new(fn, ds->src, N - n_val, ti, &t);
    if (rc) {
        free(vi);
        return rc;
    }
    if ((rc = dataset_new(fn, ds->src, n_val, vi, &v))) {
        elm_dataset_free(t);
        return rc;
    }
    for (int k = 0; k < 2; k++) {
        elm_dataset *h = k ? v : t;
        h->shuffle = ds->shuffle;
        h->drop_last = ds->drop_last;
        h->prefetch_on = ds->prefetch_on;
        h->seed = ds->seed;
    }
    *train = t;
    *val = v;
    return ELM_OK;
}
