/* Spiking Heidelberg Digits (Cramer et al. 2020) and SHD-Adding sources.
 *
 * The whole file is read, checked and binned when it is opened; a sample
 * is then kept as the list of its spikes' positions in x (bin * 700 +
 * unit, one entry per spike), so read() is a scatter of ones.
 *
 * Binning reproduces the paper's loader (numpy): the edges are
 * np.arange(0, max + step, step), i.e. k * step in double for
 * k < ceil((max + step) / step); a spike goes to bin k when
 * edge_k <= t < edge_{k + 1} (np.digitize) and the last edge's bin, which
 * holds every spike at or after it, is dropped. */
#include "source.h"

#ifdef ELM_HAVE_HDF5

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SHD_UNITS 700
#define SHD_CLASSES 20
#define SHD_MAX_BINS 1000000 /* per sample; x is (T, 700) floats */
#define SHD_DEFAULT_MAX_TIME_MS 1000.0

typedef struct shd_grid {
    double step; /* s */
    size_t T;    /* kept bins */
} shd_grid;

typedef struct shd_source {
    size_t N;         /* samples in the file */
    size_t T;         /* bins per sample */
    int64_t *offsets; /* (N + 1): sample i's spikes are [offsets[i], offsets[i + 1]) */
    uint32_t *spikes; /* (offsets[N]) bin * 700 + unit, spikes past the last bin cut */
    uint8_t *labels;  /* (N) in [0, 20) */
} shd_source;

static void shd_free(void *self) {
    shd_source *s = self;
    if (!s) return;
    free(s->offsets);
    free(s->spikes);
    free(s->labels);
    free(s);
}

/* x (T, 700) += one per spike of sample i. */
static void shd_scatter(const shd_source *s, size_t i, float *x) {
    for (int64_t e = s->offsets[i]; e < s->offsets[i + 1]; e++) x[s->spikes[e]] += 1.0f;
}

static int shd_read(void *self, size_t i, uint64_t key, float *x, float *target,
                    int32_t *labels, int64_t *length) {
    (void)key, (void)target, (void)length;
    const shd_source *s = self;
    shd_scatter(s, i, x);
    if (labels) labels[0] = s->labels[i];
    return ELM_OK;
}

/* x (2 T, 700): two samples drawn independently and uniformly from the
 * file (with replacement, as the paper's rng.integers) by key; the sum of
 * their digits, English (0-9) and German (10-19) alike. */
static int shd_adding_read(void *self, size_t i, uint64_t key, float *x, float *target,
                           int32_t *labels, int64_t *length) {
    (void)i, (void)target, (void)length;
    const shd_source *s = self;
    elm_rng rng;
    elm__rng_seed(&rng, key);
    size_t a = (size_t)elm__rng_below(&rng, s->N);
    size_t b = (size_t)elm__rng_below(&rng, s->N);
    shd_scatter(s, a, x);
    shd_scatter(s, b, x + s->T * SHD_UNITS);
    if (labels) labels[0] = s->labels[a] % 10 + s->labels[b] % 10;
    return ELM_OK;
}

static const elm__source_vt shd_vt = {"shd", shd_read, shd_free};
static const elm__source_vt shd_adding_vt = {"shd-adding", shd_adding_read, shd_free};

/* The bins of np.arange(0, max + step, step) minus the dropped last one;
 * its length is numpy's ceil((stop - start) / step), which can exceed
 * max / dt by one when float rounding makes the quotient land just past
 * an integer (max 2000 ms, dt 0.5 ms: 4001 bins). */
static int shd_grid_make(const char *fn, double dt_ms, double max_time_ms, shd_grid *g) {
    if (!isfinite(dt_ms) || dt_ms <= 0)
        return elm__fail(ELM_E_INVALID, "%s: dt_ms %g must be finite and > 0", fn, dt_ms);
    if (!isfinite(max_time_ms) || max_time_ms < 0)
        return elm__fail(ELM_E_INVALID, "%s: max_time_ms %g must be finite and >= 0 (0: 1000)",
                         fn, max_time_ms);
    if (max_time_ms == 0) max_time_ms = SHD_DEFAULT_MAX_TIME_MS;
    double step = dt_ms / 1000.0;
    double stop = max_time_ms / 1000.0 + step;
    double len = ceil(stop / step);
    if (!(len <= (double)SHD_MAX_BINS + 1))
        return elm__fail(ELM_E_LIMIT, "%s: max_time_ms %g / dt_ms %g gives more than %d bins",
                         fn, max_time_ms, dt_ms, SHD_MAX_BINS);
    if (len < 2)
        return elm__fail(ELM_E_INVALID, "%s: max_time_ms %g is too short for dt_ms %g: no bin",
                         fn, max_time_ms, dt_ms);
    g->step = step;
    g->T = (size_t)len - 1;
    return ELM_OK;
}

/* Bin of a time t (s, finite, >= 0) as np.digitize(t, edges) - 1 with
 * edges k * step; false when t is at or after edge T (cut). */
static bool shd_bin(const shd_grid *g, double t, size_t *bin) {
    if (!(t < (double)g->T * g->step)) return false;
    double q = t / g->step;
    size_t k = q < (double)g->T ? (size_t)q : g->T - 1;
    while (k > 0 && (double)k * g->step > t) k--;
    while (k + 1 < g->T && (double)(k + 1) * g->step <= t) k++;
    *bin = k;
    return true;
}

/* Samples read per H5Dread: bounds the variable-length buffers HDF5
 * allocates (a few MB for real SHD files). */
#define SHD_CHUNK 256

/* Without a thread-safe libhdf5, concurrent opens must not overlap. */
static pthread_mutex_t shd_hdf5_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct shd_loader {
    const char *fn, *path;
    shd_grid grid;
    hid_t file, times, units, labels; /* -1 when not open */
    size_t N;
    size_t cap;        /* capacity of out->spikes */
    shd_source *out;
} shd_loader;

typedef struct hdf5_reason {
    char text[160]; /* HDF5's innermost error description */
    bool truncated; /* some entry is H5E_TRUNCATED */
} hdf5_reason;

static herr_t hdf5_reason_walk(unsigned n, const H5E_error2_t *e, void *data) {
    hdf5_reason *r = data;
    if (n == 0 && e->desc) snprintf(r->text, sizeof r->text, "%s", e->desc);
    if (e->min_num == H5E_TRUNCATED) r->truncated = true;
    return 0;
}

/* What HDF5 said about its last failure on this thread. */
static hdf5_reason hdf5_last_reason(void) {
    hdf5_reason r = {"unknown HDF5 error", false};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, hdf5_reason_walk, &r);
    H5Eclear2(H5E_DEFAULT);
    return r;
}

static int shd_open_file(shd_loader *L) {
    struct stat st;
    if (stat(L->path, &st) != 0)
        return elm__fail(ELM_E_IO, "%s: %s: %s", L->fn, L->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return elm__fail(ELM_E_IO, "%s: %s: not a regular file", L->fn, L->path);
    htri_t is = H5Fis_hdf5(L->path);
    if (is < 0) {
        hdf5_reason r = hdf5_last_reason();
        return elm__fail(ELM_E_IO, "%s: %s: cannot read: %s", L->fn, L->path, r.text);
    }
    if (is == 0)
        return elm__fail(ELM_E_FORMAT, "%s: %s: not an HDF5 file", L->fn, L->path);
    L->file = H5Fopen(L->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (L->file < 0) {
        hdf5_reason r = hdf5_last_reason();
        return elm__fail(r.truncated ? ELM_E_TRUNCATED : ELM_E_IO, "%s: %s: cannot open: %s",
                         L->fn, L->path, r.text);
    }
    return ELM_OK;
}

/* Opens dataset `name` and checks that it is one-dimensional with
 * elements of class `cls` (for H5T_VLEN, of base class `base`); its
 * length goes to *n. */
static int shd_open_dataset(shd_loader *L, const char *name, H5T_class_t cls, H5T_class_t base,
                            hid_t *ds, size_t *n) {
    if (strncmp(name, "spikes/", 7) == 0 && H5Lexists(L->file, "spikes", H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return elm__fail(ELM_E_FORMAT, "%s: %s: no group 'spikes' (not an SHD file?)", L->fn,
                         L->path);
    }
    *ds = H5Dopen2(L->file, name, H5P_DEFAULT);
    if (*ds < 0) {
        hdf5_reason r = hdf5_last_reason();
        return elm__fail(ELM_E_FORMAT, "%s: %s: no dataset '%s' (not an SHD file?): %s", L->fn,
                         L->path, name, r.text);
    }
    hid_t type = H5Dget_type(*ds);
    hid_t super = cls == H5T_VLEN && type >= 0 ? H5Tget_super(type) : -1;
    bool type_ok = type >= 0 && H5Tget_class(type) == cls &&
                   (cls != H5T_VLEN || (super >= 0 && H5Tget_class(super) == base));
    if (super >= 0) H5Tclose(super);
    if (type >= 0) H5Tclose(type);
    if (!type_ok) {
        H5Eclear2(H5E_DEFAULT);
        const char *want = cls == H5T_INTEGER ? "integers"
                           : base == H5T_FLOAT ? "variable-length arrays of floats"
                                               : "variable-length arrays of integers";
        return elm__fail(ELM_E_FORMAT, "%s: %s: dataset '%s' does not hold %s", L->fn, L->path,
                         name, want);
    }
    hid_t space = H5Dget_space(*ds);
    hsize_t dims[H5S_MAX_RANK];
    int rank = space >= 0 ? H5Sget_simple_extent_dims(space, dims, NULL) : -1;
    if (space >= 0) H5Sclose(space);
    if (rank != 1) {
        H5Eclear2(H5E_DEFAULT);
        return elm__fail(ELM_E_FORMAT, "%s: %s: dataset '%s' has %d dimensions, not 1", L->fn,
                         L->path, name, rank);
    }
    *n = (size_t)dims[0];
    return ELM_OK;
}

static int shd_open_datasets(shd_loader *L) {
    size_t n_labels, n_times, n_units;
    int rc = shd_open_dataset(L, "labels", H5T_INTEGER, H5T_NO_CLASS, &L->labels, &n_labels);
    if (rc == ELM_OK)
        rc = shd_open_dataset(L, "spikes/times", H5T_VLEN, H5T_FLOAT, &L->times, &n_times);
    if (rc == ELM_OK)
        rc = shd_open_dataset(L, "spikes/units", H5T_VLEN, H5T_INTEGER, &L->units, &n_units);
    if (rc != ELM_OK) return rc;
    if (n_times != n_labels || n_units != n_labels)
        return elm__fail(ELM_E_FORMAT,
                         "%s: %s: sample counts differ: 'labels' %zu, 'spikes/times' %zu, "
                         "'spikes/units' %zu", L->fn, L->path, n_labels, n_times, n_units);
    if (n_labels == 0)
        return elm__fail(ELM_E_FORMAT, "%s: %s: the file holds no samples", L->fn, L->path);
    L->N = n_labels;
    return ELM_OK;
}

static int shd_read_labels(shd_loader *L) {
    int64_t *raw = malloc(L->N * sizeof *raw);
    L->out->labels = malloc(L->N);
    if (!raw || !L->out->labels) {
        free(raw);
        return elm__fail(ELM_E_NOMEM, "%s: %s: out of memory for %zu labels", L->fn, L->path,
                         L->N);
    }
    if (H5Dread(L->labels, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) {
        free(raw);
        hdf5_reason r = hdf5_last_reason();
        return elm__fail(ELM_E_FORMAT, "%s: %s: cannot read 'labels': %s", L->fn, L->path, r.text);
    }
    for (size_t i = 0; i < L->N; i++) {
        if (raw[i] < 0 || raw[i] >= SHD_CLASSES) {
            int64_t bad = raw[i];
            free(raw);
            return elm__fail(ELM_E_INVALID, "%s: %s: sample %zu: label %lld outside [0, %d)", L->fn,
                             L->path, i, (long long)bad, SHD_CLASSES);
        }
        L->out->labels[i] = (uint8_t)raw[i];
    }
    free(raw);
    return ELM_OK;
}

/* Room for `more` spikes after `used`. */
static int shd_reserve(shd_loader *L, size_t used, size_t more) {
    if (used + more <= L->cap) return ELM_OK;
    size_t cap = L->cap ? L->cap : 1 << 16;
    while (cap < used + more) {
        if (cap > SIZE_MAX / 2 / sizeof(uint32_t))
            return elm__fail(ELM_E_NOMEM, "%s: %s: too many spikes", L->fn, L->path);
        cap *= 2;
    }
    uint32_t *p = realloc(L->out->spikes, cap * sizeof *p);
    if (!p)
        return elm__fail(ELM_E_NOMEM, "%s: %s: out of memory for %zu spikes", L->fn, L->path, cap);
    L->out->spikes = p;
    L->cap = cap;
    return ELM_OK;
}

/* Checks sample i's spikes (times in s, units) and appends the kept ones. */
static int shd_add_sample(shd_loader *L, size_t i, const hvl_t *tv, const hvl_t *uv) {
    if (tv->len != uv->len)
        return elm__fail(ELM_E_FORMAT, "%s: %s: sample %zu has %zu spike times but %zu units",
                         L->fn, L->path, i, tv->len, uv->len);
    const double *t = tv->p;
    const int64_t *u = uv->p;
    size_t used = (size_t)L->out->offsets[i];
    int rc = shd_reserve(L, used, tv->len);
    if (rc != ELM_OK) return rc;
    for (size_t e = 0; e < tv->len; e++) {
        if (!isfinite(t[e]) || t[e] < 0)
            return elm__fail(ELM_E_INVALID, "%s: %s: sample %zu, spike %zu: time %g s is not "
                             "finite and >= 0", L->fn, L->path, i, e, t[e]);
        if (u[e] < 0 || u[e] >= SHD_UNITS)
            return elm__fail(ELM_E_INVALID, "%s: %s: sample %zu, spike %zu: unit %lld outside "
                             "[0, %d)", L->fn, L->path, i, e, (long long)u[e], SHD_UNITS);
        size_t bin;
        if (shd_bin(&L->grid, t[e], &bin))
            L->out->spikes[used++] = (uint32_t)(bin * SHD_UNITS + (size_t)u[e]);
    }
    L->out->offsets[i + 1] = (int64_t)used;
    return ELM_OK;
}

/* Every variable-length buffer HDF5 allocates while reading goes through
 * this pool and is freed after each chunk, including those a failed
 * H5Dread leaves behind unreferenced (libhdf5 1.10 loses them otherwise). */
typedef union vlen_node {
    struct {
        union vlen_node *prev, *next;
    } link;
    max_align_t align; /* the payload after the node must hold doubles */
} vlen_node;

typedef struct vlen_pool {
    vlen_node head; /* circular list sentinel */
} vlen_pool;

static void *vlen_alloc(size_t size, void *info) {
    vlen_pool *pool = info;
    vlen_node *n = malloc(sizeof *n + size);
    if (!n) return NULL;
    n->link.prev = &pool->head;
    n->link.next = pool->head.link.next;
    n->link.next->link.prev = n;
    pool->head.link.next = n;
    return n + 1;
}

static void vlen_free(void *mem, void *info) {
    (void)info;
    if (!mem) return;
    vlen_node *n = (vlen_node *)mem - 1;
    n->link.prev->link.next = n->link.next;
    n->link.next->link.prev = n->link.prev;
    free(n);
}

static void vlen_pool_clear(vlen_pool *pool) {
    while (pool->head.link.next != &pool->head) vlen_free(pool->head.link.next + 1, pool);
}

/* What reading the spikes in chunks needs. */
typedef struct shd_chunks {
    hid_t ttype, utype; /* memory types: vlen of double (s), vlen of int64 */
    hid_t dxpl;         /* transfer properties allocating from pool */
    vlen_pool pool;
    hvl_t tv[SHD_CHUNK], uv[SHD_CHUNK];
} shd_chunks;

/* Samples [start, start + count) of the variable-length dataset `name`
 * into buf (count), converted to the memory type `type`. */
static int shd_read_vlen(shd_loader *L, shd_chunks *c, hid_t ds, const char *name, hid_t type,
                         hid_t mem, size_t start, size_t count, hvl_t *buf) {
    hsize_t off = start, cnt = count;
    hid_t file_space = H5Dget_space(ds);
    herr_t st = file_space < 0 ? -1
                : H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &off, NULL, &cnt, NULL);
    if (st >= 0) st = H5Dread(ds, type, mem, file_space, c->dxpl, buf);
    hdf5_reason r = {"", false};
    if (st < 0) r = hdf5_last_reason(); /* before another call clears it */
    if (file_space >= 0) H5Sclose(file_space);
    if (st >= 0) return ELM_OK;
    return elm__fail(r.truncated ? ELM_E_TRUNCATED : ELM_E_FORMAT,
                     "%s: %s: cannot read '%s' of samples %zu..%zu: %s", L->fn, L->path, name,
                     start, start + count - 1, r.text);
}

/* Samples [start, start + count) of spikes/times and spikes/units, read
 * as double and int64 whatever their stored types, checked and binned. */
static int shd_read_chunk(shd_loader *L, shd_chunks *c, size_t start, size_t count) {
    hsize_t cnt = count;
    hid_t mem = H5Screate_simple(1, &cnt, NULL);
    if (mem < 0)
        return elm__fail(ELM_E_INTERNAL, "%s: %s: cannot create an HDF5 dataspace", L->fn, L->path);
    int rc = shd_read_vlen(L, c, L->times, "spikes/times", c->ttype, mem, start, count, c->tv);
    if (rc == ELM_OK)
        rc = shd_read_vlen(L, c, L->units, "spikes/units", c->utype, mem, start, count, c->uv);
    for (size_t j = 0; rc == ELM_OK && j < count; j++)
        rc = shd_add_sample(L, start + j, &c->tv[j], &c->uv[j]);
    vlen_pool_clear(&c->pool);
    H5Sclose(mem);
    return rc;
}

static int shd_read_spikes(shd_loader *L) {
    L->out->offsets = calloc(L->N + 1, sizeof *L->out->offsets);
    shd_chunks *c = malloc(sizeof *c);
    if (!L->out->offsets || !c) {
        free(c);
        return elm__fail(ELM_E_NOMEM, "%s: %s: out of memory for %zu samples", L->fn, L->path,
                         L->N);
    }
    c->pool.head.link.prev = c->pool.head.link.next = &c->pool.head;
    c->ttype = H5Tvlen_create(H5T_NATIVE_DOUBLE);
    c->utype = H5Tvlen_create(H5T_NATIVE_INT64);
    c->dxpl = H5Pcreate(H5P_DATASET_XFER);
    int rc = ELM_OK;
    if (c->ttype < 0 || c->utype < 0 || c->dxpl < 0 ||
        H5Pset_vlen_mem_manager(c->dxpl, vlen_alloc, &c->pool, vlen_free, &c->pool) < 0)
        rc = elm__fail(ELM_E_INTERNAL, "%s: %s: cannot set up HDF5 types", L->fn, L->path);
    for (size_t start = 0; rc == ELM_OK && start < L->N; start += SHD_CHUNK) {
        size_t count = L->N - start < SHD_CHUNK ? L->N - start : SHD_CHUNK;
        rc = shd_read_chunk(L, c, start, count);
    }
    if (c->ttype >= 0) H5Tclose(c->ttype);
    if (c->utype >= 0) H5Tclose(c->utype);
    if (c->dxpl >= 0) H5Pclose(c->dxpl);
    free(c);
    return rc;
}

static void shd_loader_close(shd_loader *L) {
    if (L->times >= 0) H5Dclose(L->times);
    if (L->units >= 0) H5Dclose(L->units);
    if (L->labels >= 0) H5Dclose(L->labels);
    if (L->file >= 0) H5Fclose(L->file);
    H5Eclear2(H5E_DEFAULT);
}

static int shd_load_file(shd_loader *L) {
    int rc = shd_open_file(L);
    if (rc == ELM_OK) rc = shd_open_datasets(L);
    if (rc == ELM_OK) rc = shd_read_labels(L);
    if (rc == ELM_OK) rc = shd_read_spikes(L);
    shd_loader_close(L);
    return rc;
}

/* Reads and bins `path` into a new source (*out, NULL on failure). HDF5's
 * own error printing is off meanwhile: the library never prints. */
static int shd_load(const char *fn, const char *path, const shd_grid *grid, shd_source **out) {
    *out = NULL;
    shd_source *s = calloc(1, sizeof *s);
    if (!s) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    shd_loader L = {fn, path, *grid, -1, -1, -1, -1, 0, 0, s};

    pthread_mutex_lock(&shd_hdf5_lock);
    H5E_auto2_t old_func = NULL;
    void *old_data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = shd_load_file(&L);
    H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
    pthread_mutex_unlock(&shd_hdf5_lock);

    if (rc != ELM_OK) {
        shd_free(s);
        return rc;
    }
    s->N = L.N;
    s->T = grid->T;
    size_t n = (size_t)s->offsets[s->N];
    if (n > 0 && n < L.cap) {
        uint32_t *p = realloc(s->spikes, n * sizeof *p);
        if (p) s->spikes = p;
    }
    *out = s;
    return ELM_OK;
}

static int shd_open(const char *fn, const char *path, double dt_ms, double max_time_ms,
                    elm_dataset **out, shd_source **src) {
    if (!out) return elm__fail(ELM_E_NULL, "%s: out is NULL", fn);
    if (!path) return elm__fail(ELM_E_NULL, "%s: path is NULL", fn);
    shd_grid grid;
    int rc = shd_grid_make(fn, dt_ms, max_time_ms, &grid);
    if (rc != ELM_OK) return rc;
    return shd_load(fn, path, &grid, src);
}

ELM_API int elm_dataset_open_shd(const char *path, double dt_ms, double max_time_ms,
                                 elm_dataset **out) {
    const char *fn = "elm_dataset_open_shd";
    shd_source *s;
    int rc = shd_open(fn, path, dt_ms, max_time_ms, out, &s);
    if (rc != ELM_OK) return rc;
    elm__source_shape shape = {s->N, s->T, SHD_UNITS, 0, 1};
    return elm__dataset_from_source(fn, &shd_vt, s, shape, out);
}

ELM_API int elm_dataset_open_shd_adding(const char *path, double dt_ms, double max_time_ms,
                                        size_t samples_per_epoch, elm_dataset **out) {
    const char *fn = "elm_dataset_open_shd_adding";
    if (samples_per_epoch == 0)
        return elm__fail(ELM_E_INVALID, "%s: samples_per_epoch must be >= 1", fn);
    shd_source *s;
    int rc = shd_open(fn, path, dt_ms, max_time_ms, out, &s);
    if (rc != ELM_OK) return rc;
    elm__source_shape shape = {samples_per_epoch, 2 * s->T, SHD_UNITS, 0, 1};
    return elm__dataset_from_source(fn, &shd_adding_vt, s, shape, out);
}

#else /* !ELM_HAVE_HDF5 */

static int shd_unsupported(const char *fn, elm_dataset **out) {
    (void)out;
    return elm__fail(ELM_E_UNSUPPORTED,
                     "%s: libelm was built without HDF5, which SHD files need "
                     "(apt-get install libhdf5-dev, then reconfigure and rebuild)", fn);
}

ELM_API int elm_dataset_open_shd(const char *path, double dt_ms, double max_time_ms,
                                 elm_dataset **out) {
    (void)path, (void)dt_ms, (void)max_time_ms;
    return shd_unsupported("elm_dataset_open_shd", out);
}

ELM_API int elm_dataset_open_shd_adding(const char *path, double dt_ms, double max_time_ms,
                                        size_t samples_per_epoch, elm_dataset **out) {
    (void)path, (void)dt_ms, (void)max_time_ms, (void)samples_per_epoch;
    return shd_unsupported("elm_dataset_open_shd_adding", out);
}

#endif
