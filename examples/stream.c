/* Embedding libelm: build the Branch-ELM configuration of the official
 * NeuronIO model (1278 synaptic inputs on 45 branches x 100 synapses,
 * 100 memory units), or load a trained one, then drive it step by step
 * with Poisson-like spike input, as a simulator would, and read its two
 * outputs every millisecond: the spike logit and the somatic voltage.
 *
 *   stream [--steps N] [--seed S] [--model FILE.elm]
 *
 * --model runs a trained NeuronIO model instead of a freshly initialised
 * one, e.g. the official pretrained neuron converted with
 *   python3 -m elm.convert official .../neuronio_best_model_state.pt -o best.elm
 *
 * Build against an installed libelm with:
 *   cc stream.c $(pkg-config --cflags --libs elm) -lm */
#define _POSIX_C_SOURCE 199309L
#include <elm.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_IN 1278 /* 639 excitatory + 639 inhibitory dendritic segments */

#define CHECK(call)                                                                 \
    do {                                                                            \
        int rc_ = (call);                                                           \
        if (rc_ != ELM_OK) {                                                        \
            fprintf(stderr, "%s failed: %s (%s)\n", #call, elm_strerror(rc_),       \
                    elm_last_error());                                              \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The Branch-ELM configuration of the official NeuronIO model, with fresh
 * parameters drawn from `seed`. */
static elm_model *new_branch_elm(uint64_t seed) {
    elm_config *cfg;
    CHECK(elm_config_create(&cfg));
    CHECK(elm_config_set(cfg, ELM_NUM_INPUT, N_IN));
    CHECK(elm_config_set(cfg, ELM_NUM_OUTPUT, 2));
    CHECK(elm_config_set(cfg, ELM_NUM_MEMORY, 100));
    CHECK(elm_config_set(cfg, ELM_NUM_BRANCH, 45));
    CHECK(elm_config_set(cfg, ELM_SYNAPSES_PER_BRANCH, 100));
    CHECK(elm_config_set(cfg, ELM_ROUTING, ELM_ROUTING_NEURONIO));
    CHECK(elm_config_set(cfg, ELM_MLP_ACTIVATION, ELM_SILU));
    CHECK(elm_config_set(cfg, ELM_TAU_M_MAX, 150));
    elm_model *model;
    CHECK(elm_model_create(cfg, seed, &model));
    elm_config_free(cfg); /* the model keeps its own copy */
    return model;
}

int main(int argc, char **argv) {
    long steps = 2000;
    uint64_t seed = 1;
    const char *model_path = NULL;
    int bad = argc % 2 == 0; /* options come in pairs */
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--steps") == 0) steps = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0) seed = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--model") == 0) model_path = argv[i + 1];
        else bad = 1;
    }
    if (bad || steps <= 0) {
        fprintf(stderr, "usage: %s [--steps N>0] [--seed S] [--model FILE.elm]\n", argv[0]);
        return 2;
    }

    elm_model *model;
    if (model_path) {
        /* A trained model: hyper-parameters, routing and parameters. */
        CHECK(elm_model_load(model_path, &model));
        size_t n_in, n_out;
        CHECK(elm_model_size(model, ELM_SIZE_INPUT, &n_in));
        CHECK(elm_model_size(model, ELM_SIZE_OUTPUT, &n_out));
        if (n_in != N_IN || n_out != 2) {
            fprintf(stderr, "%s: a NeuronIO model maps %d inputs to 2 outputs, this one %zu to %zu\n",
                    model_path, N_IN, n_in, n_out);
            elm_model_free(model);
            return 1;
        }
    } else {
        model = new_branch_elm(seed);
    }
    size_t trainable, n_m;
    CHECK(elm_model_size(model, ELM_SIZE_TRAINABLE, &trainable));
    CHECK(elm_model_size(model, ELM_SIZE_MEMORY, &n_m));
    printf("libelm %s, %s\n", elm_version_string(), elm_gemm_info());
    printf("model: %s, %d inputs, %zu memory units, %zu trainable parameters\n",
           model_path ? model_path : "Branch-ELM (45 x 100 synapses, random init)", N_IN, n_m,
           trainable);

    elm_state *state; /* one stream: one neuron */
    CHECK(elm_state_create(model, 1, &state));
    /* A simulator knows which segments spiked, so the input goes in as
     * events: the channels and values of this millisecond's spikes, no
     * dense (1, 1278) row. elm_state_step(state, x, y) takes the dense row
     * instead; with channels in increasing order both give the same bits. */
    int32_t ch[N_IN];
    float val[N_IN], y[2];
    int64_t off[2] = {0, 0}; /* one stream: its events are [off[0], off[1]) */
    uint64_t r = seed * 2654435761u + 1;
    double t0 = now(), logit_sum = 0;
    for (long t = 0; t < steps; t++) {
        /* ~1% of the segments spike per ms (10 Hz): +1 excitatory, -1 inhibitory */
        int n = 0;
        for (int i = 0; i < N_IN; i++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            if ((r >> 33) % 100 == 0) {
                ch[n] = i;
                val[n++] = i < N_IN / 2 ? 1.0f : -1.0f;
            }
        }
        off[1] = n;
        CHECK(elm_state_step_events(state, off, ch, val, y)); /* spikes -> y (1, 2) */
        logit_sum += y[0];
        /* y[0]: spike logit; y[1]: soma scaled as the NeuronIO training
         * target (v + 67.7 mV) * 0.1 */
        if (t % (steps / 5 > 0 ? steps / 5 : 1) == 0)
            printf("t = %5ld ms  spike probability %.4f  soma %.2f mV\n", t,
                   1.0 / (1.0 + exp(-y[0])), y[1] / 0.1 - 67.7);
    }
    double dt = now() - t0;
    printf("%ld steps in %.3f s: %.2f us per step (input generation included), mean logit %.4f\n",
           steps, dt, 1e6 * dt / (double)steps, logit_sum / (double)steps);

    elm_state_free(state); /* states before their model */
    elm_model_free(model);
    return 0;
}
