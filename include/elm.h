/*
 * libelm - the Expressive Leaky Memory (ELM) neuron in C.
 *
 * This header is the whole public ABI. Read it top to bottom:
 *
 *   1. Conventions: arrays, threads, errors, ownership, versioning
 *   2. Library: version, errors, kernel backend
 *   3. elm_config: hyper-parameters
 *   4. elm_model:  parameters, initialisation, sequence forward
 *   5. elm_state:  streaming state of B independent streams
 *   6. elm_tape:   training forward with a tape, and BPTT gradients
 *   7. elm_loss:   losses with their gradients; metrics
 *   8. elm_optimizer: SGD, Adam, AdamW, Adamax; schedules; clipping
 *   9. elm_dataset: batches from arrays, files and your own sources
 *  10. elm_trainer: the training and evaluation loop
 *  11. Files: .elm model files, metadata, training checkpoints
 *  12. YAML: model configs and training configs (elm_train_config)
 *
 * ---------------------------------------------------------------------------
 * 1. CONVENTIONS
 *
 * Arrays. Every array is row-major float32 unless stated. Shapes are written
 * as (B, T, n_in): batch, time step, channel. A linear layer's weight has the
 * PyTorch shape (out, in). Times are in milliseconds.
 *
 * Threads. No function touches mutable global state, except the one-time
 * kernel backend selection described at elm_gemm_info(). Objects follow one
 * rule: a model is read-only while any state runs on it, so any number of
 * threads may run their own elm_state on one shared model at once. A config,
 * a state, and every other object belong to one thread at a time. Functions
 * that modify a model (elm_model_set_param, elm_model_set_routing) must not
 * run while a state of that model runs.
 *
 * Errors. Every fallible function returns an int: ELM_OK (0) on success or a
 * negative ELM_E_* code from the one table below. The codes never change
 * value. elm_strerror() names a code; elm_last_error() gives the detailed
 * message of the calling thread's last failure (the parameter, the expected
 * and received shape, ...). A failed call leaves every object as it was
 * (no partial update) unless its documentation says otherwise. The library
 * never prints, never calls exit() or abort() on bad input.
 *
 * Non-finite numbers. Setting a parameter containing NaN or Inf is refused
 * (ELM_E_NONFINITE). A NaN or Inf in an input x is detected and the call
 * fails with ELM_E_NONFINITE, leaving the state and the outputs as before.
 *
 * Ownership. Objects are created by elm_<object>_create (or _copy) and freed
 * by elm_<object>_free; free(NULL) is a no-op. A state holds a pointer to its
 * model: free every state before its model. Pointers returned by getters are
 * borrowed and live as long as the object they came from. Arrays passed in
 * are read during the call only; the library keeps no caller pointer.
 *
 * Versioning. The soname is libelm.so.ELM_VERSION_MAJOR; within a major
 * version, functions and enum values are only added, never changed or
 * removed. Every exported symbol is listed in lib/libelm.map, one node per
 * release. "Since" notes give the version that added a function.
 */
#ifndef ELM_H
#define ELM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ELM_BUILDING_LIBRARY) && defined(__GNUC__)
#define ELM_API __attribute__((visibility("default")))
#else
#define ELM_API
#endif

/* ---------------------------------------------------------------------------
 * 2. LIBRARY
 */

#define ELM_VERSION_MAJOR 0
#define ELM_VERSION_MINOR 5
#define ELM_VERSION_PATCH 0
#define ELM_VERSION_NUMBER \
    (ELM_VERSION_MAJOR * 10000 + ELM_VERSION_MINOR * 100 + ELM_VERSION_PATCH)

/* Version of the library actually loaded (may differ from the header's).
 * Since 0.1. */
ELM_API unsigned elm_version_number(void);
ELM_API const char *elm_version_string(void);

/* Status codes. Values are fixed forever. */
typedef enum elm_status {
    ELM_OK = 0,
    ELM_E_NULL = -1,         /* a required pointer argument was NULL */
    ELM_E_INVALID = -2,      /* an argument or value is out of its domain */
    ELM_E_SHAPE = -3,        /* an array shape disagrees with the model */
    ELM_E_NOMEM = -4,        /* allocation failed, or a size overflows */
    ELM_E_NONFINITE = -5,    /* NaN or Inf where finite numbers are needed */
    ELM_E_UNKNOWN_NAME = -6, /* no parameter or key of that name */
    ELM_E_CONFIG = -7,       /* the configuration is inconsistent */
    ELM_E_UNSUPPORTED = -8,  /* valid request this build/model cannot do */
    ELM_E_IO = -9,           /* a file could not be read or written */
    ELM_E_FORMAT = -10,      /* data is malformed (bad magic, checksum, ...) */
    ELM_E_INTERNAL = -11,    /* a bug in libelm: please report it */
    ELM_E_TRUNCATED = -12,   /* data ends before its declared end */
    ELM_E_CHECKSUM = -13,    /* stored checksum disagrees: data corrupted */
    ELM_E_VERSION = -14,     /* data needs a newer libelm (newer format) */
    ELM_E_LIMIT = -15        /* a declared size exceeds the data or a limit */
} elm_status;

/* Short fixed description of a status code ("shape mismatch"); never NULL.
 * Since 0.1. */
ELM_API const char *elm_strerror(int status);

/* Detailed message of the calling thread's last failed call, e.g.
 * "elm_model_set_param: 'mlp.0.weight' expects shape (8, 7), got (8, 6)".
 * Empty string when the thread has had no failure. Valid until the next
 * libelm call on this thread. Since 0.1. */
ELM_API const char *elm_last_error(void);

/* The matrix-product backend in use, e.g.
 * "blis 0.9.0 kernels=zen3 (selected by libelm: AMD family 0x19, avx512)".
 *
 * Debian's BLIS falls back silently to slow generic kernels on CPUs it does
 * not recognise. On first use, libelm inspects the CPU and, unless the
 * environment already sets BLIS_ARCH_TYPE, selects the best kernel
 * configuration compiled into BLIS (by briefly setting BLIS_ARCH_TYPE while
 * BLIS initialises, then restoring the environment). This happens once per
 * process, inside the first elm_model_create(); set BLIS_ARCH_TYPE yourself
 * to override. If the host application initialised BLIS before libelm, its
 * choice stands and is reported. Borrowed static string. Since 0.1. */
ELM_API const char *elm_gemm_info(void);

/* ---------------------------------------------------------------------------
 * 3. elm_config: HYPER-PARAMETERS
 *
 * A config holds every hyper-parameter of the ELM neuron (model.md §1), read
 * and written through enum keys. Values are doubles; integer and enum
 * parameters must hold exact integers. elm_config_set() validates the value
 * against the key's bounds (elm_config_bounds) at once; checks that involve
 * several keys (for example n_s == n_in without routing) run in
 * elm_config_validate() and elm_model_create().
 */
typedef struct elm_config elm_config;

typedef enum elm_param {
    ELM_FORMULATION = 1,        /* ELM_V1 | ELM_V2, default ELM_V1 */
    ELM_NUM_INPUT = 2,          /* n_in, required */
    ELM_NUM_OUTPUT = 3,         /* n_out, required */
    ELM_NUM_MEMORY = 4,         /* n_m, default 100 */
    ELM_LAMBDA = 5,             /* memory update scale (v1), default 5 */
    ELM_MLP_NUM_LAYERS = 6,     /* hidden layers L >= 0, default 1 */
    ELM_MLP_HIDDEN_SIZE = 7,    /* H; 0 = 2 * n_m (default) */
    ELM_MLP_ACTIVATION = 8,     /* ELM_RELU | ELM_SILU, default ELM_RELU */
    ELM_TAU_S = 9,              /* initial tau_s (v1) / tau_b (v2), ms, 5 */
    ELM_TAU_M_MIN = 10,         /* memory time-constant bounds, ms, 1 */
    ELM_TAU_M_MAX = 11,         /*                               ..., 1000 */
    ELM_LEARN_TAU_M = 12,       /* 0 | 1: tau_m trained, default 0 */
    ELM_W_S_INIT = 13,          /* initial synapse weight, default 0.5 */
    ELM_NUM_BRANCH = 14,        /* n_b; 0 = n_in (default) */
    ELM_SYNAPSES_PER_BRANCH = 15, /* k, default 1 */
    ELM_ROUTING = 16,           /* ELM_ROUTING_*, default ELM_ROUTING_NONE */
    ELM_DT = 17                 /* time per step, ms, default 1 */
} elm_param;

typedef enum elm_formulation { ELM_V1 = 1, ELM_V2 = 2 } elm_formulation;
typedef enum elm_activation { ELM_RELU = 0, ELM_SILU = 1 } elm_activation;
typedef enum elm_routing {
    ELM_ROUTING_NONE = 0,     /* synapse j reads input j; needs n_s == n_in */
    ELM_ROUTING_RANDOM = 1,   /* synapse j reads a seeded uniform input */
    ELM_ROUTING_NEURONIO = 2  /* interleaved exc/inh, overlapping windows */
} elm_routing;

/* A new config holding the reference defaults; ELM_NUM_INPUT and
 * ELM_NUM_OUTPUT must still be set. Free with elm_config_free. Since 0.1. */
ELM_API int elm_config_create(elm_config **out);
ELM_API int elm_config_copy(const elm_config *cfg, elm_config **out);
ELM_API void elm_config_free(elm_config *cfg);

/* Set one hyper-parameter. Fails with ELM_E_UNKNOWN_NAME for an unknown key
 * and ELM_E_INVALID (config unchanged) for a value outside its bounds or not
 * integral where an integer is needed. Since 0.1. */
ELM_API int elm_config_set(elm_config *cfg, elm_param key, double value);
ELM_API int elm_config_get(const elm_config *cfg, elm_param key,
                           double *value);

/* Inclusive bounds of a key's valid values (a 0 in ELM_MLP_HIDDEN_SIZE and
 * ELM_NUM_BRANCH means "derived"). Since 0.1. */
ELM_API int elm_config_bounds(elm_param key, double *lo, double *hi);

/* Name of a key as used in YAML and the reference ("num_memory"), or NULL
 * for an unknown key; and the reverse lookup (also accepts the reference's
 * names such as "tau_b_value"). Since 0.1. */
ELM_API const char *elm_param_name(elm_param key);
ELM_API int elm_param_from_name(const char *name, elm_param *key);

/* Check the whole config for consistency; ELM_E_CONFIG with a message
 * naming the conflict. Since 0.1. */
ELM_API int elm_config_validate(const elm_config *cfg);

/* ---------------------------------------------------------------------------
 * 4. elm_model: PARAMETERS AND SEQUENCE FORWARD
 *
 * A model owns its hyper-parameters (a private copy of the config), its
 * parameters in one contiguous float buffer, and the routing table. Parameter
 * names (libelm name / official state-dict alias):
 *
 *   w_s_proto       / _proto_w_s                (n_s)     w_s = relu(.)
 *   tau_s (v1)      / tau_s                     (n_s)     ms, not trained
 *   tau_b (v2)      / tau_b                     (n_b)     ms, not trained
 *   tau_m_proto     / _proto_tau_m              (n_m)     trained iff learn
 *   mlp.<i>.weight  / mlp.network.<2i>.weight   (H, in_i) i = 0 .. L-1
 *   mlp.<i>.bias    / mlp.network.<2i>.bias     (H)
 *   mlp.<L>.weight  / mlp.network.<2L>.weight   (n_m, in_L) output layer
 *   mlp.<L>.bias    / mlp.network.<2L>.bias     (n_m)
 *   readout.weight  / w_y.weight                (n_out, n_m)
 *   readout.bias    / w_y.bias                  (n_out)
 *
 * with in_0 = n_b + n_m (branches first, then memory) and in_i = H for
 * i > 0. Trainable: w_s_proto, the MLP, the readout, and tau_m_proto when
 * ELM_LEARN_TAU_M is set.
 *
 * Initialisation (model.md §4): linear layers uniform in +-1/sqrt(fan_in)
 * drawn from libelm's own generator (same values on every platform, not
 * PyTorch's), w_s_proto = ELM_W_S_INIT, tau = ELM_TAU_S, tau_m_proto the
 * inverse bounded sigmoid of log-spaced time constants evaluated in float32
 * as the reference does (so the largest may be +Inf, meaning tau_max).
 */
typedef struct elm_model elm_model;

#define ELM_MAX_DIMS 4

/* Create a model from a valid config, initialised as model.md §4 from
 * `seed` (bit-identical on every platform for a given seed). The config is
 * copied; the caller keeps ownership of cfg. Since 0.1. */
ELM_API int elm_model_create(const elm_config *cfg, uint64_t seed,
                             elm_model **out);
ELM_API void elm_model_free(elm_model *model);

/* The model's own config (borrowed, read-only, with derived values such as
 * ELM_NUM_BRANCH and ELM_MLP_HIDDEN_SIZE resolved). Since 0.1. */
ELM_API const elm_config *elm_model_config(const elm_model *model);

/* Sizes derived from the config. */
typedef enum elm_size {
    ELM_SIZE_INPUT = 1,      /* n_in */
    ELM_SIZE_OUTPUT = 2,     /* n_out */
    ELM_SIZE_MEMORY = 3,     /* n_m */
    ELM_SIZE_BRANCH = 4,     /* n_b */
    ELM_SIZE_SYNAPSE = 5,    /* n_s = n_b * k */
    ELM_SIZE_HIDDEN = 6,     /* H */
    ELM_SIZE_PARAMS = 7,     /* floats in the parameter buffer */
    ELM_SIZE_TRAINABLE = 8,  /* trainable parameters (the paper's count) */
    ELM_SIZE_NUM_TENSORS = 9,/* named parameter tensors */
    ELM_SIZE_STATE = 10      /* floats of recurrent state per stream */
} elm_size;
ELM_API int elm_model_size(const elm_model *model, elm_size what,
                           size_t *value); /* Since 0.1. */

/* Name, shape and trainability of the i-th parameter tensor, in buffer
 * order (i < ELM_SIZE_NUM_TENSORS). `name` is borrowed. Since 0.1. */
ELM_API int elm_model_param_info(const elm_model *model, size_t i,
                                 const char **name, int *ndim,
                                 int64_t shape[ELM_MAX_DIMS],
                                 int *trainable);

/* Shape of a named parameter (libelm name or official alias). */
ELM_API int elm_model_param_shape(const elm_model *model, const char *name,
                                  int *ndim, int64_t shape[ELM_MAX_DIMS]); /* Since 0.1. */

/* Copy a named parameter into dst, which holds `capacity` floats (at least
 * the tensor's element count, else ELM_E_SHAPE). Since 0.1. */
ELM_API int elm_model_get_param(const elm_model *model, const char *name,
                                float *dst, size_t capacity);

/* Overwrite a named parameter from src of the given shape, which must equal
 * the tensor's shape (a 1-D tensor may also be given as ndim 1 with the
 * element count). Refuses NaN/Inf, and tau values <= 0. Since 0.1. */
ELM_API int elm_model_set_param(elm_model *model, const char *name,
                                const float *src, int ndim,
                                const int64_t *shape);

/* The routing table: synapse j reads input idx[j] and is scaled by mask[j]
 * (0 or 1). Both arrays have n_s entries. For ELM_ROUTING_NONE, idx[j] = j
 * and mask is all ones. set_routing validates 0 <= idx[j] < n_in and is
 * refused for models without routing. Since 0.1. */
ELM_API int elm_model_get_routing(const elm_model *model, int64_t *idx,
                                  uint8_t *mask, size_t n_s);
ELM_API int elm_model_set_routing(elm_model *model, const int64_t *idx,
                                  const uint8_t *mask, size_t n_s);

/* The whole parameter buffer (ELM_SIZE_PARAMS floats, tensors in the order
 * of elm_model_param_info, each row-major). Borrowed, read-only. */
ELM_API const float *elm_model_params(const elm_model *model); /* Since 0.1. */

/* Overwrite that whole buffer from src (n = ELM_SIZE_PARAMS floats, the
 * same layout), e.g. after an update made outside libelm. Each tensor is
 * checked as elm_model_set_param checks it (NaN/Inf refused, time
 * constants > 0; tau_m_proto may be +Inf) before anything is written: on
 * any error the model is unchanged. The same lifetime rule as set_param:
 * no state, tape or trainer of the model may be running. Since 0.5. */
ELM_API int elm_model_set_params(elm_model *model, const float *src,
                                 size_t n);

/* Sequence forward from the zero state: x (B, T, n_in) -> y (B, T, n_out).
 * Allocates a temporary state; for repeated calls use elm_state_forward.
 * Since 0.1. */
ELM_API int elm_model_forward(const elm_model *model, const float *x,
                              size_t B, size_t T, float *y);

/* ---------------------------------------------------------------------------
 * 5. elm_state: STREAMING STATE
 *
 * A state holds the recurrent state of B independent streams of one model
 * (v1: the branch/synapse traces and the memory m; v2: the branch traces b
 * and m) plus every workspace the forward needs, so that stepping and
 * sequence forwards never allocate. It starts at zero (model.md §3).
 * A state reads its model; the model must outlive it and must not be
 * modified while the state runs. One thread at a time per state; many
 * states may run concurrently on one model.
 */
typedef struct elm_state elm_state;

#define ELM_ALL_STREAMS (-1)

ELM_API int elm_state_create(const elm_model *model, size_t B,
                             elm_state **out); /* Since 0.1. */
ELM_API void elm_state_free(elm_state *state); /* Since 0.1. */
ELM_API size_t elm_state_batch(const elm_state *state); /* Since 0.1. */

/* One time step for every stream: x (B, n_in) -> y (B, n_out). y may be
 * NULL when the output is not needed. No allocation. A one-stream state
 * stepped on one thread keeps layer 0's branch sums from step to step and
 * reads only the weight rows of the branches this step's input reaches
 * (when all traces share one decay); it recomputes them every 64 steps
 * and after any get, set, reset or forward, so results stay within float
 * rounding of the plain product, are deterministic for a given sequence
 * of calls, and a run restored with elm_state_set repeats bit for bit the
 * run that saved the state with elm_state_get. Since 0.1. */
ELM_API int elm_state_step(elm_state *state, const float *x, float *y);

/* T time steps for every stream, continuing from the current state:
 * x (B, T, n_in) -> y (B, T, n_out); identical (within float rounding) to
 * T calls of elm_state_step, but computed with the input side hoisted into
 * large matrix products. Since 0.1. */
ELM_API int elm_state_forward(elm_state *state, const float *x, size_t T,
                              float *y);

/* Like elm_state_forward, and also records internal traces; each pointer
 * may be NULL:
 *   syn    (B, T, n_s)  synaptic traces s_t (v1 only; ELM_E_UNSUPPORTED in v2)
 *   branch (B, T, n_b)  MLP branch input: c_t (v1) or b_t (v2)
 *   mem    (B, T, n_m)  memory m_t
 * Since 0.1. */
ELM_API int elm_state_forward_traced(elm_state *state, const float *x,
                                     size_t T, float *y, float *syn,
                                     float *branch, float *mem);

/* Event (spike) input, for inputs that are mostly zero. Instead of dense
 * rows, pass the non-zero entries in CSR form: row r owns the events
 * [offsets[r], offsets[r+1]), each a channel in [0, n_in) and a value
 * (values may be NULL: every event is 1, a spike). A row stands for the
 * dense row x with x[channel] = the sum of its events' values on that
 * channel; channels may come in any order and repeat. The work is
 * proportional to the events, not to n_in: nothing reads a dense row.
 * Results equal the dense call's bit for bit when each row's channels
 * are strictly increasing (the dense scan adds them in that order), and
 * within float rounding otherwise.
 * Offsets index channels and values directly and need not start at 0:
 * a recording held as one CSR array over its steps is stepped by passing
 * offsets + t with the same channels and values.
 * Everything is checked before the state changes: offsets must be >= 0
 * and must not decrease, channels must lie in [0, n_in) (else
 * ELM_E_INVALID, naming the stream, step and event) and values must be
 * finite (ELM_E_NONFINITE); on any error the state is unchanged.
 * channels and values may be NULL when there are no events. The arrays
 * are read during the call only and never modified.
 *
 * step:    rows are the B streams: offsets (B + 1); y (B, n_out) or NULL.
 * forward: rows are (stream, step) pairs in x's order, r = b * T + t:
 *          offsets (B * T + 1); y (B, T, n_out) or NULL. Threads as for
 *          elm_state_forward.
 * Since 0.5. */
ELM_API int elm_state_step_events(elm_state *state, const int64_t *offsets,
                                  const int32_t *channels,
                                  const float *values, float *y);
ELM_API int elm_state_forward_events(elm_state *state, size_t T,
                                     const int64_t *offsets,
                                     const int32_t *channels,
                                     const float *values, float *y);

/* Zero the state of one stream (0 <= stream < B) or of all streams
 * (ELM_ALL_STREAMS). Since 0.1. */
ELM_API int elm_state_reset(elm_state *state, int64_t stream);

/* Run the state's B streams on n threads (1, the default: the calling
 * thread only; at most B). The streams are split into n contiguous groups,
 * each advanced by one worker that the state owns (started here, stopped
 * by elm_state_free or by setting n back to 1), so a step or a forward
 * costs no thread start-up. Results are deterministic for a given n. The
 * calling thread waits for the workers: the one-thread-at-a-time rule of
 * a state is unchanged. Since 0.5. */
ELM_API int elm_state_set_threads(elm_state *state, int n);

/* The recurrent state as (B, ELM_SIZE_STATE) floats: per stream the
 * synaptic traces (v1, n_s) or the branch traces (n_b; v1 models whose
 * synapses share one time constant per branch store branch traces too),
 * followed by the memory (n_m). `n` must equal B * ELM_SIZE_STATE.
 * set refuses NaN/Inf. Use these to checkpoint a simulation: after set
 * from a copy that get made, the state continues exactly as the state
 * that get read continues from that point (both restart the cached sums
 * of elm_state_step). Since 0.1. */
ELM_API int elm_state_get(const elm_state *state, float *dst, size_t n);
ELM_API int elm_state_set(elm_state *state, const float *src, size_t n);

/* ---------------------------------------------------------------------------
 * 6. elm_tape: TRAINING FORWARD AND BPTT GRADIENTS
 *
 * A tape runs the sequence forward of B streams from the zero state while
 * recording what backpropagation through time needs, then computes the
 * gradient of a loss with respect to every parameter and, optionally, to
 * the input x (so an ELM can sit behind another differentiable layer).
 *
 * Gradients live in a float array laid out exactly like the parameter
 * buffer (ELM_SIZE_PARAMS floats, tensors in elm_model_param_info order).
 * elm_tape_backward ADDS into it, as autograd accumulates: zero it before
 * the first backward of a step. Gradients are computed for w_s_proto
 * (through its relu), every MLP layer, the readout and tau_m_proto (through
 * the bounded sigmoid, whether or not tau_m is trained); tau_s (v1) /
 * tau_b (v2) only with ELM_TAPE_GRAD_TAU. The routing table has none.
 *
 * Memory is sized at creation for T_max steps. By default the tape keeps
 * every step's activations (~ (2 n_b + 2 n_m + 2 L H) floats per stream and
 * step, plus per-segment workspaces). With ELM_TAPE_CHECKPOINT it keeps the
 * recurrent state only at the start of segments of ~sqrt(T_max) steps and
 * recomputes each segment during the backward: memory grows with sqrt(T)
 * and the gradients are bit-identical to the default mode, at the price of
 * a second forward. Both modes run the same segment structure.
 *
 * Variable lengths and burn-in need nothing here: steps whose outputs carry
 * no loss simply get dy = 0 (elm_loss_compute does this).
 *
 * A tape reads its model: the model must outlive it and must not change
 * between a forward and its backward. One thread at a time per tape.
 */
typedef struct elm_tape elm_tape;

typedef enum elm_tape_flag {
    ELM_TAPE_CHECKPOINT = 1, /* recompute segments: memory ~ sqrt(T) */
    ELM_TAPE_GRAD_TAU = 2    /* also d/d tau_s (v1) or d/d tau_b (v2) */
} elm_tape_flag;

/* A tape for B streams of at most T_max steps; flags is an OR of
 * elm_tape_flag. Since 0.2. */
ELM_API int elm_tape_create(const elm_model *model, size_t B, size_t T_max,
                            unsigned flags, elm_tape **out);
ELM_API void elm_tape_free(elm_tape *tape);
/* Forward and backward of the tape's B streams on n threads (1, the
 * default; at most B): the streams are split into n contiguous groups run
 * by workers the tape owns; the parameter gradient is the sum of the
 * groups' partial gradients in a fixed order, so results are deterministic
 * for a given n. Changing n discards the recorded forward (the next
 * backward needs a new forward). Since 0.5. */
ELM_API int elm_tape_set_threads(elm_tape *tape, int n);

/* Bytes the tape allocated (all of it, workspaces included). Since 0.2. */
ELM_API int elm_tape_memory(const elm_tape *tape, size_t *bytes);

/* Forward from the zero state, recording: x (B, T, n_in) -> y (B, T, n_out),
 * 1 <= T <= T_max. Equal within float rounding to elm_model_forward. A NaN
 * or Inf in x fails with ELM_E_NONFINITE. Since 0.2. */
ELM_API int elm_tape_forward(elm_tape *tape, const float *x, size_t T,
                             float *y);

/* The same forward from event (spike) input, as elm_state_forward_events
 * takes it: rows r = b T + t of a CSR list (offsets (B T + 1), channels,
 * values or NULL for 1); checked before anything changes (a refused call
 * leaves the last forward's record usable). With channels increasing in
 * every row, y and the gradients of the following backward equal the
 * dense forward's bit for bit. The tape copies the events it needs; the
 * arrays may change after the call. Since 0.5. */
ELM_API int elm_tape_forward_events(elm_tape *tape, size_t T,
                                    const int64_t *offsets,
                                    const int32_t *channels,
                                    const float *values, float *y);

/* Backward through the last forward. dy (B, T, n_out) is dL/dy. Adds
 * dL/dparams into grad (ELM_SIZE_PARAMS floats); writes dL/dx (B, T, n_in)
 * into dx unless dx is NULL. dy must be finite (ELM_E_NONFINITE otherwise,
 * nothing written). May be called again for another dy of the same
 * forward. x is not read and may be NULL: the forward recorded the input's
 * non-zero entries, and checkpointing recomputes from them (before 0.5 it
 * re-read x, which then had to be the forward's). Since 0.2. */
ELM_API int elm_tape_backward(elm_tape *tape, const float *x, const float *dy,
                              float *grad, float *dx);

/* ---------------------------------------------------------------------------
 * 7. elm_loss: LOSSES WITH THEIR GRADIENTS, AND METRICS
 *
 * A loss maps outputs y (B, T, n_out) and targets to a scalar and its
 * gradient dy. Which steps count:
 *   - lengths (B) int64, or NULL for "all T": sample b has steps
 *     [0, lengths[b]); lengths[b] == 0 marks a padding sample that
 *     contributes nothing;
 *   - burn-in t0 (elm_loss_set_burn_in): steps t < t0 carry no loss
 *     (ignored by ELM_LOSS_CE_LAST, which scores the last valid step).
 * Means are over the counted (sample, step) pairs. Losses with no counted
 * pair fail with ELM_E_INVALID.
 *
 *   ELM_LOSS_CE_LAST  cross-entropy of softmax(y[b, lengths[b]-1, :]) with
 *                     labels (B); mean over samples (the paper's
 *                     classification setting)
 *   ELM_LOSS_CE_ALL   cross-entropy at every counted step, labels (B, T)
 *   ELM_LOSS_NEURONIO w0 * BCEWithLogits(y[..., 0], target[..., 0])
 *                     + w1 * MSE(y[..., 1], target[..., 1]), target
 *                     (B, T, 2), n_out == 2, weights default (0.5, 0.5)
 *                     (model.md §5)
 *   ELM_LOSS_MSE      sum_o w_o * mean (y[..., o] - target[..., o])^2,
 *                     target (B, T, n_out), weights default 1/n_out (which
 *                     is PyTorch's MSELoss)
 *
 * Per-output weights (elm_loss_set_weights, n_out non-negative finite
 * values): as above for NEURONIO and MSE; for cross-entropy they are class
 * weights with PyTorch's semantics, sum_i w[c_i] nll_i / sum_i w[c_i].
 * A loss object is immutable during compute; one thread at a time may
 * change it.
 */
typedef struct elm_loss elm_loss;

typedef enum elm_loss_kind {
    ELM_LOSS_CE_LAST = 1,
    ELM_LOSS_CE_ALL = 2,
    ELM_LOSS_NEURONIO = 3,
    ELM_LOSS_MSE = 4
} elm_loss_kind;

/* Since 0.2. */
ELM_API int elm_loss_create(elm_loss_kind kind, size_t n_out, elm_loss **out);
ELM_API void elm_loss_free(elm_loss *loss);
ELM_API elm_loss_kind elm_loss_get_kind(const elm_loss *loss);
/* "ce_last", "ce_all", "neuronio", "mse" <-> kind; name NULL if unknown. */
ELM_API int elm_loss_kind_from_name(const char *name, elm_loss_kind *kind); /* Since 0.2. */
ELM_API const char *elm_loss_kind_name(elm_loss_kind kind); /* Since 0.2. */
ELM_API int elm_loss_set_burn_in(elm_loss *loss, size_t t0); /* Since 0.2. */
ELM_API int elm_loss_set_weights(elm_loss *loss, const float *w, size_t n); /* Since 0.2. */
/* What the setters hold: the burn-in, and the n = n_out weights (the
 * kind's defaults until set: 1 for cross-entropy, 0.5 each for NEURONIO,
 * 1/n_out for MSE, as floats; ELM_E_SHAPE for another n). Since 0.5. */
ELM_API int elm_loss_get_burn_in(const elm_loss *loss, size_t *t0);
ELM_API int elm_loss_get_weights(const elm_loss *loss, float *w, size_t n);

/* value (required) = the loss; dy (B, T, n_out) = dL/dy, overwritten (zeros
 * where nothing counts), or NULL. Class weights that are all zero on the
 * counted labels fail with ELM_E_INVALID (PyTorch gives NaN). Classification
 * kinds read `labels` (int32 in [0, n_out)) and need target == NULL; the
 * others read `target` and need labels == NULL. Non-finite y or target:
 * ELM_E_NONFINITE. Since 0.2. */
ELM_API int elm_loss_compute(const elm_loss *loss, const float *y, size_t B,
                             size_t T, const float *target,
                             const int32_t *labels, const int64_t *lengths,
                             double *value, float *dy);

/* Metrics, over the same counted steps as the losses (lengths may be NULL,
 * t0 is the burn-in; `last` = 1 scores only each sample's last valid step).
 *
 * Accuracy: fraction of counted steps whose argmax over n_out equals the
 * label (labels (B) when last, else (B, T)). Since 0.2. */
ELM_API int elm_metric_accuracy(const float *y, size_t B, size_t T,
                                size_t n_out, const int32_t *labels,
                                const int64_t *lengths, size_t t0, int last,
                                double *accuracy);
/* ROC AUC of scores against binary truth (0 or 1 as float), n pairs; tied
 * scores count one half (the Mann-Whitney statistic, as scikit-learn's
 * roc_auc_score). ELM_E_INVALID when only one class is present. */
ELM_API int elm_metric_roc_auc(const float *score, const float *truth,
                               size_t n, double *auc); /* Since 0.2. */
/* Root mean square of (a - b) over n pairs. */
ELM_API int elm_metric_rmse(const float *a, const float *b, size_t n,
                            double *rmse); /* Since 0.2. */

/* ---------------------------------------------------------------------------
 * 8. elm_optimizer: SGD, ADAM, ADAMW, ADAMAX
 *
 * An optimizer updates a model's parameters from a gradient array (the
 * parameter-buffer layout of section 6) with PyTorch's update formulas
 * (torch.optim, defaults foreach=False, maximize=False, amsgrad=False).
 * With g the gradient, p the parameter, t the step (1-based), lr_t the
 * scheduled learning rate, wd the weight decay:
 *
 * t counts the steps that trained the tensor (as PyTorch keeps it per
 * parameter: a tensor unfrozen later starts at t = 1).
 *
 *   SGD     g += wd p; with momentum mu > 0: buf = g at t = 1, else
 *           buf = mu buf + (1 - dampening) g; g = g + mu buf (Nesterov) or
 *           g = buf; p -= lr_t g
 *   Adam    g += wd p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *           p -= lr_t / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   AdamW   p *= 1 - lr_t wd; then Adam with no g += wd p
 *   Adamax  g += wd p; m = b1 m + (1 - b1) g; u = max(b2 u, |g| + eps);
 *           p -= lr_t / (1 - b1^t) * m / u
 *
 * Clipping (ELM_OPTIM_CLIP_NORM = c > 0) first scales the gradients of the
 * trained tensors by min(1, c / (norm + 1e-6)), norm their global L2 norm
 * (torch.nn.utils.clip_grad_norm_).
 *
 * Schedules, with s the number of steps taken before this one, W warm-up
 * steps, N total steps, eta = ELM_OPTIM_MIN_LR:
 *   constant  lr_t = lr
 *   cosine    lr_t = eta + (lr - eta) (1 + cos(pi s' / N')) / 2 with
 *             s' = s - W, N' = N - W (torch CosineAnnealingLR stepped once
 *             per optimizer step; s' is clamped to N')
 *   warm-up   for s < W: lr_t = lr (s + 1) / W, before either schedule
 *             (with cosine and N <= W, lr_t = eta after the warm-up)
 *
 * Trained tensors: the model's trainable ones by default; any tensor may be
 * frozen or unfrozen by name (unfreezing tau_s, tau_b or tau_m_proto trains
 * them; a tau is kept >= 1e-6 ms). After each step the model's derived data
 * is refreshed. The optimizer keeps a pointer to its model, which must
 * outlive it, and no state or tape of the model may run during a step.
 */
typedef struct elm_optimizer elm_optimizer;

typedef enum elm_optimizer_kind {
    ELM_OPTIM_SGD = 1,
    ELM_OPTIM_ADAM = 2,
    ELM_OPTIM_ADAMW = 3,
    ELM_OPTIM_ADAMAX = 4
} elm_optimizer_kind;

typedef enum elm_optim_param {
    ELM_OPTIM_LR = 1,           /* > 0; default 1e-3 (Adamax 2e-3, SGD 1e-2) */
    ELM_OPTIM_MOMENTUM = 2,     /* SGD, [0, 1), default 0 */
    ELM_OPTIM_DAMPENING = 3,    /* SGD, [0, 1], default 0 */
    ELM_OPTIM_NESTEROV = 4,     /* SGD, 0 | 1; needs momentum > 0 and
                                   dampening 0 (checked at the step) */
    ELM_OPTIM_BETA1 = 5,        /* [0, 1), default 0.9 */
    ELM_OPTIM_BETA2 = 6,        /* [0, 1), default 0.999 */
    ELM_OPTIM_EPS = 7,          /* > 0, default 1e-8 */
    ELM_OPTIM_WEIGHT_DECAY = 8, /* >= 0, default 0 (AdamW 1e-2) */
    ELM_OPTIM_CLIP_NORM = 9,    /* >= 0, 0 = no clipping (default) */
    ELM_OPTIM_SCHEDULE = 10,    /* ELM_SCHEDULE_*, default constant */
    ELM_OPTIM_TOTAL_STEPS = 11, /* N for cosine, >= 1, default 1 */
    ELM_OPTIM_WARMUP_STEPS = 12,/* W >= 0, default 0 */
    ELM_OPTIM_MIN_LR = 13       /* eta >= 0, default 0 */
} elm_optim_param;

typedef enum elm_schedule {
    ELM_SCHEDULE_CONSTANT = 0,
    ELM_SCHEDULE_COSINE = 1
} elm_schedule;

/* Since 0.2. */
ELM_API int elm_optimizer_create(elm_model *model, elm_optimizer_kind kind,
                                 elm_optimizer **out);
ELM_API void elm_optimizer_free(elm_optimizer *opt);
/* "sgd", "adam", "adamw", "adamax" <-> kind; name NULL if unknown. */
ELM_API int elm_optimizer_kind_from_name(const char *name,
                                         elm_optimizer_kind *kind); /* Since 0.2. */
ELM_API const char *elm_optimizer_kind_name(elm_optimizer_kind kind); /* Since 0.2. */
/* The kind the optimizer was created with; 0 for NULL. Since 0.5. */
ELM_API elm_optimizer_kind elm_optimizer_get_kind(const elm_optimizer *opt);
/* ELM_E_UNKNOWN_NAME for a key this kind does not use (momentum on Adam),
 * ELM_E_INVALID (unchanged) for a value out of bounds. */
ELM_API int elm_optimizer_set(elm_optimizer *opt, elm_optim_param key,
                              double value); /* Since 0.2. */
ELM_API int elm_optimizer_get(const elm_optimizer *opt, elm_optim_param key,
                              double *value); /* Since 0.2. */
/* Freeze (1) or train (0) a tensor by libelm name or official alias. */
ELM_API int elm_optimizer_freeze(elm_optimizer *opt, const char *tensor,
                                 int frozen); /* Since 0.2. */
ELM_API int elm_optimizer_is_frozen(const elm_optimizer *opt,
                                    const char *tensor, int *frozen); /* Since 0.2. */

/* One update from grad (ELM_SIZE_PARAMS floats; entries of frozen tensors
 * are ignored). grad is scaled in place when clipping applies. The global
 * L2 norm of the trained gradients before clipping goes to *grad_norm
 * (may be NULL). A non-finite norm, or an update that would make a
 * parameter or moment non-finite, fails with ELM_E_NONFINITE and changes
 * nothing (parameters, moments, step count). Entries of tau_m_proto that
 * are +-Inf (the sigmoid's exact limit) stay as they are. Memory: SGD
 * keeps 3, the Adam family 5 floats per parameter (moments are double
 * buffered so that a failed step can be undone). Since 0.2. */
ELM_API int elm_optimizer_step(elm_optimizer *opt, float *grad,
                               double *grad_norm);

/* Steps taken so far, and the learning rate the next step will use. */
ELM_API uint64_t elm_optimizer_steps(const elm_optimizer *opt); /* Since 0.2. */
ELM_API double elm_optimizer_lr(const elm_optimizer *opt); /* Since 0.2. */

/* The optimizer's whole state (kind, settings, frozen set, step count,
 * moments) as a self-describing little-endian byte string, for training
 * checkpoints. save with dst NULL reports the size; load validates
 * everything (ELM_E_FORMAT, nothing changed, when it does not fit this
 * optimizer's kind and model). A capacity too small fails with
 * ELM_E_INVALID and still reports the size needed. Since 0.2. */
ELM_API int elm_optimizer_save_state(const elm_optimizer *opt, void *dst,
                                     size_t capacity, size_t *size);
ELM_API int elm_optimizer_load_state(elm_optimizer *opt, const void *src,
                                     size_t size);

/* ---------------------------------------------------------------------------
 * 9. elm_dataset: BATCHES FROM ARRAYS, FILES AND YOUR OWN SOURCES
 *
 * A dataset yields batches of (x (B, T, n_in), target (B, T, n_target)
 * and/or labels (B, n_label), lengths (B)). Every dataset reads one
 * source: caller arrays (borrowed, never copied), event lists, one of the
 * file formats below, or a source written by the caller (elm_source).
 * Order: each epoch visits every sample once, in order or in a
 * permutation drawn from (seed, epoch); identical on every platform.
 * Sources that draw at random every epoch (SHD-Adding pairs, NeuronIO
 * windows) draw from (seed, epoch, sample) as well, so a batch is a
 * function of the settings and its position only, with or without
 * prefetch, and a validation pass (always epoch 0) sees the same data
 * every time. (The ListOps generator draws one fixed set at creation.)
 * The last partial batch is dropped (ELM_DATASET_DROP_LAST = 1) or padded
 * with zero samples of length 0, which losses and metrics skip.
 * One thread at a time per dataset. With ELM_DATASET_PREFETCH = 1 a worker
 * thread owned by the dataset builds the next batch while the caller
 * trains on the current one; results are identical to PREFETCH = 0.
 *
 * File sources refuse malformed input with an error naming the file and
 * the problem (ELM_E_IO, ELM_E_FORMAT, ELM_E_TRUNCATED, ELM_E_LIMIT,
 * ELM_E_INVALID for values out of their domain); a file is checked
 * completely when it is opened, so a batch never fails half way.
 */
typedef struct elm_dataset elm_dataset;

typedef enum elm_dataset_option {
    ELM_DATASET_SHUFFLE = 1,   /* 0 | 1, default 1 */
    ELM_DATASET_SEED = 2,      /* integer in [0, 2^53], default 0 */
    ELM_DATASET_DROP_LAST = 3, /* 0 | 1, default 0 (pad) */
    ELM_DATASET_PREFETCH = 4   /* 0 | 1, default 0. Since 0.4. */
} elm_dataset_option;

/* N samples of T steps: x (N, T, n_in); target (N, T, n_target) or NULL
 * (n_target 0); labels (N, n_label) int32 or NULL (n_label 0; 1 = one
 * label per sample, T = one per step); lengths (N) in [1, T], or NULL for
 * all T. Lengths are checked at creation and again as batches are read;
 * the values of x, target and labels are not checked here (the losses
 * check them). Since 0.2. */
ELM_API int elm_dataset_from_arrays(size_t N, size_t T, size_t n_in,
                                    const float *x, const float *target,
                                    size_t n_target, const int32_t *labels,
                                    size_t n_label, const int64_t *lengths,
                                    elm_dataset **out);
/* Frees the dataset (stopping its prefetch worker) and, for caller
 * sources, calls their free(). Split halves share their source, which
 * lives until the last of them is freed. */
ELM_API void elm_dataset_free(elm_dataset *ds); /* Since 0.2. */
ELM_API int elm_dataset_set(elm_dataset *ds, elm_dataset_option key,
                            double value); /* Since 0.2. */
/* An option's current value; ELM_E_UNKNOWN_NAME for an unknown key.
 * Since 0.5. */
ELM_API int elm_dataset_get(const elm_dataset *ds, elm_dataset_option key,
                            double *value);

typedef enum elm_dataset_dim {
    ELM_DATASET_SAMPLES = 1, /* N (0: a streaming source of unknown size) */
    ELM_DATASET_STEPS = 2,   /* T */
    ELM_DATASET_INPUTS = 3,  /* n_in */
    ELM_DATASET_TARGETS = 4, /* n_target */
    ELM_DATASET_LABELS = 5   /* n_label */
} elm_dataset_dim;
ELM_API int elm_dataset_size(const elm_dataset *ds, elm_dataset_dim what,
                             size_t *value); /* Since 0.2. */

/* Start epoch `epoch` (its order is a function of seed and epoch only).
 * Changes of shuffle and seed take effect here (next() before any
 * start_epoch is epoch 0); drop_last applies from the next batch. */
ELM_API int elm_dataset_start_epoch(elm_dataset *ds, uint64_t epoch); /* Since 0.2. */
/* The next batch of B samples into the caller's arrays (shapes as above
 * with N = B; target/labels/lengths may be NULL when not wanted). *count is
 * the number of real samples; the rest of the batch is padding (zeros,
 * label 0, length 0). At the end of the epoch *count is 0 and the whole
 * batch is padding. A failure (a caller source's error, a borrowed array
 * changed since creation) consumes nothing (the arrays may have been
 * written): the same call can be retried. Since 0.2. */
ELM_API int elm_dataset_next(elm_dataset *ds, size_t B, float *x,
                             float *target, int32_t *labels, int64_t *lengths,
                             size_t *count);

/* A deterministic train/validation split: a permutation of the N samples
 * drawn from `seed`; its first n_val samples form *val, the rest *train
 * (order within each half: increasing sample index before shuffling).
 * Both halves read ds's source (shared, reference-counted) and start with
 * ds's settings; ds itself stays usable and must still be freed. Needs a
 * random-access source (ELM_E_UNSUPPORTED for a streaming elm_source) and
 * 1 <= n_val < N. Both or neither are created. Since 0.4. */
ELM_API int elm_dataset_split(const elm_dataset *ds, size_t n_val,
                              uint64_t seed, elm_dataset **train,
                              elm_dataset **val);

/* Event lists (spike trains), binned: sample i has the events
 * [offsets[i], offsets[i+1]) of times (ms, finite, >= 0) and channels
 * (in [0, n_in)); x[t, c] counts the events of channel c with
 * t * dt_ms <= time < (t + 1) * dt_ms. Events at or after duration_ms are
 * cut (as the SHD code cuts at 1 s); T = ceil(duration_ms / dt_ms).
 * labels (N) int32 or NULL. The arrays are borrowed (they must outlive the
 * dataset) and checked at creation: a negative or NaN time, a channel
 * >= n_in or decreasing offsets fail with ELM_E_INVALID naming the sample
 * and event. Since 0.4. */
ELM_API int elm_dataset_from_events(size_t N, size_t n_in,
                                    const int64_t *offsets,
                                    const float *times,
                                    const int32_t *channels,
                                    const int32_t *labels, double dt_ms,
                                    double duration_ms, elm_dataset **out);

/* Your own source. Either random access (read, with N >= 1: shuffling and
 * splits work) or streaming (next, with N = 0 or the size if known:
 * samples come in the source's own order, shuffle is ignored, reset
 * starts an epoch). Every callback returns 0 on success or a negative
 * ELM_E_* code; next returns 1 when the epoch has no more samples. The
 * buffers passed are x (T, n_in), target (T, n_target) or NULL, labels
 * (n_label) or NULL, all zero-filled, and *length preset to T (set it to
 * the sample's length in [1, T]). Callbacks run on one thread at a time
 * per source (the prefetch worker when PREFETCH is on). free (may be
 * NULL) receives user when the last dataset using the source is freed,
 * and also when elm_dataset_from_source fails. The struct is copied.
 * Since 0.4. */
typedef struct elm_source {
    size_t N, T, n_in, n_target, n_label;
    int (*read)(void *user, uint64_t epoch, size_t i, float *x,
                float *target, int32_t *labels, int64_t *length);
    int (*next)(void *user, float *x, float *target, int32_t *labels,
                int64_t *length);
    int (*reset)(void *user, uint64_t epoch); /* may be NULL */
    void (*free)(void *user);                 /* may be NULL */
    void *user;
} elm_source;
ELM_API int elm_dataset_from_source(const elm_source *src, elm_dataset **out);

/* Spiking Heidelberg Digits (Cramer et al. 2020): shd_train.h5 or
 * shd_test.h5 (spikes/times in s, spikes/units in [0, 700), labels in
 * [0, 20); docs/datasets/shd.md), read whole and checked at open with
 * libhdf5 (ELM_E_UNSUPPORTED with a clear message when libelm was built
 * without it). Binned exactly as the paper's code (numpy arange edges
 * k * dt and digitize): T = len(arange(0, max + dt, dt)) - 1, usually
 * ceil(max_time_ms / dt_ms); spikes at or after T * dt_ms are cut; x (T,
 * 700) counts the spikes per bin; labels (1). max_time_ms >= 0 (0: 1000),
 * dt_ms > 0, T at most 10^6 (ELM_E_LIMIT). A sample without spikes is all
 * zeros. Since 0.4. */
ELM_API int elm_dataset_open_shd(const char *path, double dt_ms,
                                 double max_time_ms, elm_dataset **out);
/* SHD-Adding: samples_per_epoch pairs of two independently drawn SHD
 * samples (with replacement), concatenated in time (x (2 T, 700)); label
 * (label1 mod 10) + (label2 mod 10), 19 classes. Pairs are drawn from
 * (seed, epoch, sample). A split divides the pair slots, not the
 * recordings: both halves draw from every recording of the file (the
 * paper holds recordings out for validation). Since 0.4. */
ELM_API int elm_dataset_open_shd_adding(const char *path, double dt_ms,
                                        double max_time_ms,
                                        size_t samples_per_epoch,
                                        elm_dataset **out);

/* NeuronIO (Beniaguev et al. 2021), from the binary layout written by
 * `python3 -m elm.neuronio convert` (docs/datasets/neuronio.md),
 * memory-mapped and checked completely at open (ELM_E_IO, ELM_E_FORMAT,
 * ELM_E_TRUNCATED, ELM_E_LIMIT, ELM_E_CHECKSUM, ELM_E_VERSION).
 * samples_per_epoch random windows of window_ms steps (1 ms each), each
 * drawn from (seed, epoch, sample) as the paper's loader draws them: a
 * simulation uniformly, a start uniformly in [500, duration - window_ms)
 * (the first 500 ms skipped). x (window_ms, 1278): +1 where one of the 639
 * excitatory segments spikes, -1 for the 639 inhibitory ones; target
 * (window_ms, 2): spike (0 | 1) and (min(soma, -55 mV) + 67.7) * 0.1.
 * Since 0.4. */
ELM_API int elm_dataset_open_neuronio(const char *path, size_t window_ms,
                                      size_t samples_per_epoch,
                                      elm_dataset **out);

typedef enum elm_neuronio_mode {
    /* The official protocol: 500 ms windows overlapping by the 150 ms
     * burn-in, burn-in predictions of every window but the first
     * discarded. */
    ELM_NEURONIO_WINDOWS = 0,
    /* One continuous run over each 6000 ms simulation (a streaming
     * state cannot forget, so no window boundaries). */
    ELM_NEURONIO_CONTINUOUS = 1
} elm_neuronio_mode;

typedef struct elm_neuronio_metrics {
    double auc;               /* spike ROC AUC */
    double tp_at_fp_0025;     /* true-positive rate at FP rate 0.0025 */
    double pauc_at_fp_0025;   /* partial AUC up to FP rate 0.0025 */
    double tp_at_fp_01;       /* at FP rate 0.01 */
    double pauc_at_fp_01;
    double soma_rmse;         /* mV */
    double soma_mae;          /* mV */
    double soma_explained_variance; /* percent */
    size_t n_simulations;     /* evaluated (<= 24 output spikes) */
    size_t n_spikes;          /* output spikes scored */
} elm_neuronio_metrics;

/* Evaluates a NeuronIO model (n_in 1278, n_out 2) on a converted file
 * with the protocol of model.md §5: the first 500 ms of each simulation
 * ignored, simulations with more than 24 output spikes excluded, spike
 * score sigmoid(y0), soma y1 / 0.1 z-scored and rescaled to the target's
 * mean and deviation (over the whole file), ROC as scikit-learn's
 * roc_curve. Reproduces the official code's numbers (docs/datasets/
 * neuronio_eval.md). When the scored steps hold no output spike the five
 * spike metrics are NaN (undefined) and the call still succeeds. *out is
 * written only on success. Since 0.4. */
ELM_API int elm_neuronio_evaluate(const elm_model *model, const char *path,
                                  elm_neuronio_mode mode,
                                  elm_neuronio_metrics *out);

/* IDX files (MNIST, Fashion-MNIST; gzip-compressed or raw, detected by
 * content) as sequences of pixels / 255: ELM_IDX_PIXELS gives x (784, 1),
 * ELM_IDX_ROWS x (28, 28) (generally (rows * cols, 1) and (rows, cols)).
 * permute = 1 applies one fixed pixel permutation drawn from
 * permute_seed to every image (permuted sequential MNIST). labels (1),
 * passed through as stored (0..255; the loss checks them against its
 * class count). Pixels stay uint8 in memory. Since 0.4. */
typedef enum elm_idx_sequence {
    ELM_IDX_PIXELS = 0,
    ELM_IDX_ROWS = 1
} elm_idx_sequence;
ELM_API int elm_dataset_open_idx(const char *images, const char *labels,
                                 elm_idx_sequence seq, int permute,
                                 uint64_t permute_seed, elm_dataset **out);

/* LRA ListOps (docs/datasets/listops.md). One-hot channels
 * (ELM_LISTOPS_VOCAB = 15): 0-9 the digits, 10 [MIN, 11 [MAX, 12 [MED,
 * 13 [SM, 14 ]; the TSV's parentheses are dropped, as the LRA pipeline
 * does. MED is int(median) (the lower mean of the middle pair), SM the sum
 * mod 10. labels (1) in [0, 10); T = max_length; lengths per sample.
 * open reads an LRA TSV file (header "Source\tTarget", LF or CRLF) and
 * checks that every Target equals the value of its expression;
 * max_length 0 = the longest sequence in the file, else longer sequences
 * fail with ELM_E_LIMIT naming the line (LRA would truncate them).
 * generate draws a fixed set of N expressions, sample i from (seed, i),
 * with the task definition (operator with probability 0.25 below depth 10,
 * 2 to 10 arguments), redrawing until the token count lies in
 * [min_length, max_length] (inclusive; LRA's bounds are strict: pass 501,
 * 1999 to match); 1 <= min_length <= max_length <= 10^6. Since 0.4. */
#define ELM_LISTOPS_VOCAB 15
ELM_API int elm_dataset_open_listops(const char *path, size_t max_length,
                                     elm_dataset **out);
ELM_API int elm_dataset_generate_listops(size_t N, uint64_t seed,
                                         size_t min_length,
                                         size_t max_length,
                                         elm_dataset **out);

/* ---------------------------------------------------------------------------
 * 10. elm_trainer: THE TRAINING AND EVALUATION LOOP
 *
 * A trainer ties a model, an optimizer and a loss to a tape for batches of
 * B samples of at most T_max steps, and owns every workspace. One training
 * step: input dropout (each x element zeroed with probability p, no
 * rescaling, as the official SHD code), tape forward, loss, backward,
 * optimizer step. fit() runs epochs over a dataset, evaluates the
 * validation set after each, keeps the parameters of the best epoch
 * (restored into the model at the end), stops early after `patience`
 * epochs without improvement, and calls a progress callback. Results are
 * deterministic for a given seed.
 *
 * Non-finite loss or gradients: the step is reported (its number in the
 * message); policy ELM_NONFINITE_STOP fails with ELM_E_NONFINITE,
 * ELM_NONFINITE_SKIP counts it (ELM_METRIC_SKIPPED) and goes on. Either
 * way the model is not updated by that step.
 *
 * The trainer borrows model, optimizer and loss (they must outlive it and
 * the optimizer must belong to the model). One thread at a time.
 */
typedef struct elm_trainer elm_trainer;

typedef enum elm_train_option {
    ELM_TRAIN_DROPOUT = 1,      /* input dropout p in [0, 1), default 0 */
    ELM_TRAIN_EVAL_DROPOUT = 2, /* 0 | 1: dropout at evaluation too, 0 */
    ELM_TRAIN_SEED = 3,         /* dropout, default 0 (the order of the
                                   batches is the dataset's own seed) */
    ELM_TRAIN_EPOCHS = 4,       /* >= 1, epochs of the whole run, default 1 */
    ELM_TRAIN_PATIENCE = 5,     /* early stopping, 0 = off (default) */
    ELM_TRAIN_MAX_BATCHES = 6,  /* batches per epoch, 0 = all (default) */
    ELM_TRAIN_NONFINITE = 7,    /* ELM_NONFINITE_STOP (default) | _SKIP */
    ELM_TRAIN_SELECT = 8,       /* metric choosing the best epoch:
                                   ELM_METRIC_VAL_LOSS (default, lower is
                                   better), ELM_METRIC_VAL_ACCURACY or
                                   ELM_METRIC_VAL_AUC (higher is better) */
    ELM_TRAIN_THREADS = 9       /* threads of training and evaluation, in
                                   [1, B], default 1 (elm_tape_set_threads,
                                   elm_state_set_threads); not stored in
                                   checkpoints: a load keeps the trainer's
                                   count. Since 0.5. */
} elm_train_option;

typedef enum elm_nonfinite_policy {
    ELM_NONFINITE_STOP = 0,
    ELM_NONFINITE_SKIP = 1
} elm_nonfinite_policy;

typedef enum elm_metric {
    ELM_METRIC_TRAIN_LOSS = 1,    /* mean over the last epoch's steps */
    ELM_METRIC_VAL_LOSS = 2,
    ELM_METRIC_VAL_ACCURACY = 3,  /* classification losses */
    ELM_METRIC_VAL_AUC = 4,       /* NeuronIO: ROC AUC of sigmoid(y0) */
    ELM_METRIC_VAL_RMSE = 5,      /* NeuronIO: soma RMSE in mV (y1 / 0.1);
                                     MSE: RMSE over all outputs */
    ELM_METRIC_EPOCH = 6,         /* epochs completed */
    ELM_METRIC_STEP = 7,          /* optimizer steps taken */
    ELM_METRIC_BEST_EPOCH = 8,    /* 1-based; 0 before any validation */
    ELM_METRIC_BEST = 9,          /* value of the selection metric there */
    ELM_METRIC_SKIPPED = 10,      /* steps skipped as non-finite */
    ELM_METRIC_LAST_LOSS = 11,    /* loss of the last training step */
    ELM_METRIC_LR = 12,           /* learning rate of the next step */
    ELM_METRIC_BATCH = 13         /* batches elm_trainer_fit has taken in
                                     the current epoch (0 at its start;
                                     kept in checkpoints). Since 0.5. */
} elm_metric;

typedef enum elm_train_event {
    ELM_EVENT_STEP = 1,  /* after each training step */
    ELM_EVENT_EPOCH = 2  /* after each epoch's validation */
} elm_train_event;

/* Progress callback: query the trainer with elm_trainer_metric. Return 0 to
 * go on, non-zero to interrupt fit() (fit then returns ELM_OK; see fit). */
typedef int (*elm_progress_fn)(void *user, const elm_trainer *trainer,
                               int event);

/* Since 0.2. */
ELM_API int elm_trainer_create(elm_model *model, elm_optimizer *opt,
                               const elm_loss *loss, size_t B, size_t T_max,
                               unsigned tape_flags, elm_trainer **out);
ELM_API void elm_trainer_free(elm_trainer *trainer);
ELM_API int elm_trainer_set(elm_trainer *trainer, elm_train_option key,
                            double value);
ELM_API int elm_trainer_get(const elm_trainer *trainer, elm_train_option key,
                            double *value);
/* The batch size and the longest sequence the trainer was created for.
 * Since 0.5. */
ELM_API int elm_trainer_shape(const elm_trainer *trainer, size_t *B,
                              size_t *T_max);

/* One training step on a batch: x (B, T, n_in), target/labels as the loss
 * wants, lengths (B) or NULL. *loss (may be NULL) gets the batch loss.
 * x is not modified (dropout works on a copy). Since 0.2. */
ELM_API int elm_trainer_step(elm_trainer *trainer, const float *x, size_t T,
                             const float *target, const int32_t *labels,
                             const int64_t *lengths, double *loss);

/* The same step from event (spike) input in the CSR form of
 * elm_tape_forward_events (rows r = b T + t, offsets (B T + 1), values
 * NULL for 1), checked first. Dropout draws once per non-zero event in
 * row and channel order, so events with increasing channels train exactly
 * as the dense x would (same drops, same model afterwards); the arrays are
 * read during the call only and never modified. Since 0.5. */
ELM_API int elm_trainer_step_events(elm_trainer *trainer, size_t T,
                                    const int64_t *offsets,
                                    const int32_t *channels,
                                    const float *values, const float *target,
                                    const int32_t *labels,
                                    const int64_t *lengths, double *loss);

/* Loss and metrics of the model on a whole dataset (one pass in the
 * dataset's epoch-0 order, no update); results go to the VAL metrics.
 * VAL_LOSS weighs each batch's loss by its counted steps; the NeuronIO AUC
 * pools every counted step. Since 0.2. */
ELM_API int elm_trainer_evaluate(elm_trainer *trainer, elm_dataset *ds);

/* Train over `train` until ELM_TRAIN_EPOCHS epochs are complete in total
 * (ELM_METRIC_EPOCH counts them) or early stopping ends the run,
 * validating on `val` after each epoch (val may be NULL: then the best
 * epoch is the last). At the end the best epoch's parameters are restored
 * into the model. When the callback returns non-zero the run is only
 * interrupted: the model keeps its current parameters, a checkpoint is
 * saved if one is set (elm_trainer_set_checkpoint), and the next fit()
 * (or one on a trainer loaded from the checkpoint) continues exactly where
 * it stopped, even within an epoch. cb may be NULL. Since 0.2; resumable
 * and counting epochs in total since 0.3. */
ELM_API int elm_trainer_fit(elm_trainer *trainer, elm_dataset *train,
                            elm_dataset *val, elm_progress_fn cb, void *user);

ELM_API int elm_trainer_metric(const elm_trainer *trainer, elm_metric key,
                               double *value);

/* ---------------------------------------------------------------------------
 * 11. FILES: MODELS, METADATA, TRAINING CHECKPOINTS
 *
 * The .elm format (docs/file-format.md) holds the hyper-parameters, the
 * routing table and every parameter tensor, little-endian on every platform,
 * closed by a CRC-32 of the whole file; optional sections carry metadata,
 * the optimizer state and training progress. Readers skip optional sections
 * they do not know, and refuse a file of a newer major format version
 * (ELM_E_VERSION).
 *
 * Loading validates everything before anything is allocated or changed:
 *   ELM_E_TRUNCATED  the data ends before the size its header declares
 *   ELM_E_FORMAT     not a .elm file (magic), or a malformed section
 *   ELM_E_CHECKSUM   the CRC-32 disagrees: the bytes were damaged
 *   ELM_E_VERSION    a newer major version, or a required section unknown
 *   ELM_E_LIMIT      a declared size larger than the data holding it
 *   ELM_E_SHAPE      a tensor's shape disagrees with the hyper-parameters
 *   ELM_E_CONFIG     the hyper-parameters are inconsistent
 *   ELM_E_NONFINITE  a parameter is NaN or Inf (or a tau <= 0)
 * each with a message naming the section, tensor or key.
 *
 * Saving to a path is atomic: the bytes go to a temporary file in the same
 * directory, which is flushed to disk and then renamed over `path`. A crash
 * or a full disk leaves the old file intact and no temporary behind.
 *
 * The buffer functions follow one rule: with dst NULL (or capacity too
 * small, ELM_E_INVALID) they only report the size in *size.
 */

/* Save a model (hyper-parameters, routing, parameters, metadata).
 * Since 0.3. */
ELM_API int elm_model_save_buffer(const elm_model *model, void *dst,
                                  size_t capacity, size_t *size);
ELM_API int elm_model_save(const elm_model *model, const char *path);

/* Load a model from a .elm file or buffer (a training checkpoint loads as
 * its model). The model owns its copy: src may be freed afterwards.
 * Since 0.3. */
ELM_API int elm_model_load_buffer(const void *src, size_t size,
                                  elm_model **out);
ELM_API int elm_model_load(const char *path, elm_model **out);

/* Free-form metadata travelling with the model (the dataset it was trained
 * on, the metrics it reached, its origin): UTF-8 keys of 1 to 255 bytes,
 * values up to 1 MiB, at most 1024 entries, kept in insertion order. A
 * NULL value removes the key. get returns a borrowed string, valid until the
 * key is set again or the model is freed, or NULL when the key is absent.
 * Setting metadata modifies the model (see the thread rules). Since 0.3. */
ELM_API int elm_model_set_meta(elm_model *model, const char *key,
                               const char *value);
ELM_API const char *elm_model_get_meta(const elm_model *model,
                                       const char *key);
ELM_API size_t elm_model_meta_count(const elm_model *model);
ELM_API const char *elm_model_meta_key(const elm_model *model, size_t i);

/* Training checkpoints: the model with the optimizer state (settings,
 * moments, step count and so the schedule position), the trainer's options
 * and progress (epoch, batch within the epoch, the running epoch loss, the
 * best epoch and its parameters, early-stopping count) and the dropout
 * generator. Loading one into a trainer built the same way (same
 * hyper-parameters, optimizer kind, loss, B) and calling fit() with the
 * same datasets continues exactly the run that was saved: the result is
 * bit-identical to the uninterrupted run. load changes nothing on failure
 * (ELM_E_CONFIG when the checkpoint's model or optimizer differs from the
 * trainer's). Since 0.3. */
ELM_API int elm_trainer_save_buffer(const elm_trainer *trainer, void *dst,
                                    size_t capacity, size_t *size);
ELM_API int elm_trainer_save(const elm_trainer *trainer, const char *path);
ELM_API int elm_trainer_load_buffer(elm_trainer *trainer, const void *src,
                                    size_t size);
ELM_API int elm_trainer_load(elm_trainer *trainer, const char *path);

/* Let fit() save a checkpoint to `path` after every epoch and, when
 * every_steps > 0, after every `every_steps` optimizer steps (and when a
 * progress callback stops it). NULL turns this off. A failed save fails
 * fit() with the save's error. The path is copied. Since 0.3. */
ELM_API int elm_trainer_set_checkpoint(elm_trainer *trainer, const char *path,
                                       uint64_t every_steps);

/* ---------------------------------------------------------------------------
 * 12. YAML: MODEL CONFIGS AND TRAINING CONFIGS
 *
 * Model configs are YAML mappings of the hyper-parameter names of
 * section 3 (elm_param_name; the reference's aliases are accepted), with
 * enums by name:
 *
 *   formulation: v1                  # v1 | v2
 *   num_input: 1278
 *   mlp_activation: silu             # relu | silu
 *   input_to_synapse_routing: neuronio   # none | random | neuronio
 *   learn_memory_tau: false          # booleans: true | false
 *
 * JSON is YAML, so the official model_config.json files read as they are.
 * Unknown keys, duplicate keys, values of the wrong type or out of bounds,
 * and syntax errors fail (ELM_E_UNKNOWN_NAME, ELM_E_INVALID, ELM_E_FORMAT)
 * with a message giving line and column ("config.yaml:4:3: unknown key
 * 'num_memroy' in 'model'"). Writing emits every key in a fixed order, so
 * YAML -> config -> YAML is stable.
 */

/* Parse YAML text of `len` bytes (a mapping of model keys). Since 0.3. */
ELM_API int elm_config_from_yaml(const char *text, size_t len,
                                 elm_config **out);
ELM_API int elm_config_load_yaml(const char *path, elm_config **out);
/* Write the config as YAML text (NUL-terminated; *size counts the NUL). */
ELM_API int elm_config_to_yaml(const elm_config *cfg, char *dst,
                               size_t capacity, size_t *size); /* Since 0.3. */
ELM_API int elm_config_save_yaml(const elm_config *cfg, const char *path); /* Since 0.3. */

/* The type of a value, for model keys (below) and training-config keys
 * (elm_train_config_key). Since 0.3. */
typedef enum elm_value_type {
    ELM_VALUE_NUMBER = 1, /* double */
    ELM_VALUE_INTEGER = 2,/* double holding an exact integer */
    ELM_VALUE_BOOL = 3,   /* 0 | 1 */
    ELM_VALUE_ENUM = 4,   /* a name from a fixed set (get/set_string), or
                             its C enum value through get/set */
    ELM_VALUE_STRING = 5, /* free text, e.g. a path */
    ELM_VALUE_LIST = 6    /* a list of numbers */
} elm_value_type;

/* Model keys as a config editor or a binding needs them, from the tables
 * the YAML reader uses: a key's value type (NUMBER, INTEGER, BOOL or
 * ENUM); for an ENUM key the written name of a value ("silu", a static
 * string; NULL when the key is not an enum or the value has no name) and
 * the value of a name (the official spellings such as "neuronio_routing"
 * too; ELM_E_UNKNOWN_NAME for an unknown key or name, ELM_E_INVALID for a
 * key that is not an enum). Since 0.5. */
ELM_API int elm_param_type(elm_param key, elm_value_type *type);
ELM_API const char *elm_param_value_name(elm_param key, int value);
ELM_API int elm_param_value_from_name(elm_param key, const char *name,
                                      int *value);

/* A training config: everything a training run needs, in five sections.
 * Keys are "section.name" strings; docs/training.md lists them all with
 * their defaults and bounds, and elm_train_config_key() enumerates them.
 *
 *   model:      the hyper-parameters (as above)
 *   data:       source, train, test, val_fraction, batch_size, dt,
 *               max_time, window, shuffle, seed, drop_last, prefetch,
 *               batches_per_epoch, sequence, permute
 *   optimizer:  kind (sgd | adam | adamw | adamax) and the settings of
 *               section 8 by their lower-case names (lr, momentum,
 *               dampening, nesterov, beta1, beta2, eps, weight_decay,
 *               clip_norm, schedule: constant | cosine, total_steps,
 *               warmup_steps, min_lr); unset ones take the kind's default
 *   loss:       kind (ce_last | ce_all | neuronio | mse), burn_in,
 *               weights (a list of numbers; empty = the kind's default)
 *   training:   epochs, patience, max_batches, dropout, eval_dropout,
 *               seed, nonfinite (stop | skip), select (val_loss |
 *               val_accuracy | val_auc), checkpoint (a path),
 *               checkpoint_every (steps), tape_checkpointing (bool)
 *
 * A training config owns its model config. One thread at a time.
 */
typedef struct elm_train_config elm_train_config;

/* Defaults everywhere; model.num_input and model.num_output unset.
 * Since 0.3. */
ELM_API int elm_train_config_create(elm_train_config **out);
ELM_API void elm_train_config_free(elm_train_config *tc);
ELM_API int elm_train_config_from_yaml(const char *text, size_t len,
                                       elm_train_config **out);
ELM_API int elm_train_config_load_yaml(const char *path,
                                       elm_train_config **out);
ELM_API int elm_train_config_to_yaml(const elm_train_config *tc, char *dst,
                                     size_t capacity, size_t *size);
ELM_API int elm_train_config_save_yaml(const elm_train_config *tc,
                                       const char *path);

/* The i-th key (i from 0; ELM_E_INVALID past the last) and its type. */
ELM_API int elm_train_config_key(size_t i, const char **key,
                                 elm_value_type *type); /* Since 0.3. */
/* Typed access by key. ELM_E_UNKNOWN_NAME for an unknown key, ELM_E_INVALID
 * (unchanged) for a value of the wrong type or out of bounds. Strings are
 * copied on set; get returns a borrowed string ("" when unset) valid until
 * the key is set again. get_list copies up to `capacity` values and
 * reports the count in *n. */
ELM_API int elm_train_config_set(elm_train_config *tc, const char *key,
                                 double value); /* Since 0.3. */
ELM_API int elm_train_config_get(const elm_train_config *tc, const char *key,
                                 double *value); /* Since 0.3. */
ELM_API int elm_train_config_set_string(elm_train_config *tc,
                                        const char *key, const char *value); /* Since 0.3. */
ELM_API int elm_train_config_get_string(const elm_train_config *tc,
                                        const char *key, const char **value); /* Since 0.3. */
ELM_API int elm_train_config_set_list(elm_train_config *tc, const char *key,
                                      const double *values, size_t n); /* Since 0.3. */
ELM_API int elm_train_config_get_list(const elm_train_config *tc,
                                      const char *key, double *values,
                                      size_t capacity, size_t *n); /* Since 0.3. */
/* The model section, borrowed and mutable (lives as long as tc). */
ELM_API elm_config *elm_train_config_model(elm_train_config *tc); /* Since 0.3. */

/* Build the optimizer, loss and trainer a config describes, for `model`
 * (which must match the model section) and sequences of at most T_max
 * steps; the trainer gets data.batch_size, every training.* option and
 * the checkpoint path. All three or none are created. Free the trainer
 * first, then the optimizer and the loss. training.checkpoint is used as
 * written: a relative path is relative to the working directory, unlike
 * the data paths of elm_train_config_open_data (the config does not know
 * its own file); re-point it with elm_trainer_set_checkpoint, as the elm
 * command does (it resolves it against the config's directory). Since 0.3. */
ELM_API int elm_train_config_build(const elm_train_config *tc,
                                   elm_model *model, size_t T_max,
                                   elm_optimizer **opt, elm_loss **loss,
                                   elm_trainer **trainer);

/* The datasets of a config's data section. data.source picks the
 * constructor (section 9): "shd" (data.dt, data.max_time or 1000 ms),
 * "shd_adding" and "neuronio" (data.batches_per_epoch x data.batch_size
 * random samples per epoch; NeuronIO windows of data.window or 500 ms),
 * "idx" (data.train / data.train_labels, data.sequence "pixels" or "rows",
 * data.permute with data.seed), "listops" (TSV; data.window = maximum
 * length, 0 = the longest), "listops_generate" (no file; lengths 500 to
 * data.window or 2000). Paths are relative to base_dir (NULL: the working
 * directory). *train always; *val when data.val_fraction > 0 (a split of
 * the training data by data.seed; val must then be non-NULL); *test when
 * data.test is set and test is non-NULL (else NULL). The training set gets
 * data.shuffle, data.seed, data.drop_last, data.prefetch; validation and
 * test sets are read in order, padded. All or none are created.
 * Since 0.4. */
ELM_API int elm_train_config_open_data(const elm_train_config *tc,
                                       const char *base_dir,
                                       elm_dataset **train, elm_dataset **val,
                                       elm_dataset **test);

#ifdef __cplusplus
}
#endif
#endif /* ELM_H */
