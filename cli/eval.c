/* elm eval MODEL.elm DATA: a model's metrics on a NeuronIO file (the
 * published protocol) or on the test or validation split of a training
 * config. */
#include "cli.h"

#include <elm.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: elm eval MODEL.elm FILE.nio [--mode windows|continuous|both]\n"
    "       elm eval MODEL.elm CONFIG.yaml [--split test|val]\n"
    "\n"
    "With a NeuronIO file (written by `python3 -m elm.neuronio convert`), run the\n"
    "NeuronIO evaluation protocol (docs/datasets/neuronio_eval.md) and print the\n"
    "spike AUC, true-positive rates and partial AUCs at false-positive rates 0.0025\n"
    "and 0.01, and the soma RMSE, MAE (mV) and explained variance (%), for the\n"
    "official 500 ms windows, one continuous run, or both (default).\n"
    "\n"
    "With a training config (.yaml, .yml or .json), evaluate the model on the\n"
    "config's test set (data.test, default) or its validation split\n"
    "(data.val_fraction > 0) and print the loss and the metrics that apply.\n";

static int eval_neuronio(const elm_model *m, const char *path, const char *mode) {
    int which[2] = {1, 1}; /* windows, continuous */
    if (mode && !strcmp(mode, "windows")) which[1] = 0;
    else if (mode && !strcmp(mode, "continuous")) which[0] = 0;
    else if (mode && strcmp(mode, "both"))
        return cli_usage_error("eval", "--mode must be windows, continuous or both, got '%s'", mode);
    elm_neuronio_metrics r[2];
    for (int k = 0; k < 2; k++) {
        if (!which[k]) continue;
        int rc = elm_neuronio_evaluate(m, path, k ? ELM_NEURONIO_CONTINUOUS : ELM_NEURONIO_WINDOWS,
                                       &r[k]);
        if (rc) return cli_lib_error("NeuronIO evaluation", rc);
    }
    printf("%-24s", "metric");
    for (int k = 0; k < 2; k++)
        if (which[k]) printf(" %18s", k ? "continuous" : "windows");
    putchar('\n');
    static const struct { const char *name; size_t off; } rows[] = {
        {"auc", offsetof(elm_neuronio_metrics, auc)},
        {"tp_at_fp_0.0025", offsetof(elm_neuronio_metrics, tp_at_fp_0025)},
        {"pauc_at_fp_0.0025", offsetof(elm_neuronio_metrics, pauc_at_fp_0025)},
        {"tp_at_fp_0.01", offsetof(elm_neuronio_metrics, tp_at_fp_01)},
        {"pauc_at_fp_0.01", offsetof(elm_neuronio_metrics, pauc_at_fp_01)},
        {"soma_rmse_mv", offsetof(elm_neuronio_metrics, soma_rmse)},
        {"soma_mae_mv", offsetof(elm_neuronio_metrics, soma_mae)},
        {"soma_explained_variance", offsetof(elm_neuronio_metrics, soma_explained_variance)},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        printf("%-24s", rows[i].name);
        for (int k = 0; k < 2; k++)
            if (which[k]) printf(" %18.14g", *(const double *)((const char *)&r[k] + rows[i].off));
        putchar('\n');
    }
    int k = which[0] ? 0 : 1;
    printf("%-24s %18zu\n%-24s %18zu\n", "simulations", r[k].n_simulations, "spikes", r[k].n_spikes);
    return CLI_OK;
}

static int eval_config(elm_model *m, const char *path, const char *split) {
    if (split && strcmp(split, "test") && strcmp(split, "val"))
        return cli_usage_error("eval", "--split must be test or val, got '%s'", split);
    const int use_val = split && !strcmp(split, "val");
    elm_train_config *tc = NULL;
    elm_dataset *train = NULL, *val = NULL, *test = NULL;
    elm_optimizer *opt = NULL;
    elm_loss *loss = NULL;
    elm_trainer *tr = NULL;
    char *dir = cli_dirname(path);
    int st = CLI_FAIL, rc;
    if (!dir) {
        st = cli_error("out of memory");
        goto out;
    }
    if ((rc = elm_train_config_load_yaml(path, &tc))) {
        st = cli_error("%s", elm_last_error());
        goto out;
    }
    if ((rc = elm_train_config_open_data(tc, dir, &train, &val, &test))) {
        st = cli_lib_error("opening the data", rc);
        goto out;
    }
    elm_dataset *ds = use_val ? val : test;
    if (!ds) {
        st = cli_error("%s: the config has no %s set (%s)", path, use_val ? "validation" : "test",
                       use_val ? "data.val_fraction is 0" : "data.test is not set");
        goto out;
    }
    size_t T = 0, N = 0;
    if ((rc = elm_dataset_size(ds, ELM_DATASET_STEPS, &T)) ||
        (rc = elm_dataset_size(ds, ELM_DATASET_SAMPLES, &N))) {
        st = cli_lib_error("dataset size", rc);
        goto out;
    }
    if ((rc = elm_train_config_build(tc, m, T, &opt, &loss, &tr))) {
        st = cli_lib_error("the config does not fit the model", rc);
        goto out;
    }
    if ((rc = elm_trainer_evaluate(tr, ds))) {
        st = cli_lib_error("evaluation", rc);
        goto out;
    }
    printf("split %s: %zu samples\n", use_val ? "val" : "test", N);
    static const struct { elm_metric key; const char *name; } ms[] = {
        {ELM_METRIC_VAL_LOSS, "loss"}, {ELM_METRIC_VAL_ACCURACY, "accuracy"},
        {ELM_METRIC_VAL_AUC, "auc"}, {ELM_METRIC_VAL_RMSE, "rmse"},
    };
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
        double v = NAN;
        if (elm_trainer_metric(tr, ms[i].key, &v) == ELM_OK && !isnan(v))
            printf("%s %.10g\n", ms[i].name, v);
    }
    st = CLI_OK;
out:
    elm_trainer_free(tr);
    elm_optimizer_free(opt);
    elm_loss_free(loss);
    elm_dataset_free(train);
    elm_dataset_free(val);
    elm_dataset_free(test);
    elm_train_config_free(tc);
    free(dir);
    return st;
}

/* Whether `path` starts with the NeuronIO layout's magic ("ELM-NIO\0",
 * docs/datasets/neuronio.md): the file's content decides, not its name. */
static int is_neuronio_file(const char *path) {
    static const char magic[8] = {'E', 'L', 'M', '-', 'N', 'I', 'O', '\0'};
    char head[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return n == sizeof head && memcmp(head, magic, sizeof magic) == 0;
}

int cmd_eval(int argc, char **argv) {
    static const cli_opt opts[] = {{"mode", 0, 1}, {"split", 0, 1}};
    const char *opt[2], *pos[2];
    size_t n_pos;
    int st = cli_parse_args("eval", argc, argv, opts, 2, opt, pos, 2, &n_pos);
    if (st < 0) {
        fputs(help, stdout);
        return CLI_OK;
    }
    if (st) return st;
    if (n_pos != 2) return cli_usage_error("eval", "expected MODEL.elm and DATA");
    /* A NeuronIO file by its magic; otherwise a config by its extension;
     * anything else goes to the NeuronIO reader, whose error names the
     * problem with the file. */
    const int is_config = !is_neuronio_file(pos[1]) &&
                          (cli_has_suffix(pos[1], ".yaml") || cli_has_suffix(pos[1], ".yml") ||
                           cli_has_suffix(pos[1], ".json"));
    if (is_config && opt[0]) return cli_usage_error("eval", "--mode applies to NeuronIO files");
    if (!is_config && opt[1]) return cli_usage_error("eval", "--split applies to training configs");
    elm_model *m;
    int rc = elm_model_load(pos[0], &m);
    if (rc) return cli_lib_error("loading the model", rc);
    st = is_config ? eval_config(m, pos[1], opt[1]) : eval_neuronio(m, pos[1], opt[0]);
    elm_model_free(m);
    return st;
}
