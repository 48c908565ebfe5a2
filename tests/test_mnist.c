/* IDX images as sequences (elm_dataset_open_idx): exact x values pixel by
 * pixel and row by row, raw and gzip files, the permuted variant (a fixed
 * bijection per seed), labels, malformed pairs, and Debian's Fashion-MNIST
 * when installed. Writes small files in a mkdtemp directory; gzip files
 * are made with /usr/bin/gzip (the test links no zlib). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elm.h"

static char dir[] = "/tmp/elm_mnist_XXXXXX";
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

/* The image bytes of the synthetic sets: distinct within an image as long
 * as rows * cols <= 256 (3 is odd, so p -> 3 p is a bijection mod 256), so
 * a permuted image tells which pixel went where. */
static uint8_t pixel(size_t i, size_t p) { return (uint8_t)(3 * p + 37 * i + 1); }

/* An IDX file (type uint8) of `ndim` dims and the given payload. */
static const char *write_idx(const char *name, int ndim, const uint32_t *dims, const uint8_t *data,
                             size_t n, size_t keep) {
    const char *path = path_of(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char head[4 + 4 * 4] = {0, 0, 8, (unsigned char)ndim};
    for (int k = 0; k < ndim; k++) {
        head[4 + 4 * k] = (unsigned char)(dims[k] >> 24);
        head[5 + 4 * k] = (unsigned char)(dims[k] >> 16);
        head[6 + 4 * k] = (unsigned char)(dims[k] >> 8);
        head[7 + 4 * k] = (unsigned char)dims[k];
    }
    assert_int_equal(fwrite(head, 1, 4 + 4 * (size_t)ndim, f), 4 + 4 * (size_t)ndim);
    if (keep > n) keep = n;
    if (keep) assert_int_equal(fwrite(data, 1, keep, f), keep);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *gzip_copy(const char *src, const char *name) {
    const char *path = path_of(name);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "/usr/bin/gzip -n -c '%s' > '%s'", src, path);
    assert_int_equal(system(cmd), 0);
    return path;
}

/* A set of N images (rows, cols) with pixel() bytes and labels i % 10 + 3
 * (so that label 0 does not pass by accident). */
typedef struct set {
    const char *images, *labels;
    size_t N, rows, cols;
} set;

static set write_set(const char *stem, size_t N, size_t rows, size_t cols) {
    set s = {NULL, NULL, N, rows, cols};
    size_t P = rows * cols;
    uint8_t *img = malloc(N * P), *lab = malloc(N);
    assert_non_null(img);
    assert_non_null(lab);
    for (size_t i = 0; i < N; i++) {
        for (size_t p = 0; p < P; p++) img[i * P + p] = pixel(i, p);
        lab[i] = (uint8_t)(i % 10 + 3);
    }
    char name[64];
    uint32_t di[3] = {(uint32_t)N, (uint32_t)rows, (uint32_t)cols}, dl[1] = {(uint32_t)N};
    snprintf(name, sizeof name, "%s-images", stem);
    s.images = write_idx(name, 3, di, img, N * P, N * P);
    snprintf(name, sizeof name, "%s-labels", stem);
    s.labels = write_idx(name, 1, dl, lab, N, N);
    free(img);
    free(lab);
    return s;
}

/* Every sample of ds in index order: x (N, T, n_in), labels (N). */
typedef struct batch {
    size_t N, T, n_in;
    float *x;
    int32_t *labels;
    int64_t *lengths;
} batch;

static batch read_all(elm_dataset *ds) {
    batch b;
    size_t nt = 1, nl = 0;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_SAMPLES, &b.N), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_STEPS, &b.T), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_INPUTS, &b.n_in), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_TARGETS, &nt), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_LABELS, &nl), ELM_OK);
    assert_int_equal(nt, 0);
    assert_int_equal(nl, 1);
    b.x = malloc(b.N * b.T * b.n_in * sizeof *b.x);
    b.labels = malloc(b.N * sizeof *b.labels);
    b.lengths = malloc(b.N * sizeof *b.lengths);
    assert_non_null(b.x);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_start_epoch(ds, 0), ELM_OK);
    size_t count = 0;
    int rc = elm_dataset_next(ds, b.N, b.x, NULL, b.labels, b.lengths, &count);
    if (rc) print_error("%s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    assert_int_equal(count, b.N);
    for (size_t i = 0; i < b.N; i++) assert_int_equal(b.lengths[i], (int64_t)b.T);
    return b;
}

static void batch_free(batch *b) {
    free(b->x);
    free(b->labels);
    free(b->lengths);
}

static batch open_all(const set *s, elm_idx_sequence seq, int permute, uint64_t seed) {
    elm_dataset *ds = NULL;
    int rc = elm_dataset_open_idx(s->images, s->labels, seq, permute, seed, &ds);
    if (rc) print_error("%s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    batch b = read_all(ds);
    elm_dataset_free(ds);
    return b;
}

static void check_plain(const set *s, const batch *b, elm_idx_sequence seq) {
    size_t P = s->rows * s->cols;
    assert_int_equal(b->N, s->N);
    assert_int_equal(b->T, seq == ELM_IDX_PIXELS ? P : s->rows);
    assert_int_equal(b->n_in, seq == ELM_IDX_PIXELS ? 1 : s->cols);
    for (size_t i = 0; i < s->N; i++) {
        assert_int_equal(b->labels[i], (int32_t)(i % 10 + 3));
        for (size_t p = 0; p < P; p++) /* row-major (T, n_in) either way */
            if (b->x[i * P + p] != (float)pixel(i, p) / 255.0f)
                fail_msg("sample %zu pixel %zu: %g, want %u / 255", i, p, b->x[i * P + p],
                         pixel(i, p));
    }
}

static void test_pixels_and_rows(void **st) {
    (void)st;
    set s = write_set("plain", 5, 4, 3);
    batch b = open_all(&s, ELM_IDX_PIXELS, 0, 0);
    check_plain(&s, &b, ELM_IDX_PIXELS);
    batch_free(&b);
    b = open_all(&s, ELM_IDX_ROWS, 0, 0);
    check_plain(&s, &b, ELM_IDX_ROWS);
    batch_free(&b);
    /* The ends of the range: 0 -> 0 and 255 -> exactly 1. */
    uint8_t img[2] = {0, 255}, lab[1] = {255};
    uint32_t di[3] = {1, 1, 2}, dl[1] = {1};
    set e = {write_idx("ends-images", 3, di, img, 2, 2), write_idx("ends-labels", 1, dl, lab, 1, 1), 1, 1, 2};
    b = open_all(&e, ELM_IDX_PIXELS, 0, 0);
    assert_true(b.x[0] == 0.0f && b.x[1] == 1.0f);
    assert_int_equal(b.labels[0], 255); /* class ids are not limited to 0..9 */
    batch_free(&b);
}

static void test_gzip(void **st) {
    (void)st;
    set s = write_set("gz", 7, 5, 6);
    set g = s;
    g.images = gzip_copy(s.images, "gz-images.gz");
    g.labels = gzip_copy(s.labels, "gz-labels.gz");
    batch b = open_all(&g, ELM_IDX_PIXELS, 0, 0);
    check_plain(&s, &b, ELM_IDX_PIXELS);
    batch_free(&b);
    g.labels = s.labels; /* one of each */
    b = open_all(&g, ELM_IDX_ROWS, 0, 0);
    check_plain(&s, &b, ELM_IDX_ROWS);
    batch_free(&b);
}

/* The permutation seen through image i: perm[t] = the pixel shown at step
 * t. Returns 0 when every step matches exactly one pixel. */
static int recover_perm(const batch *b, size_t i, size_t P, size_t *perm) {
    for (size_t t = 0; t < P; t++) {
        size_t hits = 0;
        for (size_t p = 0; p < P; p++)
            if (b->x[i * P + t] == (float)pixel(i, p) / 255.0f) perm[t] = p, hits++;
        if (hits != 1) return -1;
    }
    return 0;
}

static void test_permuted(void **st) {
    (void)st;
    const size_t rows = 8, cols = 10, P = rows * cols;
    set s = write_set("perm", 4, rows, cols);
    for (size_t i = 0; i < 4; i++) { /* pixel() is injective within an image */
        for (size_t p = 0; p < P; p++)
            for (size_t q = p + 1; q < P; q++) assert_int_not_equal(pixel(i, p), pixel(i, q));
    }
    batch a = open_all(&s, ELM_IDX_PIXELS, 1, 42);
    batch a2 = open_all(&s, ELM_IDX_PIXELS, 1, 42);
    batch r = open_all(&s, ELM_IDX_ROWS, 1, 42);
    batch c = open_all(&s, ELM_IDX_PIXELS, 1, 43);
    assert_int_equal(a.T, P);
    assert_int_equal(r.T, rows);
    assert_int_equal(r.n_in, cols);
    assert_memory_equal(a.x, a2.x, 4 * P * sizeof(float));
    assert_memory_equal(a.x, r.x, 4 * P * sizeof(float)); /* the same order, reshaped */
    assert_memory_equal(a.labels, r.labels, 4 * sizeof(int32_t));

    size_t perm[80], perm_i[80], perm_c[80];
    assert_int_equal(recover_perm(&a, 0, P, perm), 0);
    int seen[80] = {0}, identity = 1;
    for (size_t t = 0; t < P; t++) {
        assert_int_equal(seen[perm[t]]++, 0); /* a bijection */
        identity &= perm[t] == t;
    }
    assert_false(identity);
    for (size_t i = 1; i < 4; i++) { /* one permutation for every image */
        assert_int_equal(recover_perm(&a, i, P, perm_i), 0);
        assert_memory_equal(perm, perm_i, sizeof perm);
        assert_int_equal(a.labels[i], (int32_t)(i % 10 + 3));
    }
    assert_int_equal(recover_perm(&c, 0, P, perm_c), 0);
    assert_memory_not_equal(perm, perm_c, sizeof perm); /* another seed, another order */
    batch_free(&a);
    batch_free(&a2);
    batch_free(&r);
    batch_free(&c);
}

static void expect_fail(const char *images, const char *labels, int code, const char *n1,
                        const char *n2) {
    elm_dataset *ds = (elm_dataset *)&ds; /* must come back unchanged */
    int rc = elm_dataset_open_idx(images, labels, ELM_IDX_PIXELS, 0, 0, &ds);
    const char *msg = elm_last_error();
    if (rc != code || (n1 && !strstr(msg, n1)) || (n2 && !strstr(msg, n2)))
        print_error("got %d (%s), want %d with '%s' and '%s'\n", rc, msg, code, n1 ? n1 : "",
                    n2 ? n2 : "");
    assert_int_equal(rc, code);
    assert_ptr_equal(ds, (elm_dataset *)&ds);
    if (n1) assert_non_null(strstr(msg, n1));
    if (n2) assert_non_null(strstr(msg, n2));
}

static void test_malformed(void **st) {
    (void)st;
    set s = write_set("ok", 3, 2, 2);
    uint8_t bytes[64] = {0};
    uint32_t d4[1] = {4}, d22[2] = {3, 4}, d3[3] = {3, 2, 2}, d0[3] = {0, 2, 2}, dz[3] = {3, 0, 2},
             dl0[1] = {0};

    const char *lab4 = write_idx("lab4", 1, d4, bytes, 4, 4);
    expect_fail(s.images, lab4, ELM_E_FORMAT, s.images, lab4); /* 3 images, 4 labels */
    expect_fail(s.images, gzip_copy(lab4, "lab4.gz"), ELM_E_FORMAT, "4 labels", NULL);

    const char *img2 = write_idx("img2d", 2, d22, bytes, 12, 12);
    expect_fail(img2, s.labels, ELM_E_FORMAT, img2, "3 dims");
    const char *lab2 = write_idx("lab2d", 2, d22, bytes, 12, 12);
    expect_fail(s.images, lab2, ELM_E_FORMAT, lab2, "1 dim");
    expect_fail(s.labels, s.images, ELM_E_FORMAT, "3 dims", NULL); /* swapped */

    const char *empty = write_idx("img0", 3, d0, bytes, 0, 0);
    expect_fail(empty, write_idx("lab0", 1, dl0, bytes, 0, 0), ELM_E_FORMAT, empty, ">= 1");
    const char *zero_cols = write_idx("imgz", 3, dz, bytes, 0, 0);
    expect_fail(zero_cols, s.labels, ELM_E_FORMAT, zero_cols, NULL);

    const char *trunc = write_idx("img_trunc", 3, d3, bytes, 12, 11);
    expect_fail(trunc, s.labels, ELM_E_TRUNCATED, trunc, NULL);
    expect_fail(gzip_copy(trunc, "img_trunc.gz"), s.labels, ELM_E_TRUNCATED, "img_trunc.gz", NULL);
    const char *lab_trunc = write_idx("lab_trunc", 1, d4, bytes, 4, 2);
    expect_fail(s.images, lab_trunc, ELM_E_TRUNCATED, lab_trunc, NULL);
    const char *missing = path_of("missing");
    expect_fail(missing, s.labels, ELM_E_IO, missing, NULL);
    expect_fail(s.images, missing, ELM_E_IO, missing, NULL);

    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_open_idx(NULL, s.labels, ELM_IDX_PIXELS, 0, 0, &ds), ELM_E_NULL);
    assert_int_equal(elm_dataset_open_idx(s.images, NULL, ELM_IDX_PIXELS, 0, 0, &ds), ELM_E_NULL);
    assert_int_equal(elm_dataset_open_idx(s.images, s.labels, ELM_IDX_PIXELS, 0, 0, NULL), ELM_E_NULL);
    assert_int_equal(elm_dataset_open_idx(s.images, s.labels, (elm_idx_sequence)2, 0, 0, &ds),
                     ELM_E_INVALID);
    assert_int_equal(elm_dataset_open_idx(s.images, s.labels, ELM_IDX_ROWS, 2, 0, &ds), ELM_E_INVALID);
    assert_null(ds);
}

/* The first `n` decompressed bytes of a gzip file, through /usr/bin/gzip. */
static void gz_head(const char *path, unsigned char *dst, size_t n) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "/usr/bin/gzip -dc '%s' | head -c %zu", path, n);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fread(dst, 1, n, p), n);
    pclose(p);
}

static void check_fashion(const char *stem, size_t N_want) {
    char images[256], labels[256];
    snprintf(images, sizeof images, "/usr/share/datasets/fashion-mnist/%s-images-idx3-ubyte.gz", stem);
    snprintf(labels, sizeof labels, "/usr/share/datasets/fashion-mnist/%s-labels-idx1-ubyte.gz", stem);
    unsigned char head_img[16 + 784], head_lab[8 + 2];
    gz_head(images, head_img, sizeof head_img);
    gz_head(labels, head_lab, sizeof head_lab);

    elm_dataset *ds = NULL;
    int rc = elm_dataset_open_idx(images, labels, ELM_IDX_PIXELS, 0, 0, &ds);
    if (rc) print_error("%s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    size_t N, T, n_in;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_SAMPLES, &N), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_STEPS, &T), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_INPUTS, &n_in), ELM_OK);
    assert_int_equal(N, N_want);
    assert_int_equal(T, 784);
    assert_int_equal(n_in, 1);
    float x[2 * 784];
    int32_t lab[2];
    int64_t len[2];
    size_t count;
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_next(ds, 2, x, NULL, lab, len, &count), ELM_OK);
    assert_int_equal(count, 2);
    assert_int_equal(lab[0], head_lab[8]);
    assert_int_equal(lab[1], head_lab[9]);
    for (size_t p = 0; p < 784; p++) assert_true(x[p] == (float)head_img[16 + p] / 255.0f);
    elm_dataset_free(ds);

    /* Row by row, permuted: same shape contract on real data. */
    assert_int_equal(elm_dataset_open_idx(images, labels, ELM_IDX_ROWS, 1, 7, &ds), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_STEPS, &T), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_INPUTS, &n_in), ELM_OK);
    assert_int_equal(T, 28);
    assert_int_equal(n_in, 28);
    elm_dataset_free(ds);
}

static void test_fashion_mnist(void **st) {
    (void)st;
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0 ||
        access("/usr/bin/gzip", X_OK) != 0) {
        print_message("skipped: Debian's Fashion-MNIST (/usr/share/datasets/fashion-mnist) is not installed\n");
        skip();
    }
    check_fashion("train", 60000);
    check_fashion("t10k", 10000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pixels_and_rows),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_permuted),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
