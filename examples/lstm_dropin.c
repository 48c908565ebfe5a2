/* Swapping an LSTM for an ELM neuron in an existing simulation loop.
 *
 * Many simulators and control loops already talk to a recurrent cell
 * through a small "step" interface: create it, feed it x_t every time step
 * and read y_t, reset it between trials, free it. Below, `cell_ops` is that
 * interface, with two implementations:
 *
 *   lstm_ops  a tiny LSTM cell in plain C (random weights, for the demo)
 *   elm_ops   libelm: the hidden state lives in an elm_state, and one
 *             elm_state_step() call is one time step
 *
 * The simulation loop `run_trials` knows nothing about either; switching
 * the model is the one line marked SWITCH in main().
 *
 *   lstm_dropin [--quick] [--lstm]
 *
 * Build against an installed libelm with:
 *   cc lstm_dropin.c $(pkg-config --cflags --libs elm) -lm */
#define _POSIX_C_SOURCE 199309L
#include <elm.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * The interface the simulation is written against. A cell maps x_t (n_in)
 * to y_t (n_out) and keeps its hidden state h between calls. Every
 * function returns 0 on success, non-zero on failure. */
typedef struct cell cell; /* opaque: each implementation defines its own */
typedef struct cell_ops {
    const char *name;
    int (*create)(size_t n_in, size_t n_out, uint64_t seed, cell **out);
    int (*step)(cell *c, const float *x, float *y); /* (x_t, h) -> y_t, h updated */
    int (*reset)(cell *c);                          /* h = 0: a new trial */
    void (*free)(cell *c);
} cell_ops;

/* ------------------------------------------------------------------------
 * Implementation 1: an LSTM cell (PyTorch's gate equations) with a linear
 * readout, hidden size 32, weights uniform in +-1/sqrt(hidden) like
 * torch.nn.LSTMCell's initialisation. */
#define LSTM_HIDDEN 32

struct lstm_cell {
    size_t n_in, n_out, H;
    float *w_ih, *w_hh, *b; /* (4H, n_in), (4H, H), (4H): gates i, f, g, o */
    float *w_y, *b_y;       /* readout (n_out, H), (n_out) */
    float *h, *c, *gates;   /* state (H), (H); workspace (4H) */
};

static float lstm_rand(uint64_t *r, float scale) {
    *r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
    return scale * (2.0f * (float)((*r >> 40) / 16777216.0) - 1.0f);
}

static float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

static void lstm_free(cell *c_) {
    struct lstm_cell *c = (struct lstm_cell *)c_;
    if (!c) return;
    free(c->w_ih), free(c->w_hh), free(c->b), free(c->w_y), free(c->b_y);
    free(c->h), free(c->c), free(c->gates), free(c);
}

static int lstm_create(size_t n_in, size_t n_out, uint64_t seed, cell **out) {
    struct lstm_cell *c = calloc(1, sizeof *c);
    if (!c) return 1;
    size_t H = LSTM_HIDDEN;
    c->n_in = n_in, c->n_out = n_out, c->H = H;
    c->w_ih = malloc(4 * H * n_in * sizeof(float));
    c->w_hh = malloc(4 * H * H * sizeof(float));
    c->b = malloc(4 * H * sizeof(float));
    c->w_y = malloc(n_out * H * sizeof(float));
    c->b_y = malloc(n_out * sizeof(float));
    c->h = calloc(H, sizeof(float));
    c->c = calloc(H, sizeof(float));
    c->gates = malloc(4 * H * sizeof(float));
    if (!c->w_ih || !c->w_hh || !c->b || !c->w_y || !c->b_y || !c->h || !c->c || !c->gates) {
        lstm_free((cell *)c);
        return 1;
    }
    uint64_t r = seed | 1;
    float k = 1.0f / sqrtf((float)H);
    for (size_t i = 0; i < 4 * H * n_in; i++) c->w_ih[i] = lstm_rand(&r, k);
    for (size_t i = 0; i < 4 * H * H; i++) c->w_hh[i] = lstm_rand(&r, k);
    for (size_t i = 0; i < 4 * H; i++) c->b[i] = lstm_rand(&r, k);
    for (size_t i = 0; i < n_out * H; i++) c->w_y[i] = lstm_rand(&r, k);
    for (size_t i = 0; i < n_out; i++) c->b_y[i] = lstm_rand(&r, k);
    *out = (cell *)c;
    return 0;
}

static int lstm_step(cell *c_, const float *x, float *y) {
    struct lstm_cell *c = (struct lstm_cell *)c_;
    size_t H = c->H;
    for (size_t g = 0; g < 4 * H; g++) { /* gates = W_ih x + W_hh h + b */
        float s = c->b[g];
        for (size_t j = 0; j < c->n_in; j++) s += c->w_ih[g * c->n_in + j] * x[j];
        for (size_t j = 0; j < H; j++) s += c->w_hh[g * H + j] * c->h[j];
        c->gates[g] = s;
    }
    for (size_t j = 0; j < H; j++) {
        float i = sigm(c->gates[j]), f = sigm(c->gates[H + j]);
        float g = tanhf(c->gates[2 * H + j]), o = sigm(c->gates[3 * H + j]);
        c->c[j] = f * c->c[j] + i * g;
        c->h[j] = o * tanhf(c->c[j]);
    }
    for (size_t k = 0; k < c->n_out; k++) { /* y = W_y h + b_y */
        float s = c->b_y[k];
        for (size_t j = 0; j < H; j++) s += c->w_y[k * H + j] * c->h[j];
        y[k] = s;
    }
    return 0;
}

static int lstm_reset(cell *c_) {
    struct lstm_cell *c = (struct lstm_cell *)c_;
    memset(c->h, 0, c->H * sizeof(float));
    memset(c->c, 0, c->H * sizeof(float));
    return 0;
}

static const cell_ops lstm_ops = {"LSTM (hidden 32)", lstm_create, lstm_step, lstm_reset,
                                  lstm_free};

/* ------------------------------------------------------------------------
 * Implementation 2: an ELM neuron. The model (parameters) and the state
 * (the synaptic traces and memory of one stream, B = 1) are libelm
 * objects; the adapter only forwards calls and turns libelm's status codes
 * into a message. A real application would load trained parameters with
 * elm_model_load("neuron.elm", &model) instead of a fresh random model. */
struct elm_cell {
    elm_model *model;
    elm_state *state;
};

static int elm_failed(const char *what, int rc) {
    fprintf(stderr, "%s failed: %s (%s)\n", what, elm_strerror(rc), elm_last_error());
    return 1;
}

static void elm_cell_free(cell *c_) {
    struct elm_cell *c = (struct elm_cell *)c_;
    if (!c) return;
    elm_state_free(c->state); /* the state before its model */
    elm_model_free(c->model);
    free(c);
}

static int elm_cell_create(size_t n_in, size_t n_out, uint64_t seed, cell **out) {
    struct elm_cell *c = calloc(1, sizeof *c);
    if (!c) return 1;
    elm_config *cfg = NULL;
    int rc = elm_config_create(&cfg);
    if (rc == ELM_OK) rc = elm_config_set(cfg, ELM_NUM_INPUT, (double)n_in);
    if (rc == ELM_OK) rc = elm_config_set(cfg, ELM_NUM_OUTPUT, (double)n_out);
    if (rc == ELM_OK) rc = elm_config_set(cfg, ELM_NUM_MEMORY, 20); /* n_m: a small neuron */
    if (rc == ELM_OK) rc = elm_model_create(cfg, seed, &c->model);
    elm_config_free(cfg);
    if (rc == ELM_OK) rc = elm_state_create(c->model, 1, &c->state);
    if (rc != ELM_OK) {
        elm_failed("creating the ELM", rc);
        elm_cell_free((cell *)c);
        return 1;
    }
    *out = (cell *)c;
    return 0;
}

static int elm_cell_step(cell *c_, const float *x, float *y) {
    struct elm_cell *c = (struct elm_cell *)c_;
    int rc = elm_state_step(c->state, x, y); /* x (1, n_in) -> y (1, n_out) */
    return rc == ELM_OK ? 0 : elm_failed("elm_state_step", rc);
}

static int elm_cell_reset(cell *c_) {
    struct elm_cell *c = (struct elm_cell *)c_;
    int rc = elm_state_reset(c->state, ELM_ALL_STREAMS);
    return rc == ELM_OK ? 0 : elm_failed("elm_state_reset", rc);
}

static const cell_ops elm_ops = {"ELM (n_m 20)", elm_cell_create, elm_cell_step,
                                 elm_cell_reset, elm_cell_free};

/* ------------------------------------------------------------------------
 * The simulation: a toy environment that drives the cell with a noisy
 * sine stimulus on n_in channels for `steps` ms per trial and integrates
 * the cell's first output (a "motor command") into a position. It only
 * ever uses the cell_ops interface. */
#define N_IN 8
#define N_OUT 2

static int run_trials(const cell_ops *ops, int trials, int steps) {
    cell *c;
    if (ops->create(N_IN, N_OUT, 42, &c) != 0) {
        fprintf(stderr, "could not create the %s cell\n", ops->name);
        return 1;
    }
    uint64_t r = 7;
    float x[N_IN], y[N_OUT];
    for (int trial = 0; trial < trials; trial++) {
        if (ops->reset(c) != 0) break; /* every trial starts from rest */
        double position = 0, energy = 0;
        for (int t = 0; t < steps; t++) {
            for (int i = 0; i < N_IN; i++) /* phase-shifted sines + noise */
                x[i] = (float)(0.5 + 0.5 * sin(0.02 * t + 0.8 * i)) + lstm_rand(&r, 0.1f);
            if (ops->step(c, x, y) != 0) {
                ops->free(c);
                return 1;
            }
            position += 1e-3 * y[0]; /* dt = 1 ms */
            energy += (double)y[1] * y[1];
        }
        printf("  trial %d: final position %+.4f, mean y1^2 %.4f\n", trial, position,
               energy / steps);
    }
    ops->free(c);
    return 0;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    int quick = 0, use_lstm = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--lstm") == 0) use_lstm = 1;
        else {
            fprintf(stderr, "usage: %s [--quick] [--lstm]\n", argv[0]);
            return 2;
        }
    }
    const cell_ops *ops = &elm_ops; /* SWITCH: &lstm_ops for the LSTM */
    if (use_lstm) ops = &lstm_ops;  /* (or choose it on the command line) */

    int trials = 3, steps = quick ? 200 : 2000;
    printf("simulating %d trials of %d ms with the %s cell\n", trials, steps, ops->name);
    double t0 = now();
    if (run_trials(ops, trials, steps) != 0) return 1;
    printf("%.2f us per step\n", 1e6 * (now() - t0) / (trials * steps));
    return 0;
}
