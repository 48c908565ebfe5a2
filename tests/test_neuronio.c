/* The NeuronIO binary layout (docs/datasets/neuronio.md) through the public
 * ABI: elm_dataset_open_neuronio on small files written here byte by byte,
 * windows against hand-computed inputs and targets, the start range of the
 * random windows, and malformed files (each refused with the file name in
 * the message). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elm.h"

static char dir[] = "/tmp/elm_nio_XXXXXX";
static char made[64][256];
static int n_made;

static int setup(void **st) {
    (void)st;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st) {
    (void)st;
    for (int i = 0; i < n_made; i++) unlink(made[i]);
    rmdir(dir);
    return 0;
}

/* zlib's CRC-32, bit by bit: independent of the library's table version. */
static uint32_t crc32_ref(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

typedef struct buf {
    unsigned char *p;
    size_t n;
} buf;

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* One simulation: events sorted by (time, channel); spike bins increasing. */
typedef struct tsim {
    size_t n_ev;
    const uint32_t *ev_t; /* ms */
    const uint16_t *ev_c;
    size_t n_sp;
    const int32_t *sp; /* ms bins */
    const float *soma; /* (D), mV */
} tsim;

static size_t pad8(size_t n) {
    return (n + 7) & ~(size_t)7;
}

/* Both CRC-32s recomputed, for damage that must be caught by the structure
 * checks rather than the checksum. */
static void refix(buf *b) {
    put32(b->p + 52, crc32_ref(b->p + 64, b->n - 64));
    put32(b->p + 60, crc32_ref(b->p, 60));
}

/* The canonical layout of docs/datasets/neuronio.md. */
static buf build(uint32_t n_seg, uint32_t D, size_t n_sim, const tsim *sims) {
    size_t size = 64;
    for (size_t s = 0; s < n_sim; s++)
        size += pad8(4 * ((size_t)D + 1)) + pad8(2 * sims[s].n_ev) + pad8(4 * sims[s].n_sp) +
                pad8(4 * (size_t)D);
    size_t table = size;
    size += 56 * n_sim;
    buf b = {calloc(1, size), size};
    assert_non_null(b.p);
    size_t pos = 64;
    for (size_t s = 0; s < n_sim; s++) {
        const tsim *sm = &sims[s];
        unsigned char *e = b.p + table + 56 * s;
        put64(e, pos);
        uint32_t k = 0;
        for (uint32_t t = 0; t <= D; t++) {
            while (k < sm->n_ev && sm->ev_t[k] < t) k++;
            put32(b.p + pos + 4 * t, k);
        }
        pos += pad8(4 * ((size_t)D + 1));
        put64(e + 8, pos);
        put64(e + 16, sm->n_ev);
        for (size_t i = 0; i < sm->n_ev; i++) {
            b.p[pos + 2 * i] = (unsigned char)(sm->ev_c[i] & 0xFF);
            b.p[pos + 2 * i + 1] = (unsigned char)(sm->ev_c[i] >> 8);
        }
        pos += pad8(2 * sm->n_ev);
        put64(e + 24, pos);
        put64(e + 32, sm->n_sp);
        for (size_t i = 0; i < sm->n_sp; i++) put32(b.p + pos + 4 * i, (uint32_t)sm->sp[i]);
        pos += pad8(4 * sm->n_sp);
        put64(e + 40, pos);
        memcpy(b.p + pos, sm->soma, 4 * (size_t)D); /* the test host is little-endian */
        pos += pad8(4 * (size_t)D);
        put32(e + 48, 0);
        put32(e + 52, (uint32_t)s);
    }
    assert_int_equal(pos, table);
    memcpy(b.p, "ELM-NIO\0", 8);
    put32(b.p + 8, 1);
    put32(b.p + 12, 64);
    put32(b.p + 16, n_seg);
    put32(b.p + 20, 2 * n_seg);
    put32(b.p + 24, D);
    put32(b.p + 28, (uint32_t)n_sim);
    put64(b.p + 32, size);
    put64(b.p + 40, table);
    put32(b.p + 48, 56);
    refix(&b);
    return b;
}

static const char *write_file(const char *name, const void *p, size_t n) {
    assert_true(n_made < 64);
    char *path = made[n_made++];
    snprintf(path, sizeof made[0], "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
    return path;
}

/* A small file: n_seg 3 (n_in 6), D 10 ms, one simulation. */
enum { S_SEG = 3, S_D = 10 };
static const uint32_t s_ev_t[] = {0, 0, 2, 5, 5, 5, 9};
static const uint16_t s_ev_c[] = {1, 4, 0, 2, 3, 5, 3};
static const int32_t s_sp[] = {3, 9};
static float s_soma[S_D] = {-70, -60, -55, -54, -20, 10, -67.7f, -80, -56, -55.5f};

static buf small_file(void) {
    tsim sm = {7, s_ev_t, s_ev_c, 2, s_sp, s_soma};
    return build(S_SEG, S_D, 1, &sm);
}

static float soma_target(float v) {
    float c = v > -55.0f ? -55.0f : v;
    return (c - -67.7f) * 0.1f;
}

static elm_dataset *open_ok(const char *path, size_t W, size_t N) {
    elm_dataset *ds = NULL;
    int rc = elm_dataset_open_neuronio(path, W, N, &ds);
    if (rc != ELM_OK) fail_msg("open %s: %s", path, elm_last_error());
    return ds;
}

static void test_whole_window(void **st) {
    (void)st;
    buf b = small_file();
    const char *path = write_file("small.nio", b.p, b.n);
    free(b.p);
    elm_dataset *ds = open_ok(path, S_D, 3);
    size_t v;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_SAMPLES, &v), ELM_OK);
    assert_int_equal(v, 3);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_STEPS, &v), ELM_OK);
    assert_int_equal(v, S_D);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_INPUTS, &v), ELM_OK);
    assert_int_equal(v, 2 * S_SEG);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_TARGETS, &v), ELM_OK);
    assert_int_equal(v, 2);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_LABELS, &v), ELM_OK);
    assert_int_equal(v, 0);

    /* The window is the whole (only) simulation, by hand. */
    float ex[S_D][6] = {{0}};
    ex[0][1] = 1, ex[0][4] = -1, ex[2][0] = 1, ex[5][2] = 1, ex[5][3] = -1, ex[5][5] = -1;
    ex[9][3] = -1;
    float et[S_D][2];
    for (int t = 0; t < S_D; t++) et[t][0] = (t == 3 || t == 9), et[t][1] = soma_target(s_soma[t]);
    assert_float_equal(et[0][1], (-70.0f + 67.7f) * 0.1f, 0);
    assert_float_equal(et[4][1], (-55.0f + 67.7f) * 0.1f, 0);

    float x[3][S_D][6], tg[3][S_D][2];
    int64_t len[3];
    size_t count;
    assert_int_equal(elm_dataset_next(ds, 3, &x[0][0][0], &tg[0][0][0], NULL, len, &count),
                     ELM_OK);
    assert_int_equal(count, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(len[i], S_D);
        assert_memory_equal(x[i], ex, sizeof ex);
        assert_memory_equal(tg[i], et, sizeof et);
    }
    elm_dataset_free(ds);
}

/* Two simulations whose soma values are distinct everywhere, so a sample's
 * (simulation, start) can be recovered from its first soma target. */
typedef struct multi {
    size_t D, n_sim;
    float *soma[2];
    uint32_t *ev_t[2];
    uint16_t *ev_c[2];
    size_t n_ev[2];
} multi;

static const char *multi_file(const char *name, size_t D, multi *m) {
    m->D = D;
    m->n_sim = 2;
    tsim sims[2];
    for (size_t s = 0; s < 2; s++) {
        m->soma[s] = malloc(D * sizeof(float));
        m->ev_t[s] = malloc(D * sizeof(uint32_t));
        m->ev_c[s] = malloc(D * sizeof(uint16_t));
        assert_true(m->soma[s] && m->ev_t[s] && m->ev_c[s]);
        for (size_t t = 0; t < D; t++) {
            m->soma[s][t] = -66.0f - 0.001f * (float)(s * D + t);
            m->ev_t[s][t] = (uint32_t)t; /* one event per ms, channel from t */
            m->ev_c[s][t] = (uint16_t)((t * 7 + s) % 6);
        }
        m->n_ev[s] = D;
        sims[s] = (tsim){D, m->ev_t[s], m->ev_c[s], 0, NULL, m->soma[s]};
    }
    buf b = build(3, (uint32_t)D, 2, sims);
    const char *path = write_file(name, b.p, b.n);
    free(b.p);
    return path;
}

static void multi_free(multi *m) {
    for (size_t s = 0; s < 2; s++) free(m->soma[s]), free(m->ev_t[s]), free(m->ev_c[s]);
}

/* Draws many windows; every one must be a true window of the file starting
 * in [lo, hi); returns how many distinct starts were seen. */
static size_t check_starts(const char *path, multi *m, size_t W, size_t lo, size_t hi) {
    const size_t N = 400, B = 50;
    elm_dataset *ds = open_ok(path, W, N);
    float *x = malloc(B * W * 6 * sizeof(float)), *tg = malloc(B * W * 2 * sizeof(float));
    unsigned char *seen = calloc(2 * m->D, 1);
    assert_true(x && tg && seen);
    size_t count, distinct = 0;
    for (size_t n = 0; n < N / B; n++) {
        assert_int_equal(elm_dataset_next(ds, B, x, tg, NULL, NULL, &count), ELM_OK);
        assert_int_equal(count, B);
        for (size_t i = 0; i < B; i++) {
            const float *xi = x + i * W * 6, *ti = tg + i * W * 2;
            size_t s = 2, t0 = 0;
            for (size_t ss = 0; ss < 2 && s == 2; ss++)
                for (size_t t = 0; t + W <= m->D; t++)
                    if (soma_target(m->soma[ss][t]) == ti[1]) {
                        s = ss, t0 = t;
                        break;
                    }
            assert_true(s < 2);
            assert_in_range(t0, lo, hi - 1);
            if (!seen[s * m->D + t0]++) distinct++;
            for (size_t t = 0; t < W; t++) {
                assert_float_equal(ti[2 * t], 0, 0);
                assert_float_equal(ti[2 * t + 1], soma_target(m->soma[s][t0 + t]), 0);
                uint16_t c = m->ev_c[s][t0 + t];
                for (size_t k = 0; k < 6; k++)
                    assert_float_equal(xi[t * 6 + k], k == c ? (c < 3 ? 1.0f : -1.0f) : 0.0f, 0);
            }
        }
    }
    elm_dataset_free(ds);
    free(x), free(tg), free(seen);
    return distinct;
}

static void test_short_starts(void **st) {
    (void)st;
    multi m;
    const char *path = multi_file("short.nio", 40, &m);
    /* D - W = 30 <= 500: starts anywhere in [0, 30); both sims, most starts seen. */
    size_t d = check_starts(path, &m, 10, 0, 30);
    assert_true(d > 40);
    multi_free(&m);
}

static void test_long_starts(void **st) {
    (void)st;
    multi m;
    const char *path = multi_file("long.nio", 620, &m);
    /* D - W = 600 > 500: as the official loader, starts in [500, 600). */
    size_t d = check_starts(path, &m, 20, 500, 600);
    assert_true(d > 100);
    multi_free(&m);
}

static void batches(const char *path, int prefetch, uint64_t seed, float *x, float *tg) {
    elm_dataset *ds = open_ok(path, 5, 32);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_PREFETCH, prefetch), ELM_OK);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SEED, (double)seed), ELM_OK);
    size_t count;
    for (int e = 0; e < 2; e++) {
        assert_int_equal(elm_dataset_start_epoch(ds, (uint64_t)e), ELM_OK);
        for (int k = 0; k < 4; k++) {
            size_t at = (size_t)(e * 4 + k) * 8;
            assert_int_equal(elm_dataset_next(ds, 8, x + at * 5 * 6, tg + at * 5 * 2, NULL, NULL,
                                              &count),
                             ELM_OK);
            assert_int_equal(count, 8);
        }
    }
    elm_dataset_free(ds);
}

static void test_deterministic(void **st) {
    (void)st;
    multi m;
    const char *path = multi_file("det.nio", 40, &m);
    enum { NX = 64 * 5 * 6, NT = 64 * 5 * 2 };
    static float x1[NX], t1[NT], x2[NX], t2[NT], x3[NX], t3[NT];
    batches(path, 0, 7, x1, t1);
    batches(path, 1, 7, x2, t2);
    batches(path, 0, 8, x3, t3);
    assert_memory_equal(x1, x2, sizeof x1);
    assert_memory_equal(t1, t2, sizeof t1);
    assert_true(memcmp(t1, t3, sizeof t1) != 0);
    /* epochs differ */
    assert_true(memcmp(t1, t1 + NT / 2, sizeof t1 / 2) != 0);
    multi_free(&m);
}

static void test_arguments(void **st) {
    (void)st;
    buf b = small_file();
    const char *path = write_file("args.nio", b.p, b.n);
    free(b.p);
    elm_dataset *ds = (elm_dataset *)1;
    assert_int_equal(elm_dataset_open_neuronio(path, 0, 4, &ds), ELM_E_INVALID);
    assert_null(ds);
    assert_int_equal(elm_dataset_open_neuronio(path, S_D + 1, 4, &ds), ELM_E_INVALID);
    assert_int_equal(elm_dataset_open_neuronio(path, 4, 0, &ds), ELM_E_INVALID);
    assert_int_equal(elm_dataset_open_neuronio(NULL, 4, 4, &ds), ELM_E_NULL);
    assert_int_equal(elm_dataset_open_neuronio(path, 4, 4, NULL), ELM_E_NULL);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/absent.nio", dir);
    assert_int_equal(elm_dataset_open_neuronio(missing, 4, 4, &ds), ELM_E_IO);
    assert_non_null(strstr(elm_last_error(), missing));
    assert_int_equal(elm_dataset_open_neuronio(dir, 4, 4, &ds), ELM_E_IO);
}

/* Damage b (a copy of the small file), write it, and expect `code` with the
 * file name in the message. */
static void expect_refused(const char *name, const buf *b, int code) {
    const char *path = write_file(name, b->p, b->n);
    elm_dataset *ds = (elm_dataset *)1;
    int rc = elm_dataset_open_neuronio(path, 4, 4, &ds);
    if (rc != code)
        fail_msg("%s: expected %d, got %d (%s)", name, code, rc,
                 rc ? elm_last_error() : "accepted");
    assert_null(ds);
    if (!strstr(elm_last_error(), path)) fail_msg("%s: message lacks the path: %s", name, elm_last_error());
}

static buf copy(const buf *b) {
    buf c = {malloc(b->n + 16), b->n};
    assert_non_null(c.p);
    memcpy(c.p, b->p, b->n);
    return c;
}

static void test_malformed(void **st) {
    (void)st;
    buf good = small_file();
    size_t table = (size_t)get64(good.p + 40);
    unsigned char *e0 = NULL;
    buf c;
#define CASE(name, code, edit)      \
    do {                            \
        c = copy(&good);            \
        e0 = c.p + table;           \
        edit;                       \
        expect_refused(name, &c, code); \
        free(c.p);                  \
    } while (0)

    /* The untouched file opens. */
    const char *ok = write_file("good.nio", good.p, good.n);
    elm_dataset_free(open_ok(ok, 4, 4));

    CASE("empty.nio", ELM_E_FORMAT, c.n = 0);
    CASE("magic.nio", ELM_E_FORMAT, c.p[0] = 'X');
    CASE("short_header.nio", ELM_E_TRUNCATED, c.n = 40);
    CASE("truncated.nio", ELM_E_TRUNCATED, c.n -= 9);
    CASE("trailing.nio", ELM_E_FORMAT, (memset(c.p + c.n, 0, 8), c.n += 8));
    CASE("version.nio", ELM_E_VERSION, (put32(c.p + 8, 2), refix(&c)));
    CASE("version0.nio", ELM_E_FORMAT, (put32(c.p + 8, 0), refix(&c)));
    CASE("header_crc.nio", ELM_E_CHECKSUM, c.p[24] ^= 1);
    CASE("data_crc.nio", ELM_E_CHECKSUM, c.p[70] ^= 1);
    CASE("n_in.nio", ELM_E_FORMAT, (put32(c.p + 20, 7), refix(&c)));
    CASE("no_sims.nio", ELM_E_FORMAT, (put32(c.p + 28, 0), refix(&c)));
    CASE("table.nio", ELM_E_LIMIT, (put64(c.p + 40, table + 8), refix(&c)));
    CASE("n_sim.nio", ELM_E_LIMIT, (put32(c.p + 28, 5), refix(&c)));
    CASE("offset.nio", ELM_E_FORMAT, (put64(e0 + 8, get64(e0 + 8) + 8), refix(&c)));
    CASE("offset_far.nio", ELM_E_FORMAT, (put64(e0 + 40, UINT64_MAX - 3), refix(&c)));
    CASE("n_events.nio", ELM_E_LIMIT, (put64(e0 + 16, 1u << 20), refix(&c)));
    CASE("n_events_huge.nio", ELM_E_LIMIT, (put64(e0 + 16, UINT64_MAX / 2), refix(&c)));
    CASE("n_spikes.nio", ELM_E_LIMIT, (put64(e0 + 32, UINT64_MAX / 4), refix(&c)));
    /* One more channel and spike than the table says: the arrays no longer
     * end where the canonical layout puts the next one. */
    CASE("n_events_small.nio", ELM_E_FORMAT, (put64(e0 + 16, 3), refix(&c)));
    {
        /* Channel and ordering damage inside the arrays (CRC fixed). */
        size_t ch = (size_t)get64(good.p + table + 8), tp = (size_t)get64(good.p + table);
        size_t sp = (size_t)get64(good.p + table + 24), so = (size_t)get64(good.p + table + 40);
        CASE("channel.nio", ELM_E_FORMAT, (c.p[ch + 2 * 6] = 6, refix(&c)));
        CASE("channel_ffff.nio", ELM_E_FORMAT, (c.p[ch] = 0xFF, c.p[ch + 1] = 0xFF, refix(&c)));
        CASE("unsorted.nio", ELM_E_FORMAT, (c.p[ch] = 5, refix(&c)));
        CASE("ptr_start.nio", ELM_E_FORMAT, (put32(c.p + tp, 1), refix(&c)));
        CASE("ptr_order.nio", ELM_E_FORMAT, (put32(c.p + tp + 4 * 3, 7), refix(&c)));
        CASE("ptr_end.nio", ELM_E_FORMAT, (put32(c.p + tp + 4 * S_D, 6), refix(&c)));
        CASE("spike_range.nio", ELM_E_FORMAT, (put32(c.p + sp + 4, S_D), refix(&c)));
        CASE("spike_negative.nio", ELM_E_FORMAT, (put32(c.p + sp, 0xFFFFFFFFu), refix(&c)));
        CASE("spike_order.nio", ELM_E_FORMAT, (put32(c.p + sp, 9), refix(&c)));
        CASE("soma_nan.nio", ELM_E_FORMAT, (put32(c.p + so + 8, 0x7FC00000u), refix(&c)));
        CASE("padding.nio", ELM_E_FORMAT, (c.p[ch + 14] = 1, refix(&c)));
    }
#undef CASE
    free(good.p);
}

/* The real file, converted by the Python converter when both are here. */
static void test_real_file(void **st) {
    (void)st;
    const char *shared = getenv("ELM_SHARED");
    char pickle[512], out[200], cmd[2048];
    snprintf(pickle, sizeof pickle,
             "%s/reference/neuronio/"
             "sim__saved_InputSpikes__55_outSpikes__8_simulationRuns__6_secDuration__randomSeed_7101.p",
             shared ? shared : ELM_SOURCE_ROOT "/../shared");
    if (access(pickle, R_OK) != 0 || access("/usr/bin/python3", X_OK) != 0) {
        print_message("skipped: %s or /usr/bin/python3 absent\n", pickle);
        skip();
    }
    snprintf(out, sizeof out, "%s/real.nio", dir);
    snprintf(made[n_made++], sizeof made[0], "%s", out);
    snprintf(cmd, sizeof cmd,
             "PYTHONPATH='%s/bindings/python' /usr/bin/python3 -m elm.neuronio convert '%s' '%s' "
             ">/dev/null 2>&1",
             ELM_SOURCE_ROOT, out, pickle);
    if (system(cmd) != 0) {
        print_message("skipped: the converter failed (numpy missing?): %s\n", cmd);
        skip();
    }
    elm_dataset *ds = open_ok(out, 500, 64);
    size_t v;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_INPUTS, &v), ELM_OK);
    assert_int_equal(v, 1278);
    enum { B = 16, W = 500 };
    float *x = malloc((size_t)B * W * 1278 * sizeof(float)), *tg = malloc(B * W * 2 * sizeof(float));
    assert_true(x && tg);
    size_t count, nz = 0, pos = 0, neg = 0;
    for (int k = 0; k < 4; k++) {
        assert_int_equal(elm_dataset_next(ds, B, x, tg, NULL, NULL, &count), ELM_OK);
        assert_int_equal(count, B);
        for (size_t i = 0; i < (size_t)B * W * 1278; i++) {
            nz += x[i] != 0;
            pos += x[i] == 1.0f;
            neg += x[i] == -1.0f;
        }
        for (size_t i = 0; i < (size_t)B * W; i++) {
            assert_true(tg[2 * i] == 0 || tg[2 * i] == 1);
            assert_true(tg[2 * i + 1] <= soma_target(-55.0f) && tg[2 * i + 1] > -3.0f);
        }
    }
    assert_int_equal(nz, pos + neg);
    /* ~1% of the inputs spike; both kinds occur. */
    double frac = (double)nz / (4.0 * B * W * 1278);
    assert_true(frac > 0.002 && frac < 0.05);
    assert_true(pos > 0 && neg > 0);
    free(x), free(tg);
    elm_dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_window), cmocka_unit_test(test_short_starts),
        cmocka_unit_test(test_long_starts),  cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_arguments),    cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_real_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
