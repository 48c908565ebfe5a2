/* Derived data of a model, rebuilt after every parameter change: decay
 * factors, the sparse input-to-trace drive, and transposed weights laid out
 * for the forward's products. */
#include "elm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float kappa_of(float tau, float dt) { return expf(-dt / fmaxf(tau, 1e-6f)); }

/* v1 traces collapse exactly into per-branch traces when every synapse of a
 * branch decays with the same time constant: the branch sum of identical
 * linear leaky recursions is the recursion of the summed drive. */
static bool branches_share_tau(const elm_model *m) {
    if (m->version == ELM_V2) return true;
    for (int i = 0; i < m->n_b; i++)
        for (int q = 1; q < m->k; q++)
            if (m->tau_syn[i * m->k + q] != m->tau_syn[i * m->k]) return false;
    return true;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* CSR of the drive d = x W_in, W_in (n_in, n_trace), from the routing table:
 * synapse j adds relu(w_s[j]) mask[j] x[idx[j]] to its trace (its branch
 * when collapsed). Zero weights are kept so the pattern never depends on
 * the weights' values. */
static int build_drive(elm_model *m) {
    int n_in = m->n_in, n_s = m->n_s;
    int32_t *ptr = calloc((size_t)n_in + 1, sizeof *ptr);
    int32_t *tgt = malloc((size_t)n_s * sizeof *tgt);
    float *w = malloc((size_t)n_s * sizeof *w);
    int32_t *pos = malloc((size_t)n_in * sizeof *pos);
    if (!ptr || !tgt || !w || !pos) {
        free(ptr); free(tgt); free(w); free(pos);
        return ELM_E_NOMEM;
    }
    for (int j = 0; j < n_s; j++) ptr[m->route_idx[j] + 1]++;
    for (int i = 0; i < n_in; i++) ptr[i + 1] += ptr[i];
    memcpy(pos, ptr, (size_t)n_in * sizeof *pos);
    /* Entries are (target, synapse) packed so that sorting by target keeps
     * the per-target summation order deterministic. */
    int32_t *syn = malloc((size_t)n_s * sizeof *syn);
    if (!syn) {
        free(ptr); free(tgt); free(w); free(pos);
        return ELM_E_NOMEM;
    }
    for (int j = 0; j < n_s; j++) syn[pos[m->route_idx[j]]++] = j;
    int32_t nnz = 0;
    for (int i = 0; i < n_in; i++) {
        int32_t begin = ptr[i], end = ptr[i + 1];
        qsort(syn + begin, (size_t)(end - begin), sizeof *syn, cmp_i32);
        ptr[i] = nnz;
        for (int32_t e = begin; e < end; e++) {
            int j = syn[e];
            int32_t t = m->collapsed ? j / m->k : j;
            float wj = fmaxf(m->w_s_proto[j], 0.0f) * (float)m->route_mask[j];
            if (nnz > ptr[i] && tgt[nnz - 1] == t) {
                w[nnz - 1] += wj; /* several synapses of one branch read input i */
            } else {
                tgt[nnz] = t;
                w[nnz] = wj;
                nnz++;
            }
        }
    }
    ptr[n_in] = nnz;
    free(syn);
    free(pos);
    free(m->drive_ptr); free(m->drive_tgt); free(m->drive_w);
    m->drive_ptr = ptr;
    m->drive_tgt = tgt;
    m->drive_w = w;
    return ELM_OK;
}

/* dst (in, out) = src (out, in) transposed. */
static void transpose(const float *src, int out, int in, float *dst) {
    for (int c = 0; c < in; c++)
        for (int o = 0; o < out; o++) dst[(size_t)c * out + o] = src[(size_t)o * in + c];
}

int elm__model_prepare(elm_model *m) {
    bool collapsed = branches_share_tau(m);
    if (m->prep && collapsed != m->collapsed) m->layout_gen++;
    m->collapsed = collapsed;
    m->n_trace = collapsed ? m->n_b : m->n_s;

    /* Sizes of the derived arrays. */
    size_t n = (size_t)m->n_s + 2 * (size_t)m->n_m; /* n_s >= n_trace in every mode */
    for (int i = 0; i <= m->L; i++) {
        size_t in = i == 0 ? (size_t)(m->n_b + m->n_m) : (size_t)m->H;
        size_t out = i == m->L ? (size_t)m->n_m : (size_t)m->H;
        n += in * (out + elm__panel_cols((int)out));
    }
    n += (size_t)m->n_m * ((size_t)m->n_out + elm__panel_cols(m->n_out));
    if (!m->prep) {
        m->prep = aligned_alloc(64, ((n * sizeof(float)) + 63) / 64 * 64);
        m->layers = calloc((size_t)m->L + 1, sizeof *m->layers);
        if (!m->prep || !m->layers) return elm__fail(ELM_E_NOMEM, "model: out of memory");
    }
    float *p = m->prep;
    m->kappa_trace = p; p += m->n_trace;
    m->kappa_m = p; p += m->n_m;
    m->mem_coef = p; p += m->n_m;

    for (int t = 0; t < m->n_trace; t++) {
        /* collapsed v1: every synapse of branch t has tau_syn[t * k] */
        float tau = m->version == ELM_V2 ? m->tau_syn[t] : m->tau_syn[collapsed ? t * m->k : t];
        m->kappa_trace[t] = kappa_of(tau, m->dt);
    }
    for (int i = 0; i < m->n_m; i++) {
        float s = 1.0f / (1.0f + expf(-m->tau_m_proto[i]));
        float tau_m = (m->tau_max - m->tau_min) * s + m->tau_min;
        float km = kappa_of(tau_m, m->dt);
        m->kappa_m[i] = km;
        if (m->version == ELM_V1)
            m->mem_coef[i] = m->lambda * (1.0f - km);
        else
            m->mem_coef[i] = 1.0f - expf(-m->dt * m->lambda / fmaxf(tau_m, 1e-6f));
    }
    /* Transposed weights: (out, in) -> (in, out). */
    for (int i = 0; i <= m->L; i++) {
        const elm_tensor *w = &m->tensors[3 + 2 * i], *b = &m->tensors[4 + 2 * i];
        elm_layer *l = &m->layers[i];
        l->out = (int)w->shape[0];
        l->in = (int)w->shape[1];
        l->ldw = (size_t)l->out;
        l->wt = p;
        l->b = m->params + b->offset;
        transpose(m->params + w->offset, l->out, l->in, p);
        p += (size_t)l->in * l->ldw;
        l->panels = p;
        elm__pack_panels(m->params + w->offset, l->out, l->in, p);
        p += (size_t)l->in * elm__panel_cols(l->out);
    }
    const elm_tensor *wy = &m->tensors[m->n_tensors - 2], *by = &m->tensors[m->n_tensors - 1];
    m->readout.in = m->n_m;
    m->readout.out = m->n_out;
    m->readout.ldw = (size_t)m->n_out;
    m->readout.wt = p;
    m->readout.b = m->params + by->offset;
    transpose(m->params + wy->offset, m->n_out, m->n_m, p);
    p += (size_t)m->n_m * m->readout.ldw;
    m->readout.panels = p;
    elm__pack_panels(m->params + wy->offset, m->n_out, m->n_m, p);

    if (build_drive(m) != ELM_OK) return elm__fail(ELM_E_NOMEM, "model: out of memory");
    return ELM_OK;
}
