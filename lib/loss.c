/* Losses with their gradients: cross-entropy (last step or every step, with
 * PyTorch's class weights), NeuronIO's weighted BCEWithLogits + MSE, and a
 * per-output weighted MSE. Sums accumulate in double; a call validates
 * everything it will read before it writes anything. */
#include "elm_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct elm_loss {
    elm_loss_kind kind;
    size_t n_out;
    size_t t0;      /* burn-in: steps t < t0 carry no loss (not CE_LAST) */
    double *w;      /* (n_out) class weights (CE) or per-output weights */
};

static const char *const kind_names[] = {NULL, "ce_last", "ce_all", "neuronio", "mse"};

static bool kind_valid(elm_loss_kind kind) {
    return kind >= ELM_LOSS_CE_LAST && kind <= ELM_LOSS_MSE;
}

static bool is_ce(elm_loss_kind kind) {
    return kind == ELM_LOSS_CE_LAST || kind == ELM_LOSS_CE_ALL;
}

static void default_weights(elm_loss *l) {
    for (size_t o = 0; o < l->n_out; o++)
        l->w[o] = l->kind == ELM_LOSS_MSE ? 1.0 / (double)l->n_out
                  : l->kind == ELM_LOSS_NEURONIO ? 0.5
                                                 : 1.0;
}

ELM_API int elm_loss_create(elm_loss_kind kind, size_t n_out, elm_loss **out) {
    if (!out) return elm__fail(ELM_E_NULL, "elm_loss_create: out is NULL");
    if (!kind_valid(kind))
        return elm__fail(ELM_E_INVALID, "elm_loss_create: unknown loss kind %d", (int)kind);
    if (n_out < 1) return elm__fail(ELM_E_INVALID, "elm_loss_create: n_out must be >= 1, got 0");
    if (kind == ELM_LOSS_NEURONIO && n_out != 2)
        return elm__fail(ELM_E_INVALID, "elm_loss_create: neuronio needs n_out = 2, got %zu",
                         n_out);
    if (is_ce(kind) && n_out < 2)
        return elm__fail(ELM_E_INVALID, "elm_loss_create: %s needs n_out >= 2 classes, got %zu",
                         kind_names[kind], n_out);
    if (n_out > SIZE_MAX / sizeof(double))
        return elm__fail(ELM_E_NOMEM, "elm_loss_create: n_out = %zu is too large", n_out);
    elm_loss *l = calloc(1, sizeof *l);
    double *w = malloc(n_out * sizeof *w);
    if (!l || !w) {
        free(l);
        free(w);
        return elm__fail(ELM_E_NOMEM, "elm_loss_create: out of memory");
    }
    l->kind = kind;
    l->n_out = n_out;
    l->t0 = 0;
    l->w = w;
    default_weights(l);
    *out = l;
    return ELM_OK;
}

ELM_API void elm_loss_free(elm_loss *loss) {
    if (!loss) return;
    free(loss->w);
    free(loss);
}

ELM_API elm_loss_kind elm_loss_get_kind(const elm_loss *loss) {
    return loss ? loss->kind : (elm_loss_kind)0;
}

ELM_API int elm_loss_kind_from_name(const char *name, elm_loss_kind *kind) {
    if (!name || !kind) return elm__fail(ELM_E_NULL, "elm_loss_kind_from_name: NULL argument");
    for (int k = ELM_LOSS_CE_LAST; k <= ELM_LOSS_MSE; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *kind = (elm_loss_kind)k;
            return ELM_OK;
        }
    }
    return elm__fail(ELM_E_UNKNOWN_NAME, "elm_loss_kind_from_name: unknown loss '%s'", name);
}

ELM_API const char *elm_loss_kind_name(elm_loss_kind kind) {
    return kind_valid(kind) ? kind_names[kind] : NULL;
}

ELM_API int elm_loss_set_burn_in(elm_loss *loss, size_t t0) {
    if (!loss) return elm__fail(ELM_E_NULL, "elm_loss_set_burn_in: loss is NULL");
    loss->t0 = t0;
    return ELM_OK;
}

ELM_API int elm_loss_get_burn_in(const elm_loss *loss, size_t *t0) {
    if (!loss || !t0) return elm__fail(ELM_E_NULL, "elm_loss_get_burn_in: NULL argument");
    *t0 = loss->t0;
    return ELM_OK;
}

ELM_API int elm_loss_get_weights(const elm_loss *loss, float *w, size_t n) {
    if (!loss || !w) return elm__fail(ELM_E_NULL, "elm_loss_get_weights: NULL argument");
    if (n != loss->n_out)
        return elm__fail(ELM_E_SHAPE, "elm_loss_get_weights: the loss has %zu weights (n_out), got n = %zu",
                         loss->n_out, n);
    for (size_t o = 0; o < n; o++) w[o] = (float)loss->w[o];
    return ELM_OK;
}

ELM_API int elm_loss_set_weights(elm_loss *loss, const float *w, size_t n) {
    if (!loss || !w) return elm__fail(ELM_E_NULL, "elm_loss_set_weights: NULL argument");
    if (n != loss->n_out)
        return elm__fail(ELM_E_SHAPE, "elm_loss_set_weights: expects %zu weights (n_out), got %zu",
                         loss->n_out, n);
    double sum = 0;
    for (size_t o = 0; o < n; o++) {
        if (!isfinite(w[o]) || w[o] < 0)
            return elm__fail(ELM_E_INVALID,
                             "elm_loss_set_weights: w[%zu] = %g must be finite and >= 0", o,
                             (double)w[o]);
        sum += w[o];
    }
    if (!(sum > 0))
        return elm__fail(ELM_E_INVALID, "elm_loss_set_weights: the weights sum to 0");
    for (size_t o = 0; o < n; o++) loss->w[o] = w[o];
    return ELM_OK;
}

size_t elm__loss_burn_in(const elm_loss *loss) { return loss ? loss->t0 : 0; }

size_t elm__loss_outputs(const elm_loss *loss) { return loss ? loss->n_out : 0; }

int elm__check_lengths(const char *fn, const int64_t *lengths, size_t B, size_t T) {
    if (lengths)
        for (size_t b = 0; b < B; b++)
            if (lengths[b] < 0 || (uint64_t)lengths[b] > (uint64_t)T)
                return elm__fail(ELM_E_INVALID, "%s: lengths[%zu] = %lld outside [0, %zu]", fn, b,
                                 (long long)lengths[b], T);
    return ELM_OK;
}

/* The counted steps of sample b: [*lo, *hi) (empty when lo >= hi). */
static void counted_steps(elm_loss_kind kind, size_t t0, size_t len, size_t *lo, size_t *hi) {
    if (kind == ELM_LOSS_CE_LAST) {
        *lo = len > 0 ? len - 1 : 0;
        *hi = len;
    } else {
        *lo = t0;
        *hi = len;
    }
}

/* The row's maximum m and log(sum_c exp(v_c - m)), in double: the
 * log-sum-exp is m + *log_s, kept apart so that nll = (m - v_label) + log_s
 * loses nothing when m is huge. */
static double row_max(const float *v, size_t n, double *log_s) {
    double m = v[0];
    for (size_t c = 1; c < n; c++)
        if (v[c] > m) m = v[c];
    double s = 0;
    for (size_t c = 0; c < n; c++) s += exp((double)v[c] - m);
    *log_s = log(s);
    return m;
}

/* Stable log(1 + exp(-|x|)) based BCEWithLogits and its derivative. */
static double bce_logits(double x, double z) {
    return (x > 0 ? x : 0) - x * z + log1p(exp(-fabs(x)));
}

static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

ELM_API int elm_loss_compute(const elm_loss *loss, const float *y, size_t B, size_t T,
                             const float *target, const int32_t *labels,
                             const int64_t *lengths, double *value, float *dy) {
    static const char fn[] = "elm_loss_compute";
    if (!loss) return elm__fail(ELM_E_NULL, "%s: loss is NULL", fn);
    if (!y) return elm__fail(ELM_E_NULL, "%s: y is NULL", fn);
    if (!value) return elm__fail(ELM_E_NULL, "%s: value is NULL", fn);
    const elm_loss_kind kind = loss->kind;
    const size_t n = loss->n_out;
    const bool ce = is_ce(kind);
    if (ce) {
        if (target)
            return elm__fail(ELM_E_INVALID, "%s: %s reads labels; target must be NULL", fn,
                             kind_names[kind]);
        if (!labels) return elm__fail(ELM_E_NULL, "%s: %s needs labels", fn, kind_names[kind]);
    } else {
        if (labels)
            return elm__fail(ELM_E_INVALID, "%s: %s reads target; labels must be NULL", fn,
                             kind_names[kind]);
        if (!target) return elm__fail(ELM_E_NULL, "%s: %s needs a target", fn, kind_names[kind]);
    }
    if (B == 0 || T == 0)
        return elm__fail(ELM_E_SHAPE, "%s: B = %zu and T = %zu must both be >= 1", fn, B, T);
    size_t bt, numel;
    if (!elm__mul_ok(B, T, &bt) || !elm__mul_ok(bt, n, &numel))
        return elm__fail(ELM_E_NOMEM, "%s: B * T * n_out overflows", fn);
    int lrc = elm__check_lengths(fn, lengths, B, T);
    if (lrc) return lrc;

    /* Pass 1: validate every value read, count, and sum the weights. */
    size_t count = 0;
    double wsum = 0; /* CE: sum of the class weights of the counted items */
    for (size_t b = 0; b < B; b++) {
        size_t lo, hi;
        counted_steps(kind, loss->t0, lengths ? (size_t)lengths[b] : T, &lo, &hi);
        for (size_t t = lo; t < hi; t++) {
            const float *yr = y + (b * T + t) * n;
            for (size_t o = 0; o < n; o++)
                if (!isfinite(yr[o]))
                    return elm__fail(ELM_E_NONFINITE, "%s: y[%zu, %zu, %zu] = %g is not finite",
                                     fn, b, t, o, (double)yr[o]);
            if (ce) {
                int32_t c = kind == ELM_LOSS_CE_LAST ? labels[b] : labels[b * T + t];
                if (c < 0 || (size_t)c >= n) {
                    if (kind == ELM_LOSS_CE_LAST)
                        return elm__fail(ELM_E_INVALID, "%s: labels[%zu] = %d outside [0, %zu)",
                                         fn, b, (int)c, n);
                    return elm__fail(ELM_E_INVALID, "%s: labels[%zu, %zu] = %d outside [0, %zu)",
                                     fn, b, t, (int)c, n);
                }
                wsum += loss->w[c];
            } else {
                const float *tr = target + (b * T + t) * n;
                for (size_t o = 0; o < n; o++)
                    if (!isfinite(tr[o]))
                        return elm__fail(ELM_E_NONFINITE,
                                         "%s: target[%zu, %zu, %zu] = %g is not finite", fn, b, t,
                                         o, (double)tr[o]);
                if (kind == ELM_LOSS_NEURONIO && !(tr[0] >= 0 && tr[0] <= 1))
                    return elm__fail(ELM_E_INVALID,
                                     "%s: spike target[%zu, %zu, 0] = %g outside [0, 1]", fn, b, t,
                                     (double)tr[0]);
            }
            count++;
        }
    }
    if (count == 0)
        return elm__fail(ELM_E_INVALID,
                         "%s: no (sample, step) pair is counted (lengths, burn-in %zu, T %zu)", fn,
                         kind == ELM_LOSS_CE_LAST ? (size_t)0 : loss->t0, T);
    if (ce && !(wsum > 0))
        return elm__fail(ELM_E_INVALID,
                         "%s: the counted labels have total class weight 0 (0 / 0 loss)", fn);

    /* Pass 2: the value and the gradient. */
    if (dy) memset(dy, 0, numel * sizeof *dy);
    double total = 0;
    const double inv_count = 1.0 / (double)count;
    for (size_t b = 0; b < B; b++) {
        size_t lo, hi;
        counted_steps(kind, loss->t0, lengths ? (size_t)lengths[b] : T, &lo, &hi);
        for (size_t t = lo; t < hi; t++) {
            const size_t row = (b * T + t) * n;
            const float *yr = y + row;
            float *dr = dy ? dy + row : NULL;
            if (ce) {
                int32_t c = kind == ELM_LOSS_CE_LAST ? labels[b] : labels[b * T + t];
                double wc = loss->w[c];
                double log_s, m = row_max(yr, n, &log_s);
                total += wc * ((m - (double)yr[c]) + log_s);
                if (dr) {
                    double s = wc / wsum;
                    for (size_t o = 0; o < n; o++)
                        dr[o] = (float)(s * (exp(((double)yr[o] - m) - log_s) - (o == (size_t)c)));
                }
            } else if (kind == ELM_LOSS_NEURONIO) {
                const float *tr = target + row;
                double x = yr[0], z = tr[0], e = (double)yr[1] - (double)tr[1];
                total += loss->w[0] * bce_logits(x, z) + loss->w[1] * e * e;
                if (dr) {
                    dr[0] = (float)(loss->w[0] * (sigmoid(x) - z) * inv_count);
                    dr[1] = (float)(2.0 * loss->w[1] * e * inv_count);
                }
            } else {
                const float *tr = target + row;
                for (size_t o = 0; o < n; o++) {
                    double e = (double)yr[o] - (double)tr[o];
                    total += loss->w[o] * e * e;
                    if (dr) dr[o] = (float)(2.0 * loss->w[o] * e * inv_count);
                }
            }
        }
    }
    *value = ce ? total / wsum : total * inv_count;
    return ELM_OK;
}
