/* Datasets: batches read from caller arrays (borrowed, never copied), in
 * order or in a per-epoch permutation drawn from (seed, epoch) with
 * libelm's own generator, so that the order is the same on every platform.
 * The last partial batch is padded with zero samples of length 0, or
 * dropped. */
#include "elm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SEED_MAX 9007199254740992.0 /* 2^53: every integer up to it is exact */

struct elm_dataset {
    size_t N, T, n_in, n_target, n_label;
    const float *x;         /* (N, T, n_in) */
    const float *target;    /* (N, T, n_target) or NULL */
    const int32_t *labels;  /* (N, n_label) or NULL */
    const int64_t *lengths; /* (N) or NULL: all T */

    int shuffle, drop_last;
    uint64_t seed;

    size_t *order; /* (N) this epoch's sample order */
    size_t pos;    /* samples of `order` already returned; N = epoch over */
    bool started;  /* an epoch's order is in `order` */
};

/* The splitmix64 finaliser: a bijection of 64-bit words that spreads every
 * input bit over the whole output. */
static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The order of epoch `epoch` from the current settings: identity without
 * shuffling, else a Fisher-Yates permutation from a generator seeded by a
 * mix of (seed, epoch). A function of (N, shuffle, seed, epoch) only. */
static void compute_order(elm_dataset *ds, uint64_t epoch) {
    size_t N = ds->N;
    for (size_t i = 0; i < N; i++) ds->order[i] = i;
    if (ds->shuffle) {
        elm_rng r;
        /* Domain constant ("dataset") so that a dataset seed does not
         * replay the stream of a model initialised from the same seed. */
        elm__rng_seed(&r, mix64(mix64(ds->seed ^ 0x6461746173657400ULL) ^ epoch));
        for (size_t i = N - 1; i > 0; i--) {
            size_t j = (size_t)elm__rng_below(&r, (uint64_t)i + 1);
            size_t t = ds->order[i];
            ds->order[i] = ds->order[j];
            ds->order[j] = t;
        }
    }
    ds->pos = 0;
    ds->started = true;
}

/* a * b * c * elem bytes without overflow; false if it overflows. */
static bool bytes_ok(size_t a, size_t b, size_t c, size_t elem, size_t *out) {
    size_t n;
    return elm__mul_ok(a, b, &n) && elm__mul_ok(n, c, &n) && elm__mul_ok(n, elem, out);
}

ELM_API int elm_dataset_from_arrays(size_t N, size_t T, size_t n_in, const float *x,
                                    const float *target, size_t n_target,
                                    const int32_t *labels, size_t n_label,
                                    const int64_t *lengths, elm_dataset **out) {
    static const char *fn = "elm_dataset_from_arrays";
    if (!out) return elm__fail(ELM_E_NULL, "%s: out is NULL", fn);
    if (!x) return elm__fail(ELM_E_NULL, "%s: x is NULL", fn);
    if (N == 0 || T == 0 || n_in == 0)
        return elm__fail(ELM_E_SHAPE, "%s: N = %zu, T = %zu, n_in = %zu must all be >= 1", fn,
                         N, T, n_in);
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
    if (n_label != 0 && n_label != 1 && n_label != T)
        return elm__fail(ELM_E_SHAPE,
                         "%s: n_label = %zu must be 0, 1 (one per sample) or T = %zu (one per step)",
                         fn, n_label, T);
    size_t bytes;
    if (!bytes_ok(N, T, n_in, sizeof(float), &bytes) ||
        !bytes_ok(N, T, n_target, sizeof(float), &bytes) ||
        !bytes_ok(N, n_label, 1, sizeof(int32_t), &bytes) ||
        !bytes_ok(N, 1, 1, sizeof(int64_t), &bytes) ||
        !bytes_ok(N, 1, 1, sizeof(size_t), &bytes))
        return elm__fail(ELM_E_NOMEM, "%s: array sizes overflow (N = %zu, T = %zu, n_in = %zu, "
                         "n_target = %zu, n_label = %zu)", fn, N, T, n_in, n_target, n_label);
    if (lengths)
        for (size_t i = 0; i < N; i++)
            if (lengths[i] < 1 || (uint64_t)lengths[i] > (uint64_t)T)
                return elm__fail(ELM_E_INVALID, "%s: lengths[%zu] = %lld is outside [1, T = %zu]",
                                 fn, i, (long long)lengths[i], T);

    elm_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    ds->order = malloc(N * sizeof *ds->order);
    if (!ds->order) {
        free(ds);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory for the order of %zu samples", fn, N);
    }
    ds->N = N;
    ds->T = T;
    ds->n_in = n_in;
    ds->n_target = n_target;
    ds->n_label = n_label;
    ds->x = x;
    ds->target = target;
    ds->labels = labels;
    ds->lengths = lengths;
    ds->shuffle = 1;
    ds->drop_last = 0;
    ds->seed = 0;
    ds->pos = 0;
    ds->started = false;
    *out = ds;
    return ELM_OK;
}

ELM_API void elm_dataset_free(elm_dataset *ds) {
    if (!ds) return;
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
    default: ds->drop_last = (int)value; break;
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
    default: return elm__fail(ELM_E_INVALID, "elm_dataset_size: unknown dimension %d", (int)what);
    }
    return ELM_OK;
}

ELM_API int elm_dataset_start_epoch(elm_dataset *ds, uint64_t epoch) {
    if (!ds) return elm__fail(ELM_E_NULL, "elm_dataset_start_epoch: dataset is NULL");
    compute_order(ds, epoch);
    return ELM_OK;
}

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
    size_t T = ds->T, n_in = ds->n_in, n_tg = ds->n_target, n_lb = ds->n_label, bytes;
    if (!bytes_ok(B, T, n_in, sizeof(float), &bytes) ||
        !bytes_ok(B, T, n_tg, sizeof(float), &bytes) ||
        !bytes_ok(B, n_lb, 1, sizeof(int32_t), &bytes) ||
        !bytes_ok(B, 1, 1, sizeof(int64_t), &bytes))
        return elm__fail(ELM_E_NOMEM, "%s: batch of B = %zu samples overflows the address space",
                         fn, B);

    /* next before any start_epoch: epoch 0. */
    bool fresh = !ds->started;
    if (fresh) compute_order(ds, 0);

    size_t left = ds->N - ds->pos;
    size_t n = left < B ? left : B;
    if (n < B && ds->drop_last) n = 0; /* the partial batch is dropped */
    const size_t *idx = ds->order + ds->pos;

    /* The arrays are borrowed: lengths checked at creation may have been
     * changed since. Refuse before anything is written or consumed. */
    if (ds->lengths)
        for (size_t b = 0; b < n; b++) {
            int64_t len = ds->lengths[idx[b]];
            if (len < 1 || (uint64_t)len > (uint64_t)T) {
                if (fresh) ds->started = false;
                return elm__fail(ELM_E_INVALID,
                                 "%s: lengths[%zu] = %lld is outside [1, T = %zu] (the caller's "
                                 "array changed after elm_dataset_from_arrays)",
                                 fn, idx[b], (long long)len, T);
            }
        }
    ds->pos = n == 0 ? ds->N : ds->pos + n;

    size_t sx = T * n_in, st = T * n_tg;
    for (size_t b = 0; b < n; b++) {
        size_t i = idx[b];
        memcpy(x + b * sx, ds->x + i * sx, sx * sizeof *x);
        if (target) memcpy(target + b * st, ds->target + i * st, st * sizeof *target);
        if (labels) memcpy(labels + b * n_lb, ds->labels + i * n_lb, n_lb * sizeof *labels);
        if (lengths) lengths[b] = ds->lengths ? ds->lengths[i] : (int64_t)T;
    }
    /* Padding: zero samples of length 0. */
    size_t pad = B - n;
    if (pad) {
        memset(x + n * sx, 0, pad * sx * sizeof *x);
        if (target) memset(target + n * st, 0, pad * st * sizeof *target);
        if (labels) memset(labels + n * n_lb, 0, pad * n_lb * sizeof *labels);
        if (lengths) memset(lengths + n, 0, pad * sizeof *lengths);
    }
    *count = n;
    return ELM_OK;
}
