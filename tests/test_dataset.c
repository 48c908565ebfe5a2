/* Datasets over caller arrays: epoch orders (identity, seeded shuffles),
 * batch contents, padding and drop_last, end of epoch, option and argument
 * validation with "nothing changed" on failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elm.h"

/* A synthetic dataset in which every value encodes its sample, step and
 * channel, so that a batch row tells which sample it claims to be. */
#define MAXN 64
#define TT 3
#define NIN 2
#define NTG 2

typedef struct fixture {
    size_t N;
    float x[MAXN][TT][NIN];
    float target[MAXN][TT][NTG];
    int32_t label1[MAXN];      /* n_label = 1 */
    int32_t labelT[MAXN][TT];  /* n_label = T */
    int64_t lengths[MAXN];
} fixture;

static float xval(size_t i, size_t t, size_t c) { return (float)(1000 * (i + 1) + 10 * t + c); }
static float tval(size_t i, size_t t, size_t k) { return -(float)(1000 * (i + 1) + 10 * t + k) - 0.5f; }
static int32_t l1val(size_t i) { return (int32_t)(i + 1); }
static int32_t lTval(size_t i, size_t t) { return (int32_t)(100 * (i + 1) + t); }
static int64_t lenval(size_t i) { return 1 + (int64_t)(i % TT); }

static void fill(fixture *f, size_t N) {
    memset(f, 0, sizeof *f);
    f->N = N;
    for (size_t i = 0; i < N; i++) {
        for (size_t t = 0; t < TT; t++) {
            for (size_t c = 0; c < NIN; c++) f->x[i][t][c] = xval(i, t, c);
            for (size_t k = 0; k < NTG; k++) f->target[i][t][k] = tval(i, t, k);
            f->labelT[i][t] = lTval(i, t);
        }
        f->label1[i] = l1val(i);
        f->lengths[i] = lenval(i);
    }
}

/* Dataset over the fixture: with_target, n_label (0, 1 or TT), with_lengths. */
static elm_dataset *make(const fixture *f, int with_target, size_t n_label, int with_lengths) {
    elm_dataset *ds = NULL;
    const int32_t *labels = n_label == 1 ? f->label1 : n_label == TT ? &f->labelT[0][0] : NULL;
    assert_int_equal(elm_dataset_from_arrays(f->N, TT, NIN, &f->x[0][0][0],
                                             with_target ? &f->target[0][0][0] : NULL,
                                             with_target ? NTG : 0, labels, n_label,
                                             with_lengths ? f->lengths : NULL, &ds),
                     ELM_OK);
    assert_non_null(ds);
    return ds;
}

/* A batch buffer of B rows for every field, filled with a sentinel. */
typedef struct batch {
    size_t B;
    float *x, *target;
    int32_t *labels;
    int64_t *lengths;
} batch;

static batch batch_new(size_t B) {
    batch b = {B, malloc(B * TT * NIN * sizeof(float)), malloc(B * TT * NTG * sizeof(float)),
               malloc(B * TT * sizeof(int32_t)), malloc(B * sizeof(int64_t))};
    assert_non_null(b.x);
    assert_non_null(b.target);
    assert_non_null(b.labels);
    assert_non_null(b.lengths);
    return b;
}

static void batch_sentinel(batch *b) {
    for (size_t i = 0; i < b->B * TT * NIN; i++) b->x[i] = 7.25f;
    for (size_t i = 0; i < b->B * TT * NTG; i++) b->target[i] = 7.25f;
    for (size_t i = 0; i < b->B * TT; i++) b->labels[i] = 77;
    for (size_t i = 0; i < b->B; i++) b->lengths[i] = 77;
}

static void batch_free(batch *b) {
    free(b->x);
    free(b->target);
    free(b->labels);
    free(b->lengths);
}

/* Check a batch: rows < count are complete copies of the sample their x
 * claims (returned in ids), the others are padding (zeros, length 0).
 * `lengths_given` says whether the dataset has lengths (else real rows
 * report T; -1: do not check the lengths of real rows). */
static void check_batch(const batch *b, size_t count, size_t N, int has_target, size_t n_label,
                        int lengths_given, size_t *ids) {
    for (size_t r = 0; r < b->B; r++) {
        const float *x = b->x + r * TT * NIN;
        if (r < count) {
            float v = x[0];
            assert_true(v >= 1000 && v == floorf(v / 1000) * 1000);
            size_t i = (size_t)(v / 1000) - 1;
            assert_true(i < N);
            ids[r] = i;
            for (size_t t = 0; t < TT; t++)
                for (size_t c = 0; c < NIN; c++) assert_true(x[t * NIN + c] == xval(i, t, c));
            if (has_target)
                for (size_t t = 0; t < TT; t++)
                    for (size_t k = 0; k < NTG; k++)
                        assert_true(b->target[(r * TT + t) * NTG + k] == tval(i, t, k));
            if (n_label == 1) assert_int_equal(b->labels[r], l1val(i));
            if (n_label == TT)
                for (size_t t = 0; t < TT; t++) assert_int_equal(b->labels[r * TT + t], lTval(i, t));
            if (lengths_given >= 0)
                assert_int_equal(b->lengths[r], lengths_given ? lenval(i) : (int64_t)TT);
        } else {
            for (size_t e = 0; e < TT * NIN; e++) assert_true(x[e] == 0.0f);
            if (has_target)
                for (size_t e = 0; e < TT * NTG; e++) assert_true(b->target[r * TT * NTG + e] == 0.0f);
            for (size_t e = 0; e < n_label; e++) assert_int_equal(b->labels[r * n_label + e], 0);
            assert_int_equal(b->lengths[r], 0);
        }
    }
}

/* Read one epoch to its end in batches of B (all fields requested), checking
 * every batch; returns the samples in the order visited (*n of them) and
 * checks the batch structure: full batches, then at most one partial batch
 * (padded, or dropped with drop_last), then count 0. */
static void read_epoch(elm_dataset *ds, const fixture *f, size_t B, int has_target,
                       size_t n_label, int lengths_given, int drop_last, size_t *order,
                       size_t *n) {
    batch b = batch_new(B);
    size_t ids[MAXN + 8];
    *n = 0;
    size_t expect_batches = drop_last ? f->N / B : (f->N + B - 1) / B;
    for (size_t k = 0; k < expect_batches; k++) {
        size_t count = 12345;
        batch_sentinel(&b);
        assert_int_equal(elm_dataset_next(ds, B, b.x, has_target ? b.target : NULL,
                                          n_label ? b.labels : NULL, b.lengths, &count),
                         ELM_OK);
        size_t want = f->N - k * B < B ? f->N - k * B : B;
        assert_int_equal(count, want);
        check_batch(&b, count, f->N, has_target, n_label, lengths_given, ids);
        for (size_t r = 0; r < count; r++) order[(*n)++] = ids[r];
    }
    /* The end: count 0, the whole batch padding, as often as asked. */
    for (int again = 0; again < 3; again++) {
        size_t count = 12345;
        batch_sentinel(&b);
        assert_int_equal(elm_dataset_next(ds, B, b.x, has_target ? b.target : NULL,
                                          n_label ? b.labels : NULL, b.lengths, &count),
                         ELM_OK);
        assert_int_equal(count, 0);
        check_batch(&b, 0, f->N, has_target, n_label, lengths_given, ids);
    }
    batch_free(&b);
}

/* order[0..n) holds n distinct samples of [0, N). */
static void assert_distinct(const size_t *order, size_t n, size_t N) {
    unsigned char seen[MAXN] = {0};
    for (size_t k = 0; k < n; k++) {
        assert_true(order[k] < N);
        assert_int_equal(seen[order[k]], 0);
        seen[order[k]] = 1;
    }
}

/* The order of epoch `epoch` (one batch of N, so no padding), from x. */
static void epoch_order(elm_dataset *ds, const fixture *f, uint64_t epoch, size_t *order) {
    size_t n;
    assert_int_equal(elm_dataset_start_epoch(ds, epoch), ELM_OK);
    read_epoch(ds, f, f->N, 0, 0, -1, 0, order, &n);
    assert_int_equal(n, f->N);
}

static int same_order(const size_t *a, const size_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int is_identity(const size_t *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != i) return 0;
    return 1;
}

static fixture F; /* large: keep it off the stack */

static void test_sizes(void **st) {
    (void)st;
    fill(&F, 10);
    elm_dataset *ds = make(&F, 1, TT, 1);
    size_t v = 99;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_SAMPLES, &v), ELM_OK);
    assert_int_equal(v, 10);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_STEPS, &v), ELM_OK);
    assert_int_equal(v, TT);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_INPUTS, &v), ELM_OK);
    assert_int_equal(v, NIN);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_TARGETS, &v), ELM_OK);
    assert_int_equal(v, NTG);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_LABELS, &v), ELM_OK);
    assert_int_equal(v, TT);
    v = 99;
    assert_int_equal(elm_dataset_size(ds, (elm_dataset_dim)0, &v), ELM_E_INVALID);
    assert_int_equal(elm_dataset_size(ds, (elm_dataset_dim)6, &v), ELM_E_INVALID);
    assert_int_equal(v, 99);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_SAMPLES, NULL), ELM_E_NULL);
    assert_int_equal(elm_dataset_size(NULL, ELM_DATASET_SAMPLES, &v), ELM_E_NULL);
    elm_dataset_free(ds);

    /* Without target and labels. */
    ds = make(&F, 0, 0, 0);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_TARGETS, &v), ELM_OK);
    assert_int_equal(v, 0);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_LABELS, &v), ELM_OK);
    assert_int_equal(v, 0);
    elm_dataset_free(ds);
    elm_dataset_free(NULL);
}

/* Without shuffling each epoch is 0..N-1, batches padded at the end. */
static void test_in_order_with_padding(void **st) {
    (void)st;
    fill(&F, 10);
    elm_dataset *ds = make(&F, 1, 1, 1);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    size_t order[MAXN], n;
    for (uint64_t epoch = 0; epoch < 3; epoch++) {
        assert_int_equal(elm_dataset_start_epoch(ds, epoch), ELM_OK);
        read_epoch(ds, &F, 4, 1, 1, 1, 0, order, &n); /* 4 + 4 + 2 (2 padding rows) */
        assert_int_equal(n, 10);
        assert_true(is_identity(order, n));
    }
    /* Other batch sizes, including B > N (one padded batch) and B == N. */
    static const size_t Bs[] = {1, 3, 9, 10, 11, 25};
    for (size_t k = 0; k < sizeof Bs / sizeof *Bs; k++) {
        assert_int_equal(elm_dataset_start_epoch(ds, 5), ELM_OK);
        read_epoch(ds, &F, Bs[k], 1, 1, 1, 0, order, &n);
        assert_int_equal(n, 10);
        assert_true(is_identity(order, n));
    }
    elm_dataset_free(ds);
}

/* The padded last batch, spelled out. */
static void test_last_batch_padding(void **st) {
    (void)st;
    fill(&F, 5);
    elm_dataset *ds = make(&F, 1, 1, 1);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    batch b = batch_new(3);
    size_t count;
    assert_int_equal(elm_dataset_next(ds, 3, b.x, b.target, b.labels, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 3);
    batch_sentinel(&b);
    assert_int_equal(elm_dataset_next(ds, 3, b.x, b.target, b.labels, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 2);
    assert_true(b.x[0] == xval(3, 0, 0));
    assert_true(b.x[TT * NIN] == xval(4, 0, 0));
    assert_int_equal(b.labels[0], l1val(3));
    assert_int_equal(b.labels[1], l1val(4));
    assert_int_equal(b.lengths[0], lenval(3));
    assert_int_equal(b.lengths[1], lenval(4));
    for (size_t e = 2 * TT * NIN; e < 3 * TT * NIN; e++) assert_true(b.x[e] == 0.0f);
    for (size_t e = 2 * TT * NTG; e < 3 * TT * NTG; e++) assert_true(b.target[e] == 0.0f);
    assert_int_equal(b.labels[2], 0);
    assert_int_equal(b.lengths[2], 0);
    batch_free(&b);
    elm_dataset_free(ds);
}

/* Every epoch visits every sample exactly once, whatever B and drop_last. */
static void test_shuffled_epochs_are_permutations(void **st) {
    (void)st;
    fill(&F, 23);
    static const size_t Bs[] = {1, 2, 5, 7, 23, 30};
    for (int drop = 0; drop < 2; drop++) {
        elm_dataset *ds = make(&F, 1, 1, 1);
        assert_int_equal(elm_dataset_set(ds, ELM_DATASET_DROP_LAST, drop), ELM_OK);
        for (size_t k = 0; k < sizeof Bs / sizeof *Bs; k++) {
            for (uint64_t epoch = 0; epoch < 4; epoch++) {
                size_t order[MAXN], n, full[MAXN];
                assert_int_equal(elm_dataset_start_epoch(ds, epoch), ELM_OK);
                read_epoch(ds, &F, Bs[k], 1, 1, 1, drop, order, &n);
                assert_int_equal(n, drop ? F.N / Bs[k] * Bs[k] : F.N);
                assert_distinct(order, n, F.N);
                /* The batches follow the epoch's order whatever B is. */
                epoch_order(ds, &F, epoch, full);
                assert_true(same_order(order, full, n));
            }
        }
        elm_dataset_free(ds);
    }
}

static void test_order_determinism(void **st) {
    (void)st;
    fill(&F, 20);
    elm_dataset *a = make(&F, 1, 1, 1), *b = make(&F, 1, 1, 1);
    size_t oa[MAXN], ob[MAXN], o1[MAXN], o2[MAXN];

    /* Same (seed, epoch): same order, on another object and when repeated. */
    epoch_order(a, &F, 3, oa);
    epoch_order(b, &F, 3, ob);
    assert_true(same_order(oa, ob, F.N));
    epoch_order(a, &F, 7, o1);
    epoch_order(a, &F, 3, o2);
    assert_true(same_order(oa, o2, F.N));

    /* Shuffled, and different epochs give different orders. */
    size_t orders[8][MAXN];
    for (uint64_t e = 0; e < 8; e++) {
        epoch_order(a, &F, e, orders[e]);
        assert_false(is_identity(orders[e], F.N));
        for (uint64_t p = 0; p < e; p++) assert_false(same_order(orders[p], orders[e], F.N));
    }
    /* Large epoch numbers too. */
    epoch_order(a, &F, UINT64_MAX, o1);
    assert_distinct(o1, F.N, F.N);
    assert_false(same_order(o1, orders[0], F.N));

    /* Different seeds: different orders for the same epoch; seed 0 is the
     * default. */
    assert_int_equal(elm_dataset_set(b, ELM_DATASET_SEED, 0), ELM_OK);
    epoch_order(b, &F, 3, ob);
    assert_true(same_order(oa, ob, F.N));
    static const double seeds[] = {1, 2, 12345, 9007199254740992.0};
    size_t prev[5][MAXN];
    memcpy(prev[0], oa, sizeof oa);
    for (size_t s = 0; s < 4; s++) {
        assert_int_equal(elm_dataset_set(b, ELM_DATASET_SEED, seeds[s]), ELM_OK);
        epoch_order(b, &F, 3, prev[s + 1]);
        for (size_t p = 0; p <= s; p++) assert_false(same_order(prev[p], prev[s + 1], F.N));
    }
    /* Setting a seed back restores its orders. */
    assert_int_equal(elm_dataset_set(b, ELM_DATASET_SEED, 1), ELM_OK);
    epoch_order(b, &F, 3, ob);
    assert_true(same_order(prev[1], ob, F.N));

    /* Shuffle off then on again: identity, then the same shuffled order. */
    assert_int_equal(elm_dataset_set(a, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    epoch_order(a, &F, 3, o1);
    assert_true(is_identity(o1, F.N));
    assert_int_equal(elm_dataset_set(a, ELM_DATASET_SHUFFLE, 1), ELM_OK);
    epoch_order(a, &F, 3, o1);
    assert_true(same_order(oa, o1, F.N));
    elm_dataset_free(a);
    elm_dataset_free(b);
}

/* The order is pinned: it must come out identical on every platform and in
 * every later version (a changed shuffle would silently change training
 * results). The values were also recomputed outside C from the definition:
 * xoshiro256** seeded by splitmix64 from mix(mix(seed ^ 0x6461746173657400)
 * ^ epoch), mix the splitmix64 finaliser; Fisher-Yates from the end with
 * Lemire's bounded draw. */
static void test_order_pinned(void **st) {
    (void)st;
    fill(&F, 10);
    elm_dataset *ds = make(&F, 0, 0, 0);
    size_t o[MAXN], n;
    static const size_t want_e0[10] = {7, 5, 8, 6, 1, 2, 9, 3, 0, 4};
    static const size_t want_s7e2[10] = {4, 1, 5, 6, 8, 7, 9, 3, 0, 2};
    assert_int_equal(elm_dataset_start_epoch(ds, 0), ELM_OK);
    read_epoch(ds, &F, 10, 0, 0, 0, 0, o, &n);
    assert_true(same_order(o, want_e0, 10));
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SEED, 7), ELM_OK);
    assert_int_equal(elm_dataset_start_epoch(ds, 2), ELM_OK);
    read_epoch(ds, &F, 10, 0, 0, 0, 0, o, &n);
    assert_true(same_order(o, want_s7e2, 10));
    elm_dataset_free(ds);
}

/* The shuffle is uniform: over 24000 epochs of N = 4, each of the 24
 * permutations appears about 1000 times (sd ~31). A biased shuffle (for
 * example swapping with any index, not only those not yet placed) puts some
 * permutations near 750 and others near 1400. */
static void test_shuffle_uniform(void **st) {
    (void)st;
    fill(&F, 4);
    elm_dataset *ds = make(&F, 0, 0, 0);
    unsigned counts[256] = {0};
    batch b = batch_new(4);
    for (uint64_t e = 0; e < 24000; e++) {
        size_t count;
        assert_int_equal(elm_dataset_start_epoch(ds, e), ELM_OK);
        assert_int_equal(elm_dataset_next(ds, 4, b.x, NULL, NULL, NULL, &count), ELM_OK);
        assert_int_equal(count, 4);
        unsigned code = 0, seen = 0;
        for (size_t r = 0; r < 4; r++) {
            size_t i = (size_t)(b.x[r * TT * NIN] / 1000) - 1;
            assert_true(i < 4);
            seen |= 1u << i;
            code = code * 4 + (unsigned)i;
        }
        assert_int_equal(seen, 15);
        counts[code]++;
    }
    unsigned distinct = 0;
    for (unsigned c = 0; c < 256; c++) {
        if (!counts[c]) continue;
        distinct++;
        assert_in_range(counts[c], 850, 1150);
    }
    assert_int_equal(distinct, 24);
    batch_free(&b);
    elm_dataset_free(ds);
}

/* next() before any start_epoch is epoch 0 with the settings of that time. */
static void test_next_before_start(void **st) {
    (void)st;
    fill(&F, 12);
    elm_dataset *a = make(&F, 1, 1, 1), *b = make(&F, 1, 1, 1);
    size_t oa[MAXN], ob[MAXN], n;
    read_epoch(a, &F, 5, 1, 1, 1, 0, oa, &n);
    assert_int_equal(n, F.N);
    epoch_order(b, &F, 0, ob);
    assert_true(same_order(oa, ob, F.N));
    assert_false(is_identity(oa, F.N));
    elm_dataset_free(a);

    /* A seed set before the first next() applies to it. */
    a = make(&F, 1, 1, 1);
    assert_int_equal(elm_dataset_set(a, ELM_DATASET_SEED, 99), ELM_OK);
    assert_int_equal(elm_dataset_set(b, ELM_DATASET_SEED, 99), ELM_OK);
    read_epoch(a, &F, 5, 1, 1, 1, 0, oa, &n);
    epoch_order(b, &F, 0, ob);
    assert_true(same_order(oa, ob, F.N));
    elm_dataset_free(a);
    elm_dataset_free(b);
}

static void test_drop_last(void **st) {
    (void)st;
    fill(&F, 10);
    elm_dataset *ds = make(&F, 1, 1, 1);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_DROP_LAST, 1), ELM_OK);
    size_t order[MAXN], n;
    /* 4 + 4, the last 2 dropped (read_epoch checks count 0 after). */
    assert_int_equal(elm_dataset_start_epoch(ds, 0), ELM_OK);
    read_epoch(ds, &F, 4, 1, 1, 1, 1, order, &n);
    assert_int_equal(n, 8);
    assert_true(is_identity(order, n));
    /* B == N: one full batch; B > N: nothing at all. */
    assert_int_equal(elm_dataset_start_epoch(ds, 0), ELM_OK);
    read_epoch(ds, &F, 10, 1, 1, 1, 1, order, &n);
    assert_int_equal(n, 10);
    assert_int_equal(elm_dataset_start_epoch(ds, 0), ELM_OK);
    read_epoch(ds, &F, 11, 1, 1, 1, 1, order, &n);
    assert_int_equal(n, 0);
    /* Once the partial batch was refused the epoch is over, even for a
     * smaller B that would fit. */
    batch b = batch_new(4);
    size_t count;
    assert_int_equal(elm_dataset_start_epoch(ds, 0), ELM_OK);
    assert_int_equal(elm_dataset_next(ds, 4, b.x, NULL, NULL, NULL, &count), ELM_OK);
    assert_int_equal(count, 4);
    assert_int_equal(elm_dataset_next(ds, 4, b.x, NULL, NULL, NULL, &count), ELM_OK);
    assert_int_equal(count, 4);
    assert_int_equal(elm_dataset_next(ds, 4, b.x, NULL, NULL, NULL, &count), ELM_OK);
    assert_int_equal(count, 0);
    assert_int_equal(elm_dataset_next(ds, 1, b.x, NULL, NULL, NULL, &count), ELM_OK);
    assert_int_equal(count, 0);
    /* Back to padding. */
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_DROP_LAST, 0), ELM_OK);
    assert_int_equal(elm_dataset_start_epoch(ds, 0), ELM_OK);
    read_epoch(ds, &F, 4, 1, 1, 1, 0, order, &n);
    assert_int_equal(n, 10);
    batch_free(&b);
    elm_dataset_free(ds);
}

/* The end of an epoch lasts until start_epoch; start_epoch mid-epoch
 * restarts from the first batch. */
static void test_end_and_restart(void **st) {
    (void)st;
    fill(&F, 7);
    elm_dataset *ds = make(&F, 0, 0, 1);
    batch b = batch_new(3);
    size_t count, first[3], ids[3], full[MAXN];
    epoch_order(ds, &F, 4, full);
    assert_int_equal(elm_dataset_start_epoch(ds, 4), ELM_OK);
    assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 3);
    check_batch(&b, count, F.N, 0, 0, 1, first);
    assert_true(same_order(first, full, 3));
    assert_int_equal(elm_dataset_start_epoch(ds, 4), ELM_OK);
    assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 3);
    check_batch(&b, count, F.N, 0, 0, 1, ids);
    assert_true(same_order(first, ids, 3));
    /* Read to the end, then count stays 0. */
    assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 3);
    assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 1);
    for (int k = 0; k < 5; k++) {
        count = 9;
        assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
        assert_int_equal(count, 0);
    }
    assert_int_equal(elm_dataset_start_epoch(ds, 5), ELM_OK);
    assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 3);
    batch_free(&b);
    elm_dataset_free(ds);
}

/* Fields: per-step labels, labels per sample, no lengths (T reported),
 * fields not requested left alone. */
static void test_fields(void **st) {
    (void)st;
    fill(&F, 9);
    size_t order[MAXN], n;
    /* n_label = T, with target and lengths. */
    elm_dataset *ds = make(&F, 1, TT, 1);
    read_epoch(ds, &F, 4, 1, TT, 1, 0, order, &n);
    assert_int_equal(n, 9);
    assert_distinct(order, n, 9);
    elm_dataset_free(ds);
    /* n_label = T, no target, no lengths: lengths reported as T. */
    ds = make(&F, 0, TT, 0);
    read_epoch(ds, &F, 4, 0, TT, 0, 0, order, &n);
    assert_int_equal(n, 9);
    elm_dataset_free(ds);
    /* Only x: n_label 0, no target. */
    ds = make(&F, 0, 0, 0);
    read_epoch(ds, &F, 2, 0, 0, 0, 0, order, &n);
    assert_int_equal(n, 9);
    elm_dataset_free(ds);

    /* Fields the caller does not ask for are not written. */
    ds = make(&F, 1, 1, 1);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    batch b = batch_new(4);
    batch_sentinel(&b);
    size_t count;
    assert_int_equal(elm_dataset_next(ds, 4, b.x, NULL, NULL, NULL, &count), ELM_OK);
    assert_int_equal(count, 4);
    assert_true(b.x[TT * NIN] == xval(1, 0, 0));
    for (size_t e = 0; e < 4 * TT * NTG; e++) assert_true(b.target[e] == 7.25f);
    for (size_t e = 0; e < 4; e++) assert_int_equal(b.labels[e], 77);
    for (size_t e = 0; e < 4; e++) assert_int_equal(b.lengths[e], 77);
    batch_free(&b);
    elm_dataset_free(ds);

    /* T = 1: n_label 1 is both one label per sample and one per step. */
    float x1[3] = {1, 2, 3};
    int32_t l1[3] = {4, 5, 6};
    assert_int_equal(elm_dataset_from_arrays(3, 1, 1, x1, NULL, 0, l1, 1, NULL, &ds), ELM_OK);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    float bx[2];
    int32_t bl[2];
    int64_t bn[2];
    assert_int_equal(elm_dataset_next(ds, 2, bx, NULL, bl, bn, &count), ELM_OK);
    assert_int_equal(count, 2);
    assert_true(bx[0] == 1 && bx[1] == 2);
    assert_true(bl[0] == 4 && bl[1] == 5 && bn[0] == 1 && bn[1] == 1);
    assert_int_equal(elm_dataset_next(ds, 2, bx, NULL, bl, bn, &count), ELM_OK);
    assert_int_equal(count, 1);
    assert_true(bx[0] == 3 && bx[1] == 0 && bl[0] == 6 && bl[1] == 0 && bn[1] == 0);
    elm_dataset_free(ds);
}

/* The caller's arrays are borrowed: later changes show in later batches,
 * and values are not checked here (NaN passes through). */
static void test_borrowed(void **st) {
    (void)st;
    fill(&F, 4);
    elm_dataset *ds = make(&F, 1, 1, 1);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    F.x[1][2][1] = NAN;
    F.target[1][0][0] = 0.125f;
    F.label1[1] = -3;
    batch b = batch_new(2);
    size_t count;
    assert_int_equal(elm_dataset_next(ds, 2, b.x, b.target, b.labels, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 2);
    assert_true(isnan(b.x[TT * NIN + 2 * NIN + 1]));
    assert_true(b.target[TT * NTG] == 0.125f);
    assert_int_equal(b.labels[1], -3);
    /* Lengths are checked again as they are read: a length the caller broke
     * after creation is refused with nothing written or consumed. */
    F.lengths[2] = 0;
    batch_sentinel(&b);
    count = 42;
    assert_int_equal(elm_dataset_next(ds, 2, b.x, b.target, b.labels, b.lengths, &count),
                     ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "lengths[2]"));
    assert_int_equal(count, 42);
    assert_true(b.x[0] == 7.25f && b.lengths[0] == 77);
    F.lengths[2] = TT + 1;
    assert_int_equal(elm_dataset_next(ds, 2, b.x, b.target, b.labels, b.lengths, &count),
                     ELM_E_INVALID);
    F.lengths[2] = TT;
    assert_int_equal(elm_dataset_next(ds, 2, b.x, b.target, b.labels, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 2);
    assert_true(b.x[0] == xval(2, 0, 0) && b.lengths[0] == TT);
    elm_dataset_free(ds);

    /* A refused first next() leaves the dataset unstarted: a seed set after
     * it still applies to epoch 0. */
    fill(&F, 6);
    elm_dataset *ref = make(&F, 0, 0, 1);
    ds = make(&F, 0, 0, 1);
    F.lengths[0] = F.lengths[1] = F.lengths[2] = F.lengths[3] = F.lengths[4] = F.lengths[5] = 0;
    batch b6 = batch_new(6);
    assert_int_equal(elm_dataset_next(ds, 6, b6.x, NULL, NULL, NULL, &count), ELM_E_INVALID);
    batch_free(&b6);
    fill(&F, 6);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SEED, 5), ELM_OK);
    assert_int_equal(elm_dataset_set(ref, ELM_DATASET_SEED, 5), ELM_OK);
    size_t oa[MAXN], ob[MAXN], n;
    read_epoch(ds, &F, 6, 0, 0, 1, 0, oa, &n);
    epoch_order(ref, &F, 0, ob);
    assert_true(same_order(oa, ob, 6));
    elm_dataset_free(ref);
    elm_dataset_free(ds);
    batch_free(&b);
    fill(&F, 4);
}

static void test_create_errors(void **st) {
    (void)st;
    fill(&F, 6);
    const float *x = &F.x[0][0][0], *tg = &F.target[0][0][0];
    const int32_t *lb = F.label1;
    elm_dataset *const sentinel = (elm_dataset *)0x1;
    elm_dataset *ds = sentinel;
#define BAD(code, ...)                                                      \
    do {                                                                    \
        ds = sentinel;                                                      \
        assert_int_equal(elm_dataset_from_arrays(__VA_ARGS__, &ds), code);  \
        assert_true(ds == sentinel);                                        \
        assert_non_null(strstr(elm_last_error(), "elm_dataset_from_arrays")); \
    } while (0)
    assert_int_equal(elm_dataset_from_arrays(6, TT, NIN, x, tg, NTG, lb, 1, F.lengths, NULL),
                     ELM_E_NULL);
    BAD(ELM_E_NULL, 6, TT, NIN, NULL, tg, NTG, lb, 1, F.lengths);
    BAD(ELM_E_SHAPE, 0, TT, NIN, x, tg, NTG, lb, 1, F.lengths);
    BAD(ELM_E_SHAPE, 6, 0, NIN, x, tg, NTG, lb, 1, F.lengths);
    BAD(ELM_E_SHAPE, 6, TT, 0, x, tg, NTG, lb, 1, F.lengths);
    /* target NULL iff n_target == 0; labels NULL iff n_label == 0 */
    BAD(ELM_E_INVALID, 6, TT, NIN, x, NULL, NTG, lb, 1, F.lengths);
    BAD(ELM_E_INVALID, 6, TT, NIN, x, tg, 0, lb, 1, F.lengths);
    BAD(ELM_E_INVALID, 6, TT, NIN, x, tg, NTG, NULL, 1, F.lengths);
    BAD(ELM_E_INVALID, 6, TT, NIN, x, tg, NTG, lb, 0, F.lengths);
    /* n_label 0, 1 or T only */
    BAD(ELM_E_SHAPE, 6, TT, NIN, x, tg, NTG, lb, 2, F.lengths);
    BAD(ELM_E_SHAPE, 6, TT, NIN, x, tg, NTG, lb, TT + 1, F.lengths);
    /* sizes that overflow */
    BAD(ELM_E_NOMEM, SIZE_MAX / 2, TT, NIN, x, tg, NTG, lb, 1, NULL);
    BAD(ELM_E_NOMEM, 6, SIZE_MAX / 8, 1, x, NULL, 0, NULL, 0, NULL);
    BAD(ELM_E_NOMEM, 6, TT, SIZE_MAX / 16, x, NULL, 0, NULL, 0, NULL);
    BAD(ELM_E_NOMEM, 6, TT, NIN, x, tg, SIZE_MAX / 16, NULL, 0, NULL);
    /* lengths in [1, T], the bad sample named */
    int64_t len[6] = {1, 2, 3, 3, 2, 1};
    len[4] = 0;
    BAD(ELM_E_INVALID, 6, TT, NIN, x, tg, NTG, lb, 1, len);
    assert_non_null(strstr(elm_last_error(), "lengths[4]"));
    len[4] = TT + 1;
    BAD(ELM_E_INVALID, 6, TT, NIN, x, tg, NTG, lb, 1, len);
    assert_non_null(strstr(elm_last_error(), "lengths[4]"));
    len[4] = -1;
    BAD(ELM_E_INVALID, 6, TT, NIN, x, tg, NTG, lb, 1, len);
    len[4] = INT64_MIN;
    BAD(ELM_E_INVALID, 6, TT, NIN, x, tg, NTG, lb, 1, len);
    len[4] = TT;
    len[0] = 0;
    BAD(ELM_E_INVALID, 6, TT, NIN, x, tg, NTG, lb, 1, len);
    assert_non_null(strstr(elm_last_error(), "lengths[0]"));
#undef BAD
    /* The boundaries are accepted. */
    len[0] = 1;
    ds = NULL;
    assert_int_equal(elm_dataset_from_arrays(6, TT, NIN, x, tg, NTG, lb, 1, len, &ds), ELM_OK);
    elm_dataset_free(ds);
}

/* Options: a failed set leaves the dataset as it was. */
static void test_set_errors(void **st) {
    (void)st;
    fill(&F, 16);
    elm_dataset *ds = make(&F, 0, 1, 0), *ref = make(&F, 0, 1, 0);
    size_t want[MAXN], o[MAXN], n;
    epoch_order(ref, &F, 2, want); /* defaults: shuffle 1, seed 0, drop_last 0 */

    assert_int_equal(elm_dataset_set(NULL, ELM_DATASET_SEED, 1), ELM_E_NULL);
    assert_int_equal(elm_dataset_set(ds, (elm_dataset_option)0, 1), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_dataset_set(ds, (elm_dataset_option)4, 1), ELM_E_UNKNOWN_NAME);
    static const double bad01[] = {-1, 2, 0.5, 1e300, NAN, INFINITY, -INFINITY};
    for (size_t k = 0; k < sizeof bad01 / sizeof *bad01; k++) {
        assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, bad01[k]), ELM_E_INVALID);
        assert_non_null(strstr(elm_last_error(), "shuffle"));
        assert_int_equal(elm_dataset_set(ds, ELM_DATASET_DROP_LAST, bad01[k]), ELM_E_INVALID);
        assert_non_null(strstr(elm_last_error(), "drop_last"));
    }
    static const double bad_seed[] = {-1, 0.5, 3.25, 9007199254740994.0, 1e300, NAN, INFINITY};
    for (size_t k = 0; k < sizeof bad_seed / sizeof *bad_seed; k++) {
        assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SEED, bad_seed[k]), ELM_E_INVALID);
        assert_non_null(strstr(elm_last_error(), "seed"));
    }
    /* Nothing changed: still shuffled with seed 0, still padding. */
    assert_int_equal(elm_dataset_start_epoch(ds, 2), ELM_OK);
    read_epoch(ds, &F, 5, 0, 1, 0, 0, o, &n);
    assert_int_equal(n, 16);
    assert_true(same_order(o, want, 16));
    /* -0 is 0; 2^53 is the largest seed. */
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, -0.0), ELM_OK);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SEED, 9007199254740992.0), ELM_OK);
    elm_dataset_free(ds);
    elm_dataset_free(ref);
}

/* next(): bad arguments fail with nothing written and nothing consumed. */
static void test_next_errors(void **st) {
    (void)st;
    fill(&F, 8);
    elm_dataset *with_tl = make(&F, 1, 1, 1), *bare = make(&F, 0, 0, 1);
    batch b = batch_new(3);
    size_t count = 42;
    elm_dataset *both[2] = {with_tl, bare};
    for (int k = 0; k < 2; k++) {
        elm_dataset *ds = both[k];
        assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
        batch_sentinel(&b);
        assert_int_equal(elm_dataset_next(NULL, 3, b.x, NULL, NULL, b.lengths, &count), ELM_E_NULL);
        assert_int_equal(elm_dataset_next(ds, 3, NULL, NULL, NULL, b.lengths, &count), ELM_E_NULL);
        assert_non_null(strstr(elm_last_error(), "elm_dataset_next"));
        assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, NULL, b.lengths, NULL), ELM_E_NULL);
        assert_int_equal(elm_dataset_next(ds, 0, b.x, NULL, NULL, b.lengths, &count), ELM_E_INVALID);
        assert_int_equal(elm_dataset_next(ds, SIZE_MAX / 4, b.x, NULL, NULL, b.lengths, &count),
                         ELM_E_NOMEM);
        if (ds == bare) {
            assert_int_equal(elm_dataset_next(ds, 3, b.x, b.target, NULL, b.lengths, &count),
                             ELM_E_INVALID);
            assert_non_null(strstr(elm_last_error(), "target"));
            assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, b.labels, b.lengths, &count),
                             ELM_E_INVALID);
            assert_non_null(strstr(elm_last_error(), "labels"));
        }
        assert_int_equal(count, 42);
        for (size_t e = 0; e < 3 * TT * NIN; e++) assert_true(b.x[e] == 7.25f);
        for (size_t e = 0; e < 3 * TT * NTG; e++) assert_true(b.target[e] == 7.25f);
        for (size_t e = 0; e < 3; e++) assert_int_equal(b.labels[e], 77);
        for (size_t e = 0; e < 3; e++) assert_int_equal(b.lengths[e], 77);
        /* Nothing consumed: the first batch is still samples 0, 1, 2. */
        size_t ids[3];
        assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
        assert_int_equal(count, 3);
        check_batch(&b, 3, F.N, 0, 0, 1, ids);
        assert_true(ids[0] == 0 && ids[1] == 1 && ids[2] == 2);
        /* And mid-epoch too. */
        assert_int_equal(elm_dataset_next(ds, 0, b.x, NULL, NULL, b.lengths, &count), ELM_E_INVALID);
        assert_int_equal(elm_dataset_next(ds, 3, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
        check_batch(&b, 3, F.N, 0, 0, 1, ids);
        assert_true(ids[0] == 3 && ids[1] == 4 && ids[2] == 5);
        count = 42;
    }
    assert_int_equal(elm_dataset_start_epoch(NULL, 0), ELM_E_NULL);
    batch_free(&b);
    elm_dataset_free(with_tl);
    elm_dataset_free(bare);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_in_order_with_padding),
        cmocka_unit_test(test_last_batch_padding),
        cmocka_unit_test(test_shuffled_epochs_are_permutations),
        cmocka_unit_test(test_order_determinism),
        cmocka_unit_test(test_order_pinned),
        cmocka_unit_test(test_shuffle_uniform),
        cmocka_unit_test(test_next_before_start),
        cmocka_unit_test(test_drop_last),
        cmocka_unit_test(test_end_and_restart),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_borrowed),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_next_errors),
    };
    return cmocka_run_group_tests_name("dataset", tests, NULL, NULL);
}
