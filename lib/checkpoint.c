/* Training checkpoints: a model file (CONF, ROUT, TENS, META) with the
 * optimizer state (OPTM), the trainer's options and progress (TRNR) and the
 * best epoch's parameters (BEST); see docs/file-format.md. Loading checks
 * everything first and then commits, so a failed load changes nothing. */
#include "format.h"
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRNR_VERSION 1

/* The named values of TRNR: where each lives in the trainer. */
typedef enum { OPTION, METRIC, PROGRESS } slot_kind;
typedef struct slot {
    const char *name;
    slot_kind kind;
    int key; /* option or metric key, or a progress field below */
} slot;

enum { P_BATCH, P_LOSS_SUM, P_LOSS_STEPS, P_BEST_SCORE, P_SINCE_BEST, P_FINISHED, P_BATCH_SIZE,
       P_LOSS_KIND, P_BURN_IN, P_COUNT };

static const slot SLOTS[] = {
    {"dropout", OPTION, ELM_TRAIN_DROPOUT},
    {"eval_dropout", OPTION, ELM_TRAIN_EVAL_DROPOUT},
    {"seed", OPTION, ELM_TRAIN_SEED},
    {"epochs", OPTION, ELM_TRAIN_EPOCHS},
    {"patience", OPTION, ELM_TRAIN_PATIENCE},
    {"max_batches", OPTION, ELM_TRAIN_MAX_BATCHES},
    {"nonfinite", OPTION, ELM_TRAIN_NONFINITE},
    {"select", OPTION, ELM_TRAIN_SELECT},
    {"train_loss", METRIC, ELM_METRIC_TRAIN_LOSS},
    {"val_loss", METRIC, ELM_METRIC_VAL_LOSS},
    {"val_accuracy", METRIC, ELM_METRIC_VAL_ACCURACY},
    {"val_auc", METRIC, ELM_METRIC_VAL_AUC},
    {"val_rmse", METRIC, ELM_METRIC_VAL_RMSE},
    {"epoch", METRIC, ELM_METRIC_EPOCH},
    {"best_epoch", METRIC, ELM_METRIC_BEST_EPOCH},
    {"best", METRIC, ELM_METRIC_BEST},
    {"skipped", METRIC, ELM_METRIC_SKIPPED},
    {"last_loss", METRIC, ELM_METRIC_LAST_LOSS},
    {"batch", PROGRESS, P_BATCH},
    {"epoch_loss_sum", PROGRESS, P_LOSS_SUM},
    {"epoch_loss_steps", PROGRESS, P_LOSS_STEPS},
    {"best_score", PROGRESS, P_BEST_SCORE},
    {"since_best", PROGRESS, P_SINCE_BEST},
    {"finished", PROGRESS, P_FINISHED},
    {"batch_size", PROGRESS, P_BATCH_SIZE},
    {"loss_kind", PROGRESS, P_LOSS_KIND},
    {"burn_in", PROGRESS, P_BURN_IN},
};
#define N_SLOTS (sizeof SLOTS / sizeof *SLOTS)

/* What TRNR restores: a trainer's options, metrics and run position. */
typedef struct progress {
    double opt_v[N_OPTIONS];
    double metric[N_METRICS];
    elm_fit fit;
    elm_rng rng;
    bool rng_seeded;
} progress;

static double progress_value(const elm_trainer *tr, int key) {
    const elm_fit *f = &tr->fit;
    switch (key) {
    case P_BATCH: return (double)f->batch;
    case P_LOSS_SUM: return f->loss_sum;
    case P_LOSS_STEPS: return (double)f->loss_steps;
    case P_BEST_SCORE: return f->best_score;
    case P_SINCE_BEST: return (double)f->since_best;
    case P_FINISHED: return f->finished;
    case P_BATCH_SIZE: return (double)tr->B;
    case P_LOSS_KIND: return elm_loss_get_kind(tr->loss);
    default: return (double)elm__loss_burn_in(tr->loss);
    }
}

static void write_trnr(elm_writer *w, const elm_trainer *tr) {
    size_t s = elm__w_begin(w, "TRNR", 0);
    elm__w_u32(w, TRNR_VERSION);
    elm__w_u32(w, 0);
    for (int i = 0; i < 4; i++) elm__w_u64(w, tr->rng.s[i]);
    elm__w_u64(w, tr->rng_seeded);
    elm__w_u32(w, (uint32_t)N_SLOTS);
    elm__w_u32(w, 0);
    for (size_t i = 0; i < N_SLOTS; i++) {
        const slot *sl = &SLOTS[i];
        double v = sl->kind == OPTION   ? tr->opt_v[sl->key]
                   : sl->kind == METRIC ? tr->metric[sl->key]
                                        : progress_value(tr, sl->key);
        elm__w_name(w, sl->name, ELM_NAME_BYTES);
        elm__w_f64(w, v);
    }
    elm__w_end(w, s);
}

static void write_checkpoint(elm_writer *w, const void *obj) {
    const elm_trainer *tr = obj;
    elm__w_header(w);
    elm__w_model(w, tr->model);
    size_t need = 0;
    elm_optimizer_save_state(tr->opt, NULL, 0, &need);
    size_t s = elm__w_begin(w, "OPTM", 0);
    if (w->buf) elm_optimizer_save_state(tr->opt, w->buf + w->n, need, &need);
    w->n += need;
    elm__w_end(w, s);
    write_trnr(w, tr);
    if (tr->metric[ELM_METRIC_BEST_EPOCH] > 0)
        elm__w_tensors(w, "BEST", 0, tr->model, tr->best);
    elm__w_finish(w);
}

ELM_API int elm_trainer_save_buffer(const elm_trainer *tr, void *dst, size_t capacity,
                                    size_t *size) {
    if (!tr || !size) return elm__fail(ELM_E_NULL, "elm_trainer_save_buffer: NULL argument");
    return elm__serialise(write_checkpoint, tr, dst, capacity, size, "elm_trainer_save_buffer");
}

ELM_API int elm_trainer_save(const elm_trainer *tr, const char *path) {
    if (!tr || !path) return elm__fail(ELM_E_NULL, "elm_trainer_save: NULL argument");
    return elm__save_path(write_checkpoint, tr, path, "elm_trainer_save");
}

int elm__trainer_autosave(const elm_trainer *tr) {
    return tr->ckpt_path ? elm_trainer_save(tr, tr->ckpt_path) : ELM_OK;
}

/* ---- loading ----------------------------------------------------------- */

static bool whole(double v) { return v >= 0 && v <= 9007199254740992.0 && v == floor(v); }

static int read_trnr(const elm_section *s, const elm_trainer *tr, const char *fn, progress *p) {
    elm_reader r = {s->p, s->n, 0};
    if (!elm__r_left(&r, 8 + 40 + 8))
        return elm__fail(ELM_E_FORMAT, "%s: TRNR is too short", fn);
    uint32_t version = elm__r_u32(&r);
    elm__r_u32(&r);
    if (version != TRNR_VERSION)
        return elm__fail(ELM_E_VERSION, "%s: TRNR version %u needs a newer libelm", fn, version);
    for (int i = 0; i < 4; i++) p->rng.s[i] = elm__r_u64(&r);
    uint64_t seeded = elm__r_u64(&r);
    uint32_t count = elm__r_u32(&r);
    elm__r_u32(&r);
    if (seeded > 1 || (uint64_t)count * 40 != r.n - r.pos)
        return elm__fail(ELM_E_FORMAT, "%s: TRNR is malformed", fn);
    p->rng_seeded = seeded;
    double pv[P_COUNT];
    bool seen[N_SLOTS] = {false};
    for (uint32_t i = 0; i < count; i++) {
        const char *name;
        if (!elm__r_name(&r, ELM_NAME_BYTES, &name))
            return elm__fail(ELM_E_FORMAT, "%s: TRNR entry %u has an unterminated name", fn, i);
        double v = elm__r_f64(&r);
        size_t k = 0;
        while (k < N_SLOTS && strcmp(SLOTS[k].name, name) != 0) k++;
        if (k == N_SLOTS)
            return elm__fail(ELM_E_VERSION, "%s: TRNR: unknown value '%s' (written by a newer "
                                            "libelm?)", fn, name);
        if (seen[k]) return elm__fail(ELM_E_FORMAT, "%s: TRNR: '%s' appears twice", fn, name);
        seen[k] = true;
        const slot *sl = &SLOTS[k];
        if (sl->kind == OPTION) {
            if (elm__trainer_check_option(sl->key, v, fn)) return ELM_E_FORMAT;
            p->opt_v[sl->key] = v;
        } else if (sl->kind == METRIC) {
            p->metric[sl->key] = v;
        } else {
            pv[sl->key] = v;
        }
    }
    for (size_t k = 0; k < N_SLOTS; k++)
        if (!seen[k]) return elm__fail(ELM_E_FORMAT, "%s: TRNR lacks '%s'", fn, SLOTS[k].name);
    if (!whole(pv[P_BATCH]) || !whole(pv[P_LOSS_STEPS]) || !whole(pv[P_SINCE_BEST]) ||
        !(pv[P_FINISHED] == 0 || pv[P_FINISHED] == 1) || !whole(p->metric[ELM_METRIC_EPOCH]) ||
        !whole(p->metric[ELM_METRIC_BEST_EPOCH]) || !whole(p->metric[ELM_METRIC_SKIPPED]) ||
        isnan(pv[P_LOSS_SUM]) || isnan(pv[P_BEST_SCORE]))
        return elm__fail(ELM_E_FORMAT, "%s: TRNR holds impossible progress values", fn);
    if (pv[P_BATCH_SIZE] != (double)tr->B)
        return elm__fail(ELM_E_CONFIG, "%s: the checkpoint trained batches of %g, this trainer "
                                       "takes %zu", fn, pv[P_BATCH_SIZE], tr->B);
    if (pv[P_LOSS_KIND] != elm_loss_get_kind(tr->loss) ||
        pv[P_BURN_IN] != (double)elm__loss_burn_in(tr->loss))
        return elm__fail(ELM_E_CONFIG, "%s: the checkpoint used loss %s with burn-in %g, this "
                                       "trainer %s with %zu", fn,
                         elm_loss_kind_name((elm_loss_kind)pv[P_LOSS_KIND])
                             ? elm_loss_kind_name((elm_loss_kind)pv[P_LOSS_KIND]) : "?",
                         pv[P_BURN_IN], elm_loss_kind_name(elm_loss_get_kind(tr->loss)),
                         elm__loss_burn_in(tr->loss));
    p->fit.batch = (uint64_t)pv[P_BATCH];
    p->fit.loss_sum = pv[P_LOSS_SUM];
    p->fit.loss_steps = (uint64_t)pv[P_LOSS_STEPS];
    p->fit.best_score = pv[P_BEST_SCORE];
    p->fit.since_best = (uint64_t)pv[P_SINCE_BEST];
    p->fit.finished = pv[P_FINISHED] != 0;
    return ELM_OK;
}

static int same_config(const elm_model *a, const elm_model *b, const char *fn) {
    for (int k = 1; k <= ELM_PARAM_LAST; k++)
        if (a->cfg.v[k] != b->cfg.v[k])
            return elm__fail(ELM_E_CONFIG, "%s: the checkpoint's %s is %g, the trainer's model "
                                           "has %g", fn, elm_param_name((elm_param)k),
                             a->cfg.v[k], b->cfg.v[k]);
    return ELM_OK;
}

static int load_checkpoint(elm_trainer *tr, const void *src, size_t size, const char *fn) {
    elm_file f;
    int rc = elm__file_parse(src, size, fn, &f);
    if (rc) return rc;
    const elm_section *optm = elm__file_find(&f, "OPTM"), *trnr = elm__file_find(&f, "TRNR");
    const elm_section *best = elm__file_find(&f, "BEST");
    if (!optm || !trnr)
        return elm__fail(ELM_E_FORMAT, "%s: a model file, not a training checkpoint (no %s "
                                       "section)", fn, optm ? "TRNR" : "OPTM");
    elm_model *m;
    if ((rc = elm__file_model(&f, fn, &m))) return rc;
    progress p;
    memset(&p, 0, sizeof p);
    float *best_params = malloc(tr->n_params * sizeof(float));
    if (!best_params) rc = elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    if (!rc) rc = same_config(m, tr->model, fn);
    int kind = elm__optimizer_state_kind(optm->p, optm->n);
    if (!rc && kind != (int)elm__optimizer_kind(tr->opt))
        rc = elm__fail(ELM_E_CONFIG, "%s: the checkpoint holds a '%s' optimizer, the trainer's "
                                     "is '%s'", fn,
                       elm_optimizer_kind_name((elm_optimizer_kind)kind)
                           ? elm_optimizer_kind_name((elm_optimizer_kind)kind) : "unknown",
                       elm_optimizer_kind_name(elm__optimizer_kind(tr->opt)));
    if (!rc) rc = read_trnr(trnr, tr, fn, &p);
    if (!rc && (p.metric[ELM_METRIC_BEST_EPOCH] > 0) != (best != NULL))
        rc = elm__fail(ELM_E_FORMAT, "%s: %s", fn, best ? "a BEST section without a best epoch"
                                                        : "a best epoch without a BEST section");
    if (!rc && best) rc = elm__file_tensors(best, m, fn, best_params);
    /* The optimizer validates its whole state before it commits: the last
     * step that can fail. */
    if (!rc) rc = elm_optimizer_load_state(tr->opt, optm->p, optm->n);
    if (rc) {
        free(best_params);
        elm_model_free(m);
        return rc;
    }
    elm_model *dst = tr->model;
    memcpy(dst->params, m->params, tr->n_params * sizeof(float));
    memcpy(dst->route_idx, m->route_idx, (size_t)m->n_s * sizeof *m->route_idx);
    memcpy(dst->route_mask, m->route_mask, (size_t)m->n_s);
    dst->routing_dirty = true;
    struct elm_meta *meta = dst->meta; /* swap, so that nothing allocates */
    size_t n_meta = dst->n_meta;
    dst->meta = m->meta;
    dst->n_meta = m->n_meta;
    m->meta = meta;
    m->n_meta = n_meta;
    memcpy(tr->best, best ? best_params : dst->params, tr->n_params * sizeof(float));
    /* The thread count is how this process runs, not training state: TRNR
     * has no slot for it (0.4 checkpoints load unchanged) and a load keeps
     * the trainer's own. */
    double threads = tr->opt_v[ELM_TRAIN_THREADS];
    memcpy(tr->opt_v, p.opt_v, sizeof p.opt_v);
    tr->opt_v[ELM_TRAIN_THREADS] = threads;
    memcpy(tr->metric, p.metric, sizeof p.metric);
    tr->fit = p.fit;
    tr->rng = p.rng;
    tr->rng_seeded = p.rng_seeded;
    free(best_params);
    elm_model_free(m);
    return elm__model_prepare(dst);
}

ELM_API int elm_trainer_load_buffer(elm_trainer *tr, const void *src, size_t size) {
    if (!tr || !src) return elm__fail(ELM_E_NULL, "elm_trainer_load_buffer: NULL argument");
    return load_checkpoint(tr, src, size, "elm_trainer_load_buffer");
}

ELM_API int elm_trainer_load(elm_trainer *tr, const char *path) {
    if (!tr || !path) return elm__fail(ELM_E_NULL, "elm_trainer_load: NULL argument");
    char fn[300];
    snprintf(fn, sizeof fn, "elm_trainer_load: '%s'", path);
    void *buf;
    size_t n;
    int rc = elm__read_file(path, ELM_FILE_LIMIT, &buf, &n, fn);
    if (rc) return rc;
    rc = load_checkpoint(tr, buf, n, fn);
    free(buf);
    return rc;
}
