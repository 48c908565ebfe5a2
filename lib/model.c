/* The model: parameters in one contiguous buffer with named views, the
 * reference initialisation, parameter access by name, and routing. */
#include "elm_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void add_tensor(elm_model *m, size_t *offset, const char *name, const char *alias,
                       int ndim, int64_t d0, int64_t d1, bool trainable) {
    elm_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->alias, sizeof t->alias, "%s", alias);
    t->offset = *offset;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->numel = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    t->trainable = trainable;
    t->allow_inf = false;
    *offset += t->numel;
    if (trainable) m->n_trainable += t->numel;
}

static const elm_tensor *find_tensor(const elm_model *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0 || strcmp(m->tensors[i].alias, name) == 0)
            return &m->tensors[i];
    return NULL;
}

/* Lay out the tensors in the official state-dict order. */
static int build_layout(elm_model *m) {
    int L = m->L;
    m->tensors = calloc((size_t)(2 * L + 7), sizeof *m->tensors);
    if (!m->tensors) return ELM_E_NOMEM;
    size_t off = 0;
    add_tensor(m, &off, "w_s_proto", "_proto_w_s", 1, m->n_s, 0, true);
    if (m->version == ELM_V1)
        add_tensor(m, &off, "tau_s", "tau_s", 1, m->n_s, 0, false);
    else
        add_tensor(m, &off, "tau_b", "tau_b", 1, m->n_b, 0, false);
    add_tensor(m, &off, "tau_m_proto", "_proto_tau_m", 1, m->n_m, 0,
               m->cfg.v[ELM_LEARN_TAU_M] != 0);
    m->tensors[m->n_tensors - 1].allow_inf = true;
    for (int i = 0; i <= L; i++) {
        int in = i == 0 ? m->n_b + m->n_m : m->H;
        int out = i == L ? m->n_m : m->H;
        char name[32], alias[40];
        snprintf(name, sizeof name, "mlp.%d.weight", i);
        snprintf(alias, sizeof alias, "mlp.network.%d.weight", 2 * i);
        add_tensor(m, &off, name, alias, 2, out, in, true);
        snprintf(name, sizeof name, "mlp.%d.bias", i);
        snprintf(alias, sizeof alias, "mlp.network.%d.bias", 2 * i);
        add_tensor(m, &off, name, alias, 1, out, 0, true);
    }
    add_tensor(m, &off, "readout.weight", "w_y.weight", 2, m->n_out, m->n_m, true);
    add_tensor(m, &off, "readout.bias", "w_y.bias", 1, m->n_out, 0, true);
    m->n_params = off;
    return ELM_OK;
}

/* model.md §4, evaluated in float32 like the reference so that the edge
 * cases agree (tau_max - 1e-6 rounds to tau_max for large tau_max, and the
 * top time constant's proto value is then +Inf). */
static void init_tau_m(elm_model *m) {
    double a = log10((double)m->tau_min + 1e-6), b = log10((double)m->tau_max - 1e-6);
    float lo = (float)(m->tau_min + 1e-6), hi = (float)(m->tau_max - 1e-6);
    float tmin = m->tau_min, tmax = m->tau_max;
    for (int i = 0; i < m->n_m; i++) {
        double e = m->n_m == 1 ? a : a + (b - a) * i / (m->n_m - 1);
        float x = (float)pow(10.0, e);
        x = x < lo ? lo : x > hi ? hi : x;
        m->tau_m_proto[i] = logf((x - tmin) / (tmax - x));
    }
}

static void init_routing(elm_model *m, elm_rng *rng) {
    int routing = (int)m->cfg.v[ELM_ROUTING];
    for (int j = 0; j < m->n_s; j++) {
        m->route_idx[j] = j;
        m->route_mask[j] = 1;
    }
    if (routing == ELM_ROUTING_RANDOM) {
        for (int j = 0; j < m->n_s; j++)
            m->route_idx[j] = (int64_t)elm__rng_below(rng, (uint64_t)m->n_in);
    } else if (routing == ELM_ROUTING_NEURONIO) {
        int n_in = m->n_in, half = n_in / 2;
        int stride = (n_in + m->n_b - 1) / m->n_b;
        for (int i = 0; i < m->n_b; i++)
            for (int q = 0; q < m->k; q++) {
                int64_t w = (int64_t)i * stride + q;
                int j = i * m->k + q;
                m->route_mask[j] = w < n_in;
                if (w > n_in - 1) w = n_in - 1;
                m->route_idx[j] = (w % 2) * half + w / 2; /* interleave exc/inh */
            }
    }
}

static void init_params(elm_model *m, uint64_t seed) {
    elm_rng rng;
    elm__rng_seed(&rng, seed);
    float *p = m->params;
    for (int j = 0; j < m->n_s; j++) m->w_s_proto[j] = (float)m->cfg.v[ELM_W_S_INIT];
    int n_tau = m->version == ELM_V1 ? m->n_s : m->n_b;
    for (int j = 0; j < n_tau; j++) m->tau_syn[j] = (float)m->cfg.v[ELM_TAU_S];
    init_tau_m(m);
    /* Linear layers: weight then bias, in buffer order. */
    for (size_t t = 3; t < m->n_tensors; t += 2) {
        const elm_tensor *w = &m->tensors[t], *b = &m->tensors[t + 1];
        float bound = (float)(1.0 / sqrt((double)w->shape[1]));
        for (size_t i = 0; i < w->numel; i++) p[w->offset + i] = elm__rng_uniform(&rng, -bound, bound);
        for (size_t i = 0; i < b->numel; i++) p[b->offset + i] = elm__rng_uniform(&rng, -bound, bound);
    }
    init_routing(m, &rng);
}

ELM_API int elm_model_create(const elm_config *cfg, uint64_t seed, elm_model **out) {
    if (!cfg || !out) return elm__fail(ELM_E_NULL, "elm_model_create: NULL argument");
    int rc = elm_config_validate(cfg);
    if (rc) return rc;
    elm__gemm_init();
    elm_model *m = calloc(1, sizeof *m);
    if (!m) return elm__fail(ELM_E_NOMEM, "elm_model_create: out of memory");
    m->cfg = *cfg;
    double *v = m->cfg.v;
    if (v[ELM_NUM_BRANCH] == 0) v[ELM_NUM_BRANCH] = v[ELM_NUM_INPUT];
    if (v[ELM_MLP_HIDDEN_SIZE] == 0) v[ELM_MLP_HIDDEN_SIZE] = 2 * v[ELM_NUM_MEMORY];
    m->version = (int)v[ELM_FORMULATION];
    if (m->version == ELM_V2 && v[ELM_TAU_M_MAX] < v[ELM_TAU_M_MIN] + 3e-6)
        v[ELM_TAU_M_MAX] = v[ELM_TAU_M_MIN] + 3e-6; /* as the v2 reference */
    m->act = (int)v[ELM_MLP_ACTIVATION];
    m->n_in = (int)v[ELM_NUM_INPUT];
    m->n_out = (int)v[ELM_NUM_OUTPUT];
    m->n_m = (int)v[ELM_NUM_MEMORY];
    m->n_b = (int)v[ELM_NUM_BRANCH];
    m->k = (int)v[ELM_SYNAPSES_PER_BRANCH];
    m->n_s = m->n_b * m->k;
    m->L = (int)v[ELM_MLP_NUM_LAYERS];
    m->H = (int)v[ELM_MLP_HIDDEN_SIZE];
    m->lambda = (float)v[ELM_LAMBDA];
    m->dt = (float)v[ELM_DT];
    m->tau_min = (float)v[ELM_TAU_M_MIN];
    m->tau_max = (float)v[ELM_TAU_M_MAX];

    rc = build_layout(m);
    if (rc == ELM_OK) {
        m->params = malloc(m->n_params * sizeof(float));
        m->route_idx = malloc((size_t)m->n_s * sizeof(int64_t));
        m->route_mask = malloc((size_t)m->n_s);
        if (!m->params || !m->route_idx || !m->route_mask) rc = ELM_E_NOMEM;
    }
    if (rc != ELM_OK) {
        elm_model_free(m);
        return elm__fail(rc, "elm_model_create: out of memory");
    }
    m->w_s_proto = m->params + m->tensors[0].offset;
    m->tau_syn = m->params + m->tensors[1].offset;
    m->tau_m_proto = m->params + m->tensors[2].offset;
    init_params(m, seed);
    rc = elm__model_prepare(m);
    if (rc != ELM_OK) {
        elm_model_free(m);
        return rc;
    }
    *out = m;
    return ELM_OK;
}

ELM_API void elm_model_free(elm_model *m) {
    if (!m) return;
    free(m->params);
    free(m->tensors);
    free(m->route_idx);
    free(m->route_mask);
    free(m->layers);
    free(m->syn_ptr);
    free(m->syn_j);
    free(m->drive_ptr);
    free(m->drive_tgt);
    free(m->drive_w);
    free(m->drive_win);
    free(m->prep);
    elm__meta_clear(m);
    free(m);
}

ELM_API const elm_config *elm_model_config(const elm_model *m) { return m ? &m->cfg : NULL; }

ELM_API int elm_model_size(const elm_model *m, elm_size what, size_t *value) {
    if (!m || !value) return elm__fail(ELM_E_NULL, "elm_model_size: NULL argument");
    switch (what) {
    case ELM_SIZE_INPUT: *value = (size_t)m->n_in; break;
    case ELM_SIZE_OUTPUT: *value = (size_t)m->n_out; break;
    case ELM_SIZE_MEMORY: *value = (size_t)m->n_m; break;
    case ELM_SIZE_BRANCH: *value = (size_t)m->n_b; break;
    case ELM_SIZE_SYNAPSE: *value = (size_t)m->n_s; break;
    case ELM_SIZE_HIDDEN: *value = (size_t)m->H; break;
    case ELM_SIZE_PARAMS: *value = m->n_params; break;
    case ELM_SIZE_TRAINABLE: *value = m->n_trainable; break;
    case ELM_SIZE_NUM_TENSORS: *value = m->n_tensors; break;
    case ELM_SIZE_STATE: *value = (size_t)(m->n_trace + m->n_m); break;
    default: return elm__fail(ELM_E_UNKNOWN_NAME, "elm_model_size: unknown size key %d", (int)what);
    }
    return ELM_OK;
}

ELM_API int elm_model_param_info(const elm_model *m, size_t i, const char **name, int *ndim,
                                 int64_t shape[ELM_MAX_DIMS], int *trainable) {
    if (!m) return elm__fail(ELM_E_NULL, "elm_model_param_info: model is NULL");
    if (i >= m->n_tensors)
        return elm__fail(ELM_E_INVALID, "elm_model_param_info: index %zu >= %zu tensors", i,
                         m->n_tensors);
    const elm_tensor *t = &m->tensors[i];
    if (name) *name = t->name;
    if (ndim) *ndim = t->ndim;
    if (shape)
        for (int d = 0; d < ELM_MAX_DIMS; d++) shape[d] = d < t->ndim ? t->shape[d] : 0;
    if (trainable) *trainable = t->trainable;
    return ELM_OK;
}

static int lookup(const elm_model *m, const char *name, const char *fn, const elm_tensor **t) {
    if (!m || !name) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    *t = find_tensor(m, name);
    if (!*t)
        return elm__fail(ELM_E_UNKNOWN_NAME, "%s: no parameter named '%s' in this model", fn,
                         name);
    return ELM_OK;
}

ELM_API int elm_model_param_shape(const elm_model *m, const char *name, int *ndim,
                                  int64_t shape[ELM_MAX_DIMS]) {
    const elm_tensor *t;
    int rc = lookup(m, name, "elm_model_param_shape", &t);
    if (rc) return rc;
    if (!ndim || !shape) return elm__fail(ELM_E_NULL, "elm_model_param_shape: NULL argument");
    *ndim = t->ndim;
    for (int d = 0; d < ELM_MAX_DIMS; d++) shape[d] = d < t->ndim ? t->shape[d] : 0;
    return ELM_OK;
}

ELM_API int elm_model_get_param(const elm_model *m, const char *name, float *dst,
                                size_t capacity) {
    const elm_tensor *t;
    int rc = lookup(m, name, "elm_model_get_param", &t);
    if (rc) return rc;
    if (!dst) return elm__fail(ELM_E_NULL, "elm_model_get_param: dst is NULL");
    if (capacity < t->numel)
        return elm__fail(ELM_E_SHAPE, "elm_model_get_param: '%s' has %zu elements, dst holds %zu",
                         name, t->numel, capacity);
    memcpy(dst, m->params + t->offset, t->numel * sizeof(float));
    return ELM_OK;
}

int elm__tensor_check(const elm_model *m, const elm_tensor *t, const float *src, const char *fn) {
    bool is_tau = t->offset == m->tensors[1].offset;
    for (size_t i = 0; i < t->numel; i++) {
        float v = src[i];
        if (isnan(v) || (isinf(v) && !t->allow_inf))
            return elm__fail(ELM_E_NONFINITE, "%s: '%s'[%zu] is %g", fn, t->name, i, (double)v);
        if (is_tau && !(v > 0))
            return elm__fail(ELM_E_INVALID, "%s: '%s'[%zu] = %g; time constants must be > 0", fn,
                             t->name, i, (double)v);
    }
    return ELM_OK;
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (used < n) snprintf(buf + used, n - used, ")");
}

ELM_API int elm_model_set_param(elm_model *m, const char *name, const float *src, int ndim,
                                const int64_t *shape) {
    const elm_tensor *t;
    int rc = lookup(m, name, "elm_model_set_param", &t);
    if (rc) return rc;
    if (!src || !shape) return elm__fail(ELM_E_NULL, "elm_model_set_param: NULL argument");
    bool same = ndim == t->ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] == t->shape[d];
    if (!same) {
        char want[64], got[64];
        format_shape(want, sizeof want, t->ndim, t->shape);
        format_shape(got, sizeof got, ndim > 0 && ndim <= ELM_MAX_DIMS ? ndim : 0, shape);
        return elm__fail(ELM_E_SHAPE, "elm_model_set_param: '%s' expects shape %s, got %s%s",
                         name, want, got, ndim > ELM_MAX_DIMS || ndim < 0 ? " (bad ndim)" : "");
    }
    if ((rc = elm__tensor_check(m, t, src, "elm_model_set_param"))) return rc;
    /* Prepare from a copy first so that a failure leaves the model intact. */
    float *dst = m->params + t->offset;
    float *old = malloc(t->numel * sizeof(float));
    if (!old) return elm__fail(ELM_E_NOMEM, "elm_model_set_param: out of memory");
    memcpy(old, dst, t->numel * sizeof(float));
    memcpy(dst, src, t->numel * sizeof(float));
    rc = elm__model_prepare(m);
    if (rc != ELM_OK) {
        memcpy(dst, old, t->numel * sizeof(float));
        elm__model_prepare(m);
    }
    free(old);
    return rc;
}

/* Every tensor is checked before anything is written, and the derived data
 * is rebuilt from the new buffer; on any failure the old buffer is put
 * back, so the model is either wholly new or unchanged. */
ELM_API int elm_model_set_params(elm_model *m, const float *src, size_t n) {
    static const char fn[] = "elm_model_set_params";
    if (!m || !src) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    if (n != m->n_params)
        return elm__fail(ELM_E_SHAPE, "%s: the model has %zu parameters, got n = %zu", fn,
                         m->n_params, n);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const elm_tensor *t = &m->tensors[i];
        int rc = elm__tensor_check(m, t, src + t->offset, fn);
        if (rc) return rc;
    }
    float *old = malloc(n * sizeof *old);
    if (!old) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    memcpy(old, m->params, n * sizeof *old);
    memcpy(m->params, src, n * sizeof *old);
    int rc = elm__model_prepare(m);
    if (rc != ELM_OK) {
        memcpy(m->params, old, n * sizeof *old);
        elm__model_prepare(m);
    }
    free(old);
    return rc;
}

ELM_API int elm_model_get_routing(const elm_model *m, int64_t *idx, uint8_t *mask, size_t n_s) {
    if (!m || !idx || !mask) return elm__fail(ELM_E_NULL, "elm_model_get_routing: NULL argument");
    if (n_s != (size_t)m->n_s)
        return elm__fail(ELM_E_SHAPE, "elm_model_get_routing: model has %d synapses, got n_s = %zu",
                         m->n_s, n_s);
    memcpy(idx, m->route_idx, n_s * sizeof *idx);
    memcpy(mask, m->route_mask, n_s);
    return ELM_OK;
}

ELM_API int elm_model_set_routing(elm_model *m, const int64_t *idx, const uint8_t *mask,
                                  size_t n_s) {
    if (!m || !idx || !mask) return elm__fail(ELM_E_NULL, "elm_model_set_routing: NULL argument");
    if (m->cfg.v[ELM_ROUTING] == ELM_ROUTING_NONE)
        return elm__fail(ELM_E_UNSUPPORTED,
                         "elm_model_set_routing: the model was configured without routing");
    if (n_s != (size_t)m->n_s)
        return elm__fail(ELM_E_SHAPE, "elm_model_set_routing: model has %d synapses, got n_s = %zu",
                         m->n_s, n_s);
    for (size_t j = 0; j < n_s; j++) {
        if (idx[j] < 0 || idx[j] >= m->n_in)
            return elm__fail(ELM_E_INVALID,
                             "elm_model_set_routing: idx[%zu] = %lld is outside [0, %d)", j,
                             (long long)idx[j], m->n_in);
        if (mask[j] > 1)
            return elm__fail(ELM_E_INVALID, "elm_model_set_routing: mask[%zu] = %u is not 0 or 1",
                             j, mask[j]);
    }
    int64_t *old_idx = malloc(n_s * sizeof *old_idx);
    uint8_t *old_mask = malloc(n_s);
    if (!old_idx || !old_mask) {
        free(old_idx);
        free(old_mask);
        return elm__fail(ELM_E_NOMEM, "elm_model_set_routing: out of memory");
    }
    memcpy(old_idx, m->route_idx, n_s * sizeof *idx);
    memcpy(old_mask, m->route_mask, n_s);
    memcpy(m->route_idx, idx, n_s * sizeof *idx);
    memcpy(m->route_mask, mask, n_s);
    m->routing_dirty = true;
    int rc = elm__model_prepare(m);
    if (rc != ELM_OK) {
        memcpy(m->route_idx, old_idx, n_s * sizeof *idx);
        memcpy(m->route_mask, old_mask, n_s);
        m->routing_dirty = true;
        elm__model_prepare(m);
    }
    free(old_idx);
    free(old_mask);
    return rc;
}

ELM_API const float *elm_model_params(const elm_model *m) { return m ? m->params : NULL; }
