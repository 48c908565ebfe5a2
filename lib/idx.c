/* IDX files (the MNIST / Fashion-MNIST format): the magic 00 00 type ndim,
 * ndim big-endian u32 dims, then the row-major data. Raw or gzip-compressed,
 * detected by the gzip magic 1f 8b. Only uint8 (type 0x08) is supported.
 *
 * Nothing declared is trusted: the payload size is checked against the limit
 * before anything is allocated; a raw file's size must match the header
 * exactly; a gzip stream is inflated in chunks into a buffer grown as data
 * arrives (never beyond the declared size), and reading stops with
 * trailing data (ELM_E_FORMAT) as soon as more than the declared size arrives. */
#include "idx.h"

#include "elm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK ((size_t)1 << 20)

typedef struct src {
    const char *path;
    int fd;     /* raw reads; -1 once handed to gz */
    gzFile gz;  /* NULL for a raw file */
    uint64_t pos; /* bytes delivered so far (decompressed for gzip) */
} src;

static int gz_fail(src *s) {
    int errnum = Z_OK;
    const char *msg = gzerror(s->gz, &errnum);
    switch (errnum) {
    case Z_ERRNO:
        return elm__fail(ELM_E_IO, "%s: read failed: %s", s->path, strerror(errno));
    case Z_MEM_ERROR:
        return elm__fail(ELM_E_NOMEM, "%s: out of memory while decompressing", s->path);
    case Z_BUF_ERROR:
        return elm__fail(ELM_E_TRUNCATED, "%s: gzip stream ends early, after %llu decompressed bytes (%s)",
                         s->path, (unsigned long long)s->pos, msg);
    default:
        return elm__fail(ELM_E_FORMAT, "%s: corrupt gzip stream after %llu decompressed bytes: %s",
                         s->path, (unsigned long long)s->pos, msg ? msg : "unknown error");
    }
}

/* Read up to n bytes; *got < n only at the end of the data. */
static int src_read(src *s, void *buf, size_t n, size_t *got) {
    unsigned char *p = buf;
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < CHUNK ? n - *got : CHUNK;
        if (s->gz) {
            int r = gzread(s->gz, p + *got, (unsigned)want);
            if (r < 0) return gz_fail(s);
            if (r == 0) {
                int errnum = Z_OK;
                gzerror(s->gz, &errnum);
                if (errnum != Z_OK) return gz_fail(s);
                break;
            }
            *got += (size_t)r;
            s->pos += (uint64_t)r;
        } else {
            ssize_t r = read(s->fd, p + *got, want);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0)
                return elm__fail(ELM_E_IO, "%s: read failed after %llu bytes: %s", s->path,
                                 (unsigned long long)s->pos, strerror(errno));
            if (r == 0) break;
            *got += (size_t)r;
            s->pos += (uint64_t)r;
        }
    }
    return ELM_OK;
}

static const char *type_name(unsigned t) {
    switch (t) {
    case 0x08: return "uint8";
    case 0x09: return "int8";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "not an IDX type";
    }
}

static void dims_str(const uint32_t *d, int ndim, char *buf, size_t n) {
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && at < n; i++) {
        int w = snprintf(buf + at, n - at, "%s%lu", i ? "x" : "", (unsigned long)d[i]);
        if (w < 0) break;
        at += (size_t)w;
    }
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int load(src *s, const struct stat *st, elm_idx *out) {
    unsigned char h[4 + 4 * ELM_IDX_MAX_DIMS];
    size_t got;
    int rc = src_read(s, h, 4, &got);
    if (rc) return rc;
    if (got < 4)
        return elm__fail(ELM_E_TRUNCATED, "%s: ends after %zu bytes, inside the 4-byte IDX magic",
                         s->path, got);
    if (h[0] != 0 || h[1] != 0)
        return elm__fail(ELM_E_FORMAT,
                         "%s: bad magic %02x %02x %02x %02x: not an IDX file (expected 00 00 type ndim)",
                         s->path, h[0], h[1], h[2], h[3]);
    if (h[2] != 0x08)
        return elm__fail(ELM_E_FORMAT, "%s: IDX element type 0x%02x (%s) is not supported; only 0x08 (uint8)",
                         s->path, h[2], type_name(h[2]));
    int ndim = h[3];
    if (ndim < 1 || ndim > ELM_IDX_MAX_DIMS)
        return elm__fail(ELM_E_FORMAT, "%s: IDX ndim %d is outside 1..%d", s->path, ndim, ELM_IDX_MAX_DIMS);
    size_t hdr = 4 + 4 * (size_t)ndim;
    rc = src_read(s, h + 4, hdr - 4, &got);
    if (rc) return rc;
    if (got < hdr - 4)
        return elm__fail(ELM_E_TRUNCATED, "%s: ends after %zu bytes, inside the %zu-byte IDX header",
                         s->path, 4 + got, hdr);

    uint32_t dims[ELM_IDX_MAX_DIMS] = {0};
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(h + 4 + 4 * i);
        /* numel <= 2^32 and dims[i] < 2^32: the product cannot wrap. */
        numel *= dims[i];
        if (numel > ELM_IDX_MAX_BYTES || numel > SIZE_MAX) {
            char ds[64];
            dims_str(dims, i + 1, ds, sizeof ds);
            return elm__fail(ELM_E_LIMIT, "%s: dims %s%s exceed the limit of 2^32 bytes", s->path, ds,
                             i + 1 < ndim ? "x..." : "");
        }
    }
    char ds[64];
    dims_str(dims, ndim, ds, sizeof ds);
    size_t n = (size_t)numel;

    if (!s->gz) {
        uint64_t want = hdr + numel, have = (uint64_t)st->st_size;
        if (have < want)
            return elm__fail(ELM_E_TRUNCATED, "%s: data has %llu of the %llu bytes that dims %s declare",
                             s->path, (unsigned long long)(have - hdr), (unsigned long long)numel, ds);
        if (have > want)
            return elm__fail(ELM_E_FORMAT, "%s: %llu trailing bytes after the %llu bytes that dims %s declare",
                             s->path, (unsigned long long)(have - want), (unsigned long long)numel, ds);
    }

    /* Raw: the size is known to match; gzip: grow as data arrives. */
    size_t cap = s->gz ? (n < CHUNK ? n : CHUNK) : n;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return elm__fail(ELM_E_NOMEM, "%s: out of memory for %zu bytes", s->path, cap);
    size_t have = 0;
    for (;;) {
        if (have == cap) {
            if (cap == n) break;
            size_t nc = cap > n / 2 ? n : cap * 2;
            uint8_t *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                return elm__fail(ELM_E_NOMEM, "%s: out of memory for %zu bytes", s->path, nc);
            }
            buf = nb;
            cap = nc;
        }
        rc = src_read(s, buf + have, cap - have, &got);
        if (rc) {
            free(buf);
            return rc;
        }
        have += got;
        if (have < cap) break; /* end of data */
    }
    if (have < n) {
        free(buf);
        return elm__fail(ELM_E_TRUNCATED, "%s: data has %zu of the %zu bytes that dims %s declare",
                         s->path, have, n, ds);
    }
    /* Anything more? For gzip this also reads to the end of the stream,
     * so that its CRC and length trailer are checked. */
    unsigned char extra;
    rc = src_read(s, &extra, 1, &got);
    if (rc) {
        free(buf);
        return rc;
    }
    if (got) {
        free(buf);
        if (s->gz)
            return elm__fail(ELM_E_FORMAT, "%s: gzip stream holds more than the %zu bytes that dims %s declare",
                             s->path, n, ds);
        return elm__fail(ELM_E_FORMAT, "%s: trailing bytes after the %zu bytes that dims %s declare",
                         s->path, n, ds);
    }
    out->data = buf;
    out->ndim = ndim;
    memcpy(out->dims, dims, sizeof dims);
    out->numel = n;
    return ELM_OK;
}

int elm__idx_load(const char *path, elm_idx *out) {
    if (!out) return elm__fail(ELM_E_NULL, "elm__idx_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return elm__fail(ELM_E_NULL, "elm__idx_load: path is NULL");

    src s = {.path = path, .fd = -1, .gz = NULL, .pos = 0};
    s.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s.fd < 0) return elm__fail(ELM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(s.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(s.fd);
        return elm__fail(ELM_E_IO, "%s: not a regular file", path);
    }
    unsigned char m[2] = {0, 0};
    ssize_t r;
    do r = pread(s.fd, m, 2, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;
        close(s.fd);
        return elm__fail(ELM_E_IO, "%s: read failed: %s", path, strerror(e));
    }
    if (r == 2 && m[0] == 0x1f && m[1] == 0x8b) {
        s.gz = gzdopen(s.fd, "rb"); /* owns the descriptor from here on */
        if (!s.gz) {
            close(s.fd);
            return elm__fail(ELM_E_NOMEM, "%s: cannot start gzip decompression", path);
        }
        s.fd = -1;
        gzbuffer(s.gz, 1u << 17);
    }
    int rc = load(&s, &st, out);
    if (s.gz)
        gzclose_r(s.gz);
    else
        close(s.fd);
    return rc;
}

void elm__idx_free(elm_idx *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
