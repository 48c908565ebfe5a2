/* Metrics: accuracy over counted steps, ROC AUC (against an O(n^2) pairwise
 * count written here), RMSE, and their bad inputs. */
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

#define assert_near(a, b, tol) \
    assert_near_impl((double)(a), (double)(b), (double)(tol), #a, __LINE__)
static void assert_near_impl(double a, double b, double tol, const char *what, int line) {
    if (!(fabs(a - b) <= tol))
        fail_msg("line %d: %s = %.17g, expected %.17g (tolerance %.3g)", line, what, a, b, tol);
}

static uint64_t next_u(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* ---------------------------------------------------------------------------
 * Accuracy */

static void test_accuracy_hand(void **st) {
    (void)st;
    /* B = 2, T = 3, n_out = 3. Argmax per step:
     *   sample 0: 2, 0 (tie 0/1: first wins), 1
     *   sample 1: 1, 2, 0 */
    const float y[2 * 3 * 3] = {0, 1, 5, 4, 4, 1, -1, 3, 2,
                                0, 2, 1, 1, 1, 9, 7, -3, 6};
    const int32_t lab_all[6] = {2, 1, 1, 1, 0, 0};
    double acc = -1;
    /* every step: correct at (0,0), (0,2), (1,0), (1,2) = 4 of 6 */
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 3, lab_all, NULL, 0, 0, &acc), ELM_OK);
    assert_near(acc, 4.0 / 6.0, 1e-15);
    /* burn-in 1: (0,2), (1,2) correct; (0,1), (1,1) wrong = 2 of 4 */
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 3, lab_all, NULL, 1, 0, &acc), ELM_OK);
    assert_near(acc, 0.5, 1e-15);
    /* lengths (2, 3), burn-in 1: (0,1) wrong, (1,1) wrong, (1,2) right */
    const int64_t len[2] = {2, 3};
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 3, lab_all, len, 1, 0, &acc), ELM_OK);
    assert_near(acc, 1.0 / 3.0, 1e-15);
    /* lengths (0, 2) (padding), burn-in 0: (1,0) right, (1,1) wrong */
    const int64_t len2[2] = {0, 2};
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 3, lab_all, len2, 0, 0, &acc), ELM_OK);
    assert_near(acc, 0.5, 1e-15);

    /* last step: sample 0 argmax 1 at t=2, sample 1 argmax 0 at t=2 */
    const int32_t lab_last[2] = {1, 2};
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 3, lab_last, NULL, 0, 1, &acc), ELM_OK);
    assert_near(acc, 0.5, 1e-15);
    /* the burn-in does not apply to the last step */
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 3, lab_last, NULL, 7, 1, &acc), ELM_OK);
    assert_near(acc, 0.5, 1e-15);
    /* lengths (2, 2): sample 0 argmax 0 at t=1 (tie), sample 1 argmax 2 at t=1 */
    const int64_t len3[2] = {2, 2};
    const int32_t lab_last2[2] = {0, 2};
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 3, lab_last2, len3, 0, 1, &acc), ELM_OK);
    assert_near(acc, 1.0, 1e-15);
    const int32_t lab_last3[2] = {1, 2}; /* the tie's second maximum does not win */
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 3, lab_last3, len3, 0, 1, &acc), ELM_OK);
    assert_near(acc, 0.5, 1e-15);
    /* padding sample skipped: only sample 1 (wrong at t = 2 for label 2) */
    const int64_t len4[2] = {0, 3};
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 3, lab_last2, len4, 0, 1, &acc), ELM_OK);
    assert_near(acc, 0.0, 0);

    /* infinities are ordinary scores for argmax */
    const float yi[3] = {-INFINITY, INFINITY, 3};
    const int32_t l1 = 1;
    assert_int_equal(elm_metric_accuracy(yi, 1, 1, 3, &l1, NULL, 0, 1, &acc), ELM_OK);
    assert_near(acc, 1.0, 0);
}

static void test_accuracy_random(void **st) {
    (void)st;
    enum { B = 9, T = 17, N = 6 };
    uint64_t seed = 3;
    float *y = malloc(B * T * N * sizeof *y);
    fill_uniform(y, B * T * N, -1, 1, &seed);
    /* coarse values so that ties occur */
    for (size_t i = 0; i < B * T * N; i++) y[i] = roundf(y[i] * 2);
    int32_t lab[B * T], lab_last[B];
    int64_t len[B];
    for (size_t i = 0; i < B * T; i++) lab[i] = (int32_t)(next_u(&seed) % N);
    for (size_t b = 0; b < B; b++) {
        lab_last[b] = (int32_t)(next_u(&seed) % N);
        len[b] = (int64_t)(next_u(&seed) % (T + 1));
    }
    len[0] = 0;
    len[1] = T;
    for (int last = 0; last <= 1; last++)
        for (size_t t0 = 0; t0 < 6; t0 += 5)
            for (int with_len = 0; with_len <= 1; with_len++) {
                size_t cnt = 0, ok = 0;
                for (size_t b = 0; b < B; b++) {
                    size_t L = with_len ? (size_t)len[b] : T;
                    for (size_t t = 0; t < T; t++) {
                        bool c = last ? (L > 0 && t == L - 1) : (t >= t0 && t < L);
                        if (!c) continue;
                        const float *r = y + (b * T + t) * N;
                        size_t am = 0;
                        for (size_t o = N; o-- > 0;)
                            if (r[o] >= r[am]) am = o; /* lowest index among maxima */
                        ok += (int32_t)am == (last ? lab_last[b] : lab[b * T + t]);
                        cnt++;
                    }
                }
                double acc;
                assert_int_equal(elm_metric_accuracy(y, B, T, N, last ? lab_last : lab,
                                                     with_len ? len : NULL, t0, last, &acc),
                                 ELM_OK);
                assert_near(acc, (double)ok / (double)cnt, 1e-15);
            }
    free(y);
}

static void test_accuracy_errors(void **st) {
    (void)st;
    float y[2 * 3 * 2] = {0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0};
    int32_t lab[6] = {1, 0, 1, 0, 1, 0}, lab_last[2] = {0, 1};
    int64_t len[2] = {3, 1};
    double acc = -1;
    assert_int_equal(elm_metric_accuracy(NULL, 2, 3, 2, lab, NULL, 0, 0, &acc), ELM_E_NULL);
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, NULL, NULL, 0, 0, &acc), ELM_E_NULL);
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab, NULL, 0, 0, NULL), ELM_E_NULL);
    assert_int_equal(elm_metric_accuracy(y, 0, 3, 2, lab, NULL, 0, 0, &acc), ELM_E_SHAPE);
    assert_int_equal(elm_metric_accuracy(y, 2, 0, 2, lab, NULL, 0, 0, &acc), ELM_E_SHAPE);
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 0, lab, NULL, 0, 0, &acc), ELM_E_SHAPE);
    int64_t bad_len[2] = {4, 1}, neg_len[2] = {-1, 1}, zero_len[2] = {0, 0};
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab, bad_len, 0, 0, &acc), ELM_E_INVALID);
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab, neg_len, 0, 0, &acc), ELM_E_INVALID);
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab, zero_len, 0, 0, &acc), ELM_E_INVALID);
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab_last, zero_len, 0, 1, &acc),
                     ELM_E_INVALID);
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab, NULL, 3, 0, &acc), ELM_E_INVALID);
    /* labels out of range where counted, ignored elsewhere */
    int32_t lab_bad[6] = {1, 0, 2, 0, 1, 0};
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab_bad, NULL, 0, 0, &acc), ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "labels[0, 2] = 2"));
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab_bad, len, 1, 0, &acc), ELM_E_INVALID);
    lab_bad[2] = 1;
    lab_bad[4] = -1; /* beyond lengths[1] */
    lab_bad[0] = 9;  /* burn-in */
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab_bad, len, 1, 0, &acc), ELM_OK);
    int32_t lab_last_bad[2] = {0, 2};
    assert_int_equal(elm_metric_accuracy(y, 2, 3, 2, lab_last_bad, len, 0, 1, &acc),
                     ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "labels[1] = 2"));
    /* NaN where counted, ignored elsewhere */
    float yb[12];
    memcpy(yb, y, sizeof y);
    yb[4 * 2 + 1] = NAN; /* sample 1, step 1: beyond lengths[1] = 1 */
    assert_int_equal(elm_metric_accuracy(yb, 2, 3, 2, lab, len, 0, 0, &acc), ELM_OK);
    assert_int_equal(elm_metric_accuracy(yb, 2, 3, 2, lab, NULL, 0, 0, &acc), ELM_E_NONFINITE);
    acc = -1;
    assert_int_equal(elm_metric_accuracy(yb, 2, 3, 2, lab_last, NULL, 0, 1, &acc), ELM_OK);
    memcpy(yb, y, sizeof y);
    yb[2 * 2] = NAN; /* sample 0, step 2: its last step */
    assert_int_equal(elm_metric_accuracy(yb, 2, 3, 2, lab_last, NULL, 0, 1, &acc),
                     ELM_E_NONFINITE);
    assert_true(acc == 0.0); /* untouched by the failed call (was 0 of 2) */
}

/* ---------------------------------------------------------------------------
 * ROC AUC */

/* Pairwise definition: P(score_pos > score_neg) + P(equal) / 2. */
static double auc_pairs(const float *s, const float *t, size_t n) {
    double u = 0, np = 0, nn = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == 1) np++;
        else nn++;
        if (t[i] != 1) continue;
        for (size_t j = 0; j < n; j++) {
            if (t[j] != 0) continue;
            u += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
        }
    }
    return u / (np * nn);
}

static void test_auc_hand(void **st) {
    (void)st;
    double auc = -1;
    const float s1[6] = {0.1f, 0.2f, 0.3f, 0.7f, 0.8f, 0.9f};
    const float t1[6] = {0, 0, 0, 1, 1, 1};
    const float t1r[6] = {1, 1, 1, 0, 0, 0};
    assert_int_equal(elm_metric_roc_auc(s1, t1, 6, &auc), ELM_OK);
    assert_true(auc == 1.0);
    assert_int_equal(elm_metric_roc_auc(s1, t1r, 6, &auc), ELM_OK);
    assert_true(auc == 0.0);
    const float same[5] = {3, 3, 3, 3, 3}, tm[5] = {1, 0, 0, 1, 0};
    assert_int_equal(elm_metric_roc_auc(same, tm, 5, &auc), ELM_OK);
    assert_true(auc == 0.5);
    /* scikit-learn's documented example: 0.75 */
    const float s2[4] = {0.1f, 0.4f, 0.35f, 0.8f}, t2[4] = {0, 0, 1, 1};
    assert_int_equal(elm_metric_roc_auc(s2, t2, 4, &auc), ELM_OK);
    assert_near(auc, 0.75, 1e-15);
    /* With ties: positives {0.5, 0.9}, negatives {0.5, 0.2, 0.5}:
     * 0.5 vs (0.5, 0.2, 0.5) = 0.5 + 1 + 0.5; 0.9 beats all 3. 5 / 6. */
    const float s3[5] = {0.5f, 0.5f, 0.2f, 0.9f, 0.5f}, t3[5] = {1, 0, 0, 1, 0};
    assert_int_equal(elm_metric_roc_auc(s3, t3, 5, &auc), ELM_OK);
    assert_near(auc, 5.0 / 6.0, 1e-15);
    /* +0 and -0 tie; infinities order normally: positives {-0, inf},
     * negatives {+0, -inf}: 0.5 + 1 + 1 + 1 = 3.5 / 4 */
    const float s4[4] = {-0.0f, INFINITY, 0.0f, -INFINITY}, t4[4] = {1, 1, 0, 0};
    assert_int_equal(elm_metric_roc_auc(s4, t4, 4, &auc), ELM_OK);
    assert_near(auc, 3.5 / 4.0, 1e-15);
    /* two samples */
    const float s5[2] = {1, 2}, t5[2] = {1, 0};
    assert_int_equal(elm_metric_roc_auc(s5, t5, 2, &auc), ELM_OK);
    assert_true(auc == 0.0);
}

static void test_auc_random(void **st) {
    (void)st;
    uint64_t seed = 17;
    size_t sizes[] = {2, 3, 10, 57, 500, 2001};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        for (int coarse = 0; coarse <= 1; coarse++) {
            float *s = malloc(n * sizeof *s), *t = malloc(n * sizeof *t);
            fill_uniform(s, n, -3, 3, &seed);
            for (size_t i = 0; i < n; i++) {
                if (coarse) s[i] = roundf(s[i] * 2); /* many ties */
                /* positives tend to score higher, so the AUC is not ~0.5 */
                t[i] = (double)(next_u(&seed) % 100) < 50 + 12 * (double)s[i] ? 1.0f : 0.0f;
            }
            t[0] = 1;
            t[n - 1] = 0;
            double auc;
            assert_int_equal(elm_metric_roc_auc(s, t, n, &auc), ELM_OK);
            assert_near(auc, auc_pairs(s, t, n), 1e-12);
            free(s);
            free(t);
        }
    }
}

static void test_auc_errors(void **st) {
    (void)st;
    double auc = -1;
    const float s[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    const float ones[4] = {1, 1, 1, 1}, zeros[4] = {0, 0, 0, 0};
    assert_int_equal(elm_metric_roc_auc(s, ones, 4, &auc), ELM_E_INVALID);
    assert_int_equal(elm_metric_roc_auc(s, zeros, 4, &auc), ELM_E_INVALID);
    assert_int_equal(elm_metric_roc_auc(s, ones, 1, &auc), ELM_E_INVALID);
    const float half[4] = {0, 1, 0.5f, 1}, two[4] = {0, 1, 2, 1};
    assert_int_equal(elm_metric_roc_auc(s, half, 4, &auc), ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "truth[2]"));
    assert_int_equal(elm_metric_roc_auc(s, two, 4, &auc), ELM_E_INVALID);
    const float tnan[4] = {0, 1, NAN, 1};
    assert_int_equal(elm_metric_roc_auc(s, tnan, 4, &auc), ELM_E_NONFINITE);
    const float snan[4] = {0.1f, NAN, 0.3f, 0.4f}, t[4] = {0, 1, 0, 1};
    assert_int_equal(elm_metric_roc_auc(snan, t, 4, &auc), ELM_E_NONFINITE);
    assert_non_null(strstr(elm_last_error(), "score[1]"));
    assert_int_equal(elm_metric_roc_auc(s, t, 0, &auc), ELM_E_SHAPE);
    assert_int_equal(elm_metric_roc_auc(NULL, t, 4, &auc), ELM_E_NULL);
    assert_int_equal(elm_metric_roc_auc(s, NULL, 4, &auc), ELM_E_NULL);
    assert_int_equal(elm_metric_roc_auc(s, t, 4, NULL), ELM_E_NULL);
    assert_true(auc == -1);
    assert_int_equal(elm_metric_roc_auc(s, t, 4, &auc), ELM_OK);
    assert_near(auc, 0.75, 1e-15);
}

/* ---------------------------------------------------------------------------
 * RMSE */

static void test_rmse(void **st) {
    (void)st;
    double r = -1;
    const float a[3] = {1, 2, 3}, b[3] = {1, 0, 0};
    assert_int_equal(elm_metric_rmse(a, b, 3, &r), ELM_OK);
    assert_near(r, sqrt(13.0 / 3.0), 1e-15);
    assert_int_equal(elm_metric_rmse(a, a, 3, &r), ELM_OK);
    assert_true(r == 0.0);
    assert_int_equal(elm_metric_rmse(a, b, 1, &r), ELM_OK);
    assert_true(r == 0.0);
    assert_int_equal(elm_metric_rmse(b, a, 2, &r), ELM_OK);
    assert_near(r, sqrt(2.0), 1e-15);

    uint64_t seed = 9;
    enum { N = 1000 };
    float x[N], z[N];
    fill_uniform(x, N, -50, 50, &seed);
    fill_uniform(z, N, -50, 50, &seed);
    double s = 0;
    for (size_t i = 0; i < N; i++) s += ((double)x[i] - z[i]) * ((double)x[i] - z[i]);
    assert_int_equal(elm_metric_rmse(x, z, N, &r), ELM_OK);
    assert_near(r, sqrt(s / N), 1e-12 * sqrt(s / N));

    r = -1;
    assert_int_equal(elm_metric_rmse(a, b, 0, &r), ELM_E_SHAPE);
    assert_int_equal(elm_metric_rmse(NULL, b, 3, &r), ELM_E_NULL);
    assert_int_equal(elm_metric_rmse(a, NULL, 3, &r), ELM_E_NULL);
    assert_int_equal(elm_metric_rmse(a, b, 3, NULL), ELM_E_NULL);
    const float an[3] = {1, NAN, 3}, bi[3] = {1, 0, -INFINITY};
    assert_int_equal(elm_metric_rmse(an, b, 3, &r), ELM_E_NONFINITE);
    assert_int_equal(elm_metric_rmse(a, bi, 3, &r), ELM_E_NONFINITE);
    assert_non_null(strstr(elm_last_error(), "b[2]"));
    assert_true(r == -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accuracy_hand),
        cmocka_unit_test(test_accuracy_random),
        cmocka_unit_test(test_accuracy_errors),
        cmocka_unit_test(test_auc_hand),
        cmocka_unit_test(test_auc_random),
        cmocka_unit_test(test_auc_errors),
        cmocka_unit_test(test_rmse),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
