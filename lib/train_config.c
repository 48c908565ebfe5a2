/* Training configs: one table gives every "section.name" key its type,
 * bounds and default, so that typed access, YAML reading and writing and
 * elm_train_config_build cannot disagree. The model section is an
 * elm_config and goes through its own table (config.c).
 *
 * Optimizer keys remember whether they were given: those that were not
 * take the default of the current optimizer kind, as elm_optimizer_create
 * would (the defaults mirror optim.c; test_train_config checks them
 * against a real optimizer). */
#include "yaml_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STRING 4096             /* bytes of a string value (paths) */
#define MAX_WEIGHTS 16777216        /* loss weights: at most n_out */
#define EXACT_INT 9007199254740992.0 /* 2^53 */

enum {
    DATA_SOURCE, DATA_TRAIN, DATA_TEST, DATA_VAL_FRACTION, DATA_BATCH_SIZE, DATA_DT,
    DATA_MAX_TIME, DATA_WINDOW, DATA_SHUFFLE, DATA_SEED, DATA_DROP_LAST, DATA_PREFETCH,
    DATA_BATCHES_PER_EPOCH, DATA_SEQUENCE, DATA_PERMUTE, DATA_TRAIN_LABELS, DATA_TEST_LABELS,
    OPT_KIND, OPT_LR, OPT_MOMENTUM, OPT_DAMPENING, OPT_NESTEROV, OPT_BETA1, OPT_BETA2, OPT_EPS,
    OPT_WEIGHT_DECAY, OPT_CLIP_NORM, OPT_SCHEDULE, OPT_TOTAL_STEPS, OPT_WARMUP_STEPS,
    OPT_MIN_LR,
    LOSS_KIND, LOSS_BURN_IN, LOSS_WEIGHTS,
    TRAIN_EPOCHS, TRAIN_PATIENCE, TRAIN_MAX_BATCHES, TRAIN_DROPOUT, TRAIN_EVAL_DROPOUT,
    TRAIN_SEED, TRAIN_NONFINITE, TRAIN_SELECT, TRAIN_CHECKPOINT, TRAIN_CHECKPOINT_EVERY,
    TRAIN_TAPE_CHECKPOINTING, TRAIN_THREADS,
    N_KEYS
};

enum { SEC_MODEL, SEC_DATA, SEC_OPTIMIZER, SEC_LOSS, SEC_TRAINING, N_SECTIONS };
static const char *const sections[N_SECTIONS] = {"model", "data", "optimizer", "loss",
                                                 "training"};

static const elm_yaml_name optimizer_kinds[] = {
    {"sgd", ELM_OPTIM_SGD, false}, {"adam", ELM_OPTIM_ADAM, false},
    {"adamw", ELM_OPTIM_ADAMW, false}, {"adamax", ELM_OPTIM_ADAMAX, false}, {NULL, 0, false}};
static const elm_yaml_name schedules[] = {
    {"constant", ELM_SCHEDULE_CONSTANT, false}, {"cosine", ELM_SCHEDULE_COSINE, false},
    {NULL, 0, false}};
static const elm_yaml_name loss_kinds[] = {
    {"ce_last", ELM_LOSS_CE_LAST, false}, {"ce_all", ELM_LOSS_CE_ALL, false},
    {"neuronio", ELM_LOSS_NEURONIO, false}, {"mse", ELM_LOSS_MSE, false}, {NULL, 0, false}};
static const elm_yaml_name nonfinite_policies[] = {
    {"stop", ELM_NONFINITE_STOP, false}, {"skip", ELM_NONFINITE_SKIP, false}, {NULL, 0, false}};
static const elm_yaml_name selections[] = {
    {"val_loss", ELM_METRIC_VAL_LOSS, false}, {"val_accuracy", ELM_METRIC_VAL_ACCURACY, false},
    {"val_auc", ELM_METRIC_VAL_AUC, false}, {NULL, 0, false}};

/* Which optimizer kinds use a key (0: not an optimizer setting). */
#define K_SGD (1u << ELM_OPTIM_SGD)
#define K_ADAMS ((1u << ELM_OPTIM_ADAM) | (1u << ELM_OPTIM_ADAMW) | (1u << ELM_OPTIM_ADAMAX))
#define K_ALL (K_SGD | K_ADAMS)

typedef struct key_info {
    const char *name;    /* "section.name" */
    elm_value_type type;
    double lo, hi;       /* bounds, inclusive unless open */
    bool lo_open, hi_open;
    double def;
    const elm_yaml_name *names; /* ELM_VALUE_ENUM */
    int target;          /* the elm_optim_param or elm_train_option it sets */
    unsigned kinds;      /* optimizer settings: the kinds that use it */
} key_info;

#define STR ELM_VALUE_STRING
#define NUM ELM_VALUE_NUMBER
#define INT ELM_VALUE_INTEGER
#define BOOL ELM_VALUE_BOOL
#define ENUM ELM_VALUE_ENUM
#define LIST ELM_VALUE_LIST

/* Bounds of the optimizer and trainer settings mirror optim.c and
 * trainer.c, so that build() never meets a value they refuse. */
static const key_info keys[N_KEYS] = {
    [DATA_SOURCE] = {"data.source", STR},
    [DATA_TRAIN] = {"data.train", STR},
    [DATA_TEST] = {"data.test", STR},
    [DATA_VAL_FRACTION] = {"data.val_fraction", NUM, 0, 1, false, true, 0},
    [DATA_BATCH_SIZE] = {"data.batch_size", INT, 1, 16777216, false, false, 32},
    [DATA_DT] = {"data.dt", NUM, 1e-9, 1e9, false, false, 1},
    [DATA_MAX_TIME] = {"data.max_time", NUM, 0, 1e12, false, false, 0},
    [DATA_WINDOW] = {"data.window", INT, 0, 1e9, false, false, 0},
    [DATA_SHUFFLE] = {"data.shuffle", BOOL, 0, 1, false, false, 1},
    [DATA_SEED] = {"data.seed", INT, 0, EXACT_INT, false, false, 0},
    [DATA_DROP_LAST] = {"data.drop_last", BOOL, 0, 1, false, false, 0},
    [DATA_PREFETCH] = {"data.prefetch", INT, 0, 1e6, false, false, 0},
    [DATA_BATCHES_PER_EPOCH] = {"data.batches_per_epoch", INT, 0, 1e15, false, false, 0},
    [DATA_SEQUENCE] = {"data.sequence", STR},
    [DATA_PERMUTE] = {"data.permute", BOOL, 0, 1, false, false, 0},
    [DATA_TRAIN_LABELS] = {"data.train_labels", STR},
    [DATA_TEST_LABELS] = {"data.test_labels", STR},

    [OPT_KIND] = {"optimizer.kind", ENUM, ELM_OPTIM_SGD, ELM_OPTIM_ADAMAX, false, false,
                  ELM_OPTIM_ADAM, optimizer_kinds},
    [OPT_LR] = {"optimizer.lr", NUM, 0, INFINITY, true, true, 0, NULL, ELM_OPTIM_LR, K_ALL},
    [OPT_MOMENTUM] = {"optimizer.momentum", NUM, 0, 1, false, true, 0, NULL, ELM_OPTIM_MOMENTUM,
                      K_SGD},
    [OPT_DAMPENING] = {"optimizer.dampening", NUM, 0, 1, false, false, 0, NULL,
                       ELM_OPTIM_DAMPENING, K_SGD},
    [OPT_NESTEROV] = {"optimizer.nesterov", BOOL, 0, 1, false, false, 0, NULL, ELM_OPTIM_NESTEROV,
                      K_SGD},
    [OPT_BETA1] = {"optimizer.beta1", NUM, 0, 1, false, true, 0.9, NULL, ELM_OPTIM_BETA1, K_ADAMS},
    [OPT_BETA2] = {"optimizer.beta2", NUM, 0, 1, false, true, 0.999, NULL, ELM_OPTIM_BETA2,
                   K_ADAMS},
    [OPT_EPS] = {"optimizer.eps", NUM, 0, INFINITY, true, true, 1e-8, NULL, ELM_OPTIM_EPS, K_ADAMS},
    [OPT_WEIGHT_DECAY] = {"optimizer.weight_decay", NUM, 0, INFINITY, false, true, 0, NULL,
                          ELM_OPTIM_WEIGHT_DECAY, K_ALL},
    [OPT_CLIP_NORM] = {"optimizer.clip_norm", NUM, 0, INFINITY, false, true, 0, NULL,
                       ELM_OPTIM_CLIP_NORM, K_ALL},
    [OPT_SCHEDULE] = {"optimizer.schedule", ENUM, 0, 1, false, false, ELM_SCHEDULE_CONSTANT,
                      schedules, ELM_OPTIM_SCHEDULE, K_ALL},
    [OPT_TOTAL_STEPS] = {"optimizer.total_steps", INT, 1, EXACT_INT, false, false, 1, NULL,
                         ELM_OPTIM_TOTAL_STEPS, K_ALL},
    [OPT_WARMUP_STEPS] = {"optimizer.warmup_steps", INT, 0, EXACT_INT, false, false, 0, NULL,
                          ELM_OPTIM_WARMUP_STEPS, K_ALL},
    [OPT_MIN_LR] = {"optimizer.min_lr", NUM, 0, INFINITY, false, true, 0, NULL, ELM_OPTIM_MIN_LR,
                    K_ALL},

    [LOSS_KIND] = {"loss.kind", ENUM, ELM_LOSS_CE_LAST, ELM_LOSS_MSE, false, false,
                   ELM_LOSS_CE_LAST, loss_kinds},
    [LOSS_BURN_IN] = {"loss.burn_in", INT, 0, 1e9, false, false, 0},
    [LOSS_WEIGHTS] = {"loss.weights", LIST, 0, FLT_MAX},

    [TRAIN_EPOCHS] = {"training.epochs", INT, 1, 1e9, false, false, 1, NULL, ELM_TRAIN_EPOCHS},
    [TRAIN_PATIENCE] = {"training.patience", INT, 0, 1e9, false, false, 0, NULL,
                        ELM_TRAIN_PATIENCE},
    [TRAIN_MAX_BATCHES] = {"training.max_batches", INT, 0, 1e15, false, false, 0, NULL,
                           ELM_TRAIN_MAX_BATCHES},
    [TRAIN_DROPOUT] = {"training.dropout", NUM, 0, 0.999999, false, false, 0, NULL,
                       ELM_TRAIN_DROPOUT},
    [TRAIN_EVAL_DROPOUT] = {"training.eval_dropout", BOOL, 0, 1, false, false, 0, NULL,
                            ELM_TRAIN_EVAL_DROPOUT},
    [TRAIN_SEED] = {"training.seed", INT, 0, EXACT_INT, false, false, 0, NULL, ELM_TRAIN_SEED},
    [TRAIN_NONFINITE] = {"training.nonfinite", ENUM, 0, 1, false, false, ELM_NONFINITE_STOP,
                         nonfinite_policies, ELM_TRAIN_NONFINITE},
    [TRAIN_SELECT] = {"training.select", ENUM, ELM_METRIC_VAL_LOSS, ELM_METRIC_VAL_AUC, false,
                      false, ELM_METRIC_VAL_LOSS, selections, ELM_TRAIN_SELECT},
    [TRAIN_CHECKPOINT] = {"training.checkpoint", STR},
    [TRAIN_CHECKPOINT_EVERY] = {"training.checkpoint_every", INT, 0, EXACT_INT, false, false, 0},
    [TRAIN_TAPE_CHECKPOINTING] = {"training.tape_checkpointing", BOOL, 0, 1, false, false, 0},
    [TRAIN_THREADS] = {"training.threads", INT, 1, 16777216, false, false, 1, NULL,
                       ELM_TRAIN_THREADS},
};

#undef STR
#undef NUM
#undef INT
#undef BOOL
#undef ENUM
#undef LIST

static const char *const model_keys[ELM_PARAM_LAST + 1] = {
    [ELM_FORMULATION] = "model.formulation",
    [ELM_NUM_INPUT] = "model.num_input",
    [ELM_NUM_OUTPUT] = "model.num_output",
    [ELM_NUM_MEMORY] = "model.num_memory",
    [ELM_LAMBDA] = "model.lambda_value",
    [ELM_MLP_NUM_LAYERS] = "model.mlp_num_layers",
    [ELM_MLP_HIDDEN_SIZE] = "model.mlp_hidden_size",
    [ELM_MLP_ACTIVATION] = "model.mlp_activation",
    [ELM_TAU_S] = "model.tau_s_value",
    [ELM_TAU_M_MIN] = "model.memory_tau_min",
    [ELM_TAU_M_MAX] = "model.memory_tau_max",
    [ELM_LEARN_TAU_M] = "model.learn_memory_tau",
    [ELM_W_S_INIT] = "model.w_s_value",
    [ELM_NUM_BRANCH] = "model.num_branch",
    [ELM_SYNAPSES_PER_BRANCH] = "model.num_synapse_per_branch",
    [ELM_ROUTING] = "model.input_to_synapse_routing",
    [ELM_DT] = "model.delta_t",
};

struct elm_train_config {
    elm_config model;
    double v[N_KEYS];
    bool given[N_KEYS]; /* optimizer settings set explicitly */
    char *s[N_KEYS];    /* string values; NULL = "" */
    double *weights;    /* loss.weights */
    size_t n_weights;
};

/* ---- values ----------------------------------------------------------------- */

static const char *short_name(int k) { return strchr(keys[k].name, '.') + 1; }

static int section_of(int k) {
    size_t n = (size_t)(strchr(keys[k].name, '.') - keys[k].name);
    for (int s = 0; s < N_SECTIONS; s++)
        if (strlen(sections[s]) == n && strncmp(keys[k].name, sections[s], n) == 0) return s;
    return -1;
}

static int opt_kind(const elm_train_config *tc) { return (int)tc->v[OPT_KIND]; }

static bool applies(const elm_train_config *tc, int k) {
    return !keys[k].kinds || (keys[k].kinds & (1u << opt_kind(tc)));
}

/* The default of optimizer setting k for a kind, as optim.c sets it. */
static double opt_default(int kind, int k) {
    if (k == OPT_LR) return kind == ELM_OPTIM_SGD ? 1e-2 : kind == ELM_OPTIM_ADAMAX ? 2e-3 : 1e-3;
    if (k == OPT_WEIGHT_DECAY) return kind == ELM_OPTIM_ADAMW ? 1e-2 : 0;
    return keys[k].def;
}

/* The effective value: an optimizer setting nobody gave is the kind's. */
static double value_of(const elm_train_config *tc, int k) {
    return keys[k].kinds && !tc->given[k] ? opt_default(opt_kind(tc), k) : tc->v[k];
}

/* NULL when v is a valid value of key k, else its domain for a message. */
static const char *check_value(int k, double v, char *buf, size_t size) {
    const key_info *ki = &keys[k];
    char lo[32], hi[32], list[160];
    bool ok = isfinite(v);
    if (ki->type == ELM_VALUE_ENUM) {
        if (ok && v == floor(v) && elm__yaml_value_name(ki->names, (int)v)) return NULL;
        snprintf(buf, size, "the C enum value of %s",
                 elm__yaml_name_list(ki->names, list, sizeof list));
        return buf;
    }
    bool integral = ki->type != ELM_VALUE_NUMBER;
    if (ok && integral) ok = v == floor(v);
    if (ok) ok = ki->lo_open ? v > ki->lo : v >= ki->lo;
    if (ok) ok = ki->hi_open ? v < ki->hi : v <= ki->hi;
    if (ok) return NULL;
    if (ki->type == ELM_VALUE_BOOL) {
        snprintf(buf, size, "0 or 1");
        return buf;
    }
    elm__yaml_format_number(ki->lo, false, lo, sizeof lo);
    elm__yaml_format_number(ki->hi, false, hi, sizeof hi);
    const char *what = integral ? "an integer" : "a number";
    if (isinf(ki->hi))
        snprintf(buf, size, "a finite number %s %s", ki->lo_open ? ">" : ">=", lo);
    else
        snprintf(buf, size, "%s in %c%s, %s%c", what, ki->lo_open ? '(' : '[', lo, hi,
                 ki->hi_open ? ')' : ']');
    return buf;
}

/* Loss weights become floats: finite there too. */
static bool weight_ok(double w) { return w >= 0 && w <= FLT_MAX; }

/* NULL when the list suits loss.weights, else what is wrong with it. */
static const char *check_weights(const double *w, size_t n, char *buf, size_t size) {
    if (n > MAX_WEIGHTS) {
        snprintf(buf, size, "at most %d weights are allowed, got %zu", MAX_WEIGHTS, n);
        return buf;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!weight_ok(w[i])) {
            snprintf(buf, size, "weight [%zu] = %g must be a finite number >= 0 (as a float)", i,
                     w[i]);
            return buf;
        }
        sum += w[i];
    }
    if (n > 0 && !(sum > 0)) {
        snprintf(buf, size, "the weights sum to 0");
        return buf;
    }
    return NULL;
}

/* Set key k to a checked value. Changing the optimizer kind forgets the
 * settings the new kind does not use. */
static void store(elm_train_config *tc, int k, double v) {
    if (k == OPT_KIND)
        for (int j = 0; j < N_KEYS; j++)
            if (keys[j].kinds && !(keys[j].kinds & (1u << (int)v))) tc->given[j] = false;
    tc->v[k] = v;
    tc->given[k] = true;
}

static int store_string(const char *fn, elm_train_config *tc, int k, const char *s) {
    size_t n = strlen(s);
    if (n > MAX_STRING)
        return elm__fail(ELM_E_INVALID, "%s: %s holds at most %d bytes, got %zu", fn,
                         keys[k].name, MAX_STRING, n);
    if (!elm__utf8_valid(s, n))
        return elm__fail(ELM_E_INVALID, "%s: %s is not valid UTF-8", fn, keys[k].name);
    char *copy = NULL;
    if (n > 0 && !(copy = malloc(n + 1))) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    if (copy) memcpy(copy, s, n + 1);
    free(tc->s[k]);
    tc->s[k] = copy;
    return ELM_OK;
}

static int store_weights(const char *fn, elm_train_config *tc, const double *w, size_t n) {
    double *copy = NULL;
    if (n > 0 && !(copy = malloc(n * sizeof *copy)))
        return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    if (copy) memcpy(copy, w, n * sizeof *copy);
    free(tc->weights);
    tc->weights = copy;
    tc->n_weights = n;
    return ELM_OK;
}

/* ---- life cycle --------------------------------------------------------- */

ELM_API void elm_train_config_free(elm_train_config *tc) {
    if (!tc) return;
    for (int k = 0; k < N_KEYS; k++) free(tc->s[k]);
    free(tc->weights);
    free(tc);
}

ELM_API int elm_train_config_create(elm_train_config **out) {
    if (!out) return elm__fail(ELM_E_NULL, "elm_train_config_create: out is NULL");
    elm_train_config *tc = calloc(1, sizeof *tc);
    elm_config *defaults = NULL;
    if (!tc || elm_config_create(&defaults) != ELM_OK) {
        free(tc);
        return elm__fail(ELM_E_NOMEM, "elm_train_config_create: out of memory");
    }
    tc->model = *defaults;
    elm_config_free(defaults);
    for (int k = 0; k < N_KEYS; k++) tc->v[k] = keys[k].def;
    *out = tc;
    return ELM_OK;
}

ELM_API elm_config *elm_train_config_model(elm_train_config *tc) { return tc ? &tc->model : NULL; }

/* ---- typed access ----------------------------------------------------------- */

/* Key index k, or k = -1 and *param for a model key. */
static int lookup(const char *fn, const char *key, int *k, elm_param *param) {
    if (strncmp(key, "model.", 6) == 0 && elm_param_from_name(key + 6, param) == ELM_OK) {
        *k = -1;
        return ELM_OK;
    }
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].name, key) == 0) {
            *k = i;
            return ELM_OK;
        }
    return elm__fail(ELM_E_UNKNOWN_NAME, "%s: unknown key '%s' (elm_train_config_key lists them)",
                     fn, key);
}

static int not_used(const char *fn, const elm_train_config *tc, int k) {
    return elm__fail(ELM_E_UNKNOWN_NAME, "%s: %s does not apply to optimizer kind '%s'", fn,
                     keys[k].name, elm__yaml_value_name(optimizer_kinds, opt_kind(tc)));
}

static int wrong_type(const char *fn, int k, const char *use) {
    static const char *const type_names[] = {NULL,     "a number", "an integer", "a boolean",
                                             "an enum", "a string", "a list"};
    return elm__fail(ELM_E_INVALID, "%s: %s is %s; use %s", fn, keys[k].name,
                     type_names[keys[k].type], use);
}

ELM_API int elm_train_config_set(elm_train_config *tc, const char *key, double value) {
    static const char fn[] = "elm_train_config_set";
    if (!tc || !key) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    int k = -1;
    elm_param p;
    int rc = lookup(fn, key, &k, &p);
    if (rc != ELM_OK) return rc;
    if (k < 0) return elm_config_set(&tc->model, p, value);
    if (keys[k].type == ELM_VALUE_STRING) return wrong_type(fn, k, "elm_train_config_set_string");
    if (keys[k].type == ELM_VALUE_LIST) return wrong_type(fn, k, "elm_train_config_set_list");
    if (!applies(tc, k)) return not_used(fn, tc, k);
    char dom[200];
    if (check_value(k, value, dom, sizeof dom))
        return elm__fail(ELM_E_INVALID, "%s: %s = %g; it must be %s", fn, keys[k].name, value,
                         dom);
    store(tc, k, value);
    return ELM_OK;
}

ELM_API int elm_train_config_get(const elm_train_config *tc, const char *key, double *value) {
    static const char fn[] = "elm_train_config_get";
    if (!tc || !key || !value) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    int k = -1;
    elm_param p;
    int rc = lookup(fn, key, &k, &p);
    if (rc != ELM_OK) return rc;
    if (k < 0) return elm_config_get(&tc->model, p, value);
    if (keys[k].type == ELM_VALUE_STRING) return wrong_type(fn, k, "elm_train_config_get_string");
    if (keys[k].type == ELM_VALUE_LIST) return wrong_type(fn, k, "elm_train_config_get_list");
    if (!applies(tc, k)) return not_used(fn, tc, k);
    *value = value_of(tc, k);
    return ELM_OK;
}

ELM_API int elm_train_config_set_string(elm_train_config *tc, const char *key,
                                        const char *value) {
    static const char fn[] = "elm_train_config_set_string";
    if (!tc || !key || !value) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    int k = -1, v;
    elm_param p;
    char list[160];
    int rc = lookup(fn, key, &k, &p);
    if (rc != ELM_OK) return rc;
    if (k < 0) {
        const elm_yaml_name *names = elm__yaml_param_names(p);
        if (!names)
            return elm__fail(ELM_E_INVALID, "%s: %s is a number; use elm_train_config_set", fn,
                             key);
        if (!elm__yaml_name_value(names, value, &v))
            return elm__fail(ELM_E_INVALID, "%s: %s = '%s'; it must be %s", fn, key, value,
                             elm__yaml_name_list(names, list, sizeof list));
        return elm_config_set(&tc->model, p, v);
    }
    if (keys[k].type == ELM_VALUE_STRING) return store_string(fn, tc, k, value);
    if (keys[k].type != ELM_VALUE_ENUM) return wrong_type(fn, k, "elm_train_config_set");
    if (!applies(tc, k)) return not_used(fn, tc, k);
    if (!elm__yaml_name_value(keys[k].names, value, &v))
        return elm__fail(ELM_E_INVALID, "%s: %s = '%s'; it must be %s", fn, key, value,
                         elm__yaml_name_list(keys[k].names, list, sizeof list));
    store(tc, k, v);
    return ELM_OK;
}

ELM_API int elm_train_config_get_string(const elm_train_config *tc, const char *key,
                                        const char **value) {
    static const char fn[] = "elm_train_config_get_string";
    if (!tc || !key || !value) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    int k = -1;
    elm_param p;
    int rc = lookup(fn, key, &k, &p);
    if (rc != ELM_OK) return rc;
    if (k < 0) {
        const elm_yaml_name *names = elm__yaml_param_names(p);
        const char *name = names ? elm__yaml_value_name(names, (int)tc->model.v[p]) : NULL;
        if (!name)
            return elm__fail(ELM_E_INVALID, "%s: %s is a number; use elm_train_config_get", fn,
                             key);
        *value = name;
        return ELM_OK;
    }
    if (keys[k].type == ELM_VALUE_STRING) {
        *value = tc->s[k] ? tc->s[k] : "";
        return ELM_OK;
    }
    if (keys[k].type != ELM_VALUE_ENUM) return wrong_type(fn, k, "elm_train_config_get");
    if (!applies(tc, k)) return not_used(fn, tc, k);
    *value = elm__yaml_value_name(keys[k].names, (int)value_of(tc, k));
    return ELM_OK;
}

ELM_API int elm_train_config_set_list(elm_train_config *tc, const char *key, const double *values,
                                      size_t n) {
    static const char fn[] = "elm_train_config_set_list";
    if (!tc || !key || (!values && n > 0)) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    int k = -1;
    elm_param p;
    int rc = lookup(fn, key, &k, &p);
    if (rc != ELM_OK) return rc;
    if (k < 0 || keys[k].type != ELM_VALUE_LIST)
        return elm__fail(ELM_E_INVALID, "%s: %s is not a list", fn, key);
    char why[160];
    if (check_weights(values, n, why, sizeof why))
        return elm__fail(ELM_E_INVALID, "%s: %s: %s", fn, key, why);
    return store_weights(fn, tc, values, n);
}

ELM_API int elm_train_config_get_list(const elm_train_config *tc, const char *key, double *values,
                                      size_t capacity, size_t *n) {
    static const char fn[] = "elm_train_config_get_list";
    if (!tc || !key || !n || (!values && capacity > 0))
        return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    int k = -1;
    elm_param p;
    int rc = lookup(fn, key, &k, &p);
    if (rc != ELM_OK) return rc;
    if (k < 0 || keys[k].type != ELM_VALUE_LIST)
        return elm__fail(ELM_E_INVALID, "%s: %s is not a list", fn, key);
    size_t m = tc->n_weights < capacity ? tc->n_weights : capacity;
    if (m > 0) memcpy(values, tc->weights, m * sizeof *values);
    *n = tc->n_weights;
    return ELM_OK;
}

ELM_API int elm_train_config_key(size_t i, const char **key, elm_value_type *type) {
    if (!key || !type) return elm__fail(ELM_E_NULL, "elm_train_config_key: NULL argument");
    if (i < ELM_PARAM_LAST) {
        *key = model_keys[i + 1];
        *type = elm__yaml_param_type((elm_param)(i + 1));
        return ELM_OK;
    }
    if (i - ELM_PARAM_LAST >= N_KEYS)
        return elm__fail(ELM_E_INVALID, "elm_train_config_key: there are %d keys, asked for [%zu]",
                         ELM_PARAM_LAST + N_KEYS, i);
    *key = keys[i - ELM_PARAM_LAST].name;
    *type = keys[i - ELM_PARAM_LAST].type;
    return ELM_OK;
}

/* ---- YAML in ------------------------------------------------------------- */

static int read_list(const elm_yaml *y, const elm_ynode *val, const char *sec, const char *name,
                     elm_train_config *tc) {
    if (elm__yaml_is_null(y, val)) return store_weights(y->origin, tc, NULL, 0);
    if (val->kind != ELM_YAML_SEQUENCE) {
        char buf[96];
        return elm__yaml_fail(y, val, ELM_E_INVALID,
                              "'%s' in '%s' must be a list of numbers, got %s", name, sec,
                              elm__yaml_describe(y, val, buf, sizeof buf));
    }
    /* count along the chain: an alias's copy of a list may predate items */
    size_t count = 0;
    for (const elm_ynode *item = elm__ynode(y, val->first); item; item = elm__ynode(y, item->next))
        count++;
    if (count > MAX_WEIGHTS)
        return elm__yaml_fail(y, val, ELM_E_INVALID, "'%s' in '%s' holds at most %d numbers", name,
                              sec, MAX_WEIGHTS);
    double *w = malloc((count + 1) * sizeof *w);
    if (!w) return elm__fail(ELM_E_NOMEM, "%s: out of memory", y->origin);
    size_t n = 0;
    int rc = ELM_OK;
    for (const elm_ynode *item = elm__ynode(y, val->first); item && rc == ELM_OK;
         item = elm__ynode(y, item->next)) {
        rc = elm__yaml_number(y, item, sec, name, false, &w[n]);
        if (rc == ELM_OK && !weight_ok(w[n]))
            rc = elm__yaml_fail(y, item, ELM_E_INVALID, "'%s' in '%s': item %zu must be a finite "
                                "number >= 0, got %s", name, sec, n, elm__yaml_text(y, item));
        n++;
    }
    char why[160];
    if (rc == ELM_OK && check_weights(w, n, why, sizeof why))
        rc = elm__yaml_fail(y, val, ELM_E_INVALID, "'%s' in '%s': %s", name, sec, why);
    if (rc == ELM_OK) rc = store_weights(y->origin, tc, w, n);
    free(w);
    return rc;
}

static int read_value(const elm_yaml *y, const elm_ynode *val, int k, elm_train_config *tc) {
    const char *sec = sections[section_of(k)], *name = short_name(k);
    const key_info *ki = &keys[k];
    double v;
    int rc;
    switch (ki->type) {
    case ELM_VALUE_STRING: {
        const char *s;
        rc = elm__yaml_string(y, val, sec, name, &s);
        if (rc == ELM_OK && (strlen(s) > MAX_STRING || !elm__utf8_valid(s, strlen(s))))
            rc = elm__yaml_fail(y, val, ELM_E_INVALID, "'%s' in '%s' must be valid UTF-8 of at "
                                "most %d bytes", name, sec, MAX_STRING);
        return rc == ELM_OK ? store_string(y->origin, tc, k, s) : rc;
    }
    case ELM_VALUE_LIST: return read_list(y, val, sec, name, tc);
    case ELM_VALUE_ENUM: rc = elm__yaml_enum(y, val, sec, name, ki->names, &v); break;
    case ELM_VALUE_BOOL: rc = elm__yaml_bool(y, val, sec, name, &v); break;
    default:
        rc = elm__yaml_number(y, val, sec, name, ki->type == ELM_VALUE_INTEGER, &v);
        break;
    }
    if (rc != ELM_OK) return rc;
    char dom[200], got[96];
    if (check_value(k, v, dom, sizeof dom))
        return elm__yaml_fail(y, val, ELM_E_INVALID, "'%s' in '%s' must be %s, got %s", name, sec,
                              dom, elm__yaml_describe(y, val, got, sizeof got));
    store(tc, k, v);
    return ELM_OK;
}

/* Key k of section s named `name`, or -1. */
static int find_in_section(int s, const char *name) {
    size_t n = strlen(sections[s]);
    for (int k = 0; k < N_KEYS; k++)
        if (strncmp(keys[k].name, sections[s], n) == 0 && keys[k].name[n] == '.' &&
            strcmp(keys[k].name + n + 1, name) == 0)
            return k;
    return -1;
}

static int key_name(const elm_yaml *y, const elm_ynode *key, const char *where,
                    const char **name) {
    if (key->kind != ELM_YAML_SCALAR)
        return elm__yaml_fail(y, key, ELM_E_FORMAT, "a key in %s must be a name, got %s", where,
                              key->kind == ELM_YAML_SEQUENCE ? "a list" : "a mapping");
    *name = elm__yaml_text(y, key);
    if (strlen(*name) != key->len)
        return elm__yaml_fail(y, key, ELM_E_UNKNOWN_NAME, "unknown key in %s (it holds a NUL)",
                              where);
    return ELM_OK;
}

/* The optimizer kind decides which other settings exist, so it is read
 * before them wherever it stands. */
static int read_kind(const elm_yaml *y, const elm_ynode *map, elm_train_config *tc) {
    for (const elm_ynode *key = elm__ynode(y, map->first); key;) {
        const elm_ynode *val = elm__ynode(y, key->next);
        if (key->kind == ELM_YAML_SCALAR && strcmp(elm__yaml_text(y, key), "kind") == 0)
            return read_value(y, val, OPT_KIND, tc);
        key = elm__ynode(y, val->next);
    }
    return ELM_OK;
}

static int read_section(const elm_yaml *y, const elm_ynode *map, int s, elm_train_config *tc) {
    if (s == SEC_MODEL) return elm__yaml_read_model(y, map, &tc->model);
    char where[32];
    snprintf(where, sizeof where, "'%s'", sections[s]);
    int rc = s == SEC_OPTIMIZER ? read_kind(y, map, tc) : ELM_OK;
    const elm_ynode *seen[N_KEYS] = {0};
    for (const elm_ynode *key = elm__ynode(y, map->first); key && rc == ELM_OK;) {
        const elm_ynode *val = elm__ynode(y, key->next);
        const char *name = NULL;
        if ((rc = key_name(y, key, where, &name)) != ELM_OK) break;
        int k = find_in_section(s, name);
        if (k < 0) {
            char ex[64];
            elm__yaml_excerpt(name, key->len, ex, sizeof ex);
            rc = elm__yaml_fail(y, key, ELM_E_UNKNOWN_NAME, "unknown key '%s' in '%s'", ex,
                                sections[s]);
        } else if (seen[k]) {
            rc = elm__yaml_fail(y, key, ELM_E_FORMAT,
                                "duplicate key '%s' in '%s' (first given at line %zu)", name,
                                sections[s], seen[k]->line);
        } else if (!applies(tc, k)) {
            rc = elm__yaml_fail(y, key, ELM_E_UNKNOWN_NAME,
                                "'%s' in 'optimizer' does not apply to optimizer kind '%s'", name,
                                elm__yaml_value_name(optimizer_kinds, opt_kind(tc)));
        } else {
            seen[k] = key;
            if (k != OPT_KIND) rc = read_value(y, val, k, tc);
        }
        key = elm__ynode(y, val->next);
    }
    return rc;
}

static int read_config(const elm_yaml *y, elm_train_config *tc) {
    const elm_ynode *root;
    int rc = elm__yaml_root(y, "a mapping of sections (model, data, optimizer, loss, training)",
                            &root);
    const elm_ynode *seen[N_SECTIONS] = {0};
    for (const elm_ynode *key = rc ? NULL : elm__ynode(y, root->first); key && rc == ELM_OK;) {
        const elm_ynode *val = elm__ynode(y, key->next);
        const char *name = NULL;
        if ((rc = key_name(y, key, "the top level", &name)) != ELM_OK) break;
        int s = 0;
        while (s < N_SECTIONS && strcmp(sections[s], name) != 0) s++;
        char buf[96];
        elm__yaml_excerpt(name, key->len, buf, sizeof buf);
        if (s == N_SECTIONS)
            rc = elm__yaml_fail(y, key, ELM_E_UNKNOWN_NAME, "unknown section '%s' (expected "
                                "model, data, optimizer, loss or training)", buf);
        else if (seen[s])
            rc = elm__yaml_fail(y, key, ELM_E_FORMAT,
                                "duplicate section '%s' (first given at line %zu)", name,
                                seen[s]->line);
        else if (val->kind != ELM_YAML_MAPPING && !elm__yaml_is_null(y, val))
            rc = elm__yaml_fail(y, val, ELM_E_INVALID, "section '%s' must be a mapping, got %s",
                                name, elm__yaml_describe(y, val, buf, sizeof buf));
        else if (val->kind == ELM_YAML_MAPPING)
            rc = read_section(y, val, s, tc);
        if (s < N_SECTIONS) seen[s] = key;
        key = elm__ynode(y, val->next);
    }
    return rc;
}

static int config_from_text(const char *origin, const char *text, size_t len,
                            elm_train_config **out) {
    elm_yaml y;
    int rc = elm__yaml_parse(&y, origin, text, len);
    if (rc != ELM_OK) return rc;
    elm_train_config *tc = NULL;
    rc = elm_train_config_create(&tc);
    if (rc == ELM_OK) rc = read_config(&y, tc);
    elm__yaml_free(&y);
    if (rc != ELM_OK) {
        elm_train_config_free(tc);
        return rc;
    }
    *out = tc;
    return ELM_OK;
}

ELM_API int elm_train_config_from_yaml(const char *text, size_t len, elm_train_config **out) {
    if (!text || !out) return elm__fail(ELM_E_NULL, "elm_train_config_from_yaml: NULL argument");
    return config_from_text("<string>", text, len, out);
}

ELM_API int elm_train_config_load_yaml(const char *path, elm_train_config **out) {
    if (!path || !out) return elm__fail(ELM_E_NULL, "elm_train_config_load_yaml: NULL argument");
    char *text;
    size_t len;
    int rc = elm__yaml_read_file("elm_train_config_load_yaml", path, &text, &len);
    if (rc != ELM_OK) return rc;
    rc = config_from_text(path, text, len, out);
    free(text);
    return rc;
}

/* ---- YAML out --------------------------------------------------------------- */

static void write_key(elm_ybuf *b, const elm_train_config *tc, int k) {
    const char *name = short_name(k);
    double v = value_of(tc, k);
    char num[40];
    switch (keys[k].type) {
    case ELM_VALUE_STRING:
        if (!tc->s[k]) return; /* "" is the default */
        elm__ybuf_printf(b, "  %s: ", name);
        elm__ybuf_quoted(b, tc->s[k]);
        elm__ybuf_printf(b, "\n");
        return;
    case ELM_VALUE_LIST:
        if (tc->n_weights == 0) return;
        elm__ybuf_printf(b, "  %s: [", name);
        for (size_t i = 0; i < tc->n_weights; i++) {
            elm__yaml_format_number(tc->weights[i], true, num, sizeof num);
            elm__ybuf_printf(b, "%s%s", i ? ", " : "", num);
        }
        elm__ybuf_printf(b, "]\n");
        return;
    case ELM_VALUE_ENUM:
        elm__ybuf_printf(b, "  %s: %s\n", name, elm__yaml_value_name(keys[k].names, (int)v));
        return;
    case ELM_VALUE_BOOL:
        elm__ybuf_printf(b, "  %s: %s\n", name, v != 0 ? "true" : "false");
        return;
    default:
        elm__yaml_format_number(v, keys[k].type == ELM_VALUE_NUMBER, num, sizeof num);
        elm__ybuf_printf(b, "  %s: %s\n", name, num);
        return;
    }
}

/* Every section and every key in table order; optimizer settings only for
 * the kind that uses them, with their effective values. */
static void write_config(elm_ybuf *b, const elm_train_config *tc) {
    elm__ybuf_printf(b, "model:\n");
    elm__yaml_write_model(b, &tc->model, "  ");
    int current = SEC_MODEL;
    for (int k = 0; k < N_KEYS; k++) {
        int s = section_of(k);
        if (s != current) elm__ybuf_printf(b, "%s:\n", sections[s]);
        current = s;
        if (applies(tc, k)) write_key(b, tc, k);
    }
}

ELM_API int elm_train_config_to_yaml(const elm_train_config *tc, char *dst, size_t capacity,
                                     size_t *size) {
    if (!tc || !size) return elm__fail(ELM_E_NULL, "elm_train_config_to_yaml: NULL argument");
    elm_ybuf b = {0};
    write_config(&b, tc);
    return elm__yaml_output("elm_train_config_to_yaml", &b, dst, capacity, size);
}

ELM_API int elm_train_config_save_yaml(const elm_train_config *tc, const char *path) {
    if (!tc || !path) return elm__fail(ELM_E_NULL, "elm_train_config_save_yaml: NULL argument");
    elm_ybuf b = {0};
    write_config(&b, tc);
    return elm__yaml_save("elm_train_config_save_yaml", path, &b);
}

/* ---- build ----------------------------------------------------------------- */

static const char build_fn[] = "elm_train_config_build";

/* Re-fail with the message of the call that failed, saying what it was
 * building. */
static int wrap(int rc, const char *what) {
    char why[384];
    snprintf(why, sizeof why, "%s", elm_last_error());
    return elm__fail(rc, "%s: %s: %s", build_fn, what, why);
}

static void param_text(elm_param p, double v, char *buf, size_t size) {
    const elm_yaml_name *names = elm__yaml_param_names(p);
    const char *name = names ? elm__yaml_value_name(names, (int)v) : NULL;
    if (name)
        snprintf(buf, size, "%s", name);
    else
        elm__yaml_format_number(v, false, buf, size);
}

/* The model section, resolved as elm_model_create resolves a config, must
 * equal the model's own config. Unset num_input / num_output take the
 * model's. */
static int check_model(const elm_train_config *tc, const elm_model *model) {
    const elm_config *have = elm_model_config(model);
    elm_config want = tc->model;
    double *v = want.v;
    if (v[ELM_NUM_INPUT] == 0) v[ELM_NUM_INPUT] = have->v[ELM_NUM_INPUT];
    if (v[ELM_NUM_OUTPUT] == 0) v[ELM_NUM_OUTPUT] = have->v[ELM_NUM_OUTPUT];
    if (elm_config_validate(&want) != ELM_OK) return wrap(ELM_E_CONFIG, "the model section");
    if (v[ELM_NUM_BRANCH] == 0) v[ELM_NUM_BRANCH] = v[ELM_NUM_INPUT];
    if (v[ELM_MLP_HIDDEN_SIZE] == 0) v[ELM_MLP_HIDDEN_SIZE] = 2 * v[ELM_NUM_MEMORY];
    if (v[ELM_FORMULATION] == ELM_V2 && v[ELM_TAU_M_MAX] < v[ELM_TAU_M_MIN] + 3e-6)
        v[ELM_TAU_M_MAX] = v[ELM_TAU_M_MIN] + 3e-6;
    for (int k = 1; k <= ELM_PARAM_LAST; k++) {
        if (v[k] == have->v[k]) continue;
        char a[40], b[40];
        param_text((elm_param)k, v[k], a, sizeof a);
        param_text((elm_param)k, have->v[k], b, sizeof b);
        return elm__fail(ELM_E_CONFIG, "%s: %s is %s in the config but %s in the model",
                         build_fn, model_keys[k], a, b);
    }
    return ELM_OK;
}

/* Combinations that would only fail later, during training. */
static int check_plan(const elm_train_config *tc, size_t n_out, size_t T_max) {
    if (T_max == 0) return elm__fail(ELM_E_INVALID, "%s: T_max must be >= 1", build_fn);
    if (tc->n_weights > 0 && tc->n_weights != n_out)
        return elm__fail(ELM_E_CONFIG, "%s: loss.weights has %zu values, the model %zu outputs",
                         build_fn, tc->n_weights, n_out);
    if (opt_kind(tc) == ELM_OPTIM_SGD && value_of(tc, OPT_NESTEROV) != 0 &&
        (value_of(tc, OPT_MOMENTUM) <= 0 || value_of(tc, OPT_DAMPENING) != 0))
        return elm__fail(ELM_E_CONFIG, "%s: optimizer.nesterov needs momentum > 0 and "
                         "dampening 0", build_fn);
    if (tc->v[LOSS_KIND] != ELM_LOSS_CE_LAST && tc->v[LOSS_BURN_IN] >= (double)T_max)
        return elm__fail(ELM_E_CONFIG, "%s: loss.burn_in = %.0f leaves no step of T_max = %zu "
                         "to score", build_fn, tc->v[LOSS_BURN_IN], T_max);
    if (tc->v[TRAIN_CHECKPOINT_EVERY] > 0 && !tc->s[TRAIN_CHECKPOINT])
        return elm__fail(ELM_E_CONFIG, "%s: training.checkpoint_every needs training.checkpoint "
                         "(a path)", build_fn);
    return ELM_OK;
}

static int make_optimizer(const elm_train_config *tc, elm_model *model, elm_optimizer **out) {
    elm_optimizer *o;
    int rc = elm_optimizer_create(model, (elm_optimizer_kind)opt_kind(tc), &o);
    if (rc != ELM_OK) return wrap(rc, "optimizer");
    for (int k = 0; k < N_KEYS && rc == ELM_OK; k++)
        if (keys[k].kinds && tc->given[k] && applies(tc, k))
            rc = elm_optimizer_set(o, (elm_optim_param)keys[k].target, tc->v[k]);
    if (rc != ELM_OK) {
        elm_optimizer_free(o);
        return wrap(rc, "optimizer");
    }
    *out = o;
    return ELM_OK;
}

static int make_loss(const elm_train_config *tc, size_t n_out, elm_loss **out) {
    elm_loss *l;
    int rc = elm_loss_create((elm_loss_kind)tc->v[LOSS_KIND], n_out, &l);
    if (rc != ELM_OK) return wrap(rc, "loss");
    rc = elm_loss_set_burn_in(l, (size_t)tc->v[LOSS_BURN_IN]);
    if (rc == ELM_OK && tc->n_weights > 0) {
        float *w = malloc(tc->n_weights * sizeof *w);
        if (!w) {
            elm_loss_free(l);
            return elm__fail(ELM_E_NOMEM, "%s: out of memory", build_fn);
        }
        for (size_t i = 0; i < tc->n_weights; i++) w[i] = (float)tc->weights[i];
        rc = elm_loss_set_weights(l, w, tc->n_weights);
        free(w);
    }
    if (rc != ELM_OK) {
        elm_loss_free(l);
        return wrap(rc, "loss");
    }
    *out = l;
    return ELM_OK;
}

static int make_trainer(const elm_train_config *tc, elm_model *model, elm_optimizer *o,
                        elm_loss *l, size_t T_max, elm_trainer **out) {
    unsigned flags = tc->v[TRAIN_TAPE_CHECKPOINTING] != 0 ? ELM_TAPE_CHECKPOINT : 0;
    elm_trainer *t;
    int rc = elm_trainer_create(model, o, l, (size_t)tc->v[DATA_BATCH_SIZE], T_max, flags, &t);
    if (rc != ELM_OK) return wrap(rc, "trainer");
    for (int k = 0; k < N_KEYS && rc == ELM_OK; k++)
        if (section_of(k) == SEC_TRAINING && keys[k].target)
            rc = elm_trainer_set(t, (elm_train_option)keys[k].target, tc->v[k]);
    if (rc == ELM_OK && tc->s[TRAIN_CHECKPOINT])
        rc = elm_trainer_set_checkpoint(t, tc->s[TRAIN_CHECKPOINT],
                                        (uint64_t)tc->v[TRAIN_CHECKPOINT_EVERY]);
    if (rc != ELM_OK) {
        elm_trainer_free(t);
        return wrap(rc, "trainer");
    }
    *out = t;
    return ELM_OK;
}

ELM_API int elm_train_config_build(const elm_train_config *tc, elm_model *model, size_t T_max,
                                   elm_optimizer **opt, elm_loss **loss, elm_trainer **trainer) {
    if (!tc || !model || !opt || !loss || !trainer)
        return elm__fail(ELM_E_NULL, "%s: NULL argument", build_fn);
    size_t n_out = (size_t)elm_model_config(model)->v[ELM_NUM_OUTPUT];
    int rc = check_model(tc, model);
    if (rc == ELM_OK) rc = check_plan(tc, n_out, T_max);
    if (rc != ELM_OK) return rc;
    elm_optimizer *o = NULL;
    elm_loss *l = NULL;
    elm_trainer *t = NULL;
    rc = make_optimizer(tc, model, &o);
    if (rc == ELM_OK) rc = make_loss(tc, n_out, &l);
    if (rc == ELM_OK) rc = make_trainer(tc, model, o, l, T_max, &t);
    if (rc != ELM_OK) {
        elm_optimizer_free(o);
        elm_loss_free(l);
        return rc;
    }
    *opt = o;
    *loss = l;
    *trainer = t;
    return ELM_OK;
}
