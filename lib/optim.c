/* Optimizers: SGD (momentum, dampening, Nesterov), Adam, AdamW and Adamax
 * with PyTorch's single-tensor update formulas in float32, global-norm
 * gradient clipping, constant or cosine learning-rate schedules with a
 * linear warm-up, per-tensor freezing, and a checksummed state string.
 *
 * A step is transactional. The moments are double-buffered: a step reads
 * the current set and writes the other one, the parameters are backed up
 * before they are updated in place, and only when every new value is
 * finite and the model's derived data has been refreshed does the step
 * commit (swap the moment sets, count the step). Otherwise the parameters
 * are restored and nothing has changed. Every buffer is allocated at
 * creation; a step allocates nothing itself. */
#include "elm_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_KEYS ELM_OPTIM_MIN_LR
#define MAX_STEPS 9007199254740992.0 /* 2^53: integers exact in a double */
#define TAU_FLOOR 1e-6f              /* ms; the same floor prepare.c uses */
#define PI 3.14159265358979323846

/* Which kinds use a key. */
#define K_SGD (1u << ELM_OPTIM_SGD)
#define K_ADAMS ((1u << ELM_OPTIM_ADAM) | (1u << ELM_OPTIM_ADAMW) | (1u << ELM_OPTIM_ADAMAX))
#define K_ALL (K_SGD | K_ADAMS)

typedef struct key_info {
    const char *name;
    double lo, hi;
    bool lo_open, hi_open; /* bound excluded */
    bool integer;
    unsigned kinds;
} key_info;

static const key_info keys[N_KEYS + 1] = {
    [ELM_OPTIM_LR] = {"lr", 0, INFINITY, true, true, false, K_ALL},
    [ELM_OPTIM_MOMENTUM] = {"momentum", 0, 1, false, true, false, K_SGD},
    [ELM_OPTIM_DAMPENING] = {"dampening", 0, 1, false, false, false, K_SGD},
    [ELM_OPTIM_NESTEROV] = {"nesterov", 0, 1, false, false, true, K_SGD},
    [ELM_OPTIM_BETA1] = {"beta1", 0, 1, false, true, false, K_ADAMS},
    [ELM_OPTIM_BETA2] = {"beta2", 0, 1, false, true, false, K_ADAMS},
    [ELM_OPTIM_EPS] = {"eps", 0, INFINITY, true, true, false, K_ADAMS},
    [ELM_OPTIM_WEIGHT_DECAY] = {"weight_decay", 0, INFINITY, false, true, false, K_ALL},
    [ELM_OPTIM_CLIP_NORM] = {"clip_norm", 0, INFINITY, false, true, false, K_ALL},
    [ELM_OPTIM_SCHEDULE] = {"schedule", 0, 1, false, false, true, K_ALL},
    [ELM_OPTIM_TOTAL_STEPS] = {"total_steps", 1, MAX_STEPS, false, false, true, K_ALL},
    [ELM_OPTIM_WARMUP_STEPS] = {"warmup_steps", 0, MAX_STEPS, false, false, true, K_ALL},
    [ELM_OPTIM_MIN_LR] = {"min_lr", 0, INFINITY, false, true, false, K_ALL},
};

static const char *const kind_names[] = {NULL, "sgd", "adam", "adamw", "adamax"};

struct elm_optimizer {
    elm_model *model;
    elm_optimizer_kind kind;
    double set[N_KEYS + 1]; /* indexed by elm_optim_param */
    uint64_t steps;         /* steps taken (the schedule's s) */
    size_t n_params, n_tensors;
    uint8_t *frozen;        /* (n_tensors) 1 = not trained */
    /* (n_tensors) Per-tensor step state, as PyTorch keeps it per parameter
     * (a parameter without a gradient is skipped and its state does not
     * advance). Adam family: the steps this tensor took, whose successor
     * is its bias-correction t. SGD: the steps that used its momentum
     * buffer; 0 means the buffer does not exist yet (the next momentum
     * step starts it as a copy of the gradient). */
    uint64_t *count;
    int n_mom;              /* moment arrays: 1 (SGD buffer) or 2 (m, v|u) */
    float *mom[2][2];       /* [set][moment], each (n_params) */
    int cur;                /* the set holding the current moments */
    float *backup;          /* (n_params) the parameters before a step */
};

/* ---- names, settings ---------------------------------------------------- */

static const key_info *key_lookup(elm_optim_param key) {
    if ((int)key < 1 || (int)key > N_KEYS) return NULL;
    return &keys[key];
}

static bool kind_valid(elm_optimizer_kind kind) {
    return (int)kind >= ELM_OPTIM_SGD && (int)kind <= ELM_OPTIM_ADAMAX;
}

ELM_API const char *elm_optimizer_kind_name(elm_optimizer_kind kind) {
    return kind_valid(kind) ? kind_names[kind] : NULL;
}

ELM_API int elm_optimizer_kind_from_name(const char *name, elm_optimizer_kind *kind) {
    if (!name || !kind) return elm__fail(ELM_E_NULL, "elm_optimizer_kind_from_name: NULL argument");
    for (int k = ELM_OPTIM_SGD; k <= ELM_OPTIM_ADAMAX; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *kind = (elm_optimizer_kind)k;
            return ELM_OK;
        }
    return elm__fail(ELM_E_UNKNOWN_NAME,
                     "elm_optimizer_kind_from_name: unknown optimizer '%s' (expected sgd, adam, "
                     "adamw or adamax)", name);
}

/* NULL if `value` is a valid value of key k, else a description of its
 * domain for the message. */
static const char *check_value(const key_info *k, double value, char *buf, size_t n) {
    bool ok = isfinite(value) && !(k->integer && value != floor(value));
    if (ok) ok = k->lo_open ? value > k->lo : value >= k->lo;
    if (ok) ok = k->hi_open ? value < k->hi : value <= k->hi;
    if (ok) return NULL;
    if (k->integer)
        snprintf(buf, n, "an integer in [%.17g, %.17g]", k->lo, k->hi);
    else if (isinf(k->hi))
        snprintf(buf, n, "finite and %s %g", k->lo_open ? ">" : ">=", k->lo);
    else
        snprintf(buf, n, "in %c%g, %g%c", k->lo_open ? '(' : '[', k->lo, k->hi,
                 k->hi_open ? ')' : ']');
    return buf;
}

static void set_defaults(elm_optimizer_kind kind, double *v) {
    v[ELM_OPTIM_LR] = kind == ELM_OPTIM_SGD ? 1e-2 : kind == ELM_OPTIM_ADAMAX ? 2e-3 : 1e-3;
    v[ELM_OPTIM_MOMENTUM] = 0;
    v[ELM_OPTIM_DAMPENING] = 0;
    v[ELM_OPTIM_NESTEROV] = 0;
    v[ELM_OPTIM_BETA1] = 0.9;
    v[ELM_OPTIM_BETA2] = 0.999;
    v[ELM_OPTIM_EPS] = 1e-8;
    v[ELM_OPTIM_WEIGHT_DECAY] = kind == ELM_OPTIM_ADAMW ? 1e-2 : 0;
    v[ELM_OPTIM_CLIP_NORM] = 0;
    v[ELM_OPTIM_SCHEDULE] = ELM_SCHEDULE_CONSTANT;
    v[ELM_OPTIM_TOTAL_STEPS] = 1;
    v[ELM_OPTIM_WARMUP_STEPS] = 0;
    v[ELM_OPTIM_MIN_LR] = 0;
}

static const elm_tensor *find_tensor(const elm_model *m, const char *name, size_t *index) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0 || strcmp(m->tensors[i].alias, name) == 0) {
            *index = i;
            return &m->tensors[i];
        }
    return NULL;
}

/* ---- life cycle --------------------------------------------------------- */

ELM_API void elm_optimizer_free(elm_optimizer *o) {
    if (!o) return;
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 2; k++) free(o->mom[s][k]);
    free(o->backup);
    free(o->frozen);
    free(o->count);
    free(o);
}

ELM_API int elm_optimizer_create(elm_model *model, elm_optimizer_kind kind, elm_optimizer **out) {
    if (!model || !out) return elm__fail(ELM_E_NULL, "elm_optimizer_create: NULL argument");
    if (!kind_valid(kind))
        return elm__fail(ELM_E_INVALID, "elm_optimizer_create: unknown optimizer kind %d",
                         (int)kind);
    size_t bytes;
    if (!elm__mul_ok(model->n_params, sizeof(float), &bytes))
        return elm__fail(ELM_E_NOMEM, "elm_optimizer_create: size overflow");
    elm_optimizer *o = calloc(1, sizeof *o);
    if (!o) return elm__fail(ELM_E_NOMEM, "elm_optimizer_create: out of memory");
    o->model = model;
    o->kind = kind;
    o->n_params = model->n_params;
    o->n_tensors = model->n_tensors;
    o->n_mom = kind == ELM_OPTIM_SGD ? 1 : 2;
    set_defaults(kind, o->set);
    bool ok = true;
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < o->n_mom; k++) ok = ok && (o->mom[s][k] = calloc(1, bytes + 1));
    ok = ok && (o->backup = malloc(bytes + 1));
    ok = ok && (o->frozen = calloc(o->n_tensors + 1, 1));
    ok = ok && (o->count = calloc(o->n_tensors + 1, sizeof *o->count));
    if (!ok) {
        elm_optimizer_free(o);
        return elm__fail(ELM_E_NOMEM, "elm_optimizer_create: out of memory");
    }
    for (size_t i = 0; i < o->n_tensors; i++) o->frozen[i] = !model->tensors[i].trainable;
    *out = o;
    return ELM_OK;
}

ELM_API int elm_optimizer_set(elm_optimizer *o, elm_optim_param key, double value) {
    if (!o) return elm__fail(ELM_E_NULL, "elm_optimizer_set: opt is NULL");
    const key_info *k = key_lookup(key);
    if (!k) return elm__fail(ELM_E_UNKNOWN_NAME, "elm_optimizer_set: unknown key %d", (int)key);
    if (!(k->kinds & (1u << o->kind)))
        return elm__fail(ELM_E_UNKNOWN_NAME, "elm_optimizer_set: %s has no setting '%s'",
                         kind_names[o->kind], k->name);
    char dom[96];
    if (check_value(k, value, dom, sizeof dom))
        return elm__fail(ELM_E_INVALID, "elm_optimizer_set: %s = %g; it must be %s", k->name,
                         value, dom);
    o->set[key] = value;
    return ELM_OK;
}

ELM_API int elm_optimizer_get(const elm_optimizer *o, elm_optim_param key, double *value) {
    if (!o || !value) return elm__fail(ELM_E_NULL, "elm_optimizer_get: NULL argument");
    const key_info *k = key_lookup(key);
    if (!k) return elm__fail(ELM_E_UNKNOWN_NAME, "elm_optimizer_get: unknown key %d", (int)key);
    if (!(k->kinds & (1u << o->kind)))
        return elm__fail(ELM_E_UNKNOWN_NAME, "elm_optimizer_get: %s has no setting '%s'",
                         kind_names[o->kind], k->name);
    *value = o->set[key];
    return ELM_OK;
}

ELM_API int elm_optimizer_freeze(elm_optimizer *o, const char *tensor, int frozen) {
    if (!o || !tensor) return elm__fail(ELM_E_NULL, "elm_optimizer_freeze: NULL argument");
    size_t i;
    if (!find_tensor(o->model, tensor, &i))
        return elm__fail(ELM_E_UNKNOWN_NAME, "elm_optimizer_freeze: no parameter named '%s'",
                         tensor);
    if (frozen != 0 && frozen != 1)
        return elm__fail(ELM_E_INVALID, "elm_optimizer_freeze: frozen = %d is not 0 or 1", frozen);
    o->frozen[i] = (uint8_t)frozen;
    return ELM_OK;
}

ELM_API int elm_optimizer_is_frozen(const elm_optimizer *o, const char *tensor, int *frozen) {
    if (!o || !tensor || !frozen)
        return elm__fail(ELM_E_NULL, "elm_optimizer_is_frozen: NULL argument");
    size_t i;
    if (!find_tensor(o->model, tensor, &i))
        return elm__fail(ELM_E_UNKNOWN_NAME, "elm_optimizer_is_frozen: no parameter named '%s'",
                         tensor);
    *frozen = o->frozen[i];
    return ELM_OK;
}

ELM_API uint64_t elm_optimizer_steps(const elm_optimizer *o) { return o ? o->steps : 0; }

ELM_API elm_optimizer_kind elm_optimizer_get_kind(const elm_optimizer *o) {
    return o ? o->kind : (elm_optimizer_kind)0;
}

/* Learning rate of the step taken after s steps (see elm.h §8). */
static double lr_at(const double *v, uint64_t s) {
    double lr = v[ELM_OPTIM_LR], W = v[ELM_OPTIM_WARMUP_STEPS], eta = v[ELM_OPTIM_MIN_LR];
    double sd = (double)s;
    if (sd < W) return lr * (sd + 1) / W;
    if (v[ELM_OPTIM_SCHEDULE] != ELM_SCHEDULE_COSINE) return lr;
    double Np = v[ELM_OPTIM_TOTAL_STEPS] - W;
    if (Np <= 0) return eta; /* N <= W: the annealing is over when warm-up ends */
    double sp = fmin(sd - W, Np);
    return eta + (lr - eta) * (1 + cos(PI * sp / Np)) / 2;
}

ELM_API double elm_optimizer_lr(const elm_optimizer *o) { return o ? lr_at(o->set, o->steps) : 0; }

/* ---- the update --------------------------------------------------------- */

/* torch.lerp for float: self + w (end - self) when |w| < 0.5, else
 * end - (end - self) (1 - w). */
static inline float lerp_f(float a, float b, float w) {
    return fabsf(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

typedef struct step_ctx {
    double lr;       /* scheduled learning rate */
    float clip;      /* gradient scale */
    bool scale;      /* clip < 1 applies */
    size_t bad;      /* first element whose update is not finite */
} step_ctx;

/* Update tensor t (index ti) from the current moment set into the next
 * one. Scalars are converted to float where PyTorch converts a Python
 * scalar for a float32 tensor op; bias corrections stay in double as
 * Python computes them. Returns false (with ctx->bad) when a new moment or
 * parameter is not finite.
 *
 * Infinite parameters (tau_m_proto may hold +-Inf: the bounded sigmoid's
 * exact limit) stay as they are: PyTorch gives inf - finite = inf. The
 * weight-decay term is skipped for them, where PyTorch would turn
 * g + wd * inf into Inf moments and then NaN parameters; their moments
 * follow the gradient alone (which the tape computes as 0 there). */
static bool update_tensor(elm_optimizer *o, size_t ti, const float *grad, step_ctx *ctx) {
    const elm_tensor *t = &o->model->tensors[ti];
    const double *v = o->set;
    int nx = 1 - o->cur;
    size_t off = t->offset, n = t->numel;
    float *p = o->model->params + off;
    const float *g = grad + off;
    const float *a0 = o->mom[o->cur][0] + off;
    float *a1 = o->mom[nx][0] + off;
    const float *b0 = o->n_mom > 1 ? o->mom[o->cur][1] + off : NULL;
    float *b1 = o->n_mom > 1 ? o->mom[nx][1] + off : NULL;
    const bool is_tau = ti == 1;
    const double wd = v[ELM_OPTIM_WEIGHT_DECAY];
    const float wdf = (float)wd;
    const float clip = ctx->clip;
    const bool scale = ctx->scale;

    if (o->kind == ELM_OPTIM_SGD) {
        const double mu = v[ELM_OPTIM_MOMENTUM];
        const float muf = (float)mu, keep = (float)(1 - v[ELM_OPTIM_DAMPENING]);
        const float nlr = (float)-ctx->lr;
        const bool nesterov = v[ELM_OPTIM_NESTEROV] != 0, has_buf = o->count[ti] > 0;
        for (size_t i = 0; i < n; i++) {
            float gi = scale ? g[i] * clip : g[i], pi = p[i];
            bool inf = isinf(pi);
            if (wd != 0 && !inf) gi = gi + wdf * pi; /* grad.add(param, alpha=wd) */
            float buf = a0[i];
            if (mu != 0) {
                buf = has_buf ? buf * muf + keep * gi : gi; /* clone, then mul_.add_ */
                gi = nesterov ? gi + muf * buf : buf;
            }
            if (!inf) pi = pi + nlr * gi; /* param.add_(grad, alpha=-lr) */
            if (is_tau && pi < TAU_FLOOR) pi = TAU_FLOOR;
            a1[i] = buf;
            p[i] = pi;
            if (!isfinite(buf) || (!inf && !isfinite(pi))) {
                ctx->bad = i;
                return false;
            }
        }
        return true;
    }

    const double beta1 = v[ELM_OPTIM_BETA1], beta2 = v[ELM_OPTIM_BETA2];
    const double step = (double)(o->count[ti] + 1);
    const double bc1 = 1 - pow(beta1, step);
    const float w1 = (float)(1 - beta1), b2f = (float)beta2, w2 = (float)(1 - beta2);
    const float epsf = (float)v[ELM_OPTIM_EPS];
    if (o->kind == ELM_OPTIM_ADAMAX) {
        const float nclr = (float)-(ctx->lr / bc1);
        for (size_t i = 0; i < n; i++) {
            float gi = scale ? g[i] * clip : g[i], pi = p[i];
            bool inf = isinf(pi);
            if (wd != 0 && !inf) gi = gi + wdf * pi;
            float m = lerp_f(a0[i], gi, w1);                    /* exp_avg.lerp_ */
            float u = fmaxf(b0[i] * b2f, fabsf(gi) + epsf);     /* exp_inf */
            if (!inf) pi = pi + nclr * m / u;                   /* addcdiv_ */
            if (is_tau && pi < TAU_FLOOR) pi = TAU_FLOOR;
            a1[i] = m;
            b1[i] = u;
            p[i] = pi;
            if (!isfinite(m) || !isfinite(u) || (!inf && !isfinite(pi))) {
                ctx->bad = i;
                return false;
            }
        }
        return true;
    }

    /* Adam, AdamW */
    const bool decoupled = o->kind == ELM_OPTIM_ADAMW;
    const float decay = (float)(1 - ctx->lr * wd); /* AdamW: param.mul_(1 - lr wd) */
    const double bc2 = 1 - pow(beta2, step);
    const float nstep = (float)-(ctx->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (size_t i = 0; i < n; i++) {
        float gi = scale ? g[i] * clip : g[i], pi = p[i];
        bool inf = isinf(pi);
        if (wd != 0 && !inf) {
            if (decoupled)
                pi = pi * decay;
            else
                gi = gi + wdf * pi;
        }
        float m = lerp_f(a0[i], gi, w1);                /* exp_avg.lerp_(grad, 1 - b1) */
        float s = b0[i] * b2f + w2 * gi * gi;           /* mul_(b2).addcmul_(g, g, 1 - b2) */
        float denom = sqrtf(s) / bc2_sqrt + epsf;
        if (!inf) pi = pi + nstep * m / denom;          /* addcdiv_(m, denom, -step_size) */
        if (is_tau && pi < TAU_FLOOR) pi = TAU_FLOOR;
        a1[i] = m;
        b1[i] = s;
        p[i] = pi;
        if (!isfinite(m) || !isfinite(s) || (!inf && !isfinite(pi))) {
            ctx->bad = i;
            return false;
        }
    }
    return true;
}

ELM_API int elm_optimizer_step(elm_optimizer *o, float *grad, double *grad_norm) {
    if (!o || !grad) return elm__fail(ELM_E_NULL, "elm_optimizer_step: NULL argument");
    elm_model *m = o->model;
    const double *v = o->set;
    if (o->kind == ELM_OPTIM_SGD && v[ELM_OPTIM_NESTEROV] != 0 &&
        (v[ELM_OPTIM_MOMENTUM] <= 0 || v[ELM_OPTIM_DAMPENING] != 0))
        return elm__fail(ELM_E_INVALID, "elm_optimizer_step: nesterov needs momentum > 0 "
                         "(have %g) and dampening 0 (have %g)",
                         v[ELM_OPTIM_MOMENTUM], v[ELM_OPTIM_DAMPENING]);

    /* Global L2 norm of the trained gradients, in double. */
    double ss = 0;
    for (size_t ti = 0; ti < o->n_tensors; ti++) {
        if (o->frozen[ti]) continue;
        const float *g = grad + m->tensors[ti].offset;
        for (size_t i = 0; i < m->tensors[ti].numel; i++) ss += (double)g[i] * g[i];
    }
    double norm = sqrt(ss);
    if (!isfinite(norm)) {
        for (size_t ti = 0; ti < o->n_tensors; ti++) {
            if (o->frozen[ti]) continue;
            const float *g = grad + m->tensors[ti].offset;
            for (size_t i = 0; i < m->tensors[ti].numel; i++)
                if (!isfinite(g[i]))
                    return elm__fail(ELM_E_NONFINITE,
                                     "elm_optimizer_step: step %llu: the gradient of '%s' is not "
                                     "finite ([%zu] = %g); nothing was updated",
                                     (unsigned long long)o->steps + 1, m->tensors[ti].name, i,
                                     (double)g[i]);
        }
        return elm__fail(ELM_E_NONFINITE, "elm_optimizer_step: step %llu: the gradient norm "
                         "is not finite; nothing was updated", (unsigned long long)o->steps + 1);
    }

    step_ctx ctx = {.lr = lr_at(v, o->steps), .clip = 1.0f, .scale = false, .bad = 0};
    double c = v[ELM_OPTIM_CLIP_NORM];
    if (c > 0) {
        double coef = c / (norm + 1e-6); /* clip_grad_norm_, clamped to 1 */
        if (coef < 1) {
            ctx.clip = (float)coef;
            ctx.scale = true;
        }
    }

    memcpy(o->backup, m->params, o->n_params * sizeof(float));
    int nx = 1 - o->cur;
    for (size_t ti = 0; ti < o->n_tensors; ti++) {
        const elm_tensor *t = &m->tensors[ti];
        if (o->frozen[ti]) { /* moments carry over unchanged */
            for (int k = 0; k < o->n_mom; k++)
                memcpy(o->mom[nx][k] + t->offset, o->mom[o->cur][k] + t->offset,
                       t->numel * sizeof(float));
            continue;
        }
        if (!update_tensor(o, ti, grad, &ctx)) {
            memcpy(m->params, o->backup, o->n_params * sizeof(float));
            return elm__fail(ELM_E_NONFINITE,
                             "elm_optimizer_step: step %llu: the update of '%s'[%zu] overflows "
                             "to a non-finite value (learning rate %g); nothing was updated",
                             (unsigned long long)o->steps + 1, t->name, ctx.bad, ctx.lr);
        }
    }
    int rc = elm__model_prepare(m);
    if (rc != ELM_OK) {
        memcpy(m->params, o->backup, o->n_params * sizeof(float));
        elm__model_prepare(m); /* back to the old parameters' derived data */
        return elm__fail(rc, "elm_optimizer_step: refreshing the model failed; nothing was "
                         "updated");
    }

    /* Commit. */
    o->cur = nx;
    for (size_t ti = 0; ti < o->n_tensors; ti++)
        if (!o->frozen[ti] && (o->kind != ELM_OPTIM_SGD || v[ELM_OPTIM_MOMENTUM] != 0))
            o->count[ti]++;
    o->steps++;
    if (ctx.scale)
        for (size_t ti = 0; ti < o->n_tensors; ti++) {
            if (o->frozen[ti]) continue;
            float *g = grad + m->tensors[ti].offset;
            for (size_t i = 0; i < m->tensors[ti].numel; i++) g[i] = g[i] * ctx.clip;
        }
    if (grad_norm) *grad_norm = norm;
    return ELM_OK;
}

/* ---- state string ------------------------------------------------------- *
 *
 * Little-endian, no padding:
 *   magic "ELMOPTS\0" | u32 version (1) | u32 kind | u32 n_mom | u32 n_keys
 *   | u64 n_params | u64 n_tensors | u64 steps | n_keys f64 settings (keys
 *   1 .. n_keys) | per tensor: u64 numel, u64 count, u8 frozen | n_mom
 *   arrays of n_params f32 (SGD: momentum buffer; Adam, AdamW: exp_avg,
 *   exp_avg_sq; Adamax: exp_avg, exp_inf) | u64 FNV-1a 64 of every byte
 *   before it.
 */

static const unsigned char MAGIC[8] = {'E', 'L', 'M', 'O', 'P', 'T', 'S', 0};
#define FORMAT_VERSION 1u
#define HEADER_BYTES 48u
#define TENSOR_BYTES 17u

static const char *moment_name(elm_optimizer_kind kind, int k) {
    if (kind == ELM_OPTIM_SGD) return "momentum_buffer";
    return k == 0 ? "exp_avg" : kind == ELM_OPTIM_ADAMAX ? "exp_inf" : "exp_avg_sq";
}

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 offset basis */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull; /* FNV prime */
    }
    return h;
}

static void put_u32(unsigned char **w, uint32_t x) {
    for (int i = 0; i < 4; i++) *(*w)++ = (unsigned char)(x >> (8 * i));
}
static void put_u64(unsigned char **w, uint64_t x) {
    for (int i = 0; i < 8; i++) *(*w)++ = (unsigned char)(x >> (8 * i));
}
static void put_f64(unsigned char **w, double x) {
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    put_u64(w, u);
}
static uint32_t get_u32(const unsigned char *r) {
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) x |= (uint32_t)r[i] << (8 * i);
    return x;
}
static uint64_t get_u64(const unsigned char *r) {
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x |= (uint64_t)r[i] << (8 * i);
    return x;
}
static double get_f64(const unsigned char *r) {
    uint64_t u = get_u64(r);
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}
static float get_f32(const unsigned char *r) {
    uint32_t u = get_u32(r);
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Bytes of a state string, or 0 on overflow. */
static size_t state_bytes(uint64_t n_params, uint64_t n_tensors, uint64_t n_mom, uint64_t n_keys) {
    size_t a, b, c;
    if (n_mom > 2 || n_keys > N_KEYS) return 0;
#if SIZE_MAX < UINT64_MAX
    if (n_params > SIZE_MAX || n_tensors > SIZE_MAX) return 0;
#endif
    if (!elm__mul_ok((size_t)n_tensors, TENSOR_BYTES, &a)) return 0;
    if (!elm__mul_ok((size_t)n_params, 4 * (size_t)n_mom, &b)) return 0;
    c = HEADER_BYTES + 8 * (size_t)n_keys + 8;
    if (a > SIZE_MAX - c || b > SIZE_MAX - c - a) return 0;
    return a + b + c;
}

ELM_API int elm_optimizer_save_state(const elm_optimizer *o, void *dst, size_t capacity,
                                     size_t *size) {
    if (!o || !size) return elm__fail(ELM_E_NULL, "elm_optimizer_save_state: NULL argument");
    size_t need = state_bytes(o->n_params, o->n_tensors, (uint64_t)o->n_mom, N_KEYS);
    if (need == 0) return elm__fail(ELM_E_NOMEM, "elm_optimizer_save_state: size overflow");
    *size = need;
    if (!dst) return ELM_OK;
    if (capacity < need)
        return elm__fail(ELM_E_INVALID, "elm_optimizer_save_state: the state needs %zu bytes, "
                         "dst holds %zu", need, capacity);
    unsigned char *start = dst, *w = dst;
    memcpy(w, MAGIC, sizeof MAGIC);
    w += sizeof MAGIC;
    put_u32(&w, FORMAT_VERSION);
    put_u32(&w, (uint32_t)o->kind);
    put_u32(&w, (uint32_t)o->n_mom);
    put_u32(&w, N_KEYS);
    put_u64(&w, o->n_params);
    put_u64(&w, o->n_tensors);
    put_u64(&w, o->steps);
    for (int k = 1; k <= N_KEYS; k++) put_f64(&w, o->set[k]);
    for (size_t ti = 0; ti < o->n_tensors; ti++) {
        put_u64(&w, o->model->tensors[ti].numel);
        put_u64(&w, o->count[ti]);
        *w++ = o->frozen[ti];
    }
    for (int k = 0; k < o->n_mom; k++) {
        const float *a = o->mom[o->cur][k];
        for (size_t i = 0; i < o->n_params; i++) {
            uint32_t u;
            memcpy(&u, &a[i], sizeof u);
            put_u32(&w, u);
        }
    }
    put_u64(&w, fnv1a(start, (size_t)(w - start)));
    return ELM_OK;
}

ELM_API int elm_optimizer_load_state(elm_optimizer *o, const void *src, size_t size) {
    if (!o || !src) return elm__fail(ELM_E_NULL, "elm_optimizer_load_state: NULL argument");
    const unsigned char *r = src;
#define BAD(...) elm__fail(ELM_E_FORMAT, "elm_optimizer_load_state: " __VA_ARGS__)
    if (size < HEADER_BYTES + 8)
        return BAD("%zu bytes are too few for an optimizer state", size);
    if (memcmp(r, MAGIC, sizeof MAGIC) != 0) return BAD("bad magic: not an optimizer state");
    uint32_t version = get_u32(r + 8), kind = get_u32(r + 12), n_mom = get_u32(r + 16);
    uint32_t n_keys = get_u32(r + 20);
    uint64_t n_params = get_u64(r + 24), n_tensors = get_u64(r + 32), steps = get_u64(r + 40);
    if (version != FORMAT_VERSION)
        return BAD("format version %u is not supported (this library reads %u)", version,
                   FORMAT_VERSION);
    size_t need = state_bytes(n_params, n_tensors, n_mom, n_keys);
    if (need == 0) return BAD("implausible header (sizes)");
    if (size != need)
        return BAD("%zu bytes where the header announces %zu (%s)", size, need,
                   size < need ? "truncated" : "trailing bytes");
    if (fnv1a(r, size - 8) != get_u64(r + size - 8)) return BAD("checksum mismatch (corrupted)");
    if (kind != (uint32_t)o->kind)
        return BAD("the state is of a '%s' optimizer, this one is '%s'",
                   kind < 5 && kind > 0 ? kind_names[kind] : "unknown", kind_names[o->kind]);
    if (n_mom != (uint32_t)o->n_mom || n_keys != N_KEYS)
        return BAD("%u moment arrays and %u settings, expected %d and %d", n_mom, n_keys,
                   o->n_mom, N_KEYS);
    if (n_params != o->n_params || n_tensors != o->n_tensors)
        return BAD("the state is for %llu parameters in %llu tensors, the model has %zu in %zu",
                   (unsigned long long)n_params, (unsigned long long)n_tensors, o->n_params,
                   o->n_tensors);

    const unsigned char *p = r + HEADER_BYTES;
    double set[N_KEYS + 1] = {0};
    for (int k = 1; k <= N_KEYS; k++, p += 8) {
        set[k] = get_f64(p);
        char dom[96];
        if (check_value(&keys[k], set[k], dom, sizeof dom))
            return BAD("setting %s = %g; it must be %s", keys[k].name, set[k], dom);
    }
    const unsigned char *tensors = p;
    for (size_t ti = 0; ti < o->n_tensors; ti++, p += TENSOR_BYTES) {
        const elm_tensor *t = &o->model->tensors[ti];
        if (get_u64(p) != t->numel)
            return BAD("tensor %zu ('%s') has %llu elements in the state, %zu in the model", ti,
                       t->name, (unsigned long long)get_u64(p), t->numel);
        if (get_u64(p + 8) > steps)
            return BAD("tensor '%s' took %llu steps of %llu", t->name,
                       (unsigned long long)get_u64(p + 8), (unsigned long long)steps);
        if (p[16] > 1) return BAD("tensor '%s' has frozen flag %u", t->name, p[16]);
    }
    /* Moments go into the spare set, which a step overwrites anyway. */
    int nx = 1 - o->cur;
    for (int k = 0; k < o->n_mom; k++) {
        float *a = o->mom[nx][k];
        for (size_t i = 0; i < o->n_params; i++, p += 4) {
            a[i] = get_f32(p);
            if (!isfinite(a[i]) || (k == 1 && a[i] < 0))
                return BAD("%s[%zu] = %g is %s", moment_name(o->kind, k), i, (double)a[i],
                           isfinite(a[i]) ? "negative" : "not finite");
        }
    }
#undef BAD

    /* Everything is valid: commit. */
    o->cur = nx;
    memcpy(o->set, set, sizeof set);
    o->steps = steps;
    p = tensors;
    for (size_t ti = 0; ti < o->n_tensors; ti++, p += TENSOR_BYTES) {
        o->count[ti] = get_u64(p + 8);
        o->frozen[ti] = p[16];
    }
    return ELM_OK;
}

elm_model *elm__optimizer_model(const elm_optimizer *opt) { return opt ? opt->model : NULL; }

int elm__optimizer_state_kind(const void *src, size_t size) {
    const unsigned char *r = src;
    if (size < HEADER_BYTES || memcmp(r, MAGIC, sizeof MAGIC) != 0) return -1;
    return (int)get_u32(r + 12);
}

elm_optimizer_kind elm__optimizer_kind(const elm_optimizer *opt) { return opt->kind; }
