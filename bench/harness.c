/* The benchmark harness (issue 7); see harness.h and bench/README.md.
 *
 * Each (case, threads) runs in a forked child: its ru_maxrss (from wait4)
 * is then the peak of that case alone, not of every case run before it in
 * the same process. The child sends its timings back through a pipe and
 * the parent prints the line. The parent itself never calls into BLIS or
 * creates a model, so no BLIS thread or state crosses a fork.
 *
 * The SGEMM peak calls BLIS through dlsym: libelm already loads BLIS, and
 * looking it up at run time lets `elm bench`, whose link line carries no
 * BLIS, measure the same peak. With -Dgemm=reference the symbol is absent
 * and the peak is reported as null. */
#include "harness.h"

#include <elm.h>

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ELM_BENCH_TORCH_SCRIPT
#ifdef ELM_PYTHON_SOURCE_DIR
/* The CLI knows the source tree only through its Python directory. */
#define ELM_BENCH_TORCH_SCRIPT ELM_PYTHON_SOURCE_DIR "/../../bench/torch_reference.py"
#else
#define ELM_BENCH_TORCH_SCRIPT "bench/torch_reference.py"
#endif
#endif

const char bench_help_options[] =
    "  --quick          tiny sequences and few repeats (the smoke test)\n"
    "  --threads LIST   libelm threads per case, comma-separated (default 1,2);\n"
    "                   BLIS itself always runs on one thread\n"
    "  --cases LIST     only cases whose name starts with one of these prefixes\n"
    "                   (neuronio, shd, lra, neuronio_train, ...)\n"
    "  --torch          also time bench/torch_reference.py (NeuronIO cases) and\n"
    "                   print libelm / torch ratios measured in the same run\n"
    "  --python PATH    interpreter for --torch (default /usr/bin/python3)\n"
    "  --torch-script P torch_reference.py to run\n"
    "  --official PATH  elmneuron checkout for --torch (default /tmp/elmneuron\n"
    "                   when it exists)\n"
    "  --no-peak        skip the SGEMM peak and the weight-read bound\n";

/* ------------------------------------------------------------------------
 * Cases */

typedef enum { K_STREAM, K_FORWARD, K_TRAIN } bench_kind;
typedef enum { IN_SIGNED_SPIKES, IN_SPIKES, IN_ONEHOT } bench_input;

typedef struct bench_case {
    const char *name;
    const char *family;
    bench_kind kind;
    /* model */
    int n_in, n_out, n_m, H, n_b, k, routing, act, L;
    double tau_m_max, dt;
    /* data */
    size_t B, T, T_quick;
    bench_input input;
    double density;
    /* training */
    elm_loss_kind loss;
    int optim;
    double lr, dropout;
    size_t burn_in, burn_in_quick;
    unsigned tape_flags;
    /* repeats after warm-up (full run) */
    int warm, reps;
    const char *torch_case; /* torch_reference.py's case, or NULL */
    int events;             /* input as CSR events (elm_state_*_events) */
} bench_case;

#define NIO_MODEL 1278, 2, 100, 200, 45, 100, ELM_ROUTING_NEURONIO, ELM_SILU, 1, 150.0, 1.0
#define SHD_MODEL(dt) 700, 20, 100, 200, 0, 1, ELM_ROUTING_NONE, ELM_RELU, 1, 500.0, dt
#define LRA_MODEL 25, 10, 150, 300, 0, 1, ELM_ROUTING_NONE, ELM_RELU, 1, 2000.0, 1.0

/* SHD: ~11 spikes per channel and second in the recordings, so a time bin
 * of dt ms holds a spike with probability ~0.011 dt (0.022 at 2 ms, 0.11 at
 * 10 ms). Optimizers, learning rates and dropout follow
 * examples/configs/shd.yaml and lra_listops.yaml. */
static const bench_case cases[] = {
    {"neuronio_stream", "neuronio", K_STREAM, NIO_MODEL, 1, 1, 1, IN_SIGNED_SPIKES, 0.01,
     0, 0, 0, 0, 0, 0, 0, 1, 5, "stream_step", 0},
    {"neuronio_forward", "neuronio", K_FORWARD, NIO_MODEL, 32, 500, 200, IN_SIGNED_SPIKES, 0.01,
     0, 0, 0, 0, 0, 0, 0, 1, 7, "forward_seq", 0},
    {"neuronio_stream_events", "neuronio", K_STREAM, NIO_MODEL, 1, 1, 1, IN_SIGNED_SPIKES, 0.01,
     0, 0, 0, 0, 0, 0, 0, 1, 5, "stream_step", 1},
    {"neuronio_forward_events", "neuronio", K_FORWARD, NIO_MODEL, 32, 500, 200, IN_SIGNED_SPIKES,
     0.01, 0, 0, 0, 0, 0, 0, 0, 1, 7, "forward_seq", 1},
    {"neuronio_train", "neuronio", K_TRAIN, NIO_MODEL, 32, 500, 200, IN_SIGNED_SPIKES, 0.01,
     ELM_LOSS_NEURONIO, ELM_OPTIM_ADAM, 5e-4, 0, 150, 150, 0, 2, 7, "train_step", 0},
    {"neuronio_train_events", "neuronio", K_TRAIN, NIO_MODEL, 32, 500, 200, IN_SIGNED_SPIKES,
     0.01, ELM_LOSS_NEURONIO, ELM_OPTIM_ADAM, 5e-4, 0, 150, 150, 0, 2, 7, "train_step", 1},
    {"shd_dt10_forward", "shd", K_FORWARD, SHD_MODEL(10.0), 8, 100, 25, IN_SPIKES, 0.11,
     0, 0, 0, 0, 0, 0, 0, 2, 15, NULL, 0},
    {"shd_dt10_train", "shd", K_TRAIN, SHD_MODEL(10.0), 8, 100, 25, IN_SPIKES, 0.11,
     ELM_LOSS_CE_LAST, ELM_OPTIM_ADAMAX, 5e-3, 0.5, 0, 0, 0, 2, 15, NULL, 0},
    {"shd_dt2_forward", "shd", K_FORWARD, SHD_MODEL(2.0), 8, 500, 50, IN_SPIKES, 0.022,
     0, 0, 0, 0, 0, 0, 0, 1, 9, NULL, 0},
    {"shd_dt2_train", "shd", K_TRAIN, SHD_MODEL(2.0), 8, 500, 50, IN_SPIKES, 0.022,
     ELM_LOSS_CE_LAST, ELM_OPTIM_ADAMAX, 5e-3, 0.5, 0, 0, 0, 1, 9, NULL, 0},
    {"lra_forward", "lra", K_FORWARD, LRA_MODEL, 8, 2000, 200, IN_ONEHOT, 0,
     0, 0, 0, 0, 0, 0, 0, 1, 5, NULL, 0},
    {"lra_train", "lra", K_TRAIN, LRA_MODEL, 8, 2000, 200, IN_ONEHOT, 0,
     ELM_LOSS_CE_LAST, ELM_OPTIM_ADAM, 2e-4, 0, 0, 0, 0, 1, 5, NULL, 0},
    {"lra_train_checkpoint", "lra", K_TRAIN, LRA_MODEL, 8, 2000, 200, IN_ONEHOT, 0,
     ELM_LOSS_CE_LAST, ELM_OPTIM_ADAM, 2e-4, 0, 0, 0, ELM_TAPE_CHECKPOINT, 1, 5, NULL, 0},
};
enum { N_CASES = sizeof cases / sizeof *cases };

static size_t case_T(const bench_case *c, int quick) { return quick ? c->T_quick : c->T; }
static int case_nb(const bench_case *c) { return c->n_b ? c->n_b : c->n_in; }

/* Dense FLOPs of one sample advancing one step (forward): every MLP layer
 * and the readout, 2 per multiply-add. Layer 0 reads the n_b branch sums
 * and the n_m memory; the last MLP layer writes the n_m memory update. The
 * synaptic traces, branch sums and the memory update are O(n_s + n_m)
 * element-wise work and are left out. */
static double forward_flops(const bench_case *c) {
    double in = case_nb(c) + c->n_m, f = 0;
    for (int l = 0; l < c->L; l++) {
        f += 2.0 * in * c->H;
        in = c->H;
    }
    f += 2.0 * in * c->n_m;       /* memory layer */
    f += 2.0 * c->n_m * c->n_out; /* readout */
    return f;
}

/* A training step: the forward, then per layer the input gradient and the
 * weight gradient, each a product as large as the forward one: 3x. The
 * recomputation of checkpointing is not counted (it is overhead, and shows
 * as a lower effective rate). */
static double case_flops(const bench_case *c) {
    return c->kind == K_TRAIN ? 3.0 * forward_flops(c) : forward_flops(c);
}

/* ------------------------------------------------------------------------
 * Small helpers */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t lcg(uint64_t *r) {
    *r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
    return *r >> 33;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

/* A number, or null when it is not a positive finite value. */
static void json_num(FILE *f, const char *fmt, double v) {
    if (isfinite(v) && v > 0) fprintf(f, fmt, v);
    else fputs("null", f);
}

static const char *kind_name(bench_kind k) {
    return k == K_STREAM ? "stream" : k == K_FORWARD ? "forward" : "train";
}

/* ------------------------------------------------------------------------
 * What a child sends back */

enum { RES_OK = 0, RES_SKIPPED = 1, RES_FAILED = 2 };

typedef struct bench_result {
    int status;
    int reps;
    double sec_median, sec_min; /* per call (stream: per step) */
    double loss;
    size_t tape_bytes;
    double gflops_peak; /* the peak child only */
    char gemm[192];
    char msg[256];
} bench_result;

static void result_fail(bench_result *r, int status, const char *what, int rc) {
    r->status = status;
    snprintf(r->msg, sizeof r->msg, "%s: %s (%s)", what, elm_strerror(rc), elm_last_error());
}

/* The next row (n_in) of the case's input, drawn from *seed. */
static void input_row(const bench_case *c, uint64_t *seed, float *row) {
    const size_t n_in = (size_t)c->n_in;
    memset(row, 0, n_in * sizeof *row);
    if (c->input == IN_ONEHOT) {
        row[lcg(seed) % n_in] = 1.0f;
        return;
    }
    const uint32_t thr = (uint32_t)(c->density * 1e6);
    for (size_t i = 0; i < n_in; i++)
        if (lcg(seed) % 1000000 < thr)
            row[i] = c->input == IN_SIGNED_SPIKES && i >= n_in / 2 ? -1.0f : 1.0f;
}

/* The case's input (B, T, n_in). */
static float *make_input(const bench_case *c, size_t B, size_t T, uint64_t seed) {
    const size_t n_in = (size_t)c->n_in, n = B * T * n_in;
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) return NULL;
    for (size_t r = 0; r < B * T; r++) input_row(c, &seed, x + r * n_in);
    return x;
}

/* The same input as make_input, as CSR events in increasing channel order,
 * built row by row: the dense array never exists, so a case's peak memory
 * is what the events need. */
typedef struct events {
    int64_t *off;
    int32_t *ch;
    float *val;
} events;

static void events_free(events *e) {
    free(e->off);
    free(e->ch);
    free(e->val);
}

static int make_events(const bench_case *c, size_t rows, uint64_t seed, events *e) {
    const size_t n_in = (size_t)c->n_in;
    size_t cap = 1024;
    float *row = malloc(n_in * sizeof *row);
    e->off = malloc((rows + 1) * sizeof *e->off);
    e->ch = malloc(cap * sizeof *e->ch);
    e->val = malloc(cap * sizeof *e->val);
    int64_t k = 0;
    if (row && e->off) e->off[0] = 0;
    for (size_t r = 0; row && e->off && e->ch && e->val && r < rows; r++) {
        input_row(c, &seed, row);
        for (size_t i = 0; i < n_in; i++) {
            if (row[i] == 0.0f) continue;
            if ((size_t)k == cap) {
                cap *= 2;
                int32_t *ch = realloc(e->ch, cap * sizeof *ch);
                if (ch) e->ch = ch;
                float *val = ch ? realloc(e->val, cap * sizeof *val) : NULL;
                if (val) e->val = val;
                if (!ch || !val) {
                    free(row);
                    events_free(e);
                    return ELM_E_NOMEM;
                }
            }
            e->ch[k] = (int32_t)i;
            e->val[k++] = row[i];
        }
        e->off[r + 1] = k;
    }
    int ok = row && e->off && e->ch && e->val;
    free(row);
    if (!ok) {
        events_free(e);
        return ELM_E_NOMEM;
    }
    return ELM_OK;
}

static int make_model(const bench_case *c, elm_model **m) {
    elm_config *cfg;
    int rc = elm_config_create(&cfg);
    if (rc) return rc;
    const struct { elm_param key; double value; } set[] = {
        {ELM_NUM_INPUT, c->n_in},         {ELM_NUM_OUTPUT, c->n_out},
        {ELM_NUM_MEMORY, c->n_m},         {ELM_MLP_HIDDEN_SIZE, c->H},
        {ELM_MLP_NUM_LAYERS, c->L},       {ELM_NUM_BRANCH, c->n_b},
        {ELM_SYNAPSES_PER_BRANCH, c->k},  {ELM_ROUTING, c->routing},
        {ELM_MLP_ACTIVATION, c->act},     {ELM_TAU_M_MAX, c->tau_m_max},
        {ELM_DT, c->dt},
    };
    for (size_t i = 0; !rc && i < sizeof set / sizeof *set; i++)
        rc = elm_config_set(cfg, set[i].key, set[i].value);
    if (!rc) rc = elm_model_create(cfg, 1, m);
    elm_config_free(cfg);
    return rc;
}

static void finish_times(bench_result *r, double *secs, int reps) {
    qsort(secs, (size_t)reps, sizeof *secs, cmp_double);
    r->reps = reps;
    r->sec_median = secs[reps / 2];
    r->sec_min = secs[0];
}

static void run_stream(const bench_case *c, const elm_model *m, int quick, bench_result *r) {
    /* A simulator hands each step's input over while it is in cache: cycle
     * through a ring of 100 pre-generated steps. */
    enum { RING = 100, CHUNKS = 5 };
    const size_t steps = quick ? 300 : 20000, n_in = (size_t)c->n_in;
    float *x = c->events ? NULL : make_input(c, 1, RING, 7), y[16];
    events ev = {0};
    elm_state *s = NULL;
    int rc = c->events ? make_events(c, RING, 7, &ev) : x ? ELM_OK : ELM_E_NOMEM;
    if (!rc) rc = elm_state_create(m, 1, &s);
    double secs[CHUNKS];
#define STEP(t)                                                                                  \
    (c->events ? elm_state_step_events(s, ev.off + (t) % RING, ev.ch, ev.val, y)                 \
               : elm_state_step(s, x + ((t) % RING) * n_in, y))
    for (size_t t = 0; !rc && t < steps / 4; t++) rc = STEP(t);
    for (int k = 0; !rc && k < CHUNKS; k++) {
        double t0 = now();
        for (size_t t = 0; !rc && t < steps; t++) rc = STEP(t);
        secs[k] = (now() - t0) / (double)steps;
    }
#undef STEP
    if (rc) result_fail(r, RES_FAILED, c->events ? "elm_state_step_events" : "elm_state_step", rc);
    else finish_times(r, secs, CHUNKS);
    elm_state_free(s);
    events_free(&ev);
    free(x);
}

static void run_forward(const bench_case *c, const elm_model *m, int quick, int threads,
                        bench_result *r) {
    const size_t B = c->B, T = case_T(c, quick);
    const int warm = 1, reps = quick ? 2 : c->reps;
    float *x = c->events ? NULL : make_input(c, B, T, 11);
    float *y = malloc(B * T * (size_t)c->n_out * sizeof *y);
    events ev = {0};
    elm_state *s = NULL;
    double secs[32];
    int rc = c->events ? make_events(c, B * T, 11, &ev) : x ? ELM_OK : ELM_E_NOMEM;
    if (!rc) rc = y ? elm_state_create(m, B, &s) : ELM_E_NOMEM;
    if (rc) {
        result_fail(r, RES_FAILED, "elm_state_create", rc);
    } else if (threads > 1 && (rc = elm_state_set_threads(s, threads))) {
        result_fail(r, RES_SKIPPED, "elm_state_set_threads", rc);
    } else {
        for (int i = 0; !rc && i < warm + reps; i++) {
            rc = elm_state_reset(s, ELM_ALL_STREAMS);
            double t0 = now();
            if (!rc)
                rc = c->events ? elm_state_forward_events(s, T, ev.off, ev.ch, ev.val, y)
                               : elm_state_forward(s, x, T, y);
            if (i >= warm) secs[i - warm] = now() - t0;
        }
        if (rc)
            result_fail(r, RES_FAILED, c->events ? "elm_state_forward_events" : "elm_state_forward",
                        rc);
        else finish_times(r, secs, reps);
    }
    elm_state_free(s);
    events_free(&ev);
    free(x);
    free(y);
}

static void run_train(const bench_case *c, elm_model *m, int quick, int threads,
                      bench_result *r) {
    const size_t B = c->B, T = case_T(c, quick);
    const int warm = quick ? 1 : c->warm, reps = quick ? 2 : c->reps;
    float *x = c->events ? NULL : make_input(c, B, T, 13), *tg = NULL;
    events ev = {0};
    int32_t labels[64];
    uint64_t seed = 17;
    int rc = c->events ? make_events(c, B * T, 13, &ev) : x ? ELM_OK : ELM_E_NOMEM;
    if (!rc && c->loss == ELM_LOSS_NEURONIO) {
        /* spike targets at ~1%, soma in [-0.5, 0.5) as the scaled voltage */
        tg = malloc(B * T * 2 * sizeof *tg);
        if (!tg) rc = ELM_E_NOMEM;
        for (size_t i = 0; !rc && i < B * T; i++) {
            tg[2 * i] = lcg(&seed) % 100 == 0 ? 1.0f : 0.0f;
            tg[2 * i + 1] = (float)(lcg(&seed) % 1000) / 1000.0f - 0.5f;
        }
    }
    for (size_t b = 0; b < B && b < 64; b++) labels[b] = (int32_t)(lcg(&seed) % (uint64_t)c->n_out);

    /* The tape's size, from a tape of the same shape freed before the
     * trainer allocates its own: the peak RSS does not count both. */
    elm_tape *tape = NULL;
    if (!rc) rc = elm_tape_create(m, B, T, c->tape_flags, &tape);
    if (!rc) rc = elm_tape_memory(tape, &r->tape_bytes);
    elm_tape_free(tape);

    elm_optimizer *opt = NULL;
    elm_loss *loss = NULL;
    elm_trainer *tr = NULL;
    if (!rc) rc = elm_optimizer_create(m, c->optim, &opt);
    if (!rc) rc = elm_optimizer_set(opt, ELM_OPTIM_LR, c->lr);
    if (!rc) rc = elm_loss_create(c->loss, (size_t)c->n_out, &loss);
    if (!rc && c->loss == ELM_LOSS_NEURONIO)
        rc = elm_loss_set_burn_in(loss, quick ? c->burn_in_quick : c->burn_in);
    if (!rc) rc = elm_trainer_create(m, opt, loss, B, T, c->tape_flags, &tr);
    if (!rc && c->dropout > 0) rc = elm_trainer_set(tr, ELM_TRAIN_DROPOUT, c->dropout);
    double secs[32];
    if (rc) {
        result_fail(r, RES_FAILED, "trainer setup", rc);
    } else if (threads > 1 && (rc = elm_trainer_set(tr, ELM_TRAIN_THREADS, threads))) {
        result_fail(r, RES_SKIPPED, "elm_trainer_set(ELM_TRAIN_THREADS)", rc);
    } else {
        const int32_t *lab = c->loss == ELM_LOSS_NEURONIO ? NULL : labels;
        for (int i = 0; !rc && i < warm + reps; i++) {
            double t0 = now();
            rc = c->events ? elm_trainer_step_events(tr, T, ev.off, ev.ch, ev.val, tg, lab, NULL,
                                                     &r->loss)
                           : elm_trainer_step(tr, x, T, tg, lab, NULL, &r->loss);
            if (i >= warm) secs[i - warm] = now() - t0;
        }
        if (rc)
            result_fail(r, RES_FAILED, c->events ? "elm_trainer_step_events" : "elm_trainer_step",
                        rc);
        else finish_times(r, secs, reps);
    }
    elm_trainer_free(tr);
    elm_loss_free(loss);
    elm_optimizer_free(opt);
    events_free(&ev);
    free(x);
    free(tg);
}

static void child_case(const bench_case *c, int quick, int threads, bench_result *r) {
    elm_model *m = NULL;
    int rc = make_model(c, &m);
    snprintf(r->gemm, sizeof r->gemm, "%s", elm_gemm_info());
    if (rc) {
        result_fail(r, RES_FAILED, "elm_model_create", rc);
        return;
    }
    if (c->kind == K_STREAM) run_stream(c, m, quick, r);
    else if (c->kind == K_FORWARD) run_forward(c, m, quick, threads, r);
    else run_train(c, m, quick, threads, r);
    elm_model_free(m);
}

/* ------------------------------------------------------------------------
 * The SGEMM peak: C = A B, n x n x n, single-threaded BLIS, best of reps */

/* bli_sgemm's integer types are those of the BLIS build (gint_t). */
typedef void (*sgemm64_fn)(int, int, int64_t, int64_t, int64_t, const float *, const float *,
                           int64_t, int64_t, const float *, int64_t, int64_t, const float *,
                           float *, int64_t, int64_t);
typedef void (*sgemm32_fn)(int, int, int32_t, int32_t, int32_t, const float *, const float *,
                           int32_t, int32_t, const float *, int32_t, int32_t, const float *,
                           float *, int32_t, int32_t);

static void child_peak(int quick, bench_result *r) {
    /* libelm picks BLIS's kernels inside the first model creation; calling
     * BLIS before would freeze BLIS's own (possibly generic) choice. */
    static const bench_case tiny = {.name = "peak", .n_in = 4, .n_out = 1, .n_m = 4, .H = 8,
                                    .k = 1, .routing = ELM_ROUTING_NONE, .act = ELM_RELU,
                                    .L = 1, .tau_m_max = 100.0, .dt = 1.0};
    elm_model *m = NULL;
    int rc = make_model(&tiny, &m);
    snprintf(r->gemm, sizeof r->gemm, "%s", elm_gemm_info());
    elm_model_free(m);
    if (rc) {
        result_fail(r, RES_FAILED, "elm_model_create", rc);
        return;
    }
    void *gemm = dlsym(RTLD_DEFAULT, "bli_sgemm");
    int64_t (*int_size)(void) = (int64_t(*)(void))dlsym(RTLD_DEFAULT, "bli_info_get_int_type_size");
    if (!gemm || !int_size) {
        r->status = RES_SKIPPED;
        snprintf(r->msg, sizeof r->msg, "BLIS is not loaded (gemm backend: %s)", r->gemm);
        return;
    }
    int bits = (int32_t)int_size(); /* a 32-bit return leaves rax's top half undefined */
    if (bits != 32 && bits != 64) {
        r->status = RES_SKIPPED;
        snprintf(r->msg, sizeof r->msg, "unknown BLIS integer size %d", bits);
        return;
    }
    const int n = quick ? 1200 : 2000, reps = quick ? 7 : 3;
    float *a = malloc((size_t)n * n * sizeof *a), *b = malloc((size_t)n * n * sizeof *b),
          *cm = calloc((size_t)n * n, sizeof *cm);
    if (!a || !b || !cm) {
        result_fail(r, RES_FAILED, "sgemm buffers", ELM_E_NOMEM);
        return;
    }
    uint64_t seed = 3;
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(lcg(&seed) % 2001) / 1000.0f - 1.0f;
        b[i] = (float)(lcg(&seed) % 2001) / 1000.0f - 1.0f;
    }
    const float one = 1.0f, zero = 0.0f;
    double secs[reps + 1];
    for (int i = 0; i <= reps; i++) { /* the first call is a warm-up */
        double t0 = now();
        if (bits == 64)
            ((sgemm64_fn)gemm)(0, 0, n, n, n, &one, a, n, 1, b, n, 1, &zero, cm, n, 1);
        else
            ((sgemm32_fn)gemm)(0, 0, n, n, n, &one, a, n, 1, b, n, 1, &zero, cm, n, 1);
        secs[i] = now() - t0;
    }
    finish_times(r, secs + 1, reps);
    r->gflops_peak = 2.0 * n * n * (double)n / r->sec_min / 1e9;
    free(a);
    free(b);
    free(cm);
}

/* ------------------------------------------------------------------------
 * The streaming step's bound: a B = 1 step that reads every MLP and
 * readout weight once cannot be faster than reading that many bytes from
 * L2, as they do not fit in L1 (the one-stream step skips the rows of
 * undriven branches, so it reads somewhat less). Measured with the simplest loop
 * that reads them: a sum over a buffer of the same size, 16 lanes x 4
 * accumulators wide, best of many passes. */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BENCH_READ_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define BENCH_READ_CLONES
#endif

BENCH_READ_CLONES __attribute__((noinline)) static float read_all(const float *w, size_t n) {
    float acc[64] = {0};
    for (size_t i = 0; i + 64 <= n; i += 64)
        for (int j = 0; j < 64; j++) acc[j] += w[i + (size_t)j];
    float s = 0;
    for (int j = 0; j < 64; j++) s += acc[j];
    return s;
}

/* The NeuronIO case's weight floats read per B = 1 step: every MLP layer
 * (the first reads the n_b branch sums and the n_m memory) and the
 * readout. */
static size_t stream_weight_floats(const bench_case *c) {
    size_t in = (size_t)case_nb(c) + (size_t)c->n_m, n = 0;
    for (int l = 0; l < c->L; l++) {
        n += in * (size_t)c->H;
        in = (size_t)c->H;
    }
    return n + in * (size_t)c->n_m + (size_t)c->n_m * (size_t)c->n_out;
}

static void child_read_bound(int quick, bench_result *r) {
    const size_t n = (stream_weight_floats(&cases[0]) + 63) / 64 * 64;
    float *w = aligned_alloc(64, n * sizeof *w);
    if (!w) {
        result_fail(r, RES_FAILED, "read bound buffer", ELM_E_NOMEM);
        return;
    }
    for (size_t i = 0; i < n; i++) w[i] = (float)(i % 7) * 0.25f;
    enum { CHUNKS = 5 };
    const int passes = quick ? 200 : 20000;
    double secs[CHUNKS];
    volatile float sink = 0;
    for (int i = 0; i < passes / 4; i++) sink += read_all(w, n);
    for (int k = 0; k < CHUNKS; k++) {
        double t0 = now();
        for (int i = 0; i < passes; i++) sink += read_all(w, n);
        secs[k] = (now() - t0) / passes;
    }
    (void)sink;
    finish_times(r, secs, CHUNKS);
    r->tape_bytes = n * sizeof *w; /* the bytes read per pass */
    free(w);
}

/* ------------------------------------------------------------------------
 * Fork, collect, wait */

typedef enum { JOB_CASE, JOB_PEAK, JOB_READ_BOUND } job_kind;

/* Runs the job in a child; fills r and the child's peak RSS (KiB). */
static void run_forked(job_kind job, const bench_case *c, int quick, int threads,
                       bench_result *r, long *maxrss_kib) {
    memset(r, 0, sizeof *r);
    *maxrss_kib = 0;
    int fd[2];
    if (pipe(fd) != 0) {
        r->status = RES_FAILED;
        snprintf(r->msg, sizeof r->msg, "pipe: %s", strerror(errno));
        return;
    }
    fflush(NULL); /* else the child's exit would print buffered output twice */
    pid_t pid = fork();
    if (pid < 0) {
        r->status = RES_FAILED;
        snprintf(r->msg, sizeof r->msg, "fork: %s", strerror(errno));
        close(fd[0]);
        close(fd[1]);
        return;
    }
    if (pid == 0) {
        close(fd[0]);
        bench_result res;
        memset(&res, 0, sizeof res);
        if (job == JOB_PEAK) child_peak(quick, &res);
        else if (job == JOB_READ_BOUND) child_read_bound(quick, &res);
        else child_case(c, quick, threads, &res);
        const char *p = (const char *)&res;
        size_t left = sizeof res;
        while (left) {
            ssize_t w = write(fd[1], p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) _exit(3);
            p += w;
            left -= (size_t)w;
        }
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    char *p = (char *)r;
    while (got < sizeof *r) {
        ssize_t n = read(fd[0], p + got, sizeof *r - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd[0]);
    int wst = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &wst, 0, &ru) < 0 && errno == EINTR) {}
    *maxrss_kib = ru.ru_maxrss;
    if (got != sizeof *r) {
        memset(r, 0, sizeof *r);
        r->status = RES_FAILED;
        if (WIFSIGNALED(wst))
            snprintf(r->msg, sizeof r->msg, "child killed by signal %d", WTERMSIG(wst));
        else
            snprintf(r->msg, sizeof r->msg, "child exited with status %d and no result",
                     WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
    }
}

/* ------------------------------------------------------------------------
 * PyTorch side (torch_reference.py) */

enum { MAX_TORCH = 32 };

typedef struct torch_rec {
    char impl[32], name[32];
    int threads;
    double sps, sec;
} torch_rec;

/* The value after "key": in one line of json.dumps output (fixed format). */
static int json_get_str(const char *line, const char *key, char *dst, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(line, pat);
    if (!p) return -1;
    p += strlen(pat);
    size_t i = 0;
    while (*p && *p != '"' && i + 1 < cap) dst[i++] = *p++;
    dst[i] = 0;
    return 0;
}

static int json_get_num(const char *line, const char *key, double *v) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    if (!p) return -1;
    char *end;
    *v = strtod(p + strlen(pat), &end);
    return end == p + strlen(pat) ? -1 : 0;
}

static int file_exists(const char *path) { return path && access(path, R_OK) == 0; }

/* Runs the script once for `threads`, echoes its lines as {"torch": ...}
 * records and keeps the timings. Returns the number kept, -1 on failure. */
static int run_torch(const bench_opts *o, int threads, FILE *out, torch_rec *recs, int cap) {
    const char *py = o->python ? o->python : "/usr/bin/python3";
    const char *script = o->torch_script ? o->torch_script : ELM_BENCH_TORCH_SCRIPT;
    const char *official = o->official;
    if (!official && file_exists("/tmp/elmneuron/src/expressive_leaky_memory_neuron.py"))
        official = "/tmp/elmneuron";
    const bench_case *nio = &cases[1];
    char cmd[2048];
    /* Shell quoting: the paths are the user's own, single quotes suffice
     * unless they contain one, which we refuse. */
    if (strchr(py, '\'') || strchr(script, '\'') || (official && strchr(official, '\''))) {
        fprintf(out, "{\"torch_error\": \"paths with single quotes are not supported\"}\n");
        return -1;
    }
    int n = snprintf(cmd, sizeof cmd,
                     "'%s' '%s' --threads %d --batch %zu --steps %zu --cases "
                     "forward_seq,train_step,stream_step %s%s%s%s 2>&1",
                     py, script, threads, nio->B, case_T(nio, o->quick),
                     o->quick ? "--impl own --iters 1 --train-iters 1 --warmup 1 "
                                "--stream-steps 100 "
                              : "",
                     official && !o->quick ? "--official '" : "",
                     official && !o->quick ? official : "", official && !o->quick ? "'" : "");
    if (n < 0 || (size_t)n >= sizeof cmd) return -1;
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[8192];
    int kept = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        torch_rec t;
        memset(&t, 0, sizeof t);
        if (line[0] == '{' && !json_get_str(line, "impl", t.impl, sizeof t.impl) &&
            !json_get_str(line, "case", t.name, sizeof t.name) &&
            !json_get_num(line, "sample_steps_per_s", &t.sps) &&
            !json_get_num(line, "seconds_per_iter", &t.sec)) {
            t.threads = threads;
            if (kept < cap) recs[kept++] = t;
            fprintf(out, "{\"torch\": %s}\n", line);
        } else if (line[0] == '{') {
            fprintf(out, "{\"torch\": %s}\n", line); /* the agreement line */
        } else {
            fputs("{\"torch_output\": ", out);
            json_str(out, line);
            fputs("}\n", out);
        }
        fflush(out);
    }
    int st = pclose(p);
    if (st != 0) {
        fprintf(out, "{\"torch_error\": \"torch_reference.py exited with status %d\", "
                     "\"threads\": %d}\n",
                WIFEXITED(st) ? WEXITSTATUS(st) : -1, threads);
        return kept ? kept : -1;
    }
    return kept;
}

/* ------------------------------------------------------------------------
 * The run */

static int selected(const bench_opts *o, const bench_case *c) {
    if (!o->cases || !*o->cases) return 1;
    const char *s = o->cases;
    while (*s) {
        size_t len = strcspn(s, ",");
        if (len && (strncmp(c->name, s, len) == 0 || (strlen(c->family) == len &&
                                                      strncmp(c->family, s, len) == 0)))
            return 1;
        s += len;
        if (*s == ',') s++;
    }
    return 0;
}

static void print_config(FILE *out, const bench_case *c, int quick) {
    fprintf(out,
            "\"config\": {\"n_in\": %d, \"n_out\": %d, \"n_b\": %d, \"k\": %d, \"n_m\": %d, "
            "\"H\": %d, \"L\": %d, \"activation\": \"%s\", \"formulation\": \"v1\", "
            "\"routing\": \"%s\", \"tau_m_max\": %g, \"dt\": %g, \"input\": \"%s\", "
            "\"density\": %g",
            c->n_in, c->n_out, case_nb(c), c->k, c->n_m, c->H, c->L,
            c->act == ELM_SILU ? "silu" : "relu",
            c->routing == ELM_ROUTING_NEURONIO ? "neuronio" : "none", c->tau_m_max, c->dt,
            c->input == IN_ONEHOT ? "onehot" : c->events ? "spike_events" : "spikes",
            c->input == IN_ONEHOT ? 1.0 / c->n_in : c->density);
    if (c->kind == K_TRAIN)
        fprintf(out, ", \"loss\": \"%s\", \"optimizer\": \"%s\", \"lr\": %g, \"dropout\": %g, "
                     "\"burn_in\": %zu",
                elm_loss_kind_name(c->loss),
                c->optim == ELM_OPTIM_ADAM ? "adam" : c->optim == ELM_OPTIM_ADAMAX ? "adamax" : "?",
                c->lr, c->dropout, quick ? c->burn_in_quick : c->burn_in);
    fputs("}", out);
}

int bench_run(const bench_opts *o, FILE *out) {
    /* BLIS stays on one thread: libelm's threads are what is measured, and
     * the peak is a single-core figure. BLIS reads this at initialisation,
     * which happens in each child. */
    setenv("BLIS_NUM_THREADS", "1", 1);
    int failed = 0;
    double peak = 0;
    if (!o->no_peak) {
        bench_result r;
        long rss;
        run_forked(JOB_PEAK, NULL, o->quick, 1, &r, &rss);
        fputs("{\"peak\": \"sgemm\", ", out);
        if (r.status == RES_OK) {
            int n = o->quick ? 1200 : 2000;
            peak = r.gflops_peak;
            fprintf(out, "\"m\": %d, \"n\": %d, \"k\": %d, \"threads\": 1, \"repeats\": %d, "
                         "\"seconds_best\": %.6f, \"gflops\": %.2f, \"gemm\": ",
                    n, n, n, r.reps, r.sec_min, peak);
            json_str(out, r.gemm);
        } else {
            fputs("\"gflops\": null, \"reason\": ", out);
            json_str(out, r.msg);
            if (r.status == RES_FAILED) failed = 1;
        }
        fputs("}\n", out);
        fflush(out);
        run_forked(JOB_READ_BOUND, NULL, o->quick, 1, &r, &rss);
        fputs("{\"bound\": \"read_step_weights\", ", out);
        if (r.status == RES_OK)
            fprintf(out, "\"for_case\": \"%s\", \"bytes\": %zu, \"repeats\": %d, \"us_best\": %.4f, "
                         "\"us_median\": %.4f, \"gb_per_s\": %.4g}\n",
                    cases[0].name, r.tape_bytes, r.reps, r.sec_min * 1e6, r.sec_median * 1e6,
                    (double)r.tape_bytes / r.sec_min / 1e9);
        else {
            fputs("\"us_best\": null, \"reason\": ", out);
            json_str(out, r.msg);
            fputs("}\n", out);
            failed = 1;
        }
        fflush(out);
    }

    /* libelm's figures per (case, threads), kept for the ratios */
    double sps[N_CASES][BENCH_MAX_THREADS];
    memset(sps, 0, sizeof sps);
    for (int ti = 0; ti < o->n_threads; ti++) {
        const int threads = o->threads[ti];
        for (int ci = 0; ci < N_CASES; ci++) {
            const bench_case *c = &cases[ci];
            if (!selected(o, c)) continue;
            const size_t B = c->B, T = c->kind == K_STREAM ? 1 : case_T(c, o->quick);
            fprintf(out, "{\"case\": \"%s\", \"family\": \"%s\", \"kind\": \"%s\", ", c->name,
                    c->family, kind_name(c->kind));
            print_config(out, c, o->quick);
            fprintf(out, ", \"B\": %zu, \"T\": %zu, \"threads\": %d, \"checkpoint\": %s, ", B, T,
                    threads, c->tape_flags & ELM_TAPE_CHECKPOINT ? "true" : "false");
            if (threads > (int)B) {
                fprintf(out, "\"skipped\": \"B = %zu: threads split the batch, so at most %zu\"}\n",
                        B, B);
                fflush(out);
                continue;
            }
            bench_result r;
            long rss;
            run_forked(JOB_CASE, c, o->quick, threads, &r, &rss);
            if (r.status == RES_SKIPPED) {
                fputs("\"skipped\": ", out);
                json_str(out, r.msg);
                fputs("}\n", out);
                fflush(out);
                continue;
            }
            if (r.status == RES_FAILED) {
                failed = 1;
                fputs("\"error\": ", out);
                json_str(out, r.msg);
                fputs("}\n", out);
                fflush(out);
                continue;
            }
            const double steps = (double)B * (double)T;
            const double rate = steps / r.sec_median;
            const double flops = case_flops(c), gf = flops * rate / 1e9;
            sps[ci][ti] = rate;
            fprintf(out,
                    "\"repeats\": %d, \"seconds_per_call\": %.6g, \"seconds_min\": %.6g, "
                    "\"sample_steps_per_s\": %.1f, \"us_per_step\": %.4f, "
                    "\"flop_per_sample_step\": %.0f, \"gflops\": %.3f, \"peak_gflops\": ",
                    r.reps, r.sec_median, r.sec_min, rate, 1e6 * r.sec_median / (double)T, flops,
                    gf);
            json_num(out, "%.2f", peak);
            fputs(", \"peak_fraction\": ", out);
            json_num(out, "%.4f", peak > 0 ? gf / peak : 0);
            fprintf(out, ", \"max_rss_kib\": %ld", rss);
            if (c->kind == K_TRAIN)
                fprintf(out, ", \"tape_bytes\": %zu, \"loss\": %.6g", r.tape_bytes, r.loss);
            fputs(", \"gemm\": ", out);
            json_str(out, r.gemm);
            fputs("}\n", out);
            fflush(out);
        }
    }

    if (o->torch) {
        torch_rec recs[MAX_TORCH * BENCH_MAX_THREADS];
        int n_rec = 0;
        for (int ti = 0; ti < o->n_threads; ti++) {
            int k = run_torch(o, o->threads[ti], out, recs + n_rec, MAX_TORCH);
            if (k < 0) {
                fprintf(out, "{\"torch_error\": \"could not run torch_reference.py\", "
                             "\"threads\": %d}\n", o->threads[ti]);
                continue;
            }
            n_rec += k;
        }
        /* One ratio line per (case, threads, torch implementation); the
         * fastest PyTorch figure is the one to quote (bench/README.md). */
        for (int ti = 0; ti < o->n_threads; ti++) {
            for (int ci = 0; ci < N_CASES; ci++) {
                const bench_case *c = &cases[ci];
                if (!c->torch_case || sps[ci][ti] <= 0) continue;
                double best = 0;
                for (int i = 0; i < n_rec; i++)
                    if (recs[i].threads == o->threads[ti] && !strcmp(recs[i].name, c->torch_case) &&
                        recs[i].sps > best)
                        best = recs[i].sps;
                for (int i = 0; i < n_rec; i++) {
                    if (recs[i].threads != o->threads[ti] || strcmp(recs[i].name, c->torch_case))
                        continue;
                    fprintf(out,
                            "{\"ratio\": \"libelm/torch\", \"case\": \"%s\", \"torch_case\": "
                            "\"%s\", \"torch_impl\": \"%s\", \"threads\": %d, "
                            "\"libelm_sample_steps_per_s\": %.1f, "
                            "\"torch_sample_steps_per_s\": %.1f, \"speedup\": %.3f, "
                            "\"fastest_torch\": %s}\n",
                            c->name, c->torch_case, recs[i].impl, o->threads[ti], sps[ci][ti],
                            recs[i].sps, sps[ci][ti] / recs[i].sps,
                            recs[i].sps == best ? "true" : "false");
                }
            }
        }
        fflush(out);
    }
    return failed;
}

void bench_opts_init(bench_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_threads = 2;
    o->threads[0] = 1;
    o->threads[1] = 2;
}

int bench_parse_threads(bench_opts *o, const char *list) {
    int n = 0;
    const char *s = list;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 1 || v > 64 || n == BENCH_MAX_THREADS) return -1;
        o->threads[n++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    if (!n) return -1;
    o->n_threads = n;
    return 0;
}
