/* White-box tests of lib/idx.c, the reader of IDX files (MNIST format), raw
 * and gzip-compressed. Writes small files in a mkdtemp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "elm_internal.h"
#include "idx.h"

static char dir[] = "/tmp/elm_idx_XXXXXX";
static char made[64][256];
static int n_made;

static const char *path_of(const char *name) {
    assert_true(n_made < 64);
    snprintf(made[n_made], sizeof made[0], "%s/%s", dir, name);
    return made[n_made++];
}

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

/* An IDX image in memory: header then `data_n` bytes of pattern. */
typedef struct buf {
    unsigned char *p;
    size_t n;
} buf;

static buf idx_bytes(unsigned type, unsigned ndim, const uint32_t *dims, size_t data_n) {
    buf b;
    b.n = 4 + 4 * (size_t)ndim + data_n;
    b.p = malloc(b.n);
    assert_non_null(b.p);
    b.p[0] = 0;
    b.p[1] = 0;
    b.p[2] = (unsigned char)type;
    b.p[3] = (unsigned char)ndim;
    for (unsigned i = 0; i < ndim; i++) {
        unsigned char *q = b.p + 4 + 4 * i;
        q[0] = (unsigned char)(dims[i] >> 24);
        q[1] = (unsigned char)(dims[i] >> 16);
        q[2] = (unsigned char)(dims[i] >> 8);
        q[3] = (unsigned char)dims[i];
    }
    for (size_t i = 0; i < data_n; i++) b.p[4 + 4 * ndim + i] = (unsigned char)(i * 7 + 3);
    return b;
}

static const char *write_raw(const char *name, const void *p, size_t n) {
    const char *path = path_of(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *write_gz(const char *name, const void *p, size_t n) {
    const char *path = path_of(name);
    gzFile g = gzopen(path, "wb6");
    assert_non_null(g);
    if (n) assert_int_equal(gzwrite(g, p, (unsigned)n), (int)n);
    assert_int_equal(gzclose(g), Z_OK);
    return path;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)sz + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

static void expect_fail(const char *path, int code, const char *needle) {
    elm_idx a;
    memset(&a, 0x5a, sizeof a);
    int rc = elm__idx_load(path, &a);
    const char *msg = elm_last_error();
    if (rc != code || !strstr(msg, path) || (needle && !strstr(msg, needle)))
        print_error("%s: got %d (%s), want %d with '%s'\n", path, rc, msg, code, needle ? needle : "");
    assert_int_equal(rc, code);
    assert_non_null(strstr(msg, path));
    if (needle) assert_non_null(strstr(msg, needle));
    assert_null(a.data); /* zeroed on failure */
    assert_int_equal(a.ndim, 0);
    assert_int_equal(a.numel, 0);
}

static void check_roundtrip(const char *path, unsigned ndim, const uint32_t *dims, size_t numel) {
    elm_idx a;
    int rc = elm__idx_load(path, &a);
    if (rc) print_error("%s: %s\n", path, elm_last_error());
    assert_int_equal(rc, ELM_OK);
    assert_int_equal(a.ndim, (int)ndim);
    for (unsigned i = 0; i < ndim; i++) assert_int_equal(a.dims[i], dims[i]);
    for (unsigned i = ndim; i < ELM_IDX_MAX_DIMS; i++) assert_int_equal(a.dims[i], 0);
    assert_int_equal(a.numel, numel);
    assert_non_null(a.data);
    for (size_t i = 0; i < numel; i++)
        if (a.data[i] != (unsigned char)(i * 7 + 3)) fail_msg("%s: byte %zu is %u", path, i, a.data[i]);
    elm__idx_free(&a);
    assert_null(a.data);
    assert_int_equal(a.numel, 0);
}

static void test_roundtrip_raw(void **st) {
    (void)st;
    static const uint32_t d1[] = {10}, d3[] = {3, 4, 5}, d4[] = {2, 3, 4, 5}, d0[] = {0, 5};
    buf b = idx_bytes(8, 1, d1, 10);
    check_roundtrip(write_raw("r1.idx", b.p, b.n), 1, d1, 10);
    /* A raw file named .gz is read as raw: detection is by content. */
    check_roundtrip(write_raw("raw_named.gz", b.p, b.n), 1, d1, 10);
    free(b.p);
    b = idx_bytes(8, 3, d3, 60);
    check_roundtrip(write_raw("r3.idx", b.p, b.n), 3, d3, 60);
    free(b.p);
    b = idx_bytes(8, 4, d4, 120);
    check_roundtrip(write_raw("r4.idx", b.p, b.n), 4, d4, 120);
    free(b.p);
    b = idx_bytes(8, 2, d0, 0); /* an empty array is valid */
    check_roundtrip(write_raw("r0.idx", b.p, b.n), 2, d0, 0);
    free(b.p);
}

static void test_roundtrip_gz(void **st) {
    (void)st;
    static const uint32_t d3[] = {3, 4, 5}, dbig[] = {3, 1000, 1001}, d0[] = {0, 5};
    buf b = idx_bytes(8, 3, d3, 60);
    check_roundtrip(write_gz("g3.idx.gz", b.p, b.n), 3, d3, 60);
    /* Compressed without the .gz name: detected by the 1f 8b magic. */
    check_roundtrip(write_gz("g3_no_suffix.idx", b.p, b.n), 3, d3, 60);
    free(b.p);
    /* Over 1 MiB: the buffer grows in several steps. */
    b = idx_bytes(8, 3, dbig, 3003000);
    check_roundtrip(write_gz("gbig.idx.gz", b.p, b.n), 3, dbig, 3003000);
    check_roundtrip(write_raw("rbig.idx", b.p, b.n), 3, dbig, 3003000);
    free(b.p);
    b = idx_bytes(8, 2, d0, 0);
    check_roundtrip(write_gz("g0.idx.gz", b.p, b.n), 2, d0, 0);
    free(b.p);
}

static void test_io_and_null(void **st) {
    (void)st;
    expect_fail(path_of("does_not_exist.idx"), ELM_E_IO, "cannot open");
    expect_fail(dir, ELM_E_IO, "not a regular file");
    elm_idx a;
    assert_int_equal(elm__idx_load(NULL, &a), ELM_E_NULL);
    assert_int_equal(elm__idx_load("x", NULL), ELM_E_NULL);
    elm__idx_free(NULL);
    memset(&a, 0, sizeof a);
    elm__idx_free(&a);
}

static void test_format(void **st) {
    (void)st;
    static const uint32_t d[] = {2, 2};
    buf b = idx_bytes(8, 2, d, 4);
    b.p[0] = 1;
    expect_fail(write_raw("magic.idx", b.p, b.n), ELM_E_FORMAT, "bad magic 01 00 08 02");
    expect_fail(write_gz("magic.idx.gz", b.p, b.n), ELM_E_FORMAT, "bad magic");
    b.p[0] = 0;
    b.p[2] = 0x0D;
    expect_fail(write_raw("float.idx", b.p, b.n), ELM_E_FORMAT, "type 0x0d (float32)");
    expect_fail(write_gz("float.idx.gz", b.p, b.n), ELM_E_FORMAT, "type 0x0d (float32)");
    b.p[2] = 0x42;
    expect_fail(write_raw("type42.idx", b.p, b.n), ELM_E_FORMAT, "type 0x42");
    b.p[2] = 0x08;
    b.p[3] = 0;
    expect_fail(write_raw("ndim0.idx", b.p, b.n), ELM_E_FORMAT, "ndim 0");
    b.p[3] = 5;
    expect_fail(write_raw("ndim5.idx", b.p, b.n), ELM_E_FORMAT, "ndim 5");
    free(b.p);
    /* Text, not IDX. */
    expect_fail(write_raw("text.idx", "hello world\n", 12), ELM_E_FORMAT, "bad magic");
}

static void test_truncated(void **st) {
    (void)st;
    static const uint32_t d[] = {4, 5};
    buf b = idx_bytes(8, 2, d, 20);
    expect_fail(write_raw("empty.idx", "", 0), ELM_E_TRUNCATED, "magic");
    expect_fail(write_raw("hdr.idx", b.p, 9), ELM_E_TRUNCATED, "header");
    expect_fail(write_gz("hdr.idx.gz", b.p, 9), ELM_E_TRUNCATED, "header");
    expect_fail(write_raw("short.idx", b.p, b.n - 1), ELM_E_TRUNCATED, "19 of the 20 bytes");
    expect_fail(write_gz("short.idx.gz", b.p, b.n - 1), ELM_E_TRUNCATED, "19 of the 20 bytes");
    free(b.p);
    /* A compressed file cut short: the stream itself ends early. */
    static const uint32_t dbig[] = {100, 1000};
    b = idx_bytes(8, 2, dbig, 100000);
    const char *full = write_gz("cut_src.idx.gz", b.p, b.n);
    size_t n;
    unsigned char *z = slurp(full, &n);
    expect_fail(write_raw("cut.idx.gz", z, n / 2), ELM_E_TRUNCATED, NULL);
    expect_fail(write_raw("cut_trailer.idx.gz", z, n - 4), ELM_E_TRUNCATED, NULL);
    free(z);
    free(b.p);
}

static void test_trailing(void **st) {
    (void)st;
    static const uint32_t d[] = {4, 5};
    buf b = idx_bytes(8, 2, d, 21); /* one byte more than declared */
    expect_fail(write_raw("trail.idx", b.p, b.n), ELM_E_FORMAT, "trailing");
    expect_fail(write_gz("trail.idx.gz", b.p, b.n), ELM_E_FORMAT, "more than the 20 bytes");
    free(b.p);
}

static void test_limit(void **st) {
    (void)st;
    /* 2^32 + 2^16 bytes: over the limit; the file holds only the header. */
    static const uint32_t big[] = {65537, 65536};
    buf b = idx_bytes(8, 2, big, 0);
    expect_fail(write_raw("big.idx", b.p, b.n), ELM_E_LIMIT, "65537x65536 exceed");
    expect_fail(write_gz("big.idx.gz", b.p, b.n), ELM_E_LIMIT, "exceed");
    free(b.p);
    /* The product would wrap 64 bits. */
    static const uint32_t wrap[] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    b = idx_bytes(8, 4, wrap, 0);
    expect_fail(write_raw("wrap.idx", b.p, b.n), ELM_E_LIMIT, "exceed");
    free(b.p);
    /* Exactly 2^32 is within the limit but never allocated: a raw file is
     * refused by its size, a gzip one once its stream ends. */
    static const uint32_t edge[] = {65536, 65536};
    b = idx_bytes(8, 2, edge, 10);
    expect_fail(write_raw("edge.idx", b.p, b.n), ELM_E_TRUNCATED, "10 of the 4294967296 bytes");
    expect_fail(write_gz("edge.idx.gz", b.p, b.n), ELM_E_TRUNCATED, "10 of the 4294967296 bytes");
    free(b.p);
}

static void test_corrupt_gz(void **st) {
    (void)st;
    static const uint32_t d[] = {30, 40};
    buf b = idx_bytes(8, 2, d, 1200);
    const char *good = write_gz("good.idx.gz", b.p, b.n);
    check_roundtrip(good, 2, d, 1200);
    size_t n;
    unsigned char *z = slurp(good, &n);
    /* A wrong CRC-32 in the trailer: every byte decompresses. */
    z[n - 8] ^= 0xFF;
    expect_fail(write_raw("crc.idx.gz", z, n), ELM_E_FORMAT, "corrupt gzip");
    z[n - 8] ^= 0xFF;
    /* A wrong length in the trailer. */
    z[n - 4] ^= 0x01;
    expect_fail(write_raw("isize.idx.gz", z, n), ELM_E_FORMAT, "corrupt gzip");
    z[n - 4] ^= 0x01;
    /* An unknown compression method in the header. */
    z[2] = 7;
    expect_fail(write_raw("method.idx.gz", z, n), ELM_E_FORMAT, "corrupt gzip");
    z[2] = 8;
    free(z);
    /* The gzip magic followed by garbage. */
    unsigned char junk[64];
    for (int i = 0; i < 64; i++) junk[i] = (unsigned char)(i * 37 + 11);
    junk[0] = 0x1f;
    junk[1] = 0x8b;
    junk[2] = 8;
    junk[3] = 0;
    expect_fail(write_raw("junk.idx.gz", junk, sizeof junk), ELM_E_FORMAT, "corrupt gzip");
    free(b.p);
}

static void test_fashion_mnist(void **st) {
    (void)st;
    static const char *dirs[] = {"/usr/share/datasets/fashion-mnist"};
    static const char *names[] = {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"};
    int found = 0;
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
        for (size_t j = 0; j < 2; j++) {
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dirs[i], names[j]);
            if (access(p, R_OK) != 0) continue;
            found++;
            elm_idx a;
            int rc = elm__idx_load(p, &a);
            if (rc) print_error("%s: %s\n", p, elm_last_error());
            assert_int_equal(rc, ELM_OK);
            assert_int_equal(a.ndim, 3);
            assert_int_equal(a.dims[0], 60000);
            assert_int_equal(a.dims[1], 28);
            assert_int_equal(a.dims[2], 28);
            assert_int_equal(a.numel, (size_t)60000 * 28 * 28);
            elm__idx_free(&a);
        }
    if (!found) {
        print_message("no /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte(.gz) "
                      "(Debian package dataset-fashion-mnist): skipped\n");
        skip();
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_raw), cmocka_unit_test(test_roundtrip_gz),
        cmocka_unit_test(test_io_and_null),   cmocka_unit_test(test_format),
        cmocka_unit_test(test_truncated),     cmocka_unit_test(test_trailing),
        cmocka_unit_test(test_limit),         cmocka_unit_test(test_corrupt_gz),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
