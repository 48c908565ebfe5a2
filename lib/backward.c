/* Backpropagation through time over a tape (tape.h), segment by segment
 * from the last.
 *
 * Per step t, going back (gm = dL/dm_t, dH_i = dL/d pre-activation i):
 *   gm      = W_y^T dy_t + carry
 *   dz      = gm coef g'(z_t)            carry = gm kappa_m
 *   dH_{i-1} = (dH_i W_i) act'(H_{i-1})  i = L .. 1, dH_L = dz
 *   carry  += (dH_0 W_0[:, n_b:]) kappa_m
 * Everything that does not feed the recursion is hoisted into one product
 * per segment: dL/dW_y, dL/dm from dy, every weight gradient, and the
 * gradient of the branch input dA = dH_0 W_0[:, :n_b].
 *
 * Traces are linear: with d_t the drive of trace unit i (a branch, or a
 * synapse when v1 time constants differ within a branch) and kappa its
 * decay, g_t = dA_t + kappa g_{t+1} is dL/d d_t, so
 *   dL/d w_s[j]  = sum_t u_t[j] g_t[unit j] (times relu'),
 *   dL/d x_t[i]  = sum over synapses j reading i of w_j mask_j g_t[unit j],
 *   dL/d kappa_j = w_j sum_t u_t[j] R_t[unit j],  R_t = g_{t+1} + kappa R_{t+1},
 * the last because s_{t-1} is a leaky sum of past drives. Only the
 * non-zero inputs are visited, and no per-synapse trace is ever stored. */
#include "tape.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Weight rows of the parameter buffer. */
static const float *weight(const elm_model *m, size_t tensor) {
    return m->params + m->tensors[tensor].offset;
}

/* dst (B, out) = src (B, in) @ W, W (in, out) row-major (a layer's weight
 * read as dy W): libelm's kernels over the backward panels below
 * ELM_SMALL_BATCH streams (as elm__layer_product), else BLIS. */
static void back_product(int B, const float *src, int in, const float *bpanels, const float *W,
                         size_t ldw, int out, float *dst) {
    if (B == 1) {
        elm__matmul_small(B, in, out, src, (size_t)in, bpanels, in, 0, dst, (size_t)out, 0);
    } else if (B < ELM_SMALL_BATCH) {
        memset(dst, 0, (size_t)B * (size_t)out * sizeof *dst);
        elm__matmul_rows(B, in, out, src, (size_t)in, bpanels, in, 0, dst, (size_t)out);
    } else
        elm__sgemm(0, 0, (size_t)B, (size_t)out, (size_t)in, 1.0f, src, (size_t)in, W, ldw, 0.0f,
                   dst, (size_t)out);
}

static void colsum(const float *a, size_t rows, int n, float *acc) {
    for (size_t r = 0; r < rows; r++)
        for (int i = 0; i < n; i++) acc[i] += a[r * (size_t)n + i];
}

/* The recurrent part of one segment's backward, steps n-1 .. 0, leaving
 * dH_0 .. dH_L of every step in tp->dH. */
static void recurrent_backward(elm_tape *tp, size_t r0, int n) {
    const elm_model *m = tp->model;
    int B = tp->B, nm = m->n_m, H = m->H, L = m->L, nb = m->n_b, out0 = tp->out0;
    size_t hp_stride = (tp->ckpt ? (size_t)tp->S : tp->T_max) * (size_t)B * (size_t)H;
    size_t dh_stride = (size_t)tp->S * (size_t)B * (size_t)H;
    float *dZ = tp->dH + (size_t)L * dh_stride;
    const float *Z = elm__rec(tp->Z, r0, B, nm), *M = elm__rec(tp->M, r0, B, nm);
    float *acc_coef = tp->acc, *acc_kappa = tp->acc + nm;
    const elm_layer *l0 = &m->layers[0];
    for (int t = n - 1; t >= 0; t--) {
        size_t row = (size_t)t * B;
        float *gm = tp->dM + row * nm;
        for (size_t i = 0; i < (size_t)B * nm; i++) gm[i] += tp->dmc[i];
        const float *mprev = t > 0 ? M + (row - (size_t)B) * nm : tp->m0;
        elm__tape_memory_backward(B, nm, gm, Z + row * nm, mprev, m->kappa_m, m->mem_coef,
                             dZ + row * nm, tp->dmc, acc_coef, acc_kappa);
        for (int l = L; l >= 1; l--) {
            const elm_layer *ly = &m->layers[l];
            const float *dh = l == L ? dZ + row * nm : tp->dH + (size_t)l * dh_stride + row * H;
            float *dprev = tp->dH + (size_t)(l - 1) * dh_stride + row * H;
            back_product(B, dh, ly->out, ly->bpanels, weight(m, 3 + 2 * (size_t)l), (size_t)H, H,
                         dprev);
            const float *pre = tp->Hp + (size_t)(l - 1) * hp_stride + (r0 + (size_t)t) * B * H;
            elm__activate_backward(m->act, pre, dprev, (size_t)B * H);
        }
        const float *dh0 = L > 0 ? tp->dH + row * H : dZ + row * nm;
        back_product(B, dh0, out0, l0->bpanels, weight(m, 3) + nb, (size_t)tp->nu, nm, tp->u);
        elm__leak_backward(B, nm, tp->u, mprev, m->kappa_m, tp->dmc, acc_kappa);
    }
}

/* The hoisted products of one segment: weight and bias gradients of every
 * layer, and dA = dH_0 W_0[:, :n_b]. */
static void weight_gradients(elm_tape *tp, size_t r0, int n) {
    const elm_model *m = tp->model;
    int B = tp->B, nm = m->n_m, H = m->H, L = m->L, nb = m->n_b, out0 = tp->out0;
    size_t rows = (size_t)n * (size_t)B;
    size_t hp_stride = (tp->ckpt ? (size_t)tp->S : tp->T_max) * (size_t)B * (size_t)H;
    size_t dh_stride = (size_t)tp->S * (size_t)B * (size_t)H;
    float *g = tp->gbuf;
    for (int l = L; l >= 1; l--) {
        const float *dh = tp->dH + (size_t)l * dh_stride; /* dZ when l == L */
        int out = m->layers[l].out;
        const float *U = tp->Ha + (size_t)(l - 1) * hp_stride + r0 * B * H;
        const elm_tensor *w = &m->tensors[3 + 2 * l], *b = &m->tensors[4 + 2 * l];
        elm__sgemm(1, 0, (size_t)out, (size_t)H, rows, 1.0f, dh, (size_t)out, U, (size_t)H, 1.0f,
                   g + w->offset, (size_t)H);
        colsum(dh, rows, out, g + b->offset);
    }
    const float *dh0 = tp->dH + (L > 0 ? 0 : (size_t)L * dh_stride);
    const elm_tensor *w0 = &m->tensors[3], *b0 = &m->tensors[4];
    const float *A = elm__rec(tp->A, r0, B, nb), *M = elm__rec(tp->M, r0, B, nm);
    elm__sgemm(1, 0, (size_t)out0, (size_t)nb, rows, 1.0f, dh0, (size_t)out0, A, (size_t)nb, 1.0f,
               g + w0->offset, (size_t)tp->nu);
    /* memory columns: the input was kappa_m * m_{t-1} */
    float *U = tp->U;
    for (int t = 0; t < n; t++) {
        const float *mp = t > 0 ? M + ((size_t)t - 1) * B * nm : tp->m0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < nm; i++)
                U[((size_t)t * B + b) * nm + i] = m->kappa_m[i] * mp[(size_t)b * nm + i];
    }
    elm__sgemm(1, 0, (size_t)out0, (size_t)nm, rows, 1.0f, dh0, (size_t)out0, U, (size_t)nm, 1.0f,
               g + w0->offset + nb, (size_t)tp->nu);
    colsum(dh0, rows, out0, g + b0->offset);
    elm__sgemm(0, 0, rows, (size_t)nb, (size_t)out0, 1.0f, dh0, (size_t)out0, weight(m, 3),
               (size_t)tp->nu, 0.0f, tp->dA, (size_t)nb);
}

/* Trace gradients of one segment (reverse scan into G = tp->D, and R),
 * then the synapse sums over non-zero inputs, and dx. */
static void trace_backward(elm_tape *tp, size_t T, size_t t0, int n, float *dx) {
    const elm_model *m = tp->model;
    int B = tp->B, nt = m->n_trace, nb = m->n_b, k = m->k;
    bool tau = tp->R != NULL;
    float *G = tp->D, *R = tp->R;
    for (int t = n - 1; t >= 0; t--)
        for (int b = 0; b < B; b++) {
            size_t row = (size_t)t * B + b;
            const float *da = tp->dA + row * nb;
            float *gc = tp->gc + (size_t)b * nt, *Rc = tp->Rc + (size_t)b * nt;
            float *gt = G + row * nt;
            if (tau) {
                float *rt = R + row * nt;
                for (int i = 0; i < nt; i++) rt[i] = Rc[i] = gc[i] + m->kappa_trace[i] * Rc[i];
            }
            if (m->collapsed)
                for (int i = 0; i < nt; i++) gt[i] = gc[i] = da[i] + m->kappa_trace[i] * gc[i];
            else
                for (int i = 0; i < nt; i++) gt[i] = gc[i] = da[i / k] + m->kappa_trace[i] * gc[i];
        }
    for (int t = 0; t < n; t++)
        for (int b = 0; b < B; b++) {
            size_t row = (size_t)t * B + b;
            const float *gt = G + row * nt, *rt = tau ? R + row * nt : NULL;
            size_t r = (t0 + (size_t)t) * B + b;
            for (size_t q = tp->ev_ptr[r]; q < tp->ev_ptr[r + 1]; q++) {
                int i = tp->ev_idx[q];
                double v = tp->ev_val[q];
                for (int32_t e = m->syn_ptr[i]; e < m->syn_ptr[i + 1]; e++) {
                    int j = m->syn_j[e];
                    if (!m->route_mask[j]) continue;
                    int unit = m->collapsed ? j / k : j;
                    tp->dproto[j] += v * gt[unit];
                    if (tau) tp->dkap[j] += v * rt[unit];
                }
            }
            if (dx) {
                float *dr = dx + ((size_t)b * T + t0 + (size_t)t) * (size_t)m->n_in;
                for (int i = 0; i < m->n_in; i++) {
                    float s = 0.0f;
                    for (int32_t e = m->drive_ptr[i]; e < m->drive_ptr[i + 1]; e++)
                        s += m->drive_w[e] * gt[m->drive_tgt[e]];
                    dr[i] = s;
                }
            }
        }
}

/* dkappa/dtau for kappa = exp(-dt / max(tau, 1e-6)); 0 where clamped. */
static double dkappa_dtau(double kappa, double tau, double dt) {
    return tau > 1e-6 ? kappa * dt / (tau * tau) : 0.0;
}

/* Chain rule from the accumulated sums to the parameters. */
static void finish(elm_tape *tp) {
    const elm_model *m = tp->model;
    float *g = tp->gbuf;
    float *gp = g + m->tensors[0].offset;
    for (int j = 0; j < m->n_s; j++)
        gp[j] = m->w_s_proto[j] > 0.0f ? (float)tp->dproto[j] : 0.0f;
    if (tp->R) {
        float *gt = g + m->tensors[1].offset;
        if (m->version == ELM_V1) {
            for (int j = 0; j < m->n_s; j++) {
                double tau = m->tau_syn[j], kap = m->kappa_trace[m->collapsed ? j / m->k : j];
                double dk = fmax(m->w_s_proto[j], 0.0) * tp->dkap[j];
                gt[j] = (float)(dk * dkappa_dtau(kap, tau, m->dt));
            }
        } else {
            for (int i = 0; i < m->n_b; i++) {
                double dk = 0;
                for (int q = 0; q < m->k; q++) {
                    int j = i * m->k + q;
                    dk += fmax(m->w_s_proto[j], 0.0) * tp->dkap[j];
                }
                gt[i] = (float)(dk * dkappa_dtau(m->kappa_trace[i], m->tau_syn[i], m->dt));
            }
        }
    }
    float *gm = g + m->tensors[2].offset;
    for (int i = 0; i < m->n_m; i++) {
        /* tau_m as prepare.c computes it, in float */
        float sf = 1.0f / (1.0f + expf(-m->tau_m_proto[i]));
        double tau = (m->tau_max - m->tau_min) * sf + m->tau_min;
        double s = 1.0 / (1.0 + exp(-(double)m->tau_m_proto[i]));
        double dtau;
        if (m->version == ELM_V1) {
            double dk = tp->dkm[i] - (double)m->lambda * tp->dcoef[i];
            dtau = dk * dkappa_dtau(m->kappa_m[i], tau, m->dt);
        } else {
            /* coef = 1 - exp(-dt lambda / tau) */
            double kl = exp(-(double)m->dt * m->lambda / fmax(tau, 1e-6));
            dtau = tp->dkm[i] * dkappa_dtau(m->kappa_m[i], tau, m->dt) -
                   tp->dcoef[i] * dkappa_dtau(kl, tau, (double)m->dt * m->lambda);
        }
        gm[i] = (float)(dtau * (m->tau_max - m->tau_min) * s * (1.0 - s));
    }
}

/* The whole backward of one tape (or thread group) into tp->gbuf, which it
 * zeroes first; dx, when not NULL, is this tape's (B, T, n_in) part.
 * Checkpointing recomputes each segment from the input events the forward
 * recorded (time-major rows), not from the caller's x: the drive is the
 * same sum in the same order, so the recomputed segment is bit-identical,
 * costs no second scan of a dense x, and a caller who changed x since the
 * forward cannot change the gradients. */
static int backward(elm_tape *tp, size_t T, const float *dy, float *dx) {
    const elm_model *m = tp->model;
    size_t B = (size_t)tp->B, nm = (size_t)m->n_m;
    memset(tp->gbuf, 0, m->n_params * sizeof(float));
    memset(tp->gc, 0, B * m->n_s * sizeof(float));
    if (tp->R) memset(tp->Rc, 0, B * m->n_s * sizeof(float));
    memset(tp->dmc, 0, B * nm * sizeof(float));
    memset(tp->dproto, 0, (size_t)m->n_s * sizeof(double));
    memset(tp->dkap, 0, (size_t)m->n_s * sizeof(double));
    memset(tp->dkm, 0, nm * sizeof(double));
    memset(tp->dcoef, 0, nm * sizeof(double));
    const elm_tensor *wy = &m->tensors[m->n_tensors - 2], *by = &m->tensors[m->n_tensors - 1];
    size_t S = (size_t)tp->S, per = (size_t)m->n_s + nm;
    size_t n_seg = (T + S - 1) / S;
    for (size_t seg = n_seg; seg-- > 0;) {
        size_t t0 = seg * S;
        int n = T - t0 < S ? (int)(T - t0) : (int)S;
        size_t rows = (size_t)n * B, r0 = tp->ckpt ? 0 : t0;
        if (tp->ckpt) {
            const float *bd = tp->bound + seg * B * per;
            memcpy(tp->trace, bd, B * m->n_trace * sizeof(float));
            memcpy(tp->mem, bd + B * m->n_s, B * nm * sizeof(float));
            const elm_input rec = {.off = (const int64_t *)tp->ev_ptr, .ch = tp->ev_idx,
                                   .val = tp->ev_val, .tmajor = B};
            int rc = elm__tape_segment_forward(tp, &rec, T, t0, n, 0, NULL, false);
            if (rc != ELM_OK) return rc;
            memcpy(tp->m0, bd + B * m->n_s, B * nm * sizeof(float));
        } else if (t0 == 0) {
            memset(tp->m0, 0, B * nm * sizeof(float));
        } else {
            memcpy(tp->m0, elm__rec(tp->M, t0 - 1, tp->B, m->n_m), B * nm * sizeof(float));
        }
        /* dy rows of the segment, time-major */
        for (int t = 0; t < n; t++)
            for (size_t b = 0; b < B; b++)
                memcpy(tp->Yw + ((size_t)t * B + b) * m->n_out,
                       dy + (b * T + t0 + (size_t)t) * m->n_out, (size_t)m->n_out * sizeof(float));
        const float *M = elm__rec(tp->M, r0, tp->B, m->n_m);
        elm__sgemm(0, 0, rows, nm, (size_t)m->n_out, 1.0f, tp->Yw, (size_t)m->n_out,
                   weight(m, m->n_tensors - 2), nm, 0.0f, tp->dM, nm);
        elm__sgemm(1, 0, (size_t)m->n_out, nm, rows, 1.0f, tp->Yw, (size_t)m->n_out, M, nm, 1.0f,
                   tp->gbuf + wy->offset, nm);
        colsum(tp->Yw, rows, m->n_out, tp->gbuf + by->offset);

        memset(tp->acc, 0, 2 * nm * sizeof(float));
        recurrent_backward(tp, r0, n);
        for (size_t i = 0; i < nm; i++) {
            tp->dcoef[i] += tp->acc[i];
            tp->dkm[i] += tp->acc[nm + i];
        }
        weight_gradients(tp, r0, n);
        trace_backward(tp, T, t0, n, dx);
    }
    finish(tp);
    return ELM_OK;
}

static void group_backward(void *ctx, int part, int n_parts) {
    (void)n_parts;
    elm_tape *tp = ctx, *g = tp->sub[part];
    const elm_model *m = tp->model;
    size_t T = tp->run_T, b0 = (size_t)g->b_off;
    int rc = backward(g, T, tp->run_dy + b0 * T * m->n_out,
                      tp->run_dx ? tp->run_dx + b0 * T * m->n_in : NULL);
    g->run_rc = rc;
    if (rc != ELM_OK) snprintf(g->run_err, sizeof g->run_err, "%s", elm_last_error());
}

ELM_API int elm_tape_backward(elm_tape *tp, const float *x, const float *dy, float *grad,
                              float *dx) {
    (void)x; /* not read since 0.5: the tape keeps the input's non-zero entries */
    if (!tp || !dy || !grad) return elm__fail(ELM_E_NULL, "elm_tape_backward: NULL argument");
    const elm_model *m = tp->model;
    if (tp->T == 0)
        return elm__fail(ELM_E_INVALID, "elm_tape_backward: no forward recorded on this tape "
                                        "(or the last one failed)");
    if (tp->layout_gen != m->layout_gen)
        return elm__fail(ELM_E_INVALID, "elm_tape_backward: the model's trace layout changed "
                                        "since this tape was created; create a new tape");
    size_t T = tp->T, B = (size_t)tp->B;
    size_t ndy = B * T * (size_t)m->n_out;
    for (size_t i = 0; i < ndy; i++)
        if (!isfinite(dy[i]))
            return elm__fail(ELM_E_NONFINITE, "elm_tape_backward: dy[%zu, %zu, %zu] is %g",
                             i / ((size_t)m->n_out * T), i / (size_t)m->n_out % T,
                             i % (size_t)m->n_out, (double)dy[i]);
    if (tp->n_threads == 1) {
        int rc = backward(tp, T, dy, dx);
        if (rc != ELM_OK) return rc;
        for (size_t i = 0; i < m->n_params; i++) grad[i] += tp->gbuf[i];
        return ELM_OK;
    }
    tp->run_dy = dy;
    tp->run_dx = dx;
    tp->run_T = T;
    elm__pool_run(tp->pool, group_backward, tp);
    for (int g = 0; g < tp->n_threads; g++)
        if (tp->sub[g]->run_rc != ELM_OK)
            return elm__fail(tp->sub[g]->run_rc, "%s", tp->sub[g]->run_err);
    /* group order: deterministic for a given n */
    for (int g = 0; g < tp->n_threads; g++) {
        const float *gb = tp->sub[g]->gbuf;
        for (size_t i = 0; i < m->n_params; i++) grad[i] += gb[i];
    }
    return ELM_OK;
}
