/* Optimizers: every update rule against a straightforward double-precision
 * transcription of the PyTorch formulas, freezing, clipping, schedules,
 * non-finite gradients, the state string, and the model refresh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "elm.h"

#define PI_D 3.14159265358979323846

/* ---- fixtures ----------------------------------------------------------- */

static elm_model *small_model(int learn_tau_m, uint64_t seed) {
    elm_config *c;
    assert_int_equal(elm_config_create(&c), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_NUM_INPUT, 3), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_NUM_OUTPUT, 2), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_NUM_MEMORY, 4), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_MLP_HIDDEN_SIZE, 5), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_LEARN_TAU_M, learn_tau_m), ELM_OK);
    elm_model *m = NULL;
    assert_int_equal(elm_model_create(c, seed, &m), ELM_OK);
    elm_config_free(c);
    return m;
}

static size_t n_params(const elm_model *m) {
    size_t n;
    assert_int_equal(elm_model_size(m, ELM_SIZE_PARAMS, &n), ELM_OK);
    return n;
}

static size_t n_tensors(const elm_model *m) {
    size_t n;
    assert_int_equal(elm_model_size(m, ELM_SIZE_NUM_TENSORS, &n), ELM_OK);
    return n;
}

/* Offset and element count of tensor i in the buffer. */
static void tensor_span(const elm_model *m, size_t i, size_t *off, size_t *numel) {
    size_t o = 0;
    *off = *numel = 0;
    for (size_t k = 0; k <= i; k++) {
        int nd;
        int64_t sh[ELM_MAX_DIMS];
        assert_int_equal(elm_model_param_info(m, k, NULL, &nd, sh, NULL), ELM_OK);
        size_t ne = (size_t)sh[0] * (nd > 1 ? (size_t)sh[1] : 1);
        if (k == i) {
            *off = o;
            *numel = ne;
        }
        o += ne;
    }
}

static size_t tensor_index(const elm_model *m, const char *name) {
    for (size_t i = 0; i < n_tensors(m); i++) {
        const char *nm;
        assert_int_equal(elm_model_param_info(m, i, &nm, NULL, NULL, NULL), ELM_OK);
        if (strcmp(nm, name) == 0) return i;
    }
    fail_msg("no tensor %s", name);
    return 0;
}

/* Per element: is it trained by default (the tensor is trainable)? */
static bool *default_mask(const elm_model *m) {
    size_t n = n_params(m);
    bool *mask = calloc(n, sizeof *mask);
    for (size_t i = 0; i < n_tensors(m); i++) {
        int tr;
        size_t off, ne;
        assert_int_equal(elm_model_param_info(m, i, NULL, NULL, NULL, &tr), ELM_OK);
        tensor_span(m, i, &off, &ne);
        for (size_t j = 0; j < ne; j++) mask[off + j] = tr != 0;
    }
    return mask;
}

static void gradient(float *g, size_t n, uint64_t step) {
    uint64_t seed = 1000 + 7919 * step;
    fill_uniform(g, n, -1.0f, 1.0f, &seed);
}

/* ---- the reference: the PyTorch formulas, literally, in double ---------- */

typedef struct ref_opt {
    elm_optimizer_kind kind;
    double lr, mu, damp, wd, b1, b2, eps;
    int nesterov;
    size_t n;
    double *p, *m, *v;
    int t;
} ref_opt;

static ref_opt ref_create(elm_optimizer_kind kind, const float *p, size_t n) {
    ref_opt r = {.kind = kind, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8, .n = n};
    r.lr = kind == ELM_OPTIM_SGD ? 1e-2 : kind == ELM_OPTIM_ADAMAX ? 2e-3 : 1e-3;
    r.wd = kind == ELM_OPTIM_ADAMW ? 1e-2 : 0;
    r.p = calloc(n, sizeof(double));
    r.m = calloc(n, sizeof(double));
    r.v = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) r.p[i] = p[i];
    return r;
}

static void ref_free(ref_opt *r) {
    free(r->p);
    free(r->m);
    free(r->v);
}

/* One step with learning rate lr; `scale` multiplies the gradient. */
static void ref_step(ref_opt *r, const float *grad, const bool *mask, double lr, double scale) {
    r->t++;
    int t = r->t;
    for (size_t i = 0; i < r->n; i++) {
        if (!mask[i]) continue;
        double g = (double)grad[i] * scale, p = r->p[i];
        switch (r->kind) {
        case ELM_OPTIM_SGD:
            if (r->wd != 0) g += r->wd * p;
            if (r->mu != 0) {
                r->m[i] = t == 1 ? g : r->mu * r->m[i] + (1 - r->damp) * g;
                g = r->nesterov ? g + r->mu * r->m[i] : r->m[i];
            }
            p -= lr * g;
            break;
        case ELM_OPTIM_ADAM:
        case ELM_OPTIM_ADAMW:
            if (r->kind == ELM_OPTIM_ADAMW)
                p *= 1 - lr * r->wd;
            else
                g += r->wd * p;
            r->m[i] = r->b1 * r->m[i] + (1 - r->b1) * g;
            r->v[i] = r->b2 * r->v[i] + (1 - r->b2) * g * g;
            p -= lr / (1 - pow(r->b1, t)) * r->m[i] /
                 (sqrt(r->v[i]) / sqrt(1 - pow(r->b2, t)) + r->eps);
            break;
        case ELM_OPTIM_ADAMAX:
            g += r->wd * p;
            r->m[i] = r->b1 * r->m[i] + (1 - r->b1) * g;
            r->v[i] = fmax(r->b2 * r->v[i], fabs(g) + r->eps);
            p -= lr / (1 - pow(r->b1, t)) * r->m[i] / r->v[i];
            break;
        }
        r->p[i] = p;
    }
}

/* |got - want| within 1e-6 of the value and of its total displacement. */
static void assert_close(double got, double want, double start, const char *what, size_t i) {
    double tol = 1e-6 * (fabs(want) + fabs(want - start)) + 1e-12;
    if (!(fabs(got - want) <= tol))
        fail_msg("%s[%zu]: got %.9g, want %.9g (start %.9g)", what, i, got, want, start);
}

/* The settings a case applies to both the library and the reference. */
typedef struct opt_case {
    const char *label;
    elm_optimizer_kind kind;
    double lr, mu, damp, wd, b1, b2, eps;
    int nesterov;
} opt_case;

static void apply_case(elm_optimizer *o, ref_opt *r, const opt_case *c) {
    if (c->lr > 0) {
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, c->lr), ELM_OK);
        r->lr = c->lr;
    }
    if (c->kind == ELM_OPTIM_SGD) {
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_MOMENTUM, c->mu), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_DAMPENING, c->damp), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_NESTEROV, c->nesterov), ELM_OK);
        r->mu = c->mu;
        r->damp = c->damp;
        r->nesterov = c->nesterov;
    } else {
        if (c->b1 >= 0) {
            assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_BETA1, c->b1), ELM_OK);
            r->b1 = c->b1;
        }
        if (c->b2 >= 0) {
            assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_BETA2, c->b2), ELM_OK);
            r->b2 = c->b2;
        }
        if (c->eps > 0) {
            assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_EPS, c->eps), ELM_OK);
            r->eps = c->eps;
        }
    }
    if (c->wd >= 0) {
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_WEIGHT_DECAY, c->wd), ELM_OK);
        r->wd = c->wd;
    }
}

/* Run `steps` steps of a case on a fresh model and compare every parameter
 * after each step. */
static void run_case(const opt_case *c, int steps) {
    elm_model *m = small_model(0, 11);
    size_t n = n_params(m);
    bool *mask = default_mask(m);
    float *p0 = malloc(n * sizeof *p0), *g = malloc(n * sizeof *g);
    memcpy(p0, elm_model_params(m), n * sizeof *p0);
    elm_optimizer *o;
    assert_int_equal(elm_optimizer_create(m, c->kind, &o), ELM_OK);
    ref_opt r = ref_create(c->kind, p0, n);
    apply_case(o, &r, c);
    for (int s = 0; s < steps; s++) {
        gradient(g, n, (uint64_t)s);
        double norm;
        assert_int_equal(elm_optimizer_step(o, g, &norm), ELM_OK);
        ref_step(&r, g, mask, r.lr, 1.0);
        const float *p = elm_model_params(m);
        size_t moved = 0;
        for (size_t i = 0; i < n; i++) {
            if (!mask[i]) {
                assert_memory_equal(&p[i], &p0[i], sizeof(float)); /* frozen: untouched */
                continue;
            }
            assert_close(p[i], r.p[i], p0[i], c->label, i);
            moved += p[i] != p0[i];
        }
        assert_true(moved > n / 2); /* the case really moves the parameters */
    }
    assert_int_equal(elm_optimizer_steps(o), (uint64_t)steps);
    ref_free(&r);
    elm_optimizer_free(o);
    elm_model_free(m);
    free(mask);
    free(p0);
    free(g);
}

/* ---- names and settings ------------------------------------------------- */

static void test_kind_names(void **st) {
    (void)st;
    static const char *names[] = {"sgd", "adam", "adamw", "adamax"};
    for (int k = 1; k <= 4; k++) {
        elm_optimizer_kind kind = 0;
        assert_string_equal(elm_optimizer_kind_name((elm_optimizer_kind)k), names[k - 1]);
        assert_int_equal(elm_optimizer_kind_from_name(names[k - 1], &kind), ELM_OK);
        assert_int_equal(kind, k);
    }
    elm_optimizer_kind kind = ELM_OPTIM_ADAM;
    assert_int_equal(elm_optimizer_kind_from_name("adamz", &kind), ELM_E_UNKNOWN_NAME);
    assert_non_null(strstr(elm_last_error(), "adamz"));
    assert_int_equal(elm_optimizer_kind_from_name("", &kind), ELM_E_UNKNOWN_NAME);
    assert_int_equal(kind, ELM_OPTIM_ADAM);
    assert_int_equal(elm_optimizer_kind_from_name(NULL, &kind), ELM_E_NULL);
    assert_int_equal(elm_optimizer_kind_from_name("sgd", NULL), ELM_E_NULL);
    assert_null(elm_optimizer_kind_name((elm_optimizer_kind)0));
    assert_null(elm_optimizer_kind_name((elm_optimizer_kind)5));
    /* the kind an optimizer was created with */
    elm_model *m = small_model(0, 1);
    for (int k = 1; k <= 4; k++) {
        elm_optimizer *o;
        assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)k, &o), ELM_OK);
        assert_int_equal(elm_optimizer_get_kind(o), k);
        elm_optimizer_free(o);
    }
    assert_int_equal(elm_optimizer_get_kind(NULL), 0);
    elm_model_free(m);
}

static void test_create_and_null(void **st) {
    (void)st;
    elm_model *m = small_model(0, 1);
    elm_optimizer *o = NULL;
    assert_int_equal(elm_optimizer_create(NULL, ELM_OPTIM_SGD, &o), ELM_E_NULL);
    assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_SGD, NULL), ELM_E_NULL);
    assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)0, &o), ELM_E_INVALID);
    assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)9, &o), ELM_E_INVALID);
    assert_null(o);
    assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_ADAM, &o), ELM_OK);
    double v;
    float g[1] = {0};
    int fr;
    size_t sz;
    assert_int_equal(elm_optimizer_set(NULL, ELM_OPTIM_LR, 1), ELM_E_NULL);
    assert_int_equal(elm_optimizer_get(NULL, ELM_OPTIM_LR, &v), ELM_E_NULL);
    assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_LR, NULL), ELM_E_NULL);
    assert_int_equal(elm_optimizer_freeze(NULL, "tau_s", 1), ELM_E_NULL);
    assert_int_equal(elm_optimizer_freeze(o, NULL, 1), ELM_E_NULL);
    assert_int_equal(elm_optimizer_is_frozen(o, "tau_s", NULL), ELM_E_NULL);
    assert_int_equal(elm_optimizer_is_frozen(NULL, "tau_s", &fr), ELM_E_NULL);
    assert_int_equal(elm_optimizer_step(NULL, g, NULL), ELM_E_NULL);
    assert_int_equal(elm_optimizer_step(o, NULL, NULL), ELM_E_NULL);
    assert_int_equal(elm_optimizer_save_state(NULL, NULL, 0, &sz), ELM_E_NULL);
    assert_int_equal(elm_optimizer_save_state(o, NULL, 0, NULL), ELM_E_NULL);
    assert_int_equal(elm_optimizer_load_state(o, NULL, 10), ELM_E_NULL);
    assert_int_equal(elm_optimizer_load_state(NULL, g, 4), ELM_E_NULL);
    assert_int_equal(elm_optimizer_steps(NULL), 0);
    assert_true(elm_optimizer_lr(NULL) == 0.0);
    assert_int_equal(elm_optimizer_steps(o), 0);
    elm_optimizer_free(o);
    elm_optimizer_free(NULL);
    elm_model_free(m);
}

static void test_defaults(void **st) {
    (void)st;
    elm_model *m = small_model(0, 1);
    static const double lr[] = {0, 1e-2, 1e-3, 1e-3, 2e-3};
    static const double wd[] = {0, 0, 0, 1e-2, 0};
    for (int k = 1; k <= 4; k++) {
        elm_optimizer *o;
        assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)k, &o), ELM_OK);
        double v;
        assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_LR, &v), ELM_OK);
        assert_true(v == lr[k]);
        assert_true(elm_optimizer_lr(o) == lr[k]);
        assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_WEIGHT_DECAY, &v), ELM_OK);
        assert_true(v == wd[k]);
        assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_CLIP_NORM, &v), ELM_OK);
        assert_true(v == 0);
        assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_SCHEDULE, &v), ELM_OK);
        assert_true(v == ELM_SCHEDULE_CONSTANT);
        assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_TOTAL_STEPS, &v), ELM_OK);
        assert_true(v == 1);
        assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_WARMUP_STEPS, &v), ELM_OK);
        assert_true(v == 0);
        assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_MIN_LR, &v), ELM_OK);
        assert_true(v == 0);
        if (k == ELM_OPTIM_SGD) {
            for (int key = ELM_OPTIM_MOMENTUM; key <= ELM_OPTIM_NESTEROV; key++) {
                assert_int_equal(elm_optimizer_get(o, (elm_optim_param)key, &v), ELM_OK);
                assert_true(v == 0);
            }
            for (int key = ELM_OPTIM_BETA1; key <= ELM_OPTIM_EPS; key++) {
                assert_int_equal(elm_optimizer_get(o, (elm_optim_param)key, &v),
                                 ELM_E_UNKNOWN_NAME);
                assert_int_equal(elm_optimizer_set(o, (elm_optim_param)key, 0.5),
                                 ELM_E_UNKNOWN_NAME);
            }
        } else {
            assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_BETA1, &v), ELM_OK);
            assert_true(v == 0.9);
            assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_BETA2, &v), ELM_OK);
            assert_true(v == 0.999);
            assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_EPS, &v), ELM_OK);
            assert_true(v == 1e-8);
            for (int key = ELM_OPTIM_MOMENTUM; key <= ELM_OPTIM_NESTEROV; key++) {
                assert_int_equal(elm_optimizer_get(o, (elm_optim_param)key, &v),
                                 ELM_E_UNKNOWN_NAME);
                assert_int_equal(elm_optimizer_set(o, (elm_optim_param)key, 0.5),
                                 ELM_E_UNKNOWN_NAME);
                assert_non_null(strstr(elm_last_error(), k == 4 ? "adamax" : "adam"));
            }
        }
        assert_int_equal(elm_optimizer_get(o, (elm_optim_param)0, &v), ELM_E_UNKNOWN_NAME);
        assert_int_equal(elm_optimizer_get(o, (elm_optim_param)14, &v), ELM_E_UNKNOWN_NAME);
        assert_int_equal(elm_optimizer_set(o, (elm_optim_param)14, 1), ELM_E_UNKNOWN_NAME);
        assert_int_equal(elm_optimizer_set(o, (elm_optim_param)-3, 1), ELM_E_UNKNOWN_NAME);
        elm_optimizer_free(o);
    }
    elm_model_free(m);
}

static void test_set_bounds(void **st) {
    (void)st;
    elm_model *m = small_model(0, 1);
    struct {
        elm_optimizer_kind kind;
        elm_optim_param key;
        double good, bad;
    } cases[] = {
        {ELM_OPTIM_ADAM, ELM_OPTIM_LR, 0.5, 0},
        {ELM_OPTIM_ADAM, ELM_OPTIM_LR, 0.5, -1e-3},
        {ELM_OPTIM_ADAM, ELM_OPTIM_LR, 0.5, NAN},
        {ELM_OPTIM_ADAM, ELM_OPTIM_LR, 0.5, INFINITY},
        {ELM_OPTIM_SGD, ELM_OPTIM_MOMENTUM, 0.99, 1},
        {ELM_OPTIM_SGD, ELM_OPTIM_MOMENTUM, 0.99, -0.1},
        {ELM_OPTIM_SGD, ELM_OPTIM_DAMPENING, 1, 1.01},
        {ELM_OPTIM_SGD, ELM_OPTIM_DAMPENING, 1, NAN},
        {ELM_OPTIM_SGD, ELM_OPTIM_NESTEROV, 1, 0.5},
        {ELM_OPTIM_SGD, ELM_OPTIM_NESTEROV, 1, 2},
        {ELM_OPTIM_ADAM, ELM_OPTIM_BETA1, 0, 1},
        {ELM_OPTIM_ADAMAX, ELM_OPTIM_BETA1, 0.5, -0.5},
        {ELM_OPTIM_ADAMW, ELM_OPTIM_BETA2, 0.25, 1},
        {ELM_OPTIM_ADAMW, ELM_OPTIM_EPS, 1e-3, 0},
        {ELM_OPTIM_ADAMW, ELM_OPTIM_EPS, 1e-3, -1e-8},
        {ELM_OPTIM_SGD, ELM_OPTIM_WEIGHT_DECAY, 0.5, -0.1},
        {ELM_OPTIM_ADAM, ELM_OPTIM_WEIGHT_DECAY, 0.5, INFINITY},
        {ELM_OPTIM_ADAM, ELM_OPTIM_CLIP_NORM, 2.5, -1},
        {ELM_OPTIM_ADAM, ELM_OPTIM_CLIP_NORM, 2.5, NAN},
        {ELM_OPTIM_ADAM, ELM_OPTIM_SCHEDULE, ELM_SCHEDULE_COSINE, 2},
        {ELM_OPTIM_ADAM, ELM_OPTIM_SCHEDULE, ELM_SCHEDULE_COSINE, -1},
        {ELM_OPTIM_ADAM, ELM_OPTIM_TOTAL_STEPS, 100, 0},
        {ELM_OPTIM_ADAM, ELM_OPTIM_TOTAL_STEPS, 100, 10.5},
        {ELM_OPTIM_ADAM, ELM_OPTIM_WARMUP_STEPS, 7, -1},
        {ELM_OPTIM_ADAM, ELM_OPTIM_WARMUP_STEPS, 7, 2.25},
        {ELM_OPTIM_SGD, ELM_OPTIM_MIN_LR, 1e-5, -1e-5},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        elm_optimizer *o;
        assert_int_equal(elm_optimizer_create(m, cases[c].kind, &o), ELM_OK);
        double v;
        assert_int_equal(elm_optimizer_set(o, cases[c].key, cases[c].good), ELM_OK);
        assert_int_equal(elm_optimizer_get(o, cases[c].key, &v), ELM_OK);
        assert_true(v == cases[c].good);
        if (elm_optimizer_set(o, cases[c].key, cases[c].bad) != ELM_E_INVALID)
            fail_msg("case %zu: value %g accepted", c, cases[c].bad);
        assert_true(strlen(elm_last_error()) > 0);
        assert_int_equal(elm_optimizer_get(o, cases[c].key, &v), ELM_OK);
        assert_true(v == cases[c].good); /* unchanged */
        elm_optimizer_free(o);
    }
    elm_model_free(m);
}

/* ---- update rules ------------------------------------------------------- */

static void test_sgd_rules(void **st) {
    (void)st;
    /* label, kind, lr, momentum, dampening, wd, b1, b2, eps, nesterov */
    static const opt_case cases[] = {
        {"sgd default", ELM_OPTIM_SGD, 0, 0, 0, -1, 0, 0, 0, 0},
        {"sgd plain", ELM_OPTIM_SGD, 0.05, 0, 0, 0, 0, 0, 0, 0},
        {"sgd momentum", ELM_OPTIM_SGD, 0.05, 0.9, 0, 0, 0, 0, 0, 0},
        {"sgd dampening", ELM_OPTIM_SGD, 0.05, 0.8, 0.3, 0, 0, 0, 0, 0},
        {"sgd nesterov", ELM_OPTIM_SGD, 0.05, 0.7, 0, 0, 0, 0, 0, 1},
        {"sgd weight decay", ELM_OPTIM_SGD, 0.05, 0, 0, 0.2, 0, 0, 0, 0},
        {"sgd momentum wd", ELM_OPTIM_SGD, 0.03, 0.9, 0.1, 0.3, 0, 0, 0, 0},
        {"sgd nesterov wd", ELM_OPTIM_SGD, 0.03, 0.5, 0, 0.3, 0, 0, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) run_case(&cases[c], 6);
}

static void test_adam_rules(void **st) {
    (void)st;
    /* b1, b2 < 0 and eps <= 0 keep the defaults; wd < 0 keeps the default */
    static const opt_case cases[] = {
        {"adam default", ELM_OPTIM_ADAM, 0, 0, 0, -1, -1, -1, 0, 0},
        {"adam", ELM_OPTIM_ADAM, 0.05, 0, 0, 0, -1, -1, 0, 0},
        {"adam eps", ELM_OPTIM_ADAM, 0.05, 0, 0, 0, -1, -1, 1e-2, 0},
        {"adam betas", ELM_OPTIM_ADAM, 0.05, 0, 0, 0, 0.3, 0.8, 1e-3, 0},
        {"adam beta1 0", ELM_OPTIM_ADAM, 0.05, 0, 0, 0, 0, 0.5, 0, 0},
        {"adam weight decay", ELM_OPTIM_ADAM, 0.05, 0, 0, 0.5, -1, -1, 0, 0},
        {"adamw default", ELM_OPTIM_ADAMW, 0, 0, 0, -1, -1, -1, 0, 0},
        {"adamw", ELM_OPTIM_ADAMW, 0.05, 0, 0, 0.5, -1, -1, 0, 0},
        {"adamw no decay", ELM_OPTIM_ADAMW, 0.05, 0, 0, 0, 0.6, 0.9, 0, 0},
        {"adamax default", ELM_OPTIM_ADAMAX, 0, 0, 0, -1, -1, -1, 0, 0},
        {"adamax", ELM_OPTIM_ADAMAX, 0.05, 0, 0, 0, -1, -1, 0, 0},
        {"adamax betas", ELM_OPTIM_ADAMAX, 0.05, 0, 0, 0, 0.2, 0.7, 1e-2, 0},
        {"adamax weight decay", ELM_OPTIM_ADAMAX, 0.05, 0, 0, 0.5, -1, -1, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) run_case(&cases[c], 6);
}

/* Bias correction: Adam's and Adamax's first step moves every trained
 * parameter by lr * g / (|g| + eps), i.e. ~lr, whatever the betas. */
static void test_bias_correction(void **st) {
    (void)st;
    for (int k = ELM_OPTIM_ADAM; k <= ELM_OPTIM_ADAMAX; k++) {
        elm_model *m = small_model(0, 3);
        size_t n = n_params(m);
        bool *mask = default_mask(m);
        float *p0 = malloc(n * sizeof *p0), *g = malloc(n * sizeof *g);
        memcpy(p0, elm_model_params(m), n * sizeof *p0);
        elm_optimizer *o;
        assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)k, &o), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, 0.01), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_WEIGHT_DECAY, 0), ELM_OK);
        gradient(g, n, 5);
        assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
        const float *p = elm_model_params(m);
        for (size_t i = 0; i < n; i++) {
            if (!mask[i]) continue;
            double want = p0[i] - 0.01 * g[i] / (fabs(g[i]) + 1e-8);
            assert_close(p[i], want, p0[i], "first step", i);
        }
        /* The second step with the same gradient moves by lr again. */
        float *p1 = malloc(n * sizeof *p1);
        memcpy(p1, p, n * sizeof *p1);
        assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
        for (size_t i = 0; i < n; i++) {
            if (!mask[i] || fabsf(g[i]) < 1e-3f) continue;
            double want = p1[i] - 0.01 * (g[i] > 0 ? 1 : -1);
            assert_close(p[i], want, p1[i], "second step", i);
        }
        elm_optimizer_free(o);
        elm_model_free(m);
        free(mask);
        free(p0);
        free(p1);
        free(g);
    }
}

/* The moments in the state string are PyTorch's exp_avg and exp_avg_sq. */
static uint64_t rd_u64(const unsigned char *p) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = x << 8 | p[i];
    return x;
}

static float rd_f32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void test_moments_in_state(void **st) {
    (void)st;
    elm_model *m = small_model(0, 4);
    size_t n = n_params(m), nt = n_tensors(m);
    bool *mask = default_mask(m);
    float *g = malloc(n * sizeof *g);
    elm_optimizer *o;
    assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_ADAM, &o), ELM_OK);
    ref_opt r = ref_create(ELM_OPTIM_ADAM, elm_model_params(m), n);
    for (int s = 0; s < 4; s++) {
        gradient(g, n, (uint64_t)s + 40);
        assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
        ref_step(&r, g, mask, r.lr, 1.0);
    }
    size_t size;
    assert_int_equal(elm_optimizer_save_state(o, NULL, 0, &size), ELM_OK);
    unsigned char *buf = malloc(size);
    assert_int_equal(elm_optimizer_save_state(o, buf, size, &size), ELM_OK);
    assert_memory_equal(buf, "ELMOPTS", 8);
    assert_int_equal(rd_u64(buf + 24), n);
    assert_int_equal(rd_u64(buf + 32), nt);
    assert_int_equal(rd_u64(buf + 40), 4); /* steps */
    const unsigned char *mom = buf + 48 + 13 * 8 + 17 * nt;
    assert_int_equal(size, (size_t)(mom - buf) + 8 * n + 8);
    for (size_t i = 0; i < n; i++) {
        float m1 = rd_f32(mom + 4 * i), v1 = rd_f32(mom + 4 * (n + i));
        if (!mask[i]) {
            assert_true(m1 == 0 && v1 == 0);
            continue;
        }
        assert_close(m1, r.m[i], 0, "exp_avg", i);
        assert_close(v1, r.v[i], 0, "exp_avg_sq", i);
    }
    ref_free(&r);
    free(buf);
    free(g);
    free(mask);
    elm_optimizer_free(o);
    elm_model_free(m);
}

/* ---- freezing ----------------------------------------------------------- */

static void test_freeze(void **st) {
    (void)st;
    elm_model *m = small_model(0, 5);
    size_t n = n_params(m);
    float *p0 = malloc(n * sizeof *p0), *g = malloc(n * sizeof *g);
    memcpy(p0, elm_model_params(m), n * sizeof *p0);
    elm_optimizer *o;
    assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_ADAM, &o), ELM_OK);
    int fr = -1;
    assert_int_equal(elm_optimizer_is_frozen(o, "tau_s", &fr), ELM_OK);
    assert_int_equal(fr, 1);
    assert_int_equal(elm_optimizer_is_frozen(o, "_proto_tau_m", &fr), ELM_OK);
    assert_int_equal(fr, 1);
    assert_int_equal(elm_optimizer_is_frozen(o, "w_y.weight", &fr), ELM_OK);
    assert_int_equal(fr, 0);
    assert_int_equal(elm_optimizer_is_frozen(o, "nope", &fr), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_optimizer_freeze(o, "nope", 1), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_optimizer_freeze(o, "readout.weight", 2), ELM_E_INVALID);
    assert_int_equal(elm_optimizer_is_frozen(o, "readout.weight", &fr), ELM_OK);
    assert_int_equal(fr, 0);
    /* Freeze by alias; the frozen tensors never move, even with NaN in
     * their gradient entries. */
    assert_int_equal(elm_optimizer_freeze(o, "w_y.weight", 1), ELM_OK);
    assert_int_equal(elm_optimizer_is_frozen(o, "readout.weight", &fr), ELM_OK);
    assert_int_equal(fr, 1);
    size_t off_w, ne_w, off_t, ne_t;
    tensor_span(m, tensor_index(m, "readout.weight"), &off_w, &ne_w);
    tensor_span(m, 1, &off_t, &ne_t);
    for (int s = 0; s < 3; s++) {
        gradient(g, n, (uint64_t)s);
        g[off_w] = NAN;
        g[off_t] = INFINITY;
        assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
    }
    const float *p = elm_model_params(m);
    for (int i = 0; i < 3; i++) {
        size_t off, ne;
        tensor_span(m, tensor_index(m, (const char *[]){"tau_s", "tau_m_proto",
                                                        "readout.weight"}[i]), &off, &ne);
        assert_memory_equal(p + off, p0 + off, ne * sizeof(float));
    }
    size_t off_b, ne_b;
    tensor_span(m, tensor_index(m, "readout.bias"), &off_b, &ne_b);
    assert_true(p[off_b] != p0[off_b]);

    /* Unfreezing: the tensor's own step count starts at 1 (as PyTorch's
     * per-parameter state), so its first update is ~lr * sign(g). */
    assert_int_equal(elm_optimizer_freeze(o, "readout.weight", 0), ELM_OK);
    gradient(g, n, 9);
    assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
    for (size_t j = 0; j < ne_w; j++) {
        size_t i = off_w + j;
        double want = p0[i] - 1e-3 * g[i] / (fabs(g[i]) + 1e-8);
        assert_close(p[i], want, p0[i], "unfrozen", i);
    }
    assert_int_equal(elm_optimizer_steps(o), 4);
    free(p0);
    free(g);
    elm_optimizer_free(o);
    elm_model_free(m);
}

/* A tensor frozen for a while keeps its moments and its own step count:
 * trained at steps 1-3, frozen at 4, trained again at 5 and 6, it follows a
 * 5-step Adam on the gradients of steps 1, 2, 3, 5, 6. */
static void test_freeze_keeps_moments(void **st) {
    (void)st;
    for (int k = ELM_OPTIM_SGD; k <= ELM_OPTIM_ADAMAX; k++) {
        elm_model *m = small_model(0, 16);
        size_t n = n_params(m);
        bool *mask = default_mask(m);
        float *p0 = malloc(n * sizeof *p0), *g = malloc(n * sizeof *g);
        memcpy(p0, elm_model_params(m), n * sizeof *p0);
        elm_optimizer *o;
        assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)k, &o), ELM_OK);
        ref_opt r = ref_create((elm_optimizer_kind)k, p0, n);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, 0.05), ELM_OK);
        r.lr = 0.05;
        if (k == ELM_OPTIM_SGD) {
            assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_MOMENTUM, 0.9), ELM_OK);
            r.mu = 0.9;
        }
        size_t off, ne;
        tensor_span(m, tensor_index(m, "mlp.1.weight"), &off, &ne);
        for (int s = 0; s < 6; s++) {
            gradient(g, n, (uint64_t)s + 300);
            int frozen = s == 3;
            assert_int_equal(elm_optimizer_freeze(o, "mlp.network.2.weight", frozen), ELM_OK);
            assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
            if (!frozen) ref_step(&r, g, mask, r.lr, 1.0);
        }
        const float *p = elm_model_params(m);
        for (size_t j = 0; j < ne; j++)
            assert_close(p[off + j], r.p[off + j], p0[off + j], "refrozen", j);
        ref_free(&r);
        elm_optimizer_free(o);
        elm_model_free(m);
        free(mask);
        free(p0);
        free(g);
    }
}

/* Unfrozen taus train; tau_s is clamped at 1e-6; an infinite tau_m_proto
 * entry stays infinite (no NaN), even with weight decay. */
static void test_tau_training(void **st) {
    (void)st;
    elm_model *m = small_model(1, 6);
    size_t n = n_params(m);
    float *p0 = malloc(n * sizeof *p0), *g = calloc(n, sizeof *g);
    memcpy(p0, elm_model_params(m), n * sizeof *p0);
    size_t off_s, ne_s, off_m, ne_m;
    tensor_span(m, 1, &off_s, &ne_s);
    tensor_span(m, 2, &off_m, &ne_m);
    assert_true(isinf(p0[off_m + ne_m - 1]) && p0[off_m + ne_m - 1] > 0);

    elm_optimizer *o;
    assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_SGD, &o), ELM_OK);
    int fr;
    assert_int_equal(elm_optimizer_is_frozen(o, "tau_m_proto", &fr), ELM_OK);
    assert_int_equal(fr, 0); /* ELM_LEARN_TAU_M */
    assert_int_equal(elm_optimizer_freeze(o, "tau_s", 0), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, 1.0), ELM_OK);
    g[off_s + 0] = 100.0f; /* 5 - 100 < 0: clamped */
    g[off_s + 1] = 0.5f;   /* 5 - 0.5 */
    g[off_s + 2] = -2.0f;  /* 5 + 2 */
    for (size_t j = 0; j < ne_m; j++) g[off_m + j] = 0.25f;
    assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
    const float *p = elm_model_params(m);
    assert_true(p[off_s + 0] == 1e-6f);
    assert_close(p[off_s + 1], 4.5, 5, "tau_s", 1);
    assert_close(p[off_s + 2], 7.0, 5, "tau_s", 2);
    for (size_t j = 0; j + 1 < ne_m; j++)
        assert_close(p[off_m + j], (double)p0[off_m + j] - 0.25, p0[off_m + j], "tau_m", j);
    assert_true(isinf(p[off_m + ne_m - 1]) && p[off_m + ne_m - 1] > 0);
    elm_optimizer_free(o);

    /* Adam and SGD with weight decay: never NaN. */
    for (int k = 1; k <= 4; k++) {
        assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)k, &o), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_WEIGHT_DECAY, 0.1), ELM_OK);
        if (k == ELM_OPTIM_SGD) assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_MOMENTUM, 0.9), ELM_OK);
        for (int s = 0; s < 3; s++) {
            gradient(g, n, (uint64_t)s);
            g[off_m + ne_m - 1] = s == 1 ? 0.0f : 0.5f;
            assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
        }
        for (size_t i = 0; i < n; i++) assert_false(isnan(p[i]));
        assert_true(isinf(p[off_m + ne_m - 1]) && p[off_m + ne_m - 1] > 0);
        /* and the state (finite moments) round-trips */
        size_t size;
        assert_int_equal(elm_optimizer_save_state(o, NULL, 0, &size), ELM_OK);
        void *buf = malloc(size);
        assert_int_equal(elm_optimizer_save_state(o, buf, size, &size), ELM_OK);
        assert_int_equal(elm_optimizer_load_state(o, buf, size), ELM_OK);
        free(buf);
        elm_optimizer_free(o);
    }
    /* The model still runs. */
    float x[3 * 4], y[2 * 4];
    uint64_t sd = 3;
    fill_uniform(x, 12, 0, 1, &sd);
    assert_int_equal(elm_model_forward(m, x, 1, 4, y), ELM_OK);
    for (int i = 0; i < 8; i++) assert_true(isfinite(y[i]));
    free(p0);
    free(g);
    elm_model_free(m);
}

/* ---- clipping and the norm --------------------------------------------- */

static double trained_norm(const float *g, const bool *mask, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        if (mask[i]) s += (double)g[i] * (double)g[i];
    return sqrt(s);
}

static void test_clip_and_norm(void **st) {
    (void)st;
    elm_model *m = small_model(0, 7);
    size_t n = n_params(m);
    bool *mask = default_mask(m);
    float *p0 = malloc(n * sizeof *p0), *g = malloc(n * sizeof *g), *g0 = malloc(n * sizeof *g0);
    size_t off_t, ne_t;
    tensor_span(m, 1, &off_t, &ne_t);
    for (int clip_on = 0; clip_on <= 2; clip_on++) {
        memcpy(p0, elm_model_params(m), n * sizeof *p0);
        elm_optimizer *o;
        assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_SGD, &o), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, 0.1), ELM_OK);
        gradient(g, n, 77);
        for (size_t j = 0; j < ne_t; j++) g[off_t + j] = 1000.0f; /* frozen: excluded */
        memcpy(g0, g, n * sizeof *g);
        double want_norm = trained_norm(g, mask, n);
        assert_true(want_norm > 1 && want_norm < 100);
        double c = clip_on == 1 ? want_norm / 4 : clip_on == 2 ? want_norm * 2 : 0;
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_CLIP_NORM, c), ELM_OK);
        double norm = -1;
        assert_int_equal(elm_optimizer_step(o, g, &norm), ELM_OK);
        assert_true(fabs(norm - want_norm) <= 1e-12 * want_norm);
        double scale = clip_on == 1 ? c / (want_norm + 1e-6) : 1.0;
        const float *p = elm_model_params(m);
        for (size_t i = 0; i < n; i++) {
            if (!mask[i]) {
                assert_true(g[i] == g0[i]); /* frozen entries are not scaled */
                continue;
            }
            if (clip_on == 1)
                assert_close(g[i], g0[i] * scale, 0, "clipped grad", i);
            else
                assert_true(g[i] == g0[i]); /* below the cap: untouched */
            assert_close(p[i], p0[i] - 0.1 * g0[i] * scale, p0[i], "clipped step", i);
        }
        if (clip_on == 1) {
            /* the scaled gradient has the cap's norm */
            double after = trained_norm(g, mask, n);
            assert_true(fabs(after - c) <= 1e-6 * c);
        }
        elm_optimizer_free(o);
    }
    free(p0);
    free(g);
    free(g0);
    free(mask);
    elm_model_free(m);
}

/* ---- schedules ---------------------------------------------------------- */

static double want_lr(int cosine, double lr, double eta, double W, double N, double s) {
    if (s < W) return lr * (s + 1) / W;
    if (!cosine) return lr;
    double sp = s - W, Np = N - W;
    if (sp > Np) sp = Np;
    return eta + (lr - eta) * (1 + cos(PI_D * sp / Np)) / 2;
}

static void test_schedules(void **st) {
    (void)st;
    elm_model *m = small_model(0, 8);
    size_t n = n_params(m);
    float *g = calloc(n, sizeof *g), *before = malloc(n * sizeof *before);
    size_t off_b, ne_b;
    tensor_span(m, tensor_index(m, "readout.bias"), &off_b, &ne_b);
    struct {
        int cosine;
        double lr, eta, W, N;
    } cases[] = {
        {1, 0.1, 0.01, 3, 10}, {1, 0.2, 0, 0, 7}, {0, 0.05, 0, 4, 1}, {0, 0.3, 0.1, 0, 1},
        {1, 0.1, 0.3, 2, 6}, /* min_lr above lr: the formula still holds */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        elm_optimizer *o;
        assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_SGD, &o), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, cases[c].lr), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_MIN_LR, cases[c].eta), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_WARMUP_STEPS, cases[c].W), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_TOTAL_STEPS, cases[c].N), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_SCHEDULE, cases[c].cosine), ELM_OK);
        for (int s = 0; s < 14; s++) {
            double want = want_lr(cases[c].cosine, cases[c].lr, cases[c].eta, cases[c].W,
                                  cases[c].N, s);
            double got = elm_optimizer_lr(o);
            if (!(fabs(got - want) <= 1e-12 * fabs(want) + 1e-15))
                fail_msg("case %zu step %d: lr %.17g, want %.17g", c, s, got, want);
            /* ... and the step uses it: a unit gradient moves a bias by lr_t */
            memcpy(before, elm_model_params(m), n * sizeof *before);
            g[off_b] = -1.0f;
            assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
            const float *p = elm_model_params(m);
            assert_close(p[off_b], (double)before[off_b] + want, before[off_b], "scheduled", 0);
            assert_true(p[off_b + 1] == before[off_b + 1]); /* zero gradient: no move */
        }
        assert_int_equal(elm_optimizer_steps(o), 14);
        elm_optimizer_free(o);
    }
    /* Spot values: cosine lr 1, eta 0, no warm-up, N = 4: 1, .8535, .5, .1464, 0, 0. */
    elm_optimizer *o;
    assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_ADAM, &o), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, 1), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_TOTAL_STEPS, 4), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_SCHEDULE, ELM_SCHEDULE_COSINE), ELM_OK);
    static const double spot[] = {1, 0.85355339059327373, 0.5, 0.14644660940672624, 0, 0};
    memset(g, 0, n * sizeof *g);
    for (int s = 0; s < 6; s++) {
        assert_true(fabs(elm_optimizer_lr(o) - spot[s]) < 1e-12);
        assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
    }
    elm_optimizer_free(o);
    free(g);
    free(before);
    elm_model_free(m);
}

/* ---- failures leave everything unchanged -------------------------------- */

static unsigned char *save(const elm_optimizer *o, size_t *size) {
    assert_int_equal(elm_optimizer_save_state(o, NULL, 0, size), ELM_OK);
    unsigned char *buf = malloc(*size);
    size_t got = 0;
    assert_int_equal(elm_optimizer_save_state(o, buf, *size, &got), ELM_OK);
    assert_int_equal(got, *size);
    return buf;
}

static void test_nonfinite_gradient(void **st) {
    (void)st;
    for (int k = 1; k <= 4; k++) {
        elm_model *m = small_model(0, 9);
        size_t n = n_params(m);
        float *g = malloc(n * sizeof *g), *g_copy = malloc(n * sizeof *g);
        float *p_before = malloc(n * sizeof *p_before);
        elm_optimizer *o;
        assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)k, &o), ELM_OK);
        if (k == ELM_OPTIM_SGD) assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_MOMENTUM, 0.9), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_CLIP_NORM, 0.01), ELM_OK);
        for (int s = 0; s < 2; s++) {
            gradient(g, n, (uint64_t)s);
            assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
        }
        size_t off_w, ne_w;
        tensor_span(m, tensor_index(m, "readout.weight"), &off_w, &ne_w);
        static const float bad[] = {NAN, INFINITY, -INFINITY};
        for (int b = 0; b < 3; b++) {
            size_t size0, size1;
            unsigned char *s0 = save(o, &size0);
            memcpy(p_before, elm_model_params(m), n * sizeof *p_before);
            gradient(g, n, 50);
            g[off_w + 3] = bad[b];
            memcpy(g_copy, g, n * sizeof *g);
            double norm = 12345;
            assert_int_equal(elm_optimizer_step(o, g, &norm), ELM_E_NONFINITE);
            const char *msg = elm_last_error();
            assert_non_null(strstr(msg, "step 3"));
            assert_non_null(strstr(msg, "readout.weight"));
            assert_memory_equal(elm_model_params(m), p_before, n * sizeof *p_before);
            assert_memory_equal(g, g_copy, n * sizeof *g); /* not clipped either */
            assert_int_equal(elm_optimizer_steps(o), 2);
            unsigned char *s1 = save(o, &size1);
            assert_int_equal(size0, size1);
            assert_memory_equal(s0, s1, size0);
            free(s0);
            free(s1);
        }
        /* An update that overflows float is refused the same way. */
        size_t size0, size1;
        unsigned char *s0 = save(o, &size0);
        memcpy(p_before, elm_model_params(m), n * sizeof *p_before);
        double lr;
        assert_int_equal(elm_optimizer_get(o, ELM_OPTIM_LR, &lr), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, 1e38), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_CLIP_NORM, 0), ELM_OK);
        gradient(g, n, 51);
        for (size_t i = 0; i < n; i++) g[i] *= 100;
        assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_E_NONFINITE);
        assert_non_null(strstr(elm_last_error(), "step 3"));
        assert_memory_equal(elm_model_params(m), p_before, n * sizeof *p_before);
        assert_int_equal(elm_optimizer_steps(o), 2);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, lr), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_CLIP_NORM, 0.01), ELM_OK);
        unsigned char *s1 = save(o, &size1);
        assert_memory_equal(s0, s1, size0);
        /* The optimizer still works afterwards. */
        gradient(g, n, 52);
        assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
        assert_int_equal(elm_optimizer_steps(o), 3);
        free(s0);
        free(s1);
        free(g);
        free(g_copy);
        free(p_before);
        elm_optimizer_free(o);
        elm_model_free(m);
    }
}

static void test_nesterov_needs_momentum(void **st) {
    (void)st;
    elm_model *m = small_model(0, 10);
    size_t n = n_params(m);
    float *g = malloc(n * sizeof *g), *p_before = malloc(n * sizeof *p_before);
    memcpy(p_before, elm_model_params(m), n * sizeof *p_before);
    gradient(g, n, 1);
    elm_optimizer *o;
    assert_int_equal(elm_optimizer_create(m, ELM_OPTIM_SGD, &o), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_NESTEROV, 1), ELM_OK);
    assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_E_INVALID); /* momentum 0 */
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_MOMENTUM, 0.9), ELM_OK);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_DAMPENING, 0.1), ELM_OK);
    assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_E_INVALID); /* dampening */
    assert_non_null(strstr(elm_last_error(), "nesterov"));
    assert_memory_equal(elm_model_params(m), p_before, n * sizeof *p_before);
    assert_int_equal(elm_optimizer_steps(o), 0);
    assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_DAMPENING, 0), ELM_OK);
    assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
    assert_int_equal(elm_optimizer_steps(o), 1);
    free(g);
    free(p_before);
    elm_optimizer_free(o);
    elm_model_free(m);
}

/* ---- the state string --------------------------------------------------- */

static void copy_params(const elm_model *from, elm_model *to) {
    for (size_t i = 0; i < n_tensors(from); i++) {
        const char *name;
        int nd;
        int64_t sh[ELM_MAX_DIMS];
        size_t off, ne;
        assert_int_equal(elm_model_param_info(from, i, &name, &nd, sh, NULL), ELM_OK);
        tensor_span(from, i, &off, &ne);
        assert_int_equal(elm_model_set_param(to, name, elm_model_params(from) + off, nd, sh),
                         ELM_OK);
    }
}

static uint64_t fnv(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Refused with ELM_E_FORMAT and nothing changed. */
static void assert_refused(elm_optimizer *o, const void *src, size_t size, const char *what) {
    size_t s0, s1;
    unsigned char *before = save(o, &s0);
    int rc = elm_optimizer_load_state(o, src, size);
    if (rc != ELM_E_FORMAT) fail_msg("%s: load returned %d", what, rc);
    assert_true(strlen(elm_last_error()) > 0);
    unsigned char *after = save(o, &s1);
    assert_int_equal(s0, s1);
    assert_memory_equal(before, after, s0);
    free(before);
    free(after);
}

static void test_save_load(void **st) {
    (void)st;
    for (int k = 1; k <= 4; k++) {
        elm_model *a = small_model(1, 12), *b = small_model(1, 13);
        size_t n = n_params(a);
        float *g = malloc(n * sizeof *g);
        elm_optimizer *oa, *ob;
        assert_int_equal(elm_optimizer_create(a, (elm_optimizer_kind)k, &oa), ELM_OK);
        assert_int_equal(elm_optimizer_create(b, (elm_optimizer_kind)k, &ob), ELM_OK);
        /* non-default settings and frozen set, which the state carries */
        assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_LR, 0.02), ELM_OK);
        assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_WEIGHT_DECAY, 0.05), ELM_OK);
        assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_SCHEDULE, ELM_SCHEDULE_COSINE), ELM_OK);
        assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_TOTAL_STEPS, 9), ELM_OK);
        assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_WARMUP_STEPS, 2), ELM_OK);
        assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_CLIP_NORM, 1.5), ELM_OK);
        if (k == ELM_OPTIM_SGD) {
            assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_MOMENTUM, 0.8), ELM_OK);
            assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_NESTEROV, 1), ELM_OK);
        } else {
            assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_BETA1, 0.7), ELM_OK);
            assert_int_equal(elm_optimizer_set(oa, ELM_OPTIM_EPS, 1e-4), ELM_OK);
        }
        assert_int_equal(elm_optimizer_freeze(oa, "mlp.0.bias", 1), ELM_OK);
        assert_int_equal(elm_optimizer_freeze(oa, "tau_s", 0), ELM_OK);
        for (int s = 0; s < 3; s++) {
            gradient(g, n, (uint64_t)s + 100);
            assert_int_equal(elm_optimizer_step(oa, g, NULL), ELM_OK);
        }
        size_t size;
        unsigned char *st_a = save(oa, &size);

        /* capacity too small */
        size_t got = 0;
        unsigned char *small = malloc(size);
        assert_int_equal(elm_optimizer_save_state(oa, small, size - 1, &got), ELM_E_INVALID);
        assert_int_equal(got, size);
        free(small);

        /* b: same parameters, state loaded */
        copy_params(a, b);
        assert_int_equal(elm_optimizer_load_state(ob, st_a, size), ELM_OK);
        assert_int_equal(elm_optimizer_steps(ob), 3);
        assert_true(elm_optimizer_lr(ob) == elm_optimizer_lr(oa));
        double v;
        assert_int_equal(elm_optimizer_get(ob, ELM_OPTIM_CLIP_NORM, &v), ELM_OK);
        assert_true(v == 1.5);
        int fr;
        assert_int_equal(elm_optimizer_is_frozen(ob, "mlp.0.bias", &fr), ELM_OK);
        assert_int_equal(fr, 1);
        assert_int_equal(elm_optimizer_is_frozen(ob, "tau_s", &fr), ELM_OK);
        assert_int_equal(fr, 0);
        size_t size_b;
        unsigned char *st_b = save(ob, &size_b);
        assert_int_equal(size_b, size);
        assert_memory_equal(st_a, st_b, size);
        free(st_b);

        /* identical next steps, bitwise */
        float *g2 = malloc(n * sizeof *g2);
        for (int s = 0; s < 3; s++) {
            gradient(g, n, (uint64_t)s + 200);
            memcpy(g2, g, n * sizeof *g);
            double na, nb;
            assert_int_equal(elm_optimizer_step(oa, g, &na), ELM_OK);
            assert_int_equal(elm_optimizer_step(ob, g2, &nb), ELM_OK);
            assert_true(na == nb);
            assert_memory_equal(g, g2, n * sizeof *g);
            assert_memory_equal(elm_model_params(a), elm_model_params(b), n * sizeof(float));
        }
        unsigned char *sa2 = save(oa, &size), *sb2 = save(ob, &size_b);
        assert_memory_equal(sa2, sb2, size);
        free(sa2);
        free(sb2);

        /* refusals: truncated, trailing, corrupted, bad magic, wrong kind,
         * wrong model, invalid contents with a valid checksum */
        unsigned char *bad = malloc(size + 1);
        assert_refused(ob, st_a, size - 1, "truncated");
        assert_refused(ob, st_a, 20, "header only");
        assert_refused(ob, st_a, 0, "empty");
        memcpy(bad, st_a, size);
        bad[size] = 0;
        assert_refused(ob, bad, size + 1, "trailing byte");
        for (size_t pos = 0; pos < size; pos += size / 17 + 1) {
            memcpy(bad, st_a, size);
            bad[pos] ^= 0x10;
            assert_refused(ob, bad, size, "flipped bit");
        }
        memcpy(bad, st_a, size);
        bad[0] = 'X';
        assert_refused(ob, bad, size, "magic");
        assert_non_null(strstr(elm_last_error(), "magic"));
        /* a moment made NaN (and the checksum fixed) */
        memcpy(bad, st_a, size);
        size_t nt = n_tensors(a);
        size_t mom = 48 + 13 * 8 + 17 * nt;
        memcpy(bad + mom + 4 * 5, &(float){NAN}, 4);
        uint64_t h = fnv(bad, size - 8);
        for (int i = 0; i < 8; i++) bad[size - 8 + i] = (unsigned char)(h >> (8 * i));
        assert_refused(ob, bad, size, "NaN moment");
        if (!strstr(elm_last_error(), "finite")) fail_msg("message: %s", elm_last_error());
        /* a setting out of bounds (lr = -1), checksum fixed */
        memcpy(bad, st_a, size);
        double neg = -1;
        uint64_t u;
        memcpy(&u, &neg, 8);
        for (int i = 0; i < 8; i++) bad[48 + i] = (unsigned char)(u >> (8 * i));
        h = fnv(bad, size - 8);
        for (int i = 0; i < 8; i++) bad[size - 8 + i] = (unsigned char)(h >> (8 * i));
        assert_refused(ob, bad, size, "negative lr");
        assert_non_null(strstr(elm_last_error(), "lr"));
        /* the unmodified copy with a fixed checksum loads (the fixes above
         * are the only reason for the refusals) */
        memcpy(bad, st_a, size);
        assert_int_equal(elm_optimizer_load_state(ob, bad, size), ELM_OK);

        /* wrong kind */
        elm_optimizer *other;
        elm_optimizer_kind ok = k == ELM_OPTIM_ADAM ? ELM_OPTIM_ADAMW : ELM_OPTIM_ADAM;
        assert_int_equal(elm_optimizer_create(b, ok, &other), ELM_OK);
        assert_refused(other, st_a, size, "wrong kind");
        assert_non_null(strstr(elm_last_error(), elm_optimizer_kind_name((elm_optimizer_kind)k)));
        elm_optimizer_free(other);
        /* wrong model: a different size */
        elm_config *c;
        elm_config_create(&c);
        elm_config_set(c, ELM_NUM_INPUT, 3);
        elm_config_set(c, ELM_NUM_OUTPUT, 2);
        elm_config_set(c, ELM_NUM_MEMORY, 5);
        elm_config_set(c, ELM_MLP_HIDDEN_SIZE, 4);
        elm_model *mc;
        assert_int_equal(elm_model_create(c, 1, &mc), ELM_OK);
        elm_config_free(c);
        assert_int_equal(elm_optimizer_create(mc, (elm_optimizer_kind)k, &other), ELM_OK);
        assert_refused(other, st_a, size, "wrong model");
        elm_optimizer_free(other);
        elm_model_free(mc);

        free(bad);
        free(g);
        free(g2);
        free(st_a);
        elm_optimizer_free(oa);
        elm_optimizer_free(ob);
        elm_model_free(a);
        elm_model_free(b);
    }
}

/* ---- the model is refreshed after a step -------------------------------- */

static void test_forward_after_step(void **st) {
    (void)st;
    elm_model *m = small_model(1, 14), *twin = small_model(1, 15);
    size_t n = n_params(m);
    float x[2 * 6 * 3], y0[2 * 6 * 2], y1[2 * 6 * 2], y2[2 * 6 * 2];
    uint64_t sd = 8;
    fill_uniform(x, sizeof x / sizeof *x, 0, 1, &sd);
    assert_int_equal(elm_model_forward(m, x, 2, 6, y0), ELM_OK);
    float *g = malloc(n * sizeof *g);
    gradient(g, n, 3);
    for (int k = 1; k <= 4; k++) {
        elm_optimizer *o;
        assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)k, &o), ELM_OK);
        assert_int_equal(elm_optimizer_set(o, ELM_OPTIM_LR, 0.1), ELM_OK);
        assert_int_equal(elm_optimizer_step(o, g, NULL), ELM_OK);
        elm_optimizer_free(o);
        assert_int_equal(elm_model_forward(m, x, 2, 6, y1), ELM_OK);
        /* the twin gets the same parameters through set_param */
        copy_params(m, twin);
        assert_int_equal(elm_model_forward(twin, x, 2, 6, y2), ELM_OK);
        assert_memory_equal(y1, y2, sizeof y1);
        bool changed = false;
        for (size_t i = 0; i < sizeof y0 / sizeof *y0; i++) changed |= y1[i] != y0[i];
        assert_true(changed);
        memcpy(y0, y1, sizeof y0);
    }
    free(g);
    elm_model_free(m);
    elm_model_free(twin);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_create_and_null),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_bounds),
        cmocka_unit_test(test_sgd_rules),
        cmocka_unit_test(test_adam_rules),
        cmocka_unit_test(test_bias_correction),
        cmocka_unit_test(test_moments_in_state),
        cmocka_unit_test(test_freeze),
        cmocka_unit_test(test_freeze_keeps_moments),
        cmocka_unit_test(test_tau_training),
        cmocka_unit_test(test_clip_and_norm),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_nonfinite_gradient),
        cmocka_unit_test(test_nesterov_needs_momentum),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_forward_after_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
