/* The training tape, shared by tape.c (recording forward) and backward.c.
 *
 * The sequence is cut into segments of S steps. Every segment runs the same
 * way in both modes: drive and scan of the traces, one product for the
 * branch part of layer 0, the recurrent steps, and in the backward one
 * product per weight gradient. The default mode records all T steps; the
 * checkpointing mode records one segment at a time and keeps the recurrent
 * state at every segment start, re-running a segment's forward just before
 * its backward. Identical segment work makes the two modes bit-identical.
 *
 * Record arrays are time-major, (steps, B, width), where steps is T_max
 * (default) or S (checkpointing). */
#ifndef ELM_TAPE_H
#define ELM_TAPE_H

#include "elm_internal.h"
#include "pool.h"

struct elm_tape {
    const elm_model *model;
    uint64_t layout_gen;
    int B;
    size_t T_max;
    size_t T;       /* steps of the last successful forward; 0 = none */
    unsigned flags;
    bool ckpt;
    int S;          /* segment length */
    size_t n_seg;   /* segments in T_max */
    int out0;       /* width of layer 0: H, or n_m when L = 0 */
    int nu;         /* n_b + n_m */

    /* record (steps, B, .) */
    float *A;       /* branch input: c_t (v1) or b_t (v2), n_b */
    float *Hp;      /* L hidden pre-activations, each (steps, B, H) */
    float *Ha;      /* their activations, each (steps, B, H): the operands
                       of the hidden weight gradients, kept rather than
                       recomputed in the backward */
    float *Z;       /* MLP output z_t, n_m */
    float *M;       /* memory m_t, n_m */
    float *bound;   /* checkpointing: (n_seg, B, n_s + n_m) trace and memory
                       before each segment */

    /* running state of the forward */
    float *trace;   /* (B, n_s) */
    float *mem;     /* (B, n_m) */

    /* segment workspaces (S, B, .) and per-step scratch */
    float *D;       /* drive of per-synapse traces; in the backward, G */
    float *R;       /* GRAD_TAU: reverse-filtered G */
    float *Yw;      /* (S, B, n_out) outputs, then dy */
    float *dM;      /* (S, B, n_m) */
    float *dH;      /* L + 1 arrays: dH_0 .. dH_{L-1} (H wide), dZ (n_m) */
    float *U;       /* (S, B, n_m) operand of layer 0's memory columns */
    float *dA;      /* (S, B, n_b) */
    float *u;       /* (B, n_m) */
    float *gc, *Rc; /* (B, n_s) trace-gradient carries */
    float *dmc;     /* (B, n_m) memory-gradient carry */
    float *m0;      /* (B, n_m) memory before the segment */
    float *zero;    /* (B, n_m) zeros */
    float *acc;     /* (2, n_m) per-segment sums: coef, kappa_m */
    float *gbuf;    /* (n_params) gradient of one backward, added at the end */
    float *ybuf;    /* checkpointing: (B, T, n_out) output of the forward, copied
                     * to y only once all of x proved finite (the drive scan
                     * finds a non-finite input segment by segment) */
    /* Non-zero inputs of the last forward, row (t, b) time-major: entries
     * ev_ptr[r] .. ev_ptr[r + 1] of ev_idx / ev_val. The backward reads
     * these instead of x, sequentially. Grown (never shrunk) by a forward
     * with more non-zero inputs than any before. */
    size_t *ev_ptr; /* (T_max B + 1) */
    int32_t *ev_idx;
    float *ev_val;
    size_t ev_cap;
    /* scratch: one segment's events in the order x is read (stream by
     * stream), before they are placed time-major */
    int32_t *sc_idx;
    float *sc_val;
    size_t sc_cap;
    uint64_t *blk;  /* (words) scratch: non-zero 16-blocks of one row */
    int words;      /* ceil(n_in / 1024) */
    double *dproto; /* (n_s) */
    double *dkap;   /* (n_s) */
    double *dkm;    /* (n_m) */
    double *dcoef;  /* (n_m) */

    void *block;
    size_t bytes;

    /* Threads (elm_tape_set_threads). With n_threads > 1 the tape is a
     * shell: its block is freed, and sub[g] is a whole tape for the
     * contiguous streams [b_off, b_off + its B) with the parent's segment
     * length and its own gradient buffer; the pool runs one group per
     * part. The group gradients are added in group order. */
    int n_threads;
    int b_off;          /* first stream of this group in its parent */
    elm_tape **sub;     /* (n_threads) when n_threads > 1 */
    elm__pool *pool;
    /* one pool run's arguments (parent) and result (group) */
    elm_input run_in;   /* the forward's input, the whole batch's */
    const float *run_dy;
    float *run_y, *run_dx;
    size_t run_T;
    int run_rc;
    char run_err[256];
};

/* kernels/bwd.c: elm__memory_backward (same contract), vectorised. */
void elm__tape_memory_backward(int B, int n, const float *gm, const float *z, const float *mprev,
                               const float *kappa, const float *coef, float *dz, float *carry,
                               float *acc_coef, float *acc_kappa);

/* Forward of steps [t0, t0 + n) recording at record step r0; y (B, T,
 * n_out) gets the outputs unless NULL; record_events appends the input
 * events of these rows (rows must come in order). */
int elm__tape_segment_forward(elm_tape *tp, const elm_input *in, size_t T, size_t t0, int n,
                              size_t r0, float *y, bool record_events);
/* Record pointers at record step r: (B, width) rows. */
static inline float *elm__rec(float *base, size_t r, int B, int width) {
    return base + r * (size_t)B * (size_t)width;
}

#endif
