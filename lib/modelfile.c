/* .elm model files (docs/file-format.md): the container's writer and
 * validating reader, the model sections, and atomic whole-file I/O. */
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const unsigned char MAGIC[8] = {0x89, 'E', 'L', 'M', '\r', '\n', 0x1A, '\n'};

/* ---- writer ------------------------------------------------------------ */

void elm__w_bytes(elm_writer *w, const void *p, size_t n) {
    if (w->buf && n) memcpy(w->buf + w->n, p, n);
    w->n += n;
}

static void put_u32(unsigned char *d, uint32_t v) {
    for (int i = 0; i < 4; i++) d[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *d, uint64_t v) {
    for (int i = 0; i < 8; i++) d[i] = (unsigned char)(v >> (8 * i));
}

void elm__w_u32(elm_writer *w, uint32_t v) {
    unsigned char b[4];
    put_u32(b, v);
    elm__w_bytes(w, b, 4);
}

void elm__w_u64(elm_writer *w, uint64_t v) {
    unsigned char b[8];
    put_u64(b, v);
    elm__w_bytes(w, b, 8);
}

void elm__w_f64(elm_writer *w, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    elm__w_u64(w, u);
}

static void w_f32s(elm_writer *w, const float *v, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, v + i, 4);
        elm__w_u32(w, u);
    }
#else
    elm__w_bytes(w, v, n * sizeof(float));
#endif
}

static void w_zeros(elm_writer *w, size_t n) {
    if (w->buf) memset(w->buf + w->n, 0, n);
    w->n += n;
}

void elm__w_name(elm_writer *w, const char *s, size_t width) {
    size_t len = strlen(s);
    if (len >= width) len = width - 1; /* names are internal and short */
    elm__w_bytes(w, s, len);
    w_zeros(w, width - len);
}

void elm__w_header(elm_writer *w) {
    elm__w_bytes(w, MAGIC, 8);
    unsigned char b[4] = {ELM_FORMAT_MAJOR, 0, ELM_FORMAT_MINOR, 0};
    elm__w_bytes(w, b, 4);
    elm__w_u32(w, 0);
    elm__w_u64(w, 0); /* file size, set by elm__w_finish */
}

size_t elm__w_begin(elm_writer *w, const char tag[4], uint32_t flags) {
    size_t start = w->n;
    elm__w_bytes(w, tag, 4);
    elm__w_u32(w, flags);
    elm__w_u64(w, 0);
    return start;
}

void elm__w_end(elm_writer *w, size_t start) {
    size_t len = w->n - start - ELM_SECTION_HEADER;
    if (w->buf) put_u64(w->buf + start + 8, len);
    w_zeros(w, (8 - w->n % 8) % 8);
}

void elm__w_finish(elm_writer *w) {
    size_t end = w->n;
    if (w->buf) put_u64(w->buf + 16, end + ELM_END_BYTES);
    uint32_t crc = w->buf ? elm__crc32(0, w->buf, end) : 0;
    size_t s = elm__w_begin(w, "END ", ELM_SEC_REQUIRED);
    elm__w_u32(w, crc);
    elm__w_u32(w, 0);
    elm__w_end(w, s);
}

void elm__w_tensors(elm_writer *w, const char tag[4], uint32_t flags, const elm_model *m,
                    const float *params) {
    size_t s = elm__w_begin(w, tag, flags);
    elm__w_u32(w, (uint32_t)m->n_tensors);
    elm__w_u32(w, 0);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const elm_tensor *t = &m->tensors[i];
        elm__w_name(w, t->name, ELM_TNAME_BYTES);
        elm__w_u32(w, 1); /* f32 */
        elm__w_u32(w, (uint32_t)t->ndim);
        for (int d = 0; d < ELM_MAX_DIMS; d++) elm__w_u64(w, d < t->ndim ? (uint64_t)t->shape[d] : 0);
        w_f32s(w, params + t->offset, t->numel);
        w_zeros(w, (8 - w->n % 8) % 8);
    }
    elm__w_end(w, s);
}

void elm__w_model(elm_writer *w, const elm_model *m) {
    size_t s = elm__w_begin(w, "CONF", ELM_SEC_REQUIRED);
    elm__w_u32(w, ELM_PARAM_LAST);
    elm__w_u32(w, 0);
    for (int k = 1; k <= ELM_PARAM_LAST; k++) {
        elm__w_name(w, elm_param_name((elm_param)k), ELM_NAME_BYTES);
        elm__w_f64(w, m->cfg.v[k]);
    }
    elm__w_end(w, s);
    if (m->cfg.v[ELM_ROUTING] != ELM_ROUTING_NONE) {
        s = elm__w_begin(w, "ROUT", ELM_SEC_REQUIRED);
        elm__w_u64(w, (uint64_t)m->n_s);
        for (int j = 0; j < m->n_s; j++) elm__w_u32(w, (uint32_t)(int32_t)m->route_idx[j]);
        elm__w_bytes(w, m->route_mask, (size_t)m->n_s);
        elm__w_end(w, s);
    }
    elm__w_tensors(w, "TENS", ELM_SEC_REQUIRED, m, m->params);
    if (m->n_meta) {
        s = elm__w_begin(w, "META", 0);
        elm__w_u32(w, (uint32_t)m->n_meta);
        elm__w_u32(w, 0);
        for (size_t i = 0; i < m->n_meta; i++) {
            size_t e = w->n, kl = strlen(m->meta[i].key), vl = strlen(m->meta[i].value);
            elm__w_u32(w, (uint32_t)kl);
            elm__w_u32(w, (uint32_t)vl);
            elm__w_bytes(w, m->meta[i].key, kl);
            elm__w_bytes(w, m->meta[i].value, vl);
            w_zeros(w, (8 - (w->n - e) % 8) % 8);
        }
        elm__w_end(w, s);
    }
}

int elm__serialise(elm_write_fn write, const void *obj, void *dst, size_t capacity, size_t *size,
                   const char *fn) {
    elm_writer count = {0};
    write(&count, obj);
    *size = count.n;
    if (!dst) return ELM_OK;
    if (capacity < count.n)
        return elm__fail(ELM_E_INVALID, "%s: the file needs %zu bytes, dst holds %zu", fn, count.n,
                         capacity);
    elm_writer w = {dst, capacity, 0};
    write(&w, obj);
    return ELM_OK;
}

int elm__save_path(elm_write_fn write, const void *obj, const char *path, const char *fn) {
    size_t n;
    elm__serialise(write, obj, NULL, 0, &n, fn);
    void *buf = malloc(n);
    if (!buf) return elm__fail(ELM_E_NOMEM, "%s: out of memory for %zu bytes", fn, n);
    int rc = elm__serialise(write, obj, buf, n, &n, fn);
    if (rc == ELM_OK) rc = elm__write_file_atomic(path, buf, n, fn);
    free(buf);
    return rc;
}

/* ---- reader ------------------------------------------------------------ */

static uint32_t get_u32(const unsigned char *s) {
    return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
}

static uint64_t get_u64(const unsigned char *s) {
    return (uint64_t)get_u32(s) | (uint64_t)get_u32(s + 4) << 32;
}

bool elm__r_left(const elm_reader *r, size_t n) { return r->n - r->pos >= n; }

/* Callers check elm__r_left first; reading past the end yields zeros. */
uint32_t elm__r_u32(elm_reader *r) {
    if (!elm__r_left(r, 4)) return 0;
    uint32_t v = get_u32(r->p + r->pos);
    r->pos += 4;
    return v;
}

uint64_t elm__r_u64(elm_reader *r) {
    if (!elm__r_left(r, 8)) return 0;
    uint64_t v = get_u64(r->p + r->pos);
    r->pos += 8;
    return v;
}

double elm__r_f64(elm_reader *r) {
    uint64_t u = elm__r_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

bool elm__r_name(elm_reader *r, size_t width, const char **name) {
    if (!elm__r_left(r, width)) return false;
    const char *s = (const char *)r->p + r->pos;
    r->pos += width;
    *name = s;
    return memchr(s, '\0', width) != NULL;
}

static const char *const KNOWN[] = {"CONF", "ROUT", "TENS", "META", "OPTM", "TRNR", "BEST"};

static bool known_tag(const char *tag) {
    for (size_t i = 0; i < sizeof KNOWN / sizeof *KNOWN; i++)
        if (memcmp(tag, KNOWN[i], 4) == 0) return true;
    return false;
}

int elm__file_parse(const void *src, size_t size, const char *fn, elm_file *f) {
    const unsigned char *b = src;
    f->n = 0;
    if (size < ELM_HEADER_BYTES)
        return elm__fail(ELM_E_TRUNCATED, "%s: %zu bytes are too few for a .elm file (the header "
                                          "alone has %d)", fn, size, ELM_HEADER_BYTES);
    if (memcmp(b, MAGIC, 8) != 0)
        return elm__fail(ELM_E_FORMAT, "%s: not a .elm file (bad magic)", fn);
    unsigned major = b[8] | b[9] << 8, minor = b[10] | b[11] << 8;
    if (major > ELM_FORMAT_MAJOR)
        return elm__fail(ELM_E_VERSION, "%s: format %u.%u needs a newer libelm (this one reads "
                                        "%d.x)", fn, major, minor, ELM_FORMAT_MAJOR);
    if (major != ELM_FORMAT_MAJOR)
        return elm__fail(ELM_E_FORMAT, "%s: format version %u.%u does not exist", fn, major, minor);
    uint64_t fsize = get_u64(b + 16);
    if (fsize > ELM_FILE_LIMIT)
        return elm__fail(ELM_E_LIMIT, "%s: the header declares %llu bytes, beyond the 2^40 limit",
                         fn, (unsigned long long)fsize);
    if (fsize > size)
        return elm__fail(ELM_E_TRUNCATED, "%s: truncated: the header declares %llu bytes, the data "
                                          "has %zu", fn, (unsigned long long)fsize, size);
    if (fsize < size)
        return elm__fail(ELM_E_FORMAT, "%s: %zu bytes follow the declared end of the file", fn,
                         size - (size_t)fsize);
    if (size < ELM_HEADER_BYTES + ELM_END_BYTES || size % 8 != 0)
        return elm__fail(ELM_E_FORMAT, "%s: a file of %zu bytes cannot hold its END section", fn,
                         size);
    const unsigned char *end = b + size - ELM_END_BYTES;
    if (memcmp(end, "END ", 4) != 0 || get_u64(end + 8) != 8)
        return elm__fail(ELM_E_FORMAT, "%s: the file does not close with its END section", fn);
    uint32_t stored = get_u32(end + 16), actual = elm__crc32(0, b, size - ELM_END_BYTES);
    if (stored != actual)
        return elm__fail(ELM_E_CHECKSUM, "%s: checksum mismatch (stored CRC-32 %08x, computed "
                                         "%08x): the file is damaged", fn, stored, actual);
    size_t pos = ELM_HEADER_BYTES, stop = size - ELM_END_BYTES;
    while (pos < stop) {
        if (stop - pos < ELM_SECTION_HEADER)
            return elm__fail(ELM_E_FORMAT, "%s: %zu stray bytes before END", fn, stop - pos);
        const unsigned char *h = b + pos;
        char tag[5] = {(char)h[0], (char)h[1], (char)h[2], (char)h[3], 0};
        for (int i = 0; i < 4; i++)
            if (h[i] < 0x20 || h[i] > 0x7E)
                return elm__fail(ELM_E_FORMAT, "%s: a section at byte %zu has a non-ASCII tag", fn,
                                 pos);
        uint32_t flags = get_u32(h + 4);
        uint64_t len = get_u64(h + 8), room = stop - pos - ELM_SECTION_HEADER;
        if (len > room)
            return elm__fail(ELM_E_LIMIT, "%s: section '%s' declares %llu bytes, only %llu remain",
                             fn, tag, (unsigned long long)len, (unsigned long long)room);
        size_t next = pos + ELM_SECTION_HEADER + (size_t)len;
        next += (8 - next % 8) % 8;
        if (next > stop)
            return elm__fail(ELM_E_FORMAT, "%s: section '%s' overlaps the END section", fn, tag);
        if (!known_tag(tag)) {
            if (flags & ELM_SEC_REQUIRED)
                return elm__fail(ELM_E_VERSION, "%s: required section '%s' is unknown to this "
                                                "libelm (written by a newer version)", fn, tag);
        } else {
            if (elm__file_find(f, tag))
                return elm__fail(ELM_E_FORMAT, "%s: section '%s' appears twice", fn, tag);
            if (f->n == ELM_MAX_SECTIONS)
                return elm__fail(ELM_E_LIMIT, "%s: more than %d sections", fn, ELM_MAX_SECTIONS);
            elm_section *s = &f->s[f->n++];
            memcpy(s->tag, tag, 5);
            s->flags = flags;
            s->p = h + ELM_SECTION_HEADER;
            s->n = (size_t)len;
        }
        pos = next;
    }
    return ELM_OK;
}

const elm_section *elm__file_find(const elm_file *f, const char *tag) {
    for (size_t i = 0; i < f->n; i++)
        if (memcmp(f->s[i].tag, tag, 4) == 0) return &f->s[i];
    return NULL;
}

static int read_conf(const elm_section *s, const char *fn, elm_config *cfg) {
    elm_reader r = {s->p, s->n, 0};
    uint32_t count = elm__r_u32(&r);
    elm__r_u32(&r);
    if (s->n < 8 || (s->n - 8) / 40 != count || (s->n - 8) % 40)
        return elm__fail(ELM_E_FORMAT, "%s: CONF holds %zu bytes, not 8 + 40 x %u entries", fn,
                         s->n, count);
    bool seen[ELM_PARAM_LAST + 1] = {false};
    for (uint32_t i = 0; i < count; i++) {
        const char *name;
        if (!elm__r_name(&r, ELM_NAME_BYTES, &name))
            return elm__fail(ELM_E_FORMAT, "%s: CONF entry %u has an unterminated name", fn, i);
        double v = elm__r_f64(&r);
        elm_param key;
        if (elm_param_from_name(name, &key) != ELM_OK)
            return elm__fail(ELM_E_VERSION, "%s: CONF: unknown hyper-parameter '%s' (written by a "
                                            "newer libelm?)", fn, name);
        if (seen[key])
            return elm__fail(ELM_E_FORMAT, "%s: CONF: '%s' appears twice", fn, name);
        seen[key] = true;
        if (elm_config_set(cfg, key, v) != ELM_OK) {
            char why[200];
            snprintf(why, sizeof why, "%s", elm_last_error());
            return elm__fail(ELM_E_CONFIG, "%s: CONF: %s", fn, why);
        }
    }
    if (elm_config_validate(cfg) != ELM_OK) {
        char why[200];
        snprintf(why, sizeof why, "%s", elm_last_error());
        return elm__fail(ELM_E_CONFIG, "%s: CONF: %s", fn, why);
    }
    return ELM_OK;
}

/* Parameters a (valid) config implies, as model.c lays them out. */
static uint64_t param_count(const elm_config *cfg) {
    const double *v = cfg->v;
    uint64_t n_in = (uint64_t)v[ELM_NUM_INPUT], n_m = (uint64_t)v[ELM_NUM_MEMORY];
    uint64_t n_b = v[ELM_NUM_BRANCH] ? (uint64_t)v[ELM_NUM_BRANCH] : n_in;
    uint64_t H = v[ELM_MLP_HIDDEN_SIZE] ? (uint64_t)v[ELM_MLP_HIDDEN_SIZE] : 2 * n_m;
    uint64_t n_s = n_b * (uint64_t)v[ELM_SYNAPSES_PER_BRANCH], L = (uint64_t)v[ELM_MLP_NUM_LAYERS];
    uint64_t n_out = (uint64_t)v[ELM_NUM_OUTPUT];
    uint64_t n = n_s + (v[ELM_FORMULATION] == ELM_V1 ? n_s : n_b) + n_m;
    for (uint64_t i = 0; i <= L; i++) {
        uint64_t in = i == 0 ? n_b + n_m : H, out = i == L ? n_m : H;
        n += out * in + out;
    }
    return n + n_out * n_m + n_out; /* dims <= 2^24, layers <= 64: no overflow */
}

typedef struct tens_rec {
    const char *name;
    int ndim;
    uint64_t shape[ELM_MAX_DIMS];
    const unsigned char *data;
    uint64_t numel;
    bool used;
} tens_rec;

#define MAX_TENSORS 160 /* 2 L + 7 with L <= 64 */

static int read_tens_records(const elm_section *s, const char *fn, tens_rec *rec, size_t *count,
                             uint64_t *total) {
    elm_reader r = {s->p, s->n, 0};
    if (!elm__r_left(&r, 8))
        return elm__fail(ELM_E_FORMAT, "%s: section '%s' is too short", fn, s->tag);
    uint32_t n = elm__r_u32(&r);
    elm__r_u32(&r);
    if (n > MAX_TENSORS)
        return elm__fail(ELM_E_LIMIT, "%s: section '%s' declares %u tensors, at most %d exist", fn,
                         s->tag, n, MAX_TENSORS);
    *total = 0;
    for (uint32_t i = 0; i < n; i++) {
        tens_rec *t = &rec[i];
        if (!elm__r_left(&r, ELM_TNAME_BYTES + 8 + 8 * ELM_MAX_DIMS))
            return elm__fail(ELM_E_LIMIT, "%s: section '%s' ends inside tensor %u's header", fn,
                             s->tag, i);
        if (!elm__r_name(&r, ELM_TNAME_BYTES, &t->name))
            return elm__fail(ELM_E_FORMAT, "%s: tensor %u has an unterminated name", fn, i);
        uint32_t dtype = elm__r_u32(&r), ndim = elm__r_u32(&r);
        if (dtype != 1)
            return elm__fail(ELM_E_FORMAT, "%s: tensor '%s' has dtype %u (only 1 = float32 "
                                           "exists)", fn, t->name, dtype);
        if (ndim < 1 || ndim > ELM_MAX_DIMS)
            return elm__fail(ELM_E_FORMAT, "%s: tensor '%s' has %u dimensions", fn, t->name, ndim);
        t->ndim = (int)ndim;
        t->numel = 1;
        for (int d = 0; d < ELM_MAX_DIMS; d++) {
            t->shape[d] = elm__r_u64(&r);
            if (d < t->ndim) {
                if (t->shape[d] > r.n) /* each element takes 4 bytes of the section */
                    return elm__fail(ELM_E_LIMIT, "%s: tensor '%s' declares dimension %llu, "
                                                  "larger than its section", fn, t->name,
                                     (unsigned long long)t->shape[d]);
                t->numel *= t->shape[d];
                if (t->numel > r.n)
                    return elm__fail(ELM_E_LIMIT, "%s: tensor '%s' declares more elements than "
                                                  "its section holds", fn, t->name);
            }
        }
        size_t bytes = (size_t)t->numel * 4, padded = bytes + (8 - bytes % 8) % 8;
        if (!elm__r_left(&r, bytes))
            return elm__fail(ELM_E_LIMIT, "%s: tensor '%s' declares %llu values, its section "
                                          "holds fewer", fn, t->name,
                             (unsigned long long)t->numel);
        t->data = r.p + r.pos;
        t->used = false;
        r.pos += elm__r_left(&r, padded) ? padded : bytes;
        *total += t->numel;
    }
    *count = n;
    return ELM_OK;
}

static void copy_f32(float *dst, const unsigned char *src, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint32_t u = get_u32(src + 4 * i);
        memcpy(dst + i, &u, 4);
    }
#else
    memcpy(dst, src, n * sizeof(float));
#endif
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (used < n) snprintf(buf + used, n - used, ")");
}

static int match_tensors(const elm_section *s, const elm_model *m, const char *fn, tens_rec *rec,
                         size_t n_rec, float *dst) {
    for (size_t i = 0; i < m->n_tensors; i++) {
        const elm_tensor *t = &m->tensors[i];
        tens_rec *hit = NULL;
        for (size_t j = 0; j < n_rec; j++) {
            if (strcmp(rec[j].name, t->name) != 0) continue;
            if (hit)
                return elm__fail(ELM_E_FORMAT, "%s: section '%s' holds tensor '%s' twice", fn,
                                 s->tag, t->name);
            hit = &rec[j];
        }
        if (!hit)
            return elm__fail(ELM_E_SHAPE, "%s: section '%s' lacks tensor '%s'", fn, s->tag,
                             t->name);
        bool same = hit->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = hit->shape[d] == (uint64_t)t->shape[d];
        if (!same) {
            char got[96], want[96];
            int64_t hs[ELM_MAX_DIMS];
            for (int d = 0; d < ELM_MAX_DIMS; d++) hs[d] = (int64_t)hit->shape[d];
            shape_str(got, sizeof got, hit->ndim, hs);
            shape_str(want, sizeof want, t->ndim, t->shape);
            return elm__fail(ELM_E_SHAPE, "%s: tensor '%s' has shape %s; the hyper-parameters "
                                          "give %s", fn, t->name, got, want);
        }
        hit->used = true;
        copy_f32(dst + t->offset, hit->data, t->numel);
        int rc = elm__tensor_check(m, t, dst + t->offset, fn);
        if (rc) return rc;
    }
    for (size_t j = 0; j < n_rec; j++)
        if (!rec[j].used)
            return elm__fail(ELM_E_SHAPE, "%s: section '%s' holds tensor '%s', which this model "
                                          "does not have", fn, s->tag, rec[j].name);
    return ELM_OK;
}

int elm__file_tensors(const elm_section *s, const elm_model *m, const char *fn, float *dst) {
    tens_rec rec[MAX_TENSORS];
    size_t n_rec;
    uint64_t total;
    int rc = read_tens_records(s, fn, rec, &n_rec, &total);
    if (rc) return rc;
    if (total != m->n_params)
        return elm__fail(ELM_E_SHAPE, "%s: section '%s' holds %llu parameters, the model has %zu",
                         fn, s->tag, (unsigned long long)total, m->n_params);
    return match_tensors(s, m, fn, rec, n_rec, dst);
}

static int read_rout(const elm_section *s, const char *fn, elm_model *m) {
    elm_reader r = {s->p, s->n, 0};
    uint64_t n_s = elm__r_u64(&r);
    if (s->n < 8 || n_s != (uint64_t)m->n_s)
        return elm__fail(ELM_E_SHAPE, "%s: ROUT holds %llu synapses, the hyper-parameters give %d",
                         fn, (unsigned long long)n_s, m->n_s);
    if (!elm__r_left(&r, 5 * (size_t)n_s))
        return elm__fail(ELM_E_LIMIT, "%s: ROUT declares %llu synapses, its section holds fewer",
                         fn, (unsigned long long)n_s);
    for (int j = 0; j < m->n_s; j++) {
        int32_t idx = (int32_t)elm__r_u32(&r);
        if (idx < 0 || idx >= m->n_in)
            return elm__fail(ELM_E_FORMAT, "%s: ROUT: synapse %d reads input %d, outside [0, %d)",
                             fn, j, idx, m->n_in);
        m->route_idx[j] = idx;
    }
    for (int j = 0; j < m->n_s; j++) {
        uint8_t v = r.p[r.pos++];
        if (v > 1)
            return elm__fail(ELM_E_FORMAT, "%s: ROUT: mask of synapse %d is %u, not 0 or 1", fn, j,
                             v);
        m->route_mask[j] = v;
    }
    m->routing_dirty = true;
    return ELM_OK;
}

static int read_meta(const elm_section *s, const char *fn, elm_model *m) {
    elm_reader r = {s->p, s->n, 0};
    uint32_t n = elm__r_u32(&r);
    elm__r_u32(&r);
    if (s->n < 8 || n > ELM_META_MAX_ENTRIES || (uint64_t)n * 8 > s->n)
        return elm__fail(ELM_E_LIMIT, "%s: META declares %u entries", fn, n);
    struct elm_meta *e = calloc(n ? n : 1, sizeof *e);
    if (!e) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    int rc = ELM_OK;
    for (uint32_t i = 0; i < n && rc == ELM_OK; i++) {
        size_t start = r.pos;
        uint32_t kl = elm__r_u32(&r), vl = elm__r_u32(&r);
        if (!elm__r_left(&r, (size_t)kl + vl)) {
            rc = elm__fail(ELM_E_LIMIT, "%s: META entry %u declares %u + %u bytes, more than "
                                        "remain", fn, i, kl, vl);
            break;
        }
        const char *k = (const char *)r.p + r.pos, *v = k + kl;
        if (kl == 0 || kl > ELM_META_MAX_KEY || memchr(k, '\0', kl)) {
            rc = elm__fail(ELM_E_FORMAT, "%s: META entry %u has a key of %u bytes%s", fn, i, kl,
                           kl && kl <= ELM_META_MAX_KEY ? " holding a NUL" : "");
            break;
        }
        if ((rc = elm__meta_check(k, kl, vl, fn))) break; /* too long: ELM_E_LIMIT */
        if (memchr(v, '\0', vl)) {
            rc = elm__fail(ELM_E_FORMAT, "%s: META value of '%.*s' holds a NUL byte", fn, (int)kl,
                           k);
            break;
        }
        e[i].key = strndup(k, kl);
        e[i].value = strndup(v, vl);
        if (!e[i].key || !e[i].value) rc = elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
        r.pos += (size_t)kl + vl;
        size_t pad = (8 - (r.pos - start) % 8) % 8;
        r.pos = elm__r_left(&r, pad) ? r.pos + pad : r.n;
    }
    for (uint32_t i = 0; rc == ELM_OK && i < n; i++)
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(e[i].key, e[j].key) == 0) {
                rc = elm__fail(ELM_E_FORMAT, "%s: META key '%s' appears twice", fn, e[i].key);
                break;
            }
    if (rc == ELM_OK) rc = elm__meta_assign(m, e, n, fn);
    for (uint32_t i = 0; i < n; i++) {
        free(e[i].key);
        free(e[i].value);
    }
    free(e);
    return rc;
}

int elm__file_model(const elm_file *f, const char *fn, elm_model **out) {
    const elm_section *conf = elm__file_find(f, "CONF"), *tens = elm__file_find(f, "TENS");
    const elm_section *rout = elm__file_find(f, "ROUT"), *meta = elm__file_find(f, "META");
    if (!conf || !tens)
        return elm__fail(ELM_E_FORMAT, "%s: the file has no %s section", fn,
                         conf ? "TENS" : "CONF");
    elm_config *defaults; /* keys absent from CONF keep their defaults */
    int rc = elm_config_create(&defaults);
    if (rc) return rc;
    elm_config cfg = *defaults;
    elm_config_free(defaults);
    if ((rc = read_conf(conf, fn, &cfg))) return rc;
    bool routed = cfg.v[ELM_ROUTING] != ELM_ROUTING_NONE;
    if (routed != (rout != NULL))
        return elm__fail(ELM_E_FORMAT, "%s: %s", fn,
                         routed ? "the model routes its inputs but the file has no ROUT section"
                                : "a ROUT section in a model without routing");
    /* Everything the model will allocate is bounded by what the file holds
     * before anything is allocated. */
    tens_rec rec[MAX_TENSORS];
    size_t n_rec;
    uint64_t total, want = param_count(&cfg);
    if ((rc = read_tens_records(tens, fn, rec, &n_rec, &total))) return rc;
    if (want > tens->n / 4)
        return elm__fail(ELM_E_LIMIT, "%s: the hyper-parameters imply %llu parameters (%.3g GB); "
                                      "the TENS section holds %zu bytes", fn,
                         (unsigned long long)want, (double)want * 4e-9, tens->n);
    if (total != want)
        return elm__fail(ELM_E_SHAPE, "%s: TENS holds %llu parameters, the hyper-parameters give "
                                      "%llu", fn, (unsigned long long)total,
                         (unsigned long long)want);
    elm_model *m;
    if ((rc = elm_model_create(&cfg, 0, &m))) return rc;
    rc = match_tensors(tens, m, fn, rec, n_rec, m->params);
    if (rc == ELM_OK && rout) rc = read_rout(rout, fn, m);
    if (rc == ELM_OK && meta) rc = read_meta(meta, fn, m);
    if (rc == ELM_OK) rc = elm__model_prepare(m);
    if (rc != ELM_OK) {
        elm_model_free(m);
        return rc;
    }
    *out = m;
    return ELM_OK;
}

/* ---- public ------------------------------------------------------------ */

static void write_model(elm_writer *w, const void *obj) {
    elm__w_header(w);
    elm__w_model(w, obj);
    elm__w_finish(w);
}

ELM_API int elm_model_save_buffer(const elm_model *m, void *dst, size_t capacity, size_t *size) {
    if (!m || !size) return elm__fail(ELM_E_NULL, "elm_model_save_buffer: NULL argument");
    return elm__serialise(write_model, m, dst, capacity, size, "elm_model_save_buffer");
}

ELM_API int elm_model_save(const elm_model *m, const char *path) {
    if (!m || !path) return elm__fail(ELM_E_NULL, "elm_model_save: NULL argument");
    return elm__save_path(write_model, m, path, "elm_model_save");
}

static int load_model(const void *src, size_t size, const char *fn, elm_model **out) {
    elm_file f;
    int rc = elm__file_parse(src, size, fn, &f);
    return rc ? rc : elm__file_model(&f, fn, out);
}

ELM_API int elm_model_load_buffer(const void *src, size_t size, elm_model **out) {
    if (!src || !out) return elm__fail(ELM_E_NULL, "elm_model_load_buffer: NULL argument");
    return load_model(src, size, "elm_model_load_buffer", out);
}

ELM_API int elm_model_load(const char *path, elm_model **out) {
    if (!path || !out) return elm__fail(ELM_E_NULL, "elm_model_load: NULL argument");
    char fn[300];
    snprintf(fn, sizeof fn, "elm_model_load: '%s'", path);
    void *buf;
    size_t n;
    int rc = elm__read_file(path, ELM_FILE_LIMIT, &buf, &n, fn);
    if (rc) return rc;
    rc = load_model(buf, n, fn, out);
    free(buf);
    return rc;
}

/* ---- whole-file I/O ---------------------------------------------------- */

int elm__read_file(const char *path, size_t limit, void **data, size_t *n, const char *fn) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return elm__fail(ELM_E_IO, "%s: cannot open: %s", fn, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return elm__fail(ELM_E_IO, "%s: not a regular file", fn);
    }
    if ((uint64_t)st.st_size > limit) {
        close(fd);
        return elm__fail(ELM_E_LIMIT, "%s: %lld bytes exceed the limit of %zu", fn,
                         (long long)st.st_size, limit);
    }
    size_t size = (size_t)st.st_size, got = 0;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory for %zu bytes", fn, size);
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            return elm__fail(ELM_E_IO, "%s: read failed after %zu of %zu bytes: %s", fn, got, size,
                             r < 0 ? strerror(e) : "unexpected end of file");
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *n = size;
    return ELM_OK;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? errno : ENOSPC;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int elm__write_file_atomic(const char *path, const void *data, size_t n, const char *fn) {
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    snprintf(tmp, len + 16, "%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return elm__fail(ELM_E_IO, "%s: cannot create a file next to '%s': %s", fn, path,
                         strerror(e));
    }
    /* mkstemp makes the file private: a replaced file keeps its mode, a new
     * one gets 0644 (reading the umask would mean changing it, which is
     * not thread-safe) */
    struct stat st;
    fchmod(fd, stat(path, &st) == 0 ? st.st_mode & 0777 : 0644);
    const char *what = "write";
    int e = write_all(fd, data, n);
    if (!e && fsync(fd) != 0) e = errno, what = "fsync";
    if (close(fd) != 0 && !e) e = errno, what = "close";
    if (!e && rename(tmp, path) != 0) e = errno, what = "rename";
    if (e) {
        unlink(tmp);
        free(tmp);
        return elm__fail(ELM_E_IO, "%s: cannot save '%s' (%s: %s); any previous file is intact",
                         fn, path, what, strerror(e));
    }
    free(tmp);
    /* make the rename itself durable (best effort: some file systems refuse) */
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    return ELM_OK;
}
