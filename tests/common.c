#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef ELM_TEST_DATA
#define ELM_TEST_DATA "tests/data"
#endif
#ifndef ELM_SOURCE_ROOT
#define ELM_SOURCE_ROOT "."
#endif

int npy_load(const char *path, npy *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fclose(f);
        return -1;
    }
    size_t hlen;
    if (pre[6] == 1) {
        hlen = pre[8] | (pre[9] << 8);
    } else {
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) { fclose(f); return -1; }
        hlen = pre[8] | (pre[9] << 8) | ((size_t)more[0] << 16) | ((size_t)more[1] << 24);
    }
    char *h = calloc(1, hlen + 1);
    if (!h || fread(h, 1, hlen, f) != hlen) { free(h); fclose(f); return -1; }
    size_t esize;
    if (strstr(h, "'<f4'")) { out->dtype = 'f'; esize = 4; }
    else if (strstr(h, "'<i8'")) { out->dtype = 'i'; esize = 8; }
    else if (strstr(h, "'|b1'")) { out->dtype = 'b'; esize = 1; }
    else { free(h); fclose(f); return -1; }
    if (strstr(h, "'fortran_order': True")) { free(h); fclose(f); return -1; }
    char *sh = strstr(h, "'shape': (");
    if (!sh) { free(h); fclose(f); return -1; }
    sh += 10;
    out->numel = 1;
    while (*sh && *sh != ')') {
        while (*sh == ' ' || *sh == ',') sh++;
        if (*sh == ')') break;
        long long d = strtoll(sh, &sh, 10);
        out->shape[out->ndim++] = d;
        out->numel *= (size_t)d;
    }
    free(h);
    out->data = malloc(out->numel * esize + 1);
    if (!out->data || fread(out->data, esize, out->numel, f) != out->numel) {
        free(out->data);
        out->data = NULL;
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

void npy_free(npy *a) {
    free(a->data);
    a->data = NULL;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *shared_dir(char *buf, size_t n) {
    const char *env = getenv("ELM_SHARED_DIR");
    if (env && *env) snprintf(buf, n, "%s", env);
    else snprintf(buf, n, "%s/../shared", ELM_SOURCE_ROOT);
    return is_dir(buf) ? buf : NULL;
}

const char *fixture_dir(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", ELM_TEST_DATA, name);
    if (is_dir(buf)) return buf;
    char sh[1024];
    if (!shared_dir(sh, sizeof sh)) return NULL;
    snprintf(buf, n, "%s/reference/fixtures/%s", sh, name);
    return is_dir(buf) ? buf : NULL;
}

/* The value after "key": in a flat JSON object; NULL if absent. */
static const char *json_value(const char *js, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(js, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\n') p++;
    return p;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc(1, (size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    fclose(f);
    return s;
}

elm_model *fixture_model(const char *dir) {
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *js = read_text(path);
    if (!js) { fprintf(stderr, "cannot read %s\n", path); return NULL; }
    elm_config *cfg;
    elm_config_create(&cfg);
    const char *form = json_value(js, "formulation");
    elm_config_set(cfg, ELM_FORMULATION, form && strncmp(form, "\"v2\"", 4) == 0 ? ELM_V2 : ELM_V1);
    static const char *numeric[] = {"num_input", "num_output", "num_memory", "mlp_hidden_size",
                                    "mlp_num_layers", "tau_s_value", "tau_b_value",
                                    "memory_tau_min", "memory_tau_max", "lambda_value",
                                    "w_s_value", "num_branch", "num_synapse_per_branch",
                                    "delta_t"};
    for (size_t i = 0; i < sizeof numeric / sizeof *numeric; i++) {
        const char *v = json_value(js, numeric[i]);
        if (!v || strncmp(v, "null", 4) == 0) continue;
        elm_param key;
        if (elm_param_from_name(numeric[i], &key) != ELM_OK) continue;
        if (elm_config_set(cfg, key, strtod(v, NULL)) != ELM_OK)
            fprintf(stderr, "config %s: %s\n", numeric[i], elm_last_error());
    }
    const char *v = json_value(js, "mlp_activation");
    if (v) elm_config_set(cfg, ELM_MLP_ACTIVATION, strncmp(v, "\"silu\"", 6) == 0 ? ELM_SILU : ELM_RELU);
    v = json_value(js, "learn_memory_tau");
    if (v) elm_config_set(cfg, ELM_LEARN_TAU_M, strncmp(v, "true", 4) == 0);
    v = json_value(js, "input_to_synapse_routing");
    if (v) elm_config_set(cfg, ELM_ROUTING,
                          strncmp(v, "\"neuronio_routing\"", 18) == 0 ? ELM_ROUTING_NEURONIO
                          : strncmp(v, "\"random_routing\"", 16) == 0 ? ELM_ROUTING_RANDOM
                                                                      : ELM_ROUTING_NONE);
    free(js);
    elm_model *m = NULL;
    if (elm_model_create(cfg, 1, &m) != ELM_OK) {
        fprintf(stderr, "fixture model: %s\n", elm_last_error());
        elm_config_free(cfg);
        return NULL;
    }
    elm_config_free(cfg);
    size_t nt;
    elm_model_size(m, ELM_SIZE_NUM_TENSORS, &nt);
    for (size_t i = 0; i < nt; i++) {
        const char *name;
        int ndim;
        int64_t shape[ELM_MAX_DIMS];
        elm_model_param_info(m, i, &name, &ndim, shape, NULL);
        /* fixtures use the official names: find the alias via the shape API */
        static const char *aliases[][2] = {{"w_s_proto", "_proto_w_s"},
                                           {"tau_m_proto", "_proto_tau_m"},
                                           {"readout.weight", "w_y.weight"},
                                           {"readout.bias", "w_y.bias"}};
        char official[64];
        snprintf(official, sizeof official, "%s", name);
        for (size_t a = 0; a < 4; a++)
            if (strcmp(name, aliases[a][0]) == 0) snprintf(official, sizeof official, "%s", aliases[a][1]);
        int layer;
        char kind[16];
        if (sscanf(name, "mlp.%d.%15s", &layer, kind) == 2)
            snprintf(official, sizeof official, "mlp.network.%d.%s", 2 * layer, kind);
        snprintf(path, sizeof path, "%s/param.%s.npy", dir, official);
        npy a;
        if (npy_load(path, &a) != 0) { fprintf(stderr, "cannot load %s\n", path); elm_model_free(m); return NULL; }
        /* set through the official alias to exercise it */
        int rc = elm_model_set_param(m, official, a.data, a.ndim, a.shape);
        npy_free(&a);
        if (rc != ELM_OK) { fprintf(stderr, "%s\n", elm_last_error()); elm_model_free(m); return NULL; }
    }
    size_t n_s;
    elm_model_size(m, ELM_SIZE_SYNAPSE, &n_s);
    snprintf(path, sizeof path, "%s/param.input_to_synapse_indices.npy", dir);
    npy idx, mask;
    if (npy_load(path, &idx) == 0 && idx.numel == n_s && idx.dtype == 'i') {
        snprintf(path, sizeof path, "%s/param.valid_indices_mask.npy", dir);
        if (npy_load(path, &mask) == 0) {
            uint8_t *mk = malloc(n_s);
            for (size_t j = 0; j < n_s; j++)
                mk[j] = mask.dtype == 'b' ? ((uint8_t *)mask.data)[j]
                        : mask.dtype == 'i' ? (uint8_t)((int64_t *)mask.data)[j]
                                            : (uint8_t)((float *)mask.data)[j];
            if (elm_model_set_routing(m, idx.data, mk, n_s) != ELM_OK)
                fprintf(stderr, "routing: %s\n", elm_last_error());
            free(mk);
            npy_free(&mask);
        }
    }
    if (idx.data) npy_free(&idx);
    return m;
}

static double act_d(int act, double v) { return act == ELM_RELU ? (v > 0 ? v : 0) : v / (1 + exp(-v)); }

void naive_forward(const elm_model *m, const float *x, size_t B, size_t T, double *y,
                   double *syn, double *branch, double *mem) {
    const elm_config *cfg = elm_model_config(m);
    double v;
    elm_config_get(cfg, ELM_FORMULATION, &v); int ver = (int)v;
    elm_config_get(cfg, ELM_MLP_ACTIVATION, &v); int act = (int)v;
    elm_config_get(cfg, ELM_LAMBDA, &v); double lambda = v;
    elm_config_get(cfg, ELM_DT, &v); double dt = v;
    elm_config_get(cfg, ELM_TAU_M_MIN, &v); double tmin = v;
    elm_config_get(cfg, ELM_TAU_M_MAX, &v); double tmax = v;
    elm_config_get(cfg, ELM_MLP_NUM_LAYERS, &v); int L = (int)v;
    size_t n_in, n_out, n_m, n_b, n_s, H;
    elm_model_size(m, ELM_SIZE_INPUT, &n_in);
    elm_model_size(m, ELM_SIZE_OUTPUT, &n_out);
    elm_model_size(m, ELM_SIZE_MEMORY, &n_m);
    elm_model_size(m, ELM_SIZE_BRANCH, &n_b);
    elm_model_size(m, ELM_SIZE_SYNAPSE, &n_s);
    elm_model_size(m, ELM_SIZE_HIDDEN, &H);
    size_t k = n_s / n_b;
    float *ws = malloc(n_s * 4), *tau = malloc(n_s * 4), *ptm = malloc(n_m * 4);
    elm_model_get_param(m, "w_s_proto", ws, n_s);
    elm_model_get_param(m, ver == ELM_V1 ? "tau_s" : "tau_b", tau, n_s);
    elm_model_get_param(m, "tau_m_proto", ptm, n_m);
    int64_t *idx = malloc(n_s * 8);
    uint8_t *mask = malloc(n_s);
    elm_model_get_routing(m, idx, mask, n_s);
    float *W[70], *bias[70];
    size_t win[70], wout[70];
    for (int l = 0; l <= L; l++) {
        char name[32];
        int nd;
        int64_t sh[4];
        snprintf(name, sizeof name, "mlp.%d.weight", l);
        elm_model_param_shape(m, name, &nd, sh);
        wout[l] = (size_t)sh[0];
        win[l] = (size_t)sh[1];
        W[l] = malloc(wout[l] * win[l] * 4);
        bias[l] = malloc(wout[l] * 4);
        elm_model_get_param(m, name, W[l], wout[l] * win[l]);
        snprintf(name, sizeof name, "mlp.%d.bias", l);
        elm_model_get_param(m, name, bias[l], wout[l]);
    }
    float *Wy = malloc(n_out * n_m * 4), *by = malloc(n_out * 4);
    elm_model_get_param(m, "readout.weight", Wy, n_out * n_m);
    elm_model_get_param(m, "readout.bias", by, n_out);
    double *km = malloc(n_m * 8), *kl = malloc(n_m * 8);
    for (size_t i = 0; i < n_m; i++) {
        double tm = (tmax - tmin) / (1 + exp(-(double)ptm[i])) + tmin;
        km[i] = exp(-dt / fmax(tm, 1e-6));
        kl[i] = exp(-dt * lambda / fmax(tm, 1e-6));
    }
    size_t ntr = ver == ELM_V1 ? n_s : n_b;
    double *s = malloc(ntr * 8), *mm = malloc(n_m * 8), *u = malloc((n_b + n_m) * 8);
    double *h = malloc((H > n_m ? H : n_m) * 8 + (n_b + n_m) * 8), *h2 = malloc(((H > n_m ? H : n_m) + n_b + n_m) * 8);
    for (size_t b = 0; b < B; b++) {
        memset(s, 0, ntr * 8);
        memset(mm, 0, n_m * 8);
        for (size_t t = 0; t < T; t++) {
            const float *xt = x + (b * T + t) * n_in;
            double *c = u;
            if (ver == ELM_V1) {
                for (size_t j = 0; j < n_s; j++) {
                    double ks = exp(-dt / fmax(tau[j], 1e-6));
                    double in = (double)xt[idx[j]] * mask[j];
                    s[j] = ks * s[j] + fmax(ws[j], 0) * in;
                }
                for (size_t i = 0; i < n_b; i++) {
                    c[i] = 0;
                    for (size_t q = 0; q < k; q++) c[i] += s[i * k + q];
                }
                if (syn) for (size_t j = 0; j < n_s; j++) syn[(b * T + t) * n_s + j] = s[j];
            } else {
                for (size_t i = 0; i < n_b; i++) {
                    double sum = 0;
                    for (size_t q = 0; q < k; q++) {
                        size_t j = i * k + q;
                        sum += fmax(ws[j], 0) * (double)xt[idx[j]] * mask[j];
                    }
                    double kb = exp(-dt / fmax(tau[i], 1e-6));
                    s[i] = kb * s[i] + sum;
                    c[i] = s[i];
                }
            }
            if (branch) for (size_t i = 0; i < n_b; i++) branch[(b * T + t) * n_b + i] = c[i];
            for (size_t i = 0; i < n_m; i++) u[n_b + i] = km[i] * mm[i];
            double *in = u;
            for (int l = 0; l <= L; l++) {
                double *o = (l % 2 == 0) ? h : h2;
                for (size_t r = 0; r < wout[l]; r++) {
                    double acc = bias[l][r];
                    for (size_t q = 0; q < win[l]; q++) acc += (double)W[l][r * win[l] + q] * in[q];
                    o[r] = l < L ? act_d(act, acc) : acc;
                }
                in = o;
            }
            for (size_t i = 0; i < n_m; i++) {
                double g = 1.7159 * tanh(in[i] * 2.0 / 3.0);
                double coef = ver == ELM_V1 ? lambda * (1 - km[i]) : (1 - kl[i]);
                mm[i] = km[i] * mm[i] + coef * g;
            }
            if (mem) for (size_t i = 0; i < n_m; i++) mem[(b * T + t) * n_m + i] = mm[i];
            for (size_t o = 0; o < n_out; o++) {
                double acc = by[o];
                for (size_t i = 0; i < n_m; i++) acc += (double)Wy[o * n_m + i] * mm[i];
                y[(b * T + t) * n_out + o] = acc;
            }
        }
    }
    for (int l = 0; l <= L; l++) { free(W[l]); free(bias[l]); }
    free(ws); free(tau); free(ptm); free(idx); free(mask); free(Wy); free(by);
    free(km); free(kl); free(s); free(mm); free(u); free(h); free(h2);
}

void fill_uniform(float *a, size_t n, float lo, float hi, uint64_t *seed) {
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        a[i] = lo + (hi - lo) * (float)((*seed >> 40) * 0x1.0p-24);
    }
}

/* ---- random models and inputs ------------------------------------------ */


elm_model *make_model(const spec *p, uint64_t seed) {
    elm_config *c;
    elm_config_create(&c);
    elm_config_set(c, ELM_FORMULATION, p->version);
    elm_config_set(c, ELM_MLP_ACTIVATION, p->act);
    elm_config_set(c, ELM_NUM_INPUT, p->n_in);
    elm_config_set(c, ELM_NUM_OUTPUT, p->n_out);
    elm_config_set(c, ELM_NUM_MEMORY, p->n_m);
    elm_config_set(c, ELM_MLP_NUM_LAYERS, p->L);
    elm_config_set(c, ELM_MLP_HIDDEN_SIZE, p->H);
    elm_config_set(c, ELM_NUM_BRANCH, p->n_b);
    elm_config_set(c, ELM_SYNAPSES_PER_BRANCH, p->k);
    elm_config_set(c, ELM_ROUTING, p->routing);
    elm_config_set(c, ELM_DT, p->dt);
    elm_config_set(c, ELM_TAU_M_MIN, p->tau_min);
    elm_config_set(c, ELM_TAU_M_MAX, p->tau_max);
    elm_config_set(c, ELM_LAMBDA, p->lambda);
    elm_model *m = NULL;
    int rc = elm_model_create(c, seed, &m);
    elm_config_free(c);
    if (rc) {
        fprintf(stderr, "make_model: %s\n", elm_last_error());
        return NULL;
    }
    /* move w_s away from its constant init, partly negative */
    size_t n_s;
    elm_model_size(m, ELM_SIZE_SYNAPSE, &n_s);
    float *w = malloc(n_s * 4);
    uint64_t sd = seed * 7 + 1;
    fill_uniform(w, n_s, -0.3f, 1.0f, &sd);
    int64_t sh[1] = {(int64_t)n_s};
    if (elm_model_set_param(m, "w_s_proto", w, 1, sh) != ELM_OK) abort();
    if (p->spread_tau && p->version == ELM_V1) {
        fill_uniform(w, n_s, 1.0f, 20.0f, &sd);
        if (elm_model_set_param(m, "tau_s", w, 1, sh) != ELM_OK) abort();
    }
    free(w);
    return m;
}

float *make_input(const spec *p, uint64_t seed) {
    size_t n = p->B * p->T * (size_t)p->n_in;
    float *x = malloc(n * sizeof *x), *r = malloc(n * sizeof *r);
    fill_uniform(x, n, -1.0f, 1.0f, &seed);
    fill_uniform(r, n, 0.0f, 1.0f, &seed);
    for (size_t i = 0; i < n; i++)
        if (r[i] >= p->density) x[i] = 0.0f;
    free(r);
    return x;
}


void assert_close_f(const float *a, const float *b, size_t n, double tol, const char *what) {
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)a[i] - (double)b[i]) / (1 + fabs((double)b[i]));
        if (!(err <= worst)) { worst = err; at = i; }
    }
    if (!(worst <= tol))
        fail_msg("%s: element %zu differs: %.9g vs %.9g (scaled error %.3g > %.3g)", what, at,
                 (double)a[at], (double)b[at], worst, tol);
}

csr csr_from_dense(const float *x, size_t rows, int n_in, int order) {
    size_t nnz = 0;
    for (size_t i = 0; i < rows * (size_t)n_in; i++) nnz += x[i] != 0.0f;
    if (order == CSR_SPLIT) nnz *= 2;
    csr c = {malloc((rows + 1) * sizeof(int64_t)), malloc((nnz + 1) * sizeof(int32_t)),
             malloc((nnz + 1) * sizeof(float))};
    int64_t e = 0;
    c.off[0] = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * (size_t)n_in;
        for (int pass = 0; pass < (order == CSR_SPLIT ? 2 : 1); pass++)
            for (int q = 0; q < n_in; q++) {
                int i = order == CSR_REVERSED ? n_in - 1 - q : q;
                if (row[i] == 0.0f) continue;
                c.ch[e] = i;
                c.val[e++] = order == CSR_SPLIT ? row[i] * 0.5f : row[i];
            }
        c.off[r + 1] = e;
    }
    return c;
}

void csr_free(csr *c) {
    free(c->off);
    free(c->ch);
    free(c->val);
}
