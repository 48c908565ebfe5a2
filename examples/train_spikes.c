/* Training from spikes: a small ELM learns which of two input populations
 * fired more over a trial, from batches given as event lists, never as
 * dense (B, T, n_in) arrays. This is how data that already are spikes (a
 * simulator's output, an event camera, SHD-like recordings) go in.
 *
 *   train_spikes [--steps N] [--seed S] [--quick]
 *
 * Each trial has T = 100 steps of 1 ms and 40 input channels: channels
 * 0-19 fire at rate r_a, 20-39 at r_b, one of the two at 3 % per step and
 * the other at 2 %; the label says which population was faster. A batch is
 * B trials in CSR form: row r = b T + t lists the channels that spiked in
 * trial b at step t (offsets (B T + 1), channels; no values, so every event
 * is 1). elm_trainer_step_events trains on it exactly as elm_trainer_step
 * would on the dense batch.
 *
 * Build against an installed libelm with:
 *   cc train_spikes.c $(pkg-config --cflags --libs elm) */
#include <elm.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_IN = 40, T = 100, B = 16 };

#define CHECK(call)                                                                 \
    do {                                                                            \
        int rc_ = (call);                                                           \
        if (rc_ != ELM_OK) {                                                        \
            fprintf(stderr, "%s failed: %s (%s)\n", #call, elm_strerror(rc_),       \
                    elm_last_error());                                              \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

static uint64_t rng_state;
static double uniform(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* One batch of B trials as events; labels (B) get 0 when population A
 * fired faster, 1 for B. Channels come in increasing order per row.
 * Returns the number of events. */
static size_t make_batch(int64_t *off, int32_t *ch, int32_t *labels) {
    size_t n = 0;
    for (int b = 0; b < B; b++) {
        int faster = uniform() < 0.5;
        labels[b] = faster;
        double rate_a = faster ? 0.02 : 0.03, rate_b = faster ? 0.03 : 0.02;
        for (int t = 0; t < T; t++) {
            off[b * T + t] = (int64_t)n;
            for (int i = 0; i < N_IN; i++)
                if (uniform() < (i < N_IN / 2 ? rate_a : rate_b)) ch[n++] = i;
        }
    }
    off[B * T] = (int64_t)n;
    return n;
}

int main(int argc, char **argv) {
    int steps = 300, quick = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1, steps = 60;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--steps N] [--seed S] [--quick]\n", argv[0]);
            return 2;
        }
    }
    if (steps < 1) {
        fprintf(stderr, "--steps must be >= 1\n");
        return 2;
    }
    rng_state = seed;

    /* A small ELM: 40 inputs, one synapse each, 2 outputs (the classes). */
    elm_config *cfg;
    CHECK(elm_config_create(&cfg));
    CHECK(elm_config_set(cfg, ELM_NUM_INPUT, N_IN));
    CHECK(elm_config_set(cfg, ELM_NUM_OUTPUT, 2));
    CHECK(elm_config_set(cfg, ELM_NUM_MEMORY, 16));
    CHECK(elm_config_set(cfg, ELM_TAU_M_MAX, 200));
    elm_model *model;
    CHECK(elm_model_create(cfg, seed, &model));
    elm_config_free(cfg);

    elm_optimizer *opt;
    elm_loss *loss;
    elm_trainer *trainer;
    CHECK(elm_optimizer_create(model, ELM_OPTIM_ADAM, &opt));
    CHECK(elm_optimizer_set(opt, ELM_OPTIM_LR, 1e-2));
    CHECK(elm_loss_create(ELM_LOSS_CE_LAST, 2, &loss)); /* classify at the last step */
    CHECK(elm_trainer_create(model, opt, loss, B, T, 0, &trainer));

    /* Batch buffers: at most every channel at every step. */
    int64_t *off = malloc((B * T + 1) * sizeof *off);
    int32_t *ch = malloc((size_t)B * T * N_IN * sizeof *ch), labels[B];
    if (!off || !ch) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    double first = 0, recent = 0;
    size_t events = 0;
    for (int s = 0; s < steps; s++) {
        events += make_batch(off, ch, labels);
        double l;
        CHECK(elm_trainer_step_events(trainer, T, off, ch, NULL, NULL, labels, NULL, &l));
        if (s < 10) first += l / 10;
        if (s >= steps - 10) recent += l / (steps < 10 ? steps : 10);
    }
    printf("%d steps of %d trials, %.1f spikes per trial on average\n", steps, B,
           (double)events / ((double)steps * B));
    printf("loss: %.3f over the first 10 steps, %.3f over the last 10\n", first, recent);
    if (!(recent < first)) { /* the example doubles as a test */
        fprintf(stderr, "the loss did not fall\n");
        return 1;
    }

    /* Accuracy on fresh trials, through a state fed the same events. */
    elm_state *state;
    CHECK(elm_state_create(model, B, &state));
    float *y = malloc((size_t)B * T * 2 * sizeof *y);
    int right = 0, total = 0;
    for (int k = 0; k < (quick ? 4 : 20); k++) {
        make_batch(off, ch, labels);
        CHECK(elm_state_reset(state, ELM_ALL_STREAMS));
        CHECK(elm_state_forward_events(state, T, off, ch, NULL, y));
        for (int b = 0; b < B; b++) {
            const float *last = y + ((size_t)b * T + T - 1) * 2;
            right += (last[1] > last[0]) == (labels[b] == 1);
            total++;
        }
    }
    printf("accuracy on %d new trials: %.1f %%\n", total, 100.0 * right / total);

    free(y);
    free(off);
    free(ch);
    elm_state_free(state);
    elm_trainer_free(trainer); /* the trainer before its optimizer and loss */
    elm_optimizer_free(opt);
    elm_loss_free(loss);
    elm_model_free(model);
    return 0;
}
