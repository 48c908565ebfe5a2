/* SHD and SHD-Adding sources over small files written here in the real
 * layout (spikes/times and spikes/units as variable-length datasets,
 * labels): binning against hand-computed counts and against numpy's
 * arange/digitize rule, SHD-Adding pairs, labels and determinism, and the
 * refusal of every malformed file with the right code and the file's name
 * in the message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elm.h"

#ifdef ELM_HAVE_HDF5

#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#define UNITS 700

static char tmpdir[256];

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/elm_test_shd_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Removes the files the tests wrote (all directly in tmpdir) and tmpdir. */
static int group_teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

/* ---- writing SHD-layout files ---------------------------------------------- */

/* A file's content. Times in s, as double; the file stores them as
 * time_type (default float64). Fields beyond the first five make the file
 * malformed on purpose. */
typedef struct shd_spec {
    size_t N;
    const size_t *n;          /* (N) spikes per sample */
    const double *const *t;   /* (N) times of each sample */
    const int64_t *const *u;  /* (N) units of each sample */
    const int64_t *labels;    /* (N) */
    hid_t time_type;          /* 0: IEEE float64 */
    hid_t unit_type;          /* 0: uint16 */
    hid_t label_type;         /* 0: uint16 */
    const size_t *n_units;    /* (N) spikes in spikes/units, NULL: n */
    size_t N_units;           /* samples in spikes/units, 0: N */
    size_t N_labels;          /* samples in labels, 0: N */
    const char *omit;         /* "spikes", "spikes/times", "spikes/units" or "labels" */
    int labels_2d;            /* labels as (N, 1) */
} shd_spec;

static void write_vlen(hid_t loc, const char *name, hid_t file_base, hid_t mem_base, size_t N,
                       const size_t *n, const void *const *data) {
    hid_t ft = H5Tvlen_create(file_base), mt = H5Tvlen_create(mem_base);
    hsize_t dim = N;
    hid_t space = H5Screate_simple(1, &dim, NULL);
    hid_t ds = H5Dcreate2(loc, name, ft, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0);
    hvl_t *buf = calloc(N ? N : 1, sizeof *buf);
    for (size_t i = 0; i < N; i++) {
        buf[i].len = n[i];
        buf[i].p = (void *)data[i];
    }
    if (N) assert_true(H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    free(buf);
    H5Dclose(ds);
    H5Sclose(space);
    H5Tclose(ft);
    H5Tclose(mt);
}

static void write_labels(hid_t file, const shd_spec *s) {
    size_t N = s->N_labels ? s->N_labels : s->N;
    hsize_t dims[2] = {N, 1};
    hid_t space = H5Screate_simple(s->labels_2d ? 2 : 1, dims, NULL);
    hid_t type = s->label_type ? s->label_type : H5T_STD_U16LE;
    hid_t ds = H5Dcreate2(file, "labels", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0);
    int64_t *buf = calloc(N ? N : 1, sizeof *buf);
    for (size_t i = 0; i < N && i < s->N; i++) buf[i] = s->labels[i];
    if (N) assert_true(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    free(buf);
    H5Dclose(ds);
    H5Sclose(space);
}

/* The real files also hold extra/speaker etc.; the reader ignores them. */
static void write_extra(hid_t file, size_t N) {
    hid_t grp = H5Gcreate2(file, "extra", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dim = N;
    hid_t space = H5Screate_simple(1, &dim, NULL);
    hid_t ds = H5Dcreate2(grp, "speaker", H5T_STD_U16LE, space, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    H5Dclose(ds);
    H5Sclose(space);
    H5Gclose(grp);
}

static int omitted(const shd_spec *s, const char *name) {
    return s->omit && strcmp(s->omit, name) == 0;
}

static void write_shd(const char *path, const shd_spec *s) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(file >= 0);
    if (!omitted(s, "spikes")) {
        hid_t grp = H5Gcreate2(file, "spikes", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (!omitted(s, "spikes/times"))
            write_vlen(grp, "times", s->time_type ? s->time_type : H5T_IEEE_F64LE,
                       H5T_NATIVE_DOUBLE, s->N, s->n, (const void *const *)s->t);
        if (!omitted(s, "spikes/units"))
            write_vlen(grp, "units", s->unit_type ? s->unit_type : H5T_STD_U16LE,
                       H5T_NATIVE_INT64, s->N_units ? s->N_units : s->N,
                       s->n_units ? s->n_units : s->n, (const void *const *)s->u);
        H5Gclose(grp);
    }
    if (!omitted(s, "labels")) write_labels(file, s);
    write_extra(file, s->N);
    H5Fclose(file);
}

/* IEEE half precision as h5py stores numpy's float16. */
static hid_t float16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

/* ---- reading through the public API ---------------------------------------- */

static size_t dim(const elm_dataset *ds, elm_dataset_dim what) {
    size_t v = 0;
    assert_int_equal(elm_dataset_size(ds, what, &v), ELM_OK);
    return v;
}

/* Every sample in file order: x (N, T, 700), labels (N). */
static void read_all(elm_dataset *ds, float **x, int32_t **labels) {
    size_t N = dim(ds, ELM_DATASET_SAMPLES), T = dim(ds, ELM_DATASET_STEPS);
    assert_int_equal(dim(ds, ELM_DATASET_INPUTS), UNITS);
    assert_int_equal(dim(ds, ELM_DATASET_TARGETS), 0);
    assert_int_equal(dim(ds, ELM_DATASET_LABELS), 1);
    assert_int_equal(elm_dataset_set(ds, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    *x = malloc(N * T * UNITS * sizeof **x);
    *labels = malloc(N * sizeof **labels);
    int64_t *lengths = malloc(N * sizeof *lengths);
    assert_non_null(*x);
    size_t count = 0;
    assert_int_equal(elm_dataset_next(ds, N, *x, NULL, *labels, lengths, &count), ELM_OK);
    assert_int_equal(count, N);
    for (size_t i = 0; i < N; i++) assert_int_equal(lengths[i], (int64_t)T);
    free(lengths);
}

/* numpy's rule, written independently of lib/shd.c: the edges of
 * np.arange(0, max + step, step) are k * step for k < ceil(stop / step);
 * np.digitize(t) - 1 is the number of edges <= t minus one (binary
 * search); the last of those bins is dropped. -1: cut. */
typedef struct grid {
    double step;
    size_t n_edges;
} grid;

static grid numpy_grid(double dt_ms, double max_ms) {
    double step = dt_ms / 1000.0;
    grid g = {step, (size_t)ceil((max_ms / 1000.0 + step) / step)};
    return g;
}

static long numpy_bin(const grid *g, double t) {
    size_t lo = 0, hi = g->n_edges; /* count of edges <= t lies in [lo, hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((double)mid * g->step <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    long bin = (long)lo - 1;
    return bin < (long)g->n_edges - 1 ? bin : -1;
}

/* ---- binning ---------------------------------------------------------------- */

/* Two spikes in one bin count 2, an edge belongs to the bin it opens, the
 * last bin ends just before 1 s, later spikes are cut; numpy's own
 * results for these times (np.digitize(t, np.arange(0, 1.001, 0.001)) - 1:
 * 0.0005 -> 0, 0.001 -> 1, 0.999 -> 999, 0.9999 -> 999, 1.0 -> cut). */
static void test_hand_counts(void **state) {
    (void)state;
    static const double t0[] = {0.0005, 0.0007, 0.001, 0.999, 0.9999, 1.0, 1.5, 0.25, 0.0};
    static const int64_t u0[] = {3, 3, 3, 699, 699, 5, 6, 0, 0};
    static const double t1[] = {0.5};
    static const int64_t u1[] = {42};
    const double *t[] = {t0, t1, NULL};
    const int64_t *u[] = {u0, u1, NULL};
    size_t n[] = {9, 1, 0}; /* sample 2 has no spike: all zeros */
    int64_t labels[] = {7, 19, 0};
    shd_spec s = {.N = 3, .n = n, .t = t, .u = u, .labels = labels};
    char path[300];
    write_shd(tmp_path("hand.h5", path, sizeof path), &s);

    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_open_shd(path, 1.0, 0.0, &ds), ELM_OK);
    assert_int_equal(dim(ds, ELM_DATASET_SAMPLES), 3);
    assert_int_equal(dim(ds, ELM_DATASET_STEPS), 1000);
    float *x;
    int32_t *lab;
    read_all(ds, &x, &lab);
    assert_int_equal(lab[0], 7);
    assert_int_equal(lab[1], 19);
    assert_int_equal(lab[2], 0);

    float *want = calloc(3 * 1000 * UNITS, sizeof *want);
    want[0 * UNITS + 3] = 2;
    want[1 * UNITS + 3] = 1;
    want[999 * UNITS + 699] = 2;
    want[250 * UNITS + 0] = 1;
    want[0 * UNITS + 0] = 1;
    want[(1000 + 500) * UNITS + 42] = 1;
    for (size_t e = 0; e < 3 * 1000 * UNITS; e++)
        if (x[e] != want[e]) fail_msg("x[%zu] = %g, expected %g", e, x[e], want[e]);
    free(want);
    free(x);
    free(lab);
    elm_dataset_free(ds);
}

/* dt that does not divide 1 s: numpy's arange has ceil(1.003 / 0.003) = 335
 * edges, so 334 bins, the last [0.999, 1.002) holding 1.0 s; and a 100 ms
 * grid, where 3 * 0.1 = 0.30000000000000004 puts 0.3 s in bin 2. Expected
 * bins from numpy 1.24: np.digitize(t, np.arange(0, 1.003, 0.003)) - 1 for
 * t = 1.0, 1.0019, 1.002, 0.003, 0.006, 0.3, 0.6, 0.7, 0.99 is
 * 333, 333, 334 (cut), 1, 2, 100, 200, 233, 330; on the 100 ms grid
 * 10 (cut) x3, 0, 0, 2, 5, 6, 9. */
static void test_uneven_dt(void **state) {
    (void)state;
    static const double t0[] = {1.0, 1.0019, 1.002, 0.003, 0.006, 0.3};
    static const int64_t u0[] = {1, 1, 2, 3, 4, 5};
    static const double t1[] = {0.3, 0.6, 0.7, 0.99};
    static const int64_t u1[] = {9, 9, 9, 8};
    const double *t[] = {t0, t1};
    const int64_t *u[] = {u0, u1};
    size_t n[] = {6, 4};
    int64_t labels[] = {1, 2};
    shd_spec s = {.N = 2, .n = n, .t = t, .u = u, .labels = labels};
    char path[300];
    write_shd(tmp_path("uneven.h5", path, sizeof path), &s);

    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_open_shd(path, 3.0, 1000.0, &ds), ELM_OK);
    assert_int_equal(dim(ds, ELM_DATASET_STEPS), 334);
    float *x;
    int32_t *lab;
    read_all(ds, &x, &lab);
    assert_true(x[333 * UNITS + 1] == 2); /* 1.0 and 1.0019 s */
    assert_true(x[1 * UNITS + 3] == 1);
    assert_true(x[2 * UNITS + 4] == 1);
    assert_true(x[100 * UNITS + 5] == 1);
    const float *x1 = x + 334 * UNITS;
    assert_true(x1[100 * UNITS + 9] == 1);
    assert_true(x1[200 * UNITS + 9] == 1);
    assert_true(x1[233 * UNITS + 9] == 1);
    assert_true(x1[330 * UNITS + 8] == 1);
    float sum = 0;
    for (size_t e = 0; e < 2 * 334 * UNITS; e++) sum += x[e];
    assert_true(sum == 5 + 4); /* 1.002 s cut */
    free(x);
    free(lab);
    elm_dataset_free(ds);

    assert_int_equal(elm_dataset_open_shd(path, 100.0, 0.0, &ds), ELM_OK);
    assert_int_equal(dim(ds, ELM_DATASET_STEPS), 10);
    read_all(ds, &x, &lab);
    x1 = x + 10 * UNITS;
    assert_true(x1[2 * UNITS + 9] == 1);
    assert_true(x1[5 * UNITS + 9] == 1);
    assert_true(x1[6 * UNITS + 9] == 1);
    assert_true(x1[9 * UNITS + 8] == 1);
    assert_true(x[0 * UNITS + 3] == 1 && x[0 * UNITS + 4] == 1 && x[2 * UNITS + 5] == 1);
    sum = 0;
    for (size_t e = 0; e < 2 * 10 * UNITS; e++) sum += x[e];
    assert_true(sum == 3 + 4); /* 1.0, 1.0019 and 1.002 s cut */
    free(x);
    free(lab);
    elm_dataset_free(ds);
}

/* T as len(np.arange(0, max + step, step)) - 1, including the cases where
 * float rounding adds a bin; the pairs were computed with numpy 1.24. */
static void test_steps_match_numpy(void **state) {
    (void)state;
    static const struct {
        double dt, max;
        size_t T;
    } cases[] = {
        {1, 1000, 1000}, {2, 1000, 500}, {3, 1000, 334}, {7, 1000, 143}, {0.3, 1000, 3334},
        {100, 1000, 10}, {1000, 1000, 1}, {2000, 1000, 1}, {0.5, 2000, 4001},
        {1.4, 1400, 1000}, {0.7, 700, 1000}, {5.6, 1400, 250},
    };
    static const double t0[] = {0.1};
    static const int64_t u0[] = {0};
    const double *t[] = {t0};
    const int64_t *u[] = {u0};
    size_t n[] = {1};
    int64_t labels[] = {0};
    shd_spec s = {.N = 1, .n = n, .t = t, .u = u, .labels = labels};
    char path[300];
    write_shd(tmp_path("steps.h5", path, sizeof path), &s);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        elm_dataset *ds = NULL;
        assert_int_equal(elm_dataset_open_shd(path, cases[c].dt, cases[c].max, &ds), ELM_OK);
        if (dim(ds, ELM_DATASET_STEPS) != cases[c].T)
            fail_msg("dt %g max %g: T %zu, numpy %zu", cases[c].dt, cases[c].max,
                     dim(ds, ELM_DATASET_STEPS), cases[c].T);
        grid g = numpy_grid(cases[c].dt, cases[c].max);
        assert_int_equal(g.n_edges - 1, cases[c].T);
        elm_dataset_free(ds);
    }
}

static uint64_t rng_state = 0x5eed;
static double uniform01(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}

/* Random times, many of them exactly on an edge or one ulp either side,
 * binned by the library and by the independent numpy rule above. */
static void check_random_grid(double dt_ms, double max_ms, hid_t time_type) {
    enum { N = 4, PER = 3000 };
    grid g = numpy_grid(dt_ms, max_ms);
    size_t T = g.n_edges - 1;
    double *t[N];
    int64_t *u[N];
    size_t n[N];
    int64_t labels[N];
    for (size_t i = 0; i < N; i++) {
        n[i] = PER;
        labels[i] = (int64_t)(i * 5);
        t[i] = malloc(PER * sizeof *t[i]);
        u[i] = malloc(PER * sizeof *u[i]);
        for (size_t e = 0; e < PER; e++) {
            double r = uniform01() * 1.2 * (double)g.n_edges * g.step;
            double edge = floor(uniform01() * (double)(g.n_edges + 1)) * g.step;
            switch (e % 4) {
            case 0: t[i][e] = r; break;
            case 1: t[i][e] = edge; break;
            case 2: t[i][e] = nextafter(edge, 0); break;
            default: t[i][e] = nextafter(edge, INFINITY); break;
            }
            if (time_type == H5T_IEEE_F32LE) t[i][e] = (double)(float)t[i][e];
            u[i][e] = (int64_t)(uniform01() * UNITS);
        }
    }
    shd_spec s = {.N = N, .n = n, .t = (const double *const *)t,
                  .u = (const int64_t *const *)u, .labels = labels, .time_type = time_type};
    char path[300];
    write_shd(tmp_path("random.h5", path, sizeof path), &s);

    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_open_shd(path, dt_ms, max_ms, &ds), ELM_OK);
    assert_int_equal(dim(ds, ELM_DATASET_STEPS), T);
    float *x;
    int32_t *lab;
    read_all(ds, &x, &lab);
    float *want = calloc(N * T * UNITS, sizeof *want);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(lab[i], labels[i]);
        for (size_t e = 0; e < PER; e++) {
            long b = numpy_bin(&g, t[i][e]);
            if (b >= 0) want[(i * T + (size_t)b) * UNITS + (size_t)u[i][e]] += 1;
        }
        free(t[i]);
        free(u[i]);
    }
    for (size_t e = 0; e < N * T * UNITS; e++)
        if (x[e] != want[e])
            fail_msg("dt %g max %g: x[%zu] = %g, numpy rule %g", dt_ms, max_ms, e, x[e], want[e]);
    free(want);
    free(x);
    free(lab);
    elm_dataset_free(ds);
}

static void test_random_vs_numpy_rule(void **state) {
    (void)state;
    static const double grids[][2] = {{1, 1000}, {3, 1000}, {7, 1000}, {0.3, 1000},
                                      {100, 1000}, {0.5, 2000}, {1.4, 1400}, {25, 500}};
    for (size_t c = 0; c < sizeof grids / sizeof grids[0]; c++)
        check_random_grid(grids[c][0], grids[c][1], H5T_IEEE_F64LE);
    check_random_grid(1, 1000, H5T_IEEE_F32LE);
}

/* float32 and float16 times (h5py's layout for numpy float16) convert
 * exactly; binary fractions make the bins obvious. */
static void test_time_types(void **state) {
    (void)state;
    static const double t0[] = {0.5, 0.25, 0.125, 0.9990234375};
    static const int64_t u0[] = {10, 20, 30, 40};
    const double *t[] = {t0};
    const int64_t *u[] = {u0};
    size_t n[] = {4};
    int64_t labels[] = {3};
    hid_t f16 = float16_type();
    const hid_t types[] = {H5T_IEEE_F32LE, H5T_IEEE_F32BE, f16};
    for (size_t k = 0; k < 3; k++) {
        shd_spec s = {.N = 1, .n = n, .t = t, .u = u, .labels = labels, .time_type = types[k],
                      .unit_type = H5T_STD_I32BE, .label_type = H5T_STD_U8LE};
        char path[300];
        write_shd(tmp_path("types.h5", path, sizeof path), &s);
        elm_dataset *ds = NULL;
        assert_int_equal(elm_dataset_open_shd(path, 125.0, 0.0, &ds), ELM_OK);
        assert_int_equal(dim(ds, ELM_DATASET_STEPS), 8);
        float *x;
        int32_t *lab;
        read_all(ds, &x, &lab);
        assert_int_equal(lab[0], 3);
        assert_true(x[4 * UNITS + 10] == 1);
        assert_true(x[2 * UNITS + 20] == 1);
        assert_true(x[1 * UNITS + 30] == 1);
        assert_true(x[7 * UNITS + 40] == 1);
        free(x);
        free(lab);
        elm_dataset_free(ds);
    }
    H5Tclose(f16);
}

/* ---- SHD-Adding --------------------------------------------------------------- */

#define AN 5
#define ADT 10.0 /* ms: T = 100 */

/* Sample i: a few spikes of unit 100 + i (so a half tells its sample) and
 * a shared unit 0; labels of both languages. */
static const int64_t adding_labels[AN] = {3, 17, 9, 12, 0};

static void write_adding_file(char *path, size_t n, double t[AN][4], int64_t u[AN][4]) {
    for (size_t i = 0; i < AN; i++)
        for (size_t e = 0; e < 4; e++) {
            t[i][e] = 0.05 + 0.2 * (double)e + 0.01 * (double)i;
            u[i][e] = e == 3 ? 0 : (int64_t)(100 + i);
        }
    const double *tp[AN];
    const int64_t *up[AN];
    size_t cnt[AN];
    for (size_t i = 0; i < AN; i++) {
        tp[i] = t[i];
        up[i] = u[i];
        cnt[i] = 4;
    }
    shd_spec s = {.N = AN, .n = cnt, .t = tp, .u = up, .labels = adding_labels};
    write_shd(tmp_path("adding.h5", path, n), &s);
}

/* Which sample's binned x (T, 700) a half equals; fails if none. */
static size_t match_sample(const float *half, const float *plain, size_t T) {
    for (size_t i = 0; i < AN; i++)
        if (memcmp(half, plain + i * T * UNITS, T * UNITS * sizeof *half) == 0) return i;
    fail_msg("a half of an SHD-Adding sample matches no SHD sample");
    return 0;
}

/* One epoch of B = N samples: the (a, b) pair of each, checked. */
static void adding_epoch(elm_dataset *ds, uint64_t epoch, const float *plain, size_t T,
                         size_t N, size_t *pairs) {
    float *x = malloc(N * 2 * T * UNITS * sizeof *x);
    int32_t *lab = malloc(N * sizeof *lab);
    size_t count = 0;
    assert_int_equal(elm_dataset_start_epoch(ds, epoch), ELM_OK);
    assert_int_equal(elm_dataset_next(ds, N, x, NULL, lab, NULL, &count), ELM_OK);
    assert_int_equal(count, N);
    for (size_t r = 0; r < N; r++) {
        const float *row = x + r * 2 * T * UNITS;
        size_t a = match_sample(row, plain, T), b = match_sample(row + T * UNITS, plain, T);
        assert_int_equal(lab[r], adding_labels[a] % 10 + adding_labels[b] % 10);
        pairs[r] = a * AN + b;
    }
    free(x);
    free(lab);
}

static void test_adding(void **state) {
    (void)state;
    double t[AN][4];
    int64_t u[AN][4];
    char path[300];
    write_adding_file(path, sizeof path, t, u);

    elm_dataset *plain_ds = NULL;
    assert_int_equal(elm_dataset_open_shd(path, ADT, 0, &plain_ds), ELM_OK);
    size_t T = dim(plain_ds, ELM_DATASET_STEPS);
    assert_int_equal(T, 100);
    float *plain;
    int32_t *plain_lab;
    read_all(plain_ds, &plain, &plain_lab);
    elm_dataset_free(plain_ds);

    enum { N = 60 };
    elm_dataset *a = NULL, *b = NULL;
    assert_int_equal(elm_dataset_open_shd_adding(path, ADT, 0, N, &a), ELM_OK);
    assert_int_equal(elm_dataset_open_shd_adding(path, ADT, 0, N, &b), ELM_OK);
    assert_int_equal(dim(a, ELM_DATASET_SAMPLES), N);
    assert_int_equal(dim(a, ELM_DATASET_STEPS), 2 * T);
    assert_int_equal(dim(a, ELM_DATASET_INPUTS), UNITS);
    assert_int_equal(dim(a, ELM_DATASET_LABELS), 1);
    assert_int_equal(dim(a, ELM_DATASET_TARGETS), 0);
    assert_int_equal(elm_dataset_set(a, ELM_DATASET_SEED, 11), ELM_OK);
    assert_int_equal(elm_dataset_set(b, ELM_DATASET_SEED, 11), ELM_OK);

    size_t pa0[N], pb0[N], pa1[N], pa0_again[N];
    adding_epoch(a, 0, plain, T, N, pa0);
    adding_epoch(b, 0, plain, T, N, pb0);
    adding_epoch(a, 1, plain, T, N, pa1);
    adding_epoch(a, 0, plain, T, N, pa0_again);
    assert_memory_equal(pa0, pb0, sizeof pa0);       /* same seed and epoch */
    assert_memory_equal(pa0, pa0_again, sizeof pa0); /* repeatable */
    assert_memory_not_equal(pa0, pa1, sizeof pa0);   /* new pairs per epoch */

    /* The prefetch worker reads the same pairs. */
    elm_dataset *c = NULL;
    assert_int_equal(elm_dataset_open_shd_adding(path, ADT, 0, N, &c), ELM_OK);
    assert_int_equal(elm_dataset_set(c, ELM_DATASET_SEED, 11), ELM_OK);
    assert_int_equal(elm_dataset_set(c, ELM_DATASET_PREFETCH, 1), ELM_OK);
    size_t pc0[N];
    adding_epoch(c, 0, plain, T, N, pc0);
    assert_memory_equal(pa0, pc0, sizeof pa0);
    elm_dataset_free(c);

    /* Shuffle only reorders: the multiset of pairs of an epoch stays. */
    size_t seen[AN * AN] = {0}, seen_shuffled[AN * AN] = {0};
    assert_int_equal(elm_dataset_set(b, ELM_DATASET_SHUFFLE, 1), ELM_OK);
    size_t pb_shuffled[N];
    adding_epoch(b, 0, plain, T, N, pb_shuffled);
    for (size_t r = 0; r < N; r++) {
        seen[pa0[r]]++;
        seen_shuffled[pb_shuffled[r]]++;
    }
    assert_memory_equal(seen, seen_shuffled, sizeof seen);

    /* A different seed draws other pairs. */
    size_t pc[N];
    assert_int_equal(elm_dataset_set(b, ELM_DATASET_SEED, 12), ELM_OK);
    assert_int_equal(elm_dataset_set(b, ELM_DATASET_SHUFFLE, 0), ELM_OK);
    adding_epoch(b, 0, plain, T, N, pc);
    assert_memory_not_equal(pa0, pc, sizeof pa0);
    elm_dataset_free(a);
    elm_dataset_free(b);
    free(plain);
    free(plain_lab);
}

/* Over many draws every ordered pair occurs, including a sample with
 * itself (drawn with replacement, as the paper's rng.integers). */
static void test_adding_covers_pairs(void **state) {
    (void)state;
    double t[AN][4];
    int64_t u[AN][4];
    char path[300];
    write_adding_file(path, sizeof path, t, u);
    elm_dataset *plain_ds = NULL;
    assert_int_equal(elm_dataset_open_shd(path, 250.0, 0, &plain_ds), ELM_OK);
    float *plain;
    int32_t *plain_lab;
    read_all(plain_ds, &plain, &plain_lab);
    elm_dataset_free(plain_ds);

    enum { N = 500 };
    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_open_shd_adding(path, 250.0, 0, N, &ds), ELM_OK);
    size_t pairs[N], hits[AN * AN] = {0};
    adding_epoch(ds, 3, plain, 4, N, pairs);
    for (size_t r = 0; r < N; r++) hits[pairs[r]]++;
    for (size_t p = 0; p < AN * AN; p++)
        if (hits[p] < 5) fail_msg("pair (%zu, %zu) drawn %zu times of %d", p / AN, p % AN,
                                  hits[p], N);
    elm_dataset_free(ds);
    free(plain);
    free(plain_lab);
}

/* ---- refusals ------------------------------------------------------------------ */

/* Opening `path` fails with `code`, a message naming the file (and
 * `needle` when given), nothing printed on stderr, *out NULL, and HDF5's
 * error printing restored afterwards. */
static void expect_fail(const char *path, double dt, double max, int code, const char *needle) {
    H5E_auto2_t func_before = NULL, func_after = NULL;
    void *data_before = NULL, *data_after = NULL;
    H5Eget_auto2(H5E_DEFAULT, &func_before, &data_before);

    char err_path[300];
    tmp_path("stderr.txt", err_path, sizeof err_path);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(err_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    elm_dataset *ds = (elm_dataset *)&ds;
    int rc = elm_dataset_open_shd(path, dt, max, &ds);
    elm_dataset *ads = (elm_dataset *)&ads;
    int rc_adding = elm_dataset_open_shd_adding(path, dt, max, 10, &ads);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    struct stat st;
    assert_int_equal(stat(err_path, &st), 0);
    if (st.st_size != 0) fail_msg("%s: %lld bytes printed on stderr", path, (long long)st.st_size);

    if (rc != code)
        fail_msg("%s: returned %d, expected %d (%s)", path, rc, code, elm_last_error());
    assert_int_equal(rc_adding, code);
    assert_ptr_equal(ds, (elm_dataset *)&ds);
    assert_ptr_equal(ads, (elm_dataset *)&ads);
    const char *msg = elm_last_error();
    if (!strstr(msg, path)) fail_msg("message does not name the file: %s", msg);
    if (needle && !strstr(msg, needle)) fail_msg("message lacks '%s': %s", needle, msg);
    H5Eget_auto2(H5E_DEFAULT, &func_after, &data_after);
    assert_true(func_before == func_after && data_before == data_after);
}

/* A valid 3-sample file to break one thing at a time. */
static const double good_t0[] = {0.1, 0.2}, good_t1[] = {0.3}, good_t2[] = {0.4, 0.5, 0.6};
static const int64_t good_u0[] = {1, 2}, good_u1[] = {3}, good_u2[] = {4, 5, 6};
static const double *good_t[] = {good_t0, good_t1, good_t2};
static const int64_t *good_u[] = {good_u0, good_u1, good_u2};
static const size_t good_n[] = {2, 1, 3};
static const int64_t good_labels[] = {0, 19, 5};

static shd_spec good_spec(void) {
    shd_spec s = {.N = 3, .n = good_n, .t = good_t, .u = good_u, .labels = good_labels};
    return s;
}

static void expect_spec_fails(const char *name, const shd_spec *s, int code, const char *needle) {
    char path[300];
    write_shd(tmp_path(name, path, sizeof path), s);
    expect_fail(path, 1.0, 0.0, code, needle);
}

static void test_reject_files(void **state) {
    (void)state;
    char path[300];
    expect_fail(tmp_path("missing.h5", path, sizeof path), 1, 0, ELM_E_IO, NULL);
    expect_fail(tmpdir, 1, 0, ELM_E_IO, NULL);
    FILE *f = fopen(tmp_path("text.h5", path, sizeof path), "w");
    fputs("not an HDF5 file\n", f);
    fclose(f);
    expect_fail(path, 1, 0, ELM_E_FORMAT, "HDF5");
    f = fopen(tmp_path("empty-bytes.h5", path, sizeof path), "w");
    fclose(f);
    expect_fail(path, 1, 0, ELM_E_FORMAT, "HDF5");

    /* The good file itself opens. */
    shd_spec s = good_spec();
    write_shd(tmp_path("good.h5", path, sizeof path), &s);
    elm_dataset *ds = NULL;
    assert_int_equal(elm_dataset_open_shd(path, 1.0, 0.0, &ds), ELM_OK);
    elm_dataset_free(ds);

    /* Cut in the middle: HDF5 notices the end of file. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    char cut[300];
    tmp_path("cut.h5", cut, sizeof cut);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "head -c %lld '%s' > '%s'", (long long)st.st_size / 2, path, cut);
    assert_int_equal(system(cmd), 0);
    expect_fail(cut, 1, 0, ELM_E_TRUNCATED, NULL);
}

static void test_reject_layout(void **state) {
    (void)state;
    const char *names[] = {"spikes", "spikes/times", "spikes/units", "labels"};
    for (size_t k = 0; k < 4; k++) {
        shd_spec s = good_spec();
        s.omit = names[k];
        char file[40];
        snprintf(file, sizeof file, "omit%zu.h5", k);
        expect_spec_fails(file, &s, ELM_E_FORMAT, names[k]);
    }
    shd_spec s = good_spec();
    s.time_type = H5T_STD_I32LE;
    expect_spec_fails("int-times.h5", &s, ELM_E_FORMAT, "spikes/times");
    s = good_spec();
    s.unit_type = H5T_IEEE_F32LE;
    expect_spec_fails("float-units.h5", &s, ELM_E_FORMAT, "spikes/units");
    s = good_spec();
    s.labels_2d = 1;
    expect_spec_fails("labels-2d.h5", &s, ELM_E_FORMAT, "labels");

    s = good_spec();
    s.N_labels = 2;
    expect_spec_fails("count-labels.h5", &s, ELM_E_FORMAT, "labels");
    s = good_spec();
    s.N_units = 2;
    expect_spec_fails("count-units.h5", &s, ELM_E_FORMAT, "spikes/units");

    static const size_t n_units[] = {2, 1, 2};
    s = good_spec();
    s.n_units = n_units;
    expect_spec_fails("lengths.h5", &s, ELM_E_FORMAT, "sample 2");

    s = good_spec();
    s.N = 0;
    expect_spec_fails("no-samples.h5", &s, ELM_E_FORMAT, "no samples");
}

static void test_reject_values(void **state) {
    (void)state;
    static const int64_t unit700[] = {4, 700, 6};
    static const int64_t unit_neg[] = {4, 5, -1};
    static const double t_neg[] = {0.4, -0.001, 0.6};
    static const double t_nan[] = {0.4, 0.5, NAN};
    static const double t_inf[] = {INFINITY, 0.5, 0.6};
    static const int64_t label20[] = {0, 20, 5};
    static const int64_t label_neg[] = {0, 19, -1};
    const int64_t *u[3] = {good_u0, good_u1, unit700};
    const double *t[3] = {good_t0, good_t1, t_neg};

    shd_spec s = good_spec();
    s.u = u;
    expect_spec_fails("unit700.h5", &s, ELM_E_INVALID, "sample 2, spike 1: unit 700");
    u[2] = unit_neg;
    s.unit_type = H5T_STD_I16LE;
    expect_spec_fails("unit-neg.h5", &s, ELM_E_INVALID, "sample 2, spike 2: unit -1");

    s = good_spec();
    s.t = t;
    expect_spec_fails("t-neg.h5", &s, ELM_E_INVALID, "sample 2, spike 1");
    t[2] = t_nan;
    expect_spec_fails("t-nan.h5", &s, ELM_E_INVALID, "sample 2, spike 2");
    t[2] = t_inf;
    expect_spec_fails("t-inf.h5", &s, ELM_E_INVALID, "sample 2, spike 0");

    s = good_spec();
    s.labels = label20;
    expect_spec_fails("label20.h5", &s, ELM_E_INVALID, "sample 1: label 20");
    s.labels = label_neg;
    s.label_type = H5T_STD_I8LE;
    expect_spec_fails("label-neg.h5", &s, ELM_E_INVALID, "sample 2: label -1");
}

static void test_reject_arguments(void **state) {
    (void)state;
    char path[300];
    shd_spec s = good_spec();
    write_shd(tmp_path("args.h5", path, sizeof path), &s);
    elm_dataset *ds = (elm_dataset *)&ds;
    const double bad_dt[] = {0, -1, NAN, INFINITY};
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(elm_dataset_open_shd(path, bad_dt[k], 0, &ds), ELM_E_INVALID);
        assert_ptr_equal(ds, (elm_dataset *)&ds);
        assert_non_null(strstr(elm_last_error(), "dt_ms"));
    }
    const double bad_max[] = {-1, NAN, INFINITY};
    for (size_t k = 0; k < 3; k++) {
        assert_int_equal(elm_dataset_open_shd(path, 1, bad_max[k], &ds), ELM_E_INVALID);
        assert_non_null(strstr(elm_last_error(), "max_time_ms"));
    }
    assert_int_equal(elm_dataset_open_shd(path, 1e-300, 1000, &ds), ELM_E_LIMIT);
    assert_int_equal(elm_dataset_open_shd(path, 1e-4, 1000, &ds), ELM_E_LIMIT);
    assert_int_equal(elm_dataset_open_shd(path, 1e-320, 0, &ds), ELM_E_LIMIT);
    assert_int_equal(elm_dataset_open_shd(path, 1, 1e6 + 1, &ds), ELM_E_LIMIT);
    assert_int_equal(elm_dataset_open_shd(path, 1, 1e-20, &ds), ELM_E_INVALID);
    assert_int_equal(elm_dataset_open_shd(path, 1e300, 1000, &ds), ELM_E_INVALID);
    assert_int_equal(elm_dataset_open_shd(NULL, 1, 0, &ds), ELM_E_NULL);
    assert_int_equal(elm_dataset_open_shd(path, 1, 0, NULL), ELM_E_NULL);
    assert_int_equal(elm_dataset_open_shd_adding(path, 1, 0, 0, &ds), ELM_E_INVALID);
    assert_ptr_equal(ds, (elm_dataset *)&ds);
    assert_int_equal(elm_dataset_open_shd_adding(NULL, 1, 0, 1, &ds), ELM_E_NULL);
    assert_int_equal(elm_dataset_open_shd_adding(path, 1, 0, 1, NULL), ELM_E_NULL);
    /* 1 ms for 1000 s: a million bins, the limit, still opens. */
    assert_int_equal(elm_dataset_open_shd(path, 1, 1e6, &ds), ELM_OK);
    assert_int_equal(dim(ds, ELM_DATASET_STEPS), 1000000);
    elm_dataset_free(ds);
}

/* ---- the real files, when present --------------------------------------------- */

/* $ELM_SHD_DIR/shd_{train,test}.h5 (Cramer et al. 2020): sizes, classes,
 * and a few sanity checks on the first batch. */
static void test_real_files(void **state) {
    (void)state;
    const char *dir = getenv("ELM_SHD_DIR");
    if (!dir) {
        print_message("SKIP real SHD files: set ELM_SHD_DIR to the folder of shd_train.h5 "
                      "and shd_test.h5\n");
        skip();
    }
    static const struct {
        const char *name;
        size_t N;
    } files[] = {{"shd_train.h5", 8156}, {"shd_test.h5", 2264}};
    for (size_t k = 0; k < 2; k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, files[k].name);
        elm_dataset *ds = NULL;
        int rc = elm_dataset_open_shd(path, 10.0, 0, &ds);
        if (rc != ELM_OK) fail_msg("%s", elm_last_error());
        assert_int_equal(dim(ds, ELM_DATASET_SAMPLES), files[k].N);
        assert_int_equal(dim(ds, ELM_DATASET_STEPS), 100);
        enum { B = 32 };
        float *x = malloc((size_t)B * 100 * UNITS * sizeof *x);
        int32_t lab[B];
        size_t count = 0;
        assert_int_equal(elm_dataset_next(ds, B, x, NULL, lab, NULL, &count), ELM_OK);
        assert_int_equal(count, B);
        double total = 0;
        for (size_t e = 0; e < (size_t)B * 100 * UNITS; e++) total += x[e];
        assert_true(total > 1000.0 * B); /* thousands of spikes per digit */
        for (size_t r = 0; r < B; r++) assert_true(lab[r] >= 0 && lab[r] < 20);
        free(x);
        elm_dataset_free(ds);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_counts),
        cmocka_unit_test(test_uneven_dt),
        cmocka_unit_test(test_steps_match_numpy),
        cmocka_unit_test(test_random_vs_numpy_rule),
        cmocka_unit_test(test_time_types),
        cmocka_unit_test(test_adding),
        cmocka_unit_test(test_adding_covers_pairs),
        cmocka_unit_test(test_reject_files),
        cmocka_unit_test(test_reject_layout),
        cmocka_unit_test(test_reject_values),
        cmocka_unit_test(test_reject_arguments),
        cmocka_unit_test(test_real_files),
    };
    return cmocka_run_group_tests_name("shd", tests, group_setup, group_teardown);
}

#else /* !ELM_HAVE_HDF5 */

/* Without libhdf5 both functions refuse clearly. */
static void test_unsupported(void **state) {
    (void)state;
    elm_dataset *ds = (elm_dataset *)&ds;
    assert_int_equal(elm_dataset_open_shd("shd_train.h5", 1, 0, &ds), ELM_E_UNSUPPORTED);
    assert_ptr_equal(ds, (elm_dataset *)&ds);
    assert_non_null(strstr(elm_last_error(), "without HDF5"));
    ds = (elm_dataset *)&ds;
    assert_int_equal(elm_dataset_open_shd_adding("shd_train.h5", 1, 0, 10, &ds),
                     ELM_E_UNSUPPORTED);
    assert_ptr_equal(ds, (elm_dataset *)&ds);
    assert_non_null(strstr(elm_last_error(), "libhdf5-dev"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unsupported),
    };
    return cmocka_run_group_tests_name("shd", tests, NULL, NULL);
}

#endif
