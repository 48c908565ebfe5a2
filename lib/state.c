/* The streaming state of B streams: the single step, and the sequence
 * forward with the input side hoisted out of the time loop.
 *
 * Per step (model.md §3), with the trace t meaning the per-branch trace
 * (v2, or v1 when synapses share a time constant per branch) or the
 * per-synapse trace (v1 otherwise):
 *   d    = x W_in                     sparse gather over non-zero inputs
 *   t    = kappa_trace * t + d
 *   c    = t, or branch sums of t     (B, n_b)
 *   z    = MLP([c, kappa_m * m])      layer 0 split: c part + m part
 *   m    = kappa_m * m + coef * g(z)
 *   y    = m W_y^T + b_y
 * The sequence forward runs d, t and the c part of layer 0 for a whole
 * chunk of steps first (one large product), then the recurrent rest.
 * Every operation is independent per stream: with elm_state_set_threads(n)
 * the streams form n contiguous groups, each running the whole step or
 * forward over its rows on one thread of the state's pool (group_view). */
#include "elm_internal.h"
#include "pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Chunk length is chosen so that the hoisted layer-0 block stays ~1 MiB. */
#define ELM_CHUNK_FLOATS (1u << 18)

/* Steps between recomputations of the branch sums a one-stream state
 * carries (step_one): each carried step rounds once more, and a decay
 * close to 1 forgets those roundings slowly. One full layer 0 per 64
 * steps costs ~0.002 us per step on NeuronIO. */
#define ELM_Q_REFRESH 64

/* One group of streams [b0, b0 + B): row slices of the state arrays, and
 * its own slices of the workspaces. A workspace of the state holding
 * (rows, w) floats per stream is cut into consecutive pieces of (rows, Bg,
 * w): the groups' pieces add up to the state's size, so the chunk buffers
 * of a group stay time-major over its own streams and no allocation is
 * needed. With one group the view is the whole state. */
typedef struct group {
    int b0, B;
    float *trace, *mem, *syn, *d, *u, *h0, *h1, *D, *C, *P, *M, *Y, *snap;
    /* the first non-finite input found, as (t, b, i) in the whole batch */
    int bad;
    size_t bad_t;
    int bad_b, bad_i;
} group;

struct elm_state {
    const elm_model *model;
    uint64_t layout_gen;
    int B, Tc;
    int out0;      /* width of MLP layer 0: H, or n_m when L = 0 */
    int wide;      /* max(H, n_m): width of the hidden scratch */
    float *trace;  /* (B, n_trace) */
    float *mem;    /* (B, n_m) */
    float *syn;    /* (B, n_s) v1 collapsed only: per-synapse traces kept
                      while recording them; valid iff syn_valid */
    bool syn_valid;
    /* workspaces */
    float *d;      /* (B, n_trace) step drive */
    float *u;      /* (B, n_b + n_m) step MLP input */
    float *h0, *h1;/* (B, wide) */
    float *D;      /* (Tc, B, n_trace) chunk drive, then traces */
    float *C;      /* (Tc, B, n_b) chunk branch input (aliases D if collapsed) */
    float *P;      /* (Tc, B, out0) chunk layer-0 pre-activations */
    float *M;      /* (Tc, B, n_m) chunk memory */
    float *Y;      /* (Tc, B, n_out) chunk outputs */
    float *snap;   /* (B, n_trace + n_m) rollback copy */
    float *snap_syn; /* (B, n_s) rollback copy of syn (v1 only) */
    /* B = 1 on one thread: layer 0's branch part W_b c carried between
     * steps (step_one); valid while q_valid, refreshed every
     * ELM_Q_REFRESH steps */
    float *q;      /* (out0) */
    float *qdv;    /* (n_b) drive values of the driven branches */
    int32_t *qrows;/* (n_b) their indices */
    bool q_valid;
    int q_age;
    uint64_t q_gen;
    void *block;   /* one allocation holding all of the above */
    int n_threads; /* groups of streams, each run by one thread */
    struct group *groups; /* (n_threads) */
    elm__pool *pool;      /* n_threads - 1 workers; NULL for one thread */
};

/* Below ELM_SMALL_BATCH streams a per-step product is too small for BLIS to
 * pay off; the register-blocked small kernel is used instead. */
void elm__layer_product(int B, const elm_layer *l, int row0, int in, const float *x, size_t ldx,
                        float *y, size_t ldy) {
    if (B == 1)
        elm__matmul_small(B, in, l->out, x, ldx, l->panels, l->in, row0, y, ldy, 1);
    else if (B < ELM_SMALL_BATCH)
        elm__matmul_rows(B, in, l->out, x, ldx, l->panels, l->in, row0, y, ldy);
    else
        elm__sgemm(0, 0, (size_t)B, (size_t)l->out, (size_t)in, 1.0f, x, ldx,
                   l->wt + (size_t)row0 * l->ldw, l->ldw, 1.0f, y, ldy);
}

void elm__fill_rows(float *y, const float *bias, size_t rows, int n) {
    for (size_t r = 0; r < rows; r++) memcpy(y + r * (size_t)n, bias, (size_t)n * sizeof *y);
}

ELM_API int elm_state_create(const elm_model *m, size_t B, elm_state **out) {
    if (!m || !out) return elm__fail(ELM_E_NULL, "elm_state_create: NULL argument");
    if (B == 0 || B > (1u << 24))
        return elm__fail(ELM_E_INVALID, "elm_state_create: batch size %zu outside [1, 2^24]", B);
    elm_state *s = calloc(1, sizeof *s);
    if (!s) return elm__fail(ELM_E_NOMEM, "elm_state_create: out of memory");
    s->model = m;
    s->layout_gen = m->layout_gen;
    s->B = (int)B;
    s->out0 = m->L > 0 ? m->H : m->n_m;
    s->wide = m->H > m->n_m ? m->H : m->n_m;
    /* D holds n_trace floats per row: a state refuses to run once the
     * model's trace layout changed (check_layout), so the width at creation
     * is the only one D ever holds. Sizing by n_s instead would cut the
     * chunk of a collapsed model with many synapses to 8 steps. */
    size_t per_step = (size_t)B * (size_t)(s->out0 > m->n_trace ? s->out0 : m->n_trace);
    size_t tc = ELM_CHUNK_FLOATS / (per_step ? per_step : 1);
    s->Tc = tc < 8 ? 8 : tc > 512 ? 512 : (int)tc;

    /* Sizes in floats, each rounded up to 16 floats (64 bytes). All state
     * arrays use n_s for the trace so that a v1 model switching between
     * per-branch and per-synapse traces never overflows them. */
    size_t Bz = B, Tz = (size_t)s->Tc, nS = (size_t)m->n_s, nb = (size_t)m->n_b,
           nm = (size_t)m->n_m;
    size_t sizes[] = {
        Bz * nS,                   /* trace */
        Bz * nm,                   /* mem */
        m->version == ELM_V1 ? Bz * nS : 0, /* syn */
        Bz * nS,                   /* d */
        Bz * (nb + nm),            /* u */
        Bz * (size_t)s->wide,      /* h0 */
        Bz * (size_t)s->wide,      /* h1 */
        Tz * Bz * (size_t)m->n_trace, /* D */
        Tz * Bz * nb,              /* C */
        Tz * Bz * (size_t)s->out0, /* P */
        Tz * Bz * nm,              /* M */
        Tz * Bz * (size_t)m->n_out,/* Y */
        Bz * (nS + nm),            /* snap */
        m->version == ELM_V1 ? Bz * nS : 0, /* snap_syn */
        B == 1 ? (size_t)s->out0 : 0, /* q */
        B == 1 ? nb : 0,           /* qdv */
        B == 1 ? nb : 0,           /* qrows */
    };
    enum { N = sizeof sizes / sizeof sizes[0] };
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t r = (sizes[i] + 15) / 16 * 16;
        if (r < sizes[i] || total + r < total) {
            free(s);
            return elm__fail(ELM_E_NOMEM, "elm_state_create: size overflow");
        }
        total += r;
    }
    size_t bytes;
    if (!elm__mul_ok(total, sizeof(float), &bytes) ||
        !(s->block = aligned_alloc(64, bytes ? bytes : 64))) {
        free(s);
        return elm__fail(ELM_E_NOMEM, "elm_state_create: cannot allocate %zu floats", total);
    }
    float *p = s->block;
    float *qrows;
    float **slots[] = {&s->trace, &s->mem, &s->syn, &s->d, &s->u, &s->h0, &s->h1,
                       &s->D, &s->C, &s->P, &s->M, &s->Y, &s->snap, &s->snap_syn,
                       &s->q, &s->qdv, &qrows};
    for (int i = 0; i < N; i++) {
        *slots[i] = sizes[i] ? p : NULL;
        p += (sizes[i] + 15) / 16 * 16;
    }
    s->qrows = (int32_t *)qrows; /* int32 and float have the same size */
    s->n_threads = 1;
    if (!(s->groups = calloc(1, sizeof *s->groups))) {
        free(s->block);
        free(s);
        return elm__fail(ELM_E_NOMEM, "elm_state_create: out of memory");
    }
    elm_state_reset(s, ELM_ALL_STREAMS);
    *out = s;
    return ELM_OK;
}

ELM_API void elm_state_free(elm_state *s) {
    if (!s) return;
    elm__pool_free(s->pool);
    free(s->groups);
    free(s->block);
    free(s);
}

ELM_API size_t elm_state_batch(const elm_state *s) { return s ? (size_t)s->B : 0; }

static int check_layout(const elm_state *s, const char *fn) {
    if (s->layout_gen != s->model->layout_gen)
        return elm__fail(ELM_E_INVALID,
                         "%s: the model's trace layout changed (tau_s made %s per branch) since "
                         "this state was created; create a new state",
                         fn, s->model->collapsed ? "uniform" : "non-uniform");
    return ELM_OK;
}

/* Every call that reads, writes or reruns the recurrent state outside
 * step_one makes its next step recompute layer 0's branch part from the
 * traces: a run continued from elm_state_get's copy (through
 * elm_state_set, in this state or another) then repeats the original run
 * bit for bit, since both recompute at the same step. get is const to
 * the caller; the carried sum is a cache inside the state. */
static void q_restart(const elm_state *s) { ((elm_state *)s)->q_valid = false; }

ELM_API int elm_state_reset(elm_state *s, int64_t stream) {
    if (!s) return elm__fail(ELM_E_NULL, "elm_state_reset: state is NULL");
    const elm_model *m = s->model;
    int lo = 0, hi = s->B;
    if (stream != ELM_ALL_STREAMS) {
        if (stream < 0 || stream >= s->B)
            return elm__fail(ELM_E_INVALID, "elm_state_reset: stream %lld outside [0, %d)",
                             (long long)stream, s->B);
        lo = (int)stream;
        hi = lo + 1;
    }
    for (int b = lo; b < hi; b++) {
        memset(s->trace + (size_t)b * m->n_trace, 0, (size_t)m->n_trace * sizeof(float));
        memset(s->mem + (size_t)b * m->n_m, 0, (size_t)m->n_m * sizeof(float));
        if (s->syn) memset(s->syn + (size_t)b * m->n_s, 0, (size_t)m->n_s * sizeof(float));
    }
    if (stream == ELM_ALL_STREAMS) s->syn_valid = true;
    q_restart(s);
    return ELM_OK;
}

/* d (n_trace) = x (n_in) W_in. Returns the index of the first non-finite
 * input, or -1. Zeros are skipped: spike input costs only its events. */
int elm__drive_row(const elm_model *m, const float *x, float *d, uint64_t *blocks) {
    memset(d, 0, (size_t)m->n_trace * sizeof *d);
    return elm__drive_scan(x, m->n_in, &m->drive, d, blocks);
}

/* c (n_b) = branch input from a trace row. */
void elm__branch_input(const elm_model *m, const float *trace, float *c) {
    if (m->collapsed) {
        memcpy(c, trace, (size_t)m->n_b * sizeof *c);
        return;
    }
    for (int i = 0; i < m->n_b; i++) {
        float sum = 0.0f;
        for (int q = 0; q < m->k; q++) sum += trace[i * m->k + q];
        c[i] = sum;
    }
}

/* Per-synapse traces of a collapsed v1 model, kept only while recording. */
static void syn_update(const elm_model *m, float *syn, const float *x) {
    for (int j = 0; j < m->n_s; j++) {
        float w = fmaxf(m->w_s_proto[j], 0.0f) * (float)m->route_mask[j];
        syn[j] = m->kappa_trace[j / m->k] * syn[j] + w * x[m->route_idx[j]];
    }
}


int elm__input_drive(const elm_model *m, const elm_input *in, size_t r, float *d) {
    if (in->x) return elm__drive_row(m, in->x + r * (size_t)m->n_in, d, NULL);
    memset(d, 0, (size_t)m->n_trace * sizeof *d);
    int64_t a = in->off[r], b = in->off[r + 1];
    elm__drive_events(in->ch + a, in->val ? in->val + a : NULL, b - a, &m->drive, d);
    return -1;
}

static void group_view(const elm_state *s, int b0, int Bg, group *g) {
    const elm_model *m = s->model;
    size_t b = (size_t)b0, Tb = (size_t)s->Tc * b, nS = (size_t)m->n_s, nt = (size_t)m->n_trace,
           nm = (size_t)m->n_m, nb = (size_t)m->n_b;
    g->b0 = b0;
    g->B = Bg;
    g->trace = s->trace + b * nt;
    g->mem = s->mem + b * nm;
    g->syn = s->syn ? s->syn + b * nS : NULL;
    g->d = s->d + b * nS;
    g->u = s->u + b * (nb + nm);
    g->h0 = s->h0 + b * (size_t)s->wide;
    g->h1 = s->h1 + b * (size_t)s->wide;
    g->D = s->D + Tb * nt;
    g->C = s->C + Tb * nb;
    g->P = s->P + Tb * (size_t)s->out0;
    g->M = s->M + Tb * nm;
    g->Y = s->Y + Tb * (size_t)m->n_out;
    g->snap = s->snap + b * (nt + nm);
    g->bad = 0;
}

/* The per-step products of the state: y (B, l->out) += x (B, in) @ rows
 * [row0, row0 + in) of the layer's weight, from the panels packed in
 * prepare. For several streams the register-blocked kernel reads each
 * panel once per 6 streams; unlike BLIS it packs nothing per call, which
 * on these shapes (B x 100..200 x 100..200) is most of BLIS's overhead. */
static void state_product(int B, const elm_layer *l, int row0, int in, const float *x, size_t ldx,
                          float *y, size_t ldy) {
    if (B == 1)
        elm__matmul_small(B, in, l->out, x, ldx, l->panels, l->in, row0, y, ldy, 1);
    else
        elm__matmul_rows(B, in, l->out, x, ldx, l->panels, l->in, row0, y, ldy);
}

/* Layers 1..L of one stream from layer 0's output h; hidden layer i
 * writes bufs[(i - 1) % 2], never the buffer it reads. */
static void mlp_rest(const elm_model *m, const float *h, float *const bufs[2], float *mem) {
    int act = m->act == ELM_SILU ? ELM_EPI_SILU : ELM_EPI_RELU;
    const float *cur = h;
    for (int i = 1; i <= m->L; i++) {
        const elm_layer *l = &m->layers[i];
        float *next = bufs[(i - 1) % 2];
        elm__matvec_fused(l->in, l->out, cur, l->panels, l->in, 0, l->b, next,
                          i == m->L ? ELM_EPI_MEMORY : act, m->kappa_m, m->mem_coef, mem);
        cur = next;
    }
}

/* The MLP and memory update of one stream: u (n_b + n_m) holds the branch
 * input (unless branch_done: h then holds layer 0's bias plus the branch
 * part) and kappa_m * m. Each product starts from its bias (or from h) and
 * applies the activation, or at the last layer the memory update, per
 * panel (elm__matvec_fused): no separate passes over h. Hidden layer i
 * writes bufs[(i - 1) % 2], never the buffer it reads. */
static void mlp_one(const elm_model *m, const float *u, bool branch_done, float *h,
                    float *const bufs[2], float *mem) {
    const elm_layer *l0 = &m->layers[0];
    int act = m->act == ELM_SILU ? ELM_EPI_SILU : ELM_EPI_RELU;
    int epi0 = m->L > 0 ? act : ELM_EPI_MEMORY;
    if (branch_done)
        elm__matvec_fused(m->n_m, l0->out, u + m->n_b, l0->panels, l0->in, m->n_b, h, h, epi0,
                          m->kappa_m, m->mem_coef, mem);
    else
        elm__matvec_fused(m->n_b + m->n_m, l0->out, u, l0->panels, l0->in, 0, l0->b, h, epi0,
                          m->kappa_m, m->mem_coef, mem);
    mlp_rest(m, h, bufs, mem);
}

/* y (n_out) = W_y m + b_y for one stream. */
static void readout_one(const elm_model *m, const float *mem, float *y) {
    const elm_layer *r = &m->readout;
    elm__matvec_fused(m->n_m, m->n_out, mem, r->panels, r->in, 0, r->b, y, ELM_EPI_NONE, NULL,
                      NULL, NULL);
}

/* The recurrent part of one step for the group's streams. With
 * `branch_done` h (B, out0) holds the layer-0 bias plus the branch part
 * (sequence path) and g->u's branch columns are not read; without it h
 * holds the bias when B > 1 and is not read when B = 1 (layer 0 then
 * starts from the bias itself). u's memory columns get kappa_m * m, then
 * the MLP runs and mem is updated. */
static void recurrent_step(const elm_state *s, group *g, float *h, bool branch_done) {
    const elm_model *m = s->model;
    int B = g->B, nu = m->n_b + m->n_m;
    for (int b = 0; b < B; b++) {
        float *u = g->u + (size_t)b * nu + m->n_b;
        const float *mb = g->mem + (size_t)b * m->n_m;
        for (int i = 0; i < m->n_m; i++) u[i] = m->kappa_m[i] * mb[i];
    }
    const elm_layer *l0 = &m->layers[0];
    if (B == 1) {
        float *bufs[2] = {h == g->h0 ? g->h1 : g->h0, h == g->h0 ? g->h0 : g->h1};
        mlp_one(m, g->u, branch_done, h, bufs, g->mem);
        return;
    }
    if (branch_done)
        state_product(B, l0, m->n_b, m->n_m, g->u + m->n_b, (size_t)nu, h, (size_t)l0->out);
    else
        state_product(B, l0, 0, nu, g->u, (size_t)nu, h, (size_t)l0->out);
    /* Hidden layers alternate between two scratch rows, never writing the
     * buffer they read. */
    float *bufs[2] = {h == g->h0 ? g->h1 : g->h0, h == g->h0 ? g->h0 : g->h1};
    float *cur = h;
    for (int i = 1; i <= m->L; i++) {
        const elm_layer *l = &m->layers[i];
        float *next = bufs[(i - 1) % 2];
        elm__activate(m->act, cur, (size_t)B * (size_t)l->in);
        elm__fill_rows(next, l->b, (size_t)B, l->out);
        state_product(B, l, 0, l->in, cur, (size_t)l->in, next, (size_t)l->out);
        cur = next;
    }
    elm__memory_update(B, m->n_m, g->mem, m->kappa_m, m->mem_coef, cur);
}

/* The drive of the group's streams for one step into g->d; false (and the
 * failure recorded) on a non-finite input. `in` is the whole batch's step. */
static bool step_drive(const elm_state *s, group *g, const elm_input *in) {
    const elm_model *m = s->model;
    for (int b = 0; b < g->B; b++) {
        int bad = elm__input_drive(m, in, (size_t)(g->b0 + b), g->d + (size_t)b * m->n_trace);
        if (bad >= 0) {
            g->bad = 1;
            g->bad_t = 0;
            g->bad_b = g->b0 + b;
            g->bad_i = bad;
            return false;
        }
    }
    return true;
}

/* The rest of a step once the drive is in g->d; y (g->B, n_out) holds the
 * group's outputs, or is NULL. */
static void step_rest(const elm_state *s, group *g, float *y) {
    const elm_model *m = s->model;
    int B = g->B, nt = m->n_trace;
    for (int b = 0; b < B; b++) {
        float *tr = g->trace + (size_t)b * nt;
        const float *d = g->d + (size_t)b * nt;
        for (int i = 0; i < nt; i++) tr[i] = m->kappa_trace[i] * tr[i] + d[i];
    }
    /* u's branch columns; recurrent_step adds the memory columns and runs
     * layer 0 over both in one pass. */
    int nu = m->n_b + m->n_m;
    for (int b = 0; b < B; b++) elm__branch_input(m, g->trace + (size_t)b * nt, g->u + (size_t)b * nu);
    if (B > 1) elm__fill_rows(g->h0, m->layers[0].b, (size_t)B, m->layers[0].out);
    recurrent_step(s, g, g->h0, false);
    if (y && B == 1) {
        readout_one(m, g->mem, y);
    } else if (y) {
        elm__fill_rows(y, m->readout.b, (size_t)B, m->n_out);
        state_product(B, &m->readout, 0, m->n_m, g->mem, (size_t)m->n_m, y, (size_t)m->n_out);
    }
}

/* Layer 0 of a one-stream state into h0, its branch part W_b c carried in
 * q. u holds this step's branch input c_t and kappa_m m, d its drive d_t.
 * With one decay kappa for every trace, W_b c_t = kappa W_b c_{t-1} +
 * W_b d_t: only the rows of the branches with d_t != 0 are read (about
 * half of NeuronIO's 45 at 1 % density). q is recomputed from c_t when it
 * is not valid (q_restart), every ELM_Q_REFRESH steps, and after the
 * model changed. The state is const to step_one's callers; q is its
 * cache. */
static void layer0_carried(const elm_state *s, const float *u, const float *d) {
    const elm_model *m = s->model;
    const elm_layer *l0 = &m->layers[0];
    elm_state *w = (elm_state *)s;
    int nb = m->n_b, nr = 0;
    int act = m->act == ELM_SILU ? ELM_EPI_SILU : ELM_EPI_RELU;
    int fresh = !s->q_valid || s->q_age >= ELM_Q_REFRESH || s->q_gen != m->prep_gen;
    if (fresh) {
        for (int j = 0; j < nb; j++) {
            s->qrows[j] = j;
            s->qdv[j] = u[j];
        }
        nr = nb;
        w->q_age = 0;
        w->q_gen = m->prep_gen;
    } else {
        /* branch-free: about half of the branches are driven, at random,
         * so a branch here would mispredict every other time */
        for (int j = 0; j < nb; j++) {
            s->qrows[nr] = j;
            s->qdv[nr] = d[j];
            nr += d[j] != 0.0f;
        }
    }
    elm__matvec_q(nb, m->n_m, l0->out, l0->panels, nr, s->qrows, s->qdv, m->kappa_trace[0], fresh,
                  s->q, u + nb, l0->b, s->h0, m->L > 0 ? act : ELM_EPI_MEMORY, m->kappa_m,
                  m->mem_coef, s->mem);
    w->q_valid = true;
    w->q_age++;
}

/* One step of a one-stream state on the calling thread (a simulator's
 * step): step_drive and step_rest for B = 1 without their loops over
 * streams, the trace leak writing the branch input in the same pass, and
 * layer 0's branch part carried between steps where the decays allow. */
static bool step_one(const elm_state *s, const elm_input *in, float *y) {
    const elm_model *m = s->model;
    int nb = m->n_b, nm = m->n_m, nt = m->n_trace;
    float *d = s->d, *tr = s->trace, *u = s->u, *mem = s->mem;
    int bad = elm__input_drive(m, in, 0, d);
    if (bad >= 0) {
        group *g = &s->groups[0];
        g->bad = 1;
        g->bad_t = 0;
        g->bad_b = 0;
        g->bad_i = bad;
        return false;
    }
    if (m->collapsed) {
        for (int i = 0; i < nt; i++) u[i] = tr[i] = m->kappa_trace[i] * tr[i] + d[i];
    } else {
        for (int i = 0; i < nt; i++) tr[i] = m->kappa_trace[i] * tr[i] + d[i];
        elm__branch_input(m, tr, u);
    }
    for (int i = 0; i < nm; i++) u[nb + i] = m->kappa_m[i] * mem[i];
    float *bufs[2] = {s->h1, s->h0};
    if (m->collapsed && m->kappa_uniform && s->q) {
        layer0_carried(s, u, d);
        mlp_rest(m, s->h0, bufs, mem);
    } else {
        mlp_one(m, u, false, s->h0, bufs, mem);
    }
    if (y) readout_one(m, mem, y);
    return true;
}

/* Work handed to the pool: one group per part. */
typedef struct job {
    elm_state *s;
    elm_input in;
    float *y, *syn, *branch, *mem;
    size_t T;
    bool forward; /* else one step */
} job;

static int forward_chunk(const elm_state *s, group *g, const elm_input *in, size_t T, size_t t0, int n,
                         float *y, float *syn_out, float *branch_out, float *mem_out);

static void group_bounds(int B, int n, int part, int *b0, int *Bg) {
    int q = B / n, r = B % n;
    *b0 = part * q + (part < r ? part : r);
    *Bg = q + (part < r);
}

static void run_part(void *ctx, int part, int n_parts) {
    job *j = ctx;
    elm_state *s = j->s;
    group *g = &s->groups[part];
    int b0, Bg;
    group_bounds(s->B, n_parts, part, &b0, &Bg);
    group_view(s, b0, Bg, g);
    const elm_model *m = s->model;
    if (!j->forward) {
        /* A group cannot see the others' inputs: it saves its own rows
         * first, and the caller restores them if another group failed. */
        if (!step_drive(s, g, &j->in)) return;
        size_t nt = (size_t)m->n_trace, nm = (size_t)m->n_m;
        for (int b = 0; b < Bg; b++) {
            memcpy(g->snap + (size_t)b * (nt + nm), g->trace + (size_t)b * nt, nt * sizeof(float));
            memcpy(g->snap + (size_t)b * (nt + nm) + nt, g->mem + (size_t)b * nm, nm * sizeof(float));
        }
        /* outputs go to the group's workspace; the caller copies them
         * once every group has passed its input check */
        step_rest(s, g, j->y ? g->Y : NULL);
        return;
    }
    for (size_t t0 = 0; t0 < j->T; t0 += (size_t)s->Tc) {
        int n = j->T - t0 < (size_t)s->Tc ? (int)(j->T - t0) : s->Tc;
        if (!forward_chunk(s, g, &j->in, j->T, t0, n, j->y, j->syn, j->branch, j->mem)) return;
    }
}

/* The group whose failure comes first in (t, b) order, as one thread
 * running the whole batch would meet it; NULL if none failed. */
static const group *first_failure(const elm_state *s) {
    const group *best = NULL;
    for (int i = 0; i < s->n_threads; i++) {
        const group *g = &s->groups[i];
        if (g->bad && (!best || g->bad_t < best->bad_t)) best = g;
    }
    return best;
}

/* One step of every stream from dense or checked event input; on a
 * non-finite dense input nothing changes and the group that met it first
 * is returned. */
static const group *state_step(elm_state *s, const elm_input *in, float *y) {
    const elm_model *m = s->model;
    const group *bad;
    if (s->n_threads == 1) {
        group *g = &s->groups[0];
        if (s->B == 1) {
            bad = step_one(s, in, y) ? NULL : g;
        } else {
            group_view(s, 0, s->B, g);
            bad = step_drive(s, g, in) ? NULL : g;
            if (!bad) step_rest(s, g, y);
        }
    } else {
        job j = {.s = s, .in = *in, .y = y, .forward = false};
        elm__pool_run(s->pool, run_part, &j);
        bad = first_failure(s);
        if (!bad && y)
            for (int i = 0; i < s->n_threads; i++) {
                const group *g = &s->groups[i];
                memcpy(y + (size_t)g->b0 * m->n_out, g->Y, (size_t)g->B * m->n_out * sizeof *y);
            }
        if (bad) {
            /* Put back the groups that went ahead; y is untouched. */
            size_t nt = (size_t)m->n_trace, nm = (size_t)m->n_m;
            for (int i = 0; i < s->n_threads; i++) {
                const group *g = &s->groups[i];
                if (g->bad) continue;
                for (int b = 0; b < g->B; b++) {
                    memcpy(g->trace + (size_t)b * nt, g->snap + (size_t)b * (nt + nm), nt * sizeof(float));
                    memcpy(g->mem + (size_t)b * nm, g->snap + (size_t)b * (nt + nm) + nt, nm * sizeof(float));
                }
            }
        }
    }
    if (!bad && m->collapsed && m->version == ELM_V1) s->syn_valid = false;
    return bad;
}

ELM_API int elm_state_step(elm_state *s, const float *x, float *y) {
    if (!s || !x) return elm__fail(ELM_E_NULL, "elm_state_step: NULL argument");
    int rc = check_layout(s, "elm_state_step");
    if (rc) return rc;
    const elm_model *m = s->model;
    const elm_input in = {.x = x};
    const group *bad = state_step(s, &in, y);
    if (bad)
        return elm__fail(ELM_E_NONFINITE, "elm_state_step: x[%d, %d] is %g", bad->bad_b,
                         bad->bad_i, (double)x[(size_t)bad->bad_b * m->n_in + bad->bad_i]);
    return ELM_OK;
}

/* Steps [t0, t0 + n) of the sequence x (B, T, n_in) for the group's
 * streams (x, y and the traced outputs are the whole batch's). false, with
 * the failure recorded, on a non-finite input. */
static int forward_chunk(const elm_state *s, group *g, const elm_input *in, size_t T, size_t t0, int n,
                         float *y, float *syn_out, float *branch_out, float *mem_out) {
    const elm_model *m = s->model;
    int B = g->B, nt = m->n_trace, nb = m->n_b, nm = m->n_m, out0 = s->out0;
    size_t rows = (size_t)n * (size_t)B;
    /* 1. drive for every (step, stream) into D, time-major. x is read
     * stream by stream: each stream's n rows are contiguous, which the
     * hardware prefetcher follows (reading across streams at one step
     * jumps T * n_in floats per row and runs at half the bandwidth). The
     * failure reported is the first in (t, b) order, as a time-major scan
     * meets it: once one is found, later streams are scanned only up to
     * its step. */
    int lim = n;
    for (int b = 0; b < B; b++) {
        size_t r0 = (size_t)(g->b0 + b) * T + t0;
        for (int t = 0; t < lim; t++) {
            int bad = elm__input_drive(m, in, r0 + (size_t)t, g->D + ((size_t)t * B + b) * nt);
            if (bad >= 0) {
                g->bad = 1;
                g->bad_t = t0 + (size_t)t;
                g->bad_b = g->b0 + b;
                g->bad_i = bad;
                lim = t;
                break;
            }
        }
    }
    if (g->bad) return 0;
    /* 2. leaky scan of the traces, and the branch input */
    for (int t = 0; t < n; t++)
        for (int b = 0; b < B; b++) {
            float *cur = g->D + ((size_t)t * B + b) * nt;
            float *prev = g->trace + (size_t)b * nt;
            for (int i = 0; i < nt; i++) prev[i] = cur[i] = m->kappa_trace[i] * prev[i] + cur[i];
            if (!m->collapsed) elm__branch_input(m, cur, g->C + ((size_t)t * B + b) * nb);
            if (syn_out) {
                size_t row = (size_t)(g->b0 + b) * T + t0 + (size_t)t;
                float *dst = syn_out + row * (size_t)m->n_s;
                if (m->collapsed) {
                    float *sy = g->syn + (size_t)b * m->n_s;
                    syn_update(m, sy, in->x + row * (size_t)m->n_in);
                    memcpy(dst, sy, (size_t)m->n_s * sizeof *dst);
                } else {
                    memcpy(dst, cur, (size_t)m->n_s * sizeof *dst);
                }
            }
        }
    const float *C = m->collapsed ? g->D : g->C;
    /* 3. layer 0, branch part, for the whole chunk in one product */
    const elm_layer *l0 = &m->layers[0];
    elm__fill_rows(g->P, l0->b, rows, out0);
    elm__sgemm(0, 0, rows, (size_t)out0, (size_t)nb, 1.0f, C, (size_t)nb, l0->wt, l0->ldw, 1.0f,
               g->P, (size_t)out0);
    /* 4. the recurrent part, step by step */
    for (int t = 0; t < n; t++) {
        recurrent_step(s, g, g->P + (size_t)t * B * out0, true);
        memcpy(g->M + (size_t)t * B * nm, g->mem, (size_t)B * nm * sizeof(float));
    }
    /* 5. readout for the whole chunk */
    elm__fill_rows(g->Y, m->readout.b, rows, m->n_out);
    elm__sgemm(0, 0, rows, (size_t)m->n_out, (size_t)nm, 1.0f, g->M, (size_t)nm, m->readout.wt,
               m->readout.ldw, 1.0f, g->Y, (size_t)m->n_out);
    for (int t = 0; t < n; t++)
        for (int b = 0; b < B; b++) {
            size_t dst = (size_t)(g->b0 + b) * T + t0 + (size_t)t, src = (size_t)t * B + b;
            if (y) memcpy(y + dst * m->n_out, g->Y + src * m->n_out, (size_t)m->n_out * sizeof *y);
            if (branch_out) memcpy(branch_out + dst * nb, C + src * nb, (size_t)nb * sizeof *y);
            if (mem_out) memcpy(mem_out + dst * nm, g->M + src * nm, (size_t)nm * sizeof *y);
        }
    return 1;
}

ELM_API int elm_state_forward_traced(elm_state *s, const float *x, size_t T, float *y,
                                     float *syn, float *branch, float *mem) {
    if (!s || !x) return elm__fail(ELM_E_NULL, "elm_state_forward: NULL argument");
    int rc = check_layout(s, "elm_state_forward");
    if (rc) return rc;
    const elm_model *m = s->model;
    if (T == 0) return ELM_OK;
    size_t total;
    if (!elm__mul_ok(T, (size_t)s->B, &total) || !elm__mul_ok(total, (size_t)m->n_in, &total))
        return elm__fail(ELM_E_INVALID, "elm_state_forward: B * T * n_in overflows");
    if (syn && m->version != ELM_V1)
        return elm__fail(ELM_E_UNSUPPORTED,
                         "elm_state_forward_traced: synaptic traces exist in v1 only (v2 "
                         "keeps branch traces: use `branch`)");
    if (syn && m->collapsed && !s->syn_valid)
        return elm__fail(ELM_E_UNSUPPORTED,
                         "elm_state_forward_traced: synaptic traces are tracked from a reset "
                         "on; this state was stepped without them. Call elm_state_reset first");
    size_t nstate = (size_t)m->n_trace + (size_t)m->n_m;
    for (int b = 0; b < s->B; b++) {
        memcpy(s->snap + (size_t)b * nstate, s->trace + (size_t)b * m->n_trace,
               (size_t)m->n_trace * sizeof(float));
        memcpy(s->snap + (size_t)b * nstate + m->n_trace, s->mem + (size_t)b * m->n_m,
               (size_t)m->n_m * sizeof(float));
    }
    q_restart(s);
    bool keep_syn = syn && m->collapsed;
    if (keep_syn) memcpy(s->snap_syn, s->syn, (size_t)s->B * m->n_s * sizeof(float));
    /* Each group runs every chunk over its streams; a group stops at its
     * first non-finite input, and then the whole state is put back. */
    job j = {.s = s, .in = {.x = x}, .y = y, .syn = syn, .branch = branch, .mem = mem, .T = T,
             .forward = true};
    if (s->n_threads == 1)
        run_part(&j, 0, 1);
    else
        elm__pool_run(s->pool, run_part, &j);
    const group *bad = first_failure(s);
    if (bad) {
        double v = (double)x[((size_t)bad->bad_b * T + bad->bad_t) * (size_t)m->n_in + bad->bad_i];
        rc = elm__fail(ELM_E_NONFINITE, "elm_state_forward: x[%d, %zu, %d] is %g", bad->bad_b,
                       bad->bad_t, bad->bad_i, v);
        elm_state_set(s, s->snap, (size_t)s->B * nstate);
        if (keep_syn) {
            memcpy(s->syn, s->snap_syn, (size_t)s->B * m->n_s * sizeof(float));
            s->syn_valid = true;
        }
        return rc;
    }
    if (m->version == ELM_V1 && m->collapsed && !syn) s->syn_valid = false;
    return ELM_OK;
}

ELM_API int elm_state_forward(elm_state *s, const float *x, size_t T, float *y) {
    return elm_state_forward_traced(s, x, T, y, NULL, NULL, NULL);
}

int elm__check_events(const char *fn, const elm_model *m, size_t rows, size_t T,
                      const int64_t *off, const int32_t *ch, const float *val) {
    if (!off) return elm__fail(ELM_E_NULL, "%s: offsets is NULL", fn);
    if (off[0] < 0) return elm__fail(ELM_E_INVALID, "%s: offsets[0] = %lld is negative", fn, (long long)off[0]);
    for (size_t r = 0; r < rows; r++)
        if (off[r + 1] < off[r])
            return elm__fail(ELM_E_INVALID,
                             "%s: offsets[%zu] = %lld < offsets[%zu] = %lld (stream %zu, step %zu): "
                             "offsets must not decrease",
                             fn, r + 1, (long long)off[r + 1], r, (long long)off[r], r / T, r % T);
    int64_t n = off[rows];
    if (n > off[0] && !ch)
        return elm__fail(ELM_E_NULL, "%s: %lld events but channels is NULL", fn, (long long)(n - off[0]));
    /* The row of an event is found by walking the offsets alongside. */
    size_t r = 0;
    for (int64_t e = off[0]; e < n; e++) {
        while (off[r + 1] <= e) r++;
        if (ch[e] < 0 || ch[e] >= m->n_in)
            return elm__fail(ELM_E_INVALID, "%s: event %lld (stream %zu, step %zu) has channel %d "
                             "outside [0, n_in = %d)", fn, (long long)e, r / T, r % T, ch[e], m->n_in);
        if (val && !isfinite(val[e]))
            return elm__fail(ELM_E_NONFINITE, "%s: event %lld (stream %zu, step %zu, channel %d) "
                             "has value %g", fn, (long long)e, r / T, r % T, ch[e], (double)val[e]);
    }
    return ELM_OK;
}

ELM_API int elm_state_step_events(elm_state *s, const int64_t *offsets, const int32_t *channels,
                                  const float *values, float *y) {
    static const char fn[] = "elm_state_step_events";
    if (!s) return elm__fail(ELM_E_NULL, "%s: state is NULL", fn);
    int rc = check_layout(s, fn);
    if (!rc) rc = elm__check_events(fn, s->model, (size_t)s->B, 1, offsets, channels, values);
    if (rc) return rc;
    const elm_input in = {.off = offsets, .ch = channels, .val = values};
    state_step(s, &in, y); /* events cannot fail once checked */
    return ELM_OK;
}

ELM_API int elm_state_forward_events(elm_state *s, size_t T, const int64_t *offsets,
                                     const int32_t *channels, const float *values, float *y) {
    static const char fn[] = "elm_state_forward_events";
    if (!s) return elm__fail(ELM_E_NULL, "%s: state is NULL", fn);
    int rc = check_layout(s, fn);
    if (rc) return rc;
    if (T == 0) return ELM_OK;
    size_t rows;
    if (!elm__mul_ok(T, (size_t)s->B, &rows) || rows == SIZE_MAX)
        return elm__fail(ELM_E_INVALID, "%s: B * T overflows", fn);
    if ((rc = elm__check_events(fn, s->model, rows, T, offsets, channels, values))) return rc;
    q_restart(s);
    job j = {.s = s, .in = {.off = offsets, .ch = channels, .val = values}, .y = y, .T = T,
             .forward = true};
    if (s->n_threads == 1)
        run_part(&j, 0, 1);
    else
        elm__pool_run(s->pool, run_part, &j);
    const elm_model *m = s->model;
    if (m->version == ELM_V1 && m->collapsed) s->syn_valid = false;
    return ELM_OK;
}

ELM_API int elm_state_get(const elm_state *s, float *dst, size_t n) {
    if (!s || !dst) return elm__fail(ELM_E_NULL, "elm_state_get: NULL argument");
    const elm_model *m = s->model;
    size_t per = (size_t)m->n_trace + (size_t)m->n_m;
    if (n != per * (size_t)s->B)
        return elm__fail(ELM_E_SHAPE, "elm_state_get: state holds %d x %zu floats, got n = %zu",
                         s->B, per, n);
    for (int b = 0; b < s->B; b++) {
        memcpy(dst + b * per, s->trace + (size_t)b * m->n_trace, (size_t)m->n_trace * sizeof *dst);
        memcpy(dst + b * per + m->n_trace, s->mem + (size_t)b * m->n_m, (size_t)m->n_m * sizeof *dst);
    }
    q_restart(s);
    return ELM_OK;
}

ELM_API int elm_state_set(elm_state *s, const float *src, size_t n) {
    if (!s || !src) return elm__fail(ELM_E_NULL, "elm_state_set: NULL argument");
    int rc = check_layout(s, "elm_state_set");
    if (rc) return rc;
    const elm_model *m = s->model;
    size_t per = (size_t)m->n_trace + (size_t)m->n_m;
    if (n != per * (size_t)s->B)
        return elm__fail(ELM_E_SHAPE, "elm_state_set: state holds %d x %zu floats, got n = %zu",
                         s->B, per, n);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(src[i]))
            return elm__fail(ELM_E_NONFINITE, "elm_state_set: src[%zu] is %g", i, (double)src[i]);
    for (int b = 0; b < s->B; b++) {
        memcpy(s->trace + (size_t)b * m->n_trace, src + b * per, (size_t)m->n_trace * sizeof *src);
        memcpy(s->mem + (size_t)b * m->n_m, src + b * per + m->n_trace, (size_t)m->n_m * sizeof *src);
    }
    if (m->version == ELM_V1 && m->collapsed) s->syn_valid = false;
    q_restart(s);
    return ELM_OK;
}

ELM_API int elm_model_forward(const elm_model *m, const float *x, size_t B, size_t T, float *y) {
    if (!m || !x || !y) return elm__fail(ELM_E_NULL, "elm_model_forward: NULL argument");
    elm_state *s;
    int rc = elm_state_create(m, B, &s);
    if (rc) return rc;
    rc = elm_state_forward(s, x, T, y);
    elm_state_free(s);
    return rc;
}

/* Groups and workers are set up here, never in a step: the pool's
 * threads wait between calls, and group views are recomputed per call from
 * the state's arrays (a few pointers). */
ELM_API int elm_state_set_threads(elm_state *s, int n) {
    if (!s) return elm__fail(ELM_E_NULL, "elm_state_set_threads: NULL argument");
    if (n < 1 || n > s->B)
        return elm__fail(ELM_E_INVALID, "elm_state_set_threads: n = %d outside [1, B = %d]", n, s->B);
    if (n == s->n_threads) return ELM_OK;
    elm__pool *pool = NULL;
    group *groups = calloc((size_t)n, sizeof *groups);
    if (!groups || (n > 1 && !(pool = elm__pool_create(n)))) {
        free(groups);
        return elm__fail(ELM_E_NOMEM, "elm_state_set_threads: cannot start %d threads", n);
    }
    elm__pool_free(s->pool);
    free(s->groups);
    s->pool = pool;
    s->groups = groups;
    s->n_threads = n;
    return ELM_OK;
}
