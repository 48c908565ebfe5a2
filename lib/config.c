/* Hyper-parameters: one table gives every key its name, bounds, kind and
 * default, so that set, get, bounds and validation cannot disagree. */
#include "elm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct key_info {
    const char *name;  /* YAML / reference name */
    const char *alias; /* second accepted name, or NULL */
    double lo, hi;     /* inclusive bounds */
    bool integer;
    double def;
} key_info;

/* Sizes are bounded so that every derived product fits comfortably in
 * int32 indices and size_t byte counts. */
#define MAX_DIM 16777216.0 /* 2^24 */

static const key_info keys[ELM_PARAM_LAST + 1] = {
    [ELM_FORMULATION] = {"formulation", NULL, 1, 2, true, ELM_V1},
    [ELM_NUM_INPUT] = {"num_input", NULL, 1, MAX_DIM, true, 0},
    [ELM_NUM_OUTPUT] = {"num_output", NULL, 1, MAX_DIM, true, 0},
    [ELM_NUM_MEMORY] = {"num_memory", NULL, 1, MAX_DIM, true, 100},
    [ELM_LAMBDA] = {"lambda_value", "lambda", 0, 1e6, false, 5.0},
    [ELM_MLP_NUM_LAYERS] = {"mlp_num_layers", NULL, 0, 64, true, 1},
    [ELM_MLP_HIDDEN_SIZE] = {"mlp_hidden_size", NULL, 0, MAX_DIM, true, 0},
    [ELM_MLP_ACTIVATION] = {"mlp_activation", NULL, 0, 1, true, ELM_RELU},
    [ELM_TAU_S] = {"tau_s_value", "tau_b_value", 1e-6, 1e9, false, 5.0},
    [ELM_TAU_M_MIN] = {"memory_tau_min", NULL, 0, 1e9, false, 1.0},
    [ELM_TAU_M_MAX] = {"memory_tau_max", NULL, 0, 1e9, false, 1000.0},
    [ELM_LEARN_TAU_M] = {"learn_memory_tau", NULL, 0, 1, true, 0},
    [ELM_W_S_INIT] = {"w_s_value", NULL, -1e6, 1e6, false, 0.5},
    [ELM_NUM_BRANCH] = {"num_branch", NULL, 0, MAX_DIM, true, 0},
    [ELM_SYNAPSES_PER_BRANCH] = {"num_synapse_per_branch", NULL, 1, MAX_DIM, true, 1},
    [ELM_ROUTING] = {"input_to_synapse_routing", NULL, 0, 2, true, ELM_ROUTING_NONE},
    [ELM_DT] = {"delta_t", "dt", 1e-9, 1e9, false, 1.0},
};

static const key_info *key_lookup(elm_param key) {
    if ((int)key < 1 || (int)key > ELM_PARAM_LAST || !keys[key].name) return NULL;
    return &keys[key];
}

ELM_API int elm_config_create(elm_config **out) {
    if (!out) return elm__fail(ELM_E_NULL, "elm_config_create: out is NULL");
    elm_config *c = calloc(1, sizeof *c);
    if (!c) return elm__fail(ELM_E_NOMEM, "elm_config_create: out of memory");
    for (int k = 1; k <= ELM_PARAM_LAST; k++) c->v[k] = keys[k].def;
    *out = c;
    return ELM_OK;
}

ELM_API int elm_config_copy(const elm_config *cfg, elm_config **out) {
    if (!cfg || !out) return elm__fail(ELM_E_NULL, "elm_config_copy: NULL argument");
    elm_config *c = malloc(sizeof *c);
    if (!c) return elm__fail(ELM_E_NOMEM, "elm_config_copy: out of memory");
    *c = *cfg;
    *out = c;
    return ELM_OK;
}

ELM_API void elm_config_free(elm_config *cfg) { free(cfg); }

ELM_API int elm_config_set(elm_config *cfg, elm_param key, double value) {
    if (!cfg) return elm__fail(ELM_E_NULL, "elm_config_set: cfg is NULL");
    const key_info *k = key_lookup(key);
    if (!k) return elm__fail(ELM_E_UNKNOWN_NAME, "elm_config_set: unknown key %d", (int)key);
    if (!isfinite(value))
        return elm__fail(ELM_E_INVALID, "elm_config_set: %s must be finite", k->name);
    if (k->integer && value != floor(value))
        return elm__fail(ELM_E_INVALID, "elm_config_set: %s must be an integer, got %g",
                         k->name, value);
    if (value < k->lo || value > k->hi)
        return elm__fail(ELM_E_INVALID, "elm_config_set: %s = %g is outside [%g, %g]",
                         k->name, value, k->lo, k->hi);
    cfg->v[key] = value;
    return ELM_OK;
}

ELM_API int elm_config_get(const elm_config *cfg, elm_param key, double *value) {
    if (!cfg || !value) return elm__fail(ELM_E_NULL, "elm_config_get: NULL argument");
    if (!key_lookup(key))
        return elm__fail(ELM_E_UNKNOWN_NAME, "elm_config_get: unknown key %d", (int)key);
    *value = cfg->v[key];
    return ELM_OK;
}

ELM_API int elm_config_bounds(elm_param key, double *lo, double *hi) {
    if (!lo || !hi) return elm__fail(ELM_E_NULL, "elm_config_bounds: NULL argument");
    const key_info *k = key_lookup(key);
    if (!k) return elm__fail(ELM_E_UNKNOWN_NAME, "elm_config_bounds: unknown key %d", (int)key);
    *lo = k->lo;
    *hi = k->hi;
    return ELM_OK;
}

ELM_API const char *elm_param_name(elm_param key) {
    const key_info *k = key_lookup(key);
    return k ? k->name : NULL;
}

ELM_API int elm_param_from_name(const char *name, elm_param *key) {
    if (!name || !key) return elm__fail(ELM_E_NULL, "elm_param_from_name: NULL argument");
    for (int k = 1; k <= ELM_PARAM_LAST; k++) {
        if (!keys[k].name) continue;
        if (strcmp(name, keys[k].name) == 0 || (keys[k].alias && strcmp(name, keys[k].alias) == 0)) {
            *key = (elm_param)k;
            return ELM_OK;
        }
    }
    return elm__fail(ELM_E_UNKNOWN_NAME, "unknown hyper-parameter '%s'", name);
}

ELM_API int elm_config_validate(const elm_config *cfg) {
    if (!cfg) return elm__fail(ELM_E_NULL, "elm_config_validate: cfg is NULL");
    const double *v = cfg->v;
    if (v[ELM_NUM_INPUT] < 1) return elm__fail(ELM_E_CONFIG, "num_input is not set");
    if (v[ELM_NUM_OUTPUT] < 1) return elm__fail(ELM_E_CONFIG, "num_output is not set");
    double n_in = v[ELM_NUM_INPUT];
    double n_b = v[ELM_NUM_BRANCH] > 0 ? v[ELM_NUM_BRANCH] : n_in;
    double k = v[ELM_SYNAPSES_PER_BRANCH];
    double n_s = n_b * k;
    double n_m = v[ELM_NUM_MEMORY];
    double H = v[ELM_MLP_HIDDEN_SIZE] > 0 ? v[ELM_MLP_HIDDEN_SIZE] : 2 * n_m;
    if (n_s > MAX_DIM)
        return elm__fail(ELM_E_CONFIG, "num_branch * num_synapse_per_branch = %.0f exceeds %.0f",
                         n_s, MAX_DIM);
    if (H > MAX_DIM) return elm__fail(ELM_E_CONFIG, "mlp_hidden_size %.0f exceeds %.0f", H, MAX_DIM);
    /* Largest weight: (H, n_b + n_m) or (H, H); keep below 2^31 elements. */
    double big = H * (n_b + n_m > H ? n_b + n_m : H);
    if (big > 2147483647.0 || n_m * v[ELM_NUM_OUTPUT] > 2147483647.0)
        return elm__fail(ELM_E_CONFIG, "a weight matrix would exceed 2^31 elements");
    int routing = (int)v[ELM_ROUTING];
    if (routing == ELM_ROUTING_NONE && n_s != n_in)
        return elm__fail(ELM_E_CONFIG,
                         "without routing, num_branch * num_synapse_per_branch (%.0f) must "
                         "equal num_input (%.0f)", n_s, n_in);
    if (routing == ELM_ROUTING_NEURONIO) {
        double stride = ceil(n_in / n_b);
        if (stride > k)
            return elm__fail(ELM_E_CONFIG,
                             "neuronio routing needs ceil(num_input / num_branch) = %.0f <= "
                             "num_synapse_per_branch = %.0f", stride, k);
        if (fmod(n_in, 2.0) != 0)
            return elm__fail(ELM_E_CONFIG,
                             "neuronio routing needs an even num_input (excitatory + "
                             "inhibitory halves), got %.0f", n_in);
    }
    if (!(v[ELM_TAU_M_MIN] < v[ELM_TAU_M_MAX]))
        return elm__fail(ELM_E_CONFIG, "memory_tau_min (%g) must be < memory_tau_max (%g)",
                         v[ELM_TAU_M_MIN], v[ELM_TAU_M_MAX]);
    return ELM_OK;
}
