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
    assert_int_equal(elm_dataset_size(ds, (elm_dataset_dim)0, &v), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_dataset_size(ds, (elm_dataset_dim)6, &v), ELM_E_UNKNOWN_NAME);
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
     * after creation is refused with nothing consumed (the batch arrays may
     * have been written). */
    F.lengths[2] = 0;
    batch_sentinel(&b);
    count = 42;
    assert_int_equal(elm_dataset_next(ds, 2, b.x, b.target, b.labels, b.lengths, &count),
                     ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "lengths[2]"));
    assert_int_equal(count, 42);
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
    assert_int_equal(elm_dataset_set(ds, (elm_dataset_option)5, 1), ELM_E_UNKNOWN_NAME);
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
    const elm_dataset_option opts[] = {ELM_DATASET_SHUFFLE, ELM_DATASET_SEED,
                                       ELM_DATASET_DROP_LAST, ELM_DATASET_PREFETCH};
    const double defaults[] = {1, 0, 0, 0};
    for (int k = 0; k < 4; k++) {
        double v = -5;
        assert_int_equal(elm_dataset_get(ds, opts[k], &v), ELM_OK);
        assert_true(v == defaults[k]);
    }
    double got;
    assert_int_equal(elm_dataset_get(ds, (elm_dataset_option)5, &got), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_dataset_get(ds, ELM_DATASET_SEED, NULL), ELM_E_NULL);
    assert_int_equal(elm_dataset_get(NULL, ELM_DATASET_SEED, &got), ELM_E_NULL);
    assert_int_equal(elm_dataset_start_epoch(ds, 2), ELM_OK);
    read_epoch(ds, &F, 5, 0, 1, 0, 0, o, &n);
    assert_int_equal(n, 16);
    assert_true(same_order(o, want, 16));
    /* -0 is 0; 2^53 is the largest seed. */
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, -0.0), ELM_OK);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SEED, 9007199254740992.0), ELM_OK);
    assert_int_equal(elm_dataset_get(ds, ELM_DATASET_SEED, &got), ELM_OK);
    assert_true(got == 9007199254740992.0);
    assert_int_equal(elm_dataset_get(ds, ELM_DATASET_SHUFFLE, &got), ELM_OK);
    assert_true(got == 0);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_PREFETCH, 1), ELM_OK);
    assert_int_equal(elm_dataset_get(ds, ELM_DATASET_PREFETCH, &got), ELM_OK);
    assert_true(got == 1);
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

/* ---- 0.4: prefetch, splits, caller sources -------------------------------- */

/* Every batch of `epochs` epochs (B = 5, all fields) into one flat log, so
 * that two datasets can be compared batch for batch. */
typedef struct log {
    size_t n;
    float x[4 * 16][TT * NIN];
    float target[4 * 16][TT * NTG];
    int32_t labels[4 * 16];
    int64_t lengths[4 * 16];
    size_t counts[64];
    size_t nb;
} log_t;

static void log_epochs(elm_dataset *ds, int epochs, log_t *lg) {
    memset(lg, 0, sizeof *lg);
    batch b = batch_new(5);
    for (int e = 0; e < epochs; e++) {
        assert_int_equal(elm_dataset_start_epoch(ds, (uint64_t)e), ELM_OK);
        for (;;) {
            size_t count;
            assert_int_equal(elm_dataset_next(ds, 5, b.x, b.target, b.labels, b.lengths, &count),
                             ELM_OK);
            lg->counts[lg->nb++] = count;
            if (count == 0) break;
            for (size_t r = 0; r < count; r++, lg->n++) {
                memcpy(lg->x[lg->n], b.x + r * TT * NIN, sizeof lg->x[0]);
                memcpy(lg->target[lg->n], b.target + r * TT * NTG, sizeof lg->target[0]);
                lg->labels[lg->n] = b.labels[r];
                lg->lengths[lg->n] = b.lengths[r];
            }
            if (count < 5) {
                /* the padding rows of a prefetched batch are zero too */
                for (size_t e2 = count * TT * NIN; e2 < 5 * TT * NIN; e2++)
                    assert_true(b.x[e2] == 0.0f);
            }
        }
    }
    batch_free(&b);
}

static log_t LA, LB;

static void test_prefetch_identical(void **st) {
    (void)st;
    fill(&F, 13);
    for (int drop = 0; drop < 2; drop++) {
        elm_dataset *a = make(&F, 1, 1, 1), *p = make(&F, 1, 1, 1);
        assert_int_equal(elm_dataset_set(a, ELM_DATASET_SEED, 9), ELM_OK);
        assert_int_equal(elm_dataset_set(p, ELM_DATASET_SEED, 9), ELM_OK);
        assert_int_equal(elm_dataset_set(a, ELM_DATASET_DROP_LAST, drop), ELM_OK);
        assert_int_equal(elm_dataset_set(p, ELM_DATASET_DROP_LAST, drop), ELM_OK);
        assert_int_equal(elm_dataset_set(p, ELM_DATASET_PREFETCH, 1), ELM_OK);
        log_epochs(a, 3, &LA);
        log_epochs(p, 3, &LB);
        assert_int_equal(LA.n, drop ? 3 * 10 : 3 * 13);
        assert_true(LA.nb == LB.nb && !memcmp(LA.counts, LB.counts, sizeof LA.counts));
        assert_true(!memcmp(&LA, &LB, sizeof LA));
        /* Switching prefetch off mid-run and changing B mid-epoch keep the
         * same sequence of samples. */
        batch b3 = batch_new(3), b5 = batch_new(5);
        size_t ids[5], count;
        assert_int_equal(elm_dataset_start_epoch(p, 1), ELM_OK);
        assert_int_equal(elm_dataset_start_epoch(a, 1), ELM_OK);
        assert_int_equal(elm_dataset_next(p, 5, b5.x, NULL, NULL, b5.lengths, &count), ELM_OK);
        assert_int_equal(elm_dataset_next(a, 5, b5.x, NULL, NULL, b5.lengths, &count), ELM_OK);
        assert_int_equal(elm_dataset_next(p, 3, b3.x, NULL, NULL, b3.lengths, &count), ELM_OK);
        check_batch(&b3, count, F.N, 0, 0, 1, ids);
        size_t want[3];
        assert_int_equal(elm_dataset_next(a, 3, b3.x, NULL, NULL, b3.lengths, &count), ELM_OK);
        check_batch(&b3, count, F.N, 0, 0, 1, want);
        assert_true(same_order(ids, want, 3));
        assert_int_equal(elm_dataset_set(p, ELM_DATASET_PREFETCH, 0), ELM_OK);
        assert_int_equal(elm_dataset_next(p, 3, b3.x, NULL, NULL, b3.lengths, &count), ELM_OK);
        check_batch(&b3, count, F.N, 0, 0, 1, ids);
        assert_int_equal(elm_dataset_next(a, 3, b3.x, NULL, NULL, b3.lengths, &count), ELM_OK);
        check_batch(&b3, count, F.N, 0, 0, 1, want);
        assert_true(same_order(ids, want, 3));
        batch_free(&b3);
        batch_free(&b5);
        elm_dataset_free(a);
        elm_dataset_free(p); /* with the worker possibly mid-batch */
    }
    /* Freed while the worker builds a batch. */
    elm_dataset *p = make(&F, 1, 1, 1);
    assert_int_equal(elm_dataset_set(p, ELM_DATASET_PREFETCH, 1), ELM_OK);
    batch b = batch_new(2);
    size_t count;
    assert_int_equal(elm_dataset_next(p, 2, b.x, NULL, NULL, NULL, &count), ELM_OK);
    elm_dataset_free(p);
    batch_free(&b);
}

static void test_prefetch_error(void **st) {
    (void)st;
    fill(&F, 8);
    elm_dataset *p = make(&F, 0, 0, 1);
    assert_int_equal(elm_dataset_set(p, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_set(p, ELM_DATASET_PREFETCH, 1), ELM_OK);
    batch b = batch_new(4);
    size_t count = 42, ids[4];
    /* Broken before the worker can read it (changing it later would race
     * with the worker): the first batch is fine, the worker meets the
     * error while building the second, and it surfaces at the batch it
     * belongs to, on the caller's thread, with its message. */
    F.lengths[5] = 0;
    assert_int_equal(elm_dataset_next(p, 4, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
    count = 42;
    assert_int_equal(elm_dataset_next(p, 4, b.x, NULL, NULL, b.lengths, &count), ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "lengths[5]"));
    assert_int_equal(count, 42);
    F.lengths[5] = lenval(5);
    assert_int_equal(elm_dataset_next(p, 4, b.x, NULL, NULL, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 4);
    check_batch(&b, 4, F.N, 0, 0, 1, ids);
    assert_true(ids[0] == 4 && ids[3] == 7);
    elm_dataset_free(p);
    batch_free(&b);
}

/* One epoch of a dataset whose size the fixture does not give (a split
 * half): batches of 4 until count 0, every real row checked. */
static void drain(elm_dataset *ds, size_t *order, size_t *n) {
    batch b = batch_new(4);
    size_t ids[4], count;
    *n = 0;
    do {
        assert_int_equal(elm_dataset_next(ds, 4, b.x, b.target, b.labels, b.lengths, &count),
                         ELM_OK);
        check_batch(&b, count, F.N, 1, 1, 1, ids);
        for (size_t r = 0; r < count; r++) order[(*n)++] = ids[r];
    } while (count);
    batch_free(&b);
}

static void test_split(void **st) {
    (void)st;
    fill(&F, 20);
    elm_dataset *ds = make(&F, 1, 1, 1), *tr = NULL, *va = NULL, *tr2 = NULL, *va2 = NULL;
    assert_int_equal(elm_dataset_split(ds, 6, 3, &tr, &va), ELM_OK);
    assert_int_equal(elm_dataset_split(ds, 6, 3, &tr2, &va2), ELM_OK);
    size_t n;
    assert_int_equal(elm_dataset_size(tr, ELM_DATASET_SAMPLES, &n), ELM_OK);
    assert_int_equal(n, 14);
    assert_int_equal(elm_dataset_size(va, ELM_DATASET_SAMPLES, &n), ELM_OK);
    assert_int_equal(n, 6);
    /* Disjoint, covering, deterministic; each half increasing without
     * shuffling. */
    size_t ot[MAXN], ov[MAXN], ot2[MAXN], ov2[MAXN], m;
    assert_int_equal(elm_dataset_set(tr, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_set(va, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_set(tr2, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_set(va2, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    drain(tr, ot, &m);
    assert_int_equal(m, 14);
    drain(va, ov, &m);
    assert_int_equal(m, 6);
    drain(tr2, ot2, &m);
    drain(va2, ov2, &m);
    assert_true(same_order(ot, ot2, 14) && same_order(ov, ov2, 6));
    int seen[MAXN] = {0};
    for (size_t i = 0; i < 14; i++) seen[ot[i]]++;
    for (size_t i = 0; i < 6; i++) seen[ov[i]]++;
    for (size_t i = 0; i < 20; i++) assert_int_equal(seen[i], 1);
    for (size_t i = 1; i < 14; i++) assert_true(ot[i] > ot[i - 1]);
    for (size_t i = 1; i < 6; i++) assert_true(ov[i] > ov[i - 1]);
    /* Another seed, another validation set. */
    elm_dataset *tr3, *va3;
    assert_int_equal(elm_dataset_split(ds, 6, 4, &tr3, &va3), ELM_OK);
    size_t ov3[MAXN];
    assert_int_equal(elm_dataset_set(va3, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    drain(va3, ov3, &m);
    assert_false(same_order(ov, ov3, 6));
    /* A split of a split: indices compose. */
    elm_dataset *a, *b;
    assert_int_equal(elm_dataset_split(va, 2, 0, &a, &b), ELM_OK);
    size_t oa[MAXN], ob[MAXN];
    assert_int_equal(elm_dataset_set(a, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_set(b, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    drain(a, oa, &m);
    assert_int_equal(m, 4);
    drain(b, ob, &m);
    assert_int_equal(m, 2);
    for (size_t i = 0; i < 4; i++) {
        int in = 0;
        for (size_t j = 0; j < 6; j++) in |= oa[i] == ov[j];
        assert_true(in);
    }
    /* Errors: nothing created. */
    elm_dataset *x = (elm_dataset *)&F, *y = (elm_dataset *)&F;
    assert_int_equal(elm_dataset_split(ds, 0, 0, &x, &y), ELM_E_INVALID);
    assert_int_equal(elm_dataset_split(ds, 20, 0, &x, &y), ELM_E_INVALID);
    assert_true(x == (elm_dataset *)&F && y == (elm_dataset *)&F);
    assert_int_equal(elm_dataset_split(NULL, 1, 0, &x, &y), ELM_E_NULL);
    assert_int_equal(elm_dataset_split(ds, 1, 0, NULL, &y), ELM_E_NULL);
    /* Free the parent first: the halves keep the source alive. */
    elm_dataset_free(ds);
    drain(tr, ot2, &m);
    assert_true(same_order(ot, ot2, 14));
    elm_dataset_free(a);
    elm_dataset_free(b);
    elm_dataset_free(tr3);
    elm_dataset_free(va3);
    elm_dataset_free(tr);
    elm_dataset_free(va);
    elm_dataset_free(tr2);
    elm_dataset_free(va2);
}

/* A caller source over the fixture: random access or streaming. */
typedef struct usrc {
    size_t N, next_i;
    int fail_at;    /* read/next of this sample fails once (-1: never) */
    int freed, resets;
    uint64_t last_epoch;
} usrc;

static void usrc_fill(size_t i, float *x, float *target, int32_t *labels, int64_t *length) {
    for (size_t t = 0; t < TT; t++) {
        for (size_t c = 0; c < NIN; c++) x[t * NIN + c] = xval(i, t, c);
        if (target)
            for (size_t k = 0; k < NTG; k++) target[t * NTG + k] = tval(i, t, k);
    }
    if (labels) labels[0] = l1val(i);
    *length = lenval(i);
}

static int usrc_read(void *user, uint64_t epoch, size_t i, float *x, float *target,
                     int32_t *labels, int64_t *length) {
    usrc *u = user;
    u->last_epoch = epoch;
    for (size_t e = 0; e < TT * NIN; e++)
        if (x[e] != 0) return ELM_E_INTERNAL; /* the buffer must arrive zeroed */
    if ((int)i == u->fail_at) {
        u->fail_at = -1;
        return ELM_E_IO;
    }
    usrc_fill(i, x, target, labels, length);
    return 0;
}

static int usrc_next(void *user, float *x, float *target, int32_t *labels, int64_t *length) {
    usrc *u = user;
    if (u->next_i >= u->N) return 1;
    if ((int)u->next_i == u->fail_at) {
        u->fail_at = -1;
        return ELM_E_IO;
    }
    usrc_fill(u->next_i++, x, target, labels, length);
    return 0;
}

static int usrc_reset(void *user, uint64_t epoch) {
    usrc *u = user;
    u->next_i = 0;
    u->resets++;
    u->last_epoch = epoch;
    return 0;
}

static void usrc_free(void *user) { ((usrc *)user)->freed++; }

static void test_user_source_random(void **st) {
    (void)st;
    fill(&F, 11);
    usrc u = {11, 0, -1, 0, 0, 0};
    elm_source s = {11, TT, NIN, NTG, 1, usrc_read, NULL, NULL, usrc_free, &u};
    elm_dataset *ds = NULL, *ref = make(&F, 1, 1, 1);
    assert_int_equal(elm_dataset_from_source(&s, &ds), ELM_OK);
    /* Identical to the arrays over the same data, shuffled, with prefetch. */
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SEED, 4), ELM_OK);
    assert_int_equal(elm_dataset_set(ref, ELM_DATASET_SEED, 4), ELM_OK);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_PREFETCH, 1), ELM_OK);
    log_epochs(ds, 2, &LA);
    log_epochs(ref, 2, &LB);
    assert_true(!memcmp(&LA, &LB, sizeof LA));
    assert_int_equal(u.last_epoch, 1);
    /* A failing read: the error comes back, nothing is consumed. */
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_start_epoch(ds, 0), ELM_OK);
    u.fail_at = 1;
    batch b = batch_new(4);
    size_t count, ids[4];
    assert_int_equal(elm_dataset_next(ds, 4, b.x, b.target, b.labels, b.lengths, &count), ELM_E_IO);
    assert_non_null(strstr(elm_last_error(), "read()"));
    assert_int_equal(elm_dataset_next(ds, 4, b.x, b.target, b.labels, b.lengths, &count), ELM_OK);
    check_batch(&b, count, F.N, 1, 1, 1, ids);
    assert_true(ids[0] == 0 && ids[1] == 1);
    /* Splits share it; free once, after the last user. */
    elm_dataset *tr, *va;
    assert_int_equal(elm_dataset_split(ds, 3, 0, &tr, &va), ELM_OK);
    elm_dataset_free(ds);
    elm_dataset_free(tr);
    assert_int_equal(u.freed, 0);
    elm_dataset_free(va);
    assert_int_equal(u.freed, 1);
    elm_dataset_free(ref);
    batch_free(&b);

    /* Bad descriptions are refused, and free() still runs. */
    elm_source bad = s;
    bad.next = usrc_next; /* both read and next */
    u.freed = 0;
    assert_int_equal(elm_dataset_from_source(&bad, &ds), ELM_E_INVALID);
    assert_int_equal(u.freed, 1);
    bad = s;
    bad.read = NULL; /* neither */
    assert_int_equal(elm_dataset_from_source(&bad, &ds), ELM_E_INVALID);
    bad = s;
    bad.N = 0;
    assert_int_equal(elm_dataset_from_source(&bad, &ds), ELM_E_SHAPE);
    bad = s;
    bad.n_label = 2;
    assert_int_equal(elm_dataset_from_source(&bad, &ds), ELM_E_SHAPE);
    assert_int_equal(u.freed, 4);
    assert_int_equal(elm_dataset_from_source(NULL, &ds), ELM_E_NULL);
    assert_int_equal(elm_dataset_from_source(&s, NULL), ELM_E_NULL);
    assert_int_equal(u.freed, 5);
}

static int bad_length_read(void *user, uint64_t epoch, size_t i, float *x, float *target,
                           int32_t *labels, int64_t *length) {
    (void)user, (void)epoch, (void)i, (void)x, (void)target, (void)labels;
    *length = TT + 1;
    return 0;
}

static void test_user_source_streaming(void **st) {
    (void)st;
    fill(&F, 11);
    usrc u = {11, 0, -1, 0, 0, 0};
    elm_source s = {0, TT, NIN, NTG, 1, NULL, usrc_next, usrc_reset, usrc_free, &u};
    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_from_source(&s, &ds), ELM_OK);
    size_t n;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_SAMPLES, &n), ELM_OK);
    assert_int_equal(n, 0);
    batch b = batch_new(4);
    size_t count, ids[4];
    /* The source's own order (shuffle ignored); the partial batch padded. */
    for (uint64_t e = 0; e < 2; e++) {
        assert_int_equal(elm_dataset_start_epoch(ds, e), ELM_OK);
        assert_int_equal(u.last_epoch, e);
        for (size_t k = 0; k < 3; k++) {
            assert_int_equal(elm_dataset_next(ds, 4, b.x, b.target, b.labels, b.lengths, &count),
                             ELM_OK);
            assert_int_equal(count, k < 2 ? 4 : 3);
            check_batch(&b, count, F.N, 1, 1, 1, ids);
            for (size_t r = 0; r < count; r++) assert_int_equal(ids[r], 4 * k + r);
        }
        assert_int_equal(elm_dataset_next(ds, 4, b.x, b.target, b.labels, b.lengths, &count),
                         ELM_OK);
        assert_int_equal(count, 0);
    }
    /* A failure mid-batch keeps the samples already pulled. */
    assert_int_equal(elm_dataset_start_epoch(ds, 2), ELM_OK);
    u.fail_at = 2;
    assert_int_equal(elm_dataset_next(ds, 4, b.x, b.target, b.labels, b.lengths, &count), ELM_E_IO);
    assert_non_null(strstr(elm_last_error(), "next()"));
    assert_int_equal(elm_dataset_next(ds, 4, b.x, b.target, b.labels, b.lengths, &count), ELM_OK);
    check_batch(&b, count, F.N, 1, 1, 1, ids);
    for (size_t r = 0; r < 4; r++) assert_int_equal(ids[r], r);
    /* drop_last drops the final 3. */
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_DROP_LAST, 1), ELM_OK);
    assert_int_equal(elm_dataset_next(ds, 4, b.x, b.target, b.labels, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 4);
    assert_int_equal(elm_dataset_next(ds, 4, b.x, b.target, b.labels, b.lengths, &count), ELM_OK);
    assert_int_equal(count, 0);
    /* No split of a stream. */
    elm_dataset *tr, *va;
    assert_int_equal(elm_dataset_split(ds, 1, 0, &tr, &va), ELM_E_UNSUPPORTED);
    elm_dataset_free(ds);
    assert_int_equal(u.freed, 1);

    /* A length outside [1, T] from the caller is refused. */
    elm_source r = {3, TT, NIN, 0, 0, bad_length_read, NULL, NULL, NULL, NULL};
    assert_int_equal(elm_dataset_from_source(&r, &ds), ELM_OK);
    assert_int_equal(elm_dataset_next(ds, 2, b.x, NULL, NULL, NULL, &count), ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "length"));
    elm_dataset_free(ds);
    batch_free(&b);
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
        cmocka_unit_test(test_prefetch_identical),
        cmocka_unit_test(test_prefetch_error),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_user_source_random),
        cmocka_unit_test(test_user_source_streaming),
    };
    return cmocka_run_group_tests_name("dataset", tests, NULL, NULL);
}
