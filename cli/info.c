/* elm info MODEL.elm: what a model file holds. */
#include "cli.h"

#include <elm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char help[] =
    "usage: elm info MODEL.elm [--full]\n"
    "\n"
    "Print a model file's hyper-parameters (by their YAML names), parameter\n"
    "counts and tensors, routing, metadata, file size, and the libelm version\n"
    "and matrix-product backend in use. Long metadata values are shortened\n"
    "unless --full is given.\n";

/* Enumerations print by their YAML names. */
static void print_param(const elm_config *cfg, elm_param key) {
    double v = 0;
    if (elm_config_get(cfg, key, &v) != ELM_OK) return;
    const char *name = elm_param_name(key);
    const char *word = NULL;
    switch (key) {
    case ELM_FORMULATION: word = v == ELM_V2 ? "v2" : "v1"; break;
    case ELM_MLP_ACTIVATION: word = v == ELM_SILU ? "silu" : "relu"; break;
    case ELM_LEARN_TAU_M: word = v != 0 ? "true" : "false"; break;
    case ELM_ROUTING:
        word = v == ELM_ROUTING_RANDOM ? "random" : v == ELM_ROUTING_NEURONIO ? "neuronio" : "none";
        break;
    default: break;
    }
    if (word)
        printf("  %-26s %s\n", name, word);
    else
        printf("  %-26s %.17g\n", name, v);
}

static void print_meta_value(const char *v, int full) {
    size_t n = strlen(v);
    if (full) {
        /* multi-line values (a YAML config) stay readable, indented */
        fputs("\n      ", stdout);
        for (const char *c = v; *c; c++) {
            putchar(*c);
            if (*c == '\n' && c[1]) fputs("      ", stdout);
        }
        if (n == 0 || v[n - 1] != '\n') putchar('\n');
        return;
    }
    for (size_t i = 0; i < n && i < 60; i++) putchar(v[i] == '\n' || v[i] == '\t' ? ' ' : v[i]);
    if (n > 60) printf("... (%zu bytes)", n);
    putchar('\n');
}

static int print_routing(const elm_model *m) {
    double kind = 0;
    size_t n_s = 0, n_in = 0;
    int rc = elm_config_get(elm_model_config(m), ELM_ROUTING, &kind);
    if (!rc) rc = elm_model_size(m, ELM_SIZE_SYNAPSE, &n_s);
    if (!rc) rc = elm_model_size(m, ELM_SIZE_INPUT, &n_in);
    if (rc) return rc;
    int64_t *idx = malloc(n_s * sizeof *idx);
    uint8_t *mask = malloc(n_s);
    char *used = calloc(n_in, 1);
    if (!idx || !mask || !used) rc = ELM_E_NOMEM;
    if (!rc) rc = elm_model_get_routing(m, idx, mask, n_s);
    if (!rc) {
        size_t active = 0, inputs = 0;
        for (size_t j = 0; j < n_s; j++)
            if (mask[j]) {
                active++;
                if (idx[j] >= 0 && (size_t)idx[j] < n_in) used[idx[j]] = 1;
            }
        for (size_t i = 0; i < n_in; i++) inputs += used[i];
        printf("routing: %s, %zu synapses (%zu active) reading %zu of %zu inputs\n",
               kind == ELM_ROUTING_RANDOM ? "random" : kind == ELM_ROUTING_NEURONIO ? "neuronio" : "none",
               n_s, active, inputs, n_in);
        if (kind != ELM_ROUTING_NONE && n_s > 0) {
            printf("  first synapses read inputs:");
            for (size_t j = 0; j < n_s && j < 8; j++) printf(" %lld", (long long)idx[j]);
            printf("%s\n", n_s > 8 ? " ..." : "");
        }
    }
    free(idx);
    free(mask);
    free(used);
    return rc;
}

int cmd_info(int argc, char **argv) {
    static const cli_opt opts[] = {{"full", 0, 0}};
    const char *opt[1], *pos[1];
    size_t n_pos;
    int st = cli_parse_args("info", argc, argv, opts, 1, opt, pos, 1, &n_pos);
    if (st < 0) {
        fputs(help, stdout);
        return CLI_OK;
    }
    if (st) return st;
    if (n_pos != 1) return cli_usage_error("info", "expected one model file (MODEL.elm)");
    elm_model *m;
    int rc = elm_model_load(pos[0], &m);
    if (rc) return cli_lib_error("loading the model", rc);
    struct stat sb;
    size_t n_params = 0, trainable = 0, tensors = 0;
    if ((rc = elm_model_size(m, ELM_SIZE_PARAMS, &n_params)) ||
        (rc = elm_model_size(m, ELM_SIZE_TRAINABLE, &trainable)) ||
        (rc = elm_model_size(m, ELM_SIZE_NUM_TENSORS, &tensors))) {
        elm_model_free(m);
        return cli_lib_error("model sizes", rc);
    }
    printf("file: %s", pos[0]);
    if (stat(pos[0], &sb) == 0) printf(" (%lld bytes)", (long long)sb.st_size);
    printf("\nhyper-parameters:\n");
    const elm_config *cfg = elm_model_config(m);
    for (int k = ELM_FORMULATION; k <= ELM_DT; k++) print_param(cfg, (elm_param)k);
    printf("parameters: %zu trainable, %zu stored\n", trainable, n_params);
    printf("tensors:\n");
    for (size_t i = 0; i < tensors; i++) {
        const char *name;
        int ndim, tr;
        int64_t shape[ELM_MAX_DIMS];
        if ((rc = elm_model_param_info(m, i, &name, &ndim, shape, &tr))) break;
        char dims[96] = "(";
        for (int d = 0; d < ndim; d++) {
            size_t len = strlen(dims);
            snprintf(dims + len, sizeof dims - len, "%s%lld", d ? ", " : "", (long long)shape[d]);
        }
        strcat(dims, ")");
        printf("  %-18s %-14s %s\n", name, dims, tr ? "trainable" : "fixed");
    }
    if (!rc) rc = print_routing(m);
    if (rc) {
        elm_model_free(m);
        return cli_lib_error("reading the model", rc);
    }
    size_t n_meta = elm_model_meta_count(m);
    printf("metadata: %zu %s\n", n_meta, n_meta == 1 ? "entry" : "entries");
    for (size_t i = 0; i < n_meta; i++) {
        const char *key = elm_model_meta_key(m, i);
        const char *value = key ? elm_model_get_meta(m, key) : NULL;
        if (!key || !value) continue;
        printf("  %-24s ", key);
        print_meta_value(value, opt[0] != NULL);
    }
    printf("libelm: %s\ngemm: %s\n", elm_version_string(), elm_gemm_info());
    elm_model_free(m);
    return CLI_OK;
}
