/* Forward throughput on the official best NeuronIO configuration
 * (1278 inputs, 45 x 100 synapses, n_m 100, H 200, silu, v1), spike input
 * at ~1% density, one thread. Prints one JSON line per case.
 *
 *   bench_forward [--quick]
 *
 * Sample-steps per second count one stream advancing one time step. The
 * dense FLOP count per sample-step is the model's MLP and readout products
 * plus the branch drive of the events (2 flops per synapse event). */
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

static void spikes(float *x, size_t n, int n_in, uint64_t *r) {
    for (size_t i = 0; i < n; i++) {
        *r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (*r >> 33) % 100 == 0 ? ((i % (size_t)n_in) < (size_t)n_in / 2 ? 1.0f : -1.0f) : 0.0f;
    }
}

int main(int argc, char **argv) {
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
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
    const int n_in = 1278, H = 200, n_m = 100, n_b = 45;
    double flops_step = 2.0 * ((n_b + n_m) * H + H * n_m + n_m * 2);

    /* streaming, batch 1 */
    {
        /* A simulator hands each step's input over while it is in cache:
         * cycle through a ring of 100 pre-generated steps (511 KB). */
        size_t T = quick ? 2000 : 400000, ring = 100;
        float *x = malloc(ring * n_in * sizeof *x), y[2];
        uint64_t r = 7;
        spikes(x, ring * n_in, n_in, &r);
        elm_state *s;
        if ((rc = elm_state_create(m, 1, &s))) die(rc);
        for (size_t t = 0; t < T / 10; t++) elm_state_step(s, x + (t % ring) * n_in, y); /* warm-up */
        double t0 = now();
        for (size_t t = 0; t < T; t++)
            if ((rc = elm_state_step(s, x + (t % ring) * n_in, y))) die(rc);
        double dt = now() - t0;
        printf("{\"case\": \"neuronio_step\", \"B\": 1, \"threads\": 1, \"steps\": %zu, "
               "\"sample_steps_per_s\": %.0f, \"us_per_step\": %.3f, \"gflops\": %.2f, "
               "\"gemm\": \"%s\"}\n",
               T, T / dt, 1e6 * dt / T, flops_step * T / dt / 1e9, elm_gemm_info());
        elm_state_free(s);
        free(x);
    }
    /* sequence forward, B = 32, T = 500 */
    {
        size_t B = 32, T = 500, reps = quick ? 1 : 10;
        float *x = malloc(B * T * n_in * sizeof *x), *y = malloc(B * T * 2 * sizeof *y);
        uint64_t r = 9;
        spikes(x, B * T * n_in, n_in, &r);
        elm_state *s;
        if ((rc = elm_state_create(m, B, &s))) die(rc);
        elm_state_forward(s, x, T, y); /* warm-up */
        double t0 = now();
        for (size_t k = 0; k < reps; k++) {
            elm_state_reset(s, ELM_ALL_STREAMS);
            if ((rc = elm_state_forward(s, x, T, y))) die(rc);
        }
        double dt = (now() - t0) / reps;
        printf("{\"case\": \"neuronio_sequence\", \"B\": %zu, \"T\": %zu, \"threads\": 1, "
               "\"sample_steps_per_s\": %.0f, \"ms_per_sequence\": %.2f, \"gflops\": %.2f}\n",
               B, T, B * T / dt, 1e3 * dt, flops_step * B * T / dt / 1e9);
        elm_state_free(s);
        free(x);
        free(y);
    }
    elm_model_free(m);
    return 0;
}
