/* elm bench: throughput of the three kinds of work on the official best
 * NeuronIO model (1278 inputs, 45 branches x 100 synapses with NeuronIO
 * routing, n_m 100, H 200, silu, v1, tau_m up to 150 ms): streaming steps
 * (B = 1), sequence forwards (B = 32, T = 500) and Adam training steps
 * (B = 32, T = 500, NeuronIO loss after 150 burn-in steps), on inputs with
 * ~1% spikes. One JSON object per line; times are medians of repeats. */
#include "cli.h"

#include <elm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: elm bench [--quick] [--threads N]\n"
    "\n"
    "Time a streaming step (B = 1), a sequence forward (B = 32, T = 500) and a\n"
    "training step (Adam, NeuronIO loss, B = 32, T = 500) of the official best\n"
    "NeuronIO model and print one JSON line per case: sample_steps_per_s (batch x\n"
    "time steps per second), us_per_step (microseconds per time step of the whole\n"
    "batch), seconds_per_call (median).\n"
    "\n"
    "  --quick      shorter sequences (T = 100) and fewer repeats\n"
    "  --threads N  threads of the matrix products (sets BLIS_NUM_THREADS)\n";

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t lcg(uint64_t *r) {
    *r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
    return *r >> 33;
}

/* NeuronIO-like input (B, T, 1278): +1 for the excitatory first half, -1
 * for the inhibitory second half, each channel spiking with p = 0.01. */
static float *spikes(size_t B, size_t T, size_t n_in, uint64_t seed) {
    float *x = malloc(B * T * n_in * sizeof *x);
    if (!x) return NULL;
    for (size_t i = 0; i < B * T * n_in; i++)
        x[i] = lcg(&seed) % 100 == 0 ? (i % n_in < n_in / 2 ? 1.0f : -1.0f) : 0.0f;
    return x;
}

static void print_case(const char *name, size_t B, size_t T, int reps, double *secs,
                       const char *threads) {
    qsort(secs, (size_t)reps, sizeof *secs, cmp_double);
    double med = secs[reps / 2];
    printf("{\"case\": \"%s\", \"B\": %zu, \"T\": %zu, \"threads\": %s, \"repeats\": %d, "
           "\"sample_steps_per_s\": %.1f, \"us_per_step\": %.3f, \"seconds_per_call\": %.6f, "
           "\"gemm\": \"",
           name, B, T, threads ? threads : "null", reps, (double)(B * T) / med,
           1e6 * med / (double)T, med);
    for (const char *c = elm_gemm_info(); *c; c++) {
        if (*c == '"' || *c == '\\') putchar('\\');
        if ((unsigned char)*c >= 0x20) putchar(*c);
    }
    printf("\"}\n");
    fflush(stdout);
}

static int bench_stream(const elm_model *m, int quick, const char *threads) {
    enum { CHUNKS = 5 };
    const size_t n_in = 1278, steps = quick ? 100 : 1000;
    float *x = spikes(1, steps, n_in, 7), y[2];
    elm_state *s = NULL;
    int rc = x ? elm_state_create(m, 1, &s) : ELM_E_NOMEM;
    double secs[CHUNKS];
    for (size_t t = 0; !rc && t < 50; t++) rc = elm_state_step(s, x + t * n_in, y);
    for (int c = 0; !rc && c < CHUNKS; c++) {
        double t0 = cli_now();
        for (size_t t = 0; !rc && t < steps; t++) rc = elm_state_step(s, x + t * n_in, y);
        secs[c] = (cli_now() - t0) / (double)steps;
    }
    if (!rc) print_case("stream_step", 1, 1, CHUNKS, secs, threads);
    elm_state_free(s);
    free(x);
    return rc ? cli_lib_error("stream_step", rc) : CLI_OK;
}

static int bench_forward(const elm_model *m, int quick, const char *threads) {
    const size_t B = 32, T = quick ? 100 : 500, n_in = 1278;
    const int warm = 1, reps = quick ? 3 : 7;
    float *x = spikes(B, T, n_in, 11), *y = malloc(B * T * 2 * sizeof *y);
    elm_state *s = NULL;
    int rc = x && y ? elm_state_create(m, B, &s) : ELM_E_NOMEM;
    double secs[8];
    for (int i = 0; !rc && i < warm + reps; i++) {
        rc = elm_state_reset(s, ELM_ALL_STREAMS);
        double t0 = cli_now();
        if (!rc) rc = elm_state_forward(s, x, T, y);
        if (i >= warm) secs[i - warm] = cli_now() - t0;
    }
    if (!rc) print_case("sequence_forward", B, T, reps, secs, threads);
    elm_state_free(s);
    free(x);
    free(y);
    return rc ? cli_lib_error("sequence_forward", rc) : CLI_OK;
}

static int bench_train(elm_model *m, int quick, const char *threads) {
    const size_t B = 32, T = quick ? 100 : 500, n_in = 1278, burn_in = quick ? 30 : 150;
    const int warm = quick ? 1 : 2, reps = quick ? 3 : 7;
    float *x = spikes(B, T, n_in, 13), *tg = malloc(B * T * 2 * sizeof *tg);
    elm_optimizer *opt = NULL;
    elm_loss *loss = NULL;
    elm_trainer *tr = NULL;
    int rc = x && tg ? ELM_OK : ELM_E_NOMEM;
    if (!rc) {
        /* spike targets at ~1%, soma in [-0.5, 0.5) as the scaled voltage */
        uint64_t r = 17;
        for (size_t i = 0; i < B * T; i++) {
            tg[2 * i] = lcg(&r) % 100 == 0 ? 1.0f : 0.0f;
            tg[2 * i + 1] = (float)(lcg(&r) % 1000) / 1000.0f - 0.5f;
        }
    }
    if (!rc) rc = elm_optimizer_create(m, ELM_OPTIM_ADAM, &opt);
    if (!rc) rc = elm_optimizer_set(opt, ELM_OPTIM_LR, 5e-4);
    if (!rc) rc = elm_loss_create(ELM_LOSS_NEURONIO, 2, &loss);
    if (!rc) rc = elm_loss_set_burn_in(loss, burn_in);
    if (!rc) rc = elm_trainer_create(m, opt, loss, B, T, 0, &tr);
    double secs[8], L;
    for (int i = 0; !rc && i < warm + reps; i++) {
        double t0 = cli_now();
        rc = elm_trainer_step(tr, x, T, tg, NULL, NULL, &L);
        if (i >= warm) secs[i - warm] = cli_now() - t0;
    }
    if (!rc) print_case("train_step", B, T, reps, secs, threads);
    elm_trainer_free(tr);
    elm_loss_free(loss);
    elm_optimizer_free(opt);
    free(x);
    free(tg);
    return rc ? cli_lib_error("train_step", rc) : CLI_OK;
}

int cmd_bench(int argc, char **argv) {
    static const cli_opt opts[] = {{"quick", 0, 0}, {"threads", 0, 1}};
    const char *opt[2], *pos[1];
    size_t n_pos;
    int st = cli_parse_args("bench", argc, argv, opts, 2, opt, pos, 0, &n_pos);
    if (st < 0) {
        fputs(help, stdout);
        return CLI_OK;
    }
    if (st) return st;
    const int quick = opt[0] != NULL;
    const char *threads = opt[1];
    if (threads) {
        uint64_t n;
        if (cli_parse_u64(threads, 1, 1024, &n))
            return cli_usage_error("bench", "--threads needs an integer in [1, 1024], got '%s'",
                                   threads);
        /* BLIS reads it when it initialises, inside the first model creation */
        if (setenv("BLIS_NUM_THREADS", threads, 1) != 0) return cli_error("setenv failed");
    }
    static const struct { elm_param key; double value; } official[] = {
        {ELM_NUM_INPUT, 1278}, {ELM_NUM_OUTPUT, 2}, {ELM_NUM_MEMORY, 100},
        {ELM_NUM_BRANCH, 45}, {ELM_SYNAPSES_PER_BRANCH, 100}, {ELM_ROUTING, ELM_ROUTING_NEURONIO},
        {ELM_MLP_ACTIVATION, ELM_SILU}, {ELM_TAU_M_MAX, 150},
    };
    elm_config *cfg;
    int rc = elm_config_create(&cfg);
    if (rc) return cli_lib_error("config", rc);
    for (size_t i = 0; !rc && i < sizeof official / sizeof *official; i++)
        rc = elm_config_set(cfg, official[i].key, official[i].value);
    elm_model *m = NULL;
    if (!rc) rc = elm_model_create(cfg, 1, &m);
    elm_config_free(cfg);
    if (rc) return cli_lib_error("model", rc);
    st = bench_stream(m, quick, threads);
    if (!st) st = bench_forward(m, quick, threads);
    if (!st) st = bench_train(m, quick, threads);
    elm_model_free(m);
    return st;
}
