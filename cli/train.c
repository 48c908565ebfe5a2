/* elm train CONFIG.yaml: a whole training run from a training config
 * (elm.h section 12), with a progress display, a metrics log, resumable
 * checkpoints and a clean Ctrl-C. */
#include "cli.h"

#include <elm.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "usage: elm train CONFIG.yaml [--out MODEL.elm] [--log METRICS.tsv] [--resume]\n"
    "                 [--seed N] [--quiet]\n"
    "\n"
    "Train the model a training config describes (docs/training.md), on the data\n"
    "of its data section (paths relative to the config's folder).\n"
    "\n"
    "  --out MODEL.elm    where the trained model goes (default: CONFIG's folder,\n"
    "                     <stem>.elm); the best epoch's parameters, saved atomically\n"
    "  --log METRICS.tsv  one line per epoch (default: <stem>.metrics.tsv beside the\n"
    "                     config); appended to with --resume, else rewritten\n"
    "  --resume           continue from the checkpoint (training.checkpoint, else\n"
    "                     <stem>.ckpt.elm) when it exists\n"
    "  --seed N           seed of the model's initial parameters (default:\n"
    "                     training.seed)\n"
    "  --quiet            no progress display and no per-epoch lines\n"
    "\n"
    "Ctrl-C stops at the next step, saves a checkpoint and exits with status 130;\n"
    "run the same command with --resume to continue exactly where it stopped.\n"
    "A second Ctrl-C ends the program at once.\n";

/* Set by the SIGINT handler, read by the progress callback. */
static volatile sig_atomic_t interrupt_requested = 0;

static void on_sigint(int sig) {
    (void)sig;
    interrupt_requested = 1;
}

typedef struct progress {
    int tty, quiet, stopped, bar_shown, has_val;
    double epochs;          /* ELM_TRAIN_EPOCHS */
    size_t batches;         /* per epoch; 0 when unknown */
    double step0;           /* optimizer steps when this process started */
    double t0, t_epoch, t_draw;
    FILE *log;
    const char *log_path;
    int log_failed;
} progress;

static double metric(const elm_trainer *tr, elm_metric key) {
    double v = NAN;
    if (elm_trainer_metric(tr, key, &v) != ELM_OK) v = NAN;
    return v;
}

static void fmt_duration(double s, char *buf, size_t cap) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, cap, "--:--");
        return;
    }
    unsigned long t = (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%lu:%02lu", t / 60, t % 60);
}

/* The one-line display of a terminal, redrawn in place at most 10 times a
 * second. */
static void draw_bar(progress *p, const elm_trainer *tr) {
    double now = cli_now();
    if (now - p->t_draw < 0.1) return;
    p->t_draw = now;
    double step = metric(tr, ELM_METRIC_STEP), epoch = metric(tr, ELM_METRIC_EPOCH);
    double rate = (step - p->step0) / (now - p->t0);
    char eta[32] = "--:--", pos[64];
    if (p->batches) {
        /* steps are counted per batch, so the position within the epoch is
         * what the completed epochs do not account for */
        double in_epoch = step - epoch * (double)p->batches;
        if (in_epoch < 0) in_epoch = 0;
        if (in_epoch > (double)p->batches) in_epoch = (double)p->batches;
        snprintf(pos, sizeof pos, "%.0f/%zu", in_epoch, p->batches);
        double left = p->epochs * (double)p->batches - step;
        if (rate > 0) fmt_duration(left / rate, eta, sizeof eta);
    } else {
        snprintf(pos, sizeof pos, "%.0f", step);
    }
    fprintf(stderr, "\r\033[Kepoch %.0f/%.0f  batch %s  loss %.4g  %.2f batch/s  ETA %s",
            epoch + 1, p->epochs, pos, metric(tr, ELM_METRIC_LAST_LOSS), rate, eta);
    fflush(stderr);
    p->bar_shown = 1;
}

static void clear_bar(progress *p) {
    if (p->bar_shown) {
        fputs("\r\033[K", stderr);
        p->bar_shown = 0;
    }
}

static void log_value(FILE *f, double v, const char *sep) {
    if (isnan(v))
        fprintf(f, "nan%s", sep);
    else
        fprintf(f, "%.9g%s", v, sep);
}

static int on_progress(void *user, const elm_trainer *tr, int event) {
    progress *p = user;
    if (interrupt_requested) {
        p->stopped = 1;
        return 1;
    }
    if (event == ELM_EVENT_STEP) {
        if (p->tty && !p->quiet) draw_bar(p, tr);
        return 0;
    }
    double now = cli_now(), secs = now - p->t_epoch;
    p->t_epoch = now;
    double epoch = metric(tr, ELM_METRIC_EPOCH), step = metric(tr, ELM_METRIC_STEP),
           train_loss = metric(tr, ELM_METRIC_TRAIN_LOSS), val_loss = metric(tr, ELM_METRIC_VAL_LOSS),
           acc = metric(tr, ELM_METRIC_VAL_ACCURACY), auc = metric(tr, ELM_METRIC_VAL_AUC),
           rmse = metric(tr, ELM_METRIC_VAL_RMSE), lr = metric(tr, ELM_METRIC_LR);
    if (!p->has_val) /* the trainer's VAL metrics hold nothing then */
        val_loss = acc = auc = rmse = NAN;
    if (p->log && !p->log_failed) {
        log_value(p->log, epoch, "\t");
        log_value(p->log, step, "\t");
        log_value(p->log, train_loss, "\t");
        log_value(p->log, val_loss, "\t");
        log_value(p->log, acc, "\t");
        log_value(p->log, auc, "\t");
        log_value(p->log, rmse, "\t");
        log_value(p->log, lr, "\t");
        fprintf(p->log, "%.3f\n", secs);
        if (fflush(p->log) != 0 || ferror(p->log)) {
            /* training is worth more than its log: warn once and go on */
            p->log_failed = 1;
            fprintf(stderr, "elm: warning: cannot write the metrics log '%s'\n", p->log_path);
        }
    }
    if (!p->quiet) {
        clear_bar(p);
        char extra[128] = "";
        if (!isnan(acc))
            snprintf(extra, sizeof extra, "  val_accuracy %.4f", acc);
        else if (!isnan(auc))
            snprintf(extra, sizeof extra, "  val_auc %.6f  val_rmse %.4f", auc, rmse);
        else if (!isnan(rmse))
            snprintf(extra, sizeof extra, "  val_rmse %.4g", rmse);
        char vl[48] = "";
        if (p->has_val) snprintf(vl, sizeof vl, "  val_loss %.6g", val_loss);
        fprintf(stderr, "epoch %.0f/%.0f  step %.0f  train_loss %.6g%s%s  lr %.3g  %.1fs\n",
                epoch, p->epochs, step, train_loss, vl, extra, lr, secs);
        fflush(stderr);
    }
    return 0;
}

/* Everything a run owns, freed by release(). */
typedef struct run {
    elm_train_config *tc;
    elm_dataset *train, *val, *test;
    elm_model *model;
    elm_optimizer *opt;
    elm_loss *loss;
    elm_trainer *trainer;
    char *base_dir, *ckpt, *out, *log_path;
    FILE *log;
} run;

static void release(run *r) {
    elm_trainer_free(r->trainer);
    elm_optimizer_free(r->opt);
    elm_loss_free(r->loss);
    elm_dataset_free(r->train);
    elm_dataset_free(r->val);
    elm_dataset_free(r->test);
    elm_model_free(r->model);
    elm_train_config_free(r->tc);
    if (r->log) fclose(r->log);
    free(r->base_dir);
    free(r->ckpt);
    free(r->out);
    free(r->log_path);
}

static size_t steps_of(const elm_dataset *ds) {
    size_t T = 0;
    if (ds && elm_dataset_size(ds, ELM_DATASET_STEPS, &T) != ELM_OK) T = 0;
    return T;
}

/* Batches per training epoch as the trainer takes them; 0 when the source
 * does not know its size. */
static size_t batches_per_epoch(run *r) {
    size_t N = 0;
    double B = 1, drop = 0, max_b = 0;
    if (elm_dataset_size(r->train, ELM_DATASET_SAMPLES, &N) != ELM_OK || N == 0) return 0;
    if (elm_train_config_get(r->tc, "data.batch_size", &B) != ELM_OK || B < 1) return 0;
    if (elm_train_config_get(r->tc, "data.drop_last", &drop) != ELM_OK) drop = 0;
    if (elm_train_config_get(r->tc, "training.max_batches", &max_b) != ELM_OK) max_b = 0;
    size_t b = (size_t)B, n = drop ? N / b : (N + b - 1) / b;
    if (max_b > 0 && (double)n > max_b) n = (size_t)max_b;
    return n;
}

/* The model's record of how it was made, kept in its metadata. */
static int set_metadata(run *r, uint64_t seed, const char *config_path) {
    char buf[256];
    size_t size = 0;
    int rc = elm_train_config_to_yaml(r->tc, NULL, 0, &size);
    char *yaml = rc == ELM_OK ? malloc(size) : NULL;
    if (rc == ELM_OK && !yaml) rc = ELM_E_NOMEM;
    if (rc == ELM_OK) rc = elm_train_config_to_yaml(r->tc, yaml, size, &size);
    if (rc == ELM_OK) rc = elm_model_set_meta(r->model, "train_config", yaml);
    free(yaml);
    snprintf(buf, sizeof buf, "elm train %s (libelm %s)", config_path, elm_version_string());
    if (rc == ELM_OK) rc = elm_model_set_meta(r->model, "trained_by", buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
    if (rc == ELM_OK) rc = elm_model_set_meta(r->model, "init_seed", buf);
    static const struct { elm_metric key; const char *name; } ms[] = {
        {ELM_METRIC_EPOCH, "epochs"}, {ELM_METRIC_STEP, "steps"},
        {ELM_METRIC_BEST_EPOCH, "best_epoch"}, {ELM_METRIC_BEST, "best_val"},
    };
    for (size_t i = 0; rc == ELM_OK && i < sizeof ms / sizeof *ms; i++) {
        snprintf(buf, sizeof buf, "%.9g", metric(r->trainer, ms[i].key));
        rc = elm_model_set_meta(r->model, ms[i].name, buf);
    }
    return rc;
}

/* Test-set evaluation: prints and records the metrics that apply. */
static int evaluate_test(run *r) {
    int rc = elm_trainer_evaluate(r->trainer, r->test);
    if (rc) return cli_lib_error("evaluating the test set", rc);
    static const struct { elm_metric key; const char *name; } ms[] = {
        {ELM_METRIC_VAL_LOSS, "test_loss"}, {ELM_METRIC_VAL_ACCURACY, "test_accuracy"},
        {ELM_METRIC_VAL_AUC, "test_auc"}, {ELM_METRIC_VAL_RMSE, "test_rmse"},
    };
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
        double v = metric(r->trainer, ms[i].key);
        if (isnan(v)) continue;
        char buf[64];
        snprintf(buf, sizeof buf, "%.9g", v);
        printf("%s %s\n", ms[i].name, buf);
        if ((rc = elm_model_set_meta(r->model, ms[i].name, buf)))
            return cli_lib_error("model metadata", rc);
    }
    return CLI_OK;
}

static int open_log(run *r, int resume) {
    int fresh = 1;
    if (resume && (r->log = fopen(r->log_path, "a"))) {
        fresh = ftell(r->log) == 0;
    } else if (!resume) {
        r->log = fopen(r->log_path, "w");
    }
    if (!r->log) {
        perror(r->log_path);
        return cli_error("cannot open the metrics log '%s'", r->log_path);
    }
    if (fresh)
        fputs("epoch\tstep\ttrain_loss\tval_loss\tval_accuracy\tval_auc\tval_rmse\tlr\tseconds\n",
              r->log);
    if (fflush(r->log) != 0) return cli_error("cannot write the metrics log '%s'", r->log_path);
    return CLI_OK;
}

static int setup(run *r, const char *config_path, const char *const *opt, uint64_t *seed_out) {
    int rc = elm_train_config_load_yaml(config_path, &r->tc);
    if (rc) return cli_error("%s", elm_last_error());
    if (!(r->base_dir = cli_dirname(config_path))) return cli_error("out of memory");
    if ((rc = elm_train_config_open_data(r->tc, r->base_dir, &r->train, &r->val, &r->test)))
        return cli_lib_error("opening the data", rc);

    elm_config *mc = elm_train_config_model(r->tc);
    double n_in = 0;
    if (elm_config_get(mc, ELM_NUM_INPUT, &n_in) == ELM_OK && n_in < 1) {
        /* num_input may be left to the data, whose channel count it must be */
        size_t c = 0;
        if ((rc = elm_dataset_size(r->train, ELM_DATASET_INPUTS, &c)) ||
            (rc = elm_config_set(mc, ELM_NUM_INPUT, (double)c)))
            return cli_lib_error("model.num_input", rc);
    }
    size_t channels = 0;
    if ((rc = elm_dataset_size(r->train, ELM_DATASET_INPUTS, &channels)) ||
        (rc = elm_config_get(mc, ELM_NUM_INPUT, &n_in)))
        return cli_lib_error("model.num_input", rc);
    if (n_in != (double)channels)
        return cli_error("model.num_input is %.0f but the data has %zu input channels", n_in,
                         channels);
    double seed_d = 0;
    if ((rc = elm_train_config_get(r->tc, "training.seed", &seed_d)))
        return cli_lib_error("training.seed", rc);
    uint64_t seed = (uint64_t)seed_d;
    if (opt[3] && cli_parse_u64(opt[3], 0, UINT64_MAX, &seed))
        return cli_usage_error("train", "--seed needs a non-negative integer, got '%s'", opt[3]);
    *seed_out = seed;
    if ((rc = elm_model_create(mc, seed, &r->model))) return cli_lib_error("model", rc);

    /* The trainer's tape must hold the longest sequence of any split. */
    size_t T_max = steps_of(r->train);
    if (steps_of(r->val) > T_max) T_max = steps_of(r->val);
    if (steps_of(r->test) > T_max) T_max = steps_of(r->test);
    if ((rc = elm_train_config_build(r->tc, r->model, T_max, &r->opt, &r->loss, &r->trainer)))
        return cli_lib_error("building the trainer", rc);

    /* Paths in the config are relative to its folder, like the data's. */
    const char *ck = "";
    double every = 0;
    if ((rc = elm_train_config_get_string(r->tc, "training.checkpoint", &ck)) ||
        (rc = elm_train_config_get(r->tc, "training.checkpoint_every", &every)))
        return cli_lib_error("training.checkpoint", rc);
    r->ckpt = *ck ? cli_join(r->base_dir, ck) : cli_sibling(config_path, ".ckpt.elm");
    r->out = opt[0] ? strdup(opt[0]) : cli_sibling(config_path, ".elm");
    r->log_path = opt[1] ? strdup(opt[1]) : cli_sibling(config_path, ".metrics.tsv");
    if (!r->ckpt || !r->out || !r->log_path) return cli_error("out of memory");
    if (*ck && (rc = elm_trainer_set_checkpoint(r->trainer, r->ckpt, (uint64_t)every)))
        return cli_lib_error("training.checkpoint", rc);
    return CLI_OK;
}

static int resume_from(run *r, int quiet) {
    if (access(r->ckpt, F_OK) != 0) {
        if (!quiet)
            fprintf(stderr, "no checkpoint at '%s': starting a new run\n", r->ckpt);
        return CLI_OK;
    }
    double epochs;
    int rc = elm_train_config_get(r->tc, "training.epochs", &epochs);
    if (rc) return cli_lib_error("training.epochs", rc);
    if ((rc = elm_trainer_load(r->trainer, r->ckpt)))
        return cli_lib_error("loading the checkpoint", rc);
    /* Loading restores the saved options; the config's epoch count wins so
     * that raising it extends a finished run. */
    if ((rc = elm_trainer_set(r->trainer, ELM_TRAIN_EPOCHS, epochs)))
        return cli_lib_error("training.epochs", rc);
    if (!quiet)
        fprintf(stderr, "resuming from '%s' at epoch %.0f, step %.0f\n", r->ckpt,
                metric(r->trainer, ELM_METRIC_EPOCH), metric(r->trainer, ELM_METRIC_STEP));
    return CLI_OK;
}

static void print_start(run *r, const progress *p) {
    size_t N = 0, n_val = 0, n_test = 0, trainable = 0;
    const char *source = "";
    if (elm_train_config_get_string(r->tc, "data.source", &source) != ELM_OK) source = "?";
    if (elm_dataset_size(r->train, ELM_DATASET_SAMPLES, &N) != ELM_OK) N = 0;
    if (r->val && elm_dataset_size(r->val, ELM_DATASET_SAMPLES, &n_val) != ELM_OK) n_val = 0;
    if (r->test && elm_dataset_size(r->test, ELM_DATASET_SAMPLES, &n_test) != ELM_OK) n_test = 0;
    if (elm_model_size(r->model, ELM_SIZE_TRAINABLE, &trainable) != ELM_OK) trainable = 0;
    fprintf(stderr, "training on %s: %zu samples (%zu batches per epoch), %zu validation, %zu test;"
            " %zu trainable parameters; %.0f epochs\n",
            source, N, p->batches, n_val, n_test, trainable, p->epochs);
}

int cmd_train(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"out", 'o', 1}, {"log", 0, 1}, {"resume", 0, 0}, {"seed", 0, 1}, {"quiet", 'q', 0},
    };
    const char *opt[5], *pos[1];
    size_t n_pos;
    int st = cli_parse_args("train", argc, argv, opts, 5, opt, pos, 1, &n_pos);
    if (st < 0) {
        fputs(help, stdout);
        return CLI_OK;
    }
    if (st) return st;
    if (n_pos != 1) return cli_usage_error("train", "expected one training config (CONFIG.yaml)");
    if (opt[3]) {
        uint64_t s;
        if (cli_parse_u64(opt[3], 0, UINT64_MAX, &s))
            return cli_usage_error("train", "--seed needs a non-negative integer, got '%s'", opt[3]);
    }
    const int resume = opt[2] != NULL, quiet = opt[4] != NULL;

    run r = {0};
    uint64_t seed = 0;
    if ((st = setup(&r, pos[0], opt, &seed)) || (resume && (st = resume_from(&r, quiet))) ||
        (st = open_log(&r, resume))) {
        release(&r);
        return st;
    }

    progress p = {0};
    p.tty = isatty(STDERR_FILENO);
    p.quiet = quiet;
    p.has_val = r.val != NULL;
    p.batches = batches_per_epoch(&r);
    p.epochs = 1;
    elm_trainer_get(r.trainer, ELM_TRAIN_EPOCHS, &p.epochs);
    p.step0 = metric(r.trainer, ELM_METRIC_STEP);
    p.t0 = p.t_epoch = cli_now();
    p.log = r.log;
    p.log_path = r.log_path;
    if (!quiet) print_start(&r, &p);

    /* SA_RESETHAND: the first Ctrl-C asks for a clean stop, a second one
     * finds the default action and ends the program. */
    /* An inherited SIG_IGN (started in the background by a shell without
     * job control, nohup) is respected. */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    interrupt_requested = 0;
    if (sigaction(SIGINT, NULL, &old) != 0 ||
        (old.sa_handler != SIG_IGN && sigaction(SIGINT, &sa, NULL) != 0)) {
        release(&r);
        return cli_error("cannot install the SIGINT handler");
    }
    int rc = elm_trainer_fit(r.trainer, r.train, r.val, on_progress, &p);
    clear_bar(&p);
    if (p.stopped) {
        /* The handler is already reset; further Ctrl-C kill the save. */
        int src = elm_trainer_save(r.trainer, r.ckpt);
        if (src) {
            cli_lib_error("saving the checkpoint", src);
            release(&r);
            return CLI_FAIL;
        }
        fprintf(stderr,
                "interrupted at epoch %.0f, step %.0f; checkpoint saved to '%s'\n"
                "resume with: elm train %s --resume%s%s%s%s\n",
                metric(r.trainer, ELM_METRIC_EPOCH), metric(r.trainer, ELM_METRIC_STEP), r.ckpt,
                pos[0], opt[0] ? " --out " : "", opt[0] ? opt[0] : "", opt[1] ? " --log " : "",
                opt[1] ? opt[1] : "");
        release(&r);
        return CLI_INTERRUPTED;
    }
    sigaction(SIGINT, &old, NULL);
    if (rc) {
        cli_lib_error("training", rc);
        release(&r);
        return CLI_FAIL;
    }
    if (r.test && (st = evaluate_test(&r))) {
        release(&r);
        return st;
    }
    if ((rc = set_metadata(&r, seed, pos[0]))) {
        cli_lib_error("model metadata", rc);
        release(&r);
        return CLI_FAIL;
    }
    if ((rc = elm_model_save(r.model, r.out))) {
        cli_lib_error("saving the model", rc);
        release(&r);
        return CLI_FAIL;
    }
    printf("best epoch %.0f of %.0f; model saved to %s\n", metric(r.trainer, ELM_METRIC_BEST_EPOCH),
           metric(r.trainer, ELM_METRIC_EPOCH), r.out);
    release(&r);
    return CLI_OK;
}
