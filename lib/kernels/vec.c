/* Small products and fused elementwise kernels for the per-step path.
 * Each hot function is compiled for AVX-512, AVX2+FMA and baseline x86-64,
 * and the loader picks the best one for the running CPU: the elementwise
 * loops as GCC target_clones, the panel products as separate versions
 * (16-float vector code for AVX-512, plain loops otherwise). */
#include "../elm_internal.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(ELM_HAVE_IFUNC)
#define ELM_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
/* The panel kernels: the 16-float vector code only for AVX-512, plain
 * loops for AVX2 + FMA and for baseline x86-64 (see "Plain panel
 * kernels"), one picked per kernel by the loader. */
#define ELM_PANEL_DISPATCH 1
#define ELM_WIDE __attribute__((target("avx512f")))
#else
#define ELM_CLONES
#define ELM_WIDE /* the 16-float kernels are compiled only for AVX-512 targets */
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

/* 16 floats: one zmm. Used only in code built for AVX-512; for narrower
 * targets GCC lowers it through the stack (see "Plain panel kernels"). */
typedef float vf16 __attribute__((vector_size(64)));

/* One float in all lanes: s - (+0) is s for every s (-0 included), so
 * the compiler emits a bare broadcast; `zero + s` would add a scalar add
 * per input (0 + -0 is +0). A macro, not a function: a helper without the
 * clone's target is lowered to 128-bit pieces through the stack before it
 * is inlined. */
#define splat16(s) ((s) - (vf16){0})

/* Width of the panel holding the next `rest` columns: 64 while 64 remain,
 * 16 while more than 8 remain, then one panel of 8 or 4. The narrow last
 * panels keep the padding small: at B = 1 every padded column is weight
 * bytes streamed from L2 for nothing (16-wide tails were ~9% of NeuronIO's
 * per-step weight reads). */
static inline int panel_width(int rest) {
    return rest >= 64 ? 64 : rest > 8 ? 16 : rest > 4 ? 8 : 4;
}

size_t elm__panel_cols(int out) {
    size_t cols = 0;
    for (int o = 0; o < out;) {
        int width = panel_width(out - o);
        cols += (size_t)width;
        o += width;
    }
    return cols;
}

void elm__pack_panels(const float *w, int out, int in, float *dst) {
    for (int o = 0; o < out;) {
        int width = panel_width(out - o);
        for (int i = 0; i < in; i++)
            for (int q = 0; q < width; q++)
                *dst++ = o + q < out ? w[(size_t)(o + q) * in + i] : 0.0f;
        o += width;
    }
}

typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
#define splat8(s) ((s) - (vf8){0})
#define splat4(s) ((s) - (vf4){0})

/* Spread vector j of a width-4 (width-8) panel: lane l holds x[4 j + l / 4]
 * (x[2 j + l / 8]) of the 16 inputs in v. __builtin_shufflevector (GCC 12,
 * clang) wants constant lanes, hence one macro use per vector. */
#define SPREAD4(v, j)                                                                            \
    __builtin_shufflevector(v, v, 4 * j, 4 * j, 4 * j, 4 * j, 4 * j + 1, 4 * j + 1, 4 * j + 1,    \
                            4 * j + 1, 4 * j + 2, 4 * j + 2, 4 * j + 2, 4 * j + 2, 4 * j + 3,     \
                            4 * j + 3, 4 * j + 3, 4 * j + 3)
#define SPREAD8(v, j)                                                                            \
    __builtin_shufflevector(v, v, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j, 2 * j,         \
                            2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1,     \
                            2 * j + 1, 2 * j + 1)

#if defined(ELM_PANEL_DISPATCH) || defined(__AVX512F__)
#include <immintrin.h>

typedef int32_t vi16 __attribute__((vector_size(64)));

ELM_WIDE static inline vf16 load16(const float *p) {
    vf16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

ELM_WIDE static inline void store16(float *p, vf16 v) { memcpy(p, &v, sizeof v); }

/* Lanes [0, n) of a 16-float vector, 0 < n <= 16. */
static inline __mmask16 first_lanes(int n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* The first n floats at p, zeros after; nothing past p + n is read. */
ELM_WIDE static inline vf16 loadn16(const float *p, int n) {
    if (n >= 16) return load16(p);
    return (vf16)_mm512_maskz_loadu_ps(first_lanes(n), p);
}

/* The first n lanes of v to p; nothing past p + n is written. */
ELM_WIDE static inline void storen16(float *p, vf16 v, int n) {
    if (n >= 16)
        store16(p, v);
    else
        _mm512_mask_storeu_ps(p, first_lanes(n), (__m512)v);
}

/* exp_inline on 16 lanes, operation for operation (the same expressions,
 * so the same contractions into FMA; the clamps as max / min with x as
 * the second operand, which is what passes a NaN through as the scalar
 * ternaries do): the same bits in every lane. */
ELM_WIDE static inline vf16 exp16(vf16 x) {
    x = (vf16)_mm512_max_ps(_mm512_set1_ps(-87.0f), (__m512)x);
    x = (vf16)_mm512_min_ps(_mm512_set1_ps(88.0f), (__m512)x);
    vf16 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    vf16 r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    vf16 p = splat16(1.0f / 5040.0f);
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vi16 bits = (__builtin_convertvector(n, vi16) + 127) << 23;
    return p * (vf16)bits;
}

/* fused_epilogue on a register: v holds init + x W for outputs [o, o + n),
 * n <= 16 (lanes past n hold finite values and are dropped). The same
 * formulas with the same bits, without fused_epilogue's round trip
 * through a stack buffer and its variable-length copies. */
ELM_WIDE static inline __attribute__((always_inline)) void
epilogue16(vf16 v, int o, int n, int epi, float *y, const float *kappa, const float *coef,
           float *mem) {
    if (epi == ELM_EPI_RELU) {
        v = (vf16)_mm512_max_ps((__m512)v, _mm512_setzero_ps());
    } else if (epi == ELM_EPI_SILU) {
        v = v / (1.0f + exp16(-v));
    } else if (epi == ELM_EPI_MEMORY) {
        vf16 a = v * (2.0f / 3.0f);
        vf16 e = exp16(-2.0f * (vf16)((vi16)a & 0x7fffffff));
        vf16 q = (1.0f - e) / (1.0f + e);
        vf16 g = 1.7159f * (vf16)(((vi16)q & 0x7fffffff) | ((vi16)a & (int32_t)0x80000000u));
        /* kappa m + coef g with the rounding of coef g kept, as the
         * contraction in elm__memory_update does */
        __m512 cg = (__m512)(loadn16(coef + o, n) * g);
        storen16(mem + o,
                 (vf16)_mm512_fmadd_ps((__m512)loadn16(kappa + o, n), (__m512)loadn16(mem + o, n), cg),
                 n);
        return;
    }
    storen16(y + o, v, n);
}

/* x (in) @ a narrow panel (in, width), width 8 or 4, in lanes [0, width)
 * of the result and zeros after. The panel's rows are contiguous, so one 16-float vector holds 16 / width
 * consecutive rows: full-width loads of the panel against x spread to
 * match (x[i] in the lanes of row i), four accumulators so that FMA
 * latency is hidden, and the row groups folded at the end. With ymm / xmm
 * accumulators, one per row, the 8- and 4-wide panels streamed from L2 at
 * 70 and 20 GB/s against 110 for the 64-wide ones: the 4-wide tail of
 * NeuronIO's layer 1 (3.2 KB) took 0.17 us of the B = 1 step. Rows past
 * the last multiple of 16 go through one narrow vector. */
ELM_WIDE static inline __attribute__((always_inline)) vf16 narrow_sum(const int width, int in,
                                                                      const float *x,
                                                                      const float *w) {
    vf16 a[4] = {{0}, {0}, {0}, {0}};
    int i = 0;
    if (width == 4) {
        for (; i + 16 <= in; i += 16, w += 64) {
            vf16 xv = load16(x + i);
            a[0] += SPREAD4(xv, 0) * load16(w);
            a[1] += SPREAD4(xv, 1) * load16(w + 16);
            a[2] += SPREAD4(xv, 2) * load16(w + 32);
            a[3] += SPREAD4(xv, 3) * load16(w + 48);
        }
    } else {
        for (; i + 16 <= in; i += 16, w += 128) {
            vf16 xv = load16(x + i);
            a[0] += SPREAD8(xv, 0) * load16(w);
            a[1] += SPREAD8(xv, 1) * load16(w + 16);
            a[2] += SPREAD8(xv, 2) * load16(w + 32);
            a[3] += SPREAD8(xv, 3) * load16(w + 48);
            a[0] += SPREAD8(xv, 4) * load16(w + 64);
            a[1] += SPREAD8(xv, 5) * load16(w + 80);
            a[2] += SPREAD8(xv, 6) * load16(w + 96);
            a[3] += SPREAD8(xv, 7) * load16(w + 112);
        }
    }
    vf16 t = (a[0] + a[1]) + (a[2] + a[3]);
    if (width == 8) {
        vf8 lo = __builtin_shufflevector(t, t, 0, 1, 2, 3, 4, 5, 6, 7);
        vf8 hi = __builtin_shufflevector(t, t, 8, 9, 10, 11, 12, 13, 14, 15);
        vf8 v, tail = {0};
        for (; i < in; i++, w += 8) {
            memcpy(&v, w, sizeof v);
            tail += splat8(x[i]) * v;
        }
        lo = (lo + hi) + tail;
        return __builtin_shufflevector(lo, (vf8){0}, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                       13, 14, 15);
    }
    vf4 g0 = __builtin_shufflevector(t, t, 0, 1, 2, 3), g1 = __builtin_shufflevector(t, t, 4, 5, 6, 7),
        g2 = __builtin_shufflevector(t, t, 8, 9, 10, 11),
        g3 = __builtin_shufflevector(t, t, 12, 13, 14, 15), v, tail = {0};
    for (; i < in; i++, w += 4) {
        memcpy(&v, w, sizeof v);
        tail += splat4(x[i]) * v;
    }
    g0 = ((g0 + g1) + (g2 + g3)) + tail;
    return __builtin_shufflevector(g0, (vf4){0}, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
}

/* acc (n <= width) += x (in) @ a narrow panel (in, width), width 8 or 4. */
ELM_WIDE static inline __attribute__((always_inline)) void narrow_panel(const int width, int in,
                                                                        int n, const float *x,
                                                                        const float *w,
                                                                        float *acc) {
    vf16 s = narrow_sum(width, in, x, w);
    for (int q = 0; q < n; q++) acc[q] += s[q];
}

/* acc (n) += x @ the narrow panel of width w8 (8 or 4), the width a
 * constant in each branch so that narrow_panel is specialised. */
ELM_WIDE static inline __attribute__((always_inline)) void narrow_dispatch(int width, int in,
                                                                           int n, const float *x,
                                                                           const float *w,
                                                                           float *acc) {
    if (width == 8)
        narrow_panel(8, in, n, x, w, acc);
    else
        narrow_panel(4, in, n, x, w, acc);
}

/* a0..a3 (the 64 outputs of a panel row) += v times the row at w. A macro,
 * not a function: through a helper on a vf16[4] GCC kept the accumulators
 * on the stack around the loops (layer 0 1.059 -> 1.080 us). */
#define ROW64_FMA(a0, a1, a2, a3, v, w)                                                          \
    do {                                                                                         \
        vf16 xi_ = splat16(v);                                                                   \
        a0 += xi_ * load16(w);                                                                   \
        a1 += xi_ * load16((w) + 16);                                                            \
        a2 += xi_ * load16((w) + 32);                                                            \
        a3 += xi_ * load16((w) + 48);                                                            \
    } while (0)

/* a0 + x (in) @ a 16-wide panel at w: four partial sums over interleaved
 * inputs, so that no input waits a full FMA latency for the previous one;
 * a0 carries any initial value. */
ELM_WIDE static inline __attribute__((always_inline)) vf16 panel16_sum(vf16 a0, int in,
                                                                       const float *x,
                                                                       const float *w) {
    vf16 a1 = {0}, a2 = {0}, a3 = {0};
    int i = 0;
    for (; i + 4 <= in; i += 4, w += 64) {
        a0 += splat16(x[i]) * load16(w);
        a1 += splat16(x[i + 1]) * load16(w + 16);
        a2 += splat16(x[i + 2]) * load16(w + 32);
        a3 += splat16(x[i + 3]) * load16(w + 48);
    }
    for (; i < in; i++, w += 16) a0 += splat16(x[i]) * load16(w);
    return (a0 + a1) + (a2 + a3);
}

/* Each panel is read front to back once per stream: 64 outputs in four
 * vector accumulators (or 16 in one), one broadcast-multiply-add per vector
 * and input; the last panel's padding lanes are computed and not stored. */
ELM_WIDE static void matmul_small_wide(int B, int in, int out, const float *x, size_t ldx, const float *panels,
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
                for (int i = 0; i < in; i++, w += 64) ROW64_FMA(a0, a1, a2, a3, xb[i], w);
                store16(yb + o, a0);
                store16(yb + o + 16, a1);
                store16(yb + o + 32, a2);
                store16(yb + o + 48, a3);
                panel += (size_t)in_total * 64;
                o += 64;
            } else if (out - o <= 8) {
                int width = panel_width(out - o), n = out - o;
                float acc[8] = {0};
                if (accumulate) memcpy(acc, yb + o, (size_t)n * sizeof(float));
                narrow_dispatch(width, in, n, xb, panel + (size_t)row0 * width, acc);
                memcpy(yb + o, acc, (size_t)n * sizeof(float));
                panel += (size_t)in_total * width;
                o += width;
            } else {
                int n = out - o < 16 ? out - o : 16;
                vf16 a0 = zero;
                if (accumulate) memcpy(&a0, yb + o, (size_t)n * sizeof(float));
                a0 = panel16_sum(a0, in, xb, panel + (size_t)row0 * 16);
                memcpy(yb + o, &a0, (size_t)n * sizeof(float));
                panel += (size_t)in_total * 16;
                o += 16;
            }
        }
    }
}

/* One stream: y = epi(init + x W) over rows [row0, row0 + in), panel by
 * panel, the activation or memory update applied to each panel's results
 * while they are in registers. This replaces, at B = 1, the passes
 * fill-bias, product, activate (or memory update) over h: each was a
 * separate call that re-read h and ran a scalar tail. init may be y
 * (accumulate) or the bias. Partial panels load and store through lane
 * masks, so nothing past `out` is read or written. Software prefetch of
 * the weights (per line, 512-2048 bytes ahead) was tried and was slower:
 * the hardware prefetcher already follows the panels, which are read
 * front to back. */
ELM_WIDE static void matvec_fused_wide(int in, int out, const float *x, const float *panels,
                                       int in_total, int row0, const float *init, float *y,
                                       int epi, const float *kappa, const float *coef,
                                       float *mem) {
    const float *panel = panels;
    for (int o = 0; o < out;) {
        int rest = out - o;
        if (rest >= 64) {
            const float *w = panel + (size_t)row0 * 64;
            vf16 a0 = load16(init + o), a1 = load16(init + o + 16), a2 = load16(init + o + 32),
                 a3 = load16(init + o + 48);
            for (int i = 0; i < in; i++, w += 64) ROW64_FMA(a0, a1, a2, a3, x[i], w);
            epilogue16(a0, o, 16, epi, y, kappa, coef, mem);
            epilogue16(a1, o + 16, 16, epi, y, kappa, coef, mem);
            epilogue16(a2, o + 32, 16, epi, y, kappa, coef, mem);
            epilogue16(a3, o + 48, 16, epi, y, kappa, coef, mem);
            panel += (size_t)in_total * 64;
            o += 64;
        } else if (rest <= 8) {
            int width = panel_width(rest);
            const float *w = panel + (size_t)row0 * width;
            vf16 s = width == 8 ? narrow_sum(8, in, x, w) : narrow_sum(4, in, x, w);
            epilogue16(loadn16(init + o, rest) + s, o, rest, epi, y, kappa, coef, mem);
            panel += (size_t)in_total * width;
            o += width;
        } else if (rest > 24) {
            /* Two 16-wide panels follow each other (rest > 24 means the
             * next one is 16 wide too; the first is full, the second holds
             * n2 <= 16 outputs): read both in one loop, one broadcast per
             * 32 weights instead of per 16 (~0.03 us of the B = 1 step). */
            const int n2 = rest - 16 < 16 ? rest - 16 : 16;
            const float *w = panel + (size_t)row0 * 16, *v = w + (size_t)in_total * 16;
            vf16 a0 = load16(init + o), a1 = {0}, b0 = loadn16(init + o + 16, n2), b1 = {0};
            int i = 0;
            for (; i + 2 <= in; i += 2, w += 32, v += 32) {
                vf16 xi = splat16(x[i]), xj = splat16(x[i + 1]);
                a0 += xi * load16(w);
                b0 += xi * load16(v);
                a1 += xj * load16(w + 16);
                b1 += xj * load16(v + 16);
            }
            if (i < in) {
                vf16 xi = splat16(x[i]);
                a0 += xi * load16(w);
                b0 += xi * load16(v);
            }
            epilogue16(a0 + a1, o, 16, epi, y, kappa, coef, mem);
            epilogue16(b0 + b1, o + 16, n2, epi, y, kappa, coef, mem);
            panel += (size_t)in_total * 32;
            o += 32;
        } else {
            const int n = rest < 16 ? rest : 16;
            vf16 a = panel16_sum(loadn16(init + o, n), in, x, panel + (size_t)row0 * 16);
            epilogue16(a, o, n, epi, y, kappa, coef, mem);
            panel += (size_t)in_total * 16;
            o += 16;
        }
    }
}
/* Layer 0 of one stream with its branch part q carried from step to step
 * (elm__matvec_q in elm_internal.h). Per panel: q = kq q (or 0 when
 * fresh) plus the listed branch rows times dv, stored; then bias and the
 * memory rows times um, and the epilogue. Only the listed rows of the
 * branch part are read. */
ELM_WIDE static void matvec_q_wide(int n_b, int n_m, int out, const float *panels, int nr,
                                   const int32_t *rows, const float *dv, float kq, int fresh,
                                   float *q, const float *um, const float *bias, float *y,
                                   int epi, const float *kappa, const float *coef, float *mem) {
    const int in_total = n_b + n_m;
    const float *panel = panels;
    for (int o = 0; o < out;) {
        int rest = out - o;
        if (rest >= 64) {
            vf16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            if (!fresh) {
                a0 = kq * load16(q + o);
                a1 = kq * load16(q + o + 16);
                a2 = kq * load16(q + o + 32);
                a3 = kq * load16(q + o + 48);
            }
            for (int r = 0; r < nr; r++)
                ROW64_FMA(a0, a1, a2, a3, dv[r], panel + (size_t)rows[r] * 64);
            store16(q + o, a0);
            store16(q + o + 16, a1);
            store16(q + o + 32, a2);
            store16(q + o + 48, a3);
            a0 += load16(bias + o);
            a1 += load16(bias + o + 16);
            a2 += load16(bias + o + 32);
            a3 += load16(bias + o + 48);
            const float *w = panel + (size_t)n_b * 64;
            for (int i = 0; i < n_m; i++, w += 64) ROW64_FMA(a0, a1, a2, a3, um[i], w);
            epilogue16(a0, o, 16, epi, y, kappa, coef, mem);
            epilogue16(a1, o + 16, 16, epi, y, kappa, coef, mem);
            epilogue16(a2, o + 32, 16, epi, y, kappa, coef, mem);
            epilogue16(a3, o + 48, 16, epi, y, kappa, coef, mem);
            panel += (size_t)in_total * 64;
            o += 64;
            continue;
        }
        /* 16-, 8- and 4-wide panels: the branch rows one masked vector each */
        const int width = panel_width(rest), n = rest < width ? rest : width;
        vf16 a = fresh ? (vf16){0} : kq * loadn16(q + o, n);
        for (int r = 0; r < nr; r++)
            a += splat16(dv[r]) * loadn16(panel + (size_t)rows[r] * width, width);
        storen16(q + o, a, n);
        a += loadn16(bias + o, n);
        const float *w = panel + (size_t)n_b * width;
        if (width == 16) {
            a += panel16_sum((vf16){0}, n_m, um, w);
        } else {
            a += width == 8 ? narrow_sum(8, n_m, um, w) : narrow_sum(4, n_m, um, w);
        }
        epilogue16(a, o, n, epi, y, kappa, coef, mem);
        panel += (size_t)in_total * width;
        o += width;
    }
}

/* Register blocking for several streams: R rows of x against one column
 * panel, the panel's weights loaded once per input and reused R times, so
 * the weights are read from cache once per R streams instead of once per
 * stream. 64-wide panels keep R x 4 accumulators (24 of the 32 zmm at
 * R = 6), 16-wide ones R. y is accumulated into (it holds the bias, or
 * more); n_last = valid columns of a 16-wide panel. */
#define ELM_ROWS 6
ELM_WIDE static inline __attribute__((always_inline)) void
rows_panel64(const int R, int in, const float *x, size_t ldx,
             const float *w, float *y, size_t ldy) {
    vf16 acc[ELM_ROWS][4];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[r][q] = load16(y + (size_t)r * ldy + 16 * q);
    for (int i = 0; i < in; i++, w += 64) {
        vf16 w0 = load16(w), w1 = load16(w + 16), w2 = load16(w + 32), w3 = load16(w + 48);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            vf16 xi = splat16(x[(size_t)r * ldx + i]);
            acc[r][0] += xi * w0;
            acc[r][1] += xi * w1;
            acc[r][2] += xi * w2;
            acc[r][3] += xi * w3;
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) store16(y + (size_t)r * ldy + 16 * q, acc[r][q]);
}

ELM_WIDE static inline __attribute__((always_inline)) void
rows_panel16(const int R, int in, int n_last, const float *x,
             size_t ldx, const float *w, float *y, size_t ldy) {
    vf16 acc[ELM_ROWS];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        acc[r] = (vf16){0};
        memcpy(&acc[r], y + (size_t)r * ldy, (size_t)n_last * sizeof(float));
    }
    for (int i = 0; i < in; i++, w += 16) {
        vf16 wi = load16(w);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) acc[r] += splat16(x[(size_t)r * ldx + i]) * wi;
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) memcpy(y + (size_t)r * ldy, &acc[r], (size_t)n_last * sizeof(float));
}

ELM_WIDE static inline __attribute__((always_inline)) void
rows_block(const int R, int in, int out, const float *x,
           size_t ldx, const float *panels, int in_total, int row0, float *y, size_t ldy) {
    const float *panel = panels;
    for (int o = 0; o < out;) {
        if (out - o >= 64) {
            rows_panel64(R, in, x, ldx, panel + (size_t)row0 * 64, y + o, ldy);
            panel += (size_t)in_total * 64;
            o += 64;
        } else if (out - o <= 8) {
            /* narrow last panel: one stream at a time, the panel (at most
             * in x 32 bytes) staying in L1 across the R streams */
            int width = panel_width(out - o), n = out - o;
            for (int r = 0; r < R; r++)
                narrow_dispatch(width, in, n, x + (size_t)r * ldx, panel + (size_t)row0 * width,
                                y + o + (size_t)r * ldy);
            panel += (size_t)in_total * width;
            o += width;
        } else {
            int n = out - o < 16 ? out - o : 16;
            rows_panel16(R, in, n, x, ldx, panel + (size_t)row0 * 16, y + o, ldy);
            panel += (size_t)in_total * 16;
            o += 16;
        }
    }
}

/* A per-panel epilogue here (activation / memory update while the 6
 * streams' results are in L1, as elm__matvec_fused does for one stream)
 * was tried for the B = 32 sequence forward and measured no faster (best
 * of 15: 540k vs 555k sample-steps/s): at B >= 6 the separate passes run
 * over h in L1 and cost little next to the products. */
ELM_WIDE static void matmul_rows_wide(int B, int in, int out, const float *x, size_t ldx, const float *panels,
                      int in_total, int row0, float *y, size_t ldy) {
    int b = 0;
    for (; b + ELM_ROWS <= B; b += ELM_ROWS)
        rows_block(ELM_ROWS, in, out, x + (size_t)b * ldx, ldx, panels, in_total, row0,
                   y + (size_t)b * ldy, ldy);
    const float *xb = x + (size_t)b * ldx;
    float *yb = y + (size_t)b * ldy;
    switch (B - b) {
    case 5: rows_block(5, in, out, xb, ldx, panels, in_total, row0, yb, ldy); break;
    case 4: rows_block(4, in, out, xb, ldx, panels, in_total, row0, yb, ldy); break;
    case 3: rows_block(3, in, out, xb, ldx, panels, in_total, row0, yb, ldy); break;
    case 2: rows_block(2, in, out, xb, ldx, panels, in_total, row0, yb, ldy); break;
    case 1: rows_block(1, in, out, xb, ldx, panels, in_total, row0, yb, ldy); break;
    default: break;
    }
}

#endif /* ELM_PANEL_DISPATCH || __AVX512F__ */

/* The epilogue of one panel of elm__matvec_fused: t holds the panel's
 * width (64 or 16, a constant after inlining, so the loops vectorise with
 * no scalar tail) of bias + x W; n of them are valid outputs. The padding
 * lanes are computed too (finite: they hold bias-free zeros) and dropped. */
static inline __attribute__((always_inline)) void fused_epilogue(const int width, float *t, int o,
                                                                 int n, int epi, float *y,
                                                                 const float *kappa,
                                                                 const float *coef, float *mem) {
    if (epi == ELM_EPI_RELU) {
        for (int i = 0; i < width; i++) t[i] = t[i] > 0.0f ? t[i] : 0.0f;
    } else if (epi == ELM_EPI_SILU) {
        for (int i = 0; i < width; i++) t[i] = t[i] / (1.0f + exp_inline(-t[i]));
    } else if (epi == ELM_EPI_MEMORY) {
        /* elm__memory_update's formula, on the panel while it is in L1 */
        for (int i = 0; i < width; i++) {
            float a = t[i] * (2.0f / 3.0f);
            float e = exp_inline(-2.0f * fabsf(a));
            t[i] = 1.7159f * copysignf((1.0f - e) / (1.0f + e), a);
        }
        for (int i = 0; i < n; i++) mem[o + i] = kappa[o + i] * mem[o + i] + coef[o + i] * t[i];
        return;
    }
    memcpy(y + o, t, (size_t)n * sizeof *y);
}

/* Plain panel kernels. GCC lowers the 16-float vectors above piece by
 * piece, through the stack, when the target's registers are narrower: the
 * AVX2 and baseline clones of the B = 1 product took 40 and 28 us for
 * NeuronIO's step products against 2.3 us for the AVX-512 one. Loops over
 * a float array vectorise at the target's own width instead (AVX2: ~95
 * GB/s from L2 on a 64-wide panel), so CPUs without AVX-512 run these:
 * the same panels and epilogues, one partial sum per output. */
static inline __attribute__((always_inline)) void plain_panel(const int width, int in,
                                                              const float *x, const float *w,
                                                              float *t) {
    if (width == 64) {
        for (int i = 0; i < in; i++, w += 64) {
            float xi = x[i];
            for (int q = 0; q < 64; q++) t[q] += xi * w[q];
        }
        return;
    }
    /* Narrower panels: one partial sum per output would wait a whole FMA
     * latency per input (the 4-wide panel ran at ~4 bytes per cycle);
     * four over interleaved inputs do not. */
    float p[4][16] = {{0}};
    int i = 0;
    for (; i + 4 <= in; i += 4, w += 4 * width)
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            for (int q = 0; q < width; q++) p[r][q] += x[i + r] * w[r * width + q];
    for (; i < in; i++, w += width)
        for (int q = 0; q < width; q++) p[0][q] += x[i] * w[q];
    for (int q = 0; q < width; q++) t[q] += (p[0][q] + p[1][q]) + (p[2][q] + p[3][q]);
}

/* t (width, zero past the valid outputs) += x (in) @ the panel at w */
static inline __attribute__((always_inline)) void plain_dispatch(int width, int in,
                                                                 const float *x, const float *w,
                                                                 float *t) {
    switch (width) {
    case 64: plain_panel(64, in, x, w, t); break;
    case 16: plain_panel(16, in, x, w, t); break;
    case 8: plain_panel(8, in, x, w, t); break;
    default: plain_panel(4, in, x, w, t); break;
    }
}

static inline __attribute__((always_inline)) void
matmul_small_plain(int B, int in, int out, const float *x, size_t ldx, const float *panels,
                   int in_total, int row0, float *y, size_t ldy, int accumulate) {
    float t[64];
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * ldx;
        float *yb = y + (size_t)b * ldy;
        const float *panel = panels;
        for (int o = 0; o < out;) {
            int width = panel_width(out - o), n = out - o < width ? out - o : width;
            memset(t, 0, sizeof t);
            if (accumulate) memcpy(t, yb + o, (size_t)n * sizeof(float));
            plain_dispatch(width, in, xb, panel + (size_t)row0 * width, t);
            memcpy(yb + o, t, (size_t)n * sizeof(float));
            panel += (size_t)in_total * width;
            o += width;
        }
    }
}

static inline __attribute__((always_inline)) void
matvec_fused_plain(int in, int out, const float *x, const float *panels, int in_total, int row0,
                   const float *init, float *y, int epi, const float *kappa, const float *coef,
                   float *mem) {
    float t[64];
    const float *panel = panels;
    for (int o = 0; o < out;) {
        int width = panel_width(out - o), n = out - o < width ? out - o : width;
        memset(t, 0, sizeof t);
        memcpy(t, init + o, (size_t)n * sizeof(float));
        plain_dispatch(width, in, x, panel + (size_t)row0 * width, t);
        if (width == 64)
            fused_epilogue(64, t, o, n, epi, y, kappa, coef, mem);
        else
            fused_epilogue(16, t, o, n, epi, y, kappa, coef, mem);
        panel += (size_t)in_total * width;
        o += width;
    }
}

/* matvec_q_wide in plain loops: per panel t = kq q (or 0), plus the listed
 * branch rows, stored to q; then bias, the memory rows, the epilogue. */
static inline __attribute__((always_inline)) void
matvec_q_plain(int n_b, int n_m, int out, const float *panels, int nr, const int32_t *rows,
               const float *dv, float kq, int fresh, float *q, const float *um, const float *bias,
               float *y, int epi, const float *kappa, const float *coef, float *mem) {
    float t[64];
    const float *panel = panels;
    for (int o = 0; o < out;) {
        int width = panel_width(out - o), n = out - o < width ? out - o : width;
        memset(t, 0, sizeof t);
        if (!fresh)
            for (int k = 0; k < n; k++) t[k] = kq * q[o + k];
        for (int r = 0; r < nr; r++) {
            const float *w = panel + (size_t)rows[r] * width;
            for (int k = 0; k < width; k++) t[k] += dv[r] * w[k];
        }
        memcpy(q + o, t, (size_t)n * sizeof(float));
        for (int k = 0; k < n; k++) t[k] += bias[o + k];
        plain_dispatch(width, n_m, um, panel + (size_t)n_b * width, t);
        if (width == 64)
            fused_epilogue(64, t, o, n, epi, y, kappa, coef, mem);
        else
            fused_epilogue(16, t, o, n, epi, y, kappa, coef, mem);
        panel += (size_t)(n_b + n_m) * width;
        o += width;
    }
}

#define ELM_SMALL_ARGS                                                                           \
    int B, int in, int out, const float *x, size_t ldx, const float *panels, int in_total,       \
        int row0, float *y, size_t ldy, int accumulate
#define ELM_FUSED_ARGS                                                                           \
    int in, int out, const float *x, const float *panels, int in_total, int row0,                \
        const float *init, float *y, int epi, const float *kappa, const float *coef, float *mem
#define ELM_ROWS_ARGS                                                                            \
    int B, int in, int out, const float *x, size_t ldx, const float *panels, int in_total,       \
        int row0, float *y, size_t ldy
#define ELM_Q_ARGS                                                                               \
    int n_b, int n_m, int out, const float *panels, int nr, const int32_t *rows,                 \
        const float *dv, float kq, int fresh, float *q, const float *um, const float *bias,      \
        float *y, int epi, const float *kappa, const float *coef, float *mem
#define ELM_Q_CALL(f)                                                                            \
    f(n_b, n_m, out, panels, nr, rows, dv, kq, fresh, q, um, bias, y, epi, kappa, coef, mem)

#if defined(ELM_PANEL_DISPATCH)
#define ELM_AVX2 __attribute__((target("avx2,fma")))
ELM_AVX2 static void matmul_small_avx2(ELM_SMALL_ARGS) {
    matmul_small_plain(B, in, out, x, ldx, panels, in_total, row0, y, ldy, accumulate);
}
static void matmul_small_base(ELM_SMALL_ARGS) {
    matmul_small_plain(B, in, out, x, ldx, panels, in_total, row0, y, ldy, accumulate);
}
ELM_AVX2 static void matvec_fused_avx2(ELM_FUSED_ARGS) {
    matvec_fused_plain(in, out, x, panels, in_total, row0, init, y, epi, kappa, coef, mem);
}
static void matvec_fused_base(ELM_FUSED_ARGS) {
    matvec_fused_plain(in, out, x, panels, in_total, row0, init, y, epi, kappa, coef, mem);
}
ELM_AVX2 static void matmul_rows_avx2(ELM_ROWS_ARGS) {
    matmul_small_plain(B, in, out, x, ldx, panels, in_total, row0, y, ldy, 1);
}
static void matmul_rows_base(ELM_ROWS_ARGS) {
    matmul_small_plain(B, in, out, x, ldx, panels, in_total, row0, y, ldy, 1);
}
ELM_AVX2 static void matvec_q_avx2(ELM_Q_ARGS) { ELM_Q_CALL(matvec_q_plain); }
static void matvec_q_base(ELM_Q_ARGS) { ELM_Q_CALL(matvec_q_plain); }

/* 0: AVX-512, 1: AVX2 + FMA, 2: neither */
static int panel_isa(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 2;
}
typedef void small_fn(ELM_SMALL_ARGS);
typedef void fused_fn(ELM_FUSED_ARGS);
typedef void rows_fn(ELM_ROWS_ARGS);
static small_fn *resolve_small(void) {
    small_fn *f[] = {matmul_small_wide, matmul_small_avx2, matmul_small_base};
    return f[panel_isa()];
}
static fused_fn *resolve_fused(void) {
    fused_fn *f[] = {matvec_fused_wide, matvec_fused_avx2, matvec_fused_base};
    return f[panel_isa()];
}
static rows_fn *resolve_rows(void) {
    rows_fn *f[] = {matmul_rows_wide, matmul_rows_avx2, matmul_rows_base};
    return f[panel_isa()];
}
typedef void q_fn(ELM_Q_ARGS);
static q_fn *resolve_q(void) {
    q_fn *f[] = {matvec_q_wide, matvec_q_avx2, matvec_q_base};
    return f[panel_isa()];
}
void elm__matmul_small(ELM_SMALL_ARGS) __attribute__((ifunc("resolve_small")));
void elm__matvec_fused(ELM_FUSED_ARGS) __attribute__((ifunc("resolve_fused")));
void elm__matmul_rows(ELM_ROWS_ARGS) __attribute__((ifunc("resolve_rows")));
void elm__matvec_q(ELM_Q_ARGS) __attribute__((ifunc("resolve_q")));

bool elm__panel_kernels(int isa, elm_panel_kernels *k) {
    static const elm_panel_kernels all[] = {
        {matmul_small_wide, matvec_fused_wide, matmul_rows_wide, matvec_q_wide},
        {matmul_small_avx2, matvec_fused_avx2, matmul_rows_avx2, matvec_q_avx2},
        {matmul_small_base, matvec_fused_base, matmul_rows_base, matvec_q_base},
    };
    if (isa < panel_isa() || isa > 2) return false;
    *k = all[isa];
    return true;
}
#elif defined(__AVX512F__)
/* no run-time dispatch (clang, sanitizer builds), built for AVX-512 */
void elm__matmul_small(ELM_SMALL_ARGS) {
    matmul_small_wide(B, in, out, x, ldx, panels, in_total, row0, y, ldy, accumulate);
}
void elm__matvec_fused(ELM_FUSED_ARGS) {
    matvec_fused_wide(in, out, x, panels, in_total, row0, init, y, epi, kappa, coef, mem);
}
void elm__matmul_rows(ELM_ROWS_ARGS) {
    matmul_rows_wide(B, in, out, x, ldx, panels, in_total, row0, y, ldy);
}
void elm__matvec_q(ELM_Q_ARGS) { ELM_Q_CALL(matvec_q_wide); }
#endif

#if !defined(ELM_PANEL_DISPATCH)
/* Without run-time dispatch the one version built is the only one. */
bool elm__panel_kernels(int isa, elm_panel_kernels *k) {
#if defined(__AVX512F__)
    if (isa != 0) return false;
#else
    if (isa != 2) return false;
#endif
    *k = (elm_panel_kernels){elm__matmul_small, elm__matvec_fused, elm__matmul_rows,
                             elm__matvec_q};
    return true;
}
#endif

#if !defined(ELM_PANEL_DISPATCH) && !defined(__AVX512F__)
/* no run-time dispatch, built for a target without AVX-512 */
void elm__matmul_small(ELM_SMALL_ARGS) {
    matmul_small_plain(B, in, out, x, ldx, panels, in_total, row0, y, ldy, accumulate);
}
void elm__matvec_fused(ELM_FUSED_ARGS) {
    matvec_fused_plain(in, out, x, panels, in_total, row0, init, y, epi, kappa, coef, mem);
}
void elm__matmul_rows(ELM_ROWS_ARGS) {
    matmul_small_plain(B, in, out, x, ldx, panels, in_total, row0, y, ldy, 1);
}
void elm__matvec_q(ELM_Q_ARGS) { ELM_Q_CALL(matvec_q_plain); }
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
 * 1 - tanh^2(a) = 4e / (1 + e)^2 for e = exp(-2|a|), exact near saturation.
 * Every pointer of the row is restrict-qualified, kappa and coef included:
 * without that GCC cannot prove that the stores miss them and leaves the
 * loop scalar (about 9% of a NeuronIO training step). The only version:
 * the tape's elm__tape_memory_backward (kernels/bwd.c) forwards here. */
static inline __attribute__((always_inline)) void
memory_backward_row(int n, const float *restrict gb, const float *restrict zb,
                    const float *restrict pb, const float *restrict kappa,
                    const float *restrict coef, float *restrict db, float *restrict cb,
                    float *restrict ac, float *restrict ak) {
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

ELM_CLONES
void elm__memory_backward(int B, int n, const float *gm, const float *z, const float *mprev,
                          const float *kappa, const float *coef, float *dz, float *carry,
                          float *acc_coef, float *acc_kappa) {
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * (size_t)n;
        memory_backward_row(n, gm + o, z + o, mprev + o, kappa, coef, dz + o, carry + o, acc_coef,
                            acc_kappa);
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
