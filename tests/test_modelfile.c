/* .elm model files: round trips, metadata, atomic saves, and every
 * corruption class refused with its own error (docs/file-format.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "elm.h"

/* An independent bitwise CRC-32 (zlib's), to forge files with a valid
 * checksum and so reach the checks behind it. */
static uint32_t crc32_ref(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static uint64_t rd64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void wr64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void wr32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void fix_crc(unsigned char *b, size_t n) { wr32(b + n - 8, crc32_ref(b, n - 24)); }

/* Offset of a section's header, or 0. */
static size_t section(const unsigned char *b, size_t n, const char *tag) {
    for (size_t pos = 24; pos + 16 <= n;) {
        if (memcmp(b + pos, tag, 4) == 0) return pos;
        size_t len = (size_t)rd64(b + pos + 8), next = pos + 16 + len;
        pos = next + (8 - next % 8) % 8;
    }
    return 0;
}

static const spec SMALL = {.version = ELM_V1, .act = ELM_SILU, .n_in = 12, .n_out = 3, .n_m = 5,
                           .L = 2, .H = 7, .n_b = 4, .k = 4, .routing = ELM_ROUTING_RANDOM,
                           .dt = 1, .tau_min = 1, .tau_max = 150, .lambda = 5,
                           .spread_tau = true, .B = 2, .T = 20, .density = 0.3f};

static unsigned char *save(const elm_model *m, size_t *n) {
    assert_int_equal(elm_model_save_buffer(m, NULL, 0, n), ELM_OK);
    unsigned char *b = malloc(*n);
    size_t n2 = 0;
    assert_int_equal(elm_model_save_buffer(m, b, *n, &n2), ELM_OK);
    assert_int_equal(n2, *n);
    return b;
}

static int load_status(const unsigned char *b, size_t n) {
    elm_model *m = NULL;
    int rc = elm_model_load_buffer(b, n, &m);
    assert_true(rc == ELM_OK || m == NULL);
    elm_model_free(m);
    return rc;
}

static void assert_same_model(const elm_model *a, const elm_model *b) {
    for (int k = ELM_FORMULATION; k <= ELM_DT; k++) {
        double va, vb;
        elm_config_get(elm_model_config(a), (elm_param)k, &va);
        elm_config_get(elm_model_config(b), (elm_param)k, &vb);
        assert_true(va == vb);
    }
    size_t np, n_s;
    elm_model_size(a, ELM_SIZE_PARAMS, &np);
    assert_memory_equal(elm_model_params(a), elm_model_params(b), np * sizeof(float));
    elm_model_size(a, ELM_SIZE_SYNAPSE, &n_s);
    int64_t *ia = malloc(n_s * 8), *ib = malloc(n_s * 8);
    uint8_t *ma = malloc(n_s), *mb = malloc(n_s);
    assert_int_equal(elm_model_get_routing(a, ia, ma, n_s), ELM_OK);
    assert_int_equal(elm_model_get_routing(b, ib, mb, n_s), ELM_OK);
    assert_memory_equal(ia, ib, n_s * 8);
    assert_memory_equal(ma, mb, n_s);
    free(ia); free(ib); free(ma); free(mb);
}

static void round_trip(spec p) {
    elm_model *m = make_model(&p, 11);
    assert_non_null(m);
    if (p.routing != ELM_ROUTING_NONE) { /* a routing unlike the seeded one */
        size_t n_s;
        elm_model_size(m, ELM_SIZE_SYNAPSE, &n_s);
        int64_t *idx = malloc(n_s * 8);
        uint8_t *mask = malloc(n_s);
        for (size_t j = 0; j < n_s; j++) {
            idx[j] = (int64_t)((j * 7 + 3) % (size_t)p.n_in);
            mask[j] = j % 5 != 0;
        }
        assert_int_equal(elm_model_set_routing(m, idx, mask, n_s), ELM_OK);
        free(idx);
        free(mask);
    }
    size_t n;
    unsigned char *b = save(m, &n);
    elm_model *back = NULL;
    assert_int_equal(elm_model_load_buffer(b, n, &back), ELM_OK);
    assert_same_model(m, back);
    /* the same outputs, and the same bytes when saved again */
    float *x = make_input(&p, 5);
    size_t ny = p.B * p.T * (size_t)p.n_out;
    float *y1 = malloc(ny * 4), *y2 = malloc(ny * 4);
    assert_int_equal(elm_model_forward(m, x, p.B, p.T, y1), ELM_OK);
    assert_int_equal(elm_model_forward(back, x, p.B, p.T, y2), ELM_OK);
    assert_memory_equal(y1, y2, ny * 4);
    size_t n2;
    unsigned char *b2 = save(back, &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(b, b2, n);
    free(x); free(y1); free(y2); free(b); free(b2);
    elm_model_free(m);
    elm_model_free(back);
}

static void test_round_trips(void **st) {
    (void)st;
    spec p = SMALL;
    round_trip(p);
    p.version = ELM_V2;
    p.act = ELM_RELU;
    p.L = 0;
    round_trip(p);
    p = SMALL;
    p.routing = ELM_ROUTING_NONE;
    p.n_b = 12;
    p.k = 1;
    p.L = 1;
    round_trip(p);
    p = SMALL;
    p.routing = ELM_ROUTING_NEURONIO;
    p.n_in = 8;
    p.n_b = 3;
    p.k = 4;
    round_trip(p);
}

/* +Inf in tau_m_proto is legal (the sigmoid's limit) and must survive. */
static void test_infinite_tau_m_survives(void **st) {
    (void)st;
    elm_model *m = make_model(&SMALL, 3);
    float t[5] = {1, INFINITY, -2, -INFINITY, 0.5f};
    int64_t sh[1] = {5};
    assert_int_equal(elm_model_set_param(m, "tau_m_proto", t, 1, sh), ELM_OK);
    size_t n;
    unsigned char *b = save(m, &n);
    elm_model *back = NULL;
    assert_int_equal(elm_model_load_buffer(b, n, &back), ELM_OK);
    float got[5];
    assert_int_equal(elm_model_get_param(back, "tau_m_proto", got, 5), ELM_OK);
    assert_memory_equal(t, got, sizeof t);
    free(b);
    elm_model_free(m);
    elm_model_free(back);
}

static void test_buffer_sizes(void **st) {
    (void)st;
    elm_model *m = make_model(&SMALL, 1);
    size_t n = 0, n2 = 0;
    assert_int_equal(elm_model_save_buffer(m, NULL, 0, &n), ELM_OK);
    assert_true(n > 24 && n % 8 == 0);
    unsigned char *b = malloc(n);
    memset(b, 0xAB, n);
    assert_int_equal(elm_model_save_buffer(m, b, n - 1, &n2), ELM_E_INVALID);
    assert_int_equal(n2, n);
    assert_int_equal(b[0], 0xAB); /* nothing written */
    assert_int_equal(elm_model_save_buffer(NULL, b, n, &n2), ELM_E_NULL);
    assert_int_equal(elm_model_save_buffer(m, b, n, NULL), ELM_E_NULL);
    elm_model *out = (elm_model *)(uintptr_t)1;
    assert_int_equal(elm_model_load_buffer(NULL, n, &out), ELM_E_NULL);
    assert_int_equal(elm_model_load_buffer(b, n, NULL), ELM_E_NULL);
    free(b);
    elm_model_free(m);
}

static void test_metadata(void **st) {
    (void)st;
    elm_model *m = make_model(&SMALL, 1);
    assert_int_equal(elm_model_meta_count(m), 0);
    assert_null(elm_model_get_meta(m, "dataset"));
    assert_int_equal(elm_model_set_meta(m, "dataset", "SHD"), ELM_OK);
    assert_int_equal(elm_model_set_meta(m, "val_accuracy", "0.91"), ELM_OK);
    assert_int_equal(elm_model_set_meta(m, "note", "ünïcode ✓\nline two"), ELM_OK);
    assert_int_equal(elm_model_set_meta(m, "dataset", "SHD-Adding"), ELM_OK); /* replace */
    assert_int_equal(elm_model_meta_count(m), 3);
    assert_string_equal(elm_model_meta_key(m, 0), "dataset");
    assert_string_equal(elm_model_get_meta(m, "dataset"), "SHD-Adding");
    assert_null(elm_model_meta_key(m, 3));
    /* bad keys and values change nothing */
    assert_int_equal(elm_model_set_meta(m, "", "x"), ELM_E_INVALID);
    char longkey[300];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[299] = 0;
    assert_int_equal(elm_model_set_meta(m, longkey, "x"), ELM_E_INVALID);
    char *big = malloc((1u << 20) + 2);
    memset(big, 'v', (1u << 20) + 1);
    big[(1u << 20) + 1] = 0;
    assert_int_equal(elm_model_set_meta(m, "big", big), ELM_E_LIMIT);
    free(big);
    assert_int_equal(elm_model_set_meta(NULL, "a", "b"), ELM_E_NULL);
    assert_int_equal(elm_model_meta_count(m), 3);
    /* travels through a file, in order */
    size_t n;
    unsigned char *b = save(m, &n);
    elm_model *back = NULL;
    assert_int_equal(elm_model_load_buffer(b, n, &back), ELM_OK);
    assert_int_equal(elm_model_meta_count(back), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(elm_model_meta_key(back, i), elm_model_meta_key(m, i));
        assert_string_equal(elm_model_get_meta(back, elm_model_meta_key(m, i)),
                            elm_model_get_meta(m, elm_model_meta_key(m, i)));
    }
    /* removal keeps the order of the rest */
    assert_int_equal(elm_model_set_meta(m, "dataset", NULL), ELM_OK);
    assert_int_equal(elm_model_meta_count(m), 2);
    assert_string_equal(elm_model_meta_key(m, 0), "val_accuracy");
    assert_int_equal(elm_model_set_meta(m, "absent", NULL), ELM_OK);
    free(b);
    elm_model_free(m);
    elm_model_free(back);
}

/* Every proper prefix is truncated; every damaged byte inside the sections
 * is caught by the checksum. */
static void test_truncation_and_damage(void **st) {
    (void)st;
    elm_model *m = make_model(&SMALL, 2);
    elm_model_set_meta(m, "k", "v");
    size_t n;
    unsigned char *b = save(m, &n);
    for (size_t len = 0; len < n; len++) assert_int_equal(load_status(b, len), ELM_E_TRUNCATED);
    assert_int_equal(load_status(b, n), ELM_OK);
    for (size_t i = 24; i < n - 24; i++) {
        b[i] ^= 0x10;
        assert_int_equal(load_status(b, n), ELM_E_CHECKSUM);
        b[i] ^= 0x10;
    }
    assert_non_null(strstr(elm_last_error(), "checksum"));
    b[n - 8] ^= 1; /* the stored CRC itself */
    assert_int_equal(load_status(b, n), ELM_E_CHECKSUM);
    b[n - 8] ^= 1;
    /* bad magic, a text-mode transfer, trailing bytes */
    b[1] = 'X';
    assert_int_equal(load_status(b, n), ELM_E_FORMAT);
    assert_non_null(strstr(elm_last_error(), "magic"));
    b[1] = 'E';
    unsigned char *c = malloc(n + 8);
    memcpy(c, b, n);
    memset(c + n, 0, 8);
    assert_int_equal(load_status(c, n + 8), ELM_E_FORMAT);
    assert_non_null(strstr(elm_last_error(), "follow"));
    free(c);
    free(b);
    elm_model_free(m);
}

static void test_header_fields(void **st) {
    (void)st;
    elm_model *m = make_model(&SMALL, 2);
    size_t n;
    unsigned char *b = save(m, &n);
    b[8] = 2; /* major 2 */
    assert_int_equal(load_status(b, n), ELM_E_VERSION);
    assert_non_null(strstr(elm_last_error(), "newer"));
    b[8] = 1;
    b[10] = 7; /* a newer minor reads (its CRC covers the header) */
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_OK);
    wr64(b + 16, (uint64_t)1 << 50); /* absurd declared size */
    assert_int_equal(load_status(b, n), ELM_E_LIMIT);
    wr64(b + 16, n + 8);
    assert_int_equal(load_status(b, n), ELM_E_TRUNCATED);
    free(b);
    elm_model_free(m);
}

/* Forged files whose checksum is right: the structural checks behind it. */
static void test_forged(void **st) {
    (void)st;
    elm_model *m = make_model(&SMALL, 2);
    size_t n;
    unsigned char *orig = save(m, &n), *b = malloc(n + 64);
#define RESET() memcpy(b, orig, n)
    size_t conf = section(orig, n, "CONF"), tens = section(orig, n, "TENS");
    size_t rout = section(orig, n, "ROUT");
    assert_true(conf && tens && rout);

    /* a section longer than the file */
    RESET();
    wr64(b + tens + 8, (uint64_t)1 << 39);
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_LIMIT);
    assert_non_null(strstr(elm_last_error(), "TENS"));

    /* hyper-parameters claiming terabytes of weights: refused before
     * anything is allocated */
    RESET();
    for (size_t e = conf + 24; e < conf + 24 + 17 * 40; e += 40)
        if (strcmp((char *)b + e, "num_memory") == 0) {
            double h = 16777216.0;
            memcpy(b + e + 32, &h, 8);
        }
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_LIMIT);
    assert_non_null(strstr(elm_last_error(), "imply"));

    /* an unknown hyper-parameter (a newer writer) */
    RESET();
    memcpy(b + conf + 24, "num_dendrites", 14);
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_VERSION);
    assert_non_null(strstr(elm_last_error(), "num_dendrites"));

    /* inconsistent hyper-parameters */
    RESET();
    for (size_t e = conf + 24; e < conf + 24 + 17 * 40; e += 40)
        if (strcmp((char *)b + e, "input_to_synapse_routing") == 0) {
            double r = 0;
            memcpy(b + e + 32, &r, 8);
        }
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_CONFIG);

    /* a tensor of the wrong shape: swap the dims of mlp.0.weight */
    RESET();
    size_t rec = tens + 24;
    int found = 0;
    while (rec < n) {
        uint64_t numel = 1;
        unsigned ndim = b[rec + 44];
        for (unsigned d = 0; d < ndim; d++) numel *= rd64(b + rec + 48 + 8 * d);
        if (strcmp((char *)b + rec, "mlp.0.weight") == 0) {
            uint64_t d0 = rd64(b + rec + 48), d1 = rd64(b + rec + 56);
            wr64(b + rec + 48, d1);
            wr64(b + rec + 56, d0);
            found = 1;
            break;
        }
        size_t bytes = numel * 4;
        rec += 80 + bytes + (8 - bytes % 8) % 8;
    }
    assert_true(found);
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_SHAPE);
    assert_non_null(strstr(elm_last_error(), "mlp.0.weight"));

    /* a dimension of 2^40 */
    RESET();
    wr64(b + rec + 48, (uint64_t)1 << 40);
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_LIMIT);

    /* a renamed tensor: missing */
    RESET();
    b[rec] = 'X';
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_SHAPE);
    assert_non_null(strstr(elm_last_error(), "mlp.0.weight"));

    /* NaN in a weight */
    RESET();
    float nan = NAN;
    memcpy(b + rec + 80, &nan, 4);
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_NONFINITE);
    assert_non_null(strstr(elm_last_error(), "mlp.0.weight"));

    /* a routing index outside the inputs */
    RESET();
    wr32(b + rout + 16 + 8, 12);
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_FORMAT);
    assert_non_null(strstr(elm_last_error(), "ROUT"));

    /* an unknown required section: refused; unknown optional: skipped */
    RESET();
    memcpy(b + rout, "XTRA", 4); /* ROUT becomes unknown (and is missing) */
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_VERSION);
    wr32(b + rout + 4, 0);
    fix_crc(b, n);
    assert_int_equal(load_status(b, n), ELM_E_FORMAT); /* routing but no ROUT */

    /* a duplicate section: META twice */
    elm_model_set_meta(m, "a", "b");
    size_t n2;
    unsigned char *w = save(m, &n2), *d = malloc(n2 + 64);
    size_t meta = section(w, n2, "META"), mlen = n2 - 24 - meta;
    memcpy(d, w, n2 - 24);
    memcpy(d + n2 - 24, w + meta, mlen);
    memcpy(d + n2 - 24 + mlen, w + n2 - 24, 24);
    wr64(d + 16, n2 + mlen);
    fix_crc(d, n2 + mlen);
    assert_int_equal(load_status(d, n2 + mlen), ELM_E_FORMAT);
    assert_non_null(strstr(elm_last_error(), "twice"));
    /* ... and an unknown optional section in its place loads */
    memcpy(d + n2 - 24, "ZZZZ", 4);
    wr32(d + n2 - 24 + 4, 0);
    fix_crc(d, n2 + mlen);
    assert_int_equal(load_status(d, n2 + mlen), ELM_OK);
    free(w);
    free(d);
    free(orig);
    free(b);
    elm_model_free(m);
}

static char dir_template[64];

static char *tmpdir(void) {
    snprintf(dir_template, sizeof dir_template, "/tmp/elm_modelfile_XXXXXX");
    assert_non_null(mkdtemp(dir_template));
    return dir_template;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void test_files(void **st) {
    (void)st;
    char *dir = tmpdir(), path[128], sub[128];
    snprintf(path, sizeof path, "%s/model.elm", dir);
    elm_model *m = make_model(&SMALL, 4), *back = NULL;
    assert_int_equal(elm_model_save(m, path), ELM_OK);
    assert_int_equal(elm_model_load(path, &back), ELM_OK);
    assert_same_model(m, back);
    elm_model_free(back);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true((sb.st_mode & 0444) == 0444); /* readable like a normal file */
    assert_int_equal(count_entries(dir), 1);    /* no temporary left */
    /* the file and the buffer are the same bytes */
    size_t nf, nb;
    unsigned char *fb = slurp(path, &nf), *bb = save(m, &nb);
    assert_int_equal(nf, nb);
    assert_memory_equal(fb, bb, nb);
    free(fb);
    free(bb);
    /* errors name the path */
    snprintf(sub, sizeof sub, "%s/absent.elm", dir);
    assert_int_equal(elm_model_load(sub, &back), ELM_E_IO);
    assert_non_null(strstr(elm_last_error(), "absent.elm"));
    assert_int_equal(elm_model_load(dir, &back), ELM_E_IO); /* a directory */
    snprintf(sub, sizeof sub, "%s/no/such/dir/m.elm", dir);
    assert_int_equal(elm_model_save(m, sub), ELM_E_IO);
    assert_int_equal(elm_model_save(m, dir), ELM_E_IO); /* rename onto a directory */
    assert_int_equal(count_entries(dir), 1);
    /* a text file is not a model */
    snprintf(sub, sizeof sub, "%s/text.elm", dir);
    FILE *f = fopen(sub, "w");
    fputs("formulation: v1\nnum_input: 3\n", f);
    fclose(f);
    assert_int_equal(elm_model_load(sub, &back), ELM_E_FORMAT);
    unlink(sub);
    unlink(path);
    rmdir(dir);
    elm_model_free(m);
}

/* A save that runs out of space (here: a file-size limit, which fails the
 * write like a full disk) leaves the old file intact and no temporary. */
static void test_full_disk_keeps_old_file(void **st) {
    (void)st;
    char *dir = tmpdir(), path[128];
    snprintf(path, sizeof path, "%s/model.elm", dir);
    spec small = SMALL;
    elm_model *m = make_model(&small, 4);
    assert_int_equal(elm_model_save(m, path), ELM_OK);
    size_t n_old;
    unsigned char *old = slurp(path, &n_old);
    spec bigger = SMALL;
    bigger.n_m = 300;
    bigger.H = 400;
    elm_model *big = make_model(&bigger, 5);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {(rlim_t)n_old + 100, (rlim_t)n_old + 100};
        setrlimit(RLIMIT_FSIZE, &rl);
        int rc = elm_model_save(big, path);
        _exit(rc == ELM_E_IO && strstr(elm_last_error(), "intact") ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    size_t n_now;
    unsigned char *now = slurp(path, &n_now);
    assert_int_equal(n_now, n_old);
    assert_memory_equal(now, old, n_old);
    assert_int_equal(count_entries(dir), 1);
    elm_model *back = NULL;
    assert_int_equal(elm_model_load(path, &back), ELM_OK);
    elm_model_free(back);
    free(old);
    free(now);
    unlink(path);
    rmdir(dir);
    elm_model_free(m);
    elm_model_free(big);
}

/* Random damage behind a valid checksum: every outcome is a clean error or
 * a model that runs; nothing crashes or reads out of bounds. */
static void test_forged_random(void **st) {
    (void)st;
    elm_model *m = make_model(&SMALL, 6);
    elm_model_set_meta(m, "key", "value");
    size_t n;
    unsigned char *orig = save(m, &n), *b = malloc(n);
    uint64_t rng = 12345;
    int loaded = 0;
    float x[2 * 12] = {1, 0, -1, 0.5f}, y[2 * 3];
    for (int it = 0; it < 20000; it++) {
        memcpy(b, orig, n);
        int flips = 1 + it % 4;
        for (int f = 0; f < flips; f++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = 24 + (size_t)(rng >> 33) % (n - 48);
            unsigned char v = (unsigned char)(rng >> 20);
            b[pos] = it % 3 == 0 ? v : (unsigned char)(b[pos] ^ (1u << (v % 8)));
        }
        fix_crc(b, n);
        elm_model *back = NULL;
        int rc = elm_model_load_buffer(b, n, &back);
        assert_true(rc <= 0 && rc >= ELM_E_LIMIT && rc != ELM_E_CHECKSUM);
        if (rc == ELM_OK) {
            loaded++;
            size_t n_in;
            elm_model_size(back, ELM_SIZE_INPUT, &n_in);
            if (n_in == 12) assert_int_equal(elm_model_forward(back, x, 1, 2, y), ELM_OK);
            elm_model_free(back);
        } else {
            assert_null(back);
            assert_true(strlen(elm_last_error()) > 0);
        }
    }
    /* most flips land in tensor values, which load (finite) or are refused
     * (NaN/Inf): both outcomes occur */
    assert_true(loaded > 0 && loaded < 20000);
    free(orig);
    free(b);
    elm_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_infinite_tau_m_survives),
        cmocka_unit_test(test_buffer_sizes),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_truncation_and_damage),
        cmocka_unit_test(test_header_fields),
        cmocka_unit_test(test_forged),
        cmocka_unit_test(test_forged_random),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_full_disk_keeps_old_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
