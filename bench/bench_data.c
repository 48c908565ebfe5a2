/* Input throughput of every dataset source next to the training step it
 * feeds: batches per second read on the calling thread (no prefetch, so
 * this is the full cost of building a batch), and the time of one training
 * step (tape forward, loss, backward, Adam) of an ELM sized for that data,
 * one thread. Input is not the bottleneck when ms_per_batch is well below
 * train_step_ms; with ELM_DATASET_PREFETCH it overlaps the step entirely.
 * Prints one JSON line per source.
 *
 *   bench_data [--quick] [--shd FILE.h5] [--neuronio FILE.nio]
 *              [--idx IMAGES LABELS]
 *
 * Sources without a file given are measured on what exists here: SHD as
 * event lists with SHD-like statistics (700 channels, 1 s, 2 ms bins), IDX
 * on Debian's Fashion-MNIST when installed, ListOps from the generator. */
#define _POSIX_C_SOURCE 199309L
#include <elm.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

_Noreturn static void die(const char *what, int rc) {
    fprintf(stderr, "bench_data: %s: %s (%s)\n", what, elm_strerror(rc), elm_last_error());
    exit(1);
}

static uint64_t lcg(uint64_t *r) {
    *r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
    return *r >> 33;
}

typedef struct sizes {
    size_t T, n_in, n_target, n_label;
} sizes;

static sizes size_of(const elm_dataset *ds) {
    sizes s;
    elm_dataset_size(ds, ELM_DATASET_STEPS, &s.T);
    elm_dataset_size(ds, ELM_DATASET_INPUTS, &s.n_in);
    elm_dataset_size(ds, ELM_DATASET_TARGETS, &s.n_target);
    elm_dataset_size(ds, ELM_DATASET_LABELS, &s.n_label);
    return s;
}

/* Seconds per batch of B over `batches` batches (restarting epochs as
 * needed), building on this thread. */
static double time_batches(elm_dataset *ds, size_t B, int batches, float *x, float *tg,
                           int32_t *lb, int64_t *len, const sizes *s) {
    uint64_t epoch = 0;
    if (elm_dataset_start_epoch(ds, epoch)) die("start_epoch", -1);
    double t0 = now();
    for (int k = 0; k < batches; k++) {
        size_t count;
        int rc = elm_dataset_next(ds, B, x, s->n_target ? tg : NULL, s->n_label ? lb : NULL, len,
                                  &count);
        if (rc) die("next", rc);
        if (count < B) {
            if ((rc = elm_dataset_start_epoch(ds, ++epoch))) die("start_epoch", rc);
            k--;
        }
    }
    return (now() - t0) / batches;
}

/* With prefetch on: the seconds the caller waits in next() per batch when
 * it spends `busy` seconds (a stand-in for the training step) between
 * batches. */
static double time_waits(elm_dataset *ds, size_t B, int batches, double busy, float *x,
                         float *tg, int32_t *lb, int64_t *len, const sizes *s) {
    if (elm_dataset_set(ds, ELM_DATASET_PREFETCH, 1)) die("prefetch", -1);
    uint64_t epoch = 0;
    if (elm_dataset_start_epoch(ds, epoch)) die("start_epoch", -1);
    double waited = 0;
    for (int k = 0; k < batches; k++) {
        size_t count;
        double t0 = now();
        int rc = elm_dataset_next(ds, B, x, s->n_target ? tg : NULL, s->n_label ? lb : NULL, len,
                                  &count);
        waited += now() - t0;
        if (rc) die("next", rc);
        if (count < B) {
            if ((rc = elm_dataset_start_epoch(ds, ++epoch))) die("start_epoch", rc);
            k--;
            continue;
        }
        struct timespec ts = {(time_t)busy, (long)((busy - (double)(time_t)busy) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return waited / batches;
}

/* One training step of a default ELM (n_m 100) for this data: median of
 * `reps` steps on the first batch. */
static double time_step(const sizes *s, size_t B, size_t n_out, elm_loss_kind kind, float *x,
                        float *tg, int32_t *lb, int64_t *len, int reps) {
    elm_config *cfg;
    elm_model *m;
    elm_optimizer *opt;
    elm_loss *loss;
    elm_trainer *tr;
    int rc = elm_config_create(&cfg);
    if (!rc) rc = elm_config_set(cfg, ELM_NUM_INPUT, (double)s->n_in);
    if (!rc) rc = elm_config_set(cfg, ELM_NUM_OUTPUT, (double)n_out);
    if (!rc) rc = elm_config_set(cfg, ELM_NUM_MEMORY, 100);
    if (!rc) rc = elm_model_create(cfg, 1, &m);
    if (rc) die("model", rc);
    elm_config_free(cfg);
    if ((rc = elm_optimizer_create(m, ELM_OPTIM_ADAM, &opt))) die("optimizer", rc);
    if ((rc = elm_loss_create(kind, n_out, &loss))) die("loss", rc);
    if ((rc = elm_trainer_create(m, opt, loss, B, s->T, 0, &tr))) die("trainer", rc);
    double best = 1e30, t[16];
    for (int i = 0; i < reps + 1; i++) {
        double L, t0 = now();
        rc = elm_trainer_step(tr, x, s->T, kind == ELM_LOSS_NEURONIO ? tg : NULL,
                              kind == ELM_LOSS_NEURONIO ? NULL : lb, len, &L);
        if (rc) die("step", rc);
        if (i) t[i - 1] = now() - t0;
    }
    for (int i = 0; i < reps; i++)
        if (t[i] < best) best = t[i];
    elm_trainer_free(tr);
    elm_loss_free(loss);
    elm_optimizer_free(opt);
    elm_model_free(m);
    return best;
}

static void run(const char *name, elm_dataset *ds, size_t B, size_t n_out, elm_loss_kind kind,
                int quick, const char *note) {
    sizes s = size_of(ds);
    float *x = malloc(B * s.T * s.n_in * sizeof *x);
    float *tg = malloc(B * s.T * (s.n_target ? s.n_target : 1) * sizeof *tg);
    int32_t *lb = malloc(B * (s.n_label ? s.n_label : 1) * sizeof *lb);
    int64_t *len = malloc(B * sizeof *len);
    if (!x || !tg || !lb || !len) die("out of memory", ELM_E_NOMEM);
    double per = time_batches(ds, B, quick ? 3 : 40, x, tg, lb, len, &s);
    double step = quick ? 0 : time_step(&s, B, n_out, kind, x, tg, lb, len, 3);
    double wait = quick ? 0 : time_waits(ds, B, 10, step, x, tg, lb, len, &s);
    printf("{\"case\": \"data_%s\", \"B\": %zu, \"T\": %zu, \"n_in\": %zu, "
           "\"batches_per_s\": %.1f, \"ms_per_batch\": %.3f, \"train_step_ms\": %.1f, "
           "\"input_share\": %.4f, \"ms_wait_with_prefetch\": %.3f, \"note\": \"%s\"}\n",
           name, B, s.T, s.n_in, 1.0 / per, 1e3 * per, 1e3 * step, step > 0 ? per / step : 0.0,
           1e3 * wait, note);
    fflush(stdout);
    free(x);
    free(tg);
    free(lb);
    free(len);
}

static void skip(const char *name, const char *why) {
    printf("{\"case\": \"data_%s\", \"skipped\": \"%s\"}\n", name, why);
}

/* SHD-like event lists: N samples of ~`per` events over 700 channels in
 * [0, 1000) ms. */
static elm_dataset *shd_like(size_t N, size_t per, int64_t **off, float **t, int32_t **c,
                             int32_t **lab) {
    *off = malloc((N + 1) * sizeof **off);
    *t = malloc(N * per * sizeof **t);
    *c = malloc(N * per * sizeof **c);
    *lab = malloc(N * sizeof **lab);
    if (!*off || !*t || !*c || !*lab) die("out of memory", ELM_E_NOMEM);
    uint64_t r = 7;
    for (size_t i = 0; i <= N; i++) (*off)[i] = (int64_t)(i * per);
    for (size_t e = 0; e < N * per; e++) {
        (*t)[e] = (float)(lcg(&r) % 1000000) / 1000.0f;
        (*c)[e] = (int32_t)(lcg(&r) % 700);
    }
    for (size_t i = 0; i < N; i++) (*lab)[i] = (int32_t)(i % 20);
    elm_dataset *ds;
    int rc = elm_dataset_from_events(N, 700, *off, *t, *c, *lab, 2.0, 1000.0, &ds);
    if (rc) die("events", rc);
    return ds;
}

int main(int argc, char **argv) {
    int quick = 0;
    const char *shd = NULL, *nio = NULL, *img = NULL, *lab = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--shd") && i + 1 < argc) shd = argv[++i];
        else if (!strcmp(argv[i], "--neuronio") && i + 1 < argc) nio = argv[++i];
        else if (!strcmp(argv[i], "--idx") && i + 2 < argc) img = argv[++i], lab = argv[++i];
        else {
            fprintf(stderr, "usage: bench_data [--quick] [--shd FILE.h5] [--neuronio FILE.nio] "
                            "[--idx IMAGES LABELS]\n");
            return 2;
        }
    }
    elm_dataset *ds;
    int rc;

    /* Caller arrays: a memcpy per sample, the floor of any source. */
    {
        size_t N = 64, T = 500, n_in = 700;
        float *x = calloc(N * T * n_in, sizeof *x);
        int32_t *l = calloc(N, sizeof *l);
        if (!x || !l) die("out of memory", ELM_E_NOMEM);
        if ((rc = elm_dataset_from_arrays(N, T, n_in, x, NULL, 0, l, 1, NULL, &ds)))
            die("arrays", rc);
        run("arrays", ds, 8, 20, ELM_LOSS_CE_LAST, quick, "64 x (500, 700) float32");
        elm_dataset_free(ds);
        free(x);
        free(l);
    }

    /* SHD: the real file if given, else event lists with its statistics. */
    if (shd) {
        if ((rc = elm_dataset_open_shd(shd, 2.0, 1000.0, &ds))) die(shd, rc);
        run("shd", ds, 8, 20, ELM_LOSS_CE_LAST, quick, "real file, 2 ms bins");
        elm_dataset_free(ds);
        if ((rc = elm_dataset_open_shd_adding(shd, 2.0, 1000.0, 256, &ds))) die(shd, rc);
        run("shd_adding", ds, 8, 19, ELM_LOSS_CE_LAST, quick, "real file, 2 ms bins, pairs");
        elm_dataset_free(ds);
    } else {
        int64_t *off;
        float *t;
        int32_t *c, *l;
        ds = shd_like(256, 8000, &off, &t, &c, &l);
        run("events_shd_like", ds, 8, 20, ELM_LOSS_CE_LAST, quick,
            "8000 random events per sample, 700 channels, 2 ms bins (no SHD file given)");
        elm_dataset_free(ds);
        free(off), free(t), free(c), free(l);
    }

    if (nio) {
        if ((rc = elm_dataset_open_neuronio(nio, 500, 1024, &ds))) die(nio, rc);
        run("neuronio", ds, 32, 2, ELM_LOSS_NEURONIO, quick, "random 500 ms windows");
        elm_dataset_free(ds);
    } else {
        skip("neuronio", "no --neuronio FILE.nio given");
    }

    static const char *fm_img = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
    static const char *fm_lab = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz";
    if (!img && access(fm_img, R_OK) == 0 && access(fm_lab, R_OK) == 0) img = fm_img, lab = fm_lab;
    if (img) {
        if ((rc = elm_dataset_open_idx(img, lab, ELM_IDX_PIXELS, 1, 0, &ds))) die(img, rc);
        run("idx_pixels_permuted", ds, 32, 10, ELM_LOSS_CE_LAST, quick, "784 x 1");
        elm_dataset_free(ds);
        if ((rc = elm_dataset_open_idx(img, lab, ELM_IDX_ROWS, 0, 0, &ds))) die(img, rc);
        run("idx_rows", ds, 32, 10, ELM_LOSS_CE_LAST, quick, "28 x 28");
        elm_dataset_free(ds);
    } else {
        skip("idx", "no IDX files (apt-get install dataset-fashion-mnist, or --idx)");
    }

    if ((rc = elm_dataset_generate_listops(quick ? 64 : 256, 1, 500, 2000, &ds)))
        die("listops", rc);
    run("listops_generated", ds, 32, 10, ELM_LOSS_CE_LAST, quick, "lengths 500-2000");
    elm_dataset_free(ds);
    return 0;
}
