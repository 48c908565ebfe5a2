/* The training and evaluation loop: dropout, tape forward, loss, backward,
 * optimizer step; epochs over a dataset with validation, best-epoch
 * selection, early stopping and a progress callback. */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    double lo, hi, def;
    bool integral;
} option_info[N_OPTIONS] = {
    [ELM_TRAIN_DROPOUT] = {0, 0.999999, 0, false},
    [ELM_TRAIN_EVAL_DROPOUT] = {0, 1, 0, true},
    [ELM_TRAIN_SEED] = {0, 9007199254740992.0, 0, true},
    [ELM_TRAIN_EPOCHS] = {1, 1e9, 1, true},
    [ELM_TRAIN_PATIENCE] = {0, 1e9, 0, true},
    [ELM_TRAIN_MAX_BATCHES] = {0, 1e15, 0, true},
    [ELM_TRAIN_NONFINITE] = {ELM_NONFINITE_STOP, ELM_NONFINITE_SKIP, ELM_NONFINITE_STOP, true},
    [ELM_TRAIN_SELECT] = {ELM_METRIC_VAL_LOSS, ELM_METRIC_VAL_AUC, ELM_METRIC_VAL_LOSS, true},
    /* at most B: elm_trainer_set checks it against the tape */
    [ELM_TRAIN_THREADS] = {1, 1 << 24, 1, true},
};

ELM_API int elm_trainer_create(elm_model *model, elm_optimizer *opt, const elm_loss *loss,
                               size_t B, size_t T_max, unsigned tape_flags, elm_trainer **out) {
    if (!model || !opt || !loss || !out)
        return elm__fail(ELM_E_NULL, "elm_trainer_create: NULL argument");
    if (elm__optimizer_model(opt) != model)
        return elm__fail(ELM_E_INVALID, "elm_trainer_create: the optimizer belongs to another model");
    size_t n_out = (size_t)model->n_out;
    if (elm__loss_outputs(loss) != n_out)
        return elm__fail(ELM_E_SHAPE, "elm_trainer_create: the loss expects %zu outputs, the "
                                      "model has %zu", elm__loss_outputs(loss), n_out);
    elm_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return elm__fail(ELM_E_NOMEM, "elm_trainer_create: out of memory");
    int rc = elm_tape_create(model, B, T_max, tape_flags, &tr->tape);
    if (rc == ELM_OK) rc = elm_state_create(model, B, &tr->eval);
    if (rc != ELM_OK) {
        elm_tape_free(tr->tape);
        free(tr);
        return rc; /* the message names the problem */
    }
    tr->model = model;
    tr->opt = opt;
    tr->loss = loss;
    tr->B = B;
    tr->T_max = T_max;
    tr->n_in = (size_t)model->n_in;
    tr->n_out = n_out;
    tr->n_params = model->n_params;
    size_t nx = B * T_max * tr->n_in, ny = B * T_max * n_out; /* the tape checked these */
    tr->xd = malloc(nx * sizeof(float));
    tr->y = malloc(ny * sizeof(float));
    tr->dy = malloc(ny * sizeof(float));
    tr->grad = malloc(tr->n_params * sizeof(float));
    tr->best = malloc(tr->n_params * sizeof(float));
    if (!tr->xd || !tr->y || !tr->dy || !tr->grad || !tr->best) {
        elm_trainer_free(tr);
        return elm__fail(ELM_E_NOMEM, "elm_trainer_create: out of memory");
    }
    for (int k = 1; k < N_OPTIONS; k++) tr->opt_v[k] = option_info[k].def;
    memcpy(tr->best, model->params, tr->n_params * sizeof(float));
    tr->fit.best_score = -INFINITY;
    *out = tr;
    return ELM_OK;
}

ELM_API void elm_trainer_free(elm_trainer *tr) {
    if (!tr) return;
    elm_tape_free(tr->tape);
    elm_state_free(tr->eval);
    free(tr->xd); free(tr->y); free(tr->dy); free(tr->grad); free(tr->best);
    free(tr->ev_off); free(tr->ev_val);
    free(tr->bx); free(tr->bt); free(tr->bl); free(tr->blen);
    free(tr->sc); free(tr->tr);
    free(tr->ckpt_path);
    free(tr);
}

int elm__trainer_check_option(int key, double value, const char *fn) {
    if (key < 1 || key >= N_OPTIONS)
        return elm__fail(ELM_E_UNKNOWN_NAME, "%s: unknown option %d", fn, key);
    if (!(value >= option_info[key].lo && value <= option_info[key].hi) ||
        (option_info[key].integral && value != floor(value)))
        return elm__fail(ELM_E_INVALID, "%s: option %d = %g outside [%g, %g]%s", fn, key, value,
                         option_info[key].lo, option_info[key].hi,
                         option_info[key].integral ? " or not an integer" : "");
    if (key == ELM_TRAIN_SELECT && value == ELM_METRIC_VAL_RMSE)
        return elm__fail(ELM_E_INVALID, "%s: select the best epoch by ELM_METRIC_VAL_LOSS, "
                                        "_ACCURACY or _AUC", fn);
    return ELM_OK;
}

ELM_API int elm_trainer_set(elm_trainer *tr, elm_train_option key, double value) {
    if (!tr) return elm__fail(ELM_E_NULL, "elm_trainer_set: trainer is NULL");
    int rc = elm__trainer_check_option((int)key, value, "elm_trainer_set");
    if (rc) return rc;
    if (key == ELM_TRAIN_THREADS) {
        /* tape and evaluation state together, or neither */
        int n = (int)value, old = (int)tr->opt_v[key];
        rc = elm_tape_set_threads(tr->tape, n);
        if (rc) return rc;
        rc = elm_state_set_threads(tr->eval, n);
        if (rc) {
            /* back to the old count; the state's error is the one reported */
            elm_tape_set_threads(tr->tape, old);
            return rc;
        }
    }
    tr->opt_v[key] = value;
    if (key == ELM_TRAIN_SEED) tr->rng_seeded = false;
    return ELM_OK;
}

ELM_API int elm_trainer_get(const elm_trainer *tr, elm_train_option key, double *value) {
    if (!tr || !value) return elm__fail(ELM_E_NULL, "elm_trainer_get: NULL argument");
    if ((int)key < 1 || (int)key >= N_OPTIONS)
        return elm__fail(ELM_E_UNKNOWN_NAME, "elm_trainer_get: unknown option %d", (int)key);
    *value = tr->opt_v[key];
    return ELM_OK;
}

ELM_API int elm_trainer_metric(const elm_trainer *tr, elm_metric key, double *value) {
    if (!tr || !value) return elm__fail(ELM_E_NULL, "elm_trainer_metric: NULL argument");
    if ((int)key < 1 || (int)key >= N_METRICS)
        return elm__fail(ELM_E_UNKNOWN_NAME, "elm_trainer_metric: unknown metric %d", (int)key);
    *value = key == ELM_METRIC_LR ? elm_optimizer_lr(tr->opt)
             : key == ELM_METRIC_STEP ? (double)elm_optimizer_steps(tr->opt)
             : key == ELM_METRIC_BATCH ? (double)tr->fit.batch
                                      : tr->metric[key];
    return ELM_OK;
}

ELM_API int elm_trainer_shape(const elm_trainer *tr, size_t *B, size_t *T_max) {
    if (!tr || !B || !T_max) return elm__fail(ELM_E_NULL, "elm_trainer_shape: NULL argument");
    *B = tr->B;
    *T_max = tr->T_max;
    return ELM_OK;
}

/* The dropout generator, seeded at its first use; p as a 53-bit
 * threshold: an element is dropped iff a uniform draw < p. */
static uint64_t dropout_threshold(elm_trainer *tr, double p) {
    if (!tr->rng_seeded) {
        elm__rng_seed(&tr->rng, (uint64_t)tr->opt_v[ELM_TRAIN_SEED] ^ 0x64726F706F7574ull);
        tr->rng_seeded = true;
    }
    return (uint64_t)(p * 9007199254740992.0);
}

/* x with each non-zero element zeroed with probability p (zeros stay zero:
 * drawing only for non-zeros keeps sparse input cheap, and the stream is
 * still a function of the seed and the data). */
static const float *dropout(elm_trainer *tr, const float *x, size_t n, double p) {
    if (p <= 0) return x;
    uint64_t thr = dropout_threshold(tr, p);
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (v != 0.0f && (elm__rng_next(&tr->rng) >> 11) < thr) v = 0.0f;
        tr->xd[i] = v;
    }
    return tr->xd;
}

/* The same for checked events of `rows` rows: one draw per non-zero event
 * in row order, then channel order as given, which for increasing channels
 * is the order of the dense x, so both paths drop the same inputs. The
 * result is in tr->ev_off / tr->ev_val (offsets rebased to 0). */
static int dropout_events(elm_trainer *tr, elm_input *in, size_t rows, double p) {
    if (p <= 0) return ELM_OK;
    int64_t base = in->off[0];
    size_t n = (size_t)(in->off[rows] - base);
    if (!tr->ev_off && !(tr->ev_off = malloc((tr->B * tr->T_max + 1) * sizeof *tr->ev_off)))
        return elm__fail(ELM_E_NOMEM, "elm_trainer_step_events: out of memory");
    if (n > tr->ev_cap) {
        float *v = realloc(tr->ev_val, n * sizeof *v);
        if (!v) return elm__fail(ELM_E_NOMEM, "elm_trainer_step_events: out of memory");
        tr->ev_val = v;
        tr->ev_cap = n;
    }
    uint64_t thr = dropout_threshold(tr, p);
    for (size_t r = 0; r <= rows; r++) tr->ev_off[r] = in->off[r] - base;
    for (size_t k = 0; k < n; k++) {
        float v = in->val ? in->val[(size_t)base + k] : 1.0f;
        if (v != 0.0f && (elm__rng_next(&tr->rng) >> 11) < thr) v = 0.0f;
        tr->ev_val[k] = v;
    }
    in->off = tr->ev_off;
    in->ch += base;
    in->val = tr->ev_val;
    return ELM_OK;
}

/* One step from dense or checked event input. */
static int train_step(elm_trainer *tr, elm_input in, size_t T, const float *target,
                      const int32_t *labels, const int64_t *lengths, double *loss) {
    uint64_t step = elm_optimizer_steps(tr->opt) + 1;
    double p = tr->opt_v[ELM_TRAIN_DROPOUT];
    int rc;
    if (in.x) {
        rc = elm_tape_forward(tr->tape, dropout(tr, in.x, tr->B * T * tr->n_in, p), T, tr->y);
    } else {
        rc = dropout_events(tr, &in, tr->B * T, p);
        if (!rc) rc = elm_tape_forward_events(tr->tape, T, in.off, in.ch, in.val, tr->y);
    }
    if (rc) return rc;
    double L;
    rc = elm_loss_compute(tr->loss, tr->y, tr->B, T, target, labels, lengths, &L, tr->dy);
    if (rc == ELM_OK && !isfinite(L)) rc = ELM_E_NONFINITE;
    if (rc == ELM_OK) {
        memset(tr->grad, 0, tr->n_params * sizeof(float));
        rc = elm_tape_backward(tr->tape, NULL, tr->dy, tr->grad, NULL);
        if (rc == ELM_OK) rc = elm_optimizer_step(tr->opt, tr->grad, NULL);
    }
    if (rc == ELM_E_NONFINITE) {
        /* non-finite outputs, loss or gradients: the model is unchanged */
        if (tr->opt_v[ELM_TRAIN_NONFINITE] == ELM_NONFINITE_SKIP) {
            tr->metric[ELM_METRIC_SKIPPED] += 1;
            tr->metric[ELM_METRIC_LAST_LOSS] = NAN;
            if (loss) *loss = NAN;
            return ELM_OK;
        }
        char why[256]; /* elm__fail overwrites the message it would quote */
        snprintf(why, sizeof why, "%s", elm_last_error());
        return elm__fail(ELM_E_NONFINITE, "elm_trainer_step: training step %llu is not finite "
                                          "(%s); the model was not updated",
                         (unsigned long long)step, why);
    }
    if (rc) return rc;
    tr->metric[ELM_METRIC_LAST_LOSS] = L;
    if (loss) *loss = L;
    return ELM_OK;
}

static int step_shape(const elm_trainer *tr, size_t T, const char *fn) {
    if (T == 0 || T > tr->T_max)
        return elm__fail(ELM_E_SHAPE, "%s: T = %zu outside [1, T_max = %zu]", fn, T, tr->T_max);
    return ELM_OK;
}

ELM_API int elm_trainer_step(elm_trainer *tr, const float *x, size_t T, const float *target,
                             const int32_t *labels, const int64_t *lengths, double *loss) {
    if (!tr || !x) return elm__fail(ELM_E_NULL, "elm_trainer_step: NULL argument");
    int rc = step_shape(tr, T, "elm_trainer_step");
    if (rc) return rc;
    return train_step(tr, (elm_input){.x = x}, T, target, labels, lengths, loss);
}

ELM_API int elm_trainer_step_events(elm_trainer *tr, size_t T, const int64_t *offsets,
                                    const int32_t *channels, const float *values,
                                    const float *target, const int32_t *labels,
                                    const int64_t *lengths, double *loss) {
    static const char fn[] = "elm_trainer_step_events";
    if (!tr) return elm__fail(ELM_E_NULL, "%s: trainer is NULL", fn);
    int rc = step_shape(tr, T, fn);
    if (!rc) rc = elm__check_events(fn, tr->model, tr->B * T, T, offsets, channels, values);
    if (rc) return rc;
    return train_step(tr, (elm_input){.off = offsets, .ch = channels, .val = values}, T, target,
                      labels, lengths, loss);
}

/* Batch buffers for a dataset's shapes. */
static int batch_buffers(elm_trainer *tr, elm_dataset *ds, size_t *T, size_t *nt, size_t *nl) {
    size_t n_in;
    int rc = elm_dataset_size(ds, ELM_DATASET_STEPS, T);
    if (!rc) rc = elm_dataset_size(ds, ELM_DATASET_INPUTS, &n_in);
    if (!rc) rc = elm_dataset_size(ds, ELM_DATASET_TARGETS, nt);
    if (!rc) rc = elm_dataset_size(ds, ELM_DATASET_LABELS, nl);
    if (rc) return rc;
    if (n_in != tr->n_in)
        return elm__fail(ELM_E_SHAPE, "trainer: the dataset has %zu inputs, the model %zu", n_in,
                         tr->n_in);
    if (*T > tr->T_max)
        return elm__fail(ELM_E_SHAPE, "trainer: the dataset's %zu steps exceed T_max = %zu", *T,
                         tr->T_max);
    size_t need_x = tr->B * *T * n_in, need_t = tr->B * *T * *nt, need_l = tr->B * *nl;
    if (need_x > tr->cap_x) {
        float *p = realloc(tr->bx, need_x * sizeof *p);
        if (!p) return elm__fail(ELM_E_NOMEM, "trainer: out of memory");
        tr->bx = p;
        tr->cap_x = need_x;
    }
    if (need_t > tr->cap_t) {
        float *p = realloc(tr->bt, need_t * sizeof *p);
        if (!p) return elm__fail(ELM_E_NOMEM, "trainer: out of memory");
        tr->bt = p;
        tr->cap_t = need_t;
    }
    if (need_l > tr->cap_l) {
        int32_t *p = realloc(tr->bl, need_l * sizeof *p);
        if (!p) return elm__fail(ELM_E_NOMEM, "trainer: out of memory");
        tr->bl = p;
        tr->cap_l = need_l;
    }
    if (!tr->blen && !(tr->blen = malloc(tr->B * sizeof *tr->blen)))
        return elm__fail(ELM_E_NOMEM, "trainer: out of memory");
    return ELM_OK;
}

static int push_score(elm_trainer *tr, float score, float truth) {
    if (tr->n_sc == tr->cap_sc) {
        size_t cap = tr->cap_sc ? 2 * tr->cap_sc : 4096;
        float *a = realloc(tr->sc, cap * sizeof *a);
        if (a) tr->sc = a;
        float *b = a ? realloc(tr->tr, cap * sizeof *b) : NULL;
        if (!b) return elm__fail(ELM_E_NOMEM, "elm_trainer_evaluate: out of memory");
        tr->tr = b;
        tr->cap_sc = cap;
    }
    tr->sc[tr->n_sc] = score;
    tr->tr[tr->n_sc++] = truth;
    return ELM_OK;
}

ELM_API int elm_trainer_evaluate(elm_trainer *tr, elm_dataset *ds) {
    if (!tr || !ds) return elm__fail(ELM_E_NULL, "elm_trainer_evaluate: NULL argument");
    size_t T, nt, nl;
    int rc = batch_buffers(tr, ds, &T, &nt, &nl);
    if (rc) return rc;
    elm_loss_kind kind = elm_loss_get_kind(tr->loss);
    bool classify = kind == ELM_LOSS_CE_LAST || kind == ELM_LOSS_CE_ALL;
    size_t t0 = elm__loss_burn_in(tr->loss), B = tr->B, no = tr->n_out;
    rc = elm_dataset_start_epoch(ds, 0);
    if (rc) return rc;
    double loss_sum = 0, loss_w = 0, hits = 0, counted = 0, se = 0, n_se = 0;
    tr->n_sc = 0;
    for (;;) {
        size_t count;
        rc = elm_dataset_next(ds, B, tr->bx, nt ? tr->bt : NULL, nl ? tr->bl : NULL, tr->blen,
                              &count);
        if (rc) return rc;
        if (count == 0) break;
        const float *xin = tr->bx;
        if (tr->opt_v[ELM_TRAIN_EVAL_DROPOUT] != 0)
            xin = dropout(tr, tr->bx, B * T * tr->n_in, tr->opt_v[ELM_TRAIN_DROPOUT]);
        elm_state_reset(tr->eval, ELM_ALL_STREAMS);
        rc = elm_state_forward(tr->eval, xin, T, tr->y);
        if (rc) return rc;
        double L;
        rc = elm_loss_compute(tr->loss, tr->y, B, T, nt ? tr->bt : NULL, nl ? tr->bl : NULL,
                              tr->blen, &L, NULL);
        if (rc) return rc;
        /* batches weigh by their counted steps */
        double w = 0;
        for (size_t b = 0; b < B; b++) {
            size_t len = (size_t)tr->blen[b];
            w += kind == ELM_LOSS_CE_LAST ? (len > 0) : (len > t0 ? (double)(len - t0) : 0);
        }
        loss_sum += L * w;
        loss_w += w;
        if (classify) {
            double acc;
            rc = elm_metric_accuracy(tr->y, B, T, no, tr->bl, tr->blen, t0,
                                     kind == ELM_LOSS_CE_LAST, &acc);
            if (rc) return rc;
            hits += acc * w;
            counted += w;
        } else {
            for (size_t b = 0; b < B; b++)
                for (size_t t = t0; t < (size_t)tr->blen[b]; t++) {
                    const float *yr = tr->y + (b * T + t) * no, *tg = tr->bt + (b * T + t) * nt;
                    if (kind == ELM_LOSS_NEURONIO) {
                        if ((rc = push_score(tr, yr[0], tg[0]))) return rc;
                        double e = (yr[1] - tg[1]) / 0.1; /* mV */
                        se += e * e;
                        n_se += 1;
                    } else {
                        for (size_t o = 0; o < no; o++) se += (yr[o] - tg[o]) * (yr[o] - tg[o]);
                        n_se += (double)no;
                    }
                }
        }
    }
    if (loss_w == 0) return elm__fail(ELM_E_INVALID, "elm_trainer_evaluate: the dataset is empty");
    tr->metric[ELM_METRIC_VAL_LOSS] = loss_sum / loss_w;
    tr->metric[ELM_METRIC_VAL_ACCURACY] = classify && counted > 0 ? hits / counted : NAN;
    tr->metric[ELM_METRIC_VAL_RMSE] = n_se > 0 ? sqrt(se / n_se) : NAN;
    tr->metric[ELM_METRIC_VAL_AUC] = NAN;
    if (kind == ELM_LOSS_NEURONIO && tr->n_sc > 0) {
        double auc;
        if (elm_metric_roc_auc(tr->sc, tr->tr, tr->n_sc, &auc) == ELM_OK)
            tr->metric[ELM_METRIC_VAL_AUC] = auc; /* one class only: no AUC */
        elm__clear_error();
    }
    return ELM_OK;
}

static double selection(const elm_trainer *tr) {
    int key = (int)tr->opt_v[ELM_TRAIN_SELECT];
    double v = tr->metric[key];
    return key == ELM_METRIC_VAL_LOSS ? -v : v; /* higher is better */
}

/* Close an epoch: its training loss, validation, best epoch, patience. */
static int end_epoch(elm_trainer *tr, elm_dataset *val) {
    elm_fit *f = &tr->fit;
    uint64_t epoch = (uint64_t)tr->metric[ELM_METRIC_EPOCH] + 1;
    tr->metric[ELM_METRIC_TRAIN_LOSS] = f->loss_steps ? f->loss_sum / (double)f->loss_steps : NAN;
    tr->metric[ELM_METRIC_EPOCH] = (double)epoch;
    f->batch = 0;
    f->loss_sum = 0;
    f->loss_steps = 0;
    int rc;
    if (val && (rc = elm_trainer_evaluate(tr, val))) return rc;
    double s = val ? selection(tr) : (double)epoch;
    if (s > f->best_score || (val && f->best_score == -INFINITY)) {
        f->best_score = s;
        f->since_best = 0;
        tr->metric[ELM_METRIC_BEST_EPOCH] = (double)epoch;
        tr->metric[ELM_METRIC_BEST] = val ? tr->metric[(int)tr->opt_v[ELM_TRAIN_SELECT]] : NAN;
        memcpy(tr->best, tr->model->params, tr->n_params * sizeof(float));
    } else {
        f->since_best++;
    }
    double patience = tr->opt_v[ELM_TRAIN_PATIENCE];
    if (patience > 0 && (double)f->since_best >= patience) f->finished = true;
    return ELM_OK;
}

/* Batches of the current epoch already trained (a resumed run) are read
 * and dropped, so that the order stays that of the uninterrupted run. */
static int skip_batches(elm_trainer *tr, elm_dataset *ds, size_t nt, size_t nl) {
    for (uint64_t i = 0; i < tr->fit.batch; i++) {
        size_t count;
        int rc = elm_dataset_next(ds, tr->B, tr->bx, nt ? tr->bt : NULL, nl ? tr->bl : NULL,
                                  tr->blen, &count);
        if (rc) return rc;
        if (count == 0)
            return elm__fail(ELM_E_INVALID, "elm_trainer_fit: the run stopped after batch %llu "
                                            "of this epoch, but the dataset has only %llu",
                             (unsigned long long)tr->fit.batch, (unsigned long long)i);
    }
    return ELM_OK;
}

ELM_API int elm_trainer_fit(elm_trainer *tr, elm_dataset *train, elm_dataset *val,
                            elm_progress_fn cb, void *user) {
    if (!tr || !train) return elm__fail(ELM_E_NULL, "elm_trainer_fit: NULL argument");
    size_t T, nt, nl;
    int rc = batch_buffers(tr, train, &T, &nt, &nl);
    if (rc) return rc;
    if (val) {
        size_t vT, vnt, vnl;
        if ((rc = batch_buffers(tr, val, &vT, &vnt, &vnl))) return rc;
    }
    elm_fit *f = &tr->fit;
    uint64_t max_batches = (uint64_t)tr->opt_v[ELM_TRAIN_MAX_BATCHES];
    while (!f->finished && tr->metric[ELM_METRIC_EPOCH] < tr->opt_v[ELM_TRAIN_EPOCHS]) {
        uint64_t epoch = (uint64_t)tr->metric[ELM_METRIC_EPOCH];
        if ((rc = elm_dataset_start_epoch(train, epoch))) return rc;
        if ((rc = skip_batches(tr, train, nt, nl))) return rc;
        while (!max_batches || f->batch < max_batches) {
            size_t count;
            rc = elm_dataset_next(train, tr->B, tr->bx, nt ? tr->bt : NULL, nl ? tr->bl : NULL,
                                  tr->blen, &count);
            if (rc) return rc;
            if (count == 0) break;
            double L;
            rc = elm_trainer_step(tr, tr->bx, T, nt ? tr->bt : NULL, nl ? tr->bl : NULL,
                                  tr->blen, &L);
            if (rc) return rc;
            f->batch++;
            if (isfinite(L)) {
                f->loss_sum += L;
                f->loss_steps++;
            }
            bool stop = cb && cb(user, tr, ELM_EVENT_STEP);
            uint64_t step = elm_optimizer_steps(tr->opt);
            if (stop || (tr->ckpt_every && step % tr->ckpt_every == 0))
                if ((rc = elm__trainer_autosave(tr))) return rc;
            if (stop) return ELM_OK; /* interrupted: fit() again resumes here */
        }
        if ((rc = end_epoch(tr, val))) return rc;
        if ((rc = elm__trainer_autosave(tr))) return rc;
        if (cb && cb(user, tr, ELM_EVENT_EPOCH)) return ELM_OK;
    }
    if (tr->metric[ELM_METRIC_BEST_EPOCH] > 0) {
        memcpy(tr->model->params, tr->best, tr->n_params * sizeof(float));
        if ((rc = elm__model_prepare(tr->model))) return rc;
    }
    return ELM_OK;
}

ELM_API int elm_trainer_set_checkpoint(elm_trainer *tr, const char *path, uint64_t every) {
    if (!tr) return elm__fail(ELM_E_NULL, "elm_trainer_set_checkpoint: trainer is NULL");
    char *copy = NULL;
    if (path) {
        if (!*path) return elm__fail(ELM_E_INVALID, "elm_trainer_set_checkpoint: empty path");
        if (!(copy = strdup(path)))
            return elm__fail(ELM_E_NOMEM, "elm_trainer_set_checkpoint: out of memory");
    }
    free(tr->ckpt_path);
    tr->ckpt_path = copy;
    tr->ckpt_every = path ? every : 0;
    return ELM_OK;
}
