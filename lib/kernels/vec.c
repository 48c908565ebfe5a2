/* Small products and fused elementwise kernels for the per-step path.
 * Plain C loops written so that the compiler vectorises them; each hot
 * function is compiled for AVX-512, AVX2+FMA and baseline x86-64, and the
 * loader picks the best one for the running CPU (GCC target_clones). */
#include "../elm_internal.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(ELM_HAVE_IFUNC)
#define ELM_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define ELM_CLONES
#endif

/* exp(x) in float to about 1 ulp, branch-free so that loops vectorise:
 * x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor series to r^7
 * (truncation error below 6e-9 relative), times 2^n built in the exponent
 * bits. Inputs are clamped to the finite range; the caller needs no more. */
static inline float exp_inline(float x) {
    x = x < -87.0f ? -87.0f : x; /* ternaries, not fminf: these vectorise */
    x = x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5 * 2^23 shifter (exact for |v| < 2^22) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f;   /* ln2 high part, exact product */
    r = r - n * 1.428606765330187045e-06f;  /* ln2 low part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* unsigned: NaN input gives INT_MIN */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

float elm__expf(float x) { return exp_inline(x); }

/* 16 floats; each target clone lowers it to one zmm, two ymm or four xmm. */
typedef float vf16 __attribute__((vector_size(64)));

static inline vf16 load16(const float *p) {
    vf16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store16(float *p, vf16 v) { memcpy(p, &v, sizeof v); }

size_t elm__panel_cols(int out) {
    size_t full = (size_t)out / 64 * 64;
    return full + ((size_t)out - full + 15) / 16 * 16;
}

void elm__pack_panels(const float *w, int out, int in, float *dst) {
    for (int o = 0; o < out;) {
        int width = out - o >= 64 ? 64 : 16;
        for (int i = 0; i < in; i++)
            for (int q = 0; q < width; q++)
                *dst++ = o + q < out ? w[(size_t)(o + q) * in + i] : 0.0f;
        o += width;
    }
}

/* Each panel is read front to back once per stream: 64 outputs in four
 * vector accumulators (or 16 in one), one broadcast-multiply-add per vector
 * and input; the last panel's padding lanes are computed and not stored. */
ELM_CLONES
void elm__matmul_small(int B, int in, int out, const float *x, size_t ldx, const float *panels,
                       int in_total, int row0, float *y, size_t ldy, int accumulate) {
    const vf16 zero = {0};
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * ldx;
        float *yb = y + (size_t)b * ldy;
        const float *panel = panels;
        for (int o = 0; o < out;) {
            if (out - o >= 64) {
                const float *w = panel + (size_t)row0 * 64;
                vf16 a0 = accumulate ? load16(yb + o) : zero;
                vf16 a1 = accumulate ? load16(yb + o + 16) : zero;
                vf16 a2 = accumulate ? load16(yb + o + 32) : zero;
                vf16 a3 = accumulate ? load16(yb + o + 48) : zero;
                for (int i = 0; i < in; i++, w += 64) {
                    vf16 xi = zero + xb[i];
                    a0 += xi * load16(w);
                    a1 += xi * load16(w + 16);
                    a2 += xi * load16(w + 32);
                    a3 += xi * load16(w + 48);
                }
                store16(yb + o, a0);
                store16(yb + o + 16, a1);
                store16(yb + o + 32, a2);
                store16(yb + o + 48, a3);
                panel += (size_t)in_total * 64;
                o += 64;
            } else {
                int n = out - o < 16 ? out - o : 16;
                const float *w = panel + (size_t)row0 * 16;
                /* One accumulator would wait a full FMA latency per input;
                 * four partial sums over interleaved inputs do not. */
                vf16 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
                if (accumulate) memcpy(&a0, yb + o, (size_t)n * sizeof(float));
                int i = 0;
                for (; i + 4 <= in; i += 4, w += 64) {
                    a0 += (zero + xb[i]) * load16(w);
                    a1 += (zero + xb[i + 1]) * load16(w + 16);
                    a2 += (zero + xb[i + 2]) * load16(w + 32);
                    a3 += (zero + xb[i + 3]) * load16(w + 48);
                }
                for (; i < in; i++, w += 16) a0 += (zero + xb[i]) * load16(w);
                a0 = (a0 + a1) + (a2 + a3);
                memcpy(yb + o, &a0, (size_t)n * sizeof(float));
                panel += (size_t)in_total * 16;
                o += 16;
            }
        }
    }
}

/* Which 16-float blocks hold a value other than +-0. The tail block and the
 * portable version test 64-bit words of magnitude bits; on x86-64 the
 * loader picks an AVX-512 or AVX2 version (one vector test per block). */
static void nonzero_tail(const float *x, int n, uint64_t *bits, int k0) {
    for (int k = k0; k * 16 < n; k++) {
        uint32_t any = 0;
        for (int i = k * 16; i < n && i < k * 16 + 16; i++) {
            uint32_t u;
            memcpy(&u, &x[i], sizeof u);
            any |= u & 0x7fffffffu;
        }
        if (any) bits[k / 64] |= (uint64_t)1 << (k % 64);
    }
}

static void clear_bits(int n, uint64_t *bits) {
    int nblk = (n + 15) / 16;
    for (int w = 0; w < (nblk + 63) / 64; w++) bits[w] = 0;
}

static void nonzero_blocks_portable(const float *x, int n, uint64_t *bits) {
    const uint64_t mag = 0x7fffffff7fffffffULL;
    clear_bits(n, bits);
    for (int k = 0; k < n / 16; k++) {
        uint64_t v[8], any = 0;
        memcpy(v, x + (size_t)k * 16, sizeof v);
        for (int q = 0; q < 8; q++) any |= v[q];
        if (any & mag) bits[k / 64] |= (uint64_t)1 << (k % 64);
    }
    nonzero_tail(x, n, bits, n / 16);
}

#if defined(ELM_HAVE_IFUNC)
#include <immintrin.h>

__attribute__((target("avx512f"))) static void nonzero_blocks_avx512(const float *x, int n,
                                                                      uint64_t *bits) {
    const __m512i mag = _mm512_set1_epi32(0x7fffffff);
    clear_bits(n, bits);
    for (int k = 0; k < n / 16; k++) {
        __m512i v = _mm512_loadu_si512((const void *)(x + (size_t)k * 16));
        if (_mm512_test_epi32_mask(v, mag)) bits[k / 64] |= (uint64_t)1 << (k % 64);
    }
    nonzero_tail(x, n, bits, n / 16);
}

__attribute__((target("avx2"))) static void nonzero_blocks_avx2(const float *x, int n,
                                                                 uint64_t *bits) {
    const __m256i mag = _mm256_set1_epi32(0x7fffffff);
    clear_bits(n, bits);
    for (int k = 0; k < n / 16; k++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(x + (size_t)k * 16));
        __m256i b = _mm256_loadu_si256((const __m256i *)(x + (size_t)k * 16 + 8));
        if (!_mm256_testz_si256(_mm256_or_si256(a, b), mag)) bits[k / 64] |= (uint64_t)1 << (k % 64);
    }
    nonzero_tail(x, n, bits, n / 16);
}

typedef void nonzero_fn(const float *, int, uint64_t *);
static nonzero_fn *resolve_nonzero_blocks(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return nonzero_blocks_avx512;
    if (__builtin_cpu_supports("avx2")) return nonzero_blocks_avx2;
    return nonzero_blocks_portable;
}
void elm__nonzero_blocks(const float *x, int n, uint64_t *bits)
    __attribute__((ifunc("resolve_nonzero_blocks")));
#else
void elm__nonzero_blocks(const float *x, int n, uint64_t *bits) {
    nonzero_blocks_portable(x, n, bits);
}
#endif

ELM_CLONES
void elm__activate(int act, float *x, size_t n) {
    if (act == ELM_RELU) {
        for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
    } else {
        for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + exp_inline(-x[i]));
    }
}

/* g(z) = 1.7159 tanh(2z/3) with tanh(a) = sign(a) (1 - e) / (1 + e),
 * e = exp(-2|a|): no overflow, absolute error ~1e-7 near 0. */
ELM_CLONES
void elm__memory_update(int B, int n, float *m, const float *kappa, const float *coef,
                        const float *z) {
    for (int b = 0; b < B; b++) {
        float *mb = m + (size_t)b * n;
        const float *zb = z + (size_t)b * n;
        for (int i = 0; i < n; i++) {
            float a = zb[i] * (2.0f / 3.0f);
            float e = exp_inline(-2.0f * fabsf(a));
            float t = copysignf((1.0f - e) / (1.0f + e), a);
            mb[i] = kappa[i] * mb[i] + coef[i] * (1.7159f * t);
        }
    }
}

/* Backward of m_t = kappa m_{t-1} + coef g(z_t), per stream (rows of n):
 * gm = dL/dm_t. Writes dz = gm coef g'(z) and carry = gm kappa (dL/dm_{t-1}
 * through the leak); adds gm g(z) to acc_coef and gm m_{t-1} to acc_kappa
 * (per unit, summed over streams). g'(z) = 1.7159 (2/3) (1 - tanh^2), with
 * 1 - tanh^2(a) = 4e / (1 + e)^2 for e = exp(-2|a|), exact near saturation. */
ELM_CLONES
void elm__memory_backward(int B, int n, const float *gm, const float *z, const float *mprev,
                          const float *kappa, const float *coef, float *dz, float *carry,
                          float *acc_coef, float *acc_kappa) {
    for (int b = 0; b < B; b++) {
        const float *restrict gb = gm + (size_t)b * n, *restrict zb = z + (size_t)b * n,
                              *restrict pb = mprev + (size_t)b * n;
        float *restrict db = dz + (size_t)b * n, *restrict cb = carry + (size_t)b * n;
        float *restrict ac = acc_coef, *restrict ak = acc_kappa;
        for (int i = 0; i < n; i++) {
            float a = zb[i] * (2.0f / 3.0f);
            float e = exp_inline(-2.0f * fabsf(a));
            float inv = 1.0f / (1.0f + e);
            float t = copysignf((1.0f - e) * inv, a);
            float dg = (1.7159f * (2.0f / 3.0f) * 4.0f) * e * inv * inv;
            float g = gb[i];
            db[i] = g * coef[i] * dg;
            cb[i] = g * kappa[i];
            ac[i] += g * (1.7159f * t);
            ak[i] += g * pb[i];
        }
    }
}

/* d *= act'(pre), elementwise: relu' = [pre > 0];
 * silu' = s (1 + pre (1 - s)), s = sigmoid(pre). */
ELM_CLONES
void elm__activate_backward(int act, const float *pre, float *d, size_t n) {
    if (act == ELM_RELU) {
        for (size_t i = 0; i < n; i++) d[i] = pre[i] > 0.0f ? d[i] : 0.0f;
    } else {
        for (size_t i = 0; i < n; i++) {
            float s = 1.0f / (1.0f + exp_inline(-pre[i]));
            d[i] *= s * (1.0f + pre[i] * (1.0f - s));
        }
    }
}

/* The memory columns of layer 0's input are kappa * m_{t-1}: with du their
 * gradient, carry += du kappa and acc_kappa += du m_{t-1}. */
ELM_CLONES
void elm__leak_backward(int B, int n, const float *du, const float *mprev, const float *kappa,
                        float *carry, float *acc_kappa) {
    for (int b = 0; b < B; b++) {
        const float *restrict ub = du + (size_t)b * n, *restrict pb = mprev + (size_t)b * n;
        float *restrict cb = carry + (size_t)b * n, *restrict ak = acc_kappa;
        for (int i = 0; i < n; i++) {
            cb[i] += ub[i] * kappa[i];
            ak[i] += ub[i] * pb[i];
        }
    }
}
