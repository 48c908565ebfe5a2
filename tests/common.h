/* Helpers shared by the tests: .npy reading, fixture paths, and a naive
 * double-precision ELM written straight from model.md as an independent
 * reference. */
#ifndef ELM_TEST_COMMON_H
#define ELM_TEST_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "elm.h"

typedef struct npy {
    char dtype;      /* 'f' float32, 'i' int64, 'b' bool */
    int ndim;
    int64_t shape[8];
    size_t numel;
    void *data;
} npy;

/* Returns 0 on success; the array is freed with npy_free. */
int npy_load(const char *path, npy *out);
void npy_free(npy *a);

/* Directory of a fixture case: tests/data/<name> for the small cases,
 * ../shared/reference/fixtures/<name> otherwise; NULL if absent. */
const char *fixture_dir(const char *name, char *buf, size_t n);
/* ../shared, from ELM_SHARED_DIR or relative to the source tree; NULL if
 * absent. */
const char *shared_dir(char *buf, size_t n);

/* Build a model from a fixture's config.json (a tiny JSON subset) and load
 * every param.*.npy into it. Returns NULL (with a message) on failure. */
elm_model *fixture_model(const char *dir);

/* Naive reference: y (B, T, n_out) in double precision, following model.md
 * literally (per-synapse traces, concat, MLP, custom tanh). Also fills the
 * optional traces like elm_state_forward_traced. */
void naive_forward(const elm_model *m, const float *x, size_t B, size_t T, double *y,
                   double *syn, double *branch, double *mem);

/* Fails the running cmocka test unless |a - b| <= tol (1 + |b|) for every
 * element; the message names `what`, the worst element and both values. */
void assert_close_f(const float *a, const float *b, size_t n, double tol, const char *what);

/* Dense rows x (rows, n_in) as CSR events (the input of the *_events
 * calls): CSR_INCREASING lists each row's non-zeros by channel,
 * CSR_REVERSED backwards, CSR_SPLIT twice as two halves (exact in float),
 * the second halves after all the first. malloc'd; free with csr_free. */
typedef struct csr {
    int64_t *off; /* (rows + 1) */
    int32_t *ch;  /* (nnz) */
    float *val;   /* (nnz) */
} csr;
enum { CSR_INCREASING, CSR_REVERSED, CSR_SPLIT };
csr csr_from_dense(const float *x, size_t rows, int n_in, int order);
void csr_free(csr *c);

/* Fill with uniform values in [lo, hi) from a simple seeded generator. */
void fill_uniform(float *a, size_t n, float lo, float hi, uint64_t *seed);

/* A random model of the given shape (w_s partly negative; with spread_tau,
 * v1 time constants differ within branches) and a sparse random input. */
typedef struct spec {
    int version, act, n_in, n_out, n_m, L, H, n_b, k, routing;
    double dt, tau_min, tau_max, lambda;
    bool spread_tau; /* make tau_s differ within branches: per-synapse path */
    size_t B, T;
    float density;   /* fraction of non-zero inputs */
} spec;
elm_model *make_model(const spec *p, uint64_t seed);
float *make_input(const spec *p, uint64_t seed); /* (B, T, n_in), malloc'd */

#endif
