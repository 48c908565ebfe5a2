/* The training tape: creation, and the forward that records what the
 * backward (backward.c) needs. See tape.h for the segment structure. */
#include "tape.h"

#include <stdio.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Segments of ~sqrt(T_max) steps keep checkpointing memory ~ sqrt(T); at
 * least ~512 rows per product keep the hoisted products efficient. */
static int segment_length(size_t T_max, size_t B) {
    size_t s = (size_t)ceil(sqrt((double)T_max));
    size_t rows = (512 + B - 1) / B;
    if (s < rows) s = rows;
    if (s > T_max) s = T_max;
    return (int)s;
}

/* Allocate tp's block for its B and mode: the record, the workspaces and
 * the gradient buffer. A tape running on several threads frees its own
 * block (its groups hold their records) and gets it back at n = 1. */
static int alloc_block(elm_tape *tp, const char *fn) {
    const elm_model *m = tp->model;
    size_t B = (size_t)tp->B, T_max = tp->T_max;
    /* Sizes in elements (floats, or 2 per double), each rounded up to 16. */
    size_t steps = tp->ckpt ? (size_t)tp->S : T_max;
    size_t Bz = B, Sz = (size_t)tp->S, nS = (size_t)m->n_s, nb = (size_t)m->n_b,
           nm = (size_t)m->n_m, H = (size_t)m->H, L = (size_t)m->L;
    bool tau = (tp->flags & ELM_TAPE_GRAD_TAU) != 0;
    size_t per_step_rec = nb + 2 * L * H + 2 * nm; /* A, Hp, Ha, Z, M */
    size_t sizes[] = {
        0,                          /* rec: computed below */
        tp->ckpt ? tp->n_seg * Bz * (nS + nm) : 0, /* bound */
        Bz * nS, Bz * nm,           /* trace, mem */
        Sz * Bz * nS,               /* D */
        tau ? Sz * Bz * nS : 0,     /* R */
        Sz * Bz * (size_t)m->n_out, /* Yw */
        Sz * Bz * nm,               /* dM */
        Sz * Bz * (L * H + nm),     /* dH */
        Sz * Bz * nm,               /* U */
        Sz * Bz * nb,               /* dA */
        Bz * nm,                    /* u */
        Bz * nS, Bz * nS,           /* gc, Rc */
        Bz * nm, Bz * nm, Bz * nm,  /* dmc, m0, zero */
        2 * nm,                     /* acc */
        m->n_params,                /* gbuf */
        tp->ckpt ? T_max * Bz * (size_t)m->n_out : 0, /* ybuf */
        0,                          /* ev_ptr (size_t): computed below */
        2 * (((size_t)m->n_in + 1023) / 1024), /* blk (uint64) */
        2 * nS, 2 * nS, 2 * nm, 2 * nm, /* dproto, dkap, dkm, dcoef (double) */
    };
    enum { N = sizeof sizes / sizeof sizes[0] };
    tp->words = (m->n_in + 1023) / 1024;
    size_t ev_rows;
    if (!elm__mul_ok(steps, Bz, &sizes[0]) || !elm__mul_ok(sizes[0], per_step_rec, &sizes[0]) ||
        !elm__mul_ok(T_max, Bz, &ev_rows) ||
        !elm__mul_ok(ev_rows + 1, sizeof(size_t) / sizeof(float), &sizes[N - 6]))
        return elm__fail(ELM_E_NOMEM, "%s: tape size overflows", fn);
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t r = (sizes[i] + 15) / 16 * 16;
        if (r < sizes[i] || total + r < total)
            return elm__fail(ELM_E_NOMEM, "%s: tape size overflows", fn);
        total += r;
    }
    size_t bytes;
    void *block = NULL;
    if (!elm__mul_ok(total, sizeof(float), &bytes) ||
        !(block = aligned_alloc(64, bytes ? bytes : 64)))
        return elm__fail(ELM_E_NOMEM, "%s: cannot allocate %zu floats", fn, total);
    memset(block, 0, bytes);
    tp->block = block;
    tp->bytes = bytes;
    float *p = block;
    void *slots[N];
    for (int i = 0; i < N; i++) {
        slots[i] = sizes[i] ? p : NULL;
        p += (sizes[i] + 15) / 16 * 16;
    }
    float *rec = slots[0];
    tp->A = rec;
    rec += steps * Bz * nb;
    tp->Hp = rec;
    rec += steps * Bz * L * H;
    tp->Ha = rec;
    rec += steps * Bz * L * H;
    tp->Z = rec;
    rec += steps * Bz * nm;
    tp->M = rec;
    int i = 1;
    tp->bound = slots[i++];
    tp->trace = slots[i++];
    tp->mem = slots[i++];
    tp->D = slots[i++];
    tp->R = slots[i++];
    tp->Yw = slots[i++];
    tp->dM = slots[i++];
    tp->dH = slots[i++];
    tp->U = slots[i++];
    tp->dA = slots[i++];
    tp->u = slots[i++];
    tp->gc = slots[i++];
    tp->Rc = slots[i++];
    tp->dmc = slots[i++];
    tp->m0 = slots[i++];
    tp->zero = slots[i++];
    tp->acc = slots[i++];
    tp->gbuf = slots[i++];
    tp->ybuf = slots[i++];
    tp->ev_ptr = slots[i++];
    tp->blk = slots[i++];
    tp->dproto = slots[i++];
    tp->dkap = slots[i++];
    tp->dkm = slots[i++];
    tp->dcoef = slots[i++];
    return ELM_OK;
}

/* The block and the event lists; the tape keeps its shape. */
static void free_block(elm_tape *tp) {
    free(tp->ev_idx);
    free(tp->ev_val);
    free(tp->sc_idx);
    free(tp->sc_val);
    tp->sc_idx = NULL;
    tp->sc_val = NULL;
    tp->sc_cap = 0;
    free(tp->block);
    tp->ev_idx = NULL;
    tp->ev_val = NULL;
    tp->ev_cap = 0;
    tp->block = NULL;
    tp->bytes = 0;
}

/* A tape of B streams; S > 0 forces the segment length (thread groups use
 * their parent's, so that every group cuts the sequence the same way). */
static int tape_create(const elm_model *m, size_t B, size_t T_max, unsigned flags, int S,
                       const char *fn, elm_tape **out) {
    elm_tape *tp = calloc(1, sizeof *tp);
    if (!tp) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    tp->model = m;
    tp->layout_gen = m->layout_gen;
    tp->B = (int)B;
    tp->T_max = T_max;
    tp->flags = flags;
    tp->ckpt = (flags & ELM_TAPE_CHECKPOINT) != 0;
    tp->S = S > 0 ? S : segment_length(T_max, B);
    tp->n_seg = (T_max + (size_t)tp->S - 1) / (size_t)tp->S;
    tp->out0 = m->L > 0 ? m->H : m->n_m;
    tp->nu = m->n_b + m->n_m;
    tp->n_threads = 1;
    int rc = alloc_block(tp, fn);
    if (rc != ELM_OK) {
        free(tp);
        return rc;
    }
    *out = tp;
    return ELM_OK;
}

ELM_API int elm_tape_create(const elm_model *m, size_t B, size_t T_max, unsigned flags,
                            elm_tape **out) {
    if (!m || !out) return elm__fail(ELM_E_NULL, "elm_tape_create: NULL argument");
    if (B == 0 || B > (1u << 24))
        return elm__fail(ELM_E_INVALID, "elm_tape_create: batch size %zu outside [1, 2^24]", B);
    if (T_max == 0 || T_max > ((size_t)1 << 32))
        return elm__fail(ELM_E_INVALID, "elm_tape_create: T_max %zu outside [1, 2^32]", T_max);
    if (flags & ~(unsigned)(ELM_TAPE_CHECKPOINT | ELM_TAPE_GRAD_TAU))
        return elm__fail(ELM_E_INVALID, "elm_tape_create: unknown flags 0x%x", flags);
    return tape_create(m, B, T_max, flags, 0, "elm_tape_create", out);
}

/* Thread groups and their pool. */
static void free_groups(elm_tape **sub, int n, elm__pool *pool) {
    elm__pool_free(pool);
    if (!sub) return;
    for (int g = 0; g < n; g++) elm_tape_free(sub[g]);
    free(sub);
}

ELM_API void elm_tape_free(elm_tape *tp) {
    if (!tp) return;
    free_groups(tp->sub, tp->n_threads, tp->pool);
    free_block(tp);
    free(tp);
}

ELM_API int elm_tape_memory(const elm_tape *tp, size_t *bytes) {
    if (!tp || !bytes) return elm__fail(ELM_E_NULL, "elm_tape_memory: NULL argument");
    size_t n = tp->bytes + sizeof *tp +
               (tp->ev_cap + tp->sc_cap) * (sizeof(int32_t) + sizeof(float));
    for (int g = 0; tp->sub && g < tp->n_threads; g++) {
        size_t part = 0;
        elm_tape_memory(tp->sub[g], &part);
        n += part;
    }
    *bytes = n;
    return ELM_OK;
}

/* Grow an event list (idx, val) to hold at least `need` entries; the
 * capacity doubles, so a tape reallocates only while its inputs get
 * denser than any before. */
static int grow_events(int32_t **idx, float **val, size_t *cap, size_t need) {
    if (need <= *cap) return ELM_OK;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    int32_t *i2 = realloc(*idx, c * sizeof *i2);
    if (i2) *idx = i2;
    float *v2 = i2 ? realloc(*val, c * sizeof *v2) : NULL;
    if (!v2) return ELM_E_NOMEM;
    *val = v2;
    *cap = c;
    return ELM_OK;
}

/* Append the non-zero entries of one row of x (its blocks are in tp->blk
 * and in cache) to the scratch list at *at; the row's event count goes to
 * *count. */
static int collect_events(elm_tape *tp, const float *xr, size_t *at, size_t *count) {
    int n_in = tp->model->n_in;
    size_t start = *at;
    for (int wd = 0; wd < tp->words; wd++)
        for (uint64_t word = tp->blk[wd]; word; word &= word - 1) {
            int i0 = (wd * 64 + __builtin_ctzll(word)) * 16;
            int i1 = i0 + 16 < n_in ? i0 + 16 : n_in;
            if (grow_events(&tp->sc_idx, &tp->sc_val, &tp->sc_cap, *at + 16) != ELM_OK)
                return ELM_E_NOMEM;
            /* the block's non-zero lanes as bits: a compare the compiler can
             * vectorise, then one iteration per event (~1% density) */
            unsigned lanes = 0;
            if (i1 - i0 == 16)
                for (int q = 0; q < 16; q++) lanes |= (unsigned)(xr[i0 + q] != 0.0f) << q;
            else
                for (int q = 0; q < i1 - i0; q++) lanes |= (unsigned)(xr[i0 + q] != 0.0f) << q;
            for (; lanes; lanes &= lanes - 1) {
                int i = i0 + __builtin_ctz(lanes);
                tp->sc_idx[*at] = i;
                tp->sc_val[(*at)++] = xr[i];
            }
        }
    *count = *at - start;
    return ELM_OK;
}

/* Append the events of an event-input row (offsets a..b) to the scratch
 * list; values of 0 are kept (the dense path has no such entries, but
 * they add nothing). */
static int copy_events(elm_tape *tp, const elm_input *in, size_t row, size_t *at, size_t *count) {
    int64_t a = in->off[row], k = in->off[row + 1] - a;
    if (grow_events(&tp->sc_idx, &tp->sc_val, &tp->sc_cap, *at + (size_t)k) != ELM_OK)
        return ELM_E_NOMEM;
    memcpy(tp->sc_idx + *at, in->ch + a, (size_t)k * sizeof *tp->sc_idx);
    if (in->val)
        memcpy(tp->sc_val + *at, in->val + a, (size_t)k * sizeof *tp->sc_val);
    else
        for (int64_t q = 0; q < k; q++) tp->sc_val[*at + (size_t)q] = 1.0f;
    *at += (size_t)k;
    *count = (size_t)k;
    return ELM_OK;
}

/* The events of the segment's rows, collected stream by stream into the
 * scratch list (counts in ev_ptr[r + 1]), placed in time-major row order
 * r = t B + b, the order the backward reads them. */
static int place_events(elm_tape *tp, size_t t0, int n) {
    size_t B = (size_t)tp->B, r0 = t0 * B, r1 = (t0 + (size_t)n) * B;
    for (size_t r = r0; r < r1; r++) tp->ev_ptr[r + 1] += tp->ev_ptr[r];
    if (grow_events(&tp->ev_idx, &tp->ev_val, &tp->ev_cap, tp->ev_ptr[r1]) != ELM_OK)
        return ELM_E_NOMEM;
    size_t at = 0;
    for (size_t b = 0; b < B; b++)
        for (int t = 0; t < n; t++) {
            size_t r = (t0 + (size_t)t) * B + b, k = tp->ev_ptr[r + 1] - tp->ev_ptr[r];
            memcpy(tp->ev_idx + tp->ev_ptr[r], tp->sc_idx + at, k * sizeof *tp->ev_idx);
            memcpy(tp->ev_val + tp->ev_ptr[r], tp->sc_val + at, k * sizeof *tp->ev_val);
            at += k;
        }
    return ELM_OK;
}

int elm__tape_segment_forward(elm_tape *tp, const elm_input *in, size_t T, size_t t0, int n,
                              size_t r0, float *y, bool record_events) {
    const elm_model *m = tp->model;
    int B = tp->B, nt = m->n_trace, nb = m->n_b, nm = m->n_m, H = m->H, L = m->L;
    int out0 = tp->out0;
    size_t rows = (size_t)n * (size_t)B;
    float *A = elm__rec(tp->A, r0, B, nb);
    float *Z = elm__rec(tp->Z, r0, B, nm);
    float *M = elm__rec(tp->M, r0, B, nm);
    size_t hp_stride = (tp->ckpt ? (size_t)tp->S : tp->T_max) * (size_t)B * (size_t)H;
    /* collapsed traces are the branch input itself: scan straight into A */
    float *D = m->collapsed ? A : tp->D;

    /* 1. drive. x is read stream by stream: each stream's rows are
     * contiguous, which the hardware prefetcher follows; reading it
     * time-major jumped T n_in floats per row, and NeuronIO's 82 MB took
     * 12.6-15 ms instead of 7.6 ms. The failure reported is the first in
     * (t, b) order, as a time-major scan meets it: once one is found,
     * later streams are scanned only up to its step. */
    int lim = n, bad_b = -1, bad_i = -1;
    size_t at = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < lim; t++) {
            size_t tt = t0 + (size_t)t, *count = &tp->ev_ptr[tt * B + b + 1];
            float *d = D + ((size_t)t * B + b) * nt;
            int rc = ELM_OK;
            if (in->x) {
                /* dense: the scan also finds the blocks the events come from */
                const float *xr = in->x + ((size_t)b * T + tt) * (size_t)m->n_in;
                int bad = elm__drive_row(m, xr, d, tp->blk);
                if (bad >= 0) {
                    lim = t;
                    bad_b = b;
                    bad_i = bad;
                    break;
                }
                if (record_events) rc = collect_events(tp, xr, &at, count);
            } else {
                size_t row = in->tmajor ? tt * in->tmajor + (size_t)b : (size_t)b * T + tt;
                elm__input_drive(m, in, row, d);
                if (record_events) rc = copy_events(tp, in, row, &at, count);
            }
            if (rc != ELM_OK)
                return elm__fail(ELM_E_NOMEM, "elm_tape_forward: out of memory for the input "
                                              "events");
        }
    }
    if (bad_b >= 0) {
        const float *xr = in->x + ((size_t)bad_b * T + t0 + (size_t)lim) * (size_t)m->n_in;
        return elm__fail(ELM_E_NONFINITE, "elm_tape_forward: x[%d, %zu, %d] is %g",
                         tp->b_off + bad_b, t0 + (size_t)lim, bad_i, (double)xr[bad_i]);
    }
    if (record_events && place_events(tp, t0, n) != ELM_OK)
        return elm__fail(ELM_E_NOMEM, "elm_tape_forward: out of memory for the input events");
    /* 2. leaky scan and branch input */
    for (int t = 0; t < n; t++)
        for (int b = 0; b < B; b++) {
            float *cur = D + ((size_t)t * B + b) * nt;
            float *prev = tp->trace + (size_t)b * nt;
            for (int i = 0; i < nt; i++) prev[i] = cur[i] = m->kappa_trace[i] * prev[i] + cur[i];
            if (!m->collapsed) elm__branch_input(m, cur, A + ((size_t)t * B + b) * nb);
        }
    /* 3. layer 0, branch part, for the whole segment */
    const elm_layer *l0 = &m->layers[0];
    float *P0 = L > 0 ? elm__rec(tp->Hp, r0, B, H) : Z;
    elm__fill_rows(P0, l0->b, rows, out0);
    elm__sgemm(0, 0, rows, (size_t)out0, (size_t)nb, 1.0f, A, (size_t)nb, l0->wt, l0->ldw, 1.0f,
               P0, (size_t)out0);
    /* 4. recurrent steps; pre-activations and activations stay in the
     * record */
    for (int t = 0; t < n; t++) {
        for (int b = 0; b < B; b++)
            for (int i = 0; i < nm; i++)
                tp->u[(size_t)b * nm + i] = m->kappa_m[i] * tp->mem[(size_t)b * nm + i];
        float *h = P0 + (size_t)t * B * out0;
        elm__layer_product(B, l0, nb, nm, tp->u, (size_t)nm, h, (size_t)out0);
        for (int l = 1; l <= L; l++) {
            const elm_layer *ly = &m->layers[l];
            const float *pre = tp->Hp + (size_t)(l - 1) * hp_stride + (r0 + (size_t)t) * B * H;
            float *next = l == L ? Z + (size_t)t * B * nm
                                 : tp->Hp + (size_t)l * hp_stride + (r0 + (size_t)t) * B * H;
            float *act = tp->Ha + (size_t)(l - 1) * hp_stride + (r0 + (size_t)t) * B * H;
            memcpy(act, pre, (size_t)B * H * sizeof(float));
            elm__activate(m->act, act, (size_t)B * H);
            elm__fill_rows(next, ly->b, (size_t)B, ly->out);
            elm__layer_product(B, ly, 0, H, act, (size_t)H, next, (size_t)ly->out);
        }
        elm__memory_update(B, nm, tp->mem, m->kappa_m, m->mem_coef, Z + (size_t)t * B * nm);
        memcpy(M + (size_t)t * B * nm, tp->mem, (size_t)B * nm * sizeof(float));
    }
    if (y) {
        /* 5. readout for the segment */
        elm__fill_rows(tp->Yw, m->readout.b, rows, m->n_out);
        elm__sgemm(0, 0, rows, (size_t)m->n_out, (size_t)nm, 1.0f, M, (size_t)nm, m->readout.wt,
                   m->readout.ldw, 1.0f, tp->Yw, (size_t)m->n_out);
        for (int t = 0; t < n; t++)
            for (int b = 0; b < B; b++)
                memcpy(y + ((size_t)b * T + t0 + (size_t)t) * m->n_out,
                       tp->Yw + ((size_t)t * B + b) * m->n_out, (size_t)m->n_out * sizeof *y);
    }
    return ELM_OK;
}

static void save_boundary(elm_tape *tp, size_t seg) {
    const elm_model *m = tp->model;
    size_t per = (size_t)m->n_s + (size_t)m->n_m;
    float *dst = tp->bound + seg * (size_t)tp->B * per;
    memcpy(dst, tp->trace, (size_t)tp->B * m->n_trace * sizeof(float));
    memcpy(dst + (size_t)tp->B * m->n_s, tp->mem, (size_t)tp->B * m->n_m * sizeof(float));
}

/* Readout of the recorded memory into y (B, T, n_out), per segment
 * (default mode only: checkpointing writes y in its forward). */
static void readout(elm_tape *tp, size_t T, float *y) {
    const elm_model *m = tp->model;
    size_t S = (size_t)tp->S;
    for (size_t t0 = 0; t0 < T; t0 += S) {
        int n = T - t0 < S ? (int)(T - t0) : (int)S;
        size_t rows = (size_t)n * (size_t)tp->B;
        const float *M = elm__rec(tp->M, t0, tp->B, m->n_m);
        elm__fill_rows(tp->Yw, m->readout.b, rows, m->n_out);
        elm__sgemm(0, 0, rows, (size_t)m->n_out, (size_t)m->n_m, 1.0f, M, (size_t)m->n_m,
                   m->readout.wt, m->readout.ldw, 1.0f, tp->Yw, (size_t)m->n_out);
        for (int t = 0; t < n; t++)
            for (int b = 0; b < tp->B; b++)
                memcpy(y + ((size_t)b * T + t0 + (size_t)t) * m->n_out,
                       tp->Yw + ((size_t)t * tp->B + b) * m->n_out, (size_t)m->n_out * sizeof *y);
    }
}

/* The recording forward of one tape (or group), without the readout of
 * the default mode. Checkpointing writes its output to ybuf, which the
 * caller copies to y after success: a non-finite x then leaves y untouched
 * without a separate pass over x (the drive scan checks every element). */
static int record(elm_tape *tp, const elm_input *in, size_t T, float *y) {
    const elm_model *m = tp->model;
    memset(tp->trace, 0, (size_t)tp->B * m->n_s * sizeof(float));
    memset(tp->mem, 0, (size_t)tp->B * m->n_m * sizeof(float));
    tp->ev_ptr[0] = 0;
    size_t S = (size_t)tp->S;
    for (size_t seg = 0; seg * S < T; seg++) {
        size_t t0 = seg * S;
        int n = T - t0 < S ? (int)(T - t0) : (int)S;
        if (tp->ckpt) save_boundary(tp, seg);
        int rc = elm__tape_segment_forward(tp, in, T, t0, n, tp->ckpt ? 0 : t0,
                                           tp->ckpt && y ? tp->ybuf : NULL, true);
        if (rc != ELM_OK) return rc;
    }
    return ELM_OK;
}

/* Keep a group's failure and its message (set on the worker's thread). */
static void group_result(elm_tape *g, int rc) {
    g->run_rc = rc;
    if (rc != ELM_OK) snprintf(g->run_err, sizeof g->run_err, "%s", elm_last_error());
}

/* The first failing group's status, its message on the caller's thread. */
static int groups_status(const elm_tape *tp) {
    for (int g = 0; g < tp->n_threads; g++)
        if (tp->sub[g]->run_rc != ELM_OK)
            return elm__fail(tp->sub[g]->run_rc, "%s", tp->sub[g]->run_err);
    return ELM_OK;
}

static void group_record(void *ctx, int part, int n_parts) {
    (void)n_parts;
    elm_tape *tp = ctx, *g = tp->sub[part];
    const elm_model *m = tp->model;
    size_t T = tp->run_T;
    g->T = 0;
    /* the group's streams: dense rows from its first stream on; event
     * offsets index the whole batch's arrays, so only they move */
    elm_input in = tp->run_in;
    if (in.x) in.x += (size_t)g->b_off * T * m->n_in;
    else in.off += (size_t)g->b_off * T;
    int rc = record(g, &in, T, tp->run_y);
    if (rc == ELM_OK) g->T = T;
    group_result(g, rc);
}

static void group_readout(void *ctx, int part, int n_parts) {
    (void)n_parts;
    elm_tape *tp = ctx, *g = tp->sub[part];
    float *y = tp->run_y + (size_t)g->b_off * tp->run_T * tp->model->n_out;
    if (g->ckpt)
        memcpy(y, g->ybuf, (size_t)g->B * tp->run_T * tp->model->n_out * sizeof *y);
    else
        readout(g, tp->run_T, y);
}

/* The checks every forward shares: layout and T. */
static int forward_checks(const elm_tape *tp, size_t T, const char *fn) {
    const elm_model *m = tp->model;
    if (tp->layout_gen != m->layout_gen)
        return elm__fail(ELM_E_INVALID, "%s: the model's trace layout changed "
                                        "since this tape was created; create a new tape", fn);
    if (T == 0 || T > tp->T_max)
        return elm__fail(ELM_E_SHAPE, "%s: T = %zu outside [1, T_max = %zu]", fn, T, tp->T_max);
    return ELM_OK;
}

static int forward(elm_tape *tp, const elm_input *in, size_t T, float *y) {
    const elm_model *m = tp->model;
    tp->T = 0;
    if (tp->n_threads > 1) {
        tp->run_in = *in;
        tp->run_y = y;
        tp->run_T = T;
        elm__pool_run(tp->pool, group_record, tp);
        int rc = groups_status(tp);
        if (rc != ELM_OK) return rc;
        /* y is written only once every group succeeded */
        if (y) elm__pool_run(tp->pool, group_readout, tp);
    } else {
        int rc = record(tp, in, T, y);
        if (rc != ELM_OK) return rc;
        if (tp->ckpt && y)
            memcpy(y, tp->ybuf, (size_t)tp->B * T * m->n_out * sizeof *y);
        else if (y)
            readout(tp, T, y);
    }
    tp->T = T;
    return ELM_OK;
}

ELM_API int elm_tape_forward(elm_tape *tp, const float *x, size_t T, float *y) {
    if (!tp || !x) return elm__fail(ELM_E_NULL, "elm_tape_forward: NULL argument");
    int rc = forward_checks(tp, T, "elm_tape_forward");
    if (rc != ELM_OK) return rc;
    const elm_input in = {.x = x};
    return forward(tp, &in, T, y);
}

ELM_API int elm_tape_forward_events(elm_tape *tp, size_t T, const int64_t *offsets,
                                    const int32_t *channels, const float *values, float *y) {
    static const char fn[] = "elm_tape_forward_events";
    if (!tp) return elm__fail(ELM_E_NULL, "%s: tape is NULL", fn);
    int rc = forward_checks(tp, T, fn);
    if (rc != ELM_OK) return rc;
    /* T <= T_max and B are bounded at creation, so B T + 1 does not overflow */
    rc = elm__check_events(fn, tp->model, (size_t)tp->B * T, T, offsets, channels, values);
    if (rc != ELM_OK) return rc; /* checked first: the last forward's record stands */
    const elm_input in = {.off = offsets, .ch = channels, .val = values};
    return forward(tp, &in, T, y);
}

/* Replace the groups: n contiguous groups of B / n streams (the first
 * B % n one more), each a tape with the parent's segment length. On
 * failure nothing changed. */
ELM_API int elm_tape_set_threads(elm_tape *tp, int n) {
    if (!tp) return elm__fail(ELM_E_NULL, "elm_tape_set_threads: NULL argument");
    if (n < 1 || n > tp->B)
        return elm__fail(ELM_E_INVALID, "elm_tape_set_threads: %d threads outside [1, B = %d]", n,
                         tp->B);
    if (n == tp->n_threads) return ELM_OK;
    elm_tape **sub = NULL;
    elm__pool *pool = NULL;
    int rc = ELM_OK;
    if (n > 1) {
        sub = calloc((size_t)n, sizeof *sub);
        pool = sub ? elm__pool_create(n) : NULL;
        if (!pool) rc = elm__fail(ELM_E_NOMEM, "elm_tape_set_threads: cannot start %d threads", n);
        for (int g = 0, b0 = 0; rc == ELM_OK && g < n; g++) {
            int Bg = tp->B / n + (g < tp->B % n);
            rc = tape_create(tp->model, (size_t)Bg, tp->T_max, tp->flags, tp->S,
                             "elm_tape_set_threads", &sub[g]);
            if (rc == ELM_OK) {
                sub[g]->layout_gen = tp->layout_gen;
                sub[g]->b_off = b0;
            }
            b0 += Bg;
        }
    } else {
        rc = alloc_block(tp, "elm_tape_set_threads");
    }
    if (rc != ELM_OK) {
        free_groups(sub, n, pool);
        return rc;
    }
    free_groups(tp->sub, tp->n_threads, tp->pool);
    if (n > 1) free_block(tp);
    tp->sub = sub;
    tp->pool = pool;
    tp->n_threads = n;
    tp->T = 0; /* the record moved: a backward needs a new forward */
    return ELM_OK;
}
