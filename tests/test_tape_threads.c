/* Tapes and trainers on several threads (elm_tape_set_threads,
 * ELM_TRAIN_THREADS): gradients against one thread, determinism, the
 * checkpointing mode, bad thread counts, errors from a worker, and a fit. */
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

static size_t n_params(const elm_model *m) {
    size_t v = 0;
    assert_int_equal(elm_model_size(m, ELM_SIZE_PARAMS, &v), ELM_OK);
    return v;
}

/* One forward and backward of L = sum(y * g) on n threads. */
typedef struct run {
    float *y, *grad, *dx;
} run;

static run tape_run(elm_model *m, const spec *p, const float *x, const float *g, unsigned flags,
                    int n) {
    size_t ny = p->B * p->T * (size_t)p->n_out, nx = p->B * p->T * (size_t)p->n_in;
    run r = {malloc(ny * 4), calloc(n_params(m), 4), malloc(nx * 4)};
    elm_tape *tp;
    assert_int_equal(elm_tape_create(m, p->B, p->T, flags, &tp), ELM_OK);
    int rc = elm_tape_set_threads(tp, n);
    if (rc) fail_msg("set_threads(%d): %s", n, elm_last_error());
    rc = elm_tape_forward(tp, x, p->T, r.y);
    if (rc) fail_msg("forward: %s", elm_last_error());
    rc = elm_tape_backward(tp, x, g, r.grad, r.dx);
    if (rc) fail_msg("backward: %s", elm_last_error());
    elm_tape_free(tp);
    return r;
}

static void run_free(run *r) { free(r->y); free(r->grad); free(r->dx); }

/* a within 1e-5 relative of b, or, where float sums nearly cancel, within
 * 1e-5 of the array's largest value: groups of fewer than ELM_SMALL_BATCH
 * streams take the small kernel, which sums in another order than BLIS. */
static void close_arrays(const char *what, const float *a, const float *b, size_t n) {
    double big = 0;
    for (size_t i = 0; i < n; i++) big = fmax(big, fabs(b[i]));
    for (size_t i = 0; i < n; i++)
        if (!(fabs(a[i] - b[i]) <= fmax(1e-5 * fabs(b[i]), 1e-5 * big)))
            fail_msg("%s[%zu] = %.9g vs %.9g (one thread)", what, i, (double)a[i], (double)b[i]);
}

static const spec specs[] = {
    /* v1 collapsed, NeuronIO routing */
    {ELM_V1, ELM_SILU, 20, 2, 6, 1, 12, 5, 4, ELM_ROUTING_NEURONIO, 1, 1, 150, 5, false, 7, 301,
     0.1f},
    /* v1 per-synapse time constants, two layers */
    {ELM_V1, ELM_RELU, 8, 3, 4, 2, 8, 2, 4, ELM_ROUTING_RANDOM, 1, 1, 50, 5, true, 10, 123, 0.4f},
    /* v2, no hidden layer routing */
    {ELM_V2, ELM_SILU, 6, 2, 5, 1, 9, 0, 1, ELM_ROUTING_NONE, 1, 1, 100, 5, false, 5, 77, 1.0f},
};

static void check_spec(const spec *p, uint64_t seed) {
    elm_model *m = make_model(p, seed);
    assert_non_null(m);
    float *x = make_input(p, seed + 1);
    size_t ny = p->B * p->T * (size_t)p->n_out, nx = p->B * p->T * (size_t)p->n_in;
    size_t np = n_params(m);
    float *g = malloc(ny * 4);
    uint64_t s = seed + 2;
    fill_uniform(g, ny, -1, 1, &s);
    const unsigned modes[] = {0, ELM_TAPE_GRAD_TAU, ELM_TAPE_CHECKPOINT | ELM_TAPE_GRAD_TAU};
    for (int mo = 0; mo < 3; mo++) {
        run one = tape_run(m, p, x, g, modes[mo], 1);
        for (int n = 2; n <= 3 && n <= (int)p->B; n++) {
            run a = tape_run(m, p, x, g, modes[mo], n);
            run b = tape_run(m, p, x, g, modes[mo], n);
            /* same n: bit-identical */
            assert_memory_equal(a.y, b.y, ny * 4);
            assert_memory_equal(a.grad, b.grad, np * 4);
            assert_memory_equal(a.dx, b.dx, nx * 4);
            /* the streams of a group are computed as one thread would */
            close_arrays("y", a.y, one.y, ny);
            close_arrays("dx", a.dx, one.dx, nx);
            close_arrays("grad", a.grad, one.grad, np);
            if (modes[mo] & ELM_TAPE_CHECKPOINT) {
                /* checkpointing stays bit-identical to the default mode */
                run d = tape_run(m, p, x, g, ELM_TAPE_GRAD_TAU, n);
                assert_memory_equal(a.grad, d.grad, np * 4);
                assert_memory_equal(a.y, d.y, ny * 4);
                run_free(&d);
            }
            run_free(&a);
            run_free(&b);
        }
        run_free(&one);
    }
    free(g);
    free(x);
    elm_model_free(m);
}

static void test_matches_one_thread(void **st) {
    (void)st;
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) check_spec(&specs[i], 11 + 7 * i);
}

/* Thread counts outside [1, B], switching back and forth, reuse. */
static void test_thread_counts(void **st) {
    (void)st;
    const spec *p = &specs[2];
    elm_model *m = make_model(p, 3);
    float *x = make_input(p, 4);
    size_t ny = p->B * p->T * (size_t)p->n_out, np = n_params(m);
    float *y = malloc(ny * 4), *g = calloc(ny, 4), *grad = calloc(np, 4);
    elm_tape *tp;
    assert_int_equal(elm_tape_create(m, p->B, p->T, 0, &tp), ELM_OK);
    assert_int_equal(elm_tape_set_threads(NULL, 2), ELM_E_NULL);
    assert_int_equal(elm_tape_set_threads(tp, 0), ELM_E_INVALID);
    assert_int_equal(elm_tape_set_threads(tp, -3), ELM_E_INVALID);
    assert_int_equal(elm_tape_set_threads(tp, (int)p->B + 1), ELM_E_INVALID);
    assert_int_equal(elm_tape_set_threads(tp, (int)p->B), ELM_OK);
    size_t b1, b2;
    assert_int_equal(elm_tape_memory(tp, &b1), ELM_OK);
    assert_true(b1 > 0);
    /* a new count drops the recorded forward */
    assert_int_equal(elm_tape_forward(tp, x, p->T, y), ELM_OK);
    assert_int_equal(elm_tape_set_threads(tp, 2), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_E_INVALID);
    assert_int_equal(elm_tape_forward(tp, x, p->T, y), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_OK);
    /* the same count again keeps it */
    assert_int_equal(elm_tape_set_threads(tp, 2), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_OK);
    assert_int_equal(elm_tape_set_threads(tp, 1), ELM_OK);
    assert_int_equal(elm_tape_memory(tp, &b2), ELM_OK);
    assert_true(b2 > 0);
    assert_int_equal(elm_tape_forward(tp, x, p->T, y), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_OK);
    elm_tape_free(tp);
    /* freed with its workers running idle */
    assert_int_equal(elm_tape_create(m, p->B, p->T, ELM_TAPE_CHECKPOINT, &tp), ELM_OK);
    assert_int_equal(elm_tape_set_threads(tp, 3), ELM_OK);
    elm_tape_free(tp);
    free(y); free(g); free(grad); free(x);
    elm_model_free(m);
}

/* A worker's error reaches the caller with the stream of the whole batch,
 * and no output is written when the default mode fails. */
static void test_worker_errors(void **st) {
    (void)st;
    const spec *p = &specs[1];
    elm_model *m = make_model(p, 5);
    float *x = make_input(p, 6);
    size_t ny = p->B * p->T * (size_t)p->n_out, np = n_params(m);
    float *y = malloc(ny * 4), *g = calloc(ny, 4), *grad = calloc(np, 4);
    /* stream 8 is in the last of 2 groups (streams 5 .. 9) */
    size_t at = (8 * p->T + 17) * (size_t)p->n_in + 3;
    x[at] = NAN;
    for (int mode = 0; mode < 2; mode++) {
        elm_tape *tp;
        unsigned flags = mode ? ELM_TAPE_CHECKPOINT : 0;
        assert_int_equal(elm_tape_create(m, p->B, p->T, flags, &tp), ELM_OK);
        assert_int_equal(elm_tape_set_threads(tp, 2), ELM_OK);
        for (size_t i = 0; i < ny; i++) y[i] = 7.0f;
        assert_int_equal(elm_tape_forward(tp, x, p->T, y), ELM_E_NONFINITE);
        if (!strstr(elm_last_error(), "x[8, 17, 3]")) fail_msg("message: %s", elm_last_error());
        for (size_t i = 0; i < ny; i++) assert_true(y[i] == 7.0f);
        assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_E_INVALID);
        elm_tape_free(tp);
    }
    /* checkpointing recomputes its segments from the events it recorded,
     * not from x: a change of x after the forward changes nothing */
    x[at] = 0.5f;
    elm_tape *tp;
    assert_int_equal(elm_tape_create(m, p->B, p->T, ELM_TAPE_CHECKPOINT, &tp), ELM_OK);
    assert_int_equal(elm_tape_set_threads(tp, 2), ELM_OK);
    assert_int_equal(elm_tape_forward(tp, x, p->T, y), ELM_OK);
    for (size_t i = 0; i < ny; i++) g[i] = (float)(i % 7) * 0.1f - 0.3f;
    float *ref = calloc(np, 4);
    assert_int_equal(elm_tape_backward(tp, x, g, ref, NULL), ELM_OK);
    x[at] = INFINITY;
    x[at + 1] = 3.0f;
    memset(grad, 0, np * 4);
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_OK);
    assert_memory_equal(grad, ref, np * 4);
    free(ref);
    g[5] = NAN;
    assert_int_equal(elm_tape_backward(tp, x, g, grad, NULL), ELM_E_NONFINITE);
    elm_tape_free(tp);
    free(y); free(g); free(grad); free(x);
    elm_model_free(m);
}

/* ---- the trainer ---------------------------------------------------------- */

/* Label: which of the first two inputs had more spikes. */
static void count_data(const spec *p, size_t N, uint64_t seed, float **x, int32_t **lb) {
    spec q = *p;
    q.B = N;
    *x = make_input(&q, seed);
    *lb = malloc(N * 4);
    for (size_t i = 0; i < N; i++) {
        double c0 = 0, c1 = 0;
        for (size_t t = 0; t < p->T; t++) {
            c0 += (*x)[(i * p->T + t) * (size_t)p->n_in] != 0;
            c1 += (*x)[(i * p->T + t) * (size_t)p->n_in + 1] != 0;
        }
        (*lb)[i] = c0 > c1;
    }
}

static double fit_loss(int threads, float **params, size_t *np, double *first) {
    spec p = {ELM_V1, ELM_SILU, 12, 2, 6, 1, 16, 6, 2, ELM_ROUTING_RANDOM, 1, 1, 40, 5, false,
              8, 40, 0.2f};
    const size_t N = 32;
    float *x;
    int32_t *lb;
    count_data(&p, N, 21, &x, &lb);
    elm_model *m = make_model(&p, 9);
    elm_optimizer *o;
    elm_loss *l;
    elm_trainer *tr;
    elm_dataset *ds;
    assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_ADAM, &o), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, 1e-2), ELM_OK);
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, 2, &l), ELM_OK);
    assert_int_equal(elm_trainer_create(m, o, l, p.B, p.T, 0, &tr), ELM_OK);
    assert_int_equal(elm_trainer_set(tr, ELM_TRAIN_THREADS, p.B + 1), ELM_E_INVALID);
    assert_int_equal(elm_trainer_set(tr, ELM_TRAIN_THREADS, 0), ELM_E_INVALID);
    assert_int_equal(elm_trainer_set(tr, ELM_TRAIN_THREADS, 1.5), ELM_E_INVALID);
    int rc = elm_trainer_set(tr, ELM_TRAIN_THREADS, threads);
    if (rc) fail_msg("ELM_TRAIN_THREADS = %d: %s", threads, elm_last_error());
    double v;
    assert_int_equal(elm_trainer_get(tr, ELM_TRAIN_THREADS, &v), ELM_OK);
    assert_true(v == threads);
    assert_int_equal(elm_dataset_from_arrays(N, p.T, (size_t)p.n_in, x, NULL, 0, lb, 1, NULL, &ds),
                     ELM_OK);
    assert_int_equal(elm_trainer_set(tr, ELM_TRAIN_EPOCHS, 1), ELM_OK);
    assert_int_equal(elm_trainer_fit(tr, ds, ds, NULL, NULL), ELM_OK);
    assert_int_equal(elm_trainer_metric(tr, ELM_METRIC_VAL_LOSS, first), ELM_OK);
    assert_int_equal(elm_trainer_set(tr, ELM_TRAIN_EPOCHS, 25), ELM_OK);
    assert_int_equal(elm_trainer_fit(tr, ds, ds, NULL, NULL), ELM_OK);
    double loss;
    assert_int_equal(elm_trainer_metric(tr, ELM_METRIC_VAL_LOSS, &loss), ELM_OK);

    /* a checkpoint round-trips, and a load keeps the loading trainer's
     * thread count (it is not training state) */
    size_t size;
    assert_int_equal(elm_trainer_save_buffer(tr, NULL, 0, &size), ELM_OK);
    void *buf = malloc(size);
    assert_int_equal(elm_trainer_save_buffer(tr, buf, size, &size), ELM_OK);
    int other = threads == 1 ? 2 : 1;
    assert_int_equal(elm_trainer_set(tr, ELM_TRAIN_THREADS, other), ELM_OK);
    assert_int_equal(elm_trainer_load_buffer(tr, buf, size), ELM_OK);
    assert_int_equal(elm_trainer_get(tr, ELM_TRAIN_THREADS, &v), ELM_OK);
    assert_true(v == other);
    assert_int_equal(elm_trainer_get(tr, ELM_TRAIN_EPOCHS, &v), ELM_OK);
    assert_true(v == 25);
    double again;
    assert_int_equal(elm_trainer_evaluate(tr, ds), ELM_OK);
    assert_int_equal(elm_trainer_metric(tr, ELM_METRIC_VAL_LOSS, &again), ELM_OK);
    assert_true(fabs(again - loss) <= 1e-5 * fabs(loss));
    free(buf);

    *np = n_params(m);
    *params = malloc(*np * 4);
    memcpy(*params, elm_model_params(m), *np * 4);
    elm_dataset_free(ds);
    elm_trainer_free(tr);
    elm_loss_free(l);
    elm_optimizer_free(o);
    elm_model_free(m);
    free(x);
    free(lb);
    return loss;
}

static void test_fit_converges_alike(void **st) {
    (void)st;
    float *p1, *p2;
    size_t n1, n2;
    double f1, f2;
    double l1 = fit_loss(1, &p1, &n1, &f1), l2 = fit_loss(2, &p2, &n2, &f2);
    print_message("val loss after 1 epoch %.6f / %.6f, after 26 %.6f / %.6f (1 / 2 threads)\n",
                  f1, f2, l1, l2);
    assert_true(l1 < 0.8 * f1);
    assert_true(fabs(l2 - l1) <= 1e-2 * l1);
    assert_true(fabs(f2 - f1) <= 1e-4 * f1);
    free(p1);
    free(p2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_one_thread),
        cmocka_unit_test(test_thread_counts),
        cmocka_unit_test(test_worker_errors),
        cmocka_unit_test(test_fit_converges_alike),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
