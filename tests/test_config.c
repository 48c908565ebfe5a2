/* Hyper-parameters: defaults, bounds, validation and names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "elm.h"

static elm_config *fresh(void) {
    elm_config *c = NULL;
    assert_int_equal(elm_config_create(&c), ELM_OK);
    assert_non_null(c);
    return c;
}

static double get(const elm_config *c, elm_param k) {
    double v = -12345;
    assert_int_equal(elm_config_get(c, k, &v), ELM_OK);
    return v;
}

static void test_defaults(void **st) {
    (void)st;
    elm_config *c = fresh();
    assert_true(get(c, ELM_FORMULATION) == ELM_V1);
    assert_true(get(c, ELM_NUM_MEMORY) == 100);
    assert_true(get(c, ELM_LAMBDA) == 5.0);
    assert_true(get(c, ELM_MLP_NUM_LAYERS) == 1);
    assert_true(get(c, ELM_MLP_HIDDEN_SIZE) == 0);
    assert_true(get(c, ELM_MLP_ACTIVATION) == ELM_RELU);
    assert_true(get(c, ELM_TAU_S) == 5.0);
    assert_true(get(c, ELM_TAU_M_MIN) == 1.0);
    assert_true(get(c, ELM_TAU_M_MAX) == 1000.0);
    assert_true(get(c, ELM_LEARN_TAU_M) == 0);
    assert_true(get(c, ELM_W_S_INIT) == 0.5);
    assert_true(get(c, ELM_SYNAPSES_PER_BRANCH) == 1);
    assert_true(get(c, ELM_ROUTING) == ELM_ROUTING_NONE);
    assert_true(get(c, ELM_DT) == 1.0);
    /* num_input / num_output are required */
    assert_int_equal(elm_config_validate(c), ELM_E_CONFIG);
    assert_non_null(strstr(elm_last_error(), "num_input"));
    elm_config_free(c);
}

static void test_set_rejects_bad_values(void **st) {
    (void)st;
    elm_config *c = fresh();
    assert_int_equal(elm_config_set(c, ELM_NUM_MEMORY, 2.5), ELM_E_INVALID);
    assert_non_null(strstr(elm_last_error(), "num_memory"));
    assert_int_equal(elm_config_set(c, ELM_NUM_MEMORY, 0), ELM_E_INVALID);
    assert_int_equal(elm_config_set(c, ELM_NUM_MEMORY, NAN), ELM_E_INVALID);
    assert_int_equal(elm_config_set(c, ELM_DT, INFINITY), ELM_E_INVALID);
    assert_int_equal(elm_config_set(c, ELM_DT, 0), ELM_E_INVALID);
    assert_int_equal(elm_config_set(c, ELM_FORMULATION, 3), ELM_E_INVALID);
    assert_int_equal(elm_config_set(c, ELM_ROUTING, 7), ELM_E_INVALID);
    assert_int_equal(elm_config_set(c, ELM_NUM_INPUT, 1e30), ELM_E_INVALID);
    assert_int_equal(elm_config_set(c, (elm_param)999, 1), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_config_set(c, (elm_param)0, 1), ELM_E_UNKNOWN_NAME);
    assert_int_equal(elm_config_set(NULL, ELM_DT, 1), ELM_E_NULL);
    /* failed sets leave the config unchanged */
    assert_true(get(c, ELM_NUM_MEMORY) == 100);
    assert_true(get(c, ELM_DT) == 1.0);
    double lo, hi;
    assert_int_equal(elm_config_bounds(ELM_FORMULATION, &lo, &hi), ELM_OK);
    assert_true(lo == 1 && hi == 2);
    assert_int_equal(elm_config_bounds((elm_param)42, &lo, &hi), ELM_E_UNKNOWN_NAME);
    elm_config_free(c);
    elm_config_free(NULL);
}

static void test_validate(void **st) {
    (void)st;
    elm_config *c = fresh();
    elm_config_set(c, ELM_NUM_INPUT, 10);
    elm_config_set(c, ELM_NUM_OUTPUT, 2);
    assert_int_equal(elm_config_validate(c), ELM_OK);
    /* n_s != n_in without routing */
    elm_config_set(c, ELM_NUM_BRANCH, 3);
    elm_config_set(c, ELM_SYNAPSES_PER_BRANCH, 5);
    assert_int_equal(elm_config_validate(c), ELM_E_CONFIG);
    assert_non_null(strstr(elm_last_error(), "without routing"));
    elm_model *m = (elm_model *)0x1;
    assert_int_equal(elm_model_create(c, 0, &m), ELM_E_CONFIG);
    assert_true(m == (elm_model *)0x1); /* untouched on failure */
    elm_config_set(c, ELM_ROUTING, ELM_ROUTING_NEURONIO);
    assert_int_equal(elm_config_validate(c), ELM_OK);
    /* neuronio routing: ceil(n_in / n_b) must be <= k */
    elm_config_set(c, ELM_SYNAPSES_PER_BRANCH, 3);
    assert_int_equal(elm_config_validate(c), ELM_E_CONFIG);
    elm_config_set(c, ELM_ROUTING, ELM_ROUTING_RANDOM);
    assert_int_equal(elm_config_validate(c), ELM_OK);
    /* tau bounds */
    elm_config_set(c, ELM_TAU_M_MIN, 50);
    elm_config_set(c, ELM_TAU_M_MAX, 50);
    assert_int_equal(elm_config_validate(c), ELM_E_CONFIG);
    assert_non_null(strstr(elm_last_error(), "memory_tau_min"));
    elm_config_free(c);
}

static void test_names(void **st) {
    (void)st;
    for (int k = ELM_FORMULATION; k <= ELM_DT; k++) {
        const char *name = elm_param_name((elm_param)k);
        assert_non_null(name);
        elm_param back;
        assert_int_equal(elm_param_from_name(name, &back), ELM_OK);
        assert_int_equal(back, k);
    }
    elm_param key;
    assert_int_equal(elm_param_from_name("tau_b_value", &key), ELM_OK);
    assert_int_equal(key, ELM_TAU_S);
    assert_int_equal(elm_param_from_name("no_such_key", &key), ELM_E_UNKNOWN_NAME);
    assert_null(elm_param_name((elm_param)77));
}

static void test_copy_is_independent(void **st) {
    (void)st;
    elm_config *a = fresh(), *b = NULL;
    elm_config_set(a, ELM_NUM_MEMORY, 7);
    assert_int_equal(elm_config_copy(a, &b), ELM_OK);
    elm_config_set(a, ELM_NUM_MEMORY, 9);
    assert_true(get(b, ELM_NUM_MEMORY) == 7);
    elm_config_free(a);
    elm_config_free(b);
}

static void test_errors_table(void **st) {
    (void)st;
    for (int code = 0; code >= ELM_E_INTERNAL; code--) {
        assert_non_null(elm_strerror(code));
        assert_string_not_equal(elm_strerror(code), "unknown status code");
    }
    assert_string_equal(elm_strerror(-1000), "unknown status code");
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", ELM_VERSION_MAJOR, ELM_VERSION_MINOR, ELM_VERSION_PATCH);
    assert_string_equal(elm_version_string(), want);
    assert_int_equal(elm_version_number(), ELM_VERSION_NUMBER);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_rejects_bad_values),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_copy_is_independent),
        cmocka_unit_test(test_errors_table),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
