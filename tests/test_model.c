/* Parameters: layout, counts, names and aliases, initialisation, access. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elm.h"

static elm_model *neuronio_model(int n_m, uint64_t seed) {
    elm_config *c;
    elm_config_create(&c);
    elm_config_set(c, ELM_NUM_INPUT, 1278);
    elm_config_set(c, ELM_NUM_OUTPUT, 2);
    elm_config_set(c, ELM_NUM_MEMORY, n_m);
    elm_config_set(c, ELM_NUM_BRANCH, 45);
    elm_config_set(c, ELM_SYNAPSES_PER_BRANCH, 100);
    elm_config_set(c, ELM_ROUTING, ELM_ROUTING_NEURONIO);
    elm_config_set(c, ELM_MLP_ACTIVATION, ELM_SILU);
    elm_config_set(c, ELM_TAU_M_MAX, 150);
    elm_model *m = NULL;
    assert_int_equal(elm_model_create(c, seed, &m), ELM_OK);
    elm_config_free(c);
    return m;
}

/* The published trainable-parameter counts (model.md §6). */
static void test_trainable_counts(void **st) {
    (void)st;
    static const int n_m[] = {1, 2, 3, 5, 7, 10, 15, 20, 25, 30, 40, 50, 75, 100};
    static const size_t params[] = {4601, 4708, 4823, 5077, 5363, 5852, 6827,
                                    8002, 9377, 10952, 14702, 19252, 34127, 54002};
    for (size_t i = 0; i < sizeof n_m / sizeof *n_m; i++) {
        elm_model *m = neuronio_model(n_m[i], 1);
        size_t n;
        assert_int_equal(elm_model_size(m, ELM_SIZE_TRAINABLE, &n), ELM_OK);
        assert_int_equal(n, params[i]);
        elm_model_free(m);
    }
}

static void test_layout_and_aliases(void **st) {
    (void)st;
    elm_model *m = neuronio_model(100, 1);
    size_t nt, np, sum = 0;
    elm_model_size(m, ELM_SIZE_NUM_TENSORS, &nt);
    elm_model_size(m, ELM_SIZE_PARAMS, &np);
    assert_int_equal(nt, 9);
    static const char *names[] = {"w_s_proto", "tau_s", "tau_m_proto", "mlp.0.weight", "mlp.0.bias",
                                  "mlp.1.weight", "mlp.1.bias", "readout.weight", "readout.bias"};
    static const int64_t shapes[][2] = {{4500, 0}, {4500, 0}, {100, 0}, {200, 145}, {200, 0},
                                        {100, 200}, {100, 0}, {2, 100}, {2, 0}};
    for (size_t i = 0; i < nt; i++) {
        const char *name;
        int ndim, tr;
        int64_t sh[ELM_MAX_DIMS];
        assert_int_equal(elm_model_param_info(m, i, &name, &ndim, sh, &tr), ELM_OK);
        assert_string_equal(name, names[i]);
        assert_int_equal(sh[0], shapes[i][0]);
        assert_int_equal(sh[1], shapes[i][1]);
        assert_int_equal(tr, i != 1 && i != 2);
        sum += (size_t)sh[0] * (ndim == 2 ? (size_t)sh[1] : 1);
    }
    assert_int_equal(sum, np);
    assert_int_equal(elm_model_param_info(m, nt, NULL, NULL, NULL, NULL), ELM_E_INVALID);
    static const char *alias[][2] = {{"_proto_w_s", "w_s_proto"}, {"_proto_tau_m", "tau_m_proto"},
                                     {"mlp.network.0.weight", "mlp.0.weight"},
                                     {"mlp.network.2.bias", "mlp.1.bias"}, {"w_y.weight", "readout.weight"}};
    for (size_t i = 0; i < 5; i++) {
        int n1, n2;
        int64_t s1[4], s2[4];
        assert_int_equal(elm_model_param_shape(m, alias[i][0], &n1, s1), ELM_OK);
        assert_int_equal(elm_model_param_shape(m, alias[i][1], &n2, s2), ELM_OK);
        assert_int_equal(n1, n2);
        assert_memory_equal(s1, s2, sizeof s1);
    }
    int nd;
    int64_t sh[4];
    assert_int_equal(elm_model_param_shape(m, "tau_b", &nd, sh), ELM_E_UNKNOWN_NAME);
    assert_non_null(strstr(elm_last_error(), "tau_b"));
    elm_model_free(m);
}

static void test_init_deterministic_and_bounded(void **st) {
    (void)st;
    elm_model *a = neuronio_model(10, 42), *b = neuronio_model(10, 42), *c = neuronio_model(10, 43);
    size_t np;
    elm_model_size(a, ELM_SIZE_PARAMS, &np);
    assert_memory_equal(elm_model_params(a), elm_model_params(b), np * sizeof(float));
    assert_memory_not_equal(elm_model_params(a), elm_model_params(c), np * sizeof(float));
    /* linear layers within +-1/sqrt(fan_in), spread over the range */
    float w[20 * 55];
    assert_int_equal(elm_model_get_param(a, "mlp.0.weight", w, 20 * 55), ELM_OK);
    float bound = 1.0f / sqrtf(55.0f), lo = 1, hi = -1;
    for (int i = 0; i < 20 * 55; i++) {
        assert_true(fabsf(w[i]) <= bound);
        lo = fminf(lo, w[i]);
        hi = fmaxf(hi, w[i]);
    }
    assert_true(lo < -0.9f * bound && hi > 0.9f * bound);
    float ws[4500], tau[4500];
    elm_model_get_param(a, "w_s_proto", ws, 4500);
    elm_model_get_param(a, "tau_s", tau, 4500);
    for (int j = 0; j < 4500; j++) assert_true(ws[j] == 0.5f && tau[j] == 5.0f);
    elm_model_free(a);
    elm_model_free(b);
    elm_model_free(c);
}

/* tau_m: log-spaced, then the inverse bounded sigmoid (model.md §4). */
static void test_tau_m_init(void **st) {
    (void)st;
    elm_model *m = neuronio_model(10, 1);
    float p[10];
    elm_model_get_param(m, "tau_m_proto", p, 10);
    for (int i = 0; i < 10; i++) {
        double a = log10(1.0 + 1e-6), b = log10(150.0 - 1e-6);
        double x = pow(10.0, a + (b - a) * i / 9.0);
        double tau = 149.0 / (1.0 + exp(-(double)p[i])) + 1.0;
        assert_true(fabs(tau - x) <= 1e-4 * x);
    }
    elm_model_free(m);
    /* tau_max = 1000: 1000 - 1e-6 rounds to 1000 in float32, as in the
     * reference, so the top unit sits exactly at tau_max (+Inf proto). */
    elm_config *c;
    elm_config_create(&c);
    elm_config_set(c, ELM_NUM_INPUT, 3);
    elm_config_set(c, ELM_NUM_OUTPUT, 1);
    elm_config_set(c, ELM_NUM_MEMORY, 4);
    assert_int_equal(elm_model_create(c, 1, &m), ELM_OK);
    float q[4];
    elm_model_get_param(m, "tau_m_proto", q, 4);
    assert_true(isinf(q[3]) && q[3] > 0);
    assert_true(isfinite(q[0]) && q[0] < -10);
    elm_config_free(c);
    elm_model_free(m);
}

static void test_set_get_roundtrip_and_errors(void **st) {
    (void)st;
    elm_model *m = neuronio_model(5, 1);
    float w[2 * 5] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, back[10];
    int64_t sh[2] = {2, 5};
    assert_int_equal(elm_model_set_param(m, "w_y.weight", w, 2, sh), ELM_OK);
    assert_int_equal(elm_model_get_param(m, "readout.weight", back, 10), ELM_OK);
    assert_memory_equal(w, back, sizeof w);
    int64_t bad[2] = {5, 2};
    assert_int_equal(elm_model_set_param(m, "readout.weight", w, 2, bad), ELM_E_SHAPE);
    assert_non_null(strstr(elm_last_error(), "expects shape (2, 5), got (5, 2)"));
    int64_t flat[1] = {10};
    assert_int_equal(elm_model_set_param(m, "readout.weight", w, 1, flat), ELM_E_SHAPE);
    assert_int_equal(elm_model_get_param(m, "readout.weight", back, 9), ELM_E_SHAPE);
    assert_int_equal(elm_model_set_param(m, "nope", w, 2, sh), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_model_set_param(m, NULL, w, 2, sh), ELM_E_NULL);
    assert_int_equal(elm_model_set_param(m, "readout.weight", NULL, 2, sh), ELM_E_NULL);
    /* NaN refused anywhere, Inf refused except in tau_m_proto; unchanged */
    w[3] = NAN;
    assert_int_equal(elm_model_set_param(m, "readout.weight", w, 2, sh), ELM_E_NONFINITE);
    w[3] = INFINITY;
    assert_int_equal(elm_model_set_param(m, "readout.weight", w, 2, sh), ELM_E_NONFINITE);
    elm_model_get_param(m, "readout.weight", back, 10);
    assert_true(back[3] == 4.0f);
    float tm[5] = {0, 1, -INFINITY, INFINITY, 2};
    int64_t s5[1] = {5};
    assert_int_equal(elm_model_set_param(m, "tau_m_proto", tm, 1, s5), ELM_OK);
    tm[0] = NAN;
    assert_int_equal(elm_model_set_param(m, "tau_m_proto", tm, 1, s5), ELM_E_NONFINITE);
    /* time constants must be positive */
    float *tau = calloc(4500, sizeof *tau);
    int64_t s4500[1] = {4500};
    assert_int_equal(elm_model_set_param(m, "tau_s", tau, 1, s4500), ELM_E_INVALID);
    free(tau);
    elm_model_free(m);
}

/* The whole buffer: a round trip changes the outputs as set_param would,
 * and every refused buffer leaves the parameters and the outputs as they
 * were (the derived data is rebuilt only on success). */
static void test_set_params_whole_buffer(void **st) {
    (void)st;
    elm_model *a = neuronio_model(8, 1), *b = neuronio_model(8, 2);
    size_t n;
    assert_int_equal(elm_model_size(a, ELM_SIZE_PARAMS, &n), ELM_OK);
    float *pa = malloc(n * sizeof *pa), *keep = malloc(n * sizeof *keep);
    memcpy(pa, elm_model_params(a), n * sizeof *pa);
    memcpy(keep, elm_model_params(b), n * sizeof *keep);
    /* forward of b before and after taking a's parameters */
    enum { T = 20 };
    float *x = calloc((size_t)T * 1278, sizeof *x), ya[T * 2], yb[T * 2], y0[T * 2];
    for (size_t i = 0; i < (size_t)T * 1278; i += 97) x[i] = 1.0f;
    assert_int_equal(elm_model_forward(a, x, 1, T, ya), ELM_OK);
    assert_int_equal(elm_model_forward(b, x, 1, T, y0), ELM_OK);
    assert_memory_not_equal(ya, y0, sizeof ya);
    assert_int_equal(elm_model_set_params(b, pa, n), ELM_OK);
    assert_memory_equal(elm_model_params(b), pa, n * sizeof *pa);
    assert_int_equal(elm_model_forward(b, x, 1, T, yb), ELM_OK);
    assert_memory_equal(ya, yb, sizeof ya); /* panels and traces rebuilt */
    /* back to b's own, then refusals */
    assert_int_equal(elm_model_set_params(b, keep, n), ELM_OK);
    size_t tau_m = 0, tau_s = 0;
    for (size_t i = 0; i < 9; i++) {
        const char *name;
        int nd, tr;
        int64_t sh[ELM_MAX_DIMS];
        assert_int_equal(elm_model_param_info(b, i, &name, &nd, sh, &tr), ELM_OK);
        if (!strcmp(name, "tau_m_proto")) break;
        if (!strcmp(name, "tau_s")) tau_s = tau_m;
        tau_m += (size_t)sh[0] * (nd > 1 ? (size_t)sh[1] : 1);
    }
    float *bad = malloc(n * sizeof *bad);
    struct { size_t at; float v; int rc; const char *what; } cases[] = {
        {n - 1, NAN, ELM_E_NONFINITE, "'readout.bias'[1] is nan"},
        {n - 3, INFINITY, ELM_E_NONFINITE, "'readout.weight'"},
        {tau_s + 7, 0.0f, ELM_E_INVALID, "'tau_s'[7] = 0"},
        {tau_s + 8, -1.0f, ELM_E_INVALID, "time constants must be > 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(bad, pa, n * sizeof *bad);
        bad[cases[i].at] = cases[i].v;
        assert_int_equal(elm_model_set_params(b, bad, n), cases[i].rc);
        if (!strstr(elm_last_error(), cases[i].what)) fail_msg("%s", elm_last_error());
        assert_memory_equal(elm_model_params(b), keep, n * sizeof *keep);
        assert_int_equal(elm_model_forward(b, x, 1, T, yb), ELM_OK);
        assert_memory_equal(y0, yb, sizeof y0);
    }
    /* +Inf is a valid tau_m_proto (tau = tau_max) */
    memcpy(bad, pa, n * sizeof *bad);
    bad[tau_m] = INFINITY;
    assert_int_equal(elm_model_set_params(b, bad, n), ELM_OK);
    assert_int_equal(elm_model_set_params(b, pa, n - 1), ELM_E_SHAPE);
    assert_int_equal(elm_model_set_params(b, NULL, n), ELM_E_NULL);
    assert_int_equal(elm_model_set_params(NULL, pa, n), ELM_E_NULL);
    free(bad); free(x); free(pa); free(keep);
    elm_model_free(a);
    elm_model_free(b);
}

static void test_routing_access(void **st) {
    (void)st;
    elm_model *m = neuronio_model(5, 1);
    int64_t *idx = malloc(4500 * 8);
    uint8_t *mask = malloc(4500);
    assert_int_equal(elm_model_get_routing(m, idx, mask, 4500), ELM_OK);
    /* model.md §4: stride ceil(1278/45) = 29; branch 1 starts at window 29 */
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 639);
    assert_int_equal(idx[100], 639 + 14);
    assert_int_equal(mask[4499], 0);  /* 44*29 + 99 >= 1278 */
    assert_int_equal(idx[4499], 1277);
    assert_int_equal(elm_model_get_routing(m, idx, mask, 4499), ELM_E_SHAPE);
    idx[7] = 1278;
    assert_int_equal(elm_model_set_routing(m, idx, mask, 4500), ELM_E_INVALID);
    idx[7] = -1;
    assert_int_equal(elm_model_set_routing(m, idx, mask, 4500), ELM_E_INVALID);
    idx[7] = 3;
    mask[0] = 2;
    assert_int_equal(elm_model_set_routing(m, idx, mask, 4500), ELM_E_INVALID);
    mask[0] = 1;
    assert_int_equal(elm_model_set_routing(m, idx, mask, 4500), ELM_OK);
    free(idx);
    free(mask);
    elm_model_free(m);

    /* no routing: identity, and set_routing refused */
    elm_config *c;
    elm_config_create(&c);
    elm_config_set(c, ELM_NUM_INPUT, 4);
    elm_config_set(c, ELM_NUM_OUTPUT, 1);
    elm_model_create(c, 1, &m);
    int64_t id[4];
    uint8_t mk[4];
    assert_int_equal(elm_model_get_routing(m, id, mk, 4), ELM_OK);
    for (int j = 0; j < 4; j++) assert_true(id[j] == j && mk[j] == 1);
    assert_int_equal(elm_model_set_routing(m, id, mk, 4), ELM_E_UNSUPPORTED);
    elm_model_free(m);
    /* random routing: in range, not all equal, deterministic */
    elm_config_set(c, ELM_ROUTING, ELM_ROUTING_RANDOM);
    elm_config_set(c, ELM_NUM_BRANCH, 10);
    elm_config_set(c, ELM_SYNAPSES_PER_BRANCH, 8);
    int64_t r1[80], r2[80];
    uint8_t mm[80];
    elm_model_create(c, 5, &m);
    elm_model_get_routing(m, r1, mm, 80);
    elm_model_free(m);
    elm_model_create(c, 5, &m);
    elm_model_get_routing(m, r2, mm, 80);
    elm_model_free(m);
    assert_memory_equal(r1, r2, sizeof r1);
    int seen[4] = {0};
    for (int j = 0; j < 80; j++) {
        assert_true(r1[j] >= 0 && r1[j] < 4);
        seen[r1[j]] = 1;
    }
    assert_true(seen[0] && seen[1] && seen[2] && seen[3]);
    elm_config_free(c);
}

static void test_null_handles(void **st) {
    (void)st;
    size_t v;
    assert_int_equal(elm_model_size(NULL, ELM_SIZE_INPUT, &v), ELM_E_NULL);
    assert_int_equal(elm_model_create(NULL, 0, NULL), ELM_E_NULL);
    assert_int_equal(elm_state_create(NULL, 1, NULL), ELM_E_NULL);
    assert_int_equal(elm_state_step(NULL, NULL, NULL), ELM_E_NULL);
    assert_int_equal(elm_model_forward(NULL, NULL, 1, 1, NULL), ELM_E_NULL);
    assert_null(elm_model_params(NULL));
    assert_null(elm_model_config(NULL));
    elm_model_free(NULL);
    elm_state_free(NULL);
    elm_model *m = neuronio_model(5, 1);
    elm_state *s = (elm_state *)0x1;
    assert_int_equal(elm_state_create(m, 0, &s), ELM_E_INVALID);
    assert_int_equal(elm_state_create(m, (size_t)1 << 40, &s), ELM_E_INVALID);
    assert_true(s == (elm_state *)0x1);
    assert_int_equal(elm_model_size(m, (elm_size)99, &v), ELM_E_UNKNOWN_NAME);
    elm_model_free(m);
}

static void test_gemm_info(void **st) {
    (void)st;
    const char *info = elm_gemm_info();
    assert_non_null(info);
    print_message("gemm backend: %s\n", info);
#ifdef ELM_TEST_EXPECT_BLIS
    assert_non_null(strstr(info, "blis"));
    /* on x86-64 with AVX, libelm must never leave BLIS on generic kernels */
    assert_null(strstr(info, "kernels=generic"));
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trainable_counts),
        cmocka_unit_test(test_layout_and_aliases),
        cmocka_unit_test(test_init_deterministic_and_bounded),
        cmocka_unit_test(test_tau_m_init),
        cmocka_unit_test(test_set_get_roundtrip_and_errors),
        cmocka_unit_test(test_set_params_whole_buffer),
        cmocka_unit_test(test_routing_access),
        cmocka_unit_test(test_null_handles),
        cmocka_unit_test(test_gemm_info),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
