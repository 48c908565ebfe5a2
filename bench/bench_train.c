/* Training throughput on the official best NeuronIO configuration
 * (1278 inputs, 45 x 100 synapses, n_m 100, H 200, silu, v1): one Adam step
 * (lr 5e-4) on B = 32, T = 500 with the NeuronIO loss after a burn-in of
 * 150 steps, ~1% spike input, one thread. Prints one JSON line per case.
 *
 *   bench_train [--quick] [--checkpoint]
 *
 * A step is: tape forward, loss, backward, optimizer update (no dropout).
 * The median of the timed steps is reported; the machine is shared and
 * noisy, so compare ratios measured side by side (bench/README.md). */
#define _POSIX_C_SOURCE 199309L
#include <elm.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(int rc) {
    fprintf(stderr, "error: %s (%s)\n", elm_strerror(rc), elm_last_error());
    exit(1);
}

static uint64_t lcg(uint64_t *r) {
    *r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
    return *r >> 33;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int quick = 0;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--checkpoint") == 0) flags |= ELM_TAPE_CHECKPOINT;
        else {
            fprintf(stderr, "usage: bench_train [--quick] [--checkpoint]\n");
            return 2;
        }
    }
    elm_config *cfg;
    elm_config_create(&cfg);
    elm_config_set(cfg, ELM_NUM_INPUT, 1278);
    elm_config_set(cfg, ELM_NUM_OUTPUT, 2);
    elm_config_set(cfg, ELM_NUM_MEMORY, 100);
    elm_config_set(cfg, ELM_NUM_BRANCH, 45);
    elm_config_set(cfg, ELM_SYNAPSES_PER_BRANCH, 100);
    elm_config_set(cfg, ELM_ROUTING, ELM_ROUTING_NEURONIO);
    elm_config_set(cfg, ELM_MLP_ACTIVATION, ELM_SILU);
    elm_config_set(cfg, ELM_TAU_M_MAX, 150);
    elm_model *m;
    int rc = elm_model_create(cfg, 1, &m);
    if (rc) die(rc);
    elm_config_free(cfg);
    const size_t B = 32, T = quick ? 100 : 500, n_in = 1278, burn_in = quick ? 30 : 150;

    /* inputs: +1 excitatory / -1 inhibitory spikes at ~1%; targets: spikes
     * at ~1% and a soma trace in [-0.5, 0.5] */
    uint64_t r = 42;
    float *x = malloc(B * T * n_in * sizeof *x), *tg = malloc(B * T * 2 * sizeof *tg);
    if (!x || !tg) return 1;
    for (size_t i = 0; i < B * T * n_in; i++)
        x[i] = lcg(&r) % 100 == 0 ? (i % n_in < n_in / 2 ? 1.0f : -1.0f) : 0.0f;
    for (size_t i = 0; i < B * T; i++) {
        tg[2 * i] = lcg(&r) % 100 == 0 ? 1.0f : 0.0f;
        tg[2 * i + 1] = (float)(lcg(&r) % 1000) / 1000.0f - 0.5f;
    }
    elm_optimizer *opt;
    elm_loss *loss;
    elm_trainer *tr;
    if ((rc = elm_optimizer_create(m, ELM_OPTIM_ADAM, &opt))) die(rc);
    if ((rc = elm_optimizer_set(opt, ELM_OPTIM_LR, 5e-4))) die(rc);
    if ((rc = elm_loss_create(ELM_LOSS_NEURONIO, 2, &loss))) die(rc);
    if ((rc = elm_loss_set_burn_in(loss, burn_in))) die(rc);
    if ((rc = elm_trainer_create(m, opt, loss, B, T, flags, &tr))) die(rc);

    int warm = quick ? 1 : 2, reps = quick ? 3 : 9;
    double times[16], L = 0;
    for (int i = 0; i < warm + reps; i++) {
        double t0 = now();
        if ((rc = elm_trainer_step(tr, x, T, tg, NULL, NULL, &L))) die(rc);
        if (i >= warm) times[i - warm] = now() - t0;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    double med = times[reps / 2];
    printf("{\"case\": \"train_step_neuronio\", \"optimizer\": \"adam\", \"loss\": \"neuronio\", "
           "\"B\": %zu, \"T\": %zu, \"burn_in\": %zu, \"checkpoint\": %s, \"threads\": 1, "
           "\"seconds_per_step\": %.4f, \"min_seconds\": %.4f, \"sample_steps_per_s\": %.0f, "
           "\"loss\": %.5f, \"gemm\": \"%s\"}\n",
           B, T, burn_in, flags ? "true" : "false", med, times[0], (double)(B * T) / med, L,
           elm_gemm_info());
    elm_trainer_free(tr);
    elm_loss_free(loss);
    elm_optimizer_free(opt);
    elm_model_free(m);
    free(x);
    free(tg);
    return 0;
}
