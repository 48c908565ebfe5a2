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
#define ELM_VERSION_MINOR 1
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
    ELM_E_INTERNAL = -11     /* a bug in libelm: please report it */
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
                           size_t *value);

/* Name, shape and trainability of the i-th parameter tensor, in buffer
 * order (i < ELM_SIZE_NUM_TENSORS). `name` is borrowed. Since 0.1. */
ELM_API int elm_model_param_info(const elm_model *model, size_t i,
                                 const char **name, int *ndim,
                                 int64_t shape[ELM_MAX_DIMS],
                                 int *trainable);

/* Shape of a named parameter (libelm name or official alias). */
ELM_API int elm_model_param_shape(const elm_model *model, const char *name,
                                  int *ndim, int64_t shape[ELM_MAX_DIMS]);

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
ELM_API const float *elm_model_params(const elm_model *model);

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
                             elm_state **out);
ELM_API void elm_state_free(elm_state *state);
ELM_API size_t elm_state_batch(const elm_state *state);

/* One time step for every stream: x (B, n_in) -> y (B, n_out). y may be
 * NULL when the output is not needed. No allocation. Since 0.1. */
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

/* Zero the state of one stream (0 <= stream < B) or of all streams
 * (ELM_ALL_STREAMS). Since 0.1. */
ELM_API int elm_state_reset(elm_state *state, int64_t stream);

/* The recurrent state as (B, ELM_SIZE_STATE) floats: per stream the
 * synaptic traces (v1, n_s) or the branch traces (n_b; v1 models whose
 * synapses share one time constant per branch store branch traces too),
 * followed by the memory (n_m). `n` must equal B * ELM_SIZE_STATE.
 * set refuses NaN/Inf. Use these to checkpoint a simulation. Since 0.1. */
ELM_API int elm_state_get(const elm_state *state, float *dst, size_t n);
ELM_API int elm_state_set(elm_state *state, const float *src, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* ELM_H */
