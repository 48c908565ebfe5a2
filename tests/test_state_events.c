/* elm_state_step_events / elm_state_forward_events: event input gives the
 * dense call's results bit for bit when channels increase within a row,
 * within rounding in any other order or with repeated channels, on every
 * thread count; and every malformed argument is refused with the state and
 * y untouched. */
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

/* 16 streams and a chunk boundary inside T; both the BLIS and the
 * small-kernel products run. */
static const spec base = {ELM_V1, ELM_SILU, 40, 3, 12, 1, 20, 8, 10, ELM_ROUTING_NEURONIO, 1.0, 1.0,
                          150.0, 5.0, false, 16, 300, 0.05f};

/* x (B, T, n_in) as events in `order`: forward over T, then 10 steps of
 * the first 10 steps again, once dense and once as events, on n threads;
 * y and the final state must agree (tol 0: the same bits). */
static void compare_paths(const spec *p, uint64_t seed, int order, int n, double tol) {
    elm_model *m = make_model(p, seed);
    assert_non_null(m);
    float *x = make_input(p, seed + 1);
    size_t B = p->B, T = p->T, n_in = (size_t)p->n_in, n_out = (size_t)p->n_out, per;
    elm_model_size(m, ELM_SIZE_STATE, &per);
    csr seq = csr_from_dense(x, B * T, p->n_in, order);
    float *y[2], *ys[2], *st[2];
    float *row = malloc(B * n_in * 4);
    for (int path = 0; path < 2; path++) {
        y[path] = malloc(B * T * n_out * 4);
        ys[path] = malloc(10 * B * n_out * 4);
        st[path] = malloc(B * per * 4);
        elm_state *s;
        assert_int_equal(elm_state_create(m, B, &s), ELM_OK);
        if (n > 1) assert_int_equal(elm_state_set_threads(s, n), ELM_OK);
        if (path == 0)
            assert_int_equal(elm_state_forward(s, x, T, y[0]), ELM_OK);
        else
            assert_int_equal(elm_state_forward_events(s, T, seq.off, seq.ch, seq.val, y[1]), ELM_OK);
        for (size_t t = 0; t < 10; t++) {
            for (size_t b = 0; b < B; b++) memcpy(row + b * n_in, x + (b * T + t) * n_in, n_in * 4);
            if (path == 0) {
                assert_int_equal(elm_state_step(s, row, ys[0] + t * B * n_out), ELM_OK);
            } else {
                csr one = csr_from_dense(row, B, p->n_in, order);
                assert_int_equal(elm_state_step_events(s, one.off, one.ch, one.val,
                                                       ys[1] + t * B * n_out), ELM_OK);
                csr_free(&one);
            }
        }
        assert_int_equal(elm_state_get(s, st[path], B * per), ELM_OK);
        elm_state_free(s);
    }
    if (tol == 0) {
        assert_memory_equal(y[0], y[1], B * T * n_out * 4);
        assert_memory_equal(ys[0], ys[1], 10 * B * n_out * 4);
        assert_memory_equal(st[0], st[1], B * per * 4);
    } else {
        assert_close_f(y[1], y[0], B * T * n_out, tol, "forward y");
        assert_close_f(ys[1], ys[0], 10 * B * n_out, tol, "step y");
        assert_close_f(st[1], st[0], B * per, tol, "state");
    }
    for (int path = 0; path < 2; path++) { free(y[path]); free(ys[path]); free(st[path]); }
    free(row);
    csr_free(&seq);
    free(x);
    elm_model_free(m);
}

static void test_bits_v1_collapsed(void **st) {
    (void)st;
    for (int n = 1; n <= 3; n++) compare_paths(&base, 1, CSR_INCREASING, n, 0);
}

static void test_bits_v1_per_synapse(void **st) {
    (void)st;
    spec p = base;
    p.spread_tau = true;
    p.act = ELM_RELU;
    compare_paths(&p, 3, CSR_INCREASING, 1, 0);
    compare_paths(&p, 3, CSR_INCREASING, 4, 0);
}

static void test_bits_v2_deep_long(void **st) {
    (void)st;
    spec p = base;
    p.version = ELM_V2; p.L = 2; p.H = 24; p.B = 13; p.T = 700; /* T > one chunk */
    compare_paths(&p, 5, CSR_INCREASING, 1, 0);
    compare_paths(&p, 5, CSR_INCREASING, 2, 0);
}

/* One stream takes the fused B = 1 step kernels. */
static void test_bits_one_stream(void **st) {
    (void)st;
    spec p = base;
    p.B = 1;
    compare_paths(&p, 7, CSR_INCREASING, 1, 0);
}

static void test_any_order_and_repeats(void **st) {
    (void)st;
    compare_paths(&base, 9, CSR_REVERSED, 1, 1e-5);
    compare_paths(&base, 9, CSR_SPLIT, 2, 1e-5);
    spec p = base;
    p.version = ELM_V2;
    compare_paths(&p, 11, CSR_SPLIT, 1, 1e-5);
}

/* values = NULL means every event is 1: the same as dense spikes. */
static void test_null_values_are_spikes(void **st) {
    (void)st;
    spec p = base;
    p.B = 4; p.T = 50;
    elm_model *m = make_model(&p, 13);
    float *x = make_input(&p, 14);
    size_t rows = p.B * p.T, n = rows * (size_t)p.n_in, nout = rows * (size_t)p.n_out;
    for (size_t i = 0; i < n; i++) x[i] = x[i] != 0.0f ? 1.0f : 0.0f;
    csr c = csr_from_dense(x, rows, p.n_in, CSR_INCREASING);
    float *y0 = malloc(nout * 4), *y1 = malloc(nout * 4);
    elm_state *s;
    assert_int_equal(elm_state_create(m, p.B, &s), ELM_OK);
    assert_int_equal(elm_state_forward(s, x, p.T, y0), ELM_OK);
    assert_int_equal(elm_state_reset(s, ELM_ALL_STREAMS), ELM_OK);
    assert_int_equal(elm_state_forward_events(s, p.T, c.off, c.ch, NULL, y1), ELM_OK);
    assert_memory_equal(y0, y1, nout * 4);
    /* y may be NULL; the state still advances */
    assert_int_equal(elm_state_forward_events(s, p.T, c.off, c.ch, NULL, NULL), ELM_OK);
    free(y0); free(y1);
    csr_free(&c);
    elm_state_free(s);
    free(x);
    elm_model_free(m);
}

/* One stream's recording as a single CSR array over its steps, stepped by
 * passing offsets + t (offsets need not start at 0). */
static void test_step_through_recording(void **st) {
    (void)st;
    spec p = base;
    p.B = 1; p.T = 60;
    elm_model *m = make_model(&p, 19);
    float *x = make_input(&p, 20);
    csr c = csr_from_dense(x, p.T, p.n_in, CSR_INCREASING);
    assert_true(c.off[30] > 0);
    float y0[3], y1[3];
    elm_state *s0, *s1;
    assert_int_equal(elm_state_create(m, 1, &s0), ELM_OK);
    assert_int_equal(elm_state_create(m, 1, &s1), ELM_OK);
    for (size_t t = 0; t < p.T; t++) {
        assert_int_equal(elm_state_step(s0, x + t * (size_t)p.n_in, y0), ELM_OK);
        assert_int_equal(elm_state_step_events(s1, c.off + t, c.ch, c.val, y1), ELM_OK);
        assert_memory_equal(y0, y1, sizeof y0);
    }
    elm_state_free(s0);
    elm_state_free(s1);
    csr_free(&c);
    free(x);
    elm_model_free(m);
}

/* Bad arguments: an error naming the problem, and neither the state nor y
 * changes. */
static void test_refused_untouched(void **st) {
    (void)st;
    spec p = base;
    p.B = 2; p.T = 3;
    elm_model *m = make_model(&p, 17);
    size_t per, B = p.B, T = p.T;
    elm_model_size(m, ELM_SIZE_STATE, &per);
    elm_state *s;
    assert_int_equal(elm_state_create(m, B, &s), ELM_OK);
    /* advance once so the state is not zero */
    int64_t off1[] = {0, 2, 3};
    int32_t ch1[] = {1, 5, 7};
    float val1[] = {0.5f, -1.0f, 2.0f};
    assert_int_equal(elm_state_step_events(s, off1, ch1, val1, NULL), ELM_OK);
    float *before = malloc(B * per * 4), *after = malloc(B * per * 4), y[6 * 3];
    assert_int_equal(elm_state_get(s, before, B * per), ELM_OK);

    int64_t off[7] = {0, 1, 1, 2, 2, 3, 3}; /* rows b * T + t */
    int32_t ch[3] = {0, 4, 39};
    float val[3] = {1, 1, 1};
    struct { const char *what; int rc; int64_t off_fix; int32_t ch_fix; float val_fix; } bad[] = {
        {"negative offsets[0]", ELM_E_INVALID, 1, -1, 0},
        {"decreasing offsets", ELM_E_INVALID, 2, -1, 0},
        {"channel < 0", ELM_E_INVALID, 0, -5, 0},
        {"channel = n_in", ELM_E_INVALID, 0, 40, 0},
        {"NaN value", ELM_E_NONFINITE, 0, -1, NAN},
        {"Inf value", ELM_E_NONFINITE, 0, -1, INFINITY},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        /* forward: rows (b, t), event 2 in row 4 = stream 1, step 1;
         * step: rows are the streams, event 2 in row 1 = stream 1 */
        int64_t o[7], os[3] = {0, 1, 3};
        int32_t c[3];
        float v[3];
        memcpy(o, off, sizeof o); memcpy(c, ch, sizeof c); memcpy(v, val, sizeof v);
        if (bad[i].off_fix == 1) o[0] = os[0] = -1;
        if (bad[i].off_fix == 2) { o[4] = 1; os[2] = 0; } /* offsets[k] < offsets[k-1] */
        if (bad[i].ch_fix != -1) c[2] = bad[i].ch_fix;
        if (bad[i].val_fix != 0) v[2] = bad[i].val_fix;
        for (size_t k = 0; k < 18; k++) y[k] = 42.0f;
        int rc = elm_state_forward_events(s, T, o, c, v, y);
        if (rc != bad[i].rc) fail_msg("%s: got %d (%s)", bad[i].what, rc, elm_last_error());
        assert_non_null(strstr(elm_last_error(), "elm_state_forward_events"));
        if (bad[i].off_fix == 0 && !strstr(elm_last_error(), "stream 1, step 1"))
            fail_msg("%s: %s", bad[i].what, elm_last_error());
        rc = elm_state_step_events(s, os, c, v, y);
        if (rc != bad[i].rc) fail_msg("%s (step): got %d (%s)", bad[i].what, rc, elm_last_error());
        if (bad[i].off_fix == 0) assert_non_null(strstr(elm_last_error(), "stream 1, step 0"));
        for (size_t k = 0; k < 18; k++) assert_true(y[k] == 42.0f);
        assert_int_equal(elm_state_get(s, after, B * per), ELM_OK);
        assert_memory_equal(before, after, B * per * 4);
    }
    /* NULLs */
    assert_int_equal(elm_state_forward_events(NULL, T, off, ch, val, y), ELM_E_NULL);
    assert_int_equal(elm_state_step_events(NULL, off, ch, val, y), ELM_E_NULL);
    assert_int_equal(elm_state_forward_events(s, T, NULL, ch, val, y), ELM_E_NULL);
    assert_int_equal(elm_state_step_events(s, NULL, ch, val, y), ELM_E_NULL);
    assert_int_equal(elm_state_forward_events(s, T, off, NULL, val, y), ELM_E_NULL);
    assert_int_equal(elm_state_get(s, after, B * per), ELM_OK);
    assert_memory_equal(before, after, B * per * 4);
    /* no events at all: channels and values may be NULL, and the state
     * still decays */
    int64_t empty[7] = {0};
    assert_int_equal(elm_state_forward_events(s, T, empty, NULL, NULL, y), ELM_OK);
    assert_int_equal(elm_state_forward_events(s, 0, NULL, NULL, NULL, NULL), ELM_OK); /* T = 0 */
    assert_int_equal(elm_state_get(s, after, B * per), ELM_OK);
    assert_memory_not_equal(before, after, B * per * 4);
    free(before); free(after);
    elm_state_free(s);
    elm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bits_v1_collapsed),
        cmocka_unit_test(test_bits_v1_per_synapse),
        cmocka_unit_test(test_bits_v2_deep_long),
        cmocka_unit_test(test_bits_one_stream),
        cmocka_unit_test(test_any_order_and_repeats),
        cmocka_unit_test(test_null_values_are_spikes),
        cmocka_unit_test(test_step_through_recording),
        cmocka_unit_test(test_refused_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
