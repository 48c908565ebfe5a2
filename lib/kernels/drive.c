/* The input side of a step: which blocks of a dense row are non-zero, and
 * the drive d = x W_in of the traces, from dense rows or from events. */
#include "../elm_internal.h"

#include <math.h>
#include <string.h>

#if defined(ELM_HAVE_IFUNC) || defined(__AVX512F__)
#include <immintrin.h>
#endif

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

/* ------------------------------------------------------------------------
 * The drive d (n_trace) += x W_in, from a dense row or from events.
 *
 * Every version adds, per input in the order met, w * x to each of the
 * input's traces, as `d[t] += w * x`. Where the CSR holds the entries the
 * sums go through memory; with windows (elm_drive_win) through registers.
 * The products and the order of the adds are the same either way, so the
 * window and CSR forms, dense rows and events, give the same bits within a
 * build: the AVX-512 versions contract each add into an FMA, the baseline
 * ones do not, and both forms of one build are dispatched alike. */

/* One input's CSR entries, times v, into d. */
static inline __attribute__((always_inline)) void csr_add(const elm_drive *dr, int i, float v,
                                                          float *d) {
    for (int32_t e = dr->ptr[i]; e < dr->ptr[i + 1]; e++) d[dr->tgt[e]] += dr->w[e] * v;
}

/* One input's window, times v, into d: the CSR loop's expression. */
static inline __attribute__((always_inline)) void win_add(const elm_drive_win *e, float v,
                                                          float *d) {
    int n = __builtin_popcountll(e->lanes);
    for (int q = 0; q < n; q++) d[e->first + q] += e->w[q] * v;
}

static inline __attribute__((always_inline)) void input_add(const elm_drive *dr, int i, float v,
                                                            float *d) {
    if (dr->win)
        win_add(&dr->win[i], v, d);
    else
        csr_add(dr, i, v, d);
}

/* Portable versions: with run-time dispatch the fallback for CPUs without
 * AVX-512; without it, the build's only version unless it targets
 * AVX-512. */
#if defined(ELM_HAVE_IFUNC) || !defined(__AVX512F__)
/* Portable scan: the block scan, then the elements of each non-zero
 * block. */
static int drive_scan_portable(const float *x, int n, const elm_drive *dr, float *d,
                               uint64_t *blocks) {
    /* Spans of 64 x 64 blocks so the bit set fits on the stack. */
    enum { SPAN = 64 * 64 * 16 };
    uint64_t local[64];
    for (int base = 0; base < n; base += SPAN) {
        int len = n - base < SPAN ? n - base : SPAN;
        uint64_t *bits = blocks ? blocks + base / 1024 : local;
        elm__nonzero_blocks(x + base, len, bits);
        for (int wd = 0; wd < (len + 1023) / 1024; wd++)
            for (uint64_t word = bits[wd]; word; word &= word - 1) {
                int i0 = base + (wd * 64 + __builtin_ctzll(word)) * 16;
                int i1 = i0 + 16 < n ? i0 + 16 : n;
                for (int i = i0; i < i1; i++) {
                    float v = x[i];
                    if (v == 0.0f) continue;
                    if (!isfinite(v)) return i;
                    input_add(dr, i, v, d);
                }
            }
    }
    return -1;
}

static void drive_events_portable(const int32_t *ch, const float *val, int64_t n,
                                  const elm_drive *dr, float *d) {
    for (int64_t k = 0; k < n; k++) input_add(dr, ch[k], val ? val[k] : 1.0f, d);
}
#endif

#if defined(ELM_HAVE_IFUNC) || defined(__AVX512F__)
#define ELM_AVX512 __attribute__((target("avx512f")))

/* Windows on AVX-512: the drive in nr registers of 16 traces (nr <= 4).
 * An input adds v w to the lanes of its window: w, four floats, is spread
 * over a register by one permute (lane l takes w[(l - first) mod 4], the
 * same for every register as 16 is a multiple of 4) and added under the
 * window's lane mask. Against the CSR through memory this drops the
 * offsets load, the loop whose length depends on the input and the
 * store-to-load chains on d: the NeuronIO event drive (12 events) went
 * from ~0.06-0.10 to ~0.04-0.06 us behind a 200 KB stream. */
ELM_AVX512 static inline __attribute__((always_inline)) void
win_add16(const elm_drive_win *e, float v, const int nr, __m512 *acc) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i idx = _mm512_and_si512(_mm512_sub_epi32(iota, _mm512_set1_epi32(e->first)),
                                   _mm512_set1_epi32(3));
    __m512 w = _mm512_permutexvar_ps(idx, _mm512_broadcast_f32x4(_mm_loadu_ps(e->w)));
    __m512 vv = _mm512_set1_ps(v);
    for (int r = 0; r < nr; r++)
        acc[r] = _mm512_mask3_fmadd_ps(w, vv, acc[r], (__mmask16)(e->lanes >> (16 * r)));
}

/* Lanes of register r that hold one of the n_trace traces. */
static inline __mmask16 trace_lanes(int n_trace, int r) {
    int rest = n_trace - 16 * r;
    return rest >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rest) - 1);
}

/* nr = 0: the CSR, through memory; else windows in nr registers. */
ELM_AVX512 static inline __attribute__((always_inline)) void
acc_load(const int nr, const elm_drive *dr, const float *d, __m512 *acc) {
    for (int r = 0; r < nr; r++)
        acc[r] = _mm512_maskz_loadu_ps(trace_lanes(dr->n_trace, r), d + 16 * r);
}

ELM_AVX512 static inline __attribute__((always_inline)) void
acc_store(const int nr, const elm_drive *dr, float *d, const __m512 *acc) {
    for (int r = 0; r < nr; r++)
        _mm512_mask_storeu_ps(d + 16 * r, trace_lanes(dr->n_trace, r), acc[r]);
}

ELM_AVX512 static inline __attribute__((always_inline)) void
acc_add(const int nr, const elm_drive *dr, int i, float v, float *d, __m512 *acc) {
    if (nr)
        win_add16(&dr->win[i], v, nr, acc);
    else
        csr_add(dr, i, v, d);
}

/* Lanes of x[0, rest) of a 16-float block (all 16 when rest >= 16). */
static inline __mmask16 block_lanes(int rest) {
    return rest >= 16 ? (__mmask16)0xffff : rest <= 0 ? (__mmask16)0 : (__mmask16)((1u << rest) - 1);
}

/* Two passes over spans of up to 64 x 64 inputs. First, per 64 inputs,
 * four loads give a 64-bit word of the inputs with a non-zero magnitude
 * and one of the non-finite ones (magnitude bits >= those of Inf), with no
 * branch on the data; then the set bits are visited in order. Branching
 * per 16-input block instead (taken for ~15 % of NeuronIO's blocks, at
 * random) cost ~0.15 us per 1278-input row, mostly mispredictions; this
 * way ~0.06 us. Inputs after the first non-finite one are never added.
 * Without `blocks` (the state's step and forward) the bit-set bookkeeping
 * is compiled out. */
ELM_AVX512 static inline __attribute__((always_inline)) int
scan_body(const int nr, const float *x, int n, const elm_drive *dr, float *d, uint64_t *blocks,
          const int want_blocks) {
    enum { GROUPS = 64 };
    const __m512i mag = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    __m512 acc[4];
    acc_load(nr, dr, d, acc);
    int bad_at = -1;
    for (int base = 0; base < n && bad_at < 0; base += GROUPS * 64) {
        uint64_t nzw[GROUPS];
        int ng = (n - base + 63) / 64 < GROUPS ? (n - base + 63) / 64 : GROUPS;
        for (int g = 0; g < ng; g++) {
            uint64_t nz = 0, bad = 0;
            for (int q = 0; q < 4; q++) {
                int i0 = base + g * 64 + q * 16;
                __m512i a = _mm512_and_si512(
                    _mm512_maskz_loadu_epi32(block_lanes(n - i0), x + (size_t)i0), mag);
                nz |= (uint64_t)_mm512_test_epi32_mask(a, a) << (16 * q);
                bad |= (uint64_t)_mm512_cmpge_epu32_mask(a, inf) << (16 * q);
            }
            if (bad) { /* rare: stop the span here */
                nzw[g] = nz & (((uint64_t)1 << __builtin_ctzll(bad)) - 1);
                bad_at = base + g * 64 + __builtin_ctzll(bad);
                ng = g + 1;
                break;
            }
            nzw[g] = nz;
        }
        for (int g = 0; g < ng; g++) {
            for (uint64_t w = nzw[g]; w; w &= w - 1) {
                int i = base + g * 64 + __builtin_ctzll(w);
                acc_add(nr, dr, i, x[i], d, acc);
            }
            if (want_blocks && bad_at < 0) {
                uint64_t bits = 0;
                for (int q = 0; q < 4; q++) bits |= (uint64_t)(((nzw[g] >> (16 * q)) & 0xffff) != 0) << q;
                int k = (base + g * 64) / 16;
                if (k % 64 == 0) blocks[k / 64] = 0;
                blocks[k / 64] |= bits << (k % 64);
            }
        }
    }
    acc_store(nr, dr, d, acc);
    return bad_at;
}

ELM_AVX512 static inline __attribute__((always_inline)) int
scan_nr(const int nr, const float *x, int n, const elm_drive *dr, float *d, uint64_t *blocks) {
    if (blocks) return scan_body(nr, x, n, dr, d, blocks, 1);
    return scan_body(nr, x, n, dr, d, NULL, 0);
}

ELM_AVX512 static int drive_scan_avx512(const float *x, int n, const elm_drive *dr, float *d,
                                        uint64_t *blocks) {
    switch (dr->win ? (dr->n_trace + 15) / 16 : 0) {
    case 0: return scan_nr(0, x, n, dr, d, blocks);
    case 1: return scan_nr(1, x, n, dr, d, blocks);
    case 2: return scan_nr(2, x, n, dr, d, blocks);
    case 3: return scan_nr(3, x, n, dr, d, blocks);
    default: return scan_nr(4, x, n, dr, d, blocks);
    }
}

ELM_AVX512 static inline __attribute__((always_inline)) void
events_body(const int nr, const int32_t *ch, const float *val, int64_t n, const elm_drive *dr,
            float *d) {
    __m512 acc[4];
    acc_load(nr, dr, d, acc);
    for (int64_t k = 0; k < n; k++) acc_add(nr, dr, ch[k], val ? val[k] : 1.0f, d, acc);
    acc_store(nr, dr, d, acc);
}

ELM_AVX512 static void drive_events_avx512(const int32_t *ch, const float *val, int64_t n,
                                           const elm_drive *dr, float *d) {
    switch (dr->win ? (dr->n_trace + 15) / 16 : 0) {
    case 0: events_body(0, ch, val, n, dr, d); break;
    case 1: events_body(1, ch, val, n, dr, d); break;
    case 2: events_body(2, ch, val, n, dr, d); break;
    case 3: events_body(3, ch, val, n, dr, d); break;
    default: events_body(4, ch, val, n, dr, d); break;
    }
}
#endif

#if defined(ELM_HAVE_IFUNC)
typedef int drive_scan_fn(const float *, int, const elm_drive *, float *, uint64_t *);
typedef void drive_events_fn(const int32_t *, const float *, int64_t, const elm_drive *, float *);
static drive_scan_fn *resolve_drive_scan(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? drive_scan_avx512 : drive_scan_portable;
}
static drive_events_fn *resolve_drive_events(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? drive_events_avx512 : drive_events_portable;
}
int elm__drive_scan(const float *x, int n, const elm_drive *dr, float *d, uint64_t *blocks)
    __attribute__((ifunc("resolve_drive_scan")));
void elm__drive_events(const int32_t *ch, const float *val, int64_t n, const elm_drive *dr,
                       float *d) __attribute__((ifunc("resolve_drive_events")));
#else
/* No run-time dispatch: the one version this build targets. */
#if defined(__AVX512F__)
#define DRIVE_VERSION(name) name##_avx512
#else
#define DRIVE_VERSION(name) name##_portable
#endif
int elm__drive_scan(const float *x, int n, const elm_drive *dr, float *d, uint64_t *blocks) {
    return DRIVE_VERSION(drive_scan)(x, n, dr, d, blocks);
}
void elm__drive_events(const int32_t *ch, const float *val, int64_t n, const elm_drive *dr,
                       float *d) {
    DRIVE_VERSION(drive_events)(ch, val, n, dr, d);
}
#endif
