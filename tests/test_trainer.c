/* The training loop: a long-range task that only BPTT solves, every loss
 * differentiated end to end through the tape, determinism, best-epoch
 * selection, early stopping, the non-finite policy, dropout, bad input. */
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

static uint64_t rs = 1;
static double U(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) * (1.0 / 9007199254740992.0);
}

/* Delayed recall: a 2-bit class is shown on channels 0-1 during steps 0-3
 * (+-1 each), then T - 4 steps of random +-1 distractor spikes (10%) on
 * channels 2-5; the class is scored at the last step. x (N, T, 6). */
enum { RC_IN = 6, RC_CLASSES = 4 };
#ifndef STEPS
#define STEPS 1500
#endif
#ifndef LR
#define LR 2e-3
#endif
static void recall_data(float *x, int32_t *label, size_t N, size_t T) {
    memset(x, 0, N * T * RC_IN * sizeof *x);
    for (size_t n = 0; n < N; n++) {
        int c = (int)(U() * RC_CLASSES);
        label[n] = c;
        for (size_t t = 0; t < 4; t++) {
            x[(n * T + t) * RC_IN + 0] = (c & 1) ? 1.0f : -1.0f;
            x[(n * T + t) * RC_IN + 1] = (c & 2) ? 1.0f : -1.0f;
        }
        for (size_t t = 4; t < T; t++)
            for (int q = 2; q < RC_IN; q++)
                if (U() < 0.1) x[(n * T + t) * RC_IN + q] = U() < 0.5 ? 1.0f : -1.0f;
    }
}

static elm_model *recall_model(void) {
    elm_config *c;
    elm_config_create(&c);
    elm_config_set(c, ELM_NUM_INPUT, RC_IN);
    elm_config_set(c, ELM_NUM_OUTPUT, RC_CLASSES);
    elm_config_set(c, ELM_NUM_MEMORY, 16);
    elm_config_set(c, ELM_MLP_HIDDEN_SIZE, 32);
    elm_config_set(c, ELM_TAU_M_MAX, 1000);
    elm_model *m;
    assert_int_equal(elm_model_create(c, 3, &m), ELM_OK);
    elm_config_free(c);
    return m;
}

/* Trains on the recall task; returns the validation accuracy. With
 * `readout_only`, everything but the readout stays at its random init. */
static double train_recall(bool readout_only) {
    const size_t T = 200, B = 32, steps = STEPS, N = B * steps, NV = 256;
    rs = 12345;
    float *x = malloc(N * T * RC_IN * 4), *vx = malloc(NV * T * RC_IN * 4);
    int32_t *lb = malloc(N * 4), *vl = malloc(NV * 4);
    recall_data(x, lb, N, T);
    recall_data(vx, vl, NV, T);
    elm_model *m = recall_model();
    elm_optimizer *o;
    assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_ADAM, &o), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, LR), ELM_OK);
    /* Why warm-up, cosine decay and clipping: at a constant lr the run sits
     * near an edge. A reordering of float sums (a different kernel, grads
     * within 1e-7) or another seed could leave it at accuracy 0.49-0.91 after
     * a late loss spike. With these, 75 of 75 perturbed runs (5 data x 3
     * model seeds, at lr 1.9e-3 to 2.5e-3 and at 1000 steps) reach 1.000. */
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_SCHEDULE, ELM_SCHEDULE_COSINE), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_TOTAL_STEPS, (double)steps), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_WARMUP_STEPS, 100), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_CLIP_NORM, 1.0), ELM_OK);
    if (readout_only) {
        const char *names[] = {"w_s_proto", "mlp.0.weight", "mlp.0.bias", "mlp.1.weight", "mlp.1.bias"};
        for (int i = 0; i < 5; i++) assert_int_equal(elm_optimizer_freeze(o, names[i], 1), ELM_OK);
    }
    elm_loss *l;
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, RC_CLASSES, &l), ELM_OK);
    elm_trainer *tr;
    assert_int_equal(elm_trainer_create(m, o, l, B, T, 0, &tr), ELM_OK);
    elm_dataset *dt, *dv;
    assert_int_equal(elm_dataset_from_arrays(N, T, RC_IN, x, NULL, 0, lb, 1, NULL, &dt), ELM_OK);
    assert_int_equal(elm_dataset_from_arrays(NV, T, RC_IN, vx, NULL, 0, vl, 1, NULL, &dv), ELM_OK);
    int rc = elm_trainer_fit(tr, dt, dv, NULL, NULL);
    if (rc) fail_msg("fit: %s", elm_last_error());
    double acc, loss, steps_taken;
    elm_trainer_metric(tr, ELM_METRIC_VAL_ACCURACY, &acc);
    elm_trainer_metric(tr, ELM_METRIC_VAL_LOSS, &loss);
    elm_trainer_metric(tr, ELM_METRIC_STEP, &steps_taken);
    assert_true(steps_taken == (double)steps);
    print_message("delayed recall, T = %zu, %zu Adam steps, %s: validation accuracy %.3f, "
                  "loss %.4f\n", T, steps, readout_only ? "readout only (frozen random ELM)"
                                                       : "BPTT through the whole ELM", acc, loss);
    elm_dataset_free(dt); elm_dataset_free(dv);
    elm_trainer_free(tr); elm_loss_free(l); elm_optimizer_free(o); elm_model_free(m);
    free(x); free(vx); free(lb); free(vl);
    return acc;
}

static void test_learns_long_range(void **st) {
    (void)st;
    double bptt = train_recall(false), frozen = train_recall(true);
    assert_true(bptt >= 0.95);   /* solved */
    assert_true(frozen <= 0.6);  /* chance is 0.25 */
}

/* ---- every loss, end to end through the tape ------------------------------ */

static double loss_of(elm_model *m, const elm_loss *l, const float *x, size_t B, size_t T,
                      const float *tg, const int32_t *lab, const int64_t *len, size_t n_out) {
    float *y = malloc(B * T * n_out * 4);
    assert_int_equal(elm_model_forward(m, x, B, T, y), ELM_OK);
    double L;
    assert_int_equal(elm_loss_compute(l, y, B, T, tg, lab, len, &L, NULL), ELM_OK);
    free(y);
    return L;
}

static void loss_chain(elm_loss_kind kind, unsigned flags) {
    spec p = {ELM_V1, ELM_SILU, 8, kind == ELM_LOSS_NEURONIO ? 2 : 3, 5, 1, 9, 4, 3,
              ELM_ROUTING_RANDOM, 1, 1, 150, 5, false, 4, 40, 0.5f};
    elm_model *m = make_model(&p, 77 + kind);
    assert_non_null(m);
    float *x = make_input(&p, 78);
    size_t B = p.B, T = p.T, no = (size_t)p.n_out, np;
    elm_model_size(m, ELM_SIZE_PARAMS, &np);
    float *tg = NULL;
    int32_t *lab = NULL;
    int64_t len[4] = {40, 33, 0, 21}; /* with a padding sample */
    if (kind == ELM_LOSS_CE_LAST || kind == ELM_LOSS_CE_ALL) {
        size_t nl = kind == ELM_LOSS_CE_LAST ? B : B * T;
        lab = malloc(nl * 4);
        for (size_t i = 0; i < nl; i++) lab[i] = (int32_t)(U() * (double)no);
    } else {
        tg = malloc(B * T * no * 4);
        for (size_t i = 0; i < B * T * no; i++)
            tg[i] = kind == ELM_LOSS_NEURONIO && i % 2 == 0 ? (U() < 0.2) : (float)(U() - 0.5);
    }
    elm_loss *l;
    assert_int_equal(elm_loss_create(kind, no, &l), ELM_OK);
    if (kind != ELM_LOSS_CE_LAST) assert_int_equal(elm_loss_set_burn_in(l, 7), ELM_OK);
    float *y = malloc(B * T * no * 4), *dy = malloc(B * T * no * 4), *grad = calloc(np, 4);
    elm_tape *tp;
    assert_int_equal(elm_tape_create(m, B, T, flags, &tp), ELM_OK);
    assert_int_equal(elm_tape_forward(tp, x, T, y), ELM_OK);
    double L;
    assert_int_equal(elm_loss_compute(l, y, B, T, tg, lab, len, &L, dy), ELM_OK);
    assert_int_equal(elm_tape_backward(tp, x, dy, grad, NULL), ELM_OK);
    double scale = 0;
    for (size_t i = 0; i < np; i++) scale = fmax(scale, fabs(grad[i]));
    /* central differences on a spread of parameters (float forward: h = 1e-2
     * keeps rounding noise well below the tolerance) */
    float *params = malloc(np * 4);
    int checked = 0;
    for (size_t e = 0; e < np; e += np / 23 + 1) {
        const char *name;
        int nd, tr;
        int64_t sh[ELM_MAX_DIMS];
        size_t off = 0, ti = 0;
        for (;; ti++) {
            assert_int_equal(elm_model_param_info(m, ti, &name, &nd, sh, &tr), ELM_OK);
            size_t n = 1;
            for (int d = 0; d < nd; d++) n *= (size_t)sh[d];
            if (e < off + n) break;
            off += n;
        }
        if (!tr) continue;
        assert_int_equal(elm_model_get_param(m, name, params, np), ELM_OK);
        float p0 = params[e - off];
        if (ti == 0 && fabsf(p0) < 0.05f) continue;
        float h = 1e-2f;
        params[e - off] = p0 + h;
        assert_int_equal(elm_model_set_param(m, name, params, nd, sh), ELM_OK);
        double Lp = loss_of(m, l, x, B, T, tg, lab, len, no);
        params[e - off] = p0 - h;
        assert_int_equal(elm_model_set_param(m, name, params, nd, sh), ELM_OK);
        double Lm = loss_of(m, l, x, B, T, tg, lab, len, no);
        params[e - off] = p0;
        assert_int_equal(elm_model_set_param(m, name, params, nd, sh), ELM_OK);
        double fd = (Lp - Lm) / (2.0 * h), an = grad[e];
        if (!(fabs(fd - an) <= 2e-2 * fabs(fd) + 2e-3 * scale))
            fail_msg("%s loss, %s[%zu]: analytic %.7g vs finite difference %.7g",
                     elm_loss_kind_name(kind), name, e - off, an, fd);
        checked++;
    }
    assert_true(checked >= 10);
    elm_tape_free(tp);
    elm_loss_free(l);
    free(params); free(y); free(dy); free(grad); free(x); free(tg); free(lab);
    elm_model_free(m);
}

static void test_loss_ce_last(void **st) { (void)st; loss_chain(ELM_LOSS_CE_LAST, 0); }
static void test_loss_ce_all(void **st) { (void)st; loss_chain(ELM_LOSS_CE_ALL, ELM_TAPE_CHECKPOINT); }
static void test_loss_neuronio(void **st) { (void)st; loss_chain(ELM_LOSS_NEURONIO, 0); }
static void test_loss_mse(void **st) { (void)st; loss_chain(ELM_LOSS_MSE, ELM_TAPE_CHECKPOINT); }

/* ---- the loop's contract --------------------------------------------------- */

typedef struct small {
    elm_model *m;
    elm_optimizer *o;
    elm_loss *l;
    elm_trainer *tr;
    elm_dataset *dt, *dv;
    float *x, *vx;
    int32_t *lb, *vl;
} small;

static void small_setup(small *s, uint64_t data_seed, double dropout, uint64_t seed) {
    const size_t T = 30, B = 8, N = 40, NV = 24;
    rs = data_seed;
    s->x = malloc(N * T * RC_IN * 4);
    s->vx = malloc(NV * T * RC_IN * 4);
    s->lb = malloc(N * 4);
    s->vl = malloc(NV * 4);
    recall_data(s->x, s->lb, N, T);
    recall_data(s->vx, s->vl, NV, T);
    s->m = recall_model();
    assert_int_equal(elm_optimizer_create(s->m, ELM_OPTIM_ADAM, &s->o), ELM_OK);
    assert_int_equal(elm_optimizer_set(s->o, ELM_OPTIM_LR, 3e-3), ELM_OK);
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, RC_CLASSES, &s->l), ELM_OK);
    assert_int_equal(elm_trainer_create(s->m, s->o, s->l, B, T, 0, &s->tr), ELM_OK);
    assert_int_equal(elm_trainer_set(s->tr, ELM_TRAIN_DROPOUT, dropout), ELM_OK);
    assert_int_equal(elm_trainer_set(s->tr, ELM_TRAIN_SEED, (double)seed), ELM_OK);
    assert_int_equal(elm_dataset_from_arrays(N, T, RC_IN, s->x, NULL, 0, s->lb, 1, NULL, &s->dt), ELM_OK);
    assert_int_equal(elm_dataset_from_arrays(NV, T, RC_IN, s->vx, NULL, 0, s->vl, 1, NULL, &s->dv), ELM_OK);
}

static void small_free(small *s) {
    elm_dataset_free(s->dt); elm_dataset_free(s->dv);
    elm_trainer_free(s->tr); elm_loss_free(s->l); elm_optimizer_free(s->o); elm_model_free(s->m);
    free(s->x); free(s->vx); free(s->lb); free(s->vl);
}

static const float *params_of(const small *s, size_t *n) {
    elm_model_size(s->m, ELM_SIZE_PARAMS, n);
    return elm_model_params(s->m);
}

static void test_deterministic(void **st) {
    (void)st;
    small a, b, c;
    small_setup(&a, 5, 0.3, 9);
    small_setup(&b, 5, 0.3, 9);
    small_setup(&c, 5, 0.3, 10); /* another dropout seed */
    for (small *s = &a; s; s = s == &a ? &b : s == &b ? &c : NULL) {
        elm_trainer_set(s->tr, ELM_TRAIN_EPOCHS, 3);
        assert_int_equal(elm_trainer_fit(s->tr, s->dt, s->dv, NULL, NULL), ELM_OK);
    }
    size_t n;
    const float *pa = params_of(&a, &n), *pb = params_of(&b, &n), *pc = params_of(&c, &n);
    assert_memory_equal(pa, pb, n * 4);
    assert_memory_not_equal(pa, pc, n * 4);
    small_free(&a); small_free(&b); small_free(&c);
}

typedef struct trace_cb {
    int steps, epochs, stop_after_epochs;
    double val_loss[16];
    float *snap[16];
    size_t n;
    const elm_model *m;
} trace_cb;

static int record(void *user, const elm_trainer *tr, int event) {
    trace_cb *c = user;
    if (event == ELM_EVENT_STEP) {
        c->steps++;
        return 0;
    }
    assert_int_equal(event, ELM_EVENT_EPOCH);
    double v;
    assert_int_equal(elm_trainer_metric(tr, ELM_METRIC_VAL_LOSS, &v), ELM_OK);
    c->val_loss[c->epochs] = v;
    c->snap[c->epochs] = malloc(c->n * 4);
    memcpy(c->snap[c->epochs], elm_model_params(c->m), c->n * 4);
    c->epochs++;
    return c->stop_after_epochs && c->epochs >= c->stop_after_epochs;
}

/* Steps from events train exactly as steps from the dense batches: same
 * dropout draws, same losses, same parameters after every step, on one
 * and two threads; a refused batch changes nothing. */
static void test_step_events_matches_dense(void **st) {
    (void)st;
    const size_t B = 8, T = 30;
    for (int threads = 1; threads <= 2; threads++) {
        small a, b;
        small_setup(&a, 11, 0.3, 5);
        small_setup(&b, 11, 0.3, 5);
        assert_int_equal(elm_trainer_set(a.tr, ELM_TRAIN_THREADS, threads), ELM_OK);
        assert_int_equal(elm_trainer_set(b.tr, ELM_TRAIN_THREADS, threads), ELM_OK);
        size_t n;
        for (int k = 0; k < 5; k++) {
            const float *x = a.x + (size_t)k * B * T * RC_IN; /* samples 8k .. 8k + 7 */
            const int32_t *lb = a.lb + (size_t)k * B;
            csr c = csr_from_dense(x, B * T, RC_IN, CSR_INCREASING);
            double la, lb_;
            assert_int_equal(elm_trainer_step(a.tr, x, T, NULL, lb, NULL, &la), ELM_OK);
            assert_int_equal(elm_trainer_step_events(b.tr, T, c.off, c.ch, c.val, NULL, lb, NULL,
                                                     &lb_), ELM_OK);
            assert_true(la == lb_);
            const float *pa = params_of(&a, &n), *pb = params_of(&b, &n);
            assert_memory_equal(pa, pb, n * 4);
            if (k == 4) {
                /* refused: channel out of range; the model is unchanged */
                float *before = malloc(n * 4);
                memcpy(before, pb, n * 4);
                c.ch[c.off[B * T] - 1] = RC_IN;
                assert_int_equal(elm_trainer_step_events(b.tr, T, c.off, c.ch, c.val, NULL, lb,
                                                         NULL, NULL), ELM_E_INVALID);
                assert_memory_equal(params_of(&b, &n), before, n * 4);
                assert_int_equal(elm_trainer_step_events(b.tr, T + 1, c.off, c.ch, c.val, NULL,
                                                         lb, NULL, NULL), ELM_E_SHAPE);
                assert_int_equal(elm_trainer_step_events(NULL, T, c.off, c.ch, c.val, NULL, lb,
                                                         NULL, NULL), ELM_E_NULL);
                free(before);
            }
            csr_free(&c);
        }
        small_free(&a);
        small_free(&b);
    }
}

/* ELM_METRIC_BATCH counts the batches of the current epoch (5 of 8 from 40
 * samples), is 0 when an epoch closes, survives an interruption and a
 * checkpoint round trip; elm_trainer_shape gives what the trainer was
 * created with. */
typedef struct batch_cb {
    double seen[32];
    int n, stop_at;
} batch_cb;

static int record_batch(void *user, const elm_trainer *tr, int event) {
    batch_cb *c = user;
    double v;
    assert_int_equal(elm_trainer_metric(tr, ELM_METRIC_BATCH, &v), ELM_OK);
    c->seen[c->n++] = event == ELM_EVENT_STEP ? v : -1 - v; /* epoch: -1 - batch */
    return c->n == c->stop_at;
}

static void test_shape_and_batch_metric(void **st) {
    (void)st;
    small s;
    small_setup(&s, 7, 0, 1);
    size_t B, T_max;
    assert_int_equal(elm_trainer_shape(s.tr, &B, &T_max), ELM_OK);
    assert_true(B == 8 && T_max == 30);
    assert_int_equal(elm_trainer_shape(s.tr, NULL, &T_max), ELM_E_NULL);
    double v;
    assert_int_equal(elm_trainer_metric(s.tr, ELM_METRIC_BATCH, &v), ELM_OK);
    assert_true(v == 0);
    elm_trainer_set(s.tr, ELM_TRAIN_EPOCHS, 2);
    batch_cb c = {.stop_at = 9}; /* epoch 1: 5 steps + its close; then 3 steps */
    assert_int_equal(elm_trainer_fit(s.tr, s.dt, NULL, record_batch, &c), ELM_OK);
    const double want[9] = {1, 2, 3, 4, 5, -1, 1, 2, 3};
    assert_int_equal(c.n, 9);
    for (int i = 0; i < 9; i++)
        if (c.seen[i] != want[i]) fail_msg("callback %d saw batch %g, want %g", i, c.seen[i], want[i]);
    assert_int_equal(elm_trainer_metric(s.tr, ELM_METRIC_BATCH, &v), ELM_OK);
    assert_true(v == 3);
    /* a checkpoint keeps the position */
    size_t size;
    assert_int_equal(elm_trainer_save_buffer(s.tr, NULL, 0, &size), ELM_OK);
    void *buf = malloc(size);
    assert_int_equal(elm_trainer_save_buffer(s.tr, buf, size, &size), ELM_OK);
    small t;
    small_setup(&t, 7, 0, 1);
    assert_int_equal(elm_trainer_load_buffer(t.tr, buf, size), ELM_OK);
    assert_int_equal(elm_trainer_metric(t.tr, ELM_METRIC_BATCH, &v), ELM_OK);
    assert_true(v == 3);
    /* the rest of the epoch: batches 4 and 5, then the close */
    batch_cb d = {.stop_at = 0};
    assert_int_equal(elm_trainer_fit(t.tr, t.dt, NULL, record_batch, &d), ELM_OK);
    assert_int_equal(d.n, 3);
    assert_true(d.seen[0] == 4 && d.seen[1] == 5 && d.seen[2] == -1);
    assert_int_equal(elm_trainer_metric(t.tr, (elm_metric)14, &v), ELM_E_UNKNOWN_NAME);
    free(buf);
    small_free(&s);
    small_free(&t);
}

/* The model ends with the parameters of the epoch with the best validation
 * loss, and early stopping ends the run `patience` epochs after it. */
static void test_best_epoch_and_early_stop(void **st) {
    (void)st;
    small s;
    small_setup(&s, 6, 0, 1);
    elm_optimizer_set(s.o, ELM_OPTIM_LR, 0.05); /* noisy on purpose: losses go up and down */
    elm_trainer_set(s.tr, ELM_TRAIN_EPOCHS, 12);
    elm_trainer_set(s.tr, ELM_TRAIN_PATIENCE, 2);
    trace_cb c = {0};
    c.m = s.m;
    elm_model_size(s.m, ELM_SIZE_PARAMS, &c.n);
    assert_int_equal(elm_trainer_fit(s.tr, s.dt, s.dv, record, &c), ELM_OK);
    int best = 0;
    for (int e = 1; e < c.epochs; e++)
        if (c.val_loss[e] < c.val_loss[best]) best = e;
    double be, bv;
    elm_trainer_metric(s.tr, ELM_METRIC_BEST_EPOCH, &be);
    elm_trainer_metric(s.tr, ELM_METRIC_BEST, &bv);
    assert_int_equal((int)be, best + 1);
    assert_true(bv == c.val_loss[best]);
    assert_memory_equal(elm_model_params(s.m), c.snap[best], c.n * 4);
    /* stopped by patience unless the best came within the last two epochs */
    if (c.epochs < 12) assert_int_equal(c.epochs, best + 1 + 2);
    assert_int_equal(c.steps, c.epochs * 5); /* 40 samples, B = 8 */
    /* evaluating the restored model reproduces the best validation loss */
    assert_int_equal(elm_trainer_evaluate(s.tr, s.dv), ELM_OK);
    double v;
    elm_trainer_metric(s.tr, ELM_METRIC_VAL_LOSS, &v);
    assert_true(fabs(v - bv) <= 1e-6 * fabs(bv));
    for (int e = 0; e < c.epochs; e++) free(c.snap[e]);
    small_free(&s);

    /* the callback stops the run */
    small_setup(&s, 6, 0, 1);
    elm_trainer_set(s.tr, ELM_TRAIN_EPOCHS, 10);
    trace_cb d = {0};
    d.m = s.m;
    d.stop_after_epochs = 2;
    elm_model_size(s.m, ELM_SIZE_PARAMS, &d.n);
    assert_int_equal(elm_trainer_fit(s.tr, s.dt, s.dv, record, &d), ELM_OK);
    assert_int_equal(d.epochs, 2);
    double ep;
    elm_trainer_metric(s.tr, ELM_METRIC_EPOCH, &ep);
    assert_true(ep == 2);
    for (int e = 0; e < d.epochs; e++) free(d.snap[e]);
    small_free(&s);
}

static void test_nonfinite_policy(void **st) {
    (void)st;
    small s;
    small_setup(&s, 7, 0, 1);
    size_t n, T = 30;
    params_of(&s, &n);
    /* a diverging run: one step with an absurd learning rate makes the
     * weights ~1e30, and the next forward overflows */
    double L;
    assert_int_equal(elm_optimizer_set(s.o, ELM_OPTIM_LR, 1e30), ELM_OK);
    assert_int_equal(elm_trainer_step(s.tr, s.x, T, NULL, s.lb, NULL, &L), ELM_OK);
    float *before = malloc(n * 4);
    memcpy(before, elm_model_params(s.m), n * 4);
    int rc = elm_trainer_step(s.tr, s.x, T, NULL, s.lb, NULL, &L);
    assert_int_equal(rc, ELM_E_NONFINITE);
    print_message("%s\n", elm_last_error());
    assert_non_null(strstr(elm_last_error(), "step 2"));
    assert_memory_equal(elm_model_params(s.m), before, n * 4);
    assert_true(elm_optimizer_steps(s.o) == 1);
    assert_int_equal(elm_trainer_set(s.tr, ELM_TRAIN_NONFINITE, ELM_NONFINITE_SKIP), ELM_OK);
    assert_int_equal(elm_trainer_step(s.tr, s.x, T, NULL, s.lb, NULL, &L), ELM_OK);
    assert_true(isnan(L));
    double skipped;
    elm_trainer_metric(s.tr, ELM_METRIC_SKIPPED, &skipped);
    assert_true(skipped == 1);
    assert_memory_equal(elm_model_params(s.m), before, n * 4);
    assert_true(elm_optimizer_steps(s.o) == 1);
    free(before);
    small_free(&s);
}

static void test_dropout(void **st) {
    (void)st;
    small a, b;
    small_setup(&a, 8, 0.0, 1);
    small_setup(&b, 8, 0.5, 1);
    size_t n, B = 8, T = 30, nx = B * T * RC_IN;
    float *x = malloc(nx * 4);
    memcpy(x, a.x, nx * 4);
    double La, Lb;
    assert_int_equal(elm_trainer_step(a.tr, x, T, NULL, a.lb, NULL, &La), ELM_OK);
    assert_int_equal(elm_trainer_step(b.tr, x, T, NULL, b.lb, NULL, &Lb), ELM_OK);
    assert_memory_equal(x, a.x, nx * 4); /* the caller's x is never modified */
    assert_true(La != Lb);
    params_of(&a, &n);
    assert_memory_not_equal(elm_model_params(a.m), elm_model_params(b.m), n * 4);
    free(x);
    small_free(&a); small_free(&b);
}

static void test_bad_input(void **st) {
    (void)st;
    small s;
    small_setup(&s, 9, 0, 1);
    elm_trainer *tr;
    elm_model *other = recall_model();
    elm_optimizer *o2;
    assert_int_equal(elm_optimizer_create(other, ELM_OPTIM_SGD, &o2), ELM_OK);
    assert_int_equal(elm_trainer_create(s.m, o2, s.l, 8, 30, 0, &tr), ELM_E_INVALID);
    elm_loss *l2;
    assert_int_equal(elm_loss_create(ELM_LOSS_MSE, 3, &l2), ELM_OK);
    assert_int_equal(elm_trainer_create(s.m, s.o, l2, 8, 30, 0, &tr), ELM_E_SHAPE);
    assert_int_equal(elm_trainer_create(NULL, s.o, s.l, 8, 30, 0, &tr), ELM_E_NULL);
    assert_int_equal(elm_trainer_create(s.m, s.o, s.l, 0, 30, 0, &tr), ELM_E_INVALID);
    double L;
    assert_int_equal(elm_trainer_step(s.tr, s.x, 31, NULL, s.lb, NULL, &L), ELM_E_SHAPE);
    assert_int_equal(elm_trainer_step(s.tr, NULL, 30, NULL, s.lb, NULL, &L), ELM_E_NULL);
    /* the loss refuses targets for a classification loss, and bad labels */
    float tgt[8 * 30] = {0};
    assert_int_equal(elm_trainer_step(s.tr, s.x, 30, tgt, NULL, NULL, &L), ELM_E_INVALID);
    int32_t bad[8] = {0, 1, 2, 3, 4, 0, 0, 0};
    assert_int_equal(elm_trainer_step(s.tr, s.x, 30, NULL, bad, NULL, &L), ELM_E_INVALID);
    assert_true(elm_optimizer_steps(s.o) == 0);
    assert_int_equal(elm_trainer_set(s.tr, ELM_TRAIN_DROPOUT, 1.0), ELM_E_INVALID);
    assert_int_equal(elm_trainer_set(s.tr, ELM_TRAIN_DROPOUT, NAN), ELM_E_INVALID);
    assert_int_equal(elm_trainer_set(s.tr, ELM_TRAIN_EPOCHS, 0), ELM_E_INVALID);
    assert_int_equal(elm_trainer_set(s.tr, ELM_TRAIN_EPOCHS, 1.5), ELM_E_INVALID);
    assert_int_equal(elm_trainer_set(s.tr, (elm_train_option)99, 1), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_trainer_set(s.tr, ELM_TRAIN_SELECT, ELM_METRIC_VAL_RMSE), ELM_E_INVALID);
    double v;
    assert_int_equal(elm_trainer_metric(s.tr, (elm_metric)0, &v), ELM_E_UNKNOWN_NAME);
    /* a dataset longer than T_max, or with other inputs */
    float big[1 * 31 * RC_IN] = {0};
    int32_t one[1] = {0};
    elm_dataset *ds;
    assert_int_equal(elm_dataset_from_arrays(1, 31, RC_IN, big, NULL, 0, one, 1, NULL, &ds), ELM_OK);
    assert_int_equal(elm_trainer_fit(s.tr, ds, NULL, NULL, NULL), ELM_E_SHAPE);
    elm_dataset_free(ds);
    assert_int_equal(elm_dataset_from_arrays(1, 30, RC_IN - 1, big, NULL, 0, one, 1, NULL, &ds), ELM_OK);
    assert_int_equal(elm_trainer_evaluate(s.tr, ds), ELM_E_SHAPE);
    elm_dataset_free(ds);
    elm_trainer_free(NULL);
    elm_loss_free(l2);
    elm_optimizer_free(o2);
    elm_model_free(other);
    small_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learns_long_range),
        cmocka_unit_test(test_loss_ce_last),
        cmocka_unit_test(test_loss_ce_all),
        cmocka_unit_test(test_loss_neuronio),
        cmocka_unit_test(test_loss_mse),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_best_epoch_and_early_stop),
        cmocka_unit_test(test_nonfinite_policy),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_shape_and_batch_metric),
        cmocka_unit_test(test_step_events_matches_dense),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
