/* Training checkpoints: a run interrupted anywhere, saved, loaded into a
 * fresh trainer and continued ends bit-identical to the uninterrupted run;
 * mismatched or damaged checkpoints are refused and change nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "elm.h"

enum { N = 40, NV = 16, T = 12, B = 8, N_IN = 6, N_OUT = 3, EPOCHS = 3 };

static const spec SPEC = {.version = ELM_V1, .act = ELM_RELU, .n_in = N_IN, .n_out = N_OUT,
                          .n_m = 5, .L = 1, .H = 9, .n_b = 3, .k = 2,
                          .routing = ELM_ROUTING_RANDOM, .dt = 1, .tau_min = 1, .tau_max = 50,
                          .lambda = 5, .B = N, .T = T, .density = 0.5f};

typedef struct run {
    elm_model *m;
    elm_optimizer *o;
    elm_loss *l;
    elm_trainer *tr;
    elm_dataset *dt, *dv;
    float *x, *vx;
    int32_t *lb, *vl;
    int stop_at_step, stop_at_epoch, steps, epochs;
} run;

/* One training setup; model_seed changes only the initial parameters. */
static void run_setup(run *r, uint64_t model_seed, elm_optimizer_kind kind, size_t batch) {
    memset(r, 0, sizeof *r);
    spec p = SPEC;
    r->m = make_model(&p, model_seed);
    r->x = make_input(&p, 21);
    p.B = NV;
    r->vx = make_input(&p, 22);
    r->lb = malloc(N * 4);
    r->vl = malloc(NV * 4);
    for (int i = 0; i < N; i++) r->lb[i] = (int32_t)((i * 7 + 1) % N_OUT);
    for (int i = 0; i < NV; i++) r->vl[i] = (int32_t)((i * 5 + 2) % N_OUT);
    assert_int_equal(elm_optimizer_create(r->m, kind, &r->o), ELM_OK);
    elm_optimizer_set(r->o, ELM_OPTIM_LR, 0.02);
    if (kind != ELM_OPTIM_SGD) {
        elm_optimizer_set(r->o, ELM_OPTIM_SCHEDULE, ELM_SCHEDULE_COSINE);
        elm_optimizer_set(r->o, ELM_OPTIM_TOTAL_STEPS, 15);
        elm_optimizer_set(r->o, ELM_OPTIM_WARMUP_STEPS, 3);
    }
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, N_OUT, &r->l), ELM_OK);
    assert_int_equal(elm_trainer_create(r->m, r->o, r->l, batch, T, 0, &r->tr), ELM_OK);
    elm_trainer_set(r->tr, ELM_TRAIN_DROPOUT, 0.25); /* the RNG must resume too */
    elm_trainer_set(r->tr, ELM_TRAIN_SEED, 77);
    elm_trainer_set(r->tr, ELM_TRAIN_EPOCHS, EPOCHS);
    assert_int_equal(elm_dataset_from_arrays(N, T, N_IN, r->x, NULL, 0, r->lb, 1, NULL, &r->dt),
                     ELM_OK);
    assert_int_equal(elm_dataset_from_arrays(NV, T, N_IN, r->vx, NULL, 0, r->vl, 1, NULL, &r->dv),
                     ELM_OK);
    elm_dataset_set(r->dt, ELM_DATASET_SEED, 5);
}

static void run_free(run *r) {
    elm_dataset_free(r->dt);
    elm_dataset_free(r->dv);
    elm_trainer_free(r->tr);
    elm_loss_free(r->l);
    elm_optimizer_free(r->o);
    elm_model_free(r->m);
    free(r->x); free(r->vx); free(r->lb); free(r->vl);
}

static int interrupt(void *user, const elm_trainer *tr, int event) {
    (void)tr;
    run *r = user;
    if (event == ELM_EVENT_STEP) return ++r->steps == r->stop_at_step;
    return ++r->epochs == r->stop_at_epoch;
}

static unsigned char *save(const elm_trainer *tr, size_t *n) {
    assert_int_equal(elm_trainer_save_buffer(tr, NULL, 0, n), ELM_OK);
    unsigned char *b = malloc(*n);
    assert_int_equal(elm_trainer_save_buffer(tr, b, *n, n), ELM_OK);
    return b;
}

static void assert_same_end(const run *a, const run *b) {
    size_t np;
    elm_model_size(a->m, ELM_SIZE_PARAMS, &np);
    assert_memory_equal(elm_model_params(a->m), elm_model_params(b->m), np * 4);
    assert_int_equal(elm_optimizer_steps(a->o), elm_optimizer_steps(b->o));
    for (int k = ELM_METRIC_TRAIN_LOSS; k <= ELM_METRIC_LR; k++) {
        double va, vb;
        elm_trainer_metric(a->tr, (elm_metric)k, &va);
        elm_trainer_metric(b->tr, (elm_metric)k, &vb);
        if (!(va == vb || (isnan(va) && isnan(vb)))) fail_msg("metric %d: %.17g vs %.17g", k, va, vb);
    }
}

static void test_resume_equals_uninterrupted(void **st) {
    (void)st;
    run ref;
    run_setup(&ref, 1, ELM_OPTIM_ADAM, B);
    assert_int_equal(elm_trainer_fit(ref.tr, ref.dt, ref.dv, NULL, NULL), ELM_OK);
    assert_int_equal(elm_optimizer_steps(ref.o), 15);
    /* interruptions: first step, mid-epoch, last step of an epoch, after an
     * epoch's validation, and in the last epoch */
    const int at_step[] = {1, 3, 5, 0, 7, 14};
    const int at_epoch[] = {0, 0, 0, 1, 0, 0};
    for (size_t c = 0; c < sizeof at_step / sizeof *at_step; c++) {
        run a;
        run_setup(&a, 1, ELM_OPTIM_ADAM, B);
        a.stop_at_step = at_step[c];
        a.stop_at_epoch = at_epoch[c];
        assert_int_equal(elm_trainer_fit(a.tr, a.dt, a.dv, interrupt, &a), ELM_OK);
        assert_true(elm_optimizer_steps(a.o) < 15);
        size_t n;
        unsigned char *ck = save(a.tr, &n);
        /* a fresh trainer whose model starts elsewhere */
        run b;
        run_setup(&b, 99, ELM_OPTIM_ADAM, B);
        assert_int_equal(elm_trainer_load_buffer(b.tr, ck, n), ELM_OK);
        assert_int_equal(elm_optimizer_steps(b.o), elm_optimizer_steps(a.o));
        assert_int_equal(elm_trainer_fit(b.tr, b.dt, b.dv, NULL, NULL), ELM_OK);
        assert_same_end(&ref, &b);
        /* the interrupted trainer itself resumes as well */
        assert_int_equal(elm_trainer_fit(a.tr, a.dt, a.dv, NULL, NULL), ELM_OK);
        assert_same_end(&ref, &a);
        free(ck);
        run_free(&a);
        run_free(&b);
    }
    run_free(&ref);
}

/* fit() saves by itself; the last file continues to the same end. */
static void test_autosave(void **st) {
    (void)st;
    char dir[] = "/tmp/elm_ckpt_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/run.elm", dir);
    run ref;
    run_setup(&ref, 1, ELM_OPTIM_ADAM, B);
    assert_int_equal(elm_trainer_fit(ref.tr, ref.dt, ref.dv, NULL, NULL), ELM_OK);

    run a;
    run_setup(&a, 1, ELM_OPTIM_ADAM, B);
    assert_int_equal(elm_trainer_set_checkpoint(a.tr, path, 4), ELM_OK);
    a.stop_at_step = 9; /* "Ctrl-C" */
    assert_int_equal(elm_trainer_fit(a.tr, a.dt, a.dv, interrupt, &a), ELM_OK);
    run b;
    run_setup(&b, 42, ELM_OPTIM_ADAM, B);
    assert_int_equal(elm_trainer_load(b.tr, path), ELM_OK);
    assert_int_equal(elm_optimizer_steps(b.o), 9);
    assert_int_equal(elm_trainer_fit(b.tr, b.dt, b.dv, NULL, NULL), ELM_OK);
    assert_same_end(&ref, &b);
    /* a checkpoint is also a model file: the current parameters */
    elm_model *m = NULL;
    assert_int_equal(elm_model_load(path, &m), ELM_OK);
    size_t np;
    elm_model_size(m, ELM_SIZE_PARAMS, &np);
    assert_memory_equal(elm_model_params(m), elm_model_params(a.m), np * 4);
    elm_model_free(m);
    /* a finished run stays finished */
    assert_int_equal(elm_trainer_fit(b.tr, b.dt, b.dv, NULL, NULL), ELM_OK);
    assert_same_end(&ref, &b);
    assert_int_equal(elm_trainer_set_checkpoint(a.tr, "", 0), ELM_E_INVALID);
    assert_int_equal(elm_trainer_set_checkpoint(a.tr, NULL, 0), ELM_OK);
    assert_int_equal(elm_trainer_set_checkpoint(NULL, path, 0), ELM_E_NULL);
    /* a checkpoint path that cannot be written fails fit() */
    run c;
    run_setup(&c, 1, ELM_OPTIM_ADAM, B);
    assert_int_equal(elm_trainer_set_checkpoint(c.tr, "/nonexistent-dir/x.elm", 0), ELM_OK);
    assert_int_equal(elm_trainer_fit(c.tr, c.dt, c.dv, NULL, NULL), ELM_E_IO);
    run_free(&c);
    unlink(path);
    rmdir(dir);
    run_free(&ref);
    run_free(&a);
    run_free(&b);
}

/* Early stopping and the best epoch survive a resume too. */
static void test_resume_with_patience(void **st) {
    (void)st;
    run ref, a, b;
    run_setup(&ref, 3, ELM_OPTIM_SGD, B);
    run_setup(&a, 3, ELM_OPTIM_SGD, B);
    run_setup(&b, 4, ELM_OPTIM_SGD, B);
    for (run *r = &ref; r; r = r == &ref ? &a : r == &a ? &b : NULL) {
        elm_optimizer_set(r->o, ELM_OPTIM_LR, 0.5); /* noisy: val loss goes up and down */
        elm_trainer_set(r->tr, ELM_TRAIN_EPOCHS, 12);
        elm_trainer_set(r->tr, ELM_TRAIN_PATIENCE, 2);
    }
    assert_int_equal(elm_trainer_fit(ref.tr, ref.dt, ref.dv, NULL, NULL), ELM_OK);
    a.stop_at_epoch = 2;
    assert_int_equal(elm_trainer_fit(a.tr, a.dt, a.dv, interrupt, &a), ELM_OK);
    size_t n;
    unsigned char *ck = save(a.tr, &n);
    assert_int_equal(elm_trainer_load_buffer(b.tr, ck, n), ELM_OK);
    assert_int_equal(elm_trainer_fit(b.tr, b.dt, b.dv, NULL, NULL), ELM_OK);
    assert_same_end(&ref, &b);
    free(ck);
    run_free(&ref);
    run_free(&a);
    run_free(&b);
}

static void assert_untouched(const run *r, const float *before, size_t np) {
    assert_memory_equal(elm_model_params(r->m), before, np * 4);
    assert_int_equal(elm_optimizer_steps(r->o), 0);
    double e;
    elm_trainer_metric(r->tr, ELM_METRIC_EPOCH, &e);
    assert_true(e == 0);
}

static void test_refused(void **st) {
    (void)st;
    run a;
    run_setup(&a, 1, ELM_OPTIM_ADAM, B);
    a.stop_at_step = 6;
    assert_int_equal(elm_trainer_fit(a.tr, a.dt, a.dv, interrupt, &a), ELM_OK);
    size_t n;
    unsigned char *ck = save(a.tr, &n);

    run b;
    run_setup(&b, 8, ELM_OPTIM_ADAM, B);
    size_t np;
    elm_model_size(b.m, ELM_SIZE_PARAMS, &np);
    float *before = malloc(np * 4);
    memcpy(before, elm_model_params(b.m), np * 4);
    /* damaged anywhere: checksum; truncated: truncated */
    ck[n / 2] ^= 4;
    assert_int_equal(elm_trainer_load_buffer(b.tr, ck, n), ELM_E_CHECKSUM);
    ck[n / 2] ^= 4;
    assert_int_equal(elm_trainer_load_buffer(b.tr, ck, n - 8), ELM_E_TRUNCATED);
    assert_untouched(&b, before, np);
    /* a plain model file is not a checkpoint */
    size_t nm;
    elm_model_save_buffer(a.m, NULL, 0, &nm);
    unsigned char *mb = malloc(nm);
    elm_model_save_buffer(a.m, mb, nm, &nm);
    assert_int_equal(elm_trainer_load_buffer(b.tr, mb, nm), ELM_E_FORMAT);
    assert_non_null(strstr(elm_last_error(), "checkpoint"));
    free(mb);
    assert_untouched(&b, before, np);
    run_free(&b);

    /* another optimizer kind, another batch size */
    run_setup(&b, 8, ELM_OPTIM_SGD, B);
    memcpy(before, elm_model_params(b.m), np * 4);
    assert_int_equal(elm_trainer_load_buffer(b.tr, ck, n), ELM_E_CONFIG);
    assert_non_null(strstr(elm_last_error(), "optimizer"));
    assert_untouched(&b, before, np);
    run_free(&b);
    run_setup(&b, 8, ELM_OPTIM_ADAM, 4);
    memcpy(before, elm_model_params(b.m), np * 4);
    assert_int_equal(elm_trainer_load_buffer(b.tr, ck, n), ELM_E_CONFIG);
    assert_untouched(&b, before, np);
    run_free(&b);

    /* another model */
    spec p = SPEC;
    p.n_m = 6;
    elm_model *m = make_model(&p, 1);
    elm_optimizer *o;
    elm_loss *l;
    elm_trainer *tr;
    elm_optimizer_create(m, ELM_OPTIM_ADAM, &o);
    elm_loss_create(ELM_LOSS_CE_LAST, N_OUT, &l);
    assert_int_equal(elm_trainer_create(m, o, l, B, T, 0, &tr), ELM_OK);
    assert_int_equal(elm_trainer_load_buffer(tr, ck, n), ELM_E_CONFIG);
    assert_non_null(strstr(elm_last_error(), "num_memory"));
    assert_int_equal(elm_trainer_load_buffer(NULL, ck, n), ELM_E_NULL);
    assert_int_equal(elm_trainer_load(tr, "/nonexistent.elm"), ELM_E_IO);
    elm_trainer_free(tr);
    elm_loss_free(l);
    elm_optimizer_free(o);
    elm_model_free(m);
    free(before);
    free(ck);
    run_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_equals_uninterrupted),
        cmocka_unit_test(test_autosave),
        cmocka_unit_test(test_resume_with_patience),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
