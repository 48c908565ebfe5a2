/* Metrics: accuracy over the counted steps, ROC AUC as the Mann-Whitney
 * statistic (ties count one half), and RMSE. Sums accumulate in double. */
#include "elm_internal.h"

#include <math.h>
#include <stdlib.h>

ELM_API int elm_metric_accuracy(const float *y, size_t B, size_t T, size_t n_out,
                                const int32_t *labels, const int64_t *lengths, size_t t0,
                                int last, double *accuracy) {
    static const char fn[] = "elm_metric_accuracy";
    if (!y || !labels || !accuracy) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    if (B == 0 || T == 0 || n_out == 0)
        return elm__fail(ELM_E_SHAPE, "%s: B = %zu, T = %zu and n_out = %zu must all be >= 1", fn,
                         B, T, n_out);
    size_t bt, numel;
    if (!elm__mul_ok(B, T, &bt) || !elm__mul_ok(bt, n_out, &numel))
        return elm__fail(ELM_E_NOMEM, "%s: B * T * n_out overflows", fn);
    int lrc = elm__check_lengths(fn, lengths, B, T);
    if (lrc) return lrc;
    size_t count = 0, correct = 0;
    for (size_t b = 0; b < B; b++) {
        size_t len = lengths ? (size_t)lengths[b] : T;
        size_t lo = last ? (len > 0 ? len - 1 : 0) : t0;
        for (size_t t = lo; t < len; t++) {
            const float *yr = y + (b * T + t) * n_out;
            int32_t c = last ? labels[b] : labels[b * T + t];
            if (c < 0 || (size_t)c >= n_out) {
                if (last)
                    return elm__fail(ELM_E_INVALID, "%s: labels[%zu] = %d outside [0, %zu)", fn, b,
                                     (int)c, n_out);
                return elm__fail(ELM_E_INVALID, "%s: labels[%zu, %zu] = %d outside [0, %zu)", fn,
                                 b, t, (int)c, n_out);
            }
            size_t best = 0;
            for (size_t o = 0; o < n_out; o++) {
                if (isnan(yr[o]))
                    return elm__fail(ELM_E_NONFINITE, "%s: y[%zu, %zu, %zu] is NaN", fn, b, t, o);
                if (yr[o] > yr[best]) best = o; /* first maximum wins */
            }
            correct += best == (size_t)c;
            count++;
        }
    }
    if (count == 0)
        return elm__fail(ELM_E_INVALID, "%s: no (sample, step) pair is counted", fn);
    *accuracy = (double)correct / (double)count;
    return ELM_OK;
}

typedef struct scored {
    float score;
    float truth; /* 0 or 1 */
} scored;

static int by_score(const void *pa, const void *pb) {
    float a = ((const scored *)pa)->score, b = ((const scored *)pb)->score;
    return (a > b) - (a < b);
}

ELM_API int elm_metric_roc_auc(const float *score, const float *truth, size_t n, double *auc) {
    static const char fn[] = "elm_metric_roc_auc";
    if (!score || !truth || !auc) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    if (n == 0) return elm__fail(ELM_E_SHAPE, "%s: n must be >= 1", fn);
    uint64_t n_pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(score[i])) return elm__fail(ELM_E_NONFINITE, "%s: score[%zu] is NaN", fn, i);
        if (!isfinite(truth[i]))
            return elm__fail(ELM_E_NONFINITE, "%s: truth[%zu] = %g is not finite", fn, i,
                             (double)truth[i]);
        if (truth[i] != 0 && truth[i] != 1)
            return elm__fail(ELM_E_INVALID, "%s: truth[%zu] = %g is neither 0 nor 1", fn, i,
                             (double)truth[i]);
        n_pos += truth[i] == 1;
    }
    uint64_t n_neg = (uint64_t)n - n_pos;
    if (n_pos == 0 || n_neg == 0)
        return elm__fail(ELM_E_INVALID, "%s: only one class present (%llu positive of %zu)", fn,
                         (unsigned long long)n_pos, n);
    if (n > SIZE_MAX / sizeof(scored)) return elm__fail(ELM_E_NOMEM, "%s: n is too large", fn);
    scored *s = malloc(n * sizeof *s);
    if (!s) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    for (size_t i = 0; i < n; i++) s[i] = (scored){score[i], truth[i]};
    qsort(s, n, sizeof *s, by_score);
    /* Walk groups of equal scores in ascending order: each positive beats
     * every negative below its group and ties half of those in its group.
     * u2 = 2 U is an exact integer. */
    uint64_t u2 = 0, neg_below = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        uint64_t p = 0, q = 0;
        while (j < n && s[j].score == s[i].score) {
            if (s[j].truth == 1) p++;
            else q++;
            j++;
        }
        u2 += 2 * p * neg_below + p * q;
        neg_below += q;
        i = j;
    }
    free(s);
    *auc = (double)u2 / (2.0 * (double)n_pos * (double)n_neg);
    return ELM_OK;
}

ELM_API int elm_metric_rmse(const float *a, const float *b, size_t n, double *rmse) {
    static const char fn[] = "elm_metric_rmse";
    if (!a || !b || !rmse) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    if (n == 0) return elm__fail(ELM_E_SHAPE, "%s: n must be >= 1", fn);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return elm__fail(ELM_E_NONFINITE, "%s: a[%zu] = %g is not finite", fn, i, (double)a[i]);
        if (!isfinite(b[i]))
            return elm__fail(ELM_E_NONFINITE, "%s: b[%zu] = %g is not finite", fn, i, (double)b[i]);
        double d = (double)a[i] - (double)b[i];
        sum += d * d;
    }
    *rmse = sqrt(sum / (double)n);
    return ELM_OK;
}
