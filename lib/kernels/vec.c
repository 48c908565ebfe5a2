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
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    float n = __builtin_roundf(x * 1.44269504088896341f);
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
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

float elm__expf(float x) { return exp_inline(x); }

ELM_CLONES
void elm__matmul_small(int B, int in, int out, const float *x, size_t ldx, const float *wt,
                       float *y, size_t ldy, int accumulate) {
    enum { BLK = 64 };
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * ldx;
        float *yb = y + (size_t)b * ldy;
        for (int o0 = 0; o0 < out; o0 += BLK) {
            int n = out - o0 < BLK ? out - o0 : BLK;
            float acc[BLK];
            if (n == BLK) {
                /* Full block: fixed trip counts keep acc in registers. */
                for (int q = 0; q < BLK; q++) acc[q] = accumulate ? yb[o0 + q] : 0.0f;
                for (int i = 0; i < in; i++) {
                    float xi = xb[i];
                    const float *w = wt + (size_t)i * out + o0;
                    for (int q = 0; q < BLK; q++) acc[q] += xi * w[q];
                }
                for (int q = 0; q < BLK; q++) yb[o0 + q] = acc[q];
            } else {
                for (int q = 0; q < n; q++) acc[q] = accumulate ? yb[o0 + q] : 0.0f;
                for (int i = 0; i < in; i++) {
                    float xi = xb[i];
                    const float *w = wt + (size_t)i * out + o0;
                    for (int q = 0; q < n; q++) acc[q] += xi * w[q];
                }
                for (int q = 0; q < n; q++) yb[o0 + q] = acc[q];
            }
        }
    }
}

ELM_CLONES
void elm__activate(int act, float *x, size_t n) {
    if (act == ELM_RELU) {
        for (size_t i = 0; i < n; i++) x[i] = fmaxf(x[i], 0.0f);
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
