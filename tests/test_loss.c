/* Losses: values and gradients against a straightforward double-precision
 * reference written here, gradients against central finite differences,
 * hand-computed cases, extreme logits, and every class of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define SENTINEL 12345.0f

/* |a - b| <= tol, in double (cmocka's own comparisons are in float). */
#define assert_near(a, b, tol) \
    assert_near_impl((double)(a), (double)(b), (double)(tol), #a, __LINE__)
static void assert_near_impl(double a, double b, double tol, const char *what, int line) {
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g (tolerance %.3g)", line, what, a, b, tol);
}

/* ---------------------------------------------------------------------------
 * A test case and the reference. */

typedef struct lcase {
    elm_loss_kind kind;
    size_t B, T, n, t0;
    const double *w; /* NULL = the documented defaults */
    float *y, *target;
    int32_t *labels;
    int64_t *lengths;
} lcase;

static bool is_ce(elm_loss_kind k) { return k == ELM_LOSS_CE_LAST || k == ELM_LOSS_CE_ALL; }

/* Does (b, t) count? Written as a predicate, unlike the library's ranges. */
static bool counted(const lcase *c, size_t b, size_t t) {
    size_t len = c->lengths ? (size_t)c->lengths[b] : c->T;
    if (c->kind == ELM_LOSS_CE_LAST) return len > 0 && t + 1 == len;
    return t >= c->t0 && t < len;
}

static double weight(const lcase *c, size_t o) {
    if (c->w) return (float)c->w[o]; /* the loss holds the float it was given */
    if (c->kind == ELM_LOSS_MSE) return 1.0 / (double)c->n;
    if (c->kind == ELM_LOSS_NEURONIO) return 0.5;
    return 1.0;
}

static int32_t label_at(const lcase *c, size_t b, size_t t) {
    return c->kind == ELM_LOSS_CE_LAST ? c->labels[b] : c->labels[b * c->T + t];
}

/* Reference loss and (if g != NULL) its gradient (B, T, n), in double, from
 * the textbook formulas: softmax without max subtraction, BCE as
 * -(z log p + (1 - z) log(1 - p)). Inputs must be moderate. */
static double ref_loss(const lcase *c, double *g) {
    size_t B = c->B, T = c->T, n = c->n, cnt = 0;
    double den = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            if (counted(c, b, t)) {
                cnt++;
                if (is_ce(c->kind)) den += weight(c, (size_t)label_at(c, b, t));
            }
    if (g) memset(g, 0, B * T * n * sizeof *g);
    double num = 0, bce = 0, se1 = 0, mse = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            if (!counted(c, b, t)) continue;
            const float *y = c->y + (b * T + t) * n;
            double *gr = g ? g + (b * T + t) * n : NULL;
            if (is_ce(c->kind)) {
                size_t l = (size_t)label_at(c, b, t);
                double s = 0;
                for (size_t o = 0; o < n; o++) s += exp((double)y[o]);
                num += weight(c, l) * (log(s) - y[l]);
                if (gr)
                    for (size_t o = 0; o < n; o++)
                        gr[o] = weight(c, l) / den * (exp((double)y[o]) / s - (o == l ? 1 : 0));
            } else if (c->kind == ELM_LOSS_NEURONIO) {
                const float *z = c->target + (b * T + t) * n;
                double p = 1 / (1 + exp(-(double)y[0]));
                bce += -(z[0] * log(p) + (1 - (double)z[0]) * log(1 - p));
                double e = (double)y[1] - z[1];
                se1 += e * e;
                if (gr) {
                    gr[0] = weight(c, 0) * (p - z[0]) / (double)cnt;
                    gr[1] = weight(c, 1) * 2 * e / (double)cnt;
                }
            } else {
                const float *z = c->target + (b * T + t) * n;
                for (size_t o = 0; o < n; o++) {
                    double e = (double)y[o] - z[o];
                    mse += weight(c, o) * e * e / (double)cnt;
                    if (gr) gr[o] = weight(c, o) * 2 * e / (double)cnt;
                }
            }
        }
    if (is_ce(c->kind)) return num / den;
    if (c->kind == ELM_LOSS_NEURONIO)
        return weight(c, 0) * bce / (double)cnt + weight(c, 1) * se1 / (double)cnt;
    return mse;
}

static elm_loss *make_loss(const lcase *c) {
    elm_loss *l = NULL;
    assert_int_equal(elm_loss_create(c->kind, c->n, &l), ELM_OK);
    assert_int_equal(elm_loss_set_burn_in(l, c->t0), ELM_OK);
    if (c->w) {
        float wf[64];
        for (size_t o = 0; o < c->n; o++) wf[o] = (float)c->w[o];
        assert_int_equal(elm_loss_set_weights(l, wf, c->n), ELM_OK);
    }
    return l;
}

static int compute(const elm_loss *l, const lcase *c, double *value, float *dy) {
    return elm_loss_compute(l, c->y, c->B, c->T, is_ce(c->kind) ? NULL : c->target,
                            is_ce(c->kind) ? c->labels : NULL, c->lengths, value, dy);
}

static uint64_t next_u(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* Random case. lengths: a mix of 0 (padding), T and values in between,
 * with at least one counted pair. With `poison`, every value the loss must
 * not read (y, target and labels at non-counted positions) is NaN or out
 * of range. */
static void random_case(lcase *c, elm_loss_kind kind, size_t B, size_t T, size_t n, size_t t0,
                        const double *w, bool with_lengths, bool poison, uint64_t seed) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->B = B;
    c->T = T;
    c->n = n;
    c->t0 = t0;
    c->w = w;
    c->y = malloc(B * T * n * sizeof *c->y);
    fill_uniform(c->y, B * T * n, -4, 4, &seed);
    if (with_lengths) {
        c->lengths = malloc(B * sizeof *c->lengths);
        for (size_t b = 0; b < B; b++) c->lengths[b] = (int64_t)(next_u(&seed) % (T + 1));
        c->lengths[0] = 0;
        if (B > 1) c->lengths[1] = (int64_t)T;
        if (B > 2) c->lengths[2] = (int64_t)(t0 + 1 <= T ? t0 + 1 : T);
    }
    if (is_ce(kind)) {
        size_t nl = kind == ELM_LOSS_CE_LAST ? B : B * T;
        c->labels = malloc(nl * sizeof *c->labels);
        for (size_t i = 0; i < nl; i++) c->labels[i] = (int32_t)(next_u(&seed) % n);
    } else {
        c->target = malloc(B * T * n * sizeof *c->target);
        fill_uniform(c->target, B * T * n, -3, 3, &seed);
        if (kind == ELM_LOSS_NEURONIO)
            for (size_t i = 0; i < B * T; i++) {
                uint64_t r = next_u(&seed) % 8;
                c->target[2 * i] = r < 3 ? 1.0f : r < 7 ? 0.0f : 0.25f * (float)(r - 5);
            }
    }
    if (poison)
        for (size_t b = 0; b < B; b++)
            for (size_t t = 0; t < T; t++) {
                if (counted(c, b, t)) continue;
                for (size_t o = 0; o < n; o++) {
                    c->y[(b * T + t) * n + o] = NAN;
                    if (c->target) c->target[(b * T + t) * n + o] = (o & 1) ? INFINITY : NAN;
                }
                if (kind == ELM_LOSS_CE_ALL) c->labels[b * T + t] = (t & 1) ? -7 : (int32_t)(n + 3);
                if (kind == ELM_LOSS_CE_LAST && c->lengths && c->lengths[b] == 0)
                    c->labels[b] = (int32_t)(n + 100);
            }
}

static void free_case(lcase *c) {
    free(c->y);
    free(c->target);
    free(c->labels);
    free(c->lengths);
}

/* ---------------------------------------------------------------------------
 * Objects, names, errors of create and set_weights. */

static void test_names_and_create(void **st) {
    (void)st;
    static const char *names[] = {NULL, "ce_last", "ce_all", "neuronio", "mse"};
    for (int k = 1; k <= 4; k++) {
        assert_string_equal(elm_loss_kind_name((elm_loss_kind)k), names[k]);
        elm_loss_kind kind = (elm_loss_kind)0;
        assert_int_equal(elm_loss_kind_from_name(names[k], &kind), ELM_OK);
        assert_int_equal(kind, k);
        elm_loss *l = NULL;
        assert_int_equal(elm_loss_create((elm_loss_kind)k, 2, &l), ELM_OK);
        assert_int_equal(elm_loss_get_kind(l), k);
        elm_loss_free(l);
    }
    assert_null(elm_loss_kind_name((elm_loss_kind)0));
    assert_null(elm_loss_kind_name((elm_loss_kind)5));
    elm_loss_kind kind = ELM_LOSS_MSE;
    assert_int_equal(elm_loss_kind_from_name("bce", &kind), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_loss_kind_from_name("CE_LAST", &kind), ELM_E_UNKNOWN_NAME);
    assert_int_equal(kind, ELM_LOSS_MSE);
    assert_int_equal(elm_loss_kind_from_name(NULL, &kind), ELM_E_NULL);
    assert_int_equal(elm_loss_kind_from_name("mse", NULL), ELM_E_NULL);

    elm_loss *l = (elm_loss *)0x1;
    assert_int_equal(elm_loss_create(ELM_LOSS_MSE, 3, NULL), ELM_E_NULL);
    assert_int_equal(elm_loss_create((elm_loss_kind)0, 3, &l), ELM_E_INVALID);
    assert_int_equal(elm_loss_create((elm_loss_kind)5, 3, &l), ELM_E_INVALID);
    assert_int_equal(elm_loss_create(ELM_LOSS_MSE, 0, &l), ELM_E_INVALID);
    assert_int_equal(elm_loss_create(ELM_LOSS_NEURONIO, 1, &l), ELM_E_INVALID);
    assert_int_equal(elm_loss_create(ELM_LOSS_NEURONIO, 3, &l), ELM_E_INVALID);
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, 1, &l), ELM_E_INVALID);
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_ALL, 1, &l), ELM_E_INVALID);
    assert_true(l == (elm_loss *)0x1);
    assert_int_equal(elm_loss_create(ELM_LOSS_MSE, 1, &l), ELM_OK);
    elm_loss_free(l);
    elm_loss_free(NULL);
    assert_int_equal(elm_loss_set_burn_in(NULL, 3), ELM_E_NULL);
}

static void test_set_weights_errors(void **st) {
    (void)st;
    /* MSE of y = (1, 2, 3) against 0 with weights (1, 1, 1) is 14. */
    float y[3] = {1, 2, 3}, z[3] = {0, 0, 0};
    elm_loss *l;
    assert_int_equal(elm_loss_create(ELM_LOSS_MSE, 3, &l), ELM_OK);
    const float ones[3] = {1, 1, 1};
    float got[3];
    assert_int_equal(elm_loss_get_weights(l, got, 3), ELM_OK); /* MSE default: 1/n_out */
    for (int o = 0; o < 3; o++) assert_true(got[o] == (float)(1.0 / 3.0));
    assert_int_equal(elm_loss_set_weights(l, ones, 3), ELM_OK);
    const float bad[][3] = {{-1, 1, 1}, {NAN, 1, 1}, {1, INFINITY, 1}, {0, 0, 0}, {0, -0.0f, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(elm_loss_set_weights(l, bad[i], 3), ELM_E_INVALID);
    assert_int_equal(elm_loss_set_weights(l, ones, 2), ELM_E_SHAPE);
    assert_int_equal(elm_loss_set_weights(l, ones, 4), ELM_E_SHAPE);
    assert_int_equal(elm_loss_set_weights(l, NULL, 3), ELM_E_NULL);
    assert_int_equal(elm_loss_set_weights(NULL, ones, 3), ELM_E_NULL);
    double v = 0;
    assert_int_equal(elm_loss_compute(l, y, 1, 1, z, NULL, NULL, &v, NULL), ELM_OK);
    assert_true(v == 14.0); /* the failed calls left the weights as they were */
    const float some_zero[3] = {0, 2, 0};
    assert_int_equal(elm_loss_set_weights(l, some_zero, 3), ELM_OK);
    assert_int_equal(elm_loss_compute(l, y, 1, 1, z, NULL, NULL, &v, NULL), ELM_OK);
    assert_true(v == 8.0);
    assert_int_equal(elm_loss_get_weights(l, got, 3), ELM_OK);
    assert_memory_equal(got, some_zero, sizeof got);
    assert_int_equal(elm_loss_get_weights(l, got, 2), ELM_E_SHAPE);
    assert_int_equal(elm_loss_get_weights(l, NULL, 3), ELM_E_NULL);
    assert_int_equal(elm_loss_get_weights(NULL, got, 3), ELM_E_NULL);
    /* burn-in round trip */
    size_t t0 = 7;
    assert_int_equal(elm_loss_get_burn_in(l, &t0), ELM_OK);
    assert_int_equal(t0, 0);
    assert_int_equal(elm_loss_set_burn_in(l, 150), ELM_OK);
    assert_int_equal(elm_loss_get_burn_in(l, &t0), ELM_OK);
    assert_int_equal(t0, 150);
    assert_int_equal(elm_loss_get_burn_in(l, NULL), ELM_E_NULL);
    elm_loss_free(l);
    /* the other kinds' default weights */
    assert_int_equal(elm_loss_create(ELM_LOSS_NEURONIO, 2, &l), ELM_OK);
    assert_int_equal(elm_loss_get_weights(l, got, 2), ELM_OK);
    assert_true(got[0] == 0.5f && got[1] == 0.5f);
    elm_loss_free(l);
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, 3, &l), ELM_OK);
    assert_int_equal(elm_loss_get_weights(l, got, 3), ELM_OK);
    assert_true(got[0] == 1 && got[1] == 1 && got[2] == 1);
    elm_loss_free(l);
}

/* ---------------------------------------------------------------------------
 * Hand-computed values. */

static void test_hand_ce(void **st) {
    (void)st;
    elm_loss *l;
    double v;
    float dy[6];
    /* y = (0, 0), label 0: log 2; dy = softmax - onehot = (-1/2, 1/2). */
    float y0[2] = {0, 0};
    int32_t lab0 = 0;
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, 2, &l), ELM_OK);
    assert_int_equal(elm_loss_compute(l, y0, 1, 1, NULL, &lab0, NULL, &v, dy), ELM_OK);
    assert_near(v, log(2.0), 1e-15);
    assert_true(dy[0] == -0.5f && dy[1] == 0.5f);
    elm_loss_free(l);

    /* y = (1, 2, 3), label 2: log(1 + e^-1 + e^-2). */
    float y1[3] = {1, 2, 3};
    int32_t lab1 = 2;
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_ALL, 3, &l), ELM_OK);
    assert_int_equal(elm_loss_compute(l, y1, 1, 1, NULL, &lab1, NULL, &v, dy), ELM_OK);
    assert_near(v, 0.40760596444438029, 1e-15);
    elm_loss_free(l);

    /* CE_LAST with lengths (2, 0, 1) over T = 3, n = 2: sample 0 scores
     * step 1, sample 1 nothing, sample 2 step 0. Class weights (1, 3):
     * sample 0 has label 1, y (0, ln 3): nll = ln(4/3); sample 2 label 0,
     * y (0, 0): nll = ln 2. Loss = (3 ln(4/3) + ln 2) / 4. */
    float y2[3 * 3 * 2] = {9, 9, 0, (float)log(3.0), 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 9, 9, 9, 9};
    int32_t lab2[3] = {1, 0, 0};
    int64_t len2[3] = {2, 0, 1};
    const float cw[2] = {1, 3};
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, 2, &l), ELM_OK);
    assert_int_equal(elm_loss_set_weights(l, cw, 2), ELM_OK);
    assert_int_equal(elm_loss_set_burn_in(l, 2), ELM_OK); /* ignored by CE_LAST */
    float dy2[18];
    assert_int_equal(elm_loss_compute(l, y2, 3, 3, NULL, lab2, len2, &v, dy2), ELM_OK);
    double ln3 = (double)(float)log(3.0);
    double nll0 = log(1 + exp(ln3)) - ln3;
    assert_near(v, (3 * nll0 + log(2.0)) / 4, 1e-14);
    /* dy at sample 0 step 1: 3/4 (softmax - e_1); at sample 2 step 0:
     * 1/4 (softmax - e_0) = (-1/8, 1/8). */
    double p1 = exp(ln3) / (1 + exp(ln3));
    assert_near(dy2[2], 0.75 * (1 - p1), 1e-7);
    assert_near(dy2[3], 0.75 * (p1 - 1), 1e-7);
    assert_true(dy2[12] == -0.125f && dy2[13] == 0.125f);
    for (size_t i = 0; i < 18; i++)
        if (i != 2 && i != 3 && i != 12 && i != 13) assert_true(dy2[i] == 0.0f);
    elm_loss_free(l);
}

static void test_hand_neuronio_mse(void **st) {
    (void)st;
    elm_loss *l;
    double v;
    float dy[6];
    /* y = (0, 3), target (1, 1): 0.5 log 2 + 0.5 * 4; dy = (0.5 (0.5 - 1),
     * 0.5 * 2 * 2). */
    float y[2] = {0, 3}, z[2] = {1, 1};
    assert_int_equal(elm_loss_create(ELM_LOSS_NEURONIO, 2, &l), ELM_OK);
    assert_int_equal(elm_loss_compute(l, y, 1, 1, z, NULL, NULL, &v, dy), ELM_OK);
    assert_near(v, 0.5 * log(2.0) + 2.0, 1e-15);
    assert_true(dy[0] == -0.25f && dy[1] == 2.0f);
    /* BCE of logit 0 is log 2 whatever the target in [0, 1]: weights (1, 0). */
    const float w10[2] = {1, 0};
    assert_int_equal(elm_loss_set_weights(l, w10, 2), ELM_OK);
    float z2[2] = {0.3f, 100};
    assert_int_equal(elm_loss_compute(l, y, 1, 1, z2, NULL, NULL, &v, dy), ELM_OK);
    assert_near(v, log(2.0), 1e-15);
    assert_near(dy[0], 0.5 - (double)0.3f, 1e-8);
    assert_true(dy[1] == 0.0f);
    elm_loss_free(l);

    /* MSE, n = 3, two steps with burn-in 1 over T = 3 and lengths (3, 1):
     * counted (0, 1), (0, 2); errors (1, 2, 3) and (0, 0, 3); default
     * weights 1/3: (1 + 4 + 9 + 0 + 0 + 9) / 6 = 23 / 6. */
    float ym[2 * 3 * 3] = {7, 7, 7, 1, 2, 3, 0, 0, 3, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    float zm[2 * 3 * 3] = {0};
    int64_t len[2] = {3, 1};
    float dym[18];
    assert_int_equal(elm_loss_create(ELM_LOSS_MSE, 3, &l), ELM_OK);
    assert_int_equal(elm_loss_set_burn_in(l, 1), ELM_OK);
    assert_int_equal(elm_loss_compute(l, ym, 2, 3, zm, NULL, len, &v, dym), ELM_OK);
    assert_near(v, 23.0 / 6.0, 1e-15);
    /* dy = 2 e / (3 * 2) */
    for (size_t i = 0; i < 18; i++) {
        double want = (i >= 3 && i < 9) ? ym[i] / 3.0 : 0.0;
        assert_near(dym[i], want, 1e-7);
    }
    elm_loss_free(l);
}

/* ---------------------------------------------------------------------------
 * Random inputs against the reference. */

static void check_against_ref(const lcase *c) {
    size_t N = c->B * c->T * c->n;
    elm_loss *l = make_loss(c);
    double v = 0, v2 = 0;
    float *dy = malloc(N * sizeof *dy);
    double *g = malloc(N * sizeof *g);
    assert_int_equal(compute(l, c, &v, dy), ELM_OK);
    double want = ref_loss(c, g);
    assert_true(isfinite(want));
    if (!(fabs(v - want) <= 1e-12 * fabs(want)))
        fail_msg("kind %d, B %zu, T %zu, t0 %zu: loss %.17g, reference %.17g", (int)c->kind, c->B,
                 c->T, c->t0, v, want);
    for (size_t i = 0; i < N; i++) {
        assert_true(isfinite(dy[i]));
        assert_true(fabs(dy[i] - g[i]) <= 2.5e-7 * fabs(g[i]) + 1e-30);
        size_t bt = i / c->n;
        if (!counted(c, bt / c->T, bt % c->T)) assert_true(dy[i] == 0.0f);
    }
    /* dy == NULL: the same value. */
    assert_int_equal(compute(l, c, &v2, NULL), ELM_OK);
    assert_true(v2 == v);
    free(dy);
    free(g);
    elm_loss_free(l);
}

static void test_random_against_reference(void **st) {
    (void)st;
    static const double cw5[5] = {0.5, 2, 1, 0, 3.5};
    static const double nw[2] = {0.8, 0.3};
    static const double mw4[4] = {0.1, 1, 0, 2.5};
    uint64_t seed = 11;
    for (int rep = 0; rep < 6; rep++) {
        bool lens = rep % 2 == 1;
        size_t t0 = rep >= 2 ? (size_t)rep : 0;
        lcase c;
        random_case(&c, ELM_LOSS_CE_LAST, 7, 9, 5, t0, rep >= 3 ? cw5 : NULL, lens, true, seed++);
        check_against_ref(&c);
        free_case(&c);
        random_case(&c, ELM_LOSS_CE_ALL, 5, 11, 5, t0, rep >= 3 ? cw5 : NULL, lens, true, seed++);
        check_against_ref(&c);
        free_case(&c);
        random_case(&c, ELM_LOSS_NEURONIO, 6, 13, 2, t0, rep >= 3 ? nw : NULL, lens, true, seed++);
        check_against_ref(&c);
        free_case(&c);
        random_case(&c, ELM_LOSS_MSE, 5, 10, 4, t0, rep >= 3 ? mw4 : NULL, lens, true, seed++);
        check_against_ref(&c);
        free_case(&c);
    }
    /* Many classes, the PyTorch class-weighted mean. */
    double w40[40];
    for (int i = 0; i < 40; i++) w40[i] = 0.1 * (i % 7);
    lcase c;
    random_case(&c, ELM_LOSS_CE_ALL, 4, 30, 40, 3, w40, true, true, 99);
    check_against_ref(&c);
    free_case(&c);
}

/* Burn-in changes CE_ALL, NEURONIO and MSE but not CE_LAST. */
static void test_burn_in(void **st) {
    (void)st;
    for (int k = 1; k <= 4; k++) {
        lcase c;
        random_case(&c, (elm_loss_kind)k, 4, 8, k == 3 ? 2 : 3, 0, NULL, true, false,
                    7 + (uint64_t)k);
        elm_loss *l = make_loss(&c);
        double v0, v5;
        assert_int_equal(compute(l, &c, &v0, NULL), ELM_OK);
        c.t0 = 5;
        assert_int_equal(elm_loss_set_burn_in(l, 5), ELM_OK);
        assert_int_equal(compute(l, &c, &v5, NULL), ELM_OK);
        assert_true(fabs(v5 - ref_loss(&c, NULL)) <= 1e-12 * fabs(v5));
        if (k == ELM_LOSS_CE_LAST) assert_true(v5 == v0);
        else assert_true(v5 != v0);
        /* Burn-in >= T: nothing counts (except for CE_LAST). */
        assert_int_equal(elm_loss_set_burn_in(l, 8), ELM_OK);
        int rc = compute(l, &c, &v5, NULL);
        assert_int_equal(rc, k == ELM_LOSS_CE_LAST ? ELM_OK : ELM_E_INVALID);
        elm_loss_free(l);
        free_case(&c);
    }
}

/* ---------------------------------------------------------------------------
 * Gradient against central finite differences of the value. */

static void check_fd(elm_loss_kind kind, size_t n, const double *w, uint64_t seed) {
    lcase c;
    random_case(&c, kind, 4, 7, n, 2, w, true, false, seed);
    /* one sample with burn-in beyond its length: nothing counts there */
    c.lengths[3] = 2;
    size_t N = c.B * c.T * n;
    elm_loss *l = make_loss(&c);
    float *dy = malloc(N * sizeof *dy);
    double v;
    assert_int_equal(compute(l, &c, &v, dy), ELM_OK);
    double gmax = 0;
    for (size_t i = 0; i < N; i++) gmax = fmax(gmax, fabs(dy[i]));
    assert_true(gmax > 0);
    size_t nonzero = 0;
    for (size_t i = 0; i < N; i++) {
        float y0 = c.y[i];
        float yp = y0 + 1e-3f, ym = y0 - 1e-3f;
        double lp, lm;
        c.y[i] = yp;
        assert_int_equal(compute(l, &c, &lp, NULL), ELM_OK);
        c.y[i] = ym;
        assert_int_equal(compute(l, &c, &lm, NULL), ELM_OK);
        c.y[i] = y0;
        double fd = (lp - lm) / ((double)yp - (double)ym);
        size_t bt = i / n;
        if (!counted(&c, bt / c.T, bt % c.T)) {
            assert_true(dy[i] == 0.0f);
            assert_true(lp == v && lm == v); /* the value does not depend on it */
        } else {
            if (fabs(fd - dy[i]) > 1e-5 * gmax + 1e-9)
                fail_msg("kind %d, element %zu: dy %.9g, finite difference %.9g", (int)kind, i,
                         (double)dy[i], fd);
            nonzero += dy[i] != 0;
        }
    }
    assert_true(nonzero > 0);
    free(dy);
    elm_loss_free(l);
    free_case(&c);
}

static void test_gradient_finite_differences(void **st) {
    (void)st;
    static const double cw[4] = {1, 0.25, 3, 0.5};
    static const double nw[2] = {0.7, 0.2};
    static const double mw[3] = {0.2, 1.5, 0.7};
    check_fd(ELM_LOSS_CE_LAST, 4, NULL, 21);
    check_fd(ELM_LOSS_CE_LAST, 4, cw, 22);
    check_fd(ELM_LOSS_CE_ALL, 4, NULL, 23);
    check_fd(ELM_LOSS_CE_ALL, 4, cw, 24);
    check_fd(ELM_LOSS_NEURONIO, 2, NULL, 25);
    check_fd(ELM_LOSS_NEURONIO, 2, nw, 26);
    check_fd(ELM_LOSS_MSE, 3, NULL, 27);
    check_fd(ELM_LOSS_MSE, 3, mw, 28);
}

/* ---------------------------------------------------------------------------
 * Stability at extreme logits. */

static void test_extreme_logits(void **st) {
    (void)st;
    static const float big[] = {100, 1e4f, 3e38f};
    elm_loss *l;
    double v;
    float dy[4];
    for (size_t i = 0; i < 3; i++) {
        float a = big[i];
        /* CE: the right class far ahead -> loss 0, gradient 0; far behind
         * -> loss 2a, gradient (1, -1). */
        float y[2] = {a, -a};
        int32_t lab = 0;
        assert_int_equal(elm_loss_create(ELM_LOSS_CE_ALL, 2, &l), ELM_OK);
        assert_int_equal(elm_loss_compute(l, y, 1, 1, NULL, &lab, NULL, &v, dy), ELM_OK);
        assert_true(v == 0.0 && dy[0] == 0.0f && dy[1] == 0.0f);
        lab = 1;
        assert_int_equal(elm_loss_compute(l, y, 1, 1, NULL, &lab, NULL, &v, dy), ELM_OK);
        assert_true(isfinite(v));
        assert_near(v, 2.0 * a, 1e-12 * a);
        assert_true(dy[0] == 1.0f && dy[1] == -1.0f);
        /* All equal huge logits: log 2. */
        float ye[2] = {a, a};
        assert_int_equal(elm_loss_compute(l, ye, 1, 1, NULL, &lab, NULL, &v, dy), ELM_OK);
        assert_near(v, log(2.0), 1e-15);
        elm_loss_free(l);

        /* BCE at +-a with both targets: loss max(x, 0) - x z (+ ~0). */
        assert_int_equal(elm_loss_create(ELM_LOSS_NEURONIO, 2, &l), ELM_OK);
        const float w10[2] = {1, 0};
        assert_int_equal(elm_loss_set_weights(l, w10, 2), ELM_OK);
        for (int s = -1; s <= 1; s += 2)
            for (int zt = 0; zt <= 1; zt++) {
                float x = (float)s * a;
                float yb[2] = {x, 0}, zb[2] = {(float)zt, 0};
                assert_int_equal(elm_loss_compute(l, yb, 1, 1, zb, NULL, NULL, &v, dy), ELM_OK);
                assert_true(isfinite(v) && isfinite(dy[0]));
                double want = fmax(x, 0) - (double)x * zt;
                assert_near(v, want, 1e-40 + 1e-12 * fabs(want));
                double p = s > 0 ? 1.0 : 0.0; /* sigmoid(+-a) in float */
                assert_near(dy[0], p - zt, 1e-30);
            }
        elm_loss_free(l);
    }
}

/* ---------------------------------------------------------------------------
 * Bad inputs: the error code, and nothing written. */

static void expect_fail(const elm_loss *l, const float *y, size_t B, size_t T, const float *z,
                        const int32_t *lab, const int64_t *len, int code, const char *msg) {
    float dy[256];
    for (size_t i = 0; i < 256; i++) dy[i] = SENTINEL;
    double v = -1.5;
    assert_int_equal(elm_loss_compute(l, y, B, T, z, lab, len, &v, dy), code);
    assert_true(v == -1.5);
    for (size_t i = 0; i < 256; i++) assert_true(dy[i] == SENTINEL);
    if (msg && !strstr(elm_last_error(), msg))
        fail_msg("message '%s' does not contain '%s'", elm_last_error(), msg);
}

static void test_bad_inputs(void **st) {
    (void)st;
    enum { B = 3, T = 5 };
    float y[B * T * 3], z[B * T * 3], z2[B * T * 2];
    uint64_t seed = 5;
    fill_uniform(y, B * T * 3, -2, 2, &seed);
    fill_uniform(z, B * T * 3, -2, 2, &seed);
    for (size_t i = 0; i < B * T; i++) {
        z2[2 * i] = (float)(i % 2);
        z2[2 * i + 1] = 0.5f;
    }
    int32_t lab[B * T], lab_last[B] = {0, 1, 2};
    for (size_t i = 0; i < B * T; i++) lab[i] = (int32_t)(i % 3);
    int64_t len[B] = {5, 0, 3};
    elm_loss *ce, *cel, *mse, *nio;
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_ALL, 3, &ce), ELM_OK);
    assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, 3, &cel), ELM_OK);
    assert_int_equal(elm_loss_create(ELM_LOSS_MSE, 3, &mse), ELM_OK);
    assert_int_equal(elm_loss_create(ELM_LOSS_NEURONIO, 2, &nio), ELM_OK);
    elm_loss_set_burn_in(ce, 1);

    /* NULLs */
    expect_fail(NULL, y, B, T, NULL, lab, len, ELM_E_NULL, NULL);
    expect_fail(ce, NULL, B, T, NULL, lab, len, ELM_E_NULL, NULL);
    expect_fail(ce, y, B, T, NULL, NULL, len, ELM_E_NULL, NULL);
    expect_fail(mse, y, B, T, NULL, NULL, len, ELM_E_NULL, NULL);
    {
        float dy[B * T * 3];
        assert_int_equal(elm_loss_compute(ce, y, B, T, NULL, lab, len, NULL, dy), ELM_E_NULL);
    }
    /* wrong argument kind */
    expect_fail(ce, y, B, T, z, lab, len, ELM_E_INVALID, "target");
    expect_fail(cel, y, B, T, z, lab_last, len, ELM_E_INVALID, "target");
    expect_fail(mse, y, B, T, z, lab, len, ELM_E_INVALID, "labels");
    expect_fail(nio, y, B, T, z2, lab, len, ELM_E_INVALID, "labels");
    /* shapes */
    expect_fail(ce, y, 0, T, NULL, lab, NULL, ELM_E_SHAPE, NULL);
    expect_fail(ce, y, B, 0, NULL, lab, NULL, ELM_E_SHAPE, NULL);
    expect_fail(mse, y, 0, T, z, NULL, NULL, ELM_E_SHAPE, NULL);
    expect_fail(mse, y, B, 0, z, NULL, NULL, ELM_E_SHAPE, NULL);
    /* lengths out of [0, T] */
    int64_t bad_len[][B] = {{5, -1, 3}, {5, 6, 3}, {INT64_MIN, 1, 1}, {INT64_MAX, 1, 1}};
    for (size_t i = 0; i < 4; i++) {
        expect_fail(ce, y, B, T, NULL, lab, bad_len[i], ELM_E_INVALID, "lengths[");
        expect_fail(cel, y, B, T, NULL, lab_last, bad_len[i], ELM_E_INVALID, "lengths[");
        expect_fail(mse, y, B, T, z, NULL, bad_len[i], ELM_E_INVALID, "lengths[");
        expect_fail(nio, y, B, T, z2, NULL, bad_len[i], ELM_E_INVALID, "lengths[");
    }
    /* nothing counted */
    int64_t zero_len[B] = {0, 0, 0}, short_len[B] = {1, 0, 1};
    expect_fail(ce, y, B, T, NULL, lab, zero_len, ELM_E_INVALID, NULL);
    expect_fail(cel, y, B, T, NULL, lab_last, zero_len, ELM_E_INVALID, NULL);
    expect_fail(mse, y, B, T, z, NULL, zero_len, ELM_E_INVALID, NULL);
    expect_fail(ce, y, B, T, NULL, lab, short_len, ELM_E_INVALID, NULL); /* burn-in 1 */
    /* labels out of range at a counted position: the last one counted */
    int32_t lab_bad[B * T];
    memcpy(lab_bad, lab, sizeof lab);
    lab_bad[2 * T + 2] = 3;
    expect_fail(ce, y, B, T, NULL, lab_bad, len, ELM_E_INVALID, "labels[2, 2] = 3 outside [0, 3)");
    lab_bad[2 * T + 2] = -1;
    expect_fail(ce, y, B, T, NULL, lab_bad, len, ELM_E_INVALID, "labels[2, 2] = -1");
    int32_t lab_last_bad[B] = {0, 1, 7};
    expect_fail(cel, y, B, T, NULL, lab_last_bad, len, ELM_E_INVALID, "labels[2] = 7");
    /* ... but not at a non-counted one */
    double v;
    lab_bad[2 * T + 2] = 2;
    lab_bad[2 * T + 3] = 99; /* beyond lengths[2] */
    lab_bad[1 * T + 1] = -5; /* padding sample */
    lab_bad[0] = 42;         /* burn-in */
    assert_int_equal(elm_loss_compute(ce, y, B, T, NULL, lab_bad, len, &v, NULL), ELM_OK);
    int32_t lab_last_pad[B] = {0, -3, 2};
    assert_int_equal(elm_loss_compute(cel, y, B, T, NULL, lab_last_pad, len, &v, NULL), ELM_OK);

    /* non-finite at a counted position */
    float yb[B * T * 3], zb[B * T * 3];
    memcpy(yb, y, sizeof y);
    yb[(2 * T + 2) * 3 + 1] = NAN;
    expect_fail(ce, yb, B, T, NULL, lab, len, ELM_E_NONFINITE, "y[2, 2, 1]");
    expect_fail(cel, yb, B, T, NULL, lab_last, len, ELM_E_NONFINITE, "y[2, 2, 1]");
    expect_fail(mse, yb, B, T, z, NULL, len, ELM_E_NONFINITE, "y[2, 2, 1]");
    yb[(2 * T + 2) * 3 + 1] = -INFINITY;
    expect_fail(mse, yb, B, T, z, NULL, len, ELM_E_NONFINITE, "y[2, 2, 1]");
    memcpy(zb, z, sizeof z);
    zb[(2 * T + 2) * 3 + 2] = INFINITY;
    expect_fail(mse, y, B, T, zb, NULL, len, ELM_E_NONFINITE, "target[2, 2, 2]");
    float z2b[B * T * 2];
    memcpy(z2b, z2, sizeof z2);
    z2b[(2 * T + 2) * 2 + 1] = NAN;
    expect_fail(nio, y, B, T, z2b, NULL, len, ELM_E_NONFINITE, "target[2, 2, 1]");
    /* ... but not at a non-counted one */
    memcpy(yb, y, sizeof y);
    memcpy(zb, z, sizeof z);
    yb[(2 * T + 3) * 3] = NAN;      /* beyond lengths[2] */
    yb[(1 * T + 0) * 3 + 1] = NAN;  /* padding sample */
    yb[1] = INFINITY;               /* burn-in of CE_ALL */
    zb[(2 * T + 4) * 3] = NAN;
    double vb, vref;
    assert_int_equal(elm_loss_compute(ce, yb, B, T, NULL, lab, len, &vb, NULL), ELM_OK);
    assert_int_equal(elm_loss_compute(ce, y, B, T, NULL, lab, len, &vref, NULL), ELM_OK);
    assert_true(vb == vref);
    assert_int_equal(elm_loss_compute(cel, yb, B, T, NULL, lab_last, len, &vb, NULL), ELM_OK);
    assert_int_equal(elm_loss_compute(mse, y, B, T, zb, NULL, len, &vb, NULL), ELM_OK);

    /* spike targets outside [0, 1] */
    memcpy(z2b, z2, sizeof z2);
    z2b[(2 * T + 1) * 2] = 1.5f;
    expect_fail(nio, y, B, T, z2b, NULL, len, ELM_E_INVALID, "target[2, 1, 0]");
    z2b[(2 * T + 1) * 2] = -0.25f;
    expect_fail(nio, y, B, T, z2b, NULL, len, ELM_E_INVALID, "target[2, 1, 0]");
    z2b[(2 * T + 1) * 2] = 0.75f; /* soft targets are accepted */
    assert_int_equal(elm_loss_compute(nio, y, B, T, z2b, NULL, len, &v, NULL), ELM_OK);
    z2b[(2 * T + 1) * 2 + 1] = -40; /* the soma target is any finite value */
    assert_int_equal(elm_loss_compute(nio, y, B, T, z2b, NULL, len, &v, NULL), ELM_OK);

    /* every counted label has class weight 0: 0 / 0 */
    const float w001[3] = {0, 0, 1};
    int32_t lab01[B * T];
    for (size_t i = 0; i < B * T; i++) lab01[i] = (int32_t)(i % 2);
    assert_int_equal(elm_loss_set_weights(ce, w001, 3), ELM_OK);
    expect_fail(ce, y, B, T, NULL, lab01, len, ELM_E_INVALID, NULL);
    lab01[T + 2] = 2; /* weight 1 but in the padding sample: still 0 / 0 */
    expect_fail(ce, y, B, T, NULL, lab01, len, ELM_E_INVALID, NULL);
    lab01[2] = 2;
    assert_int_equal(elm_loss_compute(ce, y, B, T, NULL, lab01, len, &v, NULL), ELM_OK);

    elm_loss_free(ce);
    elm_loss_free(cel);
    elm_loss_free(mse);
    elm_loss_free(nio);
}

/* dy is overwritten everywhere, zeros where nothing counts. */
static void test_dy_overwritten(void **st) {
    (void)st;
    lcase c;
    random_case(&c, ELM_LOSS_CE_ALL, 5, 6, 3, 2, NULL, true, true, 77);
    elm_loss *l = make_loss(&c);
    size_t N = c.B * c.T * c.n;
    float *dy = malloc(N * sizeof *dy);
    for (size_t i = 0; i < N; i++) dy[i] = SENTINEL;
    double v;
    assert_int_equal(compute(l, &c, &v, dy), ELM_OK);
    size_t zeros = 0;
    for (size_t i = 0; i < N; i++) {
        assert_true(dy[i] != SENTINEL && isfinite(dy[i]));
        size_t bt = i / c.n;
        if (!counted(&c, bt / c.T, bt % c.T)) {
            assert_true(dy[i] == 0.0f);
            zeros++;
        }
    }
    assert_true(zeros > 0);
    free(dy);
    elm_loss_free(l);
    free_case(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_create),
        cmocka_unit_test(test_set_weights_errors),
        cmocka_unit_test(test_hand_ce),
        cmocka_unit_test(test_hand_neuronio_mse),
        cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_burn_in),
        cmocka_unit_test(test_gradient_finite_differences),
        cmocka_unit_test(test_extreme_logits),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_dy_overwritten),
    };
    return cmocka_run_group_tests_name("loss", tests, NULL, NULL);
}
