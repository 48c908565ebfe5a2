/* LRA ListOps: the TSV reader (one-hot x, lengths, labels, LRA's
 * parenthesised layout with CRLF rows, every malformed class refused with
 * file:line), the evaluator through hand-computed targets (MED of an even
 * count, SM), and the generator (determinism, length / depth / argument
 * bounds, labels equal to an independent evaluation, all ten classes).
 * Channels: 0-9 the digits, 10 [MIN, 11 [MAX, 12 [MED, 13 [SM, 14 ]. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "elm.h"

enum { MIN = 10, MAX = 11, MED = 12, SM = 13, END = 14, V = ELM_LISTOPS_VOCAB };

static char dir[] = "/tmp/elm_listops_XXXXXX";
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

static const char *write_text(const char *name, const char *text) {
    assert_true(n_made < 64);
    char *path = made[n_made++];
    snprintf(path, sizeof made[0], "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    size_t n = strlen(text);
    if (n) assert_int_equal(fwrite(text, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* ---------------------------------------------------------------------------
 * An independent evaluator: recursive descent over token ids, also
 * measuring depth (root = 1, leaves counted) and the largest argument
 * count. Returns the value or -1 if malformed. */
typedef struct walk {
    const int *tok;
    size_t n, pos;
    int depth, max_depth, max_args, min_args;
} walk;

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int walk_expr(walk *w) {
    if (w->pos >= w->n) return -1;
    int t = w->tok[w->pos++];
    w->depth++;
    if (w->depth > w->max_depth) w->max_depth = w->depth;
    int value = -1;
    if (t >= 0 && t <= 9) {
        value = t;
    } else if (t >= MIN && t <= SM) {
        int args[4096], k = 0;
        while (w->pos < w->n && w->tok[w->pos] != END) {
            if (k == 4096) return -1;
            int v = walk_expr(w);
            if (v < 0) return -1;
            args[k++] = v;
        }
        if (w->pos == w->n || k == 0) return -1;
        w->pos++; /* ] */
        if (k > w->max_args) w->max_args = k;
        if (k < w->min_args) w->min_args = k;
        qsort(args, (size_t)k, sizeof *args, cmp_int);
        int sum = 0;
        for (int j = 0; j < k; j++) sum += args[j];
        value = t == MIN   ? args[0]
                : t == MAX ? args[k - 1]
                : t == SM  ? sum % 10
                           : (args[(k - 1) / 2] + args[k / 2]) / 2; /* int(np.median) */
    }
    w->depth--;
    return value;
}

static int eval_tokens(const int *tok, size_t n, walk *out) {
    walk w = {tok, n, 0, 0, 0, 0, 1 << 30};
    int v = walk_expr(&w);
    if (w.pos != n) v = -1;
    if (out) *out = w;
    return v;
}

static void test_independent_evaluator(void **st) {
    (void)st;
    /* Hand-computed: the reference below is what the library is checked
     * against, so it is checked first. */
    int a[] = {MAX, 2, 9, MIN, 4, 7, END, 0, END};          /* max(2, 9, 4, 0) */
    int b[] = {MED, 3, 8, 1, 5, END};                       /* (3 + 5) / 2 */
    int c[] = {MED, 9, 8, END};                             /* 8.5 -> 8 */
    int d[] = {SM, 7, 8, 9, END};                           /* 24 mod 10 */
    int e[] = {MED, 1, 9, 5, END};
    int f[] = {MIN, 5, MAX, 1, 2, END, END};
    assert_int_equal(eval_tokens(a, 9, NULL), 9);
    assert_int_equal(eval_tokens(b, 6, NULL), 4);
    assert_int_equal(eval_tokens(c, 4, NULL), 8);
    assert_int_equal(eval_tokens(d, 5, NULL), 4);
    assert_int_equal(eval_tokens(e, 5, NULL), 5);
    walk w;
    assert_int_equal(eval_tokens(f, 7, &w), 2);
    assert_int_equal(w.max_depth, 3);
    assert_int_equal(w.max_args, 2);
    assert_int_equal(eval_tokens(f, 6, NULL), -1);
}

/* ---------------------------------------------------------------------------
 * TSV reader */

/* LRA's layout (csv module: CRLF rows): each operator application is
 * wrapped as ( ( ( [OP a ) b ) ] ). */
static const char *GOOD =
    "Source\tTarget\r\n"
    "( ( ( ( ( [MAX 2 ) 9 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )\t9\r\n"
    "( ( ( [MED 1 ) 2 ) ] )\t1\r\n"
    "[MED 3 8 1 5 ]\t4\r\n"
    "[SM 7 8 9 ]\t4\r\n"
    "[SM [MAX 5 6 ] 9 ]\t5\r\n"
    "7\t7\r\n"
    "[MED 9 8 ]\t8\r\n";

static const int GOOD_TOK[][10] = {
    {MAX, 2, 9, MIN, 4, 7, END, 0, END, -1},
    {MED, 1, 2, END, -1},
    {MED, 3, 8, 1, 5, END, -1},
    {SM, 7, 8, 9, END, -1},
    {SM, MAX, 5, 6, END, 9, END, -1},
    {7, -1},
    {MED, 9, 8, END, -1},
};
static const int GOOD_LABEL[] = {9, 1, 4, 4, 5, 7, 8};
#define N_GOOD 7

/* All samples of a small dataset: x (N, T, V), labels, lengths. */
static void read_all(elm_dataset *ds, size_t N, size_t T, float *x, int32_t *labels,
                     int64_t *lengths) {
    size_t n = 0, t = 0, k = 0, nt = 9;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_SAMPLES, &n), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_STEPS, &t), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_INPUTS, &k), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_TARGETS, &nt), ELM_OK);
    assert_int_equal(n, N);
    assert_int_equal(t, T);
    assert_int_equal(k, V);
    assert_int_equal(nt, 0);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    size_t count = 0;
    int rc = elm_dataset_next(ds, N, x, NULL, labels, lengths, &count);
    if (rc) print_error("%s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    assert_int_equal(count, N);
}

static void check_good(elm_dataset *ds, size_t T) {
    float *x = calloc(N_GOOD * T * V, sizeof *x);
    int32_t labels[N_GOOD];
    int64_t lengths[N_GOOD];
    read_all(ds, N_GOOD, T, x, labels, lengths);
    for (size_t i = 0; i < N_GOOD; i++) {
        size_t n = 0;
        while (GOOD_TOK[i][n] >= 0) n++;
        assert_int_equal(lengths[i], (int64_t)n);
        assert_int_equal(labels[i], GOOD_LABEL[i]);
        for (size_t t = 0; t < T; t++)
            for (int c = 0; c < V; c++) {
                float want = t < n && GOOD_TOK[i][t] == c ? 1.0f : 0.0f;
                if (x[(i * T + t) * V + c] != want)
                    fail_msg("sample %zu step %zu channel %d: %g, want %g", i, t, c,
                             x[(i * T + t) * V + c], want);
            }
    }
    free(x);
}

static void test_read_tsv(void **st) {
    (void)st;
    const char *path = write_text("good.tsv", GOOD);
    elm_dataset *ds = NULL;
    int rc = elm_dataset_open_listops(path, 0, &ds);
    if (rc) print_error("%s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    check_good(ds, 9); /* T = the longest sequence */
    elm_dataset_free(ds);

    assert_int_equal(elm_dataset_open_listops(path, 12, &ds), ELM_OK);
    check_good(ds, 12);
    elm_dataset_free(ds);
    assert_int_equal(elm_dataset_open_listops(path, 9, &ds), ELM_OK);
    elm_dataset_free(ds);

    /* LF rows and no parentheses read the same. */
    const char *plain = write_text("plain.tsv",
                                   "Source\tTarget\n[MAX 2 9 [MIN 4 7 ] 0 ]\t9\n[MED 1 2 ]\t1\n"
                                   "[MED 3 8 1 5 ]\t4\n[SM 7 8 9 ]\t4\n[SM [MAX 5 6 ] 9 ]\t5\n7\t7\n"
                                   "[MED 9 8 ]\t8");
    assert_int_equal(elm_dataset_open_listops(plain, 0, &ds), ELM_OK);
    check_good(ds, 9);
    elm_dataset_free(ds);
}

static void expect_fail(const char *name, const char *text, size_t max_length, int code,
                        const char *needle) {
    const char *path = text ? write_text(name, text) : name;
    elm_dataset *ds = (elm_dataset *)&ds; /* must come back unchanged */
    int rc = elm_dataset_open_listops(path, max_length, &ds);
    const char *msg = elm_last_error();
    if (rc != code || !strstr(msg, path) || (needle && !strstr(msg, needle)))
        print_error("%s: got %d (%s), want %d with '%s'\n", name, rc, msg, code, needle ? needle : "");
    assert_int_equal(rc, code);
    assert_ptr_equal(ds, (elm_dataset *)&ds);
    assert_non_null(strstr(msg, path));
    if (needle) assert_non_null(strstr(msg, needle));
}

static void test_malformed(void **st) {
    (void)st;
    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.tsv", dir);
    expect_fail(missing, NULL, 0, ELM_E_IO, "cannot open");
    expect_fail("empty.tsv", "", 0, ELM_E_FORMAT, "empty file");
    expect_fail("header_only.tsv", "Source\tTarget\n", 0, ELM_E_FORMAT, "no samples");
    expect_fail("no_header.tsv", "[MIN 1 2 ]\t1\n", 0, ELM_E_FORMAT, ":1: the header");
    expect_fail("bad_header.tsv", "Source,Target\n[MIN 1 2 ]\t1\n", 0, ELM_E_FORMAT, "header");
    expect_fail("no_tab.tsv", "Source\tTarget\n[MIN 1 2 ]\t1\n[MIN 1 2 ] 1\n", 0, ELM_E_FORMAT,
                ":3: no tab");
    expect_fail("blank.tsv", "Source\tTarget\n\n[MIN 1 2 ]\t1\n", 0, ELM_E_FORMAT, ":2: no tab");
    expect_fail("unknown.tsv", "Source\tTarget\n[MIN 1 2 ]\t1\n[FIRST 1 2 ]\t1\n", 0, ELM_E_FORMAT,
                ":3: unknown token \"[FIRST\"");
    expect_fail("ten.tsv", "Source\tTarget\n[MIN 10 2 ]\t2\n", 0, ELM_E_FORMAT, "unknown token \"10\"");
    expect_fail("x_token.tsv", "Source\tTarget\n[MIN 1 2 X\t1\n", 0, ELM_E_FORMAT, "unknown token \"X\"");
    expect_fail("empty_src.tsv", "Source\tTarget\n( )\t1\n", 0, ELM_E_FORMAT, ":2: empty source");
    expect_fail("label_text.tsv", "Source\tTarget\n[MIN 1 2 ]\tone\n", 0, ELM_E_FORMAT,
                ":2: target \"one\" is not an integer");
    expect_fail("label_empty.tsv", "Source\tTarget\n[MIN 1 2 ]\t\n", 0, ELM_E_FORMAT, "not an integer");
    expect_fail("label_float.tsv", "Source\tTarget\n[MIN 1 2 ]\t1.0\n", 0, ELM_E_FORMAT, "not an integer");
    expect_fail("label_extra.tsv", "Source\tTarget\n[MIN 1 2 ]\t1\t2\n", 0, ELM_E_FORMAT, "not an integer");
    expect_fail("label_10.tsv", "Source\tTarget\n[MIN 1 2 ]\t10\n", 0, ELM_E_INVALID, "outside [0, 10)");
    expect_fail("label_neg.tsv", "Source\tTarget\n[MIN 1 2 ]\t-1\n", 0, ELM_E_INVALID, "outside [0, 10)");
    expect_fail("unclosed.tsv", "Source\tTarget\n[MIN 1 [MAX 2 3 ]\t1\n", 0, ELM_E_FORMAT,
                ":2: unbalanced brackets: [MIN at token 1 is never closed");
    expect_fail("extra_close.tsv", "Source\tTarget\n[MIN 1 2 ] ]\t1\n", 0, ELM_E_FORMAT,
                ":2: unbalanced brackets: ']' at token 5 closes nothing");
    expect_fail("close_first.tsv", "Source\tTarget\n] 1\t1\n", 0, ELM_E_FORMAT, "closes nothing");
    expect_fail("no_args.tsv", "Source\tTarget\n[MAX 1 [SM ] ]\t1\n", 0, ELM_E_FORMAT,
                "[SM at token 3 has no arguments");
    expect_fail("two_exprs.tsv", "Source\tTarget\n1 2\t1\n", 0, ELM_E_FORMAT,
                "the expression ends at token 1 but more tokens follow");
    expect_fail("two_exprs2.tsv", "Source\tTarget\n[MIN 1 2 ] [MAX 3 4 ]\t1\n", 0, ELM_E_FORMAT,
                "ends at token 4 but more tokens follow");
    expect_fail("parens.tsv", "Source\tTarget\n( ( [MIN 1 ) 2 ] \t1\n", 0, ELM_E_FORMAT,
                "unbalanced parentheses");
    expect_fail("parens2.tsv", "Source\tTarget\n( [MIN 1 ) 2 ) ] )\t1\n", 0, ELM_E_FORMAT,
                "unbalanced parentheses");
    expect_fail("wrong.tsv", "Source\tTarget\n[MIN 1 2 ]\t1\n[SM 2 3 ]\t3\n", 0, ELM_E_INVALID,
                ":3: target 3 but the expression evaluates to 5");
    expect_fail("wrong_med.tsv", "Source\tTarget\n[MED 1 2 ]\t2\n", 0, ELM_E_INVALID,
                "target 2 but the expression evaluates to 1");
    expect_fail("long.tsv", "Source\tTarget\n[MIN 1 2 ]\t1\n[MIN 1 2 3 ]\t1\n", 4, ELM_E_LIMIT,
                ":3: the sequence is longer than max_length = 4");

    elm_dataset *ds = NULL;
    const char *ok = write_text("ok.tsv", "Source\tTarget\n[MIN 1 2 ]\t1\n");
    assert_int_equal(elm_dataset_open_listops(NULL, 0, &ds), ELM_E_NULL);
    assert_int_equal(elm_dataset_open_listops(ok, 0, NULL), ELM_E_NULL);
    assert_int_equal(elm_dataset_open_listops(ok, 2000000, &ds), ELM_E_INVALID);
    assert_null(ds);
    assert_int_equal(elm_dataset_open_listops(ok, 0, &ds), ELM_OK);
    elm_dataset_free(ds);
}

/* ---------------------------------------------------------------------------
 * Generator */

typedef struct gen_set {
    size_t N, T;
    uint8_t *tok;     /* (N, T), 255 past the length */
    int32_t *labels;  /* (N) */
    int64_t *lengths; /* (N) */
} gen_set;

/* Every sample decoded back to token ids, in index order; checks one-hot
 * steps within the length and zero steps past it. */
static gen_set read_generated(elm_dataset *ds) {
    gen_set g;
    size_t n_in = 0;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_SAMPLES, &g.N), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_STEPS, &g.T), ELM_OK);
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_INPUTS, &n_in), ELM_OK);
    assert_int_equal(n_in, V);
    g.tok = malloc(g.N * g.T);
    g.labels = malloc(g.N * sizeof *g.labels);
    g.lengths = malloc(g.N * sizeof *g.lengths);
    const size_t B = 32;
    float *x = malloc(B * g.T * V * sizeof *x);
    int32_t lab[32];
    int64_t len[32];
    assert_true(g.tok && g.labels && g.lengths && x);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    assert_int_equal(elm_dataset_start_epoch(ds, 0), ELM_OK);
    for (size_t i0 = 0; i0 < g.N; i0 += B) {
        size_t count = 0;
        assert_int_equal(elm_dataset_next(ds, B, x, NULL, lab, len, &count), ELM_OK);
        assert_int_equal(count, g.N - i0 < B ? g.N - i0 : B);
        for (size_t b = 0; b < count; b++) {
            size_t i = i0 + b;
            g.labels[i] = lab[b];
            g.lengths[i] = len[b];
            for (size_t t = 0; t < g.T; t++) {
                const float *row = x + (b * g.T + t) * V;
                int hot = -1, ones = 0, others = 0;
                for (int c = 0; c < V; c++) {
                    if (row[c] == 1.0f) hot = c, ones++;
                    else if (row[c] != 0.0f) others++;
                }
                assert_int_equal(others, 0);
                assert_int_equal(ones, (int64_t)t < len[b] ? 1 : 0);
                g.tok[i * g.T + t] = (uint8_t)(ones ? hot : 255);
            }
        }
    }
    free(x);
    return g;
}

static void gen_set_free(gen_set *g) {
    free(g->tok);
    free(g->labels);
    free(g->lengths);
}

static gen_set generate(size_t N, uint64_t seed, size_t lo, size_t hi, double *seconds) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    elm_dataset *ds = NULL;
    int rc = elm_dataset_generate_listops(N, seed, lo, hi, &ds);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc) print_error("%s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    if (seconds) *seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    size_t nl = 0;
    assert_int_equal(elm_dataset_size(ds, ELM_DATASET_LABELS, &nl), ELM_OK);
    assert_int_equal(nl, 1);
    gen_set g = read_generated(ds);
    assert_int_equal(g.N, N);
    assert_int_equal(g.T, hi);
    elm_dataset_free(ds);
    return g;
}

/* LRA's definition: lengths within bounds, depth <= 10 (root 1, leaves
 * counted), 2..10 arguments per operator, label = the value. Returns the
 * class histogram in counts. */
static void check_task(const gen_set *g, size_t lo, size_t hi, size_t counts[10]) {
    int *tok = malloc(g->T * sizeof *tok);
    assert_non_null(tok);
    for (size_t i = 0; i < g->N; i++) {
        size_t n = (size_t)g->lengths[i];
        assert_true(n >= lo && n <= hi);
        for (size_t t = 0; t < n; t++) tok[t] = g->tok[i * g->T + t];
        walk w;
        int v = eval_tokens(tok, n, &w);
        if (v != g->labels[i]) fail_msg("sample %zu: label %d, evaluates to %d", i, g->labels[i], v);
        assert_true(w.max_depth <= 10);
        if (n > 1) assert_true(w.min_args >= 2 && w.max_args <= 10);
        assert_true(g->labels[i] >= 0 && g->labels[i] < 10);
        counts[g->labels[i]]++;
    }
    free(tok);
}

static void test_generate_lra(void **st) {
    (void)st;
    double sec = 0;
    gen_set g = generate(1000, 1, 500, 2000, &sec);
    print_message("generated 1000 LRA-length expressions in %.3f s\n", sec);
    size_t counts[10] = {0};
    check_task(&g, 500, 2000, counts);
    for (int c = 0; c < 10; c++) {
        if (counts[c] == 0) fail_msg("class %d never drawn in 1000 samples", c);
    }
    double mean = 0;
    for (size_t i = 0; i < g.N; i++) mean += (double)g.lengths[i];
    print_message("mean length %.0f tokens; classes", mean / (double)g.N);
    for (int c = 0; c < 10; c++) print_message(" %zu", counts[c]);
    print_message("\n");

    /* Same seed, same data; the first samples do not depend on N. */
    gen_set h = generate(100, 1, 500, 2000, NULL);
    for (size_t i = 0; i < 100; i++) {
        assert_int_equal(h.lengths[i], g.lengths[i]);
        assert_int_equal(h.labels[i], g.labels[i]);
    }
    assert_memory_equal(h.tok, g.tok, 100 * g.T);
    gen_set_free(&h);
    h = generate(100, 2, 500, 2000, NULL);
    assert_memory_not_equal(h.tok, g.tok, 100 * g.T);
    gen_set_free(&h);
    gen_set_free(&g);
}

static void test_generate_short(void **st) {
    (void)st;
    size_t counts[10] = {0};
    gen_set g = generate(1000, 7, 1, 20, NULL);
    check_task(&g, 1, 20, counts);
    size_t singles = 0;
    for (size_t i = 0; i < g.N; i++) singles += g.lengths[i] == 1;
    assert_true(singles > 0); /* a lone digit is a valid expression of length 1 */
    gen_set_free(&g);
    /* A single allowed length. */
    g = generate(50, 3, 30, 30, NULL);
    check_task(&g, 30, 30, counts);
    gen_set_free(&g);
}

static void test_generate_errors(void **st) {
    (void)st;
    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_generate_listops(10, 0, 500, 2000, NULL), ELM_E_NULL);
    assert_int_equal(elm_dataset_generate_listops(0, 0, 500, 2000, &ds), ELM_E_INVALID);
    assert_int_equal(elm_dataset_generate_listops(10, 0, 0, 2000, &ds), ELM_E_INVALID);
    assert_int_equal(elm_dataset_generate_listops(10, 0, 2001, 2000, &ds), ELM_E_INVALID);
    assert_int_equal(elm_dataset_generate_listops(10, 0, 500, 1000001, &ds), ELM_E_INVALID);
    assert_null(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_independent_evaluator),
        cmocka_unit_test(test_read_tsv),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_generate_errors),
        cmocka_unit_test(test_generate_short),
        cmocka_unit_test(test_generate_lra),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
