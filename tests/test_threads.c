/* elm_state_set_threads: the streams split over worker threads give the
 * one-thread results within float rounding, the same bits for the same n,
 * and the same error behaviour (state untouched on NaN input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* 16 streams: groups of 16, 8, 5-6 and 4 streams take both the BLIS and
 * the small-kernel products (ELM_SMALL_BATCH = 8). */
static const spec base = {ELM_V1, ELM_SILU, 40, 3, 12, 1, 20, 8, 10, ELM_ROUTING_NEURONIO, 1.0, 1.0,
                          150.0, 5.0, false, 16, 300, 0.05f};

typedef struct run {
    float *y, *branch, *mem, *syn, *state, *ystep;
} run;

static void run_free(run *r) {
    free(r->y); free(r->branch); free(r->mem); free(r->syn); free(r->state); free(r->ystep);
}

/* A traced forward over T steps from zero, then 20 single steps. */
static run run_with(elm_state *s, const elm_model *m, const spec *p, const float *x) {
    size_t B = p->B, T = p->T, n_out = (size_t)p->n_out, per, n_s, n_b, n_m;
    elm_model_size(m, ELM_SIZE_STATE, &per);
    n_b = (size_t)p->n_b; n_m = (size_t)p->n_m; n_s = n_b * (size_t)p->k;
    run r = {malloc(B * T * n_out * 4), malloc(B * T * n_b * 4), malloc(B * T * n_m * 4),
             malloc(B * T * n_s * 4), malloc(B * per * 4), malloc(20 * B * n_out * 4)};
    memset(r.syn, 0, B * T * n_s * 4); /* v2 has none */
    assert_int_equal(elm_state_reset(s, ELM_ALL_STREAMS), ELM_OK);
    assert_int_equal(elm_state_forward_traced(s, x, T, r.y, p->version == ELM_V1 ? r.syn : NULL,
                                              r.branch, r.mem), ELM_OK);
    /* stream steps: step t of every stream is x[b, t] */
    float *row = malloc(B * (size_t)p->n_in * 4);
    for (size_t t = 0; t < 20; t++) {
        for (size_t b = 0; b < B; b++)
            memcpy(row + b * p->n_in, x + (b * T + t) * p->n_in, (size_t)p->n_in * 4);
        assert_int_equal(elm_state_step(s, row, r.ystep + t * B * n_out), ELM_OK);
    }
    free(row);
    assert_int_equal(elm_state_get(s, r.state, B * per), ELM_OK);
    return r;
}

static void compare(const run *a, const run *b, const spec *p, size_t per, double tol) {
    size_t B = p->B, T = p->T, n_s = (size_t)p->n_b * (size_t)p->k;
    if (tol == 0) {
        assert_memory_equal(a->y, b->y, B * T * p->n_out * 4);
        assert_memory_equal(a->syn, b->syn, B * T * n_s * 4);
        assert_memory_equal(a->mem, b->mem, B * T * p->n_m * 4);
        assert_memory_equal(a->state, b->state, B * per * 4);
        assert_memory_equal(a->ystep, b->ystep, 20 * B * p->n_out * 4);
        return;
    }
    assert_close_f(a->y, b->y, B * T * p->n_out, tol, "y");
    assert_close_f(a->syn, b->syn, B * T * n_s, tol, "syn");
    assert_close_f(a->branch, b->branch, B * T * p->n_b, tol, "branch");
    assert_close_f(a->mem, b->mem, B * T * p->n_m, tol, "mem");
    assert_close_f(a->state, b->state, B * per, tol, "state");
    assert_close_f(a->ystep, b->ystep, 20 * B * p->n_out, tol, "step y");
}

static void check_spec(const spec *p, uint64_t seed) {
    elm_model *m = make_model(p, seed);
    assert_non_null(m);
    float *x = make_input(p, seed + 1);
    size_t per;
    elm_model_size(m, ELM_SIZE_STATE, &per);
    elm_state *s;
    assert_int_equal(elm_state_create(m, p->B, &s), ELM_OK);
    run one = run_with(s, m, p, x);
    /* back and forth: every n twice, with other n in between */
    const int ns[] = {2, 3, 4, (int)p->B, 1, 3, 2}; /* B <= 16 */
    run seen[17] = {{0}};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        int n = ns[i];
        assert_int_equal(elm_state_set_threads(s, n), ELM_OK);
        run r = run_with(s, m, p, x);
        compare(&r, &one, p, per, 1e-5);
        if (n == 1) compare(&r, &one, p, per, 0);
        if (seen[n].y) {
            compare(&r, &seen[n], p, per, 0); /* deterministic for a given n */
            run_free(&r);
        } else {
            seen[n] = r;
        }
    }
    for (int n = 0; n <= 16; n++) run_free(&seen[n]);
    run_free(&one);
    elm_state_free(s);
    free(x);
    elm_model_free(m);
}

static void test_equal_v1_collapsed(void **st) { (void)st; check_spec(&base, 1); }

static void test_equal_v1_per_synapse(void **st) {
    (void)st;
    spec p = base;
    p.spread_tau = true;
    p.act = ELM_RELU;
    check_spec(&p, 3);
}

static void test_equal_v2_deep(void **st) {
    (void)st;
    spec p = base;
    p.version = ELM_V2; p.L = 2; p.H = 24; p.B = 13; p.T = 700; /* T > one chunk */
    check_spec(&p, 5);
}

/* The first non-finite input in (t, b) order is reported, as with one
 * thread, and every group's state is as before the call. */
static void test_nonfinite_rollback(void **st) {
    (void)st;
    spec p = base;
    p.T = 600;
    elm_model *m = make_model(&p, 31);
    float *x = make_input(&p, 32);
    size_t per, B = p.B, n_in = (size_t)p.n_in;
    elm_model_size(m, ELM_SIZE_STATE, &per);
    float *y = malloc(B * p.T * p.n_out * 4), *before = malloc(B * per * 4),
          *after = malloc(B * per * 4), *row = calloc(B * n_in, 4);
    for (int n = 1; n <= 4; n++) {
        elm_state *s;
        assert_int_equal(elm_state_create(m, B, &s), ELM_OK);
        assert_int_equal(elm_state_set_threads(s, n), ELM_OK);
        for (int t = 0; t < 7; t++) assert_int_equal(elm_state_step(s, x + t * B * n_in, NULL), ELM_OK);
        elm_state_get(s, before, B * per);
        float *xs = malloc(B * p.T * n_in * 4);
        memcpy(xs, x, B * p.T * n_in * 4);
        xs[(14 * p.T + 590) * n_in + 3] = NAN;      /* last group, step 590 */
        xs[(1 * p.T + 595) * n_in + 5] = INFINITY;  /* first group, later */
        assert_int_equal(elm_state_forward(s, xs, p.T, y), ELM_E_NONFINITE);
        assert_non_null(strstr(elm_last_error(), "x[14, 590, 3]"));
        elm_state_get(s, after, B * per);
        assert_memory_equal(before, after, B * per * 4);
        free(xs);

        memcpy(row, x, B * n_in * 4);
        row[15 * n_in + 4] = INFINITY; /* last stream only */
        for (size_t i = 0; i < B * p.n_out; i++) y[i] = 7.0f; /* outputs stay as before */
        assert_int_equal(elm_state_step(s, row, y), ELM_E_NONFINITE);
        for (size_t i = 0; i < B * p.n_out; i++) assert_true(y[i] == 7.0f);
        assert_non_null(strstr(elm_last_error(), "x[15, 4]"));
        elm_state_get(s, after, B * per);
        assert_memory_equal(before, after, B * per * 4);
        row[15 * n_in + 4] = 0;
        row[0 * n_in + 1] = NAN;       /* first stream only */
        assert_int_equal(elm_state_step(s, row, y), ELM_E_NONFINITE);
        assert_non_null(strstr(elm_last_error(), "x[0, 1]"));
        elm_state_get(s, after, B * per);
        assert_memory_equal(before, after, B * per * 4);
        elm_state_free(s);
    }
    free(before); free(after); free(y); free(x); free(row);
    elm_model_free(m);
}

static void test_set_threads_errors(void **st) {
    (void)st;
    spec p = base;
    p.B = 3;
    elm_model *m = make_model(&p, 41);
    elm_state *s;
    assert_int_equal(elm_state_create(m, 3, &s), ELM_OK);
    assert_int_equal(elm_state_set_threads(NULL, 1), ELM_E_NULL);
    assert_int_equal(elm_state_set_threads(s, 0), ELM_E_INVALID);
    assert_int_equal(elm_state_set_threads(s, -2), ELM_E_INVALID);
    assert_int_equal(elm_state_set_threads(s, 4), ELM_E_INVALID);
    assert_int_equal(elm_state_set_threads(s, 3), ELM_OK);
    assert_int_equal(elm_state_set_threads(s, 3), ELM_OK);
    assert_int_equal(elm_state_set_threads(s, 4), ELM_E_INVALID); /* still 3 threads */
    assert_int_equal(elm_state_set_threads(s, 1), ELM_OK);
    elm_state_free(s);
    elm_model_free(m);
}

/* Freeing a state whose workers are waiting (never used, or just used). */
static void test_free_with_workers(void **st) {
    (void)st;
    spec p = base;
    elm_model *m = make_model(&p, 51);
    float *x = make_input(&p, 52), *y = malloc(p.B * p.T * p.n_out * 4);
    for (int k = 0; k < 20; k++) {
        elm_state *s;
        assert_int_equal(elm_state_create(m, p.B, &s), ELM_OK);
        assert_int_equal(elm_state_set_threads(s, 2 + k % 3), ELM_OK);
        if (k % 2) assert_int_equal(elm_state_forward(s, x, 10, y), ELM_OK);
        if (k % 4 == 1) assert_int_equal(elm_state_set_threads(s, 1 + k % 5), ELM_OK);
        elm_state_free(s);
    }
    free(x); free(y);
    elm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_v1_collapsed),
        cmocka_unit_test(test_equal_v1_per_synapse),
        cmocka_unit_test(test_equal_v2_deep),
        cmocka_unit_test(test_nonfinite_rollback),
        cmocka_unit_test(test_set_threads_errors),
        cmocka_unit_test(test_free_with_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
