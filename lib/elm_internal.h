/* Internal types and helpers shared by lib/ files only. */
#ifndef ELM_INTERNAL_H
#define ELM_INTERNAL_H

#include "elm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ELM_PARAM_LAST ELM_DT

struct elm_config {
    double v[ELM_PARAM_LAST + 1]; /* indexed by elm_param */
};

/* error.c: set the calling thread's last error and return `status`. */
int elm__fail(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void elm__clear_error(void);

/* rng.c: the library's own generator (xoshiro256** seeded by splitmix64),
 * identical on every platform. */
typedef struct elm_rng {
    uint64_t s[4];
} elm_rng;
void elm__rng_seed(elm_rng *r, uint64_t seed);
uint64_t elm__rng_next(elm_rng *r);
float elm__rng_uniform(elm_rng *r, float lo, float hi); /* [lo, hi) */
uint64_t elm__rng_below(elm_rng *r, uint64_t n);        /* [0, n) */

/* A named parameter tensor: a view into the model's buffer. */
typedef struct elm_tensor {
    char name[32];  /* libelm name */
    char alias[40]; /* official state-dict name */
    size_t offset;  /* floats from the start of the buffer */
    size_t numel;
    int ndim;
    int64_t shape[ELM_MAX_DIMS];
    bool trainable;
    bool allow_inf; /* tau_m_proto: +-Inf is the sigmoid's exact limit */
} elm_tensor;

/* A dense layer prepared for the forward: y (B, out) = x (B, in) @ wt + b. */
typedef struct elm_layer {
    int in, out;
    size_t ldw;     /* row stride of wt (= out) */
    float *wt;      /* (in, ldw): the transposed (out, in) weight, for GEMM */
    float *panels;  /* the weight packed for elm__matmul_small */
    float *bpanels; /* backward: W^T packed likewise (layer 0: memory rows) */
    const float *b; /* (out) */
} elm_layer;

/* One input's drive as a window: it adds w[q] x to trace first + q for
 * the q in [0, n) whose bits are set in `lanes` (bit t: trace t, so
 * lanes = (2^n - 1) << first; 0 for an input that feeds nothing). With at
 * most 64 traces the drive then fits in four 16-float registers (see
 * kernels/drive.c). 32 bytes: one load per input. */
typedef struct elm_drive_win {
    float w[4];
    uint64_t lanes;
    int32_t first, unused[3];
} elm_drive_win;

/* The input -> trace drive as the drive kernels take it: the model's CSR
 * (drive_ptr, drive_tgt, drive_w) and its windows, or NULL. */
typedef struct elm_drive {
    const int32_t *ptr, *tgt;
    const float *w;
    const elm_drive_win *win;
    int n_trace;
} elm_drive;

struct elm_model {
    elm_config cfg; /* resolved: derived sizes filled in */
    int version;    /* ELM_V1 | ELM_V2 */
    int act;        /* ELM_RELU | ELM_SILU */
    int n_in, n_out, n_m, n_b, k, n_s, H, L;
    float lambda, dt, tau_min, tau_max;

    float *params; /* (n_params) one contiguous buffer */
    size_t n_params;
    elm_tensor *tensors;
    size_t n_tensors;
    size_t n_trainable;

    /* Views into params. */
    float *w_s_proto;   /* (n_s) */
    float *tau_syn;     /* (n_s) tau_s in v1, (n_b) tau_b in v2, ms */
    float *tau_m_proto; /* (n_m) */

    int64_t *route_idx; /* (n_s) input read by synapse j */
    uint8_t *route_mask;/* (n_s) 0 | 1 */

    /* Derived data, rebuilt by elm__model_prepare() after any change. */
    bool collapsed;     /* traces kept per branch (v2, or v1 with one tau
                           per branch); else per synapse (v1) */
    int n_trace;        /* n_b if collapsed else n_s */
    float *kappa_trace; /* (n_trace) */
    float *kappa_m;     /* (n_m) */
    float *mem_coef;    /* (n_m) lambda (1 - kappa_m) v1; 1 - kappa_lambda v2 */
    /* Input -> trace drive as a sparse (n_in, n_trace) matrix in CSR form:
     * d[trace_tgt[e]] += drive_w[e] * x[i] for e in [drive_ptr[i],
     * drive_ptr[i+1]). Entries to one target are merged. */
    int32_t *syn_ptr;   /* (n_in + 1) synapses reading input i are */
    int32_t *syn_j;     /* (n_s) syn_j[syn_ptr[i] .. syn_ptr[i+1]) ascending */
    bool routing_dirty; /* syn_* must be rebuilt */
    int32_t *drive_ptr; /* (n_in + 1) */
    int32_t *drive_tgt; /* (nnz) */
    float *drive_w;     /* (nnz) */
    /* The same drive as windows (elm_drive_win) when every input feeds a
     * run of at most 4 consecutive traces and n_trace <= 64, else NULL. */
    elm_drive_win *drive_win; /* (n_in) */
    elm_drive drive;          /* the arrays above, for the drive kernels */
    elm_layer *layers;  /* (L + 1) MLP layers; layers[0].in = n_b + n_m */
    elm_layer readout;  /* (n_m -> n_out) */
    float *prep;        /* storage of the derived arrays */
    uint64_t layout_gen;/* bumped when `collapsed` changes */
    uint64_t prep_gen;  /* bumped by every elm__model_prepare */
    bool kappa_uniform; /* every trace decays with one kappa_trace */

    struct elm_meta *meta; /* (n_meta) metadata, insertion order */
    size_t n_meta;
};

/* meta.c */
struct elm_meta {
    char *key, *value;
};
void elm__meta_clear(elm_model *m);
/* Replace the model's metadata by n entries (copied); all or nothing. */
int elm__meta_assign(elm_model *m, const struct elm_meta *src, size_t n, const char *fn);
int elm__meta_check(const char *key, size_t key_len, size_t value_len, const char *fn);
#define ELM_META_MAX_KEY 255
#define ELM_META_MAX_VALUE (1u << 20)
#define ELM_META_MAX_ENTRIES 1024

/* model.c: check src as the values of tensor t (finite, tau > 0). */
int elm__tensor_check(const elm_model *m, const elm_tensor *t, const float *src, const char *fn);

int elm__model_prepare(elm_model *m);

/* kernels/gemm.c: C (M, N) = alpha * op(A) op(B) + beta * C, row-major with
 * leading dimensions; trans_* = 1 means the array is stored transposed. */
void elm__sgemm(int trans_a, int trans_b, size_t M, size_t N, size_t K,
                float alpha, const float *A, size_t lda, const float *B,
                size_t ldb, float beta, float *C, size_t ldc);
void elm__gemm_init(void);

/* kernels/vec.c: small products and fused elementwise kernels. */
/* Weights packed for the small-batch kernel: column panels of 64 outputs
 * while at least 64 remain, then of 16 (the last zero-padded), each panel
 * (in, width) contiguous. panel_cols = total padded width. */
size_t elm__panel_cols(int out);
void elm__pack_panels(const float *w /* (out, in) */, int out, int in, float *dst);
/* y (B, out) = [y +] x (B, in) @ W^T over rows [row0, row0 + in) of the
 * packed weight's in_total input rows; row strides ldx, ldy. */
void elm__matmul_small(int B, int in, int out, const float *x, size_t ldx,
                       const float *panels, int in_total, int row0, float *y,
                       size_t ldy, int accumulate);
/* One stream (B = 1): y (out) = epi(init + x (in) @ W^T) over rows
 * [row0, row0 + in) of the packed weight, the epilogue applied per panel:
 * ELM_EPI_NONE stores, ELM_EPI_RELU / ELM_EPI_SILU store the activation,
 * ELM_EPI_MEMORY does mem = kappa * mem + coef * 1.7159 tanh(2 z / 3)
 * (elm__memory_update) and leaves y alone. init may equal y, else it must
 * not overlap y; mem must not overlap x, init or y. */
enum { ELM_EPI_NONE = -1, ELM_EPI_RELU = ELM_RELU, ELM_EPI_SILU = ELM_SILU, ELM_EPI_MEMORY = 2 };
void elm__matvec_fused(int in, int out, const float *x, const float *panels, int in_total,
                       int row0, const float *init, float *y, int epi, const float *kappa,
                       const float *coef, float *mem);
/* Layer 0 of one stream with its branch part carried between steps
 * (the B = 1 step, state.c): for each output o, q[o] = kq q[o] (0 when
 * fresh) + sum over r < nr of dv[r] W[rows[r], o], the listed branch rows
 * (< n_b) only; then y = epi(bias + q + um (n_m) @ the memory rows). With
 * traces c_t = kq c_{t-1} + d_t, listing the rows where d_t is non-zero
 * keeps q = W_b c_t up to rounding; fresh with all rows and dv = c_t
 * recomputes it. panels: layer 0's, rows [0, n_b + n_m). */
void elm__matvec_q(int n_b, int n_m, int out, const float *panels, int nr, const int32_t *rows,
                   const float *dv, float kq, int fresh, float *q, const float *um,
                   const float *bias, float *y, int epi, const float *kappa, const float *coef,
                   float *mem);
/* y (B, out) += x (B, in) @ W^T like elm__matmul_small with accumulate,
 * register-blocked over up to 6 streams (each panel read once per 6). */
void elm__matmul_rows(int B, int in, int out, const float *x, size_t ldx,
                      const float *panels, int in_total, int row0, float *y, size_t ldy);
/* The three panel kernels above as built for one instruction set (0:
 * AVX-512, 1: AVX2 + FMA, 2: baseline x86-64), for the white-box tests;
 * false where this build or CPU has no such version. The elm__ names are
 * the running CPU's best. */
typedef struct elm_panel_kernels {
    void (*small)(int B, int in, int out, const float *x, size_t ldx, const float *panels,
                  int in_total, int row0, float *y, size_t ldy, int accumulate);
    void (*fused)(int in, int out, const float *x, const float *panels, int in_total, int row0,
                  const float *init, float *y, int epi, const float *kappa, const float *coef,
                  float *mem);
    void (*rows)(int B, int in, int out, const float *x, size_t ldx, const float *panels,
                 int in_total, int row0, float *y, size_t ldy);
    void (*q)(int n_b, int n_m, int out, const float *panels, int nr, const int32_t *rows,
              const float *dv, float kq, int fresh, float *q, const float *um, const float *bias,
              float *y, int epi, const float *kappa, const float *coef, float *mem);
} elm_panel_kernels;
bool elm__panel_kernels(int isa, elm_panel_kernels *k);
void elm__activate(int act, float *x, size_t n);
/* bit k of bits[k / 64] = block x[16k .. 16k + 16) holds a value other than
 * +-0 (NaN and Inf count as non-zero); bits holds ceil(n / 1024) words. */
void elm__nonzero_blocks(const float *x, int n, uint64_t *bits);
float elm__expf(float x);
/* m = kappa * m + coef * 1.7159 tanh(2 z / 3), per stream; (B, n) rows. */
void elm__memory_update(int B, int n, float *m, const float *kappa,
                        const float *coef, const float *z);
/* Backward kernels (see vec.c for the formulas). */
void elm__memory_backward(int B, int n, const float *gm, const float *z, const float *mprev,
                          const float *kappa, const float *coef, float *dz, float *carry,
                          float *acc_coef, float *acc_kappa);
void elm__activate_backward(int act, const float *pre, float *d, size_t n);
void elm__leak_backward(int B, int n, const float *du, const float *mprev, const float *kappa,
                        float *carry, float *acc_kappa);

/* kernels/cpu.c */
typedef struct elm_cpu {
    char vendor[13];
    unsigned family, model;
    bool avx, avx2, fma, avx512f, avx512dq, avx512bw, avx512vl;
} elm_cpu;
void elm__cpu_detect(elm_cpu *cpu);
/* The BLIS configuration libelm selects for a CPU, or NULL (BLIS builds). */
const char *elm__blis_pick(const elm_cpu *cpu, const char **why);

/* state.c: building blocks shared by the state and the tape.
 * y (B, l->out) += x (B, in) @ rows [row0, row0 + in) of the layer's
 * transposed weight: the small kernel for one stream, the register-blocked
 * one below ELM_SMALL_BATCH streams (the tape's thread groups of 4 streams
 * ran at half speed on the small kernel, which reads every panel once per
 * stream), else BLIS. */
#define ELM_SMALL_BATCH 8
void elm__layer_product(int B, const elm_layer *l, int row0, int in, const float *x, size_t ldx,
                        float *y, size_t ldy);
/* d (n_trace) = x (n_in) W_in; returns the first non-finite input's index
 * or -1. blocks, unless NULL, receives the non-zero 16-blocks of x as
 * elm__nonzero_blocks writes them (ceil(n_in / 1024) words). */
int elm__drive_row(const elm_model *m, const float *x, float *d, uint64_t *blocks);
/* kernels/drive.c: d (dr->n_trace) += x (n) W_in over the non-zero inputs;
 * stops at the first non-finite input and returns its index (else -1);
 * blocks as for elm__drive_row. Windows when dr->win, else the CSR. */
int elm__drive_scan(const float *x, int n, const elm_drive *dr, float *d, uint64_t *blocks);
/* kernels/drive.c: d (dr->n_trace) += the drive of n events (channels ch,
 * values val, or 1 each when val is NULL), in the order given; channels
 * already checked to lie in [0, n_in). Bit-identical to elm__drive_scan
 * of the dense row when the channels increase. */
void elm__drive_events(const int32_t *ch, const float *val, int64_t n, const elm_drive *dr,
                       float *d);
/* A forward's input: dense rows of x, or events in CSR form. Row r is
 * stream b at step t, r = b * T + t as in x (B, T, n_in), unless tmajor
 * is set (the tape's own recorded events: r = t * tmajor + b). Offsets
 * index ch and val directly, so they need not start at 0; events are
 * checked (elm__check_events) before anything runs, so only dense input
 * can fail on the way. */
typedef struct elm_input {
    const float *x;     /* (B, T, n_in), or NULL for events */
    const int64_t *off; /* (rows + 1) event offsets into ch and val */
    const int32_t *ch;  /* channels in [0, n_in) */
    const float *val;   /* values, or NULL: every event is 1 */
    size_t tmajor;      /* 0: rows stream-major; else B of time-major rows */
} elm_input;
/* d (n_trace) = the drive of input row r; the index of the first
 * non-finite input of a dense row, or -1. */
int elm__input_drive(const elm_model *m, const elm_input *in, size_t r, float *d);
/* Event input for `rows` rows of T steps each (row r = stream r / T at
 * step r % T): offsets >= 0 and non-decreasing, channels in [0, n_in),
 * values finite; the message names `fn`, the stream, step and event. */
int elm__check_events(const char *fn, const elm_model *m, size_t rows, size_t T,
                      const int64_t *off, const int32_t *ch, const float *val);
/* c (n_b) = branch input from a trace row. */
void elm__branch_input(const elm_model *m, const float *trace, float *c);
/* rows of y (rows, n) = bias (n) */
void elm__fill_rows(float *y, const float *bias, size_t rows, int n);

/* loss.c: the burn-in of a loss (steps before it carry no loss), and the
 * number of outputs it expects. */
size_t elm__loss_burn_in(const elm_loss *loss);
size_t elm__loss_outputs(const elm_loss *loss);
/* lengths (B) each in [0, T], or NULL; ELM_E_INVALID naming the sample. */
int elm__check_lengths(const char *fn, const int64_t *lengths, size_t B, size_t T);
/* optim.c: the model an optimizer updates. */
elm_model *elm__optimizer_model(const elm_optimizer *opt);
elm_optimizer_kind elm__optimizer_kind(const elm_optimizer *opt);
/* The kind recorded in saved optimizer state bytes, or -1. */
int elm__optimizer_state_kind(const void *src, size_t size);

/* crc32.c: CRC-32 (zlib's) of n bytes, continuing from crc (0 to start). */
uint32_t elm__crc32(uint32_t crc, const void *data, size_t n);

/* modelfile.c: whole-file I/O. write_file_atomic writes a temporary file in
 * the destination's directory, fsyncs it and renames it over path (then
 * syncs the directory); on any failure the temporary is removed and path is
 * untouched. read_file reads a whole regular file into a malloc'ed buffer
 * (refusing files above `limit` bytes with ELM_E_LIMIT). */
int elm__write_file_atomic(const char *path, const void *data, size_t n, const char *fn);
int elm__read_file(const char *path, size_t limit, void **data, size_t *n, const char *fn);

/* Overflow-checked size arithmetic. */
static inline bool elm__mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

#endif
