/* Backward kernels of the training tape: variants of vec.c's kernels that
 * the compiler vectorises. Compiled per CPU like vec.c. */
#include "../elm_internal.h"
#include "../tape.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(ELM_HAVE_IFUNC)
#define ELM_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define ELM_CLONES
#endif

/* exp(x) in float to about 1 ulp, as vec.c's: x = n ln2 + r, |r| <= ln2 / 2,
 * exp(r) by its Taylor series to r^7, times 2^n built in the exponent bits.
 * Branch-free so that loops vectorise; inputs clamped to the finite range. */
static inline __attribute__((always_inline)) float exp_branchfree(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; /* n + 127 in [1, 254] after the clamp */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* elm__memory_backward for one stream at a time with every pointer
 * restrict-qualified at the interface: vec.c's version keeps kappa and
 * coef unqualified, so GCC cannot prove that the stores miss them and
 * leaves the loop scalar (about 9% of a NeuronIO training step). Same
 * formulas: dz = gm coef g'(z), carry = gm kappa, acc_coef += gm g(z),
 * acc_kappa += gm m_{t-1}; g = 1.7159 tanh(2z/3), 1 - tanh^2(a) =
 * 4e / (1 + e)^2 with e = exp(-2|a|). */
static inline __attribute__((always_inline)) void
memory_backward_row(int n, const float *restrict gb, const float *restrict zb,
                    const float *restrict pb, const float *restrict kappa,
                    const float *restrict coef, float *restrict db, float *restrict cb,
                    float *restrict ac, float *restrict ak) {
    for (int i = 0; i < n; i++) {
        float a = zb[i] * (2.0f / 3.0f);
        float e = exp_branchfree(-2.0f * fabsf(a));
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

ELM_CLONES
void elm__tape_memory_backward(int B, int n, const float *gm, const float *z, const float *mprev,
                               const float *kappa, const float *coef, float *dz, float *carry,
                               float *acc_coef, float *acc_kappa) {
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * (size_t)n;
        memory_backward_row(n, gm + o, z + o, mprev + o, kappa, coef, dz + o, carry + o, acc_coef,
                            acc_kappa);
    }
}
