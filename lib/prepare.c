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

/* Input -> synapse lists in CSR form (synapses ascending within an input),
 * rebuilt only when the routing changes. The drive and the gradients of
 * w_s and tau walk these lists. */
static int build_synapse_lists(elm_model *m) {
    int n_in = m->n_in, n_s = m->n_s;
    if (!m->syn_ptr) {
        m->syn_ptr = malloc(((size_t)n_in + 1) * sizeof *m->syn_ptr);
        m->syn_j = malloc((size_t)n_s * sizeof *m->syn_j);
        m->drive_ptr = malloc(((size_t)n_in + 1) * sizeof *m->drive_ptr);
        m->drive_tgt = malloc((size_t)n_s * sizeof *m->drive_tgt);
        m->drive_w = malloc((size_t)n_s * sizeof *m->drive_w);
        if (!m->syn_ptr || !m->syn_j || !m->drive_ptr || !m->drive_tgt || !m->drive_w)
            return ELM_E_NOMEM;
    }
    int32_t *ptr = m->syn_ptr;
    memset(ptr, 0, ((size_t)n_in + 1) * sizeof *ptr);
    for (int j = 0; j < n_s; j++) ptr[m->route_idx[j] + 1]++;
    for (int i = 0; i < n_in; i++) ptr[i + 1] += ptr[i];
    /* Counting sort by input; j ascends within each input because j does. */
    int32_t *fill = m->drive_ptr; /* scratch: overwritten by fill_drive */
    memcpy(fill, ptr, (size_t)n_in * sizeof *fill);
    for (int j = 0; j < n_s; j++) m->syn_j[fill[m->route_idx[j]]++] = j;
    m->routing_dirty = false;
    return ELM_OK;
}

/* CSR of the drive d = x W_in, W_in (n_in, n_trace): synapse j adds
 * relu(w_s[j]) mask[j] x[idx[j]] to its trace (its branch when collapsed).
 * Synapses of one input that feed one target are merged into one entry, in
 * ascending j (the target ascends with j, so equal targets are adjacent).
 * Zero weights are kept so the pattern never depends on the weights. The
 * arrays hold n_s entries at most, so this never allocates. */
static void fill_drive(elm_model *m) {
    int32_t nnz = 0;
    for (int i = 0; i < m->n_in; i++) {
        int32_t first = nnz;
        m->drive_ptr[i] = nnz;
        for (int32_t e = m->syn_ptr[i]; e < m->syn_ptr[i + 1]; e++) {
            int j = m->syn_j[e];
            int32_t t = m->collapsed ? j / m->k : j;
            float wj = fmaxf(m->w_s_proto[j], 0.0f) * (float)m->route_mask[j];
            if (nnz > first && m->drive_tgt[nnz - 1] == t) {
                m->drive_w[nnz - 1] += wj;
            } else {
                m->drive_tgt[nnz] = t;
                m->drive_w[nnz] = wj;
                nnz++;
            }
        }
    }
    m->drive_ptr[m->n_in] = nnz;
}

/* The drive as windows (elm_drive_win) when the CSR allows it: at most 64
 * traces, and each input's entries (targets ascending) a run of at most 4
 * consecutive traces. True of NeuronIO's routing (overlapping windows of
 * consecutive branches) and of models without routing and <= 64 inputs.
 * Otherwise drive_win is released and the CSR is used. */
static int fill_drive_win(elm_model *m) {
    bool fits = m->n_trace <= 64;
    for (int i = 0; fits && i < m->n_in; i++) {
        int32_t a = m->drive_ptr[i], n = m->drive_ptr[i + 1] - a;
        fits = n <= 4;
        for (int32_t q = 1; fits && q < n; q++) fits = m->drive_tgt[a + q] == m->drive_tgt[a] + q;
    }
    if (!fits) {
        free(m->drive_win);
        m->drive_win = NULL;
        return ELM_OK;
    }
    if (!m->drive_win &&
        !(m->drive_win = aligned_alloc(64, ((size_t)m->n_in * sizeof(elm_drive_win) + 63) / 64 * 64)))
        return ELM_E_NOMEM;
    for (int i = 0; i < m->n_in; i++) {
        elm_drive_win *e = &m->drive_win[i];
        int32_t a = m->drive_ptr[i], n = m->drive_ptr[i + 1] - a;
        memset(e, 0, sizeof *e);
        e->first = n ? m->drive_tgt[a] : 0;
        for (int32_t q = 0; q < n; q++) e->w[q] = m->drive_w[a + q];
        e->lanes = n ? (((uint64_t)1 << n) - 1) << e->first : 0;
    }
    return ELM_OK;
}

/* dst (in, out) = src (out, in) transposed. */
static void transpose(const float *src, int out, int in, float *dst) {
    for (int c = 0; c < in; c++)
        for (int o = 0; o < out; o++) dst[(size_t)c * out + o] = src[(size_t)o * in + c];
}

/* Floats per 64-byte cache line. */
#define ELM_LINE_FLOATS 16

/* The next cache-line boundary at or after p (base is line aligned). A
 * panel row of 64 floats then covers 4 whole lines: rows that straddle
 * lines made every 16-float load of the B = 1 step touch two lines. */
static float *panel_start(float *base, float *p) {
    size_t off = (size_t)(p - base);
    return base + (off + ELM_LINE_FLOATS - 1) / ELM_LINE_FLOATS * ELM_LINE_FLOATS;
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
    /* backward panels: W_i^T for i >= 1, and layer 0's memory columns */
    for (int i = 1; i <= m->L; i++) {
        size_t out = i == m->L ? (size_t)m->n_m : (size_t)m->H;
        n += out * elm__panel_cols(m->H);
    }
    n += (size_t)(m->L > 0 ? m->H : m->n_m) * elm__panel_cols(m->n_m);
    /* every packed block starts on a cache line (panel_start) */
    n += (size_t)ELM_LINE_FLOATS * (2 * (size_t)m->L + 4);
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
    m->kappa_uniform = true;
    for (int t = 1; t < m->n_trace; t++)
        if (m->kappa_trace[t] != m->kappa_trace[0]) m->kappa_uniform = false;
    m->prep_gen++;
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
        l->panels = p = panel_start(m->prep, p);
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
    m->readout.panels = p = panel_start(m->prep, p);
    elm__pack_panels(m->params + wy->offset, m->n_out, m->n_m, p);
    p += (size_t)m->n_m * elm__panel_cols(m->n_out);
    /* For the backward, dx (B, in) = dy (B, out) W: W^T = wt (in, out)
     * packed as an (in, out) weight. Layer 0 needs its memory rows only. */
    for (int i = 1; i <= m->L; i++) {
        elm_layer *l = &m->layers[i];
        l->bpanels = p = panel_start(m->prep, p);
        elm__pack_panels(l->wt, l->in, l->out, p);
        p += (size_t)l->out * elm__panel_cols(l->in);
    }
    elm_layer *l0 = &m->layers[0];
    l0->bpanels = p = panel_start(m->prep, p);
    elm__pack_panels(l0->wt + (size_t)m->n_b * l0->ldw, m->n_m, l0->out, p);

    if ((m->routing_dirty || !m->syn_ptr) && build_synapse_lists(m) != ELM_OK)
        return elm__fail(ELM_E_NOMEM, "model: out of memory");
    fill_drive(m);
    if (fill_drive_win(m) != ELM_OK) return elm__fail(ELM_E_NOMEM, "model: out of memory");
    m->drive = (elm_drive){m->drive_ptr, m->drive_tgt, m->drive_w, m->drive_win, m->n_trace};
    return ELM_OK;
}
