/* NeuronIO evaluation: the protocol and metrics of the official ELM code
 * (src/neuronio/neuronio_eval_utils.py, itself from the NeuronIO authors'
 * evaluate_CNN_test.py, with scikit-learn 1.1's roc_curve and numpy's
 * interp), reproduced exactly, ties and interpolation included.
 * docs/datasets/neuronio_eval.md gives every definition.
 *
 * Two parts: the metric core (nio_metrics) over pooled plain arrays, and
 * the driver (elm_neuronio_evaluate) that runs the model over the windows
 * or whole simulations, keeps the steps the protocol keeps, z-scores the
 * soma prediction and selects simulations and steps. */
#include "neuronio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    NIO_WINDOW = 500,    /* ms per window (input_window_size) */
    NIO_BURN_IN = 150,   /* ms discarded at the start of every window but the first */
    NIO_IGNORE = 500,    /* ms at the start of each simulation left out of the metrics */
    NIO_MAX_SPIKES = 24, /* simulations with more output spikes are excluded */
    NIO_GRID = 20000,    /* points of the FPR grid [0, 1] of the partial AUC */
    NIO_BATCH = 16,      /* streams per forward */
    NIO_CHUNK = 250      /* steps per forward: bounds x to 16 * 250 * 1278 floats */
};

/* Soma target of the official evaluation: mV capped at -55, minus the
 * training bias -67.7, in double; unlike training, no 0.1 scale. */
static const double NIO_SOMA_CAP = -55.0, NIO_SOMA_BIAS = -67.7;
/* The prediction y1 back in mV: the official 1 / 0.1 is a Python double
 * that torch applies to a float32 tensor as 10.0f. */
static const float NIO_SOMA_UNSCALE = 10.0f;

/* ---------------------------------------------------------------------------
 * Metric core. */

typedef struct nio_point {
    float score;   /* sigmoid(y0) in float32, as torch computes it */
    uint8_t spike; /* 0 | 1 */
} nio_point;

static int nio_by_score_desc(const void *pa, const void *pb) {
    float a = ((const nio_point *)pa)->score, b = ((const nio_point *)pb)->score;
    return (a < b) - (a > b);
}

/* The ROC curve of scikit-learn 1.1's roc_curve(drop_intermediate=True):
 * one point per distinct score (thresholds from the highest), counting
 * tied scores together; interior points whose false and true positive
 * increments both equal the previous point's dropped (second differences
 * zero); then (0, 0) prepended, and counts divided by the totals.
 * pts (n) is sorted in place; fpr, tpr have room for n + 1 points.
 * Returns the number of points (>= 2), or 0 when a class is absent. */
static size_t nio_roc(nio_point *pts, size_t n, double *fpr, double *tpr) {
    qsort(pts, n, sizeof *pts, nio_by_score_desc);
    /* counts as doubles (exact below 2^53), stored from index 1 */
    size_t m = 0, tp = 0;
    for (size_t i = 0; i < n; i++) {
        tp += pts[i].spike;
        if (i + 1 == n || pts[i + 1].score != pts[i].score) {
            m++;
            tpr[m] = (double)tp;
            fpr[m] = (double)(i + 1 - tp);
        }
    }
    if (m > 2) {
        double pf = fpr[1], pt = tpr[1]; /* the previous point before compaction */
        size_t k = 2;
        for (size_t i = 2; i < m; i++) {
            double cf = fpr[i], ct = tpr[i];
            if (fpr[i + 1] - cf != cf - pf || tpr[i + 1] - ct != ct - pt) {
                fpr[k] = cf;
                tpr[k] = ct;
                k++;
            }
            pf = cf;
            pt = ct;
        }
        fpr[k] = fpr[m];
        tpr[k] = tpr[m];
        m = k;
    }
    fpr[0] = tpr[0] = 0.0;
    double negatives = fpr[m], positives = tpr[m];
    if (negatives <= 0.0 || positives <= 0.0) return 0;
    for (size_t i = 1; i <= m; i++) {
        fpr[i] /= negatives;
        tpr[i] /= positives;
    }
    return m + 1;
}

/* The official calc_TP_at_desired_FP: the TPR of the curve point whose FPR
 * is nearest `fp` (the first one on a tie), never the prepended (0, 0). */
static double nio_tp_at_fp(const double *fpr, const double *tpr, size_t count, double fp) {
    size_t best = 0;
    double best_d = fabs(fpr[0] - fp);
    for (size_t i = 1; i < count; i++) {
        double d = fabs(fpr[i] - fp);
        if (d < best_d) best_d = d, best = i;
    }
    return tpr[best == 0 ? 1 : best];
}

/* Grid point i of numpy.linspace(0, 1, NIO_GRID). */
static double nio_grid(size_t i) {
    return i == NIO_GRID - 1 ? 1.0 : (double)i * (1.0 / (NIO_GRID - 1));
}

/* The official calc_AUC_at_desired_FP: the ROC curve interpolated
 * (numpy.interp) on the grid, averaged over the grid points below the one
 * nearest `fp` (at least 1 point): a mean TPR over FPR in [0, ~fp), in
 * [0, 1], not an area. numpy.interp at an FPR the curve has several
 * points at takes the last (highest TPR) of them. */
static double nio_pauc_at_fp(const double *fpr, const double *tpr, size_t count, double fp) {
    size_t stop = 0;
    double best_d = fabs(nio_grid(0) - fp);
    for (size_t i = 1; i < NIO_GRID; i++) {
        double d = fabs(nio_grid(i) - fp);
        if (d < best_d) best_d = d, stop = i;
    }
    if (stop < 1) stop = 1;
    double sum = 0.0;
    size_t j = 0; /* last curve point with fpr[j] <= x; x only grows */
    for (size_t i = 0; i < stop; i++) {
        double x = nio_grid(i);
        while (j + 1 < count && fpr[j + 1] <= x) j++;
        if (j + 1 == count || fpr[j] == x) {
            sum += tpr[j];
        } else {
            double slope = (tpr[j + 1] - tpr[j]) / (fpr[j + 1] - fpr[j]);
            sum += slope * (x - fpr[j]) + tpr[j];
        }
    }
    return sum / (double)stop;
}

/* All metrics over n pooled steps: pts (n) spike scores and truths
 * (reordered), soma_true / soma_pred (n) in mV above -67.7, the prediction
 * already z-scored and rescaled. curve: workspace of 2 (n + 1) doubles.
 * The spike metrics are NaN when the steps hold no spike or only spikes
 * (the ROC curve is undefined). */
static void nio_metrics(size_t n, nio_point *pts, const double *soma_true,
                        const double *soma_pred, double *curve, elm_neuronio_metrics *m) {
    double *fpr = curve, *tpr = curve + n + 1;
    size_t count = nio_roc(pts, n, fpr, tpr);
    if (count == 0) {
        m->auc = m->tp_at_fp_0025 = m->pauc_at_fp_0025 = NAN;
        m->tp_at_fp_01 = m->pauc_at_fp_01 = NAN;
    } else {
        double area = 0.0; /* trapezoids, as sklearn.metrics.auc */
        for (size_t i = 0; i + 1 < count; i++)
            area += (fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2.0;
        m->auc = area;
        m->tp_at_fp_0025 = nio_tp_at_fp(fpr, tpr, count, 0.0025);
        m->pauc_at_fp_0025 = nio_pauc_at_fp(fpr, tpr, count, 0.0025);
        m->tp_at_fp_01 = nio_tp_at_fp(fpr, tpr, count, 0.01);
        m->pauc_at_fp_01 = nio_pauc_at_fp(fpr, tpr, count, 0.01);
    }

    /* sklearn's explained_variance_score, mean_squared_error and
     * mean_absolute_error; variances with ddof 0 */
    double mean_t = 0.0, mean_e = 0.0, sq = 0.0, ab = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = soma_true[i] - soma_pred[i];
        mean_t += soma_true[i];
        mean_e += e;
        sq += e * e;
        ab += fabs(e);
    }
    mean_t /= (double)n;
    mean_e /= (double)n;
    double var_t = 0.0, var_e = 0.0;
    for (size_t i = 0; i < n; i++) {
        double dt = soma_true[i] - mean_t, de = (soma_true[i] - soma_pred[i]) - mean_e;
        var_t += dt * dt;
        var_e += de * de;
    }
    /* sklearn's force_finite: a constant target scores 1 if predicted
     * exactly, else 0 */
    double ev = var_t != 0.0 ? 1.0 - var_e / var_t : (var_e != 0.0 ? 0.0 : 1.0);
    m->soma_explained_variance = 100.0 * ev;
    m->soma_rmse = sqrt(sq / (double)n);
    m->soma_mae = ab / (double)n;
}

/* ---------------------------------------------------------------------------
 * Protocol driver. */

/* One stream of the model run: input steps [start, start + len) of a
 * simulation (zeros past its end); outputs kept at steps [keep0, keep1). */
typedef struct nio_stream {
    size_t sim, start, keep0, keep1;
} nio_stream;

/* Everything the evaluation allocates, at once. */
typedef struct nio_work {
    nio_stream *streams;
    float *x;       /* (NIO_BATCH, chunk, n_in) */
    float *y;       /* (NIO_BATCH, chunk, 2) */
    float *spk;     /* (NIO_BATCH, chunk) truths of the chunk read */
    float *mv;      /* (NIO_BATCH, chunk) soma in mV */
    float *score;   /* (N, T) sigmoid(y0) */
    float *vhat;    /* (N, T) 10 * y1, mV */
    float *vraw;    /* (N, T) soma truth, mV */
    uint8_t *spike; /* (N, T) 0 | 1 */
    nio_point *pts; /* (n_eval) */
    double *vt;     /* (n_eval) soma target */
    double *vp;     /* (n_eval) soma prediction, rescaled */
    double *curve;  /* 2 (n_eval + 1) */
    elm_state *state, *tail;
} nio_work;

static void nio_work_free(nio_work *w) {
    free(w->streams);
    free(w->x);
    free(w->y);
    free(w->spk);
    free(w->mv);
    free(w->score);
    free(w->vhat);
    free(w->vraw);
    free(w->spike);
    free(w->pts);
    free(w->vt);
    free(w->vp);
    free(w->curve);
    elm_state_free(w->state);
    elm_state_free(w->tail);
}

/* malloc of a * b * size bytes, NULL on overflow too */
static void *nio_alloc(size_t a, size_t b, size_t size) {
    size_t n;
    if (!elm__mul_ok(a, b, &n) || !elm__mul_ok(n, size, &n)) return NULL;
    return malloc(n ? n : 1);
}

/* Runs streams [first, first + nb) on `state` chunk by chunk and scatters
 * the kept outputs and the truths read with them into the (N, T) arrays. */
static int nio_run_batch(const elm__nio *f, nio_work *w, elm_state *state, size_t first,
                         size_t nb, size_t len, size_t chunk, const char *fn) {
    size_t T = elm__nio_duration(f), n_in = elm__nio_n_in(f);
    int rc = elm_state_reset(state, ELM_ALL_STREAMS);
    if (rc) return rc;
    for (size_t c0 = 0; c0 < len; c0 += chunk) {
        size_t cl = len - c0 < chunk ? len - c0 : chunk;
        for (size_t b = 0; b < nb; b++) {
            const nio_stream *st = &w->streams[first + b];
            float *xb = w->x + b * cl * n_in;
            size_t t0 = st->start + c0, valid = t0 < T ? (T - t0 < cl ? T - t0 : cl) : 0;
            if (valid) {
                rc = elm__nio_window(f, st->sim, t0, valid, xb, w->spk + b * cl, w->mv + b * cl);
                if (rc) return rc;
            }
            memset(xb + valid * n_in, 0, (cl - valid) * n_in * sizeof *xb);
        }
        rc = elm_state_forward(state, w->x, cl, w->y);
        if (rc) return rc;
        for (size_t b = 0; b < nb; b++) {
            const nio_stream *st = &w->streams[first + b];
            for (size_t t = 0; t < cl; t++) {
                size_t at = st->start + c0 + t;
                if (at < st->keep0 || at >= st->keep1) continue;
                const float *yt = w->y + (b * cl + t) * 2;
                if (!isfinite(yt[0]) || !isfinite(yt[1]))
                    return elm__fail(ELM_E_NONFINITE,
                                     "%s: the model's output at simulation %zu, %zu ms is "
                                     "(%g, %g)",
                                     fn, st->sim, at, (double)yt[0], (double)yt[1]);
                size_t k = st->sim * T + at;
                w->score[k] = 1.0f / (1.0f + expf(-yt[0]));
                w->vhat[k] = NIO_SOMA_UNSCALE * yt[1];
                w->spike[k] = w->spk[b * cl + t] != 0.0f;
                w->vraw[k] = w->mv[b * cl + t];
            }
        }
    }
    return ELM_OK;
}

static double nio_soma_target(float mv) {
    double v = (double)mv;
    return (v > NIO_SOMA_CAP ? NIO_SOMA_CAP : v) - NIO_SOMA_BIAS;
}

static int nio_evaluate(const elm_model *model, const elm__nio *f, elm_neuronio_mode mode,
                        nio_work *w, elm_neuronio_metrics *out, const char *fn) {
    size_t N = elm__nio_count(f), T = elm__nio_duration(f), n_in = elm__nio_n_in(f);
    size_t model_in = 0;
    int rc = elm_model_size(model, ELM_SIZE_INPUT, &model_in);
    if (rc) return rc;
    if (model_in != n_in)
        return elm__fail(ELM_E_SHAPE, "%s: the model reads %zu inputs, %s has %zu", fn, model_in,
                         elm__nio_path(f), n_in);
    if (N == 0) return elm__fail(ELM_E_INVALID, "%s: %s holds no simulation", fn, elm__nio_path(f));
    if (T <= NIO_IGNORE)
        return elm__fail(ELM_E_INVALID,
                         "%s: the simulations of %s last %zu ms, nothing is left after the "
                         "first %d ms that the protocol ignores",
                         fn, elm__nio_path(f), T, NIO_IGNORE);

    /* The official windows: k = 0 .. n_win - 1 start at k * (W - burn-in),
     * n_win = floor(2 + (T - W) / (W - burn-in)); window 0 keeps all its
     * steps, the others drop their burn-in, the last is cut at T (its
     * input zero-padded, which a causal model never sees). */
    size_t stride = NIO_WINDOW - NIO_BURN_IN;
    size_t per_sim = 1, len = T;
    if (mode == ELM_NEURONIO_WINDOWS) {
        per_sim = 2 + (T - NIO_WINDOW) / stride;
        len = NIO_WINDOW;
    }
    size_t n_streams;
    if (!elm__mul_ok(N, per_sim, &n_streams))
        return elm__fail(ELM_E_NOMEM, "%s: too many windows", fn);
    size_t chunk = len < NIO_CHUNK ? len : NIO_CHUNK;
    size_t batch = n_streams < NIO_BATCH ? n_streams : NIO_BATCH;
    w->streams = nio_alloc(n_streams, 1, sizeof *w->streams);
    w->x = nio_alloc(batch * chunk, n_in, sizeof *w->x);
    w->y = nio_alloc(batch * chunk, 2, sizeof *w->y);
    w->spk = nio_alloc(batch, chunk, sizeof *w->spk);
    w->mv = nio_alloc(batch, chunk, sizeof *w->mv);
    w->score = nio_alloc(N, T, sizeof *w->score);
    w->vhat = nio_alloc(N, T, sizeof *w->vhat);
    w->vraw = nio_alloc(N, T, sizeof *w->vraw);
    w->spike = nio_alloc(N, T, sizeof *w->spike);
    if (!w->streams || !w->x || !w->y || !w->spk || !w->mv || !w->score || !w->vhat ||
        !w->vraw || !w->spike)
        return elm__fail(ELM_E_NOMEM, "%s: out of memory for %zu simulations of %zu ms", fn, N,
                         T);
    for (size_t s = 0; s < N; s++)
        for (size_t k = 0; k < per_sim; k++) {
            nio_stream *st = &w->streams[s * per_sim + k];
            st->sim = s;
            st->start = k * stride;
            st->keep0 = k == 0 ? 0 : st->start + NIO_BURN_IN;
            st->keep1 = st->start + len < T ? st->start + len : T;
            if (mode == ELM_NEURONIO_CONTINUOUS) st->start = 0, st->keep0 = 0, st->keep1 = T;
        }
    size_t rem = n_streams % batch;
    rc = elm_state_create(model, batch, &w->state);
    if (!rc && rem) rc = elm_state_create(model, rem, &w->tail);
    if (rc) return rc;
    for (size_t first = 0; first < n_streams; first += batch) {
        size_t nb = n_streams - first < batch ? n_streams - first : batch;
        rc = nio_run_batch(f, w, nb == batch ? w->state : w->tail, first, nb, len, chunk, fn);
        if (rc) return rc;
    }

    /* The official compute_test_predictions z-scores the soma prediction
     * with the mean and deviation (ddof 0) of all of the file's steps,
     * excluded simulations and ignored first steps included, and gives it
     * the target's. */
    size_t NT = N * T;
    double m_src = 0.0, m_dst = 0.0, s_src = 0.0, s_dst = 0.0;
    for (size_t i = 0; i < NT; i++) m_src += w->vhat[i], m_dst += nio_soma_target(w->vraw[i]);
    m_src /= (double)NT;
    m_dst /= (double)NT;
    for (size_t i = 0; i < NT; i++) {
        double a = w->vhat[i] - m_src, b = nio_soma_target(w->vraw[i]) - m_dst;
        s_src += a * a;
        s_dst += b * b;
    }
    s_src = sqrt(s_src / (double)NT);
    s_dst = sqrt(s_dst / (double)NT);

    /* Simulations with at most 24 spikes (counted over all T ms), steps
     * from 500 ms on, pooled. */
    size_t kept = 0, n_spikes = 0, L = T - NIO_IGNORE;
    for (size_t s = 0; s < N; s++) {
        size_t count = 0;
        for (size_t t = 0; t < T; t++) count += w->spike[s * T + t];
        if (count <= NIO_MAX_SPIKES) kept++;
    }
    if (kept == 0)
        return elm__fail(ELM_E_INVALID,
                         "%s: every simulation of %s has more than %d output spikes; none is "
                         "evaluated",
                         fn, elm__nio_path(f), NIO_MAX_SPIKES);
    size_t n_eval = kept * L;
    w->pts = nio_alloc(n_eval, 1, sizeof *w->pts);
    w->vt = nio_alloc(n_eval, 1, sizeof *w->vt);
    w->vp = nio_alloc(n_eval, 1, sizeof *w->vp);
    w->curve = nio_alloc(n_eval + 1, 2, sizeof *w->curve);
    if (!w->pts || !w->vt || !w->vp || !w->curve)
        return elm__fail(ELM_E_NOMEM, "%s: out of memory for %zu steps", fn, n_eval);
    size_t i = 0;
    for (size_t s = 0; s < N; s++) {
        const uint8_t *spike = w->spike + s * T;
        size_t count = 0;
        for (size_t t = 0; t < T; t++) count += spike[t];
        if (count > NIO_MAX_SPIKES) continue;
        for (size_t t = NIO_IGNORE; t < T; t++, i++) {
            size_t k = s * T + t;
            w->pts[i].score = w->score[k];
            w->pts[i].spike = spike[t];
            n_spikes += spike[t];
            w->vt[i] = nio_soma_target(w->vraw[k]);
            /* a constant prediction has no z-score: it becomes the mean */
            double z = s_src > 0.0 ? ((double)w->vhat[k] - m_src) / s_src : 0.0;
            w->vp[i] = s_dst * z + m_dst;
        }
    }
    nio_metrics(n_eval, w->pts, w->vt, w->vp, w->curve, out);
    out->n_simulations = kept;
    out->n_spikes = n_spikes;
    return ELM_OK;
}

ELM_API int elm_neuronio_evaluate(const elm_model *model, const char *path, elm_neuronio_mode mode,
                                  elm_neuronio_metrics *out) {
    static const char fn[] = "elm_neuronio_evaluate";
    if (!model || !path || !out) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    if (mode != ELM_NEURONIO_WINDOWS && mode != ELM_NEURONIO_CONTINUOUS)
        return elm__fail(ELM_E_INVALID,
                         "%s: mode %d is neither ELM_NEURONIO_WINDOWS (0) nor "
                         "ELM_NEURONIO_CONTINUOUS (1)",
                         fn, (int)mode);
    size_t n_out = 0;
    int rc = elm_model_size(model, ELM_SIZE_OUTPUT, &n_out);
    if (rc) return rc;
    if (n_out != 2)
        return elm__fail(ELM_E_SHAPE,
                         "%s: a NeuronIO model has 2 outputs (spike logit, soma), this one "
                         "has %zu",
                         fn, n_out);
    elm__nio *f = NULL;
    rc = elm__nio_open(path, &f);
    if (rc) return rc;
    nio_work w = {0};
    elm_neuronio_metrics m = {0};
    rc = nio_evaluate(model, f, mode, &w, &m, fn);
    nio_work_free(&w);
    elm__nio_close(f);
    if (rc == ELM_OK) *out = m;
    return rc;
}
