/* Sequence forward and streaming state against the official fixtures and
 * against the naive double-precision reference in common.c. */
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

static void assert_close_d(const float *a, const double *b, size_t n, double tol, const char *what) {
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)a[i] - b[i]) / (1 + fabs(b[i]));
        if (!(err <= worst)) { worst = err; at = i; }
    }
    if (!(worst <= tol))
        fail_msg("%s: element %zu differs: %.9g vs %.9g (scaled error %.3g > %.3g)", what, at,
                 (double)a[at], b[at], worst, tol);
}

static void run_fixture(const char *name) {
    char dir[1200], path[1300];
    if (!fixture_dir(name, dir, sizeof dir)) {
        print_message("SKIP %s: fixture not found (tests/data or ../shared/reference/fixtures)\n", name);
        skip();
    }
    elm_model *m = fixture_model(dir);
    assert_non_null(m);
    npy x, y;
    snprintf(path, sizeof path, "%s/x.npy", dir);
    assert_int_equal(npy_load(path, &x), 0);
    snprintf(path, sizeof path, "%s/y.npy", dir);
    assert_int_equal(npy_load(path, &y), 0);
    size_t B = (size_t)x.shape[0], T = (size_t)x.shape[1];
    float *out = malloc(y.numel * sizeof *out);
    assert_int_equal(elm_model_forward(m, x.data, B, T, out), ELM_OK);
    assert_close_f(out, y.data, y.numel, 1e-5, name);

    /* streaming, one step at a time, equals the sequence forward */
    size_t n_in, n_out;
    elm_model_size(m, ELM_SIZE_INPUT, &n_in);
    elm_model_size(m, ELM_SIZE_OUTPUT, &n_out);
    elm_state *s;
    assert_int_equal(elm_state_create(m, B, &s), ELM_OK);
    float *xt = malloc(B * n_in * sizeof *xt), *yt = malloc(B * n_out * sizeof *yt);
    float *stream = malloc(y.numel * sizeof *stream);
    for (size_t t = 0; t < T; t++) {
        for (size_t b = 0; b < B; b++)
            memcpy(xt + b * n_in, (float *)x.data + (b * T + t) * n_in, n_in * sizeof *xt);
        assert_int_equal(elm_state_step(s, xt, yt), ELM_OK);
        for (size_t b = 0; b < B; b++)
            memcpy(stream + (b * T + t) * n_out, yt + b * n_out, n_out * sizeof *yt);
    }
    assert_close_f(stream, out, y.numel, 1e-5, "step vs sequence");
    assert_close_f(stream, y.data, y.numel, 1e-5, "step vs reference");
    elm_state_free(s);
    free(xt); free(yt); free(stream); free(out);
    npy_free(&x); npy_free(&y);
    elm_model_free(m);
}

static void test_fixture_tiny_v1_relu(void **st) { (void)st; run_fixture("tiny_v1_relu"); }
static void test_fixture_tiny_v2_silu_branch(void **st) { (void)st; run_fixture("tiny_v2_silu_branch"); }
static void test_fixture_branch_neuronio_routing(void **st) { (void)st; run_fixture("branch_neuronio_routing"); }
static void test_fixture_pretrained(void **st) { (void)st; run_fixture("pretrained_best_elm_neuron"); }

/* The routing libelm builds for a fresh model equals the reference's. */
static void check_routing(const char *name) {
    char dir[1200], path[1300];
    if (!fixture_dir(name, dir, sizeof dir)) {
        print_message("SKIP %s: fixture not found\n", name);
        skip();
    }
    elm_model *fx = fixture_model(dir);
    assert_non_null(fx);
    elm_config *cfg;
    assert_int_equal(elm_config_copy(elm_model_config(fx), &cfg), ELM_OK);
    elm_model *m;
    assert_int_equal(elm_model_create(cfg, 99, &m), ELM_OK);
    size_t n_s;
    elm_model_size(m, ELM_SIZE_SYNAPSE, &n_s);
    int64_t *idx = malloc(n_s * 8);
    uint8_t *mask = malloc(n_s);
    assert_int_equal(elm_model_get_routing(m, idx, mask, n_s), ELM_OK);
    npy ri, rm;
    snprintf(path, sizeof path, "%s/param.input_to_synapse_indices.npy", dir);
    assert_int_equal(npy_load(path, &ri), 0);
    snprintf(path, sizeof path, "%s/param.valid_indices_mask.npy", dir);
    assert_int_equal(npy_load(path, &rm), 0);
    assert_int_equal(ri.numel, n_s);
    for (size_t j = 0; j < n_s; j++) {
        assert_int_equal(idx[j], ((int64_t *)ri.data)[j]);
        assert_int_equal(mask[j], ((uint8_t *)rm.data)[j]);
    }
    npy_free(&ri); npy_free(&rm);
    free(idx); free(mask);
    elm_config_free(cfg);
    elm_model_free(m);
    elm_model_free(fx);
}
static void test_routing_branch(void **st) { (void)st; check_routing("branch_neuronio_routing"); }
static void test_routing_pretrained(void **st) { (void)st; check_routing("pretrained_best_elm_neuron"); }

/* ---- random models against the naive reference ------------------------- */

static void check_against_naive(const spec *p, uint64_t seed) {
    elm_model *m = make_model(p, seed);
    assert_non_null(m);
    float *x = make_input(p, seed + 100);
    size_t B = p->B, T = p->T, n_s, n_b;
    elm_model_size(m, ELM_SIZE_SYNAPSE, &n_s);
    elm_model_size(m, ELM_SIZE_BRANCH, &n_b);
    size_t ny = B * T * (size_t)p->n_out;
    double *yr = malloc(ny * 8), *syn = malloc(B * T * n_s * 8), *br = malloc(B * T * n_b * 8),
           *mem = malloc(B * T * (size_t)p->n_m * 8);
    naive_forward(m, x, B, T, yr, syn, br, mem);
    float *y = malloc(ny * 4), *fsyn = malloc(B * T * n_s * 4), *fbr = malloc(B * T * n_b * 4),
          *fmem = malloc(B * T * (size_t)p->n_m * 4);
    elm_state *s;
    assert_int_equal(elm_state_create(m, B, &s), ELM_OK);
    int rc = elm_state_forward_traced(s, x, T, y, p->version == ELM_V1 ? fsyn : NULL, fbr, fmem);
    if (rc) fail_msg("forward: %s", elm_last_error());
    assert_close_d(y, yr, ny, 2e-5, "y vs naive");
    assert_close_d(fbr, br, B * T * n_b, 2e-5, "branch trace vs naive");
    assert_close_d(fmem, mem, B * T * (size_t)p->n_m, 2e-5, "memory vs naive");
    if (p->version == ELM_V1) assert_close_d(fsyn, syn, B * T * n_s, 2e-5, "synaptic trace vs naive");

    /* split the sequence in two calls at an odd point: same result */
    float *y2 = malloc(ny * 4);
    size_t T1 = T / 3 + 1;
    float *xa = malloc(B * T1 * (size_t)p->n_in * 4), *xb = malloc(B * (T - T1) * (size_t)p->n_in * 4);
    float *ya = malloc(B * T1 * (size_t)p->n_out * 4), *yb = malloc(B * (T - T1) * (size_t)p->n_out * 4);
    for (size_t b = 0; b < B; b++) {
        memcpy(xa + b * T1 * p->n_in, x + b * T * p->n_in, T1 * p->n_in * 4);
        memcpy(xb + b * (T - T1) * p->n_in, x + (b * T + T1) * p->n_in, (T - T1) * p->n_in * 4);
    }
    elm_state_reset(s, ELM_ALL_STREAMS);
    assert_int_equal(elm_state_forward(s, xa, T1, ya), ELM_OK);
    assert_int_equal(elm_state_forward(s, xb, T - T1, yb), ELM_OK);
    for (size_t b = 0; b < B; b++) {
        memcpy(y2 + b * T * p->n_out, ya + b * T1 * p->n_out, T1 * p->n_out * 4);
        memcpy(y2 + (b * T + T1) * p->n_out, yb + b * (T - T1) * p->n_out, (T - T1) * p->n_out * 4);
    }
    assert_close_f(y2, y, ny, 1e-6, "split sequence vs whole");
    free(xa); free(xb); free(ya); free(yb); free(y2);

    /* each stream alone, step by step: a one-stream state carries layer
     * 0's branch part from step to step (refreshed every 64 steps), and
     * still follows the reference */
    elm_state *s1;
    assert_int_equal(elm_state_create(m, 1, &s1), ELM_OK);
    float *ys = malloc(T * (size_t)p->n_out * 4);
    for (size_t b = 0; b < B; b++) {
        assert_int_equal(elm_state_reset(s1, ELM_ALL_STREAMS), ELM_OK);
        for (size_t t = 0; t < T; t++)
            assert_int_equal(elm_state_step(s1, x + (b * T + t) * p->n_in, ys + t * p->n_out),
                             ELM_OK);
        assert_close_d(ys, yr + b * T * p->n_out, T * (size_t)p->n_out, 2e-5,
                       "one-stream steps vs naive");
    }
    free(ys);
    elm_state_free(s1);
    elm_state_free(s);
    free(yr); free(syn); free(br); free(mem); free(y); free(fsyn); free(fbr); free(fmem); free(x);
    elm_model_free(m);
}

static const spec base = {ELM_V1, ELM_RELU, 6, 3, 4, 1, 8, 0, 1, ELM_ROUTING_NONE, 1.0, 1.0, 150.0, 5.0,
                          false, 3, 40, 1.0f};

static void test_naive_v1_dense(void **st) { (void)st; check_against_naive(&base, 1); }

static void test_naive_v1_per_synapse_tau(void **st) {
    (void)st;
    spec p = base;
    p.n_b = 3; p.k = 2; p.spread_tau = true; p.act = ELM_SILU;
    check_against_naive(&p, 2);
}

static void test_naive_v2_deep(void **st) {
    (void)st;
    spec p = base;
    p.version = ELM_V2; p.L = 3; p.H = 9; p.n_b = 2; p.k = 3; p.act = ELM_SILU; p.dt = 0.5;
    check_against_naive(&p, 3);
}

static void test_naive_no_hidden_layer(void **st) {
    (void)st;
    spec p = base;
    p.L = 0;
    check_against_naive(&p, 4);
}

static void test_naive_random_routing(void **st) {
    (void)st;
    spec p = base;
    p.n_in = 13; p.n_b = 5; p.k = 4; p.routing = ELM_ROUTING_RANDOM; p.density = 0.2f;
    check_against_naive(&p, 5);
}

/* B >= 8 takes the BLIS path per step, and T beyond one chunk. */
static void test_naive_large_batch_long(void **st) {
    (void)st;
    spec p = base;
    p.n_in = 40; p.n_b = 8; p.k = 10; p.routing = ELM_ROUTING_NEURONIO; p.n_m = 12; p.H = 20;
    p.B = 9; p.T = 700; p.density = 0.05f; p.act = ELM_SILU; p.tau_max = 1000;
    check_against_naive(&p, 6);
}

static void test_naive_v2_large_batch(void **st) {
    (void)st;
    spec p = base;
    p.version = ELM_V2; p.n_in = 20; p.n_b = 10; p.k = 2; p.n_m = 7; p.H = 11; p.L = 2; p.B = 16; p.T = 90;
    check_against_naive(&p, 7);
}

/* ---- state management -------------------------------------------------- */

static void test_state_reset_one_stream(void **st) {
    (void)st;
    spec p = base;
    p.B = 2;
    elm_model *m = make_model(&p, 11);
    float *x = make_input(&p, 12);
    size_t ny = 2 * p.T * p.n_out;
    float *y = malloc(ny * 4);
    elm_state *s;
    assert_int_equal(elm_state_create(m, 2, &s), ELM_OK);
    /* stream 1 runs ahead 5 steps, then is reset: afterwards both streams
     * from t = 0 must match a fresh run of stream 1 */
    float xt[2 * 6];
    for (int t = 0; t < 5; t++) {
        memcpy(xt, x + t * 6, 6 * 4);
        memcpy(xt + 6, x + t * 6, 6 * 4);
        assert_int_equal(elm_state_step(s, xt, NULL), ELM_OK);
    }
    assert_int_equal(elm_state_reset(s, 1), ELM_OK);
    size_t per;
    elm_model_size(m, ELM_SIZE_STATE, &per);
    float *sv = malloc(2 * per * 4);
    assert_int_equal(elm_state_get(s, sv, 2 * per), ELM_OK);
    bool nonzero0 = false;
    for (size_t i = 0; i < per; i++) {
        assert_true(sv[per + i] == 0.0f);
        nonzero0 |= sv[i] != 0.0f;
    }
    assert_true(nonzero0);
    assert_int_equal(elm_state_reset(s, 2), ELM_E_INVALID);
    assert_int_equal(elm_state_reset(s, -5), ELM_E_INVALID);
    free(sv);
    elm_state_free(s);
    free(x); free(y);
    elm_model_free(m);
}

/* get/set of the state continues a run exactly (checkpointing). */
static void test_state_checkpoint(void **st) {
    (void)st;
    spec p = base;
    elm_model *m = make_model(&p, 21);
    float *x = make_input(&p, 22);
    size_t per;
    elm_model_size(m, ELM_SIZE_STATE, &per);
    elm_state *a, *b;
    assert_int_equal(elm_state_create(m, 1, &a), ELM_OK);
    assert_int_equal(elm_state_create(m, 1, &b), ELM_OK);
    float ya[3], yb[3];
    for (int t = 0; t < 10; t++) assert_int_equal(elm_state_step(a, x + t * 6, ya), ELM_OK);
    float *sv = malloc(per * 4);
    assert_int_equal(elm_state_get(a, sv, per), ELM_OK);
    assert_int_equal(elm_state_set(b, sv, per), ELM_OK);
    for (int t = 10; t < 40; t++) {
        assert_int_equal(elm_state_step(a, x + t * 6, ya), ELM_OK);
        assert_int_equal(elm_state_step(b, x + t * 6, yb), ELM_OK);
        assert_memory_equal(ya, yb, sizeof ya);
    }
    assert_int_equal(elm_state_get(a, sv, per + 1), ELM_E_SHAPE);
    sv[0] = NAN;
    assert_int_equal(elm_state_set(b, sv, per), ELM_E_NONFINITE);
    free(sv);
    elm_state_free(a);
    elm_state_free(b);
    free(x);
    elm_model_free(m);
}

/* NaN / Inf input: an error naming the element, and the state is exactly
 * as before the call. */
/* A one-stream state carries layer 0's branch part W_b c between steps
 * (only the rows of the branches the step's drive reaches are read) and
 * recomputes it every 64 steps and after any get, set, reset or sequence
 * forward. So: a run continued from a saved state repeats the saving run
 * bit for bit, also past the refresh points; a run that never called get
 * differs from it by rounding only; changing the model between steps
 * recomputes the sum (no stale weights); branches with different decays
 * (no common kappa) take the plain product and stay exact. */
static void test_state_carried_branch_sum(void **st) {
    (void)st;
    spec p = base;
    p.n_in = 40; p.n_b = 8; p.k = 10; p.routing = ELM_ROUTING_NEURONIO; p.n_m = 12; p.H = 70;
    p.B = 1; p.T = 400; p.density = 0.05f; p.act = ELM_SILU;
    elm_model *m = make_model(&p, 31);
    float *x = make_input(&p, 32);
    csr ev = csr_from_dense(x, p.T, p.n_in, CSR_INCREASING);
    size_t per, T = p.T, no = (size_t)p.n_out, T0 = 150;
    elm_model_size(m, ELM_SIZE_STATE, &per);
    elm_state *a, *b, *c;
    assert_int_equal(elm_state_create(m, 1, &a), ELM_OK);
    assert_int_equal(elm_state_create(m, 1, &b), ELM_OK);
    assert_int_equal(elm_state_create(m, 1, &c), ELM_OK);
    float *ya = malloc(T * no * 4), *yb = malloc(T * no * 4), *yc = malloc(T * no * 4);
    float *sv = malloc(per * 4);
    for (size_t t = 0; t < T; t++) {
        if (t == T0) {
            assert_int_equal(elm_state_get(a, sv, per), ELM_OK);
            assert_int_equal(elm_state_set(b, sv, per), ELM_OK);
        }
        assert_int_equal(elm_state_step_events(a, ev.off + t, ev.ch, ev.val, ya + t * no), ELM_OK);
        assert_int_equal(elm_state_step(c, x + t * p.n_in, yc + t * no), ELM_OK);
        if (t >= T0)
            assert_int_equal(elm_state_step(b, x + t * p.n_in, yb + t * no), ELM_OK);
    }
    assert_memory_equal(ya + T0 * no, yb + T0 * no, (T - T0) * no * 4);
    assert_close_f(yc, ya, T * no, 1e-6, "without the get vs with it");
    /* the whole run against the sequence forward */
    elm_state *f;
    assert_int_equal(elm_state_create(m, 1, &f), ELM_OK);
    float *yf = malloc(T * no * 4);
    assert_int_equal(elm_state_forward(f, x, T, yf), ELM_OK);
    assert_close_f(yc, yf, T * no, 1e-5, "one-stream steps vs sequence forward");

    /* the model changes between steps: c (no get since) recomputes its sum
     * at the next step, as b does after a set from c's state */
    size_t np;
    elm_model_size(m, ELM_SIZE_PARAMS, &np);
    float *pv = malloc(np * 4);
    memcpy(pv, elm_model_params(m), np * 4);
    for (size_t i = 0; i < np; i++) pv[i] *= 1.01f;
    assert_int_equal(elm_model_set_params(m, pv, np), ELM_OK);
    elm_state *twin;
    assert_int_equal(elm_state_create(m, 1, &twin), ELM_OK);
    assert_int_equal(elm_state_reset(c, ELM_ALL_STREAMS), ELM_OK);
    for (size_t t = 0; t < 100; t++) /* c and twin: the same run, no get */
        assert_int_equal(elm_state_step(c, x + t * p.n_in, yc + t * no), ELM_OK);
    for (size_t t = 0; t < 100; t++)
        assert_int_equal(elm_state_step(twin, x + t * p.n_in, yb + t * no), ELM_OK);
    assert_memory_equal(yc, yb, 100 * no * 4);
    memcpy(pv, elm_model_params(m), np * 4);
    for (size_t i = 0; i < np; i++) pv[i] *= 0.99f;
    assert_int_equal(elm_model_set_params(m, pv, np), ELM_OK);
    assert_int_equal(elm_state_get(twin, sv, per), ELM_OK);
    assert_int_equal(elm_state_set(b, sv, per), ELM_OK);
    for (size_t t = 100; t < 140; t++) {
        assert_int_equal(elm_state_step(c, x + t * p.n_in, yc + t * no), ELM_OK);
        assert_int_equal(elm_state_step(b, x + t * p.n_in, yb + t * no), ELM_OK);
    }
    assert_memory_equal(yc + 100 * no, yb + 100 * no, 40 * no * 4);

    /* a different decay per branch: no common kappa */
    float tau[80];
    for (int j = 0; j < 80; j++) tau[j] = 3.0f + (float)(j / 10);
    int64_t shape[1] = {80};
    assert_int_equal(elm_model_set_param(m, "tau_s", tau, 1, shape), ELM_OK);
    assert_int_equal(elm_state_reset(c, ELM_ALL_STREAMS), ELM_OK);
    assert_int_equal(elm_state_reset(f, ELM_ALL_STREAMS), ELM_OK);
    for (size_t t = 0; t < T; t++)
        assert_int_equal(elm_state_step(c, x + t * p.n_in, yc + t * no), ELM_OK);
    assert_int_equal(elm_state_forward(f, x, T, yf), ELM_OK);
    assert_close_f(yc, yf, T * no, 1e-5, "per-branch decays: steps vs forward");

    free(pv); free(yf); free(ya); free(yb); free(yc); free(sv); free(x);
    csr_free(&ev);
    elm_state_free(a); elm_state_free(b); elm_state_free(c); elm_state_free(f);
    elm_state_free(twin);
    elm_model_free(m);
}

static void test_nonfinite_input(void **st) {
    (void)st;
    spec p = base;
    p.T = 600;
    elm_model *m = make_model(&p, 31);
    float *x = make_input(&p, 32);
    size_t per;
    elm_model_size(m, ELM_SIZE_STATE, &per);
    elm_state *s;
    assert_int_equal(elm_state_create(m, p.B, &s), ELM_OK);
    float *y = malloc(p.B * p.T * p.n_out * 4);
    float *before = malloc(p.B * per * 4), *after = malloc(p.B * per * 4);
    for (int t = 0; t < 7; t++) assert_int_equal(elm_state_step(s, x + t * 18, NULL), ELM_OK);
    elm_state_get(s, before, p.B * per);
    x[(2 * p.T + 590) * 6 + 3] = NAN; /* stream 2, step 590: past the first chunk */
    assert_int_equal(elm_state_forward(s, x, p.T, y), ELM_E_NONFINITE);
    assert_non_null(strstr(elm_last_error(), "x[2, 590, 3]"));
    elm_state_get(s, after, p.B * per);
    assert_memory_equal(before, after, p.B * per * 4);

    float row[18] = {0};
    row[6 + 4] = INFINITY;
    assert_int_equal(elm_state_step(s, row, y), ELM_E_NONFINITE);
    assert_non_null(strstr(elm_last_error(), "x[1, 4]"));
    elm_state_get(s, after, p.B * per);
    assert_memory_equal(before, after, p.B * per * 4);
    free(before); free(after); free(y); free(x);
    elm_state_free(s);
    elm_model_free(m);
}

/* Many states on one shared model from several threads. */
#include <pthread.h>
typedef struct job { const elm_model *m; const float *x; size_t T; float *y; int rc; } job;
static void *run_job(void *arg) {
    job *j = arg;
    elm_state *s;
    j->rc = elm_state_create(j->m, 1, &s);
    if (j->rc) return NULL;
    for (size_t t = 0; t < j->T && !j->rc; t++) j->rc = elm_state_step(s, j->x + t * 6, j->y + t * 3);
    elm_state_free(s);
    return NULL;
}
static void test_concurrent_states(void **st) {
    (void)st;
    spec p = base;
    p.B = 1; p.T = 300;
    elm_model *m = make_model(&p, 41);
    float *x = make_input(&p, 42);
    float *ref = malloc(p.T * 3 * 4);
    assert_int_equal(elm_model_forward(m, x, 1, p.T, ref), ELM_OK);
    enum { N = 4 };
    pthread_t th[N];
    job jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){m, x, p.T, malloc(p.T * 3 * 4), -1};
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].rc, ELM_OK);
        assert_close_f(jobs[i].y, ref, p.T * 3, 1e-6, "thread");
        free(jobs[i].y);
    }
    free(ref); free(x);
    elm_model_free(m);
}

/* Traced synaptic output needs tracking from a reset in collapsed v1. */
static void test_syn_trace_rules(void **st) {
    (void)st;
    spec p = base;
    elm_model *m = make_model(&p, 51);
    float *x = make_input(&p, 52);
    elm_state *s;
    assert_int_equal(elm_state_create(m, p.B, &s), ELM_OK);
    size_t n = p.B * p.T;
    float *y = malloc(n * 3 * 4), *syn = malloc(n * 6 * 4);
    assert_int_equal(elm_state_forward(s, x, p.T, y), ELM_OK);
    assert_int_equal(elm_state_forward_traced(s, x, p.T, y, syn, NULL, NULL), ELM_E_UNSUPPORTED);
    elm_state_reset(s, ELM_ALL_STREAMS);
    assert_int_equal(elm_state_forward_traced(s, x, p.T, y, syn, NULL, NULL), ELM_OK);
    elm_state_free(s);
    free(y); free(syn); free(x);
    elm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_tiny_v1_relu),
        cmocka_unit_test(test_fixture_tiny_v2_silu_branch),
        cmocka_unit_test(test_fixture_branch_neuronio_routing),
        cmocka_unit_test(test_fixture_pretrained),
        cmocka_unit_test(test_routing_branch),
        cmocka_unit_test(test_routing_pretrained),
        cmocka_unit_test(test_naive_v1_dense),
        cmocka_unit_test(test_naive_v1_per_synapse_tau),
        cmocka_unit_test(test_naive_v2_deep),
        cmocka_unit_test(test_naive_no_hidden_layer),
        cmocka_unit_test(test_naive_random_routing),
        cmocka_unit_test(test_naive_large_batch_long),
        cmocka_unit_test(test_naive_v2_large_batch),
        cmocka_unit_test(test_state_reset_one_stream),
        cmocka_unit_test(test_state_checkpoint),
        cmocka_unit_test(test_state_carried_branch_sum),
        cmocka_unit_test(test_nonfinite_input),
        cmocka_unit_test(test_concurrent_states),
        cmocka_unit_test(test_syn_trace_rules),
    };
    return cmocka_run_group_tests_name("forward", tests, NULL, NULL);
}
