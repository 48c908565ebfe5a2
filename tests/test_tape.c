/* BPTT gradients: against the official implementation's autograd (the
 * fixtures), against central finite differences of the naive
 * double-precision forward in common.c, checkpointing against the default
 * mode, and bad input. */
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

static size_t msize(const elm_model *m, elm_size what) {
    size_t v = 0;
    assert_int_equal(elm_model_size(m, what, &v), ELM_OK);
    return v;
}

/* Offset, count and official name of tensor i. */
typedef struct tinfo {
    size_t offset, numel;
    char alias[48];
    const char *name;
    int trainable;
} tinfo;

static tinfo tensor(const elm_model *m, size_t i) {
    tinfo t = {0};
    size_t off = 0, nt = msize(m, ELM_SIZE_NUM_TENSORS);
    for (size_t q = 0; q <= i; q++) {
        const char *name;
        int nd, tr;
        int64_t sh[ELM_MAX_DIMS];
        assert_int_equal(elm_model_param_info(m, q, &name, &nd, sh, &tr), ELM_OK);
        size_t n = 1;
        for (int d = 0; d < nd; d++) n *= (size_t)sh[d];
        if (q == i) {
            t.offset = off;
            t.numel = n;
            t.name = name;
            t.trainable = tr;
        }
        off += n;
    }
    double v;
    elm_config_get(elm_model_config(m), ELM_FORMULATION, &v);
    if (i == 0) snprintf(t.alias, sizeof t.alias, "_proto_w_s");
    else if (i == 1) snprintf(t.alias, sizeof t.alias, v == ELM_V1 ? "tau_s" : "tau_b");
    else if (i == 2) snprintf(t.alias, sizeof t.alias, "_proto_tau_m");
    else if (i >= nt - 2) snprintf(t.alias, sizeof t.alias, "w_y.%s", i == nt - 2 ? "weight" : "bias");
    else snprintf(t.alias, sizeof t.alias, "mlp.network.%zu.%s", (i - 3) / 2 * 2, (i - 3) % 2 ? "bias" : "weight");
    return t;
}

/* grad = dL/dparams and y for L = sum(y * g) through a tape. */
static void tape_grads(elm_model *m, const float *x, size_t B, size_t T, const float *g,
                       unsigned flags, float *y, float *grad, float *dx) {
    elm_tape *tp;
    assert_int_equal(elm_tape_create(m, B, T, flags, &tp), ELM_OK);
    int rc = elm_tape_forward(tp, x, T, y);
    if (rc) fail_msg("tape forward: %s", elm_last_error());
    memset(grad, 0, msize(m, ELM_SIZE_PARAMS) * sizeof *grad);
    rc = elm_tape_backward(tp, x, g, grad, dx);
    if (rc) fail_msg("tape backward: %s", elm_last_error());
    elm_tape_free(tp);
}

/* ---- the official fixtures ------------------------------------------------ */

static void run_fixture(const char *name, unsigned flags) {
    char dir[1200], path[1300];
    if (!fixture_dir(name, dir, sizeof dir)) {
        print_message("SKIP %s: fixture not found (tests/data or ../shared/reference/fixtures)\n", name);
        skip();
    }
    elm_model *m = fixture_model(dir);
    assert_non_null(m);
    npy x, yr, g;
    snprintf(path, sizeof path, "%s/x.npy", dir);
    assert_int_equal(npy_load(path, &x), 0);
    snprintf(path, sizeof path, "%s/y.npy", dir);
    assert_int_equal(npy_load(path, &yr), 0);
    snprintf(path, sizeof path, "%s/g.npy", dir);
    assert_int_equal(npy_load(path, &g), 0);
    size_t B = (size_t)x.shape[0], T = (size_t)x.shape[1], np = msize(m, ELM_SIZE_PARAMS);
    float *y = malloc(yr.numel * 4), *grad = malloc(np * 4);
    tape_grads(m, x.data, B, T, g.data, flags | ELM_TAPE_GRAD_TAU, y, grad, NULL);
    for (size_t i = 0; i < yr.numel; i++) {
        double ref = ((float *)yr.data)[i];
        if (!(fabs(y[i] - ref) <= 1e-5 * (1 + fabs(ref))))
            fail_msg("%s: y[%zu] = %.9g vs %.9g", name, i, (double)y[i], ref);
    }
    size_t nt = msize(m, ELM_SIZE_NUM_TENSORS);
    int compared = 0;
    for (size_t i = 0; i < nt; i++) {
        tinfo t = tensor(m, i);
        npy ref;
        snprintf(path, sizeof path, "%s/grad.%s.npy", dir, t.alias);
        if (npy_load(path, &ref) != 0) fail_msg("%s: missing %s", name, path);
        assert_int_equal(ref.numel, t.numel);
        /* Per element: 1e-4 relative with a 1e-6 absolute floor. Where a
         * gradient is a sum of many float terms that nearly cancel, no float
         * implementation meets that (PyTorch's own value then differs from a
         * double-precision finite difference by more than 1e-4 relative):
         * such elements must still agree within 1e-5 of the tensor's largest
         * gradient, and they are counted. */
        double big = 0;
        for (size_t e = 0; e < t.numel; e++) big = fmax(big, fabs(((float *)ref.data)[e]));
        double worst = 0;
        size_t at = 0, cancelled = 0;
        for (size_t e = 0; e < t.numel; e++) {
            double r = ((float *)ref.data)[e], a = grad[t.offset + e];
            double err = fabs(a - r) / fmax(1e-4 * fabs(r), 1e-6);
            if (err > 1.0) {
                cancelled++;
                err = fabs(a - r) / (1e-5 * big);
            }
            if (!(err <= worst)) { worst = err; at = e; }
        }
        if (!(worst <= 1.0))
            fail_msg("%s: d/d%s[%zu] = %.9g vs reference %.9g (outside 1e-4 relative, 1e-6 "
                     "absolute, and 1e-5 of the largest %.3g)", name, t.alias, at,
                     (double)grad[t.offset + at], (double)((float *)ref.data)[at], big);
        assert_true(cancelled * 100 <= t.numel); /* a handful, never a pattern */
        print_message("%s: %-22s %6zu values, worst %.3f of tolerance, %zu by the tensor "
                      "scale\n", name, t.alias, t.numel, worst, cancelled);
        compared++;
        npy_free(&ref);
    }
    assert_int_equal(compared, (int)nt);
    free(y); free(grad);
    npy_free(&x); npy_free(&yr); npy_free(&g);
    elm_model_free(m);
}

static void test_fixture_tiny_v1_relu(void **st) { (void)st; run_fixture("tiny_v1_relu", 0); }
static void test_fixture_tiny_v2_silu_branch(void **st) { (void)st; run_fixture("tiny_v2_silu_branch", 0); }
static void test_fixture_branch_neuronio(void **st) { (void)st; run_fixture("branch_neuronio_routing", 0); }
static void test_fixture_pretrained(void **st) { (void)st; run_fixture("pretrained_best_elm_neuron", 0); }
static void test_fixture_pretrained_ckpt(void **st) {
    (void)st;
    run_fixture("pretrained_best_elm_neuron", ELM_TAPE_CHECKPOINT);
}

/* ---- finite differences of the naive double-precision forward ------------ */

static double naive_loss(const elm_model *m, const float *x, size_t B, size_t T, const float *g,
                         size_t n_out) {
    size_t ny = B * T * n_out;
    double *y = malloc(ny * sizeof *y), L = 0;
    naive_forward(m, x, B, T, y, NULL, NULL, NULL);
    for (size_t i = 0; i < ny; i++) L += y[i] * g[i];
    free(y);
    return L;
}

/* Compare an analytic derivative with a central difference. */
static void check_fd(const char *what, size_t at, double analytic, double fd, double scale) {
    double tol = 5e-4 * (fabs(fd) + fabs(analytic)) + 1e-5 * scale;
    if (!(fabs(analytic - fd) <= tol))
        fail_msg("%s[%zu]: analytic %.9g vs finite difference %.9g (tolerance %.3g)", what, at,
                 analytic, fd, tol);
}

static void fd_check(const spec *p, uint64_t seed, unsigned flags) {
    elm_model *m = make_model(p, seed);
    assert_non_null(m);
    float *x = make_input(p, seed + 100);
    size_t B = p->B, T = p->T, n_out = (size_t)p->n_out, np = msize(m, ELM_SIZE_PARAMS);
    size_t ny = B * T * n_out, nx = B * T * (size_t)p->n_in;
    float *g = malloc(ny * 4), *y = malloc(ny * 4), *grad = malloc(np * 4), *dx = malloc(nx * 4);
    uint64_t sd = seed + 7;
    fill_uniform(g, ny, -1.0f, 1.0f, &sd);
    tape_grads(m, x, B, T, g, flags | ELM_TAPE_GRAD_TAU, y, grad, dx);
    double scale = 0;
    for (size_t i = 0; i < np; i++) scale = fmax(scale, fabs(grad[i]));

    float *buf = malloc(np * 4);
    size_t nt = msize(m, ELM_SIZE_NUM_TENSORS);
    for (size_t i = 0; i < nt; i++) {
        tinfo t = tensor(m, i);
        assert_int_equal(elm_model_get_param(m, t.name, buf, np), ELM_OK);
        for (int probe = 0; probe < 4; probe++) {
            size_t e = (size_t)((seed * 2654435761u + (uint64_t)probe * 40503u + i * 97u) % t.numel);
            float p0 = buf[e];
            if (i == 0 && fabsf(p0) < 1e-3f) continue; /* relu kink of w_s */
            if (isinf(p0)) continue;
            /* the reference is double: small steps are exact enough, and
             * rarely cross a relu kink */
            float h = (i == 1 ? 1e-4f : 1e-5f) * fmaxf(1.0f, fabsf(p0));
            int nd;
            int64_t sh[ELM_MAX_DIMS];
            assert_int_equal(elm_model_param_shape(m, t.name, &nd, sh), ELM_OK);
            buf[e] = p0 + h;
            double up = buf[e];
            assert_int_equal(elm_model_set_param(m, t.name, buf, nd, sh), ELM_OK);
            double Lp = naive_loss(m, x, B, T, g, n_out);
            buf[e] = p0 - h;
            double dn = buf[e];
            assert_int_equal(elm_model_set_param(m, t.name, buf, nd, sh), ELM_OK);
            double Lm = naive_loss(m, x, B, T, g, n_out);
            buf[e] = p0;
            assert_int_equal(elm_model_set_param(m, t.name, buf, nd, sh), ELM_OK);
            check_fd(t.alias, e, grad[t.offset + e], (Lp - Lm) / (up - dn), scale);
        }
    }
    /* dL/dx, at zero and non-zero inputs */
    double xs = 0;
    for (size_t i = 0; i < nx; i++) xs = fmax(xs, fabs(dx[i]));
    for (int probe = 0; probe < 6; probe++) {
        size_t e = (size_t)((seed * 11400714819323198485ull + (uint64_t)probe * 7919u) % nx);
        float x0 = x[e];
        float h = 1e-5f;
        x[e] = x0 + h;
        double up = x[e];
        double Lp = naive_loss(m, x, B, T, g, n_out);
        x[e] = x0 - h;
        double dn = x[e];
        double Lm = naive_loss(m, x, B, T, g, n_out);
        x[e] = x0;
        check_fd("x", e, dx[e], (Lp - Lm) / (up - dn), xs);
    }
    free(buf); free(g); free(y); free(grad); free(dx); free(x);
    elm_model_free(m);
}

/* version, act, n_in, n_out, n_m, L, H, n_b, k, routing, dt, tau_min, tau_max, lambda,
 * spread_tau, B, T, density */
static const spec fd_specs[] = {
    {ELM_V1, ELM_RELU, 5, 3, 4, 1, 7, 0, 1, ELM_ROUTING_NONE, 1, 1, 150, 5, false, 3, 30, 1.0f},
    {ELM_V1, ELM_SILU, 12, 2, 5, 1, 9, 4, 5, ELM_ROUTING_NEURONIO, 1, 1, 150, 5, false, 2, 40, 0.3f},
    {ELM_V1, ELM_SILU, 8, 2, 3, 2, 6, 3, 4, ELM_ROUTING_RANDOM, 0.5, 2, 40, 3, true, 2, 25, 0.5f},
    {ELM_V2, ELM_SILU, 10, 3, 4, 1, 8, 4, 3, ELM_ROUTING_RANDOM, 1, 1, 100, 5, false, 3, 30, 0.6f},
    {ELM_V2, ELM_RELU, 6, 2, 5, 0, 0, 0, 1, ELM_ROUTING_NONE, 2, 1, 60, 4, false, 2, 20, 1.0f},
    /* B >= 8: the BLIS path of the per-step products */
    {ELM_V1, ELM_SILU, 10, 2, 6, 1, 10, 3, 4, ELM_ROUTING_NEURONIO, 1, 1, 150, 5, false, 9, 12, 0.5f},
};

static void test_fd_v1_relu(void **st) { (void)st; fd_check(&fd_specs[0], 1, 0); }
static void test_fd_v1_branch_neuronio(void **st) { (void)st; fd_check(&fd_specs[1], 2, 0); }
static void test_fd_v1_per_synapse_tau(void **st) { (void)st; fd_check(&fd_specs[2], 3, 0); }
static void test_fd_v2(void **st) { (void)st; fd_check(&fd_specs[3], 4, 0); }
static void test_fd_v2_no_hidden(void **st) { (void)st; fd_check(&fd_specs[4], 5, 0); }
static void test_fd_blis_batch(void **st) { (void)st; fd_check(&fd_specs[5], 6, 0); }
static void test_fd_checkpoint(void **st) {
    (void)st;
    fd_check(&fd_specs[1], 7, ELM_TAPE_CHECKPOINT);
    fd_check(&fd_specs[2], 8, ELM_TAPE_CHECKPOINT);
    fd_check(&fd_specs[3], 9, ELM_TAPE_CHECKPOINT);
}

/* ---- checkpointing is bit-identical; accumulation; forward equality ------- */

static void check_modes_identical(const spec *p, uint64_t seed) {
    elm_model *m = make_model(p, seed);
    assert_non_null(m);
    float *x = make_input(p, seed + 1);
    size_t B = p->B, T = p->T, np = msize(m, ELM_SIZE_PARAMS);
    size_t ny = B * T * (size_t)p->n_out, nx = B * T * (size_t)p->n_in;
    float *g = malloc(ny * 4), *y1 = malloc(ny * 4), *y2 = malloc(ny * 4), *y3 = malloc(ny * 4);
    float *g1 = malloc(np * 4), *g2 = malloc(np * 4), *d1 = malloc(nx * 4), *d2 = malloc(nx * 4);
    uint64_t sd = seed;
    fill_uniform(g, ny, -1, 1, &sd);
    tape_grads(m, x, B, T, g, ELM_TAPE_GRAD_TAU, y1, g1, d1);
    tape_grads(m, x, B, T, g, ELM_TAPE_GRAD_TAU | ELM_TAPE_CHECKPOINT, y2, g2, d2);
    assert_memory_equal(g1, g2, np * 4);
    assert_memory_equal(d1, d2, nx * 4);
    assert_int_equal(elm_model_forward(m, x, B, T, y3), ELM_OK);
    for (size_t i = 0; i < ny; i++) {
        assert_true(fabsf(y1[i] - y3[i]) <= 1e-5f * (1 + fabsf(y3[i])));
        assert_true(fabsf(y2[i] - y3[i]) <= 1e-5f * (1 + fabsf(y3[i])));
    }
    free(x); free(g); free(y1); free(y2); free(y3); free(g1); free(g2); free(d1); free(d2);
    elm_model_free(m);
}

static void test_checkpoint_identical(void **st) {
    (void)st;
    /* T spans several segments and ends inside one */
    spec a = {ELM_V1, ELM_SILU, 20, 2, 6, 1, 12, 5, 4, ELM_ROUTING_NEURONIO, 1, 1, 150, 5, false, 3, 1037, 0.1f};
    check_modes_identical(&a, 11);
    spec b = {ELM_V1, ELM_RELU, 8, 3, 4, 2, 8, 2, 4, ELM_ROUTING_RANDOM, 1, 1, 50, 5, true, 10, 301, 0.4f};
    check_modes_identical(&b, 12);
    spec c = {ELM_V2, ELM_SILU, 6, 2, 5, 1, 9, 0, 1, ELM_ROUTING_NONE, 1, 1, 100, 5, false, 1, 777, 1.0f};
    check_modes_identical(&c, 13);
}

static void test_accumulates(void **st) {
    (void)st;
    const spec *p = &fd_specs[1];
    elm_model *m = make_model(p, 21);
    float *x = make_input(p, 22);
    size_t np = msize(m, ELM_SIZE_PARAMS), ny = p->B * p->T * (size_t)p->n_out;
    float *g = malloc(ny * 4), *y = malloc(ny * 4), *once = calloc(np, 4), *twice = calloc(np, 4);
    uint64_t sd = 5;
    fill_uniform(g, ny, -1, 1, &sd);
    elm_tape *tp;
    assert_int_equal(elm_tape_create(m, p->B, p->T, 0, &tp), ELM_OK);
    assert_int_equal(elm_tape_forward(tp, x, p->T, y), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, x, g, once, NULL), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, x, g, twice, NULL), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, x, g, twice, NULL), ELM_OK);
    int nonzero = 0;
    for (size_t i = 0; i < np; i++) {
        assert_float_equal(twice[i], 2 * once[i], 1e-6 * fabs(once[i]) + 1e-12);
        nonzero += once[i] != 0;
    }
    assert_true(nonzero > (int)np / 2);
    /* shorter T than T_max on the same tape */
    assert_int_equal(elm_tape_forward(tp, x, p->T / 2, y), ELM_OK);
    elm_tape_free(tp);
    free(x); free(g); free(y); free(once); free(twice);
    elm_model_free(m);
}

/* Checkpointing memory grows like sqrt(T), the default like T. */
static void test_checkpoint_memory(void **st) {
    (void)st;
    spec p = {ELM_V1, ELM_SILU, 25, 10, 150, 1, 300, 0, 1, ELM_ROUTING_NONE, 1, 1, 1000, 5, false, 8, 0, 0};
    elm_model *m = make_model(&p, 3);
    size_t full[2], ck[2], Ts[2] = {1000, 16000};
    for (int i = 0; i < 2; i++) {
        elm_tape *a, *b;
        assert_int_equal(elm_tape_create(m, 8, Ts[i], 0, &a), ELM_OK);
        assert_int_equal(elm_tape_create(m, 8, Ts[i], ELM_TAPE_CHECKPOINT, &b), ELM_OK);
        elm_tape_memory(a, &full[i]);
        elm_tape_memory(b, &ck[i]);
        elm_tape_free(a);
        elm_tape_free(b);
    }
    print_message("tape bytes, B = 8, LRA-like: T = 1000: %zu default, %zu checkpointed; "
                  "T = 16000: %zu default, %zu checkpointed\n", full[0], ck[0], full[1], ck[1]);
    assert_true((double)full[1] / full[0] > 12);  /* ~16x */
    assert_true((double)ck[1] / ck[0] < 6);       /* ~4x = sqrt(16) */
    assert_true(ck[1] < ((size_t)1 << 30));       /* the LRA case fits in 1 GB */
    elm_model_free(m);
}

/* ---- event input ------------------------------------------------------------ */

/* y, the gradients (dx included) of a forward and backward on tape tp,
 * from x (dense) or from c (events). */
static void run_tape(elm_tape *tp, size_t T, const float *x, const csr *c, const float *dy,
                     float *y, float *grad, float *dx, size_t np) {
    memset(grad, 0, np * 4);
    if (c) assert_int_equal(elm_tape_forward_events(tp, T, c->off, c->ch, c->val, y), ELM_OK);
    else assert_int_equal(elm_tape_forward(tp, x, T, y), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, NULL, dy, grad, dx), ELM_OK);
}

/* Events with increasing channels give the dense results bit for bit, in
 * the default and the checkpointed mode, on 1 and 3 threads; other orders
 * agree within rounding; a refused call leaves the last record usable. */
static void events_check(const spec *p) {
    elm_model *m = make_model(p, 41);
    float *x = make_input(p, 42);
    size_t B = p->B, T = p->T, np = msize(m, ELM_SIZE_PARAMS), ny = B * T * (size_t)p->n_out,
           nx = B * T * (size_t)p->n_in;
    float *dy = malloc(ny * 4), *y0 = malloc(ny * 4), *y1 = malloc(ny * 4), *g0 = malloc(np * 4),
          *g1 = malloc(np * 4), *dx0 = malloc(nx * 4), *dx1 = malloc(nx * 4);
    for (size_t i = 0; i < ny; i++) dy[i] = (float)((i * 37) % 11) * 0.05f - 0.25f;
    csr inc = csr_from_dense(x, B * T, p->n_in, CSR_INCREASING),
        rev = csr_from_dense(x, B * T, p->n_in, CSR_REVERSED);
    for (int mode = 0; mode < 2; mode++)
        for (int threads = 1; threads <= (int)B && threads <= 3; threads += 2 - (B == 2)) {
            elm_tape *tp;
            assert_int_equal(elm_tape_create(m, B, T, mode ? ELM_TAPE_CHECKPOINT : 0, &tp), ELM_OK);
            assert_int_equal(elm_tape_set_threads(tp, threads), ELM_OK);
            run_tape(tp, T, x, NULL, dy, y0, g0, dx0, np);
            run_tape(tp, T, NULL, &inc, dy, y1, g1, dx1, np);
            assert_memory_equal(y0, y1, ny * 4);
            assert_memory_equal(g0, g1, np * 4);
            assert_memory_equal(dx0, dx1, nx * 4);
            run_tape(tp, T, NULL, &rev, dy, y1, g1, dx1, np);
            assert_close_f(y1, y0, ny, 1e-5, "y, channels reversed");
            assert_close_f(g1, g0, np, 1e-4, "grad, channels reversed");
            /* refused: the record of the last forward still stands */
            int32_t keep = inc.ch[3];
            inc.ch[3] = p->n_in;
            assert_int_equal(elm_tape_forward_events(tp, T, inc.off, inc.ch, inc.val, y1),
                             ELM_E_INVALID);
            assert_non_null(strstr(elm_last_error(), "elm_tape_forward_events"));
            inc.ch[3] = keep;
            memset(g1, 0, np * 4);
            assert_int_equal(elm_tape_backward(tp, NULL, dy, g1, NULL), ELM_OK);
            assert_close_f(g1, g0, np, 1e-4, "grad after a refused forward");
            elm_tape_free(tp);
        }
    /* shape and NULL errors */
    elm_tape *tp;
    assert_int_equal(elm_tape_create(m, B, T, 0, &tp), ELM_OK);
    assert_int_equal(elm_tape_forward_events(tp, T + 1, inc.off, inc.ch, inc.val, y1), ELM_E_SHAPE);
    assert_int_equal(elm_tape_forward_events(tp, T, NULL, inc.ch, inc.val, y1), ELM_E_NULL);
    assert_int_equal(elm_tape_forward_events(NULL, T, inc.off, inc.ch, inc.val, y1), ELM_E_NULL);
    assert_int_equal(elm_tape_backward(tp, NULL, dy, g1, NULL), ELM_E_INVALID); /* no forward */
    elm_tape_free(tp);
    csr_free(&inc);
    csr_free(&rev);
    free(dy); free(y0); free(y1); free(g0); free(g1); free(dx0); free(dx1); free(x);
    elm_model_free(m);
}

static void test_events_forward(void **st) {
    (void)st;
    events_check(&fd_specs[5]); /* B = 9: BLIS per-step products, 3 groups of 3 */
    events_check(&fd_specs[2]); /* per-synapse traces (tau_s spread), 2 streams */
}

/* ---- bad input ------------------------------------------------------------ */

static void test_bad_input(void **st) {
    (void)st;
    const spec *p = &fd_specs[2];
    elm_model *m = make_model(p, 31);
    float *x = make_input(p, 32);
    size_t B = p->B, T = p->T, np = msize(m, ELM_SIZE_PARAMS), ny = B * T * (size_t)p->n_out;
    float *g = calloc(ny, 4), *y = malloc(ny * 4), *grad = calloc(np, 4);
    elm_tape *tp;
    assert_int_equal(elm_tape_create(NULL, B, T, 0, &tp), ELM_E_NULL);
    assert_int_equal(elm_tape_create(m, 0, T, 0, &tp), ELM_E_INVALID);
    assert_int_equal(elm_tape_create(m, B, 0, 0, &tp), ELM_E_INVALID);
    assert_int_equal(elm_tape_create(m, B, T, 0x80, &tp), ELM_E_INVALID);
    assert_int_equal(elm_tape_create(m, (size_t)1 << 24, (size_t)1 << 32, 0, &tp), ELM_E_NOMEM);
    assert_int_equal(elm_tape_create(m, B, T, 0, &tp), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_E_INVALID); /* no forward */
    assert_int_equal(elm_tape_forward(tp, x, T + 1, y), ELM_E_SHAPE);
    assert_int_equal(elm_tape_forward(tp, x, 0, y), ELM_E_SHAPE);
    assert_int_equal(elm_tape_forward(tp, NULL, T, y), ELM_E_NULL);
    x[5] = NAN;
    assert_int_equal(elm_tape_forward(tp, x, T, y), ELM_E_NONFINITE);
    assert_non_null(strstr(elm_last_error(), "x[0, 0, 5]"));
    x[5] = 0.25f;
    /* x is read stream by stream, but the failure named is the first in
     * (t, b) order: the last stream's at step 1 before the first's at 2 */
    size_t n_in = (size_t)p->n_in, late = 2 * n_in + 1, early = ((B - 1) * T + 1) * n_in + 2;
    x[late] = INFINITY;
    x[early] = NAN;
    assert_int_equal(elm_tape_forward(tp, x, T, y), ELM_E_NONFINITE);
    char want[64];
    snprintf(want, sizeof want, "x[%zu, 1, 2]", B - 1);
    if (!strstr(elm_last_error(), want)) fail_msg("%s does not name %s", elm_last_error(), want);
    x[late] = x[early] = 0.0f;
    x[5] = NAN;
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_E_INVALID); /* failed forward */
    x[5] = 0.25f;
    assert_int_equal(elm_tape_forward(tp, x, T, y), ELM_OK);
    g[3] = INFINITY;
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_E_NONFINITE);
    for (size_t i = 0; i < np; i++) assert_true(grad[i] == 0.0f); /* nothing written */
    g[3] = 0;
    assert_int_equal(elm_tape_backward(tp, x, g, NULL, NULL), ELM_E_NULL);
    assert_int_equal(elm_tape_backward(tp, x, NULL, grad, NULL), ELM_E_NULL);
    /* x is not read by the backward (since 0.5): NULL is fine */
    assert_int_equal(elm_tape_backward(tp, NULL, g, grad, NULL), ELM_OK);
    /* a change of the trace layout (uniform tau_s per branch) is refused */
    size_t n_s = msize(m, ELM_SIZE_SYNAPSE);
    float *tau = malloc(n_s * 4);
    for (size_t j = 0; j < n_s; j++) tau[j] = 5.0f;
    int64_t sh[1] = {(int64_t)n_s};
    assert_int_equal(elm_model_set_param(m, "tau_s", tau, 1, sh), ELM_OK);
    assert_int_equal(elm_tape_forward(tp, x, T, y), ELM_E_INVALID);
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_E_INVALID);
    size_t bytes = 0;
    assert_int_equal(elm_tape_memory(tp, &bytes), ELM_OK);
    assert_true(bytes > 0);
    elm_tape_free(tp);
    elm_tape_free(NULL);
    free(tau); free(x); free(g); free(y); free(grad);
    elm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_tiny_v1_relu),
        cmocka_unit_test(test_fixture_tiny_v2_silu_branch),
        cmocka_unit_test(test_fixture_branch_neuronio),
        cmocka_unit_test(test_fixture_pretrained),
        cmocka_unit_test(test_fixture_pretrained_ckpt),
        cmocka_unit_test(test_fd_v1_relu),
        cmocka_unit_test(test_fd_v1_branch_neuronio),
        cmocka_unit_test(test_fd_v1_per_synapse_tau),
        cmocka_unit_test(test_fd_v2),
        cmocka_unit_test(test_fd_v2_no_hidden),
        cmocka_unit_test(test_fd_blis_batch),
        cmocka_unit_test(test_fd_checkpoint),
        cmocka_unit_test(test_checkpoint_identical),
        cmocka_unit_test(test_accumulates),
        cmocka_unit_test(test_checkpoint_memory),
        cmocka_unit_test(test_events_forward),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
