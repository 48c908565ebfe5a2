/* Training configs: the key table and its defaults, typed access, YAML in
 * and out with every error class, build() against the objects it makes,
 * and the example configs in examples/configs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elm.h"

#define N_MODEL_KEYS 17
#define N_KEYS 63

static elm_train_config *parse(const char *yaml) {
    elm_train_config *tc = NULL;
    int rc = elm_train_config_from_yaml(yaml, strlen(yaml), &tc);
    if (rc != ELM_OK) print_message("unexpected failure: %s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    assert_non_null(tc);
    return tc;
}

static elm_train_config *fresh(void) {
    elm_train_config *tc = NULL;
    assert_int_equal(elm_train_config_create(&tc), ELM_OK);
    assert_non_null(tc);
    return tc;
}

static char *to_yaml(const elm_train_config *tc) {
    size_t n = 0, m = 0;
    assert_int_equal(elm_train_config_to_yaml(tc, NULL, 0, &n), ELM_OK);
    char *s = malloc(n);
    assert_non_null(s);
    assert_int_equal(elm_train_config_to_yaml(tc, s, n, &m), ELM_OK);
    assert_int_equal(m, n);
    assert_int_equal(strlen(s) + 1, n);
    return s;
}

static double get(const elm_train_config *tc, const char *key) {
    double v = -12345;
    int rc = elm_train_config_get(tc, key, &v);
    if (rc != ELM_OK) print_message("%s: %s\n", key, elm_last_error());
    assert_int_equal(rc, ELM_OK);
    return v;
}

static const char *get_string(const elm_train_config *tc, const char *key) {
    const char *s = NULL;
    assert_int_equal(elm_train_config_get_string(tc, key, &s), ELM_OK);
    assert_non_null(s);
    return s;
}

static void set(elm_train_config *tc, const char *key, double v) {
    int rc = elm_train_config_set(tc, key, v);
    if (rc != ELM_OK) print_message("%s: %s\n", key, elm_last_error());
    assert_int_equal(rc, ELM_OK);
}

static void set_string(elm_train_config *tc, const char *key, const char *v) {
    assert_int_equal(elm_train_config_set_string(tc, key, v), ELM_OK);
}

/* Every key of a and b holds the same value (optimizer settings that do
 * not apply to the kind excepted). */
static void assert_same(const elm_train_config *a, const elm_train_config *b) {
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *key;
        elm_value_type type;
        assert_int_equal(elm_train_config_key(i, &key, &type), ELM_OK);
        if (type == ELM_VALUE_STRING) {
            assert_string_equal(get_string(a, key), get_string(b, key));
        } else if (type == ELM_VALUE_LIST) {
            double wa[8], wb[8];
            size_t na = 0, nb = 0;
            assert_int_equal(elm_train_config_get_list(a, key, wa, 8, &na), ELM_OK);
            assert_int_equal(elm_train_config_get_list(b, key, wb, 8, &nb), ELM_OK);
            assert_int_equal(na, nb);
            for (size_t j = 0; j < na && j < 8; j++) assert_true(wa[j] == wb[j]);
        } else {
            double va, vb;
            int ra = elm_train_config_get(a, key, &va), rb = elm_train_config_get(b, key, &vb);
            assert_int_equal(ra, rb);
            if (ra == ELM_OK) {
                if (va != vb) print_message("%s: %.17g != %.17g\n", key, va, vb);
                assert_true(va == vb);
            }
        }
    }
}

/* ---- the key table -------------------------------------------------------- */

static void test_keys(void **st) {
    (void)st;
    const char *names[N_KEYS];
    for (size_t i = 0; i < N_KEYS; i++) {
        elm_value_type type = 0;
        assert_int_equal(elm_train_config_key(i, &names[i], &type), ELM_OK);
        assert_true(type >= ELM_VALUE_NUMBER && type <= ELM_VALUE_LIST);
        const char *dot = strchr(names[i], '.');
        assert_non_null(dot);
        static const char *const sections[] = {"model", "data", "optimizer", "loss", "training"};
        bool known = false;
        for (int s = 0; s < 5; s++)
            known |= strlen(sections[s]) == (size_t)(dot - names[i]) &&
                     strncmp(sections[s], names[i], (size_t)(dot - names[i])) == 0;
        assert_true(known);
        for (size_t j = 0; j < i; j++) assert_string_not_equal(names[i], names[j]);
        if (i < N_MODEL_KEYS) {
            /* the model keys are the hyper-parameters, in elm_param order */
            assert_string_equal(dot + 1, elm_param_name((elm_param)(i + 1)));
            assert_true(strncmp(names[i], "model.", 6) == 0);
        }
    }
    const char *key;
    elm_value_type type;
    assert_int_equal(elm_train_config_key(N_KEYS, &key, &type), ELM_E_INVALID);
    assert_int_equal(elm_train_config_key((size_t)-1, &key, &type), ELM_E_INVALID);
    assert_int_equal(elm_train_config_key(0, NULL, &type), ELM_E_NULL);
    /* a few types */
    assert_int_equal(elm_train_config_key(0, &key, &type), ELM_OK);
    assert_int_equal(type, ELM_VALUE_ENUM); /* model.formulation */
    assert_int_equal(elm_train_config_key(11, &key, &type), ELM_OK);
    assert_string_equal(key, "model.learn_memory_tau");
    assert_int_equal(type, ELM_VALUE_BOOL);
}

static const struct {
    const char *key;
    double value;
} defaults[] = {
    {"data.val_fraction", 0},   {"data.batch_size", 32},       {"data.dt", 1},
    {"data.max_time", 0},       {"data.window", 0},            {"data.shuffle", 1},
    {"data.seed", 0},           {"data.drop_last", 0},         {"data.prefetch", 0},
    {"data.batches_per_epoch", 0}, {"data.permute", 0},
    {"optimizer.kind", ELM_OPTIM_ADAM}, {"optimizer.lr", 1e-3}, {"optimizer.beta1", 0.9},
    {"optimizer.beta2", 0.999}, {"optimizer.eps", 1e-8},       {"optimizer.weight_decay", 0},
    {"optimizer.clip_norm", 0}, {"optimizer.schedule", ELM_SCHEDULE_CONSTANT},
    {"optimizer.total_steps", 1}, {"optimizer.warmup_steps", 0}, {"optimizer.min_lr", 0},
    {"loss.kind", ELM_LOSS_CE_LAST}, {"loss.burn_in", 0},
    {"training.epochs", 1},     {"training.patience", 0},      {"training.max_batches", 0},
    {"training.dropout", 0},    {"training.eval_dropout", 0},  {"training.seed", 0},
    {"training.nonfinite", ELM_NONFINITE_STOP}, {"training.select", ELM_METRIC_VAL_LOSS},
    {"training.checkpoint_every", 0}, {"training.tape_checkpointing", 0},
    {"training.threads", 1},
};

static void test_defaults(void **st) {
    (void)st;
    elm_train_config *tc = fresh();
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) {
        if (get(tc, defaults[i].key) != defaults[i].value)
            print_message("%s = %g\n", defaults[i].key, get(tc, defaults[i].key));
        assert_true(get(tc, defaults[i].key) == defaults[i].value);
    }
    static const char *const strings[] = {"data.source", "data.train", "data.test",
                                          "data.sequence", "training.checkpoint"};
    for (size_t i = 0; i < 5; i++) assert_string_equal(get_string(tc, strings[i]), "");
    size_t n = 99;
    assert_int_equal(elm_train_config_get_list(tc, "loss.weights", NULL, 0, &n), ELM_OK);
    assert_int_equal(n, 0);
    /* the model section holds the hyper-parameters' defaults, n_in unset */
    elm_config *ref = NULL;
    assert_int_equal(elm_config_create(&ref), ELM_OK);
    const elm_config *model = elm_train_config_model(tc);
    for (int k = 1; k <= N_MODEL_KEYS; k++) {
        double a, b;
        assert_int_equal(elm_config_get(model, (elm_param)k, &a), ELM_OK);
        assert_int_equal(elm_config_get(ref, (elm_param)k, &b), ELM_OK);
        assert_true(a == b);
    }
    assert_true(get(tc, "model.num_input") == 0);
    assert_string_equal(get_string(tc, "optimizer.kind"), "adam");
    assert_string_equal(get_string(tc, "loss.kind"), "ce_last");
    assert_string_equal(get_string(tc, "training.select"), "val_loss");
    assert_string_equal(get_string(tc, "model.mlp_activation"), "relu");
    assert_null(elm_train_config_model(NULL));
    elm_config_free(ref);
    elm_train_config_free(tc);
    elm_train_config_free(NULL);
}

/* ---- typed access --------------------------------------------------------- */

static void test_numbers_and_enums(void **st) {
    (void)st;
    elm_train_config *tc = fresh();
    set(tc, "optimizer.lr", 0.01);
    assert_true(get(tc, "optimizer.lr") == 0.01);
    assert_int_equal(elm_train_config_set(tc, "optimizer.lr", -1), ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "optimizer.lr"));
    assert_int_equal(elm_train_config_set(tc, "optimizer.lr", NAN), ELM_E_INVALID);
    assert_true(get(tc, "optimizer.lr") == 0.01);
    assert_int_equal(elm_train_config_set(tc, "data.batch_size", 2.5), ELM_E_INVALID);
    assert_int_equal(elm_train_config_set(tc, "data.batch_size", 0), ELM_E_INVALID);
    assert_int_equal(elm_train_config_set(tc, "data.shuffle", 0.5), ELM_E_INVALID);
    assert_int_equal(elm_train_config_set(tc, "data.val_fraction", 1), ELM_E_INVALID);
    assert_int_equal(elm_train_config_set(tc, "training.dropout", 1), ELM_E_INVALID);
    assert_int_equal(elm_train_config_set(tc, "training.epochs", 0), ELM_E_INVALID);
    assert_int_equal(elm_train_config_set(tc, "training.select", ELM_METRIC_VAL_RMSE),
                     ELM_E_INVALID);
    assert_int_equal(elm_train_config_set(tc, "optimizer.kind", 5), ELM_E_INVALID);
    assert_true(get(tc, "data.batch_size") == 32);
    set(tc, "data.batch_size", 8);
    set(tc, "data.seed", 9007199254740992.0);
    set(tc, "training.select", ELM_METRIC_VAL_AUC);
    assert_string_equal(get_string(tc, "training.select"), "val_auc");
    set_string(tc, "training.nonfinite", "skip");
    assert_true(get(tc, "training.nonfinite") == ELM_NONFINITE_SKIP);
    assert_int_equal(elm_train_config_set_string(tc, "training.nonfinite", "ignore"),
                     ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "stop or skip"));
    /* unknown keys */
    assert_int_equal(elm_train_config_set(tc, "data.nope", 1), ELM_E_UNKNOWN_NAME);
    assert_non_null(strstr(elm_last_error(), "'data.nope'"));
    assert_int_equal(elm_train_config_set(tc, "model.nope", 1), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_train_config_set(tc, "batch_size", 1), ELM_E_UNKNOWN_NAME);
    double v;
    assert_int_equal(elm_train_config_get(tc, "optimizer", &v), ELM_E_UNKNOWN_NAME);
    /* wrong access for the type */
    assert_int_equal(elm_train_config_set(tc, "data.source", 1), ELM_E_INVALID);
    assert_int_equal(elm_train_config_get(tc, "loss.weights", &v), ELM_E_INVALID);
    assert_int_equal(elm_train_config_set_string(tc, "data.batch_size", "3"), ELM_E_INVALID);
    const char *s;
    assert_int_equal(elm_train_config_get_string(tc, "data.batch_size", &s), ELM_E_INVALID);
    assert_int_equal(elm_train_config_get_string(tc, "model.num_memory", &s), ELM_E_INVALID);
    /* NULL arguments */
    assert_int_equal(elm_train_config_set(NULL, "data.seed", 1), ELM_E_NULL);
    assert_int_equal(elm_train_config_set(tc, NULL, 1), ELM_E_NULL);
    assert_int_equal(elm_train_config_get(tc, "data.seed", NULL), ELM_E_NULL);
    assert_int_equal(elm_train_config_set_string(tc, "data.source", NULL), ELM_E_NULL);
    elm_train_config_free(tc);
}

static void test_model_keys(void **st) {
    (void)st;
    elm_train_config *tc = fresh();
    elm_config *model = elm_train_config_model(tc);
    set(tc, "model.num_memory", 7);
    double v;
    assert_int_equal(elm_config_get(model, ELM_NUM_MEMORY, &v), ELM_OK);
    assert_true(v == 7);
    assert_int_equal(elm_config_set(model, ELM_TAU_S, 3), ELM_OK);
    assert_true(get(tc, "model.tau_b_value") == 3); /* the reference alias */
    set_string(tc, "model.input_to_synapse_routing", "neuronio_routing");
    assert_true(get(tc, "model.input_to_synapse_routing") == ELM_ROUTING_NEURONIO);
    assert_string_equal(get_string(tc, "model.input_to_synapse_routing"), "neuronio");
    set_string(tc, "model.formulation", "v2");
    assert_true(get(tc, "model.formulation") == ELM_V2);
    assert_int_equal(elm_train_config_set_string(tc, "model.mlp_activation", "tanh"),
                     ELM_E_INVALID);
    assert_int_equal(elm_train_config_set_string(tc, "model.num_memory", "7"), ELM_E_INVALID);
    assert_int_equal(elm_train_config_set(tc, "model.num_memory", 0), ELM_E_INVALID);
    assert_true(get(tc, "model.num_memory") == 7);
    elm_train_config_free(tc);
}

/* Optimizer settings follow the kind: unset ones are the kind's default,
 * ones the kind does not use do not exist. */
static void test_optimizer_kinds(void **st) {
    (void)st;
    elm_train_config *tc = fresh();
    double v;
    assert_int_equal(elm_train_config_get(tc, "optimizer.momentum", &v), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_train_config_set(tc, "optimizer.momentum", 0.9), ELM_E_UNKNOWN_NAME);
    assert_non_null(strstr(elm_last_error(), "optimizer.momentum does not apply to optimizer "
                                             "kind 'adam'"));
    set_string(tc, "optimizer.kind", "sgd");
    assert_true(get(tc, "optimizer.lr") == 1e-2);
    set(tc, "optimizer.momentum", 0.9);
    set(tc, "optimizer.weight_decay", 0.5);
    assert_int_equal(elm_train_config_get(tc, "optimizer.beta1", &v), ELM_E_UNKNOWN_NAME);
    set(tc, "optimizer.kind", ELM_OPTIM_ADAMW);
    assert_true(get(tc, "optimizer.lr") == 1e-3);
    assert_true(get(tc, "optimizer.weight_decay") == 0.5); /* given: kept */
    assert_int_equal(elm_train_config_get(tc, "optimizer.momentum", &v), ELM_E_UNKNOWN_NAME);
    set_string(tc, "optimizer.kind", "sgd");
    assert_true(get(tc, "optimizer.momentum") == 0); /* forgotten with the kind */
    set_string(tc, "optimizer.kind", "adamax");
    assert_true(get(tc, "optimizer.lr") == 2e-3);
    elm_train_config_free(tc);
}

static void test_strings_and_lists(void **st) {
    (void)st;
    elm_train_config *tc = fresh();
    char buf[16] = "shd";
    set_string(tc, "data.source", buf);
    buf[0] = 'X'; /* copied on set */
    assert_string_equal(get_string(tc, "data.source"), "shd");
    set_string(tc, "data.source", "");
    assert_string_equal(get_string(tc, "data.source"), "");
    assert_int_equal(elm_train_config_set_string(tc, "data.train", "\xFF"), ELM_E_INVALID);
    char *long_path = malloc(5000);
    memset(long_path, 'a', 4999);
    long_path[4999] = '\0';
    assert_int_equal(elm_train_config_set_string(tc, "data.train", long_path), ELM_E_INVALID);
    free(long_path);
    assert_string_equal(get_string(tc, "data.train"), "");

    const double w[3] = {1, 2.5, 0};
    assert_int_equal(elm_train_config_set_list(tc, "loss.weights", w, 3), ELM_OK);
    double out[3] = {0};
    size_t n = 0;
    assert_int_equal(elm_train_config_get_list(tc, "loss.weights", out, 2, &n), ELM_OK);
    assert_int_equal(n, 3);
    assert_true(out[0] == 1 && out[1] == 2.5 && out[2] == 0);
    const double bad[][2] = {{-1, 1}, {NAN, 1}, {0, 0}, {1e39, 1}};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(elm_train_config_set_list(tc, "loss.weights", bad[i], 2), ELM_E_INVALID);
    assert_int_equal(elm_train_config_get_list(tc, "loss.weights", NULL, 0, &n), ELM_OK);
    assert_int_equal(n, 3);
    assert_int_equal(elm_train_config_set_list(tc, "loss.weights", NULL, 0), ELM_OK);
    assert_int_equal(elm_train_config_get_list(tc, "loss.weights", NULL, 0, &n), ELM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(elm_train_config_set_list(tc, "loss.burn_in", w, 1), ELM_E_INVALID);
    assert_int_equal(elm_train_config_get_list(tc, "data.seed", out, 3, &n), ELM_E_INVALID);
    assert_int_equal(elm_train_config_set_list(tc, "loss.weights", NULL, 2), ELM_E_NULL);
    elm_train_config_free(tc);
}

/* ---- YAML ------------------------------------------------------------------ */

static const char default_yaml[] =
    "model:\n"
    "  formulation: v1\n"
    "  num_input: null\n"
    "  num_output: null\n"
    "  num_memory: 100\n"
    "  lambda_value: 5.0\n"
    "  mlp_num_layers: 1\n"
    "  mlp_hidden_size: 0\n"
    "  mlp_activation: relu\n"
    "  tau_s_value: 5.0\n"
    "  memory_tau_min: 1.0\n"
    "  memory_tau_max: 1000.0\n"
    "  learn_memory_tau: false\n"
    "  w_s_value: 0.5\n"
    "  num_branch: 0\n"
    "  num_synapse_per_branch: 1\n"
    "  input_to_synapse_routing: none\n"
    "  delta_t: 1.0\n"
    "data:\n"
    "  val_fraction: 0.0\n"
    "  batch_size: 32\n"
    "  dt: 1.0\n"
    "  max_time: 0.0\n"
    "  window: 0\n"
    "  shuffle: true\n"
    "  seed: 0\n"
    "  drop_last: false\n"
    "  prefetch: 0\n"
    "  batches_per_epoch: 0\n"
    "  permute: false\n"
    "optimizer:\n"
    "  kind: adam\n"
    "  lr: 0.001\n"
    "  beta1: 0.9\n"
    "  beta2: 0.999\n"
    "  eps: 1.0e-08\n"
    "  weight_decay: 0.0\n"
    "  clip_norm: 0.0\n"
    "  schedule: constant\n"
    "  total_steps: 1\n"
    "  warmup_steps: 0\n"
    "  min_lr: 0.0\n"
    "loss:\n"
    "  kind: ce_last\n"
    "  burn_in: 0\n"
    "training:\n"
    "  epochs: 1\n"
    "  patience: 0\n"
    "  max_batches: 0\n"
    "  dropout: 0.0\n"
    "  eval_dropout: false\n"
    "  seed: 0\n"
    "  nonfinite: stop\n"
    "  select: val_loss\n"
    "  checkpoint_every: 0\n"
    "  tape_checkpointing: false\n"
    "  threads: 1\n";

static void test_exact_output(void **st) {
    (void)st;
    elm_train_config *tc = fresh();
    char *y = to_yaml(tc);
    assert_string_equal(y, default_yaml);
    free(y);
    /* and it reads back to the defaults */
    elm_train_config *back = parse(default_yaml);
    assert_same(tc, back);
    elm_train_config_free(back);
    elm_train_config_free(tc);
}

static void check_round_trip(const elm_train_config *tc) {
    char *y1 = to_yaml(tc);
    elm_train_config *back = parse(y1);
    assert_same(tc, back);
    char *y2 = to_yaml(back);
    assert_string_equal(y1, y2);
    free(y1);
    free(y2);
    elm_train_config_free(back);
}

static void test_round_trip(void **st) {
    (void)st;
    elm_train_config *tc = fresh();
    check_round_trip(tc);
    set(tc, "model.num_input", 700);
    set(tc, "model.num_output", 20);
    set(tc, "model.w_s_value", 1.0 / 3.0);
    set_string(tc, "data.source",
               "shd \"quoted\" \\ tab\t newline\n \x01 \xC3\xA9 \xE2\x80\xA8 end");
    set_string(tc, "data.train", "/data/shd_train.h5");
    set_string(tc, "data.sequence", "pixel");
    set(tc, "data.val_fraction", 0.2);
    set(tc, "data.batch_size", 8);
    set(tc, "data.dt", 0.1);
    set(tc, "data.max_time", 1e11);
    set(tc, "data.window", 500);
    set(tc, "data.shuffle", 0);
    set(tc, "data.seed", 9007199254740992.0);
    set(tc, "data.drop_last", 1);
    set(tc, "data.permute", 1);
    set_string(tc, "optimizer.kind", "sgd");
    set(tc, "optimizer.momentum", 0.9);
    set(tc, "optimizer.nesterov", 1);
    set(tc, "optimizer.lr", 5e-3);
    set(tc, "optimizer.min_lr", 1e-7);
    set_string(tc, "optimizer.schedule", "cosine");
    set(tc, "optimizer.total_steps", 123456789);
    set_string(tc, "loss.kind", "mse");
    set(tc, "loss.burn_in", 150);
    const double w[3] = {0.1, 1e-30, 3};
    assert_int_equal(elm_train_config_set_list(tc, "loss.weights", w, 3), ELM_OK);
    set(tc, "training.epochs", 100);
    set(tc, "training.dropout", 0.999999);
    set(tc, "training.eval_dropout", 1);
    set_string(tc, "training.select", "val_accuracy");
    set_string(tc, "training.checkpoint", "run/ckpt.elm");
    set(tc, "training.checkpoint_every", 1000);
    set(tc, "training.tape_checkpointing", 1);
    check_round_trip(tc);
    char *y = to_yaml(tc);
    assert_non_null(strstr(y, "  source: \"shd \\\"quoted\\\" \\\\ tab\\t newline\\n \\x01 "
                              "\xC3\xA9 \\u2028 end\"\n"));
    assert_non_null(strstr(y, "  weights: [0.1, 1.0e-30, 3.0]\n"));
    assert_non_null(strstr(y, "  momentum: 0.9\n"));
    assert_null(strstr(y, "beta1")); /* an Adam setting, not SGD's */
    free(y);
    elm_train_config_free(tc);
}

/* Any spelling reads to a config whose YAML is stable from then on. */
static void test_yaml_stable(void **st) {
    (void)st;
    const char *text =
        "# comment\n"
        "training: {epochs: 3, nonfinite: skip, select: val_auc}\n"
        "optimizer:\n"
        "  momentum: 0.5   # before the kind that allows it\n"
        "  kind: sgd\n"
        "loss:\n"
        "  kind: neuronio\n"
        "  weights: [1, 2]\n"
        "data:\n"
        "model: {\"num_input\": 1278, \"input_to_synapse_routing\": \"neuronio_routing\",\n"
        "        \"num_branch\": 45, \"num_synapse_per_branch\": 100, \"num_output\": 2}\n";
    elm_train_config *a = parse(text);
    assert_true(get(a, "optimizer.momentum") == 0.5);
    assert_true(get(a, "training.epochs") == 3);
    assert_true(get(a, "model.input_to_synapse_routing") == ELM_ROUTING_NEURONIO);
    char *y1 = to_yaml(a);
    elm_train_config *b = parse(y1);
    char *y2 = to_yaml(b);
    assert_string_equal(y1, y2);
    assert_same(a, b);
    free(y1);
    free(y2);
    elm_train_config_free(a);
    elm_train_config_free(b);
}

static void check_error(const char *text, int rc, const char *want) {
    elm_train_config *sentinel = (elm_train_config *)&sentinel, *out = sentinel;
    int got = elm_train_config_from_yaml(text, strlen(text), &out);
    if (got != rc || !strstr(elm_last_error(), want))
        print_message("input:\n%s\ngot %d '%s'\nwanted %d '%s'\n", text, got, elm_last_error(),
                      rc, want);
    assert_int_equal(got, rc);
    assert_non_null(strstr(elm_last_error(), want));
    assert_ptr_equal(out, sentinel);
}

static void test_yaml_errors(void **st) {
    (void)st;
    /* unknown and duplicate names */
    check_error("optimiser:\n  lr: 1\n", ELM_E_UNKNOWN_NAME,
                "<string>:1:1: unknown section 'optimiser' (expected model, data, optimizer, loss "
                "or training)");
    check_error("data:\n  batch_sise: 4\n", ELM_E_UNKNOWN_NAME,
                "<string>:2:3: unknown key 'batch_sise' in 'data'");
    check_error("model:\n  num_memroy: 4\n", ELM_E_UNKNOWN_NAME,
                "<string>:2:3: unknown key 'num_memroy' in 'model'");
    check_error("data:\n  seed: 1\ndata:\n  seed: 2\n", ELM_E_FORMAT,
                "<string>:3:1: duplicate section 'data' (first given at line 1)");
    check_error("training:\n  epochs: 2\n  epochs: 3\n", ELM_E_FORMAT,
                "<string>:3:3: duplicate key 'epochs' in 'training' (first given at line 2)");
    check_error("optimizer:\n  kind: sgd\n  kind: adam\n", ELM_E_FORMAT,
                "<string>:3:3: duplicate key 'kind' in 'optimizer'");
    check_error("optimizer:\n  momentum: 0.9\n", ELM_E_UNKNOWN_NAME,
                "<string>:2:3: 'momentum' in 'optimizer' does not apply to optimizer kind 'adam'");
    check_error("optimizer:\n  kind: adam\n  nesterov: true\n", ELM_E_UNKNOWN_NAME,
                "<string>:3:3: 'nesterov' in 'optimizer' does not apply");
    /* wrong types */
    check_error("optimizer:\n  kind: adamm\n", ELM_E_INVALID,
                "<string>:2:9: 'kind' in 'optimizer' must be sgd, adam, adamw, or adamax, got "
                "'adamm'");
    check_error("optimizer:\n  lr: fast\n", ELM_E_INVALID,
                "<string>:2:7: 'lr' in 'optimizer' must be a number, got 'fast'");
    check_error("data:\n  shuffle: 1\n", ELM_E_INVALID,
                "<string>:2:12: 'shuffle' in 'data' must be true or false, got 1");
    check_error("data:\n  batch_size: 3.5\n", ELM_E_INVALID,
                "<string>:2:15: 'batch_size' in 'data' must be an integer");
    check_error("data:\n  batch_size: [3]\n", ELM_E_INVALID, "got a list");
    check_error("data:\n  source: [a]\n", ELM_E_INVALID,
                "<string>:2:11: 'source' in 'data' must be a string, got a list");
    check_error("training:\n  checkpoint: \"a\\0b\"\n", ELM_E_INVALID, "contains a NUL");
    check_error("loss:\n  weights: 1\n", ELM_E_INVALID,
                "<string>:2:12: 'weights' in 'loss' must be a list of numbers, got 1");
    check_error("loss:\n  weights: [1, a]\n", ELM_E_INVALID,
                "<string>:2:16: 'weights' in 'loss' must be a number, got 'a'");
    check_error("loss:\n  weights: [1, [2]]\n", ELM_E_INVALID, "<string>:2:16:");
    check_error("training:\n  select: val_rmse\n", ELM_E_INVALID,
                "must be val_loss, val_accuracy, or val_auc, got 'val_rmse'");
    check_error("data: 5\n", ELM_E_INVALID,
                "<string>:1:7: section 'data' must be a mapping, got 5");
    check_error("data: [1]\n", ELM_E_INVALID, "section 'data' must be a mapping, got a list");
    /* out of bounds */
    check_error("optimizer:\n  lr: 0\n", ELM_E_INVALID,
                "<string>:2:7: 'lr' in 'optimizer' must be a finite number > 0, got 0");
    check_error("data:\n  val_fraction: 1\n", ELM_E_INVALID,
                "'val_fraction' in 'data' must be a number in [0, 1), got 1");
    check_error("training:\n  dropout: 1.0\n", ELM_E_INVALID, "in [0, 0.999999], got 1.0");
    check_error("loss:\n  weights: [1, -1]\n", ELM_E_INVALID,
                "<string>:2:16: 'weights' in 'loss': item 1 must be a finite number >= 0");
    check_error("loss:\n  weights: [0, 0]\n", ELM_E_INVALID,
                "<string>:2:12: 'weights' in 'loss': the weights sum to 0");
    check_error("model:\n  num_memory: 0\n", ELM_E_INVALID,
                "<string>:2:15: 'num_memory' in 'model' must be an integer in [1, 16777216], "
                "got 0");
    /* malformed documents */
    check_error("", ELM_E_FORMAT, "<string>:1:1: empty document: expected a mapping of sections");
    check_error("[1]\n", ELM_E_FORMAT, "<string>:1:1: expected a mapping of sections");
    check_error("data:\n  seed: [1\n", ELM_E_FORMAT, "syntax error");
    check_error("data: {}\n---\n", ELM_E_FORMAT, "<string>:2:1: a second document");
    check_error("? [a]\n: 1\n", ELM_E_FORMAT, "a key in the top level must be a name");
    /* empty and null sections are all defaults */
    elm_train_config *tc = parse("data:\noptimizer: {}\nloss: ~\n");
    assert_true(get(tc, "data.batch_size") == 32);
    elm_train_config_free(tc);
}

static void test_files(void **st) {
    (void)st;
    char dir[] = "/tmp/elm_train_config_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], bad[512];
    snprintf(path, sizeof path, "%s/train.yaml", dir);
    elm_train_config *tc = fresh();
    set(tc, "data.batch_size", 4);
    assert_int_equal(elm_train_config_save_yaml(tc, path), ELM_OK);
    elm_train_config *back = NULL;
    assert_int_equal(elm_train_config_load_yaml(path, &back), ELM_OK);
    assert_same(tc, back);
    elm_train_config_free(back);
    FILE *f = fopen(path, "w");
    fputs("training:\n  epochs: zero\n", f);
    fclose(f);
    back = NULL;
    assert_int_equal(elm_train_config_load_yaml(path, &back), ELM_E_INVALID);
    snprintf(bad, sizeof bad, "%s:2:11: 'epochs' in 'training' must be an integer, got 'zero'",
             path);
    assert_string_equal(elm_last_error(), bad);
    assert_null(back);
    snprintf(bad, sizeof bad, "%s/absent.yaml", dir);
    assert_int_equal(elm_train_config_load_yaml(bad, &back), ELM_E_IO);
    assert_non_null(strstr(elm_last_error(), "absent.yaml"));
    snprintf(bad, sizeof bad, "%s/none/train.yaml", dir);
    assert_int_equal(elm_train_config_save_yaml(tc, bad), ELM_E_IO);
    assert_int_equal(elm_train_config_save_yaml(NULL, path), ELM_E_NULL);
    assert_int_equal(elm_train_config_load_yaml(NULL, &back), ELM_E_NULL);
    unlink(path);
    assert_int_equal(rmdir(dir), 0); /* nothing else was left behind */
    elm_train_config_free(tc);
}

/* ---- build ------------------------------------------------------------------- */

static const struct {
    const char *key;
    elm_optim_param param;
} optim_keys[] = {
    {"optimizer.lr", ELM_OPTIM_LR},
    {"optimizer.momentum", ELM_OPTIM_MOMENTUM},
    {"optimizer.dampening", ELM_OPTIM_DAMPENING},
    {"optimizer.nesterov", ELM_OPTIM_NESTEROV},
    {"optimizer.beta1", ELM_OPTIM_BETA1},
    {"optimizer.beta2", ELM_OPTIM_BETA2},
    {"optimizer.eps", ELM_OPTIM_EPS},
    {"optimizer.weight_decay", ELM_OPTIM_WEIGHT_DECAY},
    {"optimizer.clip_norm", ELM_OPTIM_CLIP_NORM},
    {"optimizer.schedule", ELM_OPTIM_SCHEDULE},
    {"optimizer.total_steps", ELM_OPTIM_TOTAL_STEPS},
    {"optimizer.warmup_steps", ELM_OPTIM_WARMUP_STEPS},
    {"optimizer.min_lr", ELM_OPTIM_MIN_LR},
};

static const struct {
    const char *key;
    elm_train_option option;
} train_keys[] = {
    {"training.dropout", ELM_TRAIN_DROPOUT},
    {"training.eval_dropout", ELM_TRAIN_EVAL_DROPOUT},
    {"training.seed", ELM_TRAIN_SEED},
    {"training.epochs", ELM_TRAIN_EPOCHS},
    {"training.patience", ELM_TRAIN_PATIENCE},
    {"training.max_batches", ELM_TRAIN_MAX_BATCHES},
    {"training.nonfinite", ELM_TRAIN_NONFINITE},
    {"training.select", ELM_TRAIN_SELECT},
};

/* The objects hold the config's settings: every optimizer setting of the
 * kind (given or default) and every trainer option. */
static void check_objects(const elm_train_config *tc, const elm_optimizer *opt,
                          const elm_trainer *tr) {
    for (size_t i = 0; i < sizeof optim_keys / sizeof *optim_keys; i++) {
        double want, have;
        int rc = elm_train_config_get(tc, optim_keys[i].key, &want);
        assert_int_equal(elm_optimizer_get(opt, optim_keys[i].param, &have), rc);
        if (rc != ELM_OK) continue;
        if (want != have) print_message("%s: %g != %g\n", optim_keys[i].key, want, have);
        assert_true(want == have);
    }
    for (size_t i = 0; i < sizeof train_keys / sizeof *train_keys; i++) {
        double have;
        assert_int_equal(elm_trainer_get(tr, train_keys[i].option, &have), ELM_OK);
        assert_true(get(tc, train_keys[i].key) == have);
    }
}

static elm_model *model_of(elm_train_config *tc) {
    elm_model *m = NULL;
    int rc = elm_model_create(elm_train_config_model(tc), 1, &m);
    if (rc != ELM_OK) print_message("%s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    return m;
}

static const char tiny_yaml[] =
    "model: {num_input: 4, num_output: 3, num_memory: 5}\n"
    "data: {batch_size: 3}\n"
    "optimizer: {kind: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.001,\n"
    "            clip_norm: 1, schedule: cosine, total_steps: 100, warmup_steps: 10,\n"
    "            min_lr: 0.0001}\n"
    "loss: {kind: mse, burn_in: 2, weights: [0.5, 0.25, 0.25]}\n"
    "training: {epochs: 3, patience: 2, max_batches: 7, dropout: 0.25, eval_dropout: true,\n"
    "           seed: 11, nonfinite: skip, select: val_accuracy, tape_checkpointing: true}\n";

static void test_build(void **st) {
    (void)st;
    elm_train_config *tc = parse(tiny_yaml);
    elm_model *m = model_of(tc);
    elm_optimizer *opt = NULL;
    elm_loss *loss = NULL;
    elm_trainer *tr = NULL;
    assert_int_equal(elm_train_config_build(tc, m, 8, &opt, &loss, &tr), ELM_OK);
    check_objects(tc, opt, tr);
    assert_int_equal(elm_loss_get_kind(loss), ELM_LOSS_MSE);
    /* burn-in and weights: steps 0, 1 carry huge errors that must not
     * count; the others (y - t)^2 = 1, 4, 9 weighted 0.5, 0.25, 0.25 */
    float y[4 * 3] = {0}, t[4 * 3];
    for (int s = 0; s < 4; s++)
        for (int o = 0; o < 3; o++) t[s * 3 + o] = s < 2 ? 100.0f : (float)(o + 1);
    double value = 0;
    assert_int_equal(elm_loss_compute(loss, y, 1, 4, t, NULL, NULL, &value, NULL), ELM_OK);
    assert_true(fabs(value - 3.75) < 1e-12);
    /* the schedule's warm-up: lr (0 + 1) / 10 */
    assert_true(fabs(elm_optimizer_lr(opt) - 0.005) < 1e-15);
    elm_trainer_free(tr);
    elm_optimizer_free(opt);
    elm_loss_free(loss);

    /* a default config matches any model (num_input / num_output unset)
     * and its training defaults are the trainer's own */
    elm_train_config *defaults = fresh();
    set_string(defaults, "loss.kind", "ce_all");
    set(defaults, "model.num_memory", 5);
    assert_int_equal(elm_train_config_build(defaults, m, 8, &opt, &loss, &tr), ELM_OK);
    check_objects(defaults, opt, tr);
    elm_trainer *plain = NULL;
    assert_int_equal(elm_trainer_create(m, opt, loss, 32, 8, 0, &plain), ELM_OK);
    for (size_t i = 0; i < sizeof train_keys / sizeof *train_keys; i++) {
        double a, b;
        assert_int_equal(elm_trainer_get(plain, train_keys[i].option, &a), ELM_OK);
        assert_int_equal(elm_trainer_get(tr, train_keys[i].option, &b), ELM_OK);
        assert_true(a == b);
    }
    elm_trainer_free(plain);
    elm_trainer_free(tr);
    elm_optimizer_free(opt);
    elm_loss_free(loss);
    elm_train_config_free(defaults);
    elm_model_free(m);
    elm_train_config_free(tc);
}

/* The optimizer defaults the config reports are those of a new optimizer
 * of each kind. */
static void test_optimizer_defaults(void **st) {
    (void)st;
    elm_train_config *tc = parse("model: {num_input: 2, num_output: 2, num_memory: 3}\n");
    elm_model *m = model_of(tc);
    for (int kind = ELM_OPTIM_SGD; kind <= ELM_OPTIM_ADAMAX; kind++) {
        set(tc, "optimizer.kind", kind);
        elm_optimizer *opt = NULL;
        assert_int_equal(elm_optimizer_create(m, (elm_optimizer_kind)kind, &opt), ELM_OK);
        elm_loss *loss = NULL;
        assert_int_equal(elm_loss_create(ELM_LOSS_CE_LAST, 2, &loss), ELM_OK);
        elm_trainer *tr = NULL;
        assert_int_equal(elm_trainer_create(m, opt, loss, 1, 1, 0, &tr), ELM_OK);
        check_objects(tc, opt, tr);
        elm_trainer_free(tr);
        elm_loss_free(loss);
        elm_optimizer_free(opt);
    }
    elm_model_free(m);
    elm_train_config_free(tc);
}

/* build() must fail with nothing created: outputs keep their values. */
static void check_build_fails(const elm_train_config *tc, elm_model *m, size_t T_max, int rc,
                              const char *want) {
    elm_optimizer *opt = (elm_optimizer *)&opt;
    elm_loss *loss = (elm_loss *)&loss;
    elm_trainer *tr = (elm_trainer *)&tr;
    int got = elm_train_config_build(tc, m, T_max, &opt, &loss, &tr);
    if (got != rc || !strstr(elm_last_error(), want))
        print_message("got %d '%s', wanted %d '%s'\n", got, elm_last_error(), rc, want);
    assert_int_equal(got, rc);
    assert_non_null(strstr(elm_last_error(), want));
    assert_ptr_equal(opt, (elm_optimizer *)&opt);
    assert_ptr_equal(loss, (elm_loss *)&loss);
    assert_ptr_equal(tr, (elm_trainer *)&tr);
}

static void test_build_refused(void **st) {
    (void)st;
    elm_train_config *tc = parse(tiny_yaml);
    elm_model *m = model_of(tc);
    /* a model that is not the model section's */
    set(tc, "model.num_memory", 6);
    check_build_fails(tc, m, 8, ELM_E_CONFIG,
                      "elm_train_config_build: model.num_memory is 6 in the config but 5 in the "
                      "model");
    set(tc, "model.num_memory", 5);
    set_string(tc, "model.input_to_synapse_routing", "random");
    check_build_fails(tc, m, 8, ELM_E_CONFIG,
                      "model.input_to_synapse_routing is random in the config but none in the "
                      "model");
    set_string(tc, "model.input_to_synapse_routing", "none");
    set(tc, "model.num_output", 4);
    check_build_fails(tc, m, 8, ELM_E_CONFIG, "model.num_output is 4 in the config but 3");
    set(tc, "model.num_output", 3);
    set(tc, "model.num_branch", 2);
    check_build_fails(tc, m, 8, ELM_E_CONFIG, "the model section:");
    /* derived values compare resolved: 4 branches = num_input's 4 */
    set(tc, "model.num_branch", 4);
    set(tc, "model.mlp_hidden_size", 10);
    elm_optimizer *opt;
    elm_loss *loss;
    elm_trainer *tr;
    assert_int_equal(elm_train_config_build(tc, m, 8, &opt, &loss, &tr), ELM_OK);
    elm_trainer_free(tr);
    elm_optimizer_free(opt);
    elm_loss_free(loss);
    /* settings that would only fail in training */
    set(tc, "optimizer.momentum", 0);
    check_build_fails(tc, m, 8, ELM_E_CONFIG, "optimizer.nesterov needs momentum > 0");
    set(tc, "optimizer.momentum", 0.9);
    check_build_fails(tc, m, 2, ELM_E_CONFIG, "loss.burn_in = 2 leaves no step of T_max = 2");
    set(tc, "training.checkpoint_every", 5);
    check_build_fails(tc, m, 8, ELM_E_CONFIG,
                      "training.checkpoint_every needs training.checkpoint");
    set(tc, "training.checkpoint_every", 0);
    const double w2[2] = {1, 1};
    assert_int_equal(elm_train_config_set_list(tc, "loss.weights", w2, 2), ELM_OK);
    check_build_fails(tc, m, 8, ELM_E_CONFIG, "loss.weights has 2 values, the model 3 outputs");
    assert_int_equal(elm_train_config_set_list(tc, "loss.weights", NULL, 0), ELM_OK);
    /* failures of the objects themselves, after some were made */
    set_string(tc, "loss.kind", "neuronio");
    check_build_fails(tc, m, 8, ELM_E_INVALID, "elm_train_config_build: loss: ");
    set_string(tc, "loss.kind", "mse");
    check_build_fails(tc, m, 0, ELM_E_INVALID, "T_max must be >= 1");
    check_build_fails(tc, m, (size_t)1 << 60, ELM_E_INVALID, "elm_train_config_build: trainer: ");
    check_build_fails(NULL, m, 8, ELM_E_NULL, "NULL argument");
    elm_model_free(m);
    elm_train_config_free(tc);
}

/* training.checkpoint reaches the trainer: fit() saves there. */
static void test_build_checkpoint(void **st) {
    (void)st;
    char dir[] = "/tmp/elm_train_ckpt_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/run.elm", dir);
    elm_train_config *tc = parse(tiny_yaml);
    set_string(tc, "training.checkpoint", path);
    set(tc, "training.checkpoint_every", 1);
    set(tc, "training.epochs", 1);
    elm_model *m = model_of(tc);
    elm_optimizer *opt;
    elm_loss *loss;
    elm_trainer *tr;
    assert_int_equal(elm_train_config_build(tc, m, 8, &opt, &loss, &tr), ELM_OK);
    float x[3 * 4 * 4], target[3 * 4 * 3];
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = (float)(i % 3);
    for (size_t i = 0; i < sizeof target / sizeof *target; i++) target[i] = 0.1f * (float)(i % 5);
    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_from_arrays(3, 4, 4, x, target, 3, NULL, 0, NULL, &ds), ELM_OK);
    int rc = elm_trainer_fit(tr, ds, NULL, NULL, NULL);
    if (rc != ELM_OK) print_message("%s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    assert_int_equal(access(path, R_OK), 0);
    elm_dataset_free(ds);
    elm_trainer_free(tr);
    elm_optimizer_free(opt);
    elm_loss_free(loss);
    elm_model_free(m);
    elm_train_config_free(tc);
    unlink(path);
    rmdir(dir);
}

/* ---- examples/configs ---------------------------------------------------- */

static void test_examples(void **st) {
    (void)st;
    const char *dir = ELM_SOURCE_ROOT "/examples/configs";
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml") != 0) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        elm_train_config *tc = NULL;
        int rc = elm_train_config_load_yaml(path, &tc);
        if (rc != ELM_OK) print_message("%s\n", elm_last_error());
        assert_int_equal(rc, ELM_OK);
        check_round_trip(tc);
        elm_model *m = model_of(tc);
        /* short sequences keep the tapes small; they must outlast the
         * burn-in */
        size_t T_max = (size_t)get(tc, "loss.burn_in") + 4;
        elm_optimizer *opt;
        elm_loss *loss;
        elm_trainer *tr;
        rc = elm_train_config_build(tc, m, T_max, &opt, &loss, &tr);
        if (rc != ELM_OK) print_message("%s: %s\n", e->d_name, elm_last_error());
        assert_int_equal(rc, ELM_OK);
        check_objects(tc, opt, tr);
        elm_trainer_free(tr);
        elm_optimizer_free(opt);
        elm_loss_free(loss);
        elm_model_free(m);
        elm_train_config_free(tc);
        count++;
    }
    closedir(d);
    assert_true(count >= 4);
}

/* ---- the datasets of the data section -------------------------------------- */

static elm_train_config *yaml_config(const char *text) {
    elm_train_config *tc = NULL;
    assert_int_equal(elm_train_config_from_yaml(text, strlen(text), &tc), ELM_OK);
    return tc;
}

static size_t samples(const elm_dataset *ds) {
    size_t n;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_SAMPLES, &n), ELM_OK);
    return n;
}

static void test_open_data(void **st) {
    (void)st;
    elm_dataset *tr = NULL, *va = NULL, *te = NULL;
    /* Generated ListOps: train and test from different seeds, a split. */
    elm_train_config *tc = yaml_config("data:\n  source: listops_generate\n  batch_size: 4\n"
                                       "  batches_per_epoch: 5\n  val_fraction: 0.25\n"
                                       "  window: 600\n  seed: 3\n  test: unused\n");
    assert_int_equal(elm_train_config_open_data(tc, NULL, &tr, &va, &te), ELM_OK);
    assert_int_equal(samples(tr), 15);
    assert_int_equal(samples(va), 5);
    assert_int_equal(samples(te), 20);
    size_t T;
    assert_int_equal(elm_dataset_size(tr, ELM_DATASET_STEPS, &T), ELM_OK);
    assert_int_equal(T, 600);
    elm_dataset_free(tr);
    elm_dataset_free(va);
    elm_dataset_free(te);
    /* Without a test pointer, none is opened; val NULL with a fraction is
     * refused before anything is created. */
    assert_int_equal(elm_train_config_open_data(tc, NULL, &tr, NULL, NULL), ELM_E_NULL);
    assert_non_null(strstr(elm_last_error(), "val_fraction"));
    assert_int_equal(elm_train_config_set(tc, "data.val_fraction", 0), ELM_OK);
    assert_int_equal(elm_train_config_open_data(tc, NULL, &tr, NULL, NULL), ELM_OK);
    assert_int_equal(samples(tr), 20);
    elm_dataset_free(tr);
    elm_train_config_free(tc);

    /* Configuration errors name the key. */
    static const struct { const char *yaml, *msg; } bad[] = {
        {"data:\n  source: mnist\n  train: x\n", "data.source 'mnist'"},
        {"data:\n  source: shd\n", "data.train"},
        {"data:\n  source: shd_adding\n  train: x.h5\n", "data.batches_per_epoch"},
        {"data:\n  source: neuronio\n  train: x.nio\n", "data.batches_per_epoch"},
        {"data:\n  source: idx\n  train: x\n", "data.train_labels"},
        {"data:\n  source: idx\n  train: x\n  train_labels: y\n  sequence: columns\n",
         "data.sequence"},
        {"data:\n  source: listops_generate\n  batches_per_epoch: 1\n  batch_size: 4\n"
         "  val_fraction: 0.9\n", "leaves no training"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tc = yaml_config(bad[i].yaml);
        tr = va = te = (elm_dataset *)tc;
        assert_int_equal(elm_train_config_open_data(tc, NULL, &tr, &va, &te), ELM_E_CONFIG);
        if (!strstr(elm_last_error(), bad[i].msg)) print_message("%s\n", elm_last_error());
        assert_non_null(strstr(elm_last_error(), bad[i].msg));
        assert_true(tr == (elm_dataset *)tc && va == (elm_dataset *)tc);
        elm_train_config_free(tc);
    }
    /* A missing file: the source's own error, relative to base_dir. */
    tc = yaml_config("data:\n  source: listops\n  train: no_such.tsv\n");
    assert_int_equal(elm_train_config_open_data(tc, "/nonexistent-dir", &tr, &va, &te), ELM_E_IO);
    assert_non_null(strstr(elm_last_error(), "/nonexistent-dir/no_such.tsv"));
    elm_train_config_free(tc);

    /* Fashion-MNIST, when Debian's package is installed: relative paths,
     * rows, a split, the test set. */
    const char *dir = "/usr/share/datasets/fashion-mnist";
    FILE *f = fopen("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", "rb");
    if (!f) {
        skip();
        return;
    }
    fclose(f);
    tc = yaml_config("data:\n  source: idx\n  train: t10k-images-idx3-ubyte.gz\n"
                     "  train_labels: t10k-labels-idx1-ubyte.gz\n"
                     "  test: t10k-images-idx3-ubyte.gz\n"
                     "  test_labels: t10k-labels-idx1-ubyte.gz\n"
                     "  sequence: rows\n  val_fraction: 0.1\n  prefetch: 2\n");
    assert_int_equal(elm_train_config_open_data(tc, dir, &tr, &va, &te), ELM_OK);
    assert_int_equal(samples(tr), 9000);
    assert_int_equal(samples(va), 1000);
    assert_int_equal(samples(te), 10000);
    assert_int_equal(elm_dataset_size(te, ELM_DATASET_STEPS, &T), ELM_OK);
    assert_int_equal(T, 28);
    elm_dataset_free(tr);
    elm_dataset_free(va);
    elm_dataset_free(te);
    elm_train_config_free(tc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_numbers_and_enums),
        cmocka_unit_test(test_model_keys),
        cmocka_unit_test(test_optimizer_kinds),
        cmocka_unit_test(test_strings_and_lists),
        cmocka_unit_test(test_exact_output),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_yaml_stable),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_optimizer_defaults),
        cmocka_unit_test(test_build_refused),
        cmocka_unit_test(test_build_checkpoint),
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_open_data),
    };
    return cmocka_run_group_tests_name("train_config", tests, NULL, NULL);
}
