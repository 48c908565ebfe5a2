/* White-box tests of lib/kernels: the BLIS configuration policy, the
 * exponential, the small products, and the panel layout they read.
 * Linked against the internal objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "elm_internal.h"

#ifdef ELM_USE_BLIS
static elm_cpu cpu(const char *vendor, unsigned family, bool avx512) {
    elm_cpu c;
    memset(&c, 0, sizeof c);
    strcpy(c.vendor, vendor);
    c.family = family;
    c.avx = c.avx2 = c.fma = true;
    c.avx512f = c.avx512dq = c.avx512bw = c.avx512vl = avx512;
    return c;
}
#endif

static void test_blis_policy(void **st) {
    (void)st;
#ifdef ELM_USE_BLIS
    const char *why;
    elm_cpu c = cpu("AuthenticAMD", 0x1A, true); /* Zen 5: unknown to BLIS 0.9 */
    assert_string_equal(elm__blis_pick(&c, &why), "skx");
    c = cpu("AuthenticAMD", 0x19, true); /* Zen 4: zen3 kernels measured faster */
    assert_string_equal(elm__blis_pick(&c, &why), "zen3");
    c = cpu("AuthenticAMD", 0x1A, false);
    assert_string_equal(elm__blis_pick(&c, &why), "zen3");
    c = cpu("GenuineIntel", 6, true);
    assert_string_equal(elm__blis_pick(&c, &why), "skx");
    c = cpu("GenuineIntel", 6, false);
    assert_string_equal(elm__blis_pick(&c, &why), "haswell");
    c.avx2 = c.fma = false;
    assert_string_equal(elm__blis_pick(&c, &why), "sandybridge");
    c.avx = false;
    assert_null(elm__blis_pick(&c, &why));
#else
    skip();
#endif
}

static void test_expf_accuracy(void **st) {
    (void)st;
    double worst = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
        double want = exp((double)x), got = elm__expf(x);
        double rel = fabs(got - want) / want;
        if (rel > worst) worst = rel;
    }
    print_message("elm__expf worst relative error %.3g\n", worst);
    assert_true(worst < 4e-7); /* a few float ulps */
    assert_true(elm__expf(-1000.0f) < 1e-37f);
    assert_true(isfinite(elm__expf(1000.0f)));
    assert_true(elm__expf(0.0f) == 1.0f);
}

/* Every version of the panel kernels this CPU runs (elm__panel_kernels):
 * the tests below check each against the same references. */
static int n_checked_isas;

static void test_matmul_small_isa(const elm_panel_kernels *k) {
    /* 154 outputs = 2 panels of 64 + 2 of 16, the last one partial; the
     * product over input rows [5, 37) of the 37 packed rows */
    enum { B = 3, IN = 37, OUT = 154, ROW0 = 5 };
    static float x[B * IN], w[OUT * IN], y[B * OUT], ref[B * OUT];
    static float packed[IN * 160];
    assert_int_equal(elm__panel_cols(OUT), 160);
    /* narrow last panels: 2 -> one of 4; 100 = 64 + 16 + 16 + 4;
     * 150 = 64 + 64 + 16 + 8 (the OUT - 4 case below) */
    assert_int_equal(elm__panel_cols(2), 4);
    assert_int_equal(elm__panel_cols(100), 100);
    assert_int_equal(elm__panel_cols(OUT - 4), 152);
    assert_int_equal(elm__panel_cols(128), 128);
    for (int i = 0; i < B * IN; i++) x[i] = (float)((i * 7919) % 23) / 23.0f - 0.5f;
    for (int i = 0; i < OUT * IN; i++) w[i] = (float)((i * 104729) % 31) / 31.0f - 0.5f;
    elm__pack_panels(w, OUT, IN, packed);
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OUT; o++) {
            double acc = 1.0;
            for (int i = ROW0; i < IN; i++) acc += (double)x[b * IN + i] * w[o * IN + i];
            ref[b * OUT + o] = (float)acc;
            y[b * OUT + o] = 1.0f;
        }
    k->small(B, IN - ROW0, OUT, x + ROW0, IN, packed, IN, ROW0, y, OUT, 1);
    for (int i = 0; i < B * OUT; i++) assert_true(fabsf(y[i] - ref[i]) < 1e-5f);
    /* overwrite; a narrower output leaves the columns past it untouched */
    for (int i = 0; i < B * OUT; i++) y[i] = 7.0f;
    elm__pack_panels(w, OUT - 4, IN, packed);
    k->small(B, IN - ROW0, OUT - 4, x + ROW0, IN, packed, IN, ROW0, y, OUT, 0);
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OUT; o++) {
            if (o < OUT - 4) assert_true(fabsf(y[b * OUT + o] + 1.0f - ref[b * OUT + o]) < 1e-5f);
            else assert_true(y[b * OUT + o] == 7.0f);
        }
    /* the register-blocked kernel accumulates over the same panels,
     * narrow 8-wide last panel included */
    for (int i = 0; i < B * OUT; i++) y[i] = 1.0f;
    k->rows(B, IN - ROW0, OUT - 4, x + ROW0, IN, packed, IN, ROW0, y, OUT);
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OUT; o++) {
            if (o < OUT - 4) assert_true(fabsf(y[b * OUT + o] - ref[b * OUT + o]) < 1e-5f);
            else assert_true(y[b * OUT + o] == 1.0f);
        }
}

static void test_matmul_small(void **st) {
    (void)st;
    elm_panel_kernels k;
    n_checked_isas = 0;
    for (int isa = 0; isa < 3; isa++)
        if (elm__panel_kernels(isa, &k)) {
            test_matmul_small_isa(&k);
            n_checked_isas++;
        }
    /* at least the version this build runs */
    assert_true(n_checked_isas >= 1);
    print_message("panel kernels checked for %d instruction set(s)\n", n_checked_isas);
}

/* The fused B = 1 product against a double-precision reference, for every
 * output width from 1 to 200 (so every mix of 64-, paired 16-, single 16-,
 * 8- and 4-wide panels, full and partial), odd and even input counts, a
 * row offset, and each epilogue; nothing past `out` is written, in y or
 * in mem. */
static void test_matvec_fused_isa(const elm_panel_kernels *k) {
    enum { MAXO = 200, IN_TOTAL = 37, GUARD = 16 };
    static float w[MAXO * IN_TOTAL], packed[IN_TOTAL * (MAXO + 64)];
    static float x[IN_TOTAL], init[MAXO + GUARD], y[MAXO + GUARD], mem[MAXO + GUARD],
        kappa[MAXO + GUARD], coef[MAXO + GUARD];
    for (int i = 0; i < MAXO * IN_TOTAL; i++) w[i] = (float)((i * 104729) % 61) / 61.0f - 0.5f;
    for (int i = 0; i < IN_TOTAL; i++) x[i] = (float)((i * 7919) % 29) / 29.0f - 0.5f;
    for (int o = 0; o < MAXO + GUARD; o++) {
        init[o] = (float)(o % 7) * 0.1f - 0.3f;
        kappa[o] = 0.9f - 0.001f * (float)(o % 50);
        coef[o] = 1.0f - kappa[o];
    }
    const int epis[] = {ELM_EPI_NONE, ELM_EPI_RELU, ELM_EPI_SILU, ELM_EPI_MEMORY};
    for (int out = 1; out <= MAXO; out++) {
        elm__pack_panels(w, out, IN_TOTAL, packed);
        /* row spans: whole 16-row blocks of the narrow panels with and
         * without rows left over, exactly one block, and no whole block */
        static const int spans[][2] = {{0, 37}, {4, 32}, {5, 16}, {3, 5}};
        for (int sp = 0; sp < 4; sp++) {
            const int row0 = spans[sp][0], in = spans[sp][1];
            for (int e = 0; e < 4; e++) {
                for (int o = 0; o < MAXO + GUARD; o++) {
                    y[o] = 42.0f;
                    mem[o] = 0.25f * (float)(o % 5);
                }
                k->fused(in, out, x + row0, packed, IN_TOTAL, row0, init, y, epis[e], kappa,
                         coef, mem);
                for (int o = 0; o < MAXO + GUARD; o++) {
                    double z = init[o];
                    for (int i = 0; o < out && i < in; i++)
                        z += (double)x[row0 + i] * w[o * IN_TOTAL + row0 + i];
                    double m0 = 0.25 * (o % 5), want_y = 42.0, want_m = m0;
                    if (o < out) {
                        if (epis[e] == ELM_EPI_NONE) want_y = z;
                        else if (epis[e] == ELM_EPI_RELU) want_y = z > 0 ? z : 0;
                        else if (epis[e] == ELM_EPI_SILU) want_y = z / (1 + exp(-z));
                        else want_m = kappa[o] * m0 + coef[o] * 1.7159 * tanh(2.0 * z / 3.0);
                    }
                    if (!(fabs(y[o] - want_y) <= 2e-6 * (1 + fabs(want_y))) ||
                        !(fabs(mem[o] - want_m) <= 2e-6 * (1 + fabs(want_m))))
                        fail_msg("out %d row0 %d epi %d: element %d: y %.9g (want %.9g), mem "
                                 "%.9g (want %.9g)", out, row0, epis[e], o, (double)y[o], want_y,
                                 (double)mem[o], want_m);
                }
            }
        }
    }
}

static void test_matvec_fused(void **st) {
    (void)st;
    elm_panel_kernels k;
    for (int isa = 0; isa < 3; isa++)
        if (elm__panel_kernels(isa, &k)) test_matvec_fused_isa(&k);
}

/* Layer 0 with its branch part carried (elm__matvec_q) against a double
 * reference, for every output width from 1 to 200 (every mix of panel
 * widths), fresh and carried, a subset of branch rows, each epilogue;
 * q and y are written for the outputs only, mem only for the memory
 * epilogue. */
static void test_matvec_q_isa(const elm_panel_kernels *k) {
    enum { MAXO = 200, NB = 7, NM = 9, IN = NB + NM, GUARD = 16 };
    static float w[MAXO * IN], packed[IN * (MAXO + 64)];
    static float um[NM], bias[MAXO + GUARD], q[MAXO + GUARD], q0[MAXO + GUARD], y[MAXO + GUARD],
        mem[MAXO + GUARD], kappa[MAXO + GUARD], coef[MAXO + GUARD];
    const int32_t rows[3] = {1, 4, 6};
    const float dv[3] = {0.7f, -1.3f, 0.25f}, kq = 0.8f;
    for (int i = 0; i < MAXO * IN; i++) w[i] = (float)((i * 7919) % 53) / 53.0f - 0.5f;
    for (int i = 0; i < NM; i++) um[i] = (float)((i * 31) % 11) / 11.0f - 0.4f;
    for (int o = 0; o < MAXO + GUARD; o++) {
        bias[o] = (float)(o % 5) * 0.1f - 0.2f;
        q0[o] = (float)((o * 3) % 7) * 0.15f - 0.4f;
        kappa[o] = 0.9f - 0.002f * (float)(o % 30);
        coef[o] = 1.0f - kappa[o];
    }
    const int epis[] = {ELM_EPI_NONE, ELM_EPI_RELU, ELM_EPI_SILU, ELM_EPI_MEMORY};
    for (int out = 1; out <= MAXO; out++) {
        elm__pack_panels(w, out, IN, packed);
        for (int fresh = 0; fresh < 2; fresh++)
            for (int e = 0; e < 4; e++) {
                for (int o = 0; o < MAXO + GUARD; o++) {
                    q[o] = q0[o];
                    y[o] = 42.0f;
                    mem[o] = 0.25f * (float)(o % 5);
                }
                k->q(NB, NM, out, packed, 3, rows, dv, kq, fresh, q, um, bias, y, epis[e], kappa,
                     coef, mem);
                for (int o = 0; o < MAXO + GUARD; o++) {
                    double want_q = q0[o], want_y = 42.0, m0 = 0.25 * (o % 5), want_m = m0;
                    if (o < out) {
                        want_q = fresh ? 0.0 : (double)kq * q0[o];
                        for (int r = 0; r < 3; r++) want_q += (double)dv[r] * w[o * IN + rows[r]];
                        double z = bias[o] + want_q;
                        for (int i = 0; i < NM; i++) z += (double)um[i] * w[o * IN + NB + i];
                        if (epis[e] == ELM_EPI_NONE) want_y = z;
                        else if (epis[e] == ELM_EPI_RELU) want_y = z > 0 ? z : 0;
                        else if (epis[e] == ELM_EPI_SILU) want_y = z / (1 + exp(-z));
                        else want_m = kappa[o] * m0 + coef[o] * 1.7159 * tanh(2.0 * z / 3.0);
                    }
                    if (!(fabs(q[o] - want_q) <= 2e-6 * (1 + fabs(want_q))) ||
                        !(fabs(y[o] - want_y) <= 2e-6 * (1 + fabs(want_y))) ||
                        !(fabs(mem[o] - want_m) <= 2e-6 * (1 + fabs(want_m))))
                        fail_msg("out %d fresh %d epi %d: element %d: q %.9g (want %.9g), y %.9g "
                                 "(want %.9g), mem %.9g (want %.9g)", out, fresh, epis[e], o,
                                 (double)q[o], want_q, (double)y[o], want_y, (double)mem[o],
                                 want_m);
                }
            }
    }
}

static void test_matvec_q(void **st) {
    (void)st;
    elm_panel_kernels k;
    int n = 0;
    for (int isa = 0; isa < 3; isa++)
        if (elm__panel_kernels(isa, &k)) {
            test_matvec_q_isa(&k);
            n++;
        }
    assert_true(n >= 1);
}

/* The block scan: every block with a non-zero, NaN or Inf is flagged, and
 * blocks of +-0 only are not, for lengths with and without a tail. */
static void test_nonzero_blocks(void **st) {
    (void)st;
    static float x[1300];
    uint64_t bits[2];
    for (int n = 1; n <= 1300; n += 37) {
        for (int probe = 0; probe < n; probe += 13) {
            memset(x, 0, sizeof x);
            x[(probe * 7) % n] = -0.0f;
            float v = probe % 3 == 0 ? NAN : probe % 3 == 1 ? -INFINITY : 1e-30f;
            x[probe] = v;
            elm__nonzero_blocks(x, n, bits);
            for (int k = 0; k * 16 < n; k++) {
                bool set = (bits[k / 64] >> (k % 64)) & 1;
                assert_int_equal(set, k == probe / 16);
            }
        }
    }
}

static void test_reference_gemm_transposes(void **st) {
    (void)st;
    /* C (2x3) = A^T (2x4) B^T (4x3), A stored (4, 2), B stored (3, 4) */
    float A[8] = {1, 2, 3, 4, 5, 6, 7, 8}, Bm[12] = {1, 0, 2, 1, 0, 1, 1, 0, 3, 1, 0, 2};
    float C[6] = {0};
    elm__sgemm(1, 1, 2, 3, 4, 1.0f, A, 2, Bm, 4, 0.0f, C, 3);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            float want = 0;
            for (int p = 0; p < 4; p++) want += A[p * 2 + i] * Bm[j * 4 + p];
            assert_true(C[i * 3 + j] == want);
        }
}

/* elm__model_prepare starts every packed panel block on a cache line: the
 * B = 1 kernels read the panels with 64-byte loads, and a block that
 * started mid-line made every load straddle two lines (a 5 % slower
 * NeuronIO step). Odd sizes everywhere, so that no block is aligned by
 * accident. */
static void assert_line(const void *p) { assert_int_equal((uintptr_t)p % 64, 0); }

static void test_panels_on_cache_lines(void **st) {
    (void)st;
    const struct { int n_in, n_out, n_m, L, H, n_b, k, routing; } shapes[] = {
        {1278, 2, 100, 1, 200, 45, 100, ELM_ROUTING_NEURONIO},
        {7, 3, 13, 2, 37, 0, 1, ELM_ROUTING_NONE},
        {5, 1, 3, 0, 0, 5, 3, ELM_ROUTING_RANDOM},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        elm_config *c = NULL;
        elm_model *m = NULL;
        assert_int_equal(elm_config_create(&c), ELM_OK);
        assert_int_equal(elm_config_set(c, ELM_NUM_INPUT, shapes[i].n_in), ELM_OK);
        assert_int_equal(elm_config_set(c, ELM_NUM_OUTPUT, shapes[i].n_out), ELM_OK);
        assert_int_equal(elm_config_set(c, ELM_NUM_MEMORY, shapes[i].n_m), ELM_OK);
        assert_int_equal(elm_config_set(c, ELM_MLP_NUM_LAYERS, shapes[i].L), ELM_OK);
        assert_int_equal(elm_config_set(c, ELM_MLP_HIDDEN_SIZE, shapes[i].H), ELM_OK);
        assert_int_equal(elm_config_set(c, ELM_NUM_BRANCH, shapes[i].n_b), ELM_OK);
        assert_int_equal(elm_config_set(c, ELM_SYNAPSES_PER_BRANCH, shapes[i].k), ELM_OK);
        assert_int_equal(elm_config_set(c, ELM_ROUTING, shapes[i].routing), ELM_OK);
        assert_int_equal(elm_model_create(c, 1, &m), ELM_OK);
        for (int l = 0; l <= m->L; l++) {
            assert_line(m->layers[l].panels);
            assert_line(m->layers[l].bpanels);
        }
        assert_line(m->readout.panels);
        elm_model_free(m);
        elm_config_free(c);
    }
}

static uint64_t lcg_next(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* A random window table over n_in inputs and n_trace traces (counts 0-4)
 * and the same drive as a CSR, ascending targets, as prepare builds it. */
typedef struct drive_case {
    elm_drive_win win[200];
    int32_t ptr[201], tgt[800];
    float w[800];
} drive_case;

static void make_drive_case(drive_case *c, int n_in, int n_trace, uint64_t *seed) {
    int32_t nnz = 0;
    memset(c->win, 0, sizeof c->win);
    for (int i = 0; i < n_in; i++) {
        c->ptr[i] = nnz;
        int n = (int)(lcg_next(seed) % 5);
        if (n > n_trace) n = n_trace;
        int first = n ? (int)(lcg_next(seed) % (uint64_t)(n_trace - n + 1)) : 0;
        c->win[i].first = first;
        c->win[i].lanes = n ? (((uint64_t)1 << n) - 1) << first : 0;
        for (int q = 0; q < n; q++) {
            float w = (float)((int)(lcg_next(seed) % 2001) - 1000) * 1.37e-3f;
            c->win[i].w[q] = w;
            c->tgt[nnz] = first + q;
            c->w[nnz++] = w;
        }
    }
    c->ptr[n_in] = nnz;
}

/* The window kernels give the CSR kernels' bits, dense and from events, for
 * every register count (1 to 64 traces), write nothing past n_trace, and
 * agree with a double-precision sum; the dense scan stops at the first
 * non-finite input as the CSR scan does. */
static void test_drive_windows(void **st) {
    (void)st;
    static drive_case c;
    enum { N_IN = 200, GUARD = 8 };
    uint64_t seed = 11;
    const int traces[] = {1, 5, 16, 17, 31, 45, 48, 64};
    for (size_t ti = 0; ti < sizeof traces / sizeof *traces; ti++) {
        int nt = traces[ti];
        make_drive_case(&c, N_IN, nt, &seed);
        elm_drive csr = {c.ptr, c.tgt, c.w, NULL, nt}, win = csr;
        win.win = c.win;
        for (int row = 0; row < 40; row++) {
            float x[N_IN] = {0}, val[N_IN];
            int32_t ch[N_IN];
            int64_t n = 0;
            for (int i = 0; i < N_IN; i++)
                if (lcg_next(&seed) % 100 < 8) {
                    x[i] = (float)((int)(lcg_next(&seed) % 401) - 200) * 0.0173f;
                    if (x[i] == 0.0f) continue;
                    ch[n] = i;
                    val[n++] = x[i];
                }
            if (row % 5 == 4) x[(row * 37) % N_IN] = row % 10 == 4 ? NAN : -INFINITY;
            float da[64 + GUARD], db[64 + GUARD];
            uint64_t ba[1] = {0}, bb[1] = {0};
            for (int t = 0; t < 64 + GUARD; t++) da[t] = db[t] = t < nt ? 0.0f : 7.0f;
            int ra = elm__drive_scan(x, N_IN, &csr, da, ba);
            int rb = elm__drive_scan(x, N_IN, &win, db, bb);
            assert_int_equal(ra, rb);
            assert_memory_equal(da, db, sizeof da);
            if (ra < 0) {
                uint64_t want[1];
                elm__nonzero_blocks(x, N_IN, want);
                assert_true(ba[0] == want[0] && bb[0] == want[0]);
            }
            for (int t = nt; t < 64 + GUARD; t++) assert_true(db[t] == 7.0f);
            /* events: the same inputs, and once in reverse order */
            for (int rev = 0; rev < 2; rev++) {
                int32_t chr[N_IN];
                float vr[N_IN];
                for (int64_t k = 0; k < n; k++) {
                    chr[k] = rev ? ch[n - 1 - k] : ch[k];
                    vr[k] = rev ? val[n - 1 - k] : val[k];
                }
                for (int t = 0; t < 64 + GUARD; t++) da[t] = db[t] = t < nt ? 0.5f : 7.0f;
                elm__drive_events(chr, vr, n, &csr, da);
                elm__drive_events(chr, vr, n, &win, db);
                assert_memory_equal(da, db, sizeof da);
                for (int t = 0; t < nt; t++) {
                    double want = 0.5;
                    for (int64_t k = 0; k < n; k++)
                        for (int32_t e = c.ptr[chr[k]]; e < c.ptr[chr[k] + 1]; e++)
                            if (c.tgt[e] == t) want += (double)c.w[e] * vr[k];
                    assert_true(fabs(db[t] - want) <= 1e-5 * (1 + fabs(want)));
                }
                for (int t = nt; t < 64 + GUARD; t++) assert_true(db[t] == 7.0f);
            }
            /* values NULL: every event is 1 */
            for (int t = 0; t < 64 + GUARD; t++) da[t] = db[t] = 0.0f;
            elm__drive_events(ch, NULL, n, &csr, da);
            elm__drive_events(ch, NULL, n, &win, db);
            assert_memory_equal(da, db, sizeof da);
        }
    }
}

/* The dense scan's block bit set over several words and scan spans (up to
 * 9000 inputs), against elm__nonzero_blocks; -0 is no input. */
static void test_drive_scan_blocks(void **st) {
    (void)st;
    enum { N = 9000 };
    static float x[N];
    static int32_t ptr[N + 1];
    uint64_t got[(N + 1023) / 1024], want[(N + 1023) / 1024], seed = 5;
    elm_drive dr = {ptr, NULL, NULL, NULL, 1};
    for (int n = 1; n <= N; n += 1187) {
        memset(x, 0, sizeof x);
        for (int i = 0; i < n; i++) {
            uint64_t r = lcg_next(&seed) % 1000;
            if (r < 3) x[i] = 1.5f;
            else if (r < 6) x[i] = -0.0f;
        }
        float d = 0;
        memset(got, 0xff, sizeof got);
        assert_int_equal(elm__drive_scan(x, n, &dr, &d, got), -1);
        elm__nonzero_blocks(x, n, want);
        for (int w = 0; w < (n + 1023) / 1024; w++) {
            uint64_t valid = (n + 15) / 16 - w * 64 >= 64 ? ~(uint64_t)0
                                                          : ((uint64_t)1 << ((n + 15) / 16 - w * 64)) - 1;
            assert_true((got[w] & valid) == (want[w] & valid));
        }
    }
}

/* prepare chooses windows exactly where they apply: NeuronIO's routing and
 * a small model without routing get them; a model with over 64 traces, and
 * one whose routing sends an input to non-adjacent branches, keep the CSR
 * alone (and the latter gets windows back when its routing allows). */
static elm_model *small_model(int n_in, int n_b, int k, int routing) {
    elm_config *c = NULL;
    elm_model *m = NULL;
    assert_int_equal(elm_config_create(&c), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_NUM_INPUT, n_in), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_NUM_OUTPUT, 2), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_NUM_MEMORY, 8), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_NUM_BRANCH, n_b), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_SYNAPSES_PER_BRANCH, k), ELM_OK);
    assert_int_equal(elm_config_set(c, ELM_ROUTING, routing), ELM_OK);
    assert_int_equal(elm_model_create(c, 1, &m), ELM_OK);
    elm_config_free(c);
    return m;
}

static void test_drive_windows_chosen(void **st) {
    (void)st;
    elm_model *m = small_model(1278, 45, 100, ELM_ROUTING_NEURONIO);
    assert_non_null(m->drive_win);
    assert_ptr_equal(m->drive.win, m->drive_win);
    elm_model_free(m);
    m = small_model(40, 0, 1, ELM_ROUTING_NONE);
    assert_non_null(m->drive_win);
    elm_model_free(m);
    m = small_model(70, 0, 1, ELM_ROUTING_NONE);
    assert_null(m->drive_win);
    assert_null(m->drive.win);
    elm_model_free(m);
    /* 4 branches of 2 synapses: input 0 feeds branches 0 and 2 */
    m = small_model(4, 4, 2, ELM_ROUTING_RANDOM);
    int64_t idx[8] = {0, 1, 1, 2, 0, 3, 3, 2};
    uint8_t mask[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(elm_model_set_routing(m, idx, mask, 8), ELM_OK);
    assert_null(m->drive_win);
    assert_null(m->drive.win);
    int64_t adj[8] = {0, 0, 1, 1, 2, 2, 3, 3};
    assert_int_equal(elm_model_set_routing(m, adj, mask, 8), ELM_OK);
    assert_non_null(m->drive_win);
    assert_ptr_equal(m->drive.win, m->drive_win);
    elm_model_free(m);
}

int main(void) {
    elm__gemm_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blis_policy),
        cmocka_unit_test(test_expf_accuracy),
        cmocka_unit_test(test_matmul_small),
        cmocka_unit_test(test_matvec_fused),
        cmocka_unit_test(test_matvec_q),
        cmocka_unit_test(test_nonzero_blocks),
        cmocka_unit_test(test_reference_gemm_transposes),
        cmocka_unit_test(test_panels_on_cache_lines),
        cmocka_unit_test(test_drive_windows),
        cmocka_unit_test(test_drive_scan_blocks),
        cmocka_unit_test(test_drive_windows_chosen),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
