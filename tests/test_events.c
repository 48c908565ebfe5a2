/* Event lists binned to a time step: counts per bin, the cut at the
 * duration, T, labels, and every malformed input refused with the sample
 * and event named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elm.h"

/* Three samples over 4 channels:
 *   0: ch 1 at 0 ms, ch 1 at 1.9 ms (same 2 ms bin), ch 3 at 2 ms (edge:
 *      next bin), ch 0 at 9.99 ms (last bin), ch 2 at 10 ms (cut)
 *   1: no events
 *   2: ch 3 at 5 ms */
static const int64_t OFF[] = {0, 5, 5, 6};
static const float TIMES[] = {0.0f, 1.9f, 2.0f, 9.99f, 10.0f, 5.0f};
static const int32_t CH[] = {1, 1, 3, 0, 2, 3};
static const int32_t LAB[] = {7, 8, 9};

static void test_binning(void **st) {
    (void)st;
    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_from_events(3, 4, OFF, TIMES, CH, LAB, 2.0, 10.0, &ds), ELM_OK);
    size_t T, n_in, nl;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_STEPS, &T), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_INPUTS, &n_in), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_LABELS, &nl), ELM_OK);
    assert_int_equal(T, 5);
    assert_int_equal(n_in, 4);
    assert_int_equal(nl, 1);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    float x[3][5][4];
    int32_t labels[3];
    int64_t len[3];
    size_t count;
    assert_int_equal(elm_dataset_next(ds, 3, &x[0][0][0], NULL, labels, len, &count), ELM_OK);
    assert_int_equal(count, 3);
    float want[3][5][4] = {{{0}}};
    want[0][0][1] = 2; /* 0 and 1.9 ms */
    want[0][1][3] = 1; /* 2 ms: bin 1 */
    want[0][4][0] = 1; /* 9.99 ms */
    want[2][2][3] = 1; /* 5 ms */
    assert_memory_equal(x, want, sizeof x);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(labels[i], LAB[i]);
        assert_int_equal(len[i], 5);
    }
    elm_dataset_free(ds);

    /* T = ceil(duration / dt), exact ratios not rounded up by float error;
     * no labels. */
    static const struct { double dt, dur; size_t T; } cases[] = {
        {0.1, 1000, 10000}, {3, 10, 4}, {1, 1, 1}, {7, 1, 1}, {0.3, 0.9, 3}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        assert_int_equal(elm_dataset_from_events(3, 4, OFF, TIMES, CH, NULL, cases[k].dt,
                                                 cases[k].dur, &ds), ELM_OK);
        assert_int_equal(elm_dataset_size(ds, ELM_DATASET_STEPS, &T), ELM_OK);
        assert_int_equal(T, cases[k].T);
        assert_int_equal(elm_dataset_size(ds, ELM_DATASET_LABELS, &nl), ELM_OK);
        assert_int_equal(nl, 0);
        elm_dataset_free(ds);
    }
}

/* Random events against a direct count with floor(t / dt). */
static void test_random_counts(void **st) {
    (void)st;
    enum { N = 6, NIN = 5, E = 400 };
    int64_t off[N + 1];
    float *t = malloc(E * sizeof *t);
    int32_t *c = malloc(E * sizeof *c);
    unsigned s = 12345;
    for (int i = 0; i <= N; i++) off[i] = (int64_t)i * E / N;
    for (int e = 0; e < E; e++) {
        s = s * 1103515245u + 12345u;
        t[e] = (float)((s >> 8) % 12000) / 10.0f; /* [0, 1200) ms, some cut */
        c[e] = (int32_t)((s >> 4) % NIN);
    }
    const double dt = 7.0, dur = 1000.0;
    const size_t T = 143; /* ceil(1000 / 7) */
    elm_dataset *ds;
    assert_int_equal(elm_dataset_from_events(N, NIN, off, t, c, NULL, dt, dur, &ds), ELM_OK);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    float *x = malloc(N * T * NIN * sizeof *x), *want = calloc(N * T * NIN, sizeof *want);
    size_t count;
    assert_int_equal(elm_dataset_next(ds, N, x, NULL, NULL, NULL, &count), ELM_OK);
    assert_int_equal(count, N);
    for (int i = 0; i < N; i++)
        for (int64_t e = off[i]; e < off[i + 1]; e++)
            if (t[e] < dur) want[((size_t)i * T + (size_t)floor(t[e] / dt)) * NIN + c[e]] += 1;
    assert_memory_equal(x, want, N * T * NIN * sizeof *x);
    elm_dataset_free(ds);
    free(x);
    free(want);
    free(t);
    free(c);
}

static void test_errors(void **st) {
    (void)st;
    elm_dataset *ds = (elm_dataset *)&ds;
    float t[6];
    int32_t c[6];
    int64_t off[4];
#define RESET() memcpy(t, TIMES, sizeof t), memcpy(c, CH, sizeof c), memcpy(off, OFF, sizeof off)
    RESET();
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, 10, NULL), ELM_E_NULL);
    assert_int_equal(elm_dataset_from_events(3, 4, NULL, t, c, NULL, 2, 10, &ds), ELM_E_NULL);
    assert_int_equal(elm_dataset_from_events(3, 4, off, NULL, c, NULL, 2, 10, &ds), ELM_E_NULL);
    assert_int_equal(elm_dataset_from_events(0, 4, off, t, c, NULL, 2, 10, &ds), ELM_E_SHAPE);
    assert_int_equal(elm_dataset_from_events(3, 0, off, t, c, NULL, 2, 10, &ds), ELM_E_SHAPE);
    static const double bad[] = {0, -1, NAN, INFINITY};
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, bad[k], 10, &ds),
                         ELM_E_INVALID);
        assert_non_null(strstr(elm_last_error(), "dt_ms"));
        assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, bad[k], &ds),
                         ELM_E_INVALID);
        assert_non_null(strstr(elm_last_error(), "duration_ms"));
    }
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 1e-9, 1e6, &ds), ELM_E_LIMIT);
    t[5] = -0.5f;
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, 10, &ds), ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "sample 2, event 5"));
    t[5] = NAN;
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, 10, &ds), ELM_E_INVALID);
    t[5] = INFINITY;
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, 10, &ds), ELM_E_INVALID);
    RESET();
    c[2] = 4;
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, 10, &ds), ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "channel 4"));
    c[2] = -1;
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, 10, &ds), ELM_E_INVALID);
    RESET();
    off[2] = 4; /* decreasing */
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, 10, &ds), ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "offsets"));
    RESET();
    off[0] = 1;
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, 10, &ds), ELM_E_INVALID);
    assert_true(ds == (elm_dataset *)&ds); /* nothing created */

    /* Borrowed: a channel broken after creation is caught when read, not
     * written out of bounds. */
    RESET();
    assert_int_equal(elm_dataset_from_events(3, 4, off, t, c, NULL, 2, 10, &ds), ELM_OK);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    c[5] = 1000;
    float x[3 * 5 * 4];
    size_t count = 42;
    assert_int_equal(elm_dataset_next(ds, 3, x, NULL, NULL, NULL, &count), ELM_E_INVALID);
    assert_int_equal(count, 42);
    c[5] = 3;
    assert_int_equal(elm_dataset_next(ds, 3, x, NULL, NULL, NULL, &count), ELM_OK);
    assert_int_equal(count, 3);
    elm_dataset_free(ds);
#undef RESET
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binning),
        cmocka_unit_test(test_random_counts),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
