/* The trainer's state, shared by trainer.c and checkpoint.c. */
#ifndef ELM_TRAINER_H
#define ELM_TRAINER_H

#include "elm_internal.h"

/* Where fit() is in a run: what a checkpoint needs to continue it. */
typedef struct elm_fit {
    uint64_t batch;      /* batches done in the current epoch */
    double loss_sum;     /* finite step losses of the current epoch */
    uint64_t loss_steps;
    double best_score;   /* selection metric, higher is better; -Inf before any */
    uint64_t since_best; /* epochs without improvement */
    bool finished;       /* stopped early by patience */
} elm_fit;

#define N_OPTIONS (ELM_TRAIN_THREADS + 1)
#define N_METRICS (ELM_METRIC_BATCH + 1)

struct elm_trainer {
    elm_model *model;
    elm_optimizer *opt;
    const elm_loss *loss;
    elm_tape *tape;
    elm_state *eval; /* evaluation forwards need no tape */
    size_t B, T_max, n_in, n_out, n_params;
    double opt_v[N_OPTIONS];
    double metric[N_METRICS];
    elm_rng rng; /* dropout */
    bool rng_seeded;
    float *xd;   /* (B, T_max, n_in) input after dropout */
    /* event input after dropout (elm_trainer_step_events): offsets rebased
     * to 0 and the kept values; grown to the largest batch seen */
    int64_t *ev_off; /* (B T_max + 1) */
    float *ev_val;
    size_t ev_cap;
    float *y;    /* (B, T_max, n_out) */
    float *dy;   /* (B, T_max, n_out) */
    float *grad; /* (n_params) */
    float *best; /* (n_params) parameters of the best epoch */
    /* batch buffers for datasets, sized for the largest seen */
    float *bx, *bt;
    int32_t *bl;
    int64_t *blen;
    size_t cap_x, cap_t, cap_l;
    /* evaluation scores for the AUC */
    float *sc, *tr;
    size_t n_sc, cap_sc;
    elm_fit fit;      /* the run's position, saved in checkpoints */
    char *ckpt_path;  /* fit() saves here when set */
    uint64_t ckpt_every;
};


/* trainer.c: validate an option value as elm_trainer_set does. */
int elm__trainer_check_option(int key, double value, const char *fn);
/* checkpoint.c: fit()'s automatic save (no-op without a path). */
int elm__trainer_autosave(const elm_trainer *tr);

#endif
