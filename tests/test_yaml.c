/* YAML model configs: round trips, exact output, the official
 * model_config.json files, every error class with its position, buffers
 * and files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "elm.h"

static elm_config *parse(const char *yaml) {
    elm_config *c = NULL;
    int rc = elm_config_from_yaml(yaml, strlen(yaml), &c);
    if (rc != ELM_OK) print_message("unexpected failure: %s\n", elm_last_error());
    assert_int_equal(rc, ELM_OK);
    assert_non_null(c);
    return c;
}

static char *to_yaml(const elm_config *c) {
    size_t n = 0;
    assert_int_equal(elm_config_to_yaml(c, NULL, 0, &n), ELM_OK);
    char *s = malloc(n);
    assert_non_null(s);
    size_t m = 0;
    assert_int_equal(elm_config_to_yaml(c, s, n, &m), ELM_OK);
    assert_int_equal(m, n);
    assert_int_equal(strlen(s) + 1, n);
    return s;
}

static double get(const elm_config *c, elm_param k) {
    double v = -12345;
    assert_int_equal(elm_config_get(c, k, &v), ELM_OK);
    return v;
}

static void assert_same(const elm_config *a, const elm_config *b) {
    for (int k = 1; k <= ELM_DT; k++) {
        if (get(a, (elm_param)k) != get(b, (elm_param)k))
            print_message("%s: %.17g != %.17g\n", elm_param_name((elm_param)k),
                          get(a, (elm_param)k), get(b, (elm_param)k));
        assert_true(get(a, (elm_param)k) == get(b, (elm_param)k));
    }
}

/* config -> YAML -> config is the same config, and its YAML the same
 * text. */
static void check_round_trip(const elm_config *c) {
    char *y1 = to_yaml(c);
    elm_config *c2 = parse(y1);
    assert_same(c, c2);
    char *y2 = to_yaml(c2);
    assert_string_equal(y1, y2);
    free(y1);
    free(y2);
    elm_config_free(c2);
}

static void set(elm_config *c, elm_param k, double v) {
    assert_int_equal(elm_config_set(c, k, v), ELM_OK);
}

static void test_round_trip(void **st) {
    (void)st;
    elm_config *c = NULL;
    assert_int_equal(elm_config_create(&c), ELM_OK);
    check_round_trip(c); /* num_input / num_output unset */
    set(c, ELM_NUM_INPUT, 1278);
    set(c, ELM_NUM_OUTPUT, 2);
    check_round_trip(c);
    /* every key away from its default, with numbers that need all 17
     * digits, tiny and huge ones */
    set(c, ELM_FORMULATION, ELM_V2);
    set(c, ELM_NUM_MEMORY, 7);
    set(c, ELM_LAMBDA, 1.0 / 3.0);
    set(c, ELM_MLP_NUM_LAYERS, 3);
    set(c, ELM_MLP_HIDDEN_SIZE, 33);
    set(c, ELM_MLP_ACTIVATION, ELM_SILU);
    set(c, ELM_TAU_S, 1e-6);
    set(c, ELM_TAU_M_MIN, 0.1);
    set(c, ELM_TAU_M_MAX, 1e9);
    set(c, ELM_LEARN_TAU_M, 1);
    set(c, ELM_W_S_INIT, -123456.78901234567);
    set(c, ELM_NUM_BRANCH, 45);
    set(c, ELM_SYNAPSES_PER_BRANCH, 100);
    set(c, ELM_ROUTING, ELM_ROUTING_RANDOM);
    set(c, ELM_DT, 2.5e-9);
    check_round_trip(c);
    set(c, ELM_ROUTING, ELM_ROUTING_NEURONIO);
    set(c, ELM_W_S_INIT, 5e-324); /* the smallest double */
    set(c, ELM_LAMBDA, 0.1 + 0.2);
    check_round_trip(c);
    elm_config_free(c);
}

static void test_exact_output(void **st) {
    (void)st;
    elm_config *c = parse("{num_input: 1278, num_output: 2, memory_tau_max: 150, "
                          "mlp_activation: silu, num_branch: 45, num_synapse_per_branch: 100, "
                          "input_to_synapse_routing: neuronio, lambda_value: 0.001}");
    char *y = to_yaml(c);
    assert_string_equal(y, "formulation: v1\n"
                           "num_input: 1278\n"
                           "num_output: 2\n"
                           "num_memory: 100\n"
                           "lambda_value: 0.001\n"
                           "mlp_num_layers: 1\n"
                           "mlp_hidden_size: 0\n"
                           "mlp_activation: silu\n"
                           "tau_s_value: 5.0\n"
                           "memory_tau_min: 1.0\n"
                           "memory_tau_max: 150.0\n"
                           "learn_memory_tau: false\n"
                           "w_s_value: 0.5\n"
                           "num_branch: 45\n"
                           "num_synapse_per_branch: 100\n"
                           "input_to_synapse_routing: neuronio\n"
                           "delta_t: 1.0\n");
    free(y);
    set(c, ELM_LAMBDA, 1e-8);
    set(c, ELM_TAU_M_MAX, 1e9);
    set(c, ELM_W_S_INIT, -2.5e-7);
    y = to_yaml(c);
    /* floats always carry a '.', so that YAML 1.1 readers see floats */
    assert_non_null(strstr(y, "lambda_value: 1.0e-08\n"));
    assert_non_null(strstr(y, "memory_tau_max: 1000000000.0\n"));
    assert_non_null(strstr(y, "w_s_value: -2.5e-07\n"));
    free(y);
    elm_config_free(c);
}

/* Any accepted spelling reads to the same config, whose YAML is then
 * stable. */
static void test_input_forms(void **st) {
    (void)st;
    const char *forms[] = {
        /* the official JSON form: quoted keys, JSON booleans, long names */
        "{\"num_input\": 10, \"num_output\": 2, \"lambda\": 5.0, \"learn_memory_tau\": true,\n"
        " \"input_to_synapse_routing\": \"random_routing\", \"num_branch\": null,\n"
        " \"mlp_hidden_size\": null, \"dt\": 1, \"tau_b_value\": 3, \"formulation\": \"v2\"}",
        /* block style with comments, anchors, CRLF and signs */
        "# a comment\r\nnum_input: &n +10\r\nnum_output: 2   # trailing\r\n"
        "formulation: v2\r\nlearn_memory_tau: True\r\ntau_s_value: 3.\r\n"
        "input_to_synapse_routing: random\r\nnum_branch: 0\r\nmlp_hidden_size: ~\r\n",
        /* a byte order mark, document markers, quoted enum values */
        "\xEF\xBB\xBF---\nnum_input: 10\nnum_output: 2\nformulation: 'v2'\n"
        "learn_memory_tau: TRUE\ntau_b_value: .3e1\n"
        "input_to_synapse_routing: \"random\"\n...\n",
    };
    elm_config *first = NULL;
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        elm_config *c = parse(forms[i]);
        assert_true(get(c, ELM_NUM_INPUT) == 10);
        assert_true(get(c, ELM_FORMULATION) == ELM_V2);
        assert_true(get(c, ELM_LEARN_TAU_M) == 1);
        assert_true(get(c, ELM_TAU_S) == 3);
        assert_true(get(c, ELM_ROUTING) == ELM_ROUTING_RANDOM);
        assert_true(get(c, ELM_NUM_BRANCH) == 0);
        assert_true(get(c, ELM_MLP_HIDDEN_SIZE) == 0);
        check_round_trip(c);
        if (first) {
            assert_same(first, c);
            elm_config_free(c);
        } else {
            first = c;
        }
    }
    elm_config_free(first);
    /* null routing is no routing; an alias reads its anchor's value */
    elm_config *c = parse("num_memory: &m 7\nnum_branch: *m\ninput_to_synapse_routing: null\n");
    assert_true(get(c, ELM_NUM_BRANCH) == 7);
    assert_true(get(c, ELM_ROUTING) == ELM_ROUTING_NONE);
    elm_config_free(c);
}

/* Trainable parameters of the official models (model.md section 6). */
static const struct {
    int n_m;
    size_t params;
} official_sizes[] = {{1, 4601},   {2, 4708},   {3, 4823},   {5, 5077},   {7, 5363},
                      {10, 5852},  {15, 6827},  {20, 8002},  {25, 9377},  {30, 10952},
                      {40, 14702}, {50, 19252}, {75, 34127}, {100, 54002}};

static void test_official_configs(void **st) {
    (void)st;
    char shared[1024], dir[1100], path[1400];
    if (!shared_dir(shared, sizeof shared)) {
        print_message("skipped: %s/../shared is absent (set ELM_SHARED_DIR)\n", ELM_SOURCE_ROOT);
        skip();
    }
    snprintf(dir, sizeof dir, "%s/reference/elmneuron-models", shared);
    DIR *d = opendir(dir);
    if (!d) {
        print_message("skipped: %s is absent\n", dir);
        skip();
    }
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s/model_config.json", dir, e->d_name);
        if (access(path, R_OK) != 0) continue;
        elm_config *c = NULL;
        int rc = elm_config_load_yaml(path, &c);
        if (rc != ELM_OK) print_message("%s\n", elm_last_error());
        assert_int_equal(rc, ELM_OK);
        assert_true(get(c, ELM_FORMULATION) == ELM_V1);
        assert_true(get(c, ELM_NUM_INPUT) == 1278);
        assert_true(get(c, ELM_NUM_OUTPUT) == 2);
        assert_true(get(c, ELM_NUM_BRANCH) == 45);
        assert_true(get(c, ELM_SYNAPSES_PER_BRANCH) == 100);
        assert_true(get(c, ELM_ROUTING) == ELM_ROUTING_NEURONIO);
        assert_true(get(c, ELM_TAU_M_MIN) == 1.0);
        assert_true(get(c, ELM_TAU_M_MAX) == 150.0);
        assert_true(get(c, ELM_LEARN_TAU_M) == 0);
        bool best = strcmp(e->d_name, "best_elm_neuron") == 0;
        assert_true(get(c, ELM_MLP_ACTIVATION) == (best ? ELM_SILU : ELM_RELU));
        int n_m = (int)get(c, ELM_NUM_MEMORY);
        if (!best) assert_int_equal(n_m, atoi(e->d_name + strlen("num_memory_")));
        elm_model *m = NULL;
        assert_int_equal(elm_model_create(c, 0, &m), ELM_OK);
        size_t trainable = 0;
        assert_int_equal(elm_model_size(m, ELM_SIZE_TRAINABLE, &trainable), ELM_OK);
        bool found = false;
        for (size_t i = 0; i < sizeof official_sizes / sizeof *official_sizes; i++)
            if (official_sizes[i].n_m == n_m) {
                assert_int_equal(trainable, official_sizes[i].params);
                found = true;
            }
        assert_true(found);
        check_round_trip(c);
        elm_model_free(m);
        elm_config_free(c);
        count++;
    }
    closedir(d);
    assert_int_equal(count, 15);
}

/* text must fail with rc and a message containing want; *out untouched. */
static void check_error(const char *text, int rc, const char *want) {
    elm_config *sentinel = (elm_config *)&sentinel, *out = sentinel;
    int got = elm_config_from_yaml(text, strlen(text), &out);
    if (got != rc || !strstr(elm_last_error(), want))
        print_message("input:\n%s\ngot %d '%s'\nwanted %d '%s'\n", text, got, elm_last_error(),
                      rc, want);
    assert_int_equal(got, rc);
    assert_non_null(strstr(elm_last_error(), want));
    assert_ptr_equal(out, sentinel);
}

static void test_unknown_and_duplicate_keys(void **st) {
    (void)st;
    check_error("num_input: 10\nnum_memroy: 5\n", ELM_E_UNKNOWN_NAME,
                "<string>:2:1: unknown key 'num_memroy' in 'model'");
    check_error("{num_input: 10,\n   \"\": 5}", ELM_E_UNKNOWN_NAME,
                "<string>:2:4: unknown key '' in 'model'");
    check_error("\"num_input\\0x\": 5\n", ELM_E_UNKNOWN_NAME, "<string>:1:1: unknown key");
    check_error("num_memory: 5\nnum_input: 3\nnum_memory: 6\n", ELM_E_FORMAT,
                "<string>:3:1: duplicate key 'num_memory' in 'model' (first given at line 1)");
    /* one key under two names */
    check_error("tau_s_value: 5\n  \ntau_b_value: 6\n", ELM_E_FORMAT,
                "<string>:3:1: duplicate key 'tau_b_value' in 'model' (first given at line 1)");
    check_error("[num_input]: 5\n", ELM_E_FORMAT, "<string>:1:1: a key in 'model' must be a name");
}

static void test_wrong_types(void **st) {
    (void)st;
    check_error("num_input: 10\nlambda_value: fast\n", ELM_E_INVALID,
                "<string>:2:15: 'lambda_value' in 'model' must be a number, got 'fast'");
    check_error("num_memory: \"5\"\n", ELM_E_INVALID,
                "<string>:1:13: 'num_memory' in 'model' must be an integer, got the quoted "
                "string \"5\"");
    check_error("num_memory: [1, 2]\n", ELM_E_INVALID,
                "<string>:1:13: 'num_memory' in 'model' must be an integer, got a list");
    check_error("num_memory:\n  a: 1\n", ELM_E_INVALID,
                "<string>:2:3: 'num_memory' in 'model' must be an integer, got a mapping");
    check_error("num_memory: 2.5\n", ELM_E_INVALID,
                "<string>:1:13: 'num_memory' in 'model' must be an integer (digits only, no '.' "
                "or exponent), got 2.5");
    check_error("num_memory: 100.0\n", ELM_E_INVALID, "must be an integer");
    check_error("num_memory: 1e2\n", ELM_E_INVALID, "must be an integer");
    check_error("num_memory:\n", ELM_E_INVALID,
                "<string>:1:12: 'num_memory' in 'model' must be an integer, got null");
    check_error("num_memory: ~\n", ELM_E_INVALID, "got null");
    check_error("num_memory: true\n", ELM_E_INVALID, "must be an integer, got true");
    check_error("learn_memory_tau: 1\n", ELM_E_INVALID,
                "<string>:1:19: 'learn_memory_tau' in 'model' must be true or false, got 1");
    check_error("learn_memory_tau: yes\n", ELM_E_INVALID, "must be true or false, got 'yes'");
    check_error("learn_memory_tau: \"true\"\n", ELM_E_INVALID,
                "must be true or false, got the quoted string \"true\"");
    check_error("mlp_activation: tanh\n", ELM_E_INVALID,
                "<string>:1:17: 'mlp_activation' in 'model' must be relu or silu, got 'tanh'");
    check_error("formulation: 1\n", ELM_E_INVALID,
                "'formulation' in 'model' must be v1 or v2, got 1");
    check_error("input_to_synapse_routing: [none]\n", ELM_E_INVALID,
                "must be none, random, or neuronio, got a list");
    check_error("num_input: 99999999999999999999\n", ELM_E_INVALID, "is too large");
    check_error("num_input: 9007199254740993\n", ELM_E_INVALID, "is too large");
}

static void test_out_of_bounds(void **st) {
    (void)st;
    check_error("num_memory: 0\n", ELM_E_INVALID,
                "<string>:1:13: 'num_memory' in 'model' must be an integer in [1, 16777216], "
                "got 0");
    check_error("delta_t: -1\n", ELM_E_INVALID,
                "'delta_t' in 'model' must be a number in [1e-09, 1000000000], got -1");
    check_error("lambda_value: .inf\n", ELM_E_INVALID, "got .inf");
    check_error("lambda_value: .nan\n", ELM_E_INVALID, "got .nan");
    check_error("lambda_value: 1e400\n", ELM_E_INVALID, "got 1e400");
    check_error("formulation: v1\nnum_input: -5\n", ELM_E_INVALID, "<string>:2:12:");
    check_error("num_input: null\nnum_memory: null\n", ELM_E_INVALID, "<string>:2:13:");
}

static void test_malformed_documents(void **st) {
    (void)st;
    check_error("", ELM_E_FORMAT, "<string>:1:1: empty document: expected a mapping");
    check_error("# nothing but a comment\n", ELM_E_FORMAT, "empty document");
    check_error("---\n", ELM_E_FORMAT, "empty document");
    check_error("~\n", ELM_E_FORMAT, "empty document");
    check_error("- 1\n- 2\n", ELM_E_FORMAT,
                "<string>:1:1: expected a mapping of hyper-parameters at the top level, got a "
                "list");
    check_error("\n  42\n", ELM_E_FORMAT, "<string>:2:3: expected a mapping of hyper-parameters "
                "at the top level, got 42");
    check_error("num_input: 10\n---\nnum_input: 2\n", ELM_E_FORMAT,
                "<string>:2:1: a second document");
    check_error("num_input: [1, 2\n", ELM_E_FORMAT, "<string>:2:1: syntax error:");
    check_error("num_input: 1\n  num_output: 2\n", ELM_E_FORMAT,
                "<string>:2:13: syntax error: mapping values are not allowed");
    check_error("num_input: \"abc\n", ELM_E_FORMAT, "syntax error");
    check_error("num_input: !!int 5\n", ELM_E_FORMAT,
                "<string>:1:12: YAML tags are not supported");
    check_error("num_input: *nothing\n", ELM_E_FORMAT,
                "<string>:1:12: alias '*nothing' names no anchor");
    check_error("num_input: 1\nnum_output: 2\x01\n", ELM_E_FORMAT,
                "<string>:2:14: syntax error: control characters are not allowed");
    check_error("num_input: \xC3\x28\n", ELM_E_FORMAT, "<string>:1:13: syntax error: invalid");
    /* text holding a NUL is not read past it as C strings would */
    const char nul[] = "num_input: 1\0num_output: 2\n";
    elm_config *c = NULL;
    assert_int_equal(elm_config_from_yaml(nul, sizeof nul - 1, &c), ELM_E_FORMAT);
    /* nesting deeper than any config is refused before it costs */
    char deep[4000];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    check_error(deep, ELM_E_FORMAT, "nested too deeply");
}

static void test_arguments_and_buffers(void **st) {
    (void)st;
    elm_config *c = parse("num_input: 3\nnum_output: 2\n");
    size_t n = 0;
    assert_int_equal(elm_config_to_yaml(c, NULL, 0, &n), ELM_OK);
    char *buf = malloc(n);
    size_t m = 0;
    /* one byte short: refused, nothing written, size still reported */
    memset(buf, 'x', n);
    assert_int_equal(elm_config_to_yaml(c, buf, n - 1, &m), ELM_E_INVALID);
    assert_int_equal(m, n);
    assert_true(buf[0] == 'x');
    assert_int_equal(elm_config_to_yaml(c, buf, n, &m), ELM_OK);
    assert_int_equal(buf[n - 1], '\0');
    assert_int_equal(elm_config_to_yaml(c, buf, n, NULL), ELM_E_NULL);
    assert_int_equal(elm_config_to_yaml(NULL, buf, n, &m), ELM_E_NULL);
    assert_int_equal(elm_config_from_yaml(NULL, 0, &c), ELM_E_NULL);
    assert_int_equal(elm_config_from_yaml(buf, n - 1, NULL), ELM_E_NULL);
    assert_int_equal(elm_config_load_yaml(NULL, &c), ELM_E_NULL);
    assert_int_equal(elm_config_save_yaml(c, NULL), ELM_E_NULL);
    /* len limits the text: the rest is not read */
    elm_config *d = NULL;
    assert_int_equal(elm_config_from_yaml(buf, strlen("formulation: v1\n"), &d), ELM_OK);
    assert_true(get(d, ELM_NUM_INPUT) == 0);
    elm_config_free(d);
    free(buf);
    elm_config_free(c);
}

static char *make_temp_dir(void) {
    char *dir = strdup("/tmp/elm_yaml_XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void test_files(void **st) {
    (void)st;
    char *dir = make_temp_dir();
    char path[512], bad[600];
    snprintf(path, sizeof path, "%s/model.yaml", dir);
    elm_config *c = parse("num_input: 8\nnum_output: 3\nw_s_value: 0.25\n");
    assert_int_equal(elm_config_save_yaml(c, path), ELM_OK);
    elm_config *d = NULL;
    assert_int_equal(elm_config_load_yaml(path, &d), ELM_OK);
    assert_same(c, d);
    elm_config_free(d);
    /* saving again replaces the file, leaving no temporary behind */
    set(c, ELM_NUM_MEMORY, 9);
    assert_int_equal(elm_config_save_yaml(c, path), ELM_OK);
    assert_int_equal(count_entries(dir), 1);
    assert_int_equal(elm_config_load_yaml(path, &d), ELM_OK);
    assert_true(get(d, ELM_NUM_MEMORY) == 9);
    elm_config_free(d);
    /* errors in a file name the file */
    FILE *f = fopen(path, "w");
    fputs("num_input: 8\n\nnum_outptu: 3\n", f);
    fclose(f);
    d = NULL;
    assert_int_equal(elm_config_load_yaml(path, &d), ELM_E_UNKNOWN_NAME);
    snprintf(bad, sizeof bad, "%s:3:1: unknown key 'num_outptu' in 'model'", path);
    assert_string_equal(elm_last_error(), bad);
    assert_null(d);
    /* missing files, directories, unwritable places */
    snprintf(bad, sizeof bad, "%s/absent.yaml", dir);
    assert_int_equal(elm_config_load_yaml(bad, &d), ELM_E_IO);
    assert_non_null(strstr(elm_last_error(), "absent.yaml"));
    assert_int_equal(elm_config_load_yaml(dir, &d), ELM_E_IO);
    snprintf(bad, sizeof bad, "%s/no/such/dir/model.yaml", dir);
    assert_int_equal(elm_config_save_yaml(c, bad), ELM_E_IO);
    assert_int_equal(count_entries(dir), 1);
    unlink(path);
    rmdir(dir);
    free(dir);
    elm_config_free(c);
}

/* A host program's locale must not change how numbers read or print. */
static void test_locale(void **st) {
    (void)st;
    const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "de_DE"};
    const char *found = NULL;
    for (size_t i = 0; i < sizeof names / sizeof *names && !found; i++)
        if (setlocale(LC_NUMERIC, names[i])) found = names[i];
    if (!found) {
        print_message("skipped: no locale with a decimal comma is installed\n");
        skip();
    }
    elm_config *c = parse("num_input: 2\nnum_output: 2\nw_s_value: 0.25\n");
    char *y = to_yaml(c);
    setlocale(LC_NUMERIC, "C");
    assert_true(get(c, ELM_W_S_INIT) == 0.25);
    assert_non_null(strstr(y, "w_s_value: 0.25\n"));
    free(y);
    elm_config_free(c);
}

/* The public view of the tables: every model key has a type, enum names
 * round-trip through the functions and through YAML, and the errors say
 * what is wrong. */
static void test_param_types_and_names(void **st) {
    (void)st;
    elm_value_type t;
    int v;
    for (int k = 1; k <= 17; k++) {
        assert_int_equal(elm_param_type((elm_param)k, &t), ELM_OK);
        assert_true(t == ELM_VALUE_NUMBER || t == ELM_VALUE_INTEGER || t == ELM_VALUE_BOOL ||
                    t == ELM_VALUE_ENUM);
        double lo, hi;
        assert_int_equal(elm_config_bounds((elm_param)k, &lo, &hi), ELM_OK);
        if (t != ELM_VALUE_ENUM) {
            assert_null(elm_param_value_name((elm_param)k, 0));
            assert_int_equal(elm_param_value_from_name((elm_param)k, "x", &v), ELM_E_INVALID);
            continue;
        }
        /* every value in bounds has a name that maps back to it, and a
         * config set to it writes that name */
        for (int val = (int)lo; val <= (int)hi; val++) {
            const char *name = elm_param_value_name((elm_param)k, val);
            assert_non_null(name);
            assert_int_equal(elm_param_value_from_name((elm_param)k, name, &v), ELM_OK);
            assert_int_equal(v, val);
            elm_config *c;
            assert_int_equal(elm_config_create(&c), ELM_OK);
            assert_int_equal(elm_config_set(c, (elm_param)k, val), ELM_OK);
            char buf[4096], line[128];
            size_t n;
            assert_int_equal(elm_config_to_yaml(c, buf, sizeof buf, &n), ELM_OK);
            snprintf(line, sizeof line, "%s: %s\n", elm_param_name((elm_param)k), name);
            if (!strstr(buf, line)) fail_msg("'%s' not in:\n%s", line, buf);
            elm_config_free(c);
        }
        assert_null(elm_param_value_name((elm_param)k, (int)hi + 1));
    }
    assert_int_equal(elm_param_type(ELM_MLP_ACTIVATION, &t), ELM_OK);
    assert_int_equal(t, ELM_VALUE_ENUM);
    assert_int_equal(elm_param_type(ELM_LEARN_TAU_M, &t), ELM_OK);
    assert_int_equal(t, ELM_VALUE_BOOL);
    assert_int_equal(elm_param_type(ELM_NUM_MEMORY, &t), ELM_OK);
    assert_int_equal(t, ELM_VALUE_INTEGER);
    assert_int_equal(elm_param_type(ELM_DT, &t), ELM_OK);
    assert_int_equal(t, ELM_VALUE_NUMBER);
    assert_string_equal(elm_param_value_name(ELM_ROUTING, ELM_ROUTING_NEURONIO), "neuronio");
    assert_int_equal(elm_param_value_from_name(ELM_ROUTING, "neuronio_routing", &v), ELM_OK);
    assert_int_equal(v, ELM_ROUTING_NEURONIO);
    assert_int_equal(elm_param_value_from_name(ELM_MLP_ACTIVATION, "tanh", &v), ELM_E_UNKNOWN_NAME);
    assert_non_null(strstr(elm_last_error(), "relu or silu"));
    assert_int_equal(elm_param_type((elm_param)0, &t), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_param_type((elm_param)18, &t), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_param_type(ELM_DT, NULL), ELM_E_NULL);
    assert_null(elm_param_value_name((elm_param)99, 0));
    assert_int_equal(elm_param_value_from_name((elm_param)99, "v1", &v), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_param_value_from_name(ELM_FORMULATION, NULL, &v), ELM_E_NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_param_types_and_names),
        cmocka_unit_test(test_exact_output),
        cmocka_unit_test(test_input_forms),
        cmocka_unit_test(test_official_configs),
        cmocka_unit_test(test_unknown_and_duplicate_keys),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_out_of_bounds),
        cmocka_unit_test(test_malformed_documents),
        cmocka_unit_test(test_arguments_and_buffers),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_locale),
    };
    return cmocka_run_group_tests_name("yaml", tests, NULL, NULL);
}
