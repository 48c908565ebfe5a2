/* NeuronIO: the reader of the binary layout written by
 * `python3 -m elm.neuronio convert` (docs/datasets/neuronio.md) and the
 * random-window training source elm_dataset_open_neuronio.
 *
 * The file is mapped read-only and used in place: every array is 8-byte
 * aligned and little-endian. Nothing declared is trusted: at open the
 * header and body CRC-32s, every offset (each array must sit exactly where
 * the canonical layout puts it), every event channel and time index, the
 * output spike bins and the soma samples are checked, so a window read can
 * only fail on its own arguments. */
#include "neuronio.h"

#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NIO_HEADER 64
#define NIO_ENTRY 56
#define NIO_VERSION 1
#define NIO_MAX_SEG 32767u         /* channels are uint16: 2 n_seg <= 65535 */
#define NIO_MAX_DURATION (1u << 30) /* ms */
/* The official loader never starts a training window in the first 500 ms
 * of a simulation (ignore_time_from_start). */
#define NIO_IGNORE_MS 500

static const unsigned char nio_magic[8] = {'E', 'L', 'M', '-', 'N', 'I', 'O', 0};

typedef struct nio_sim {
    const uint32_t *time_ptr; /* (D + 1): events of ms t are [time_ptr[t], time_ptr[t+1]) */
    const uint16_t *channels; /* (n_events): exc 0..n_seg-1, inh n_seg..2 n_seg-1 */
    const int32_t *spikes;    /* (n_spikes): output spike bins, strictly increasing, ms */
    const float *soma;        /* (D): somatic voltage, mV */
    size_t n_events, n_spikes;
} nio_sim;

struct elm__nio {
    char *path;
    void *map;
    size_t size; /* bytes mapped */
    size_t n_seg, n_in, duration, n_sim;
    nio_sim *sims; /* (n_sim) */
};

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p) {
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static size_t pad8(size_t n) {
    return (n + 7) & ~(size_t)7;
}

/* Places an array of n elements of `elem` bytes at the canonical position
 * *pos (which must equal the declared offset), advancing *pos past its
 * zero padding; the array must end at or before `end`. */
static int place(const char *path, size_t s, const char *what, const unsigned char *base,
                 uint64_t declared, uint64_t n, size_t elem, size_t *pos, size_t end,
                 const void **out) {
    if (declared != *pos)
        return elm__fail(ELM_E_FORMAT,
                         "%s: simulation %zu: %s at offset %llu, expected %zu (corrupted table)",
                         path, s, what, (unsigned long long)declared, *pos);
    size_t bytes;
    if (n > SIZE_MAX || !elm__mul_ok((size_t)n, elem, &bytes) || bytes > end - *pos ||
        pad8(bytes) > end - *pos)
        return elm__fail(ELM_E_LIMIT, "%s: simulation %zu: %s of %llu elements exceeds the data",
                         path, s, what, (unsigned long long)n);
    *out = base + *pos;
    for (size_t i = *pos + bytes; i < *pos + pad8(bytes); i++)
        if (base[i] != 0)
            return elm__fail(ELM_E_FORMAT, "%s: simulation %zu: nonzero padding after %s", path,
                             s, what);
    *pos += pad8(bytes);
    return ELM_OK;
}

static int check_sim(const elm__nio *f, size_t s, const nio_sim *sm) {
    const char *path = f->path;
    size_t D = f->duration;
    if (sm->time_ptr[0] != 0 || sm->time_ptr[D] != sm->n_events)
        return elm__fail(ELM_E_FORMAT,
                         "%s: simulation %zu: time index spans [%u, %u), expected [0, %zu)", path,
                         s, sm->time_ptr[0], sm->time_ptr[D], sm->n_events);
    for (size_t t = 0; t < D; t++) {
        uint32_t a = sm->time_ptr[t], b = sm->time_ptr[t + 1];
        if (b < a)
            return elm__fail(ELM_E_FORMAT, "%s: simulation %zu: time index decreases at %zu ms",
                             path, s, t);
        for (uint32_t e = a; e < b; e++) {
            uint16_t c = sm->channels[e];
            if (c >= f->n_in)
                return elm__fail(ELM_E_FORMAT,
                                 "%s: simulation %zu: input channel %u at %zu ms out of range "
                                 "[0, %zu)",
                                 path, s, (unsigned)c, t, f->n_in);
            if (e > a && c <= sm->channels[e - 1])
                return elm__fail(ELM_E_FORMAT,
                                 "%s: simulation %zu: input channels at %zu ms not strictly "
                                 "increasing",
                                 path, s, t);
        }
    }
    for (size_t k = 0; k < sm->n_spikes; k++) {
        int32_t b = sm->spikes[k];
        if (b < 0 || (size_t)b >= D || (k > 0 && b <= sm->spikes[k - 1]))
            return elm__fail(ELM_E_FORMAT,
                             "%s: simulation %zu: output spike bin %d (number %zu) out of order "
                             "or outside [0, %zu)",
                             path, s, (int)b, k, D);
    }
    for (size_t t = 0; t < D; t++)
        if (!isfinite(sm->soma[t]))
            return elm__fail(ELM_E_FORMAT, "%s: simulation %zu: soma voltage at %zu ms is not finite",
                             path, s, t);
    return ELM_OK;
}

/* Validates the mapped bytes [0, f->size) and fills f's sizes and sims. */
static int parse(elm__nio *f) {
    const unsigned char *b = f->map;
    const char *path = f->path;
    uint32_t hsize = le32(b + 12), n_seg = le32(b + 16),
             n_in = le32(b + 20), D = le32(b + 24), n_sim = le32(b + 28), esize = le32(b + 48),
             crc = le32(b + 52), flags = le32(b + 56);
    uint64_t declared = le64(b + 32), table = le64(b + 40);
    if (hsize != NIO_HEADER || esize != NIO_ENTRY || flags != 0)
        return elm__fail(ELM_E_FORMAT, "%s: malformed header (sizes %u, %u; flags %u)", path,
                         hsize, esize, flags);
    if (n_seg < 1 || n_seg > NIO_MAX_SEG || n_in != 2 * n_seg)
        return elm__fail(ELM_E_FORMAT, "%s: %u inputs for %u segments (need 2 x [1, %u])", path,
                         n_in, n_seg, NIO_MAX_SEG);
    if (D < 1 || D > NIO_MAX_DURATION)
        return elm__fail(ELM_E_LIMIT, "%s: duration %u ms outside [1, %u]", path, D,
                         NIO_MAX_DURATION);
    if (n_sim < 1)
        return elm__fail(ELM_E_FORMAT, "%s: no simulations", path);
    if (declared != f->size)
        return elm__fail(ELM_E_FORMAT, "%s: %zu bytes after the declared end", path,
                         f->size - (size_t)declared);
    if (table % 8 != 0 || table < NIO_HEADER || table > declared ||
        (declared - table) / NIO_ENTRY != n_sim || (declared - table) % NIO_ENTRY != 0)
        return elm__fail(ELM_E_LIMIT,
                         "%s: table of %u simulations at offset %llu does not end the %llu-byte "
                         "file",
                         path, n_sim, (unsigned long long)table, (unsigned long long)declared);
    uint32_t got = elm__crc32(0, b + NIO_HEADER, f->size - NIO_HEADER);
    if (got != crc)
        return elm__fail(ELM_E_CHECKSUM,
                         "%s: checksum mismatch (stored %08x, computed %08x): the data is damaged",
                         path, crc, got);
    f->n_seg = n_seg;
    f->n_in = n_in;
    f->duration = D;
    f->n_sim = n_sim;
    f->sims = calloc(n_sim, sizeof *f->sims);
    if (!f->sims) return elm__fail(ELM_E_NOMEM, "%s: out of memory", path);
    size_t pos = NIO_HEADER;
    for (size_t s = 0; s < n_sim; s++) {
        const unsigned char *e = b + (size_t)table + s * NIO_ENTRY;
        nio_sim *sm = &f->sims[s];
        uint64_t n_events = le64(e + 16), n_spikes = le64(e + 32);
        if (n_events > UINT32_MAX)
            return elm__fail(ELM_E_LIMIT, "%s: simulation %zu: %llu input events (limit 2^32 - 1)",
                             path, s, (unsigned long long)n_events);
        const void *p;
        int rc;
        if ((rc = place(path, s, "time index", b, le64(e), (uint64_t)D + 1, 4, &pos, table, &p)))
            return rc;
        sm->time_ptr = p;
        if ((rc = place(path, s, "input channels", b, le64(e + 8), n_events, 2, &pos, table, &p)))
            return rc;
        sm->channels = p;
        sm->n_events = (size_t)n_events;
        if ((rc = place(path, s, "output spikes", b, le64(e + 24), n_spikes, 4, &pos, table, &p)))
            return rc;
        sm->spikes = p;
        sm->n_spikes = (size_t)n_spikes;
        if ((rc = place(path, s, "soma voltage", b, le64(e + 40), D, 4, &pos, table, &p)))
            return rc;
        sm->soma = p;
        if ((rc = check_sim(f, s, sm))) return rc;
    }
    if (pos != table)
        return elm__fail(ELM_E_FORMAT, "%s: %zu unexplained bytes before the table", path,
                         (size_t)table - pos);
    return ELM_OK;
}

void elm__nio_close(elm__nio *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    free(f->sims);
    free(f->path);
    free(f);
}

int elm__nio_open(const char *path, elm__nio **out) {
    if (!out) return elm__fail(ELM_E_NULL, "elm__nio_open: out is NULL");
    *out = NULL;
    if (!path) return elm__fail(ELM_E_NULL, "elm__nio_open: path is NULL");
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1)
        return elm__fail(ELM_E_UNSUPPORTED,
                         "%s: the NeuronIO layout is little-endian and used in place; this host "
                         "is big-endian",
                         path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return elm__fail(ELM_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    errno = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = errno;
        close(fd);
        return elm__fail(ELM_E_IO, "%s: not a regular file%s%s", path, err ? ": " : "",
                         err ? strerror(err) : "");
    }
    unsigned char head[NIO_HEADER];
    size_t have = 0;
    while (have < sizeof head) {
        ssize_t r = pread(fd, head + have, sizeof head - have, (off_t)have);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int err = errno;
            close(fd);
            return elm__fail(ELM_E_IO, "%s: cannot read: %s", path, strerror(err));
        }
        if (r == 0) break;
        have += (size_t)r;
    }
    if (have < sizeof nio_magic || memcmp(head, nio_magic, sizeof nio_magic) != 0) {
        close(fd);
        return elm__fail(ELM_E_FORMAT, "%s: not a NeuronIO file (bad magic; convert the "
                                       "pickles with `python3 -m elm.neuronio convert`)",
                         path);
    }
    if (have < NIO_HEADER) {
        close(fd);
        return elm__fail(ELM_E_TRUNCATED, "%s: truncated: %zu bytes, the header alone has %d",
                         path, have, NIO_HEADER);
    }
    uint32_t version = le32(head + 8);
    if (version != NIO_VERSION) {
        close(fd);
        return elm__fail(version > NIO_VERSION ? ELM_E_VERSION : ELM_E_FORMAT,
                         "%s: layout version %u (this libelm reads %d)", path, version,
                         NIO_VERSION);
    }
    uint32_t hcrc = elm__crc32(0, head, 60);
    if (hcrc != le32(head + 60)) {
        close(fd);
        return elm__fail(ELM_E_CHECKSUM, "%s: header checksum mismatch: the header is damaged",
                         path);
    }
    uint64_t declared = le64(head + 32);
    if ((uint64_t)st.st_size < declared) {
        close(fd);
        return elm__fail(ELM_E_TRUNCATED, "%s: truncated: %lld bytes of the declared %llu", path,
                         (long long)st.st_size, (unsigned long long)declared);
    }
    if (declared > SIZE_MAX || declared < NIO_HEADER) {
        close(fd);
        return elm__fail(ELM_E_LIMIT, "%s: declared size %llu is not mappable here", path,
                         (unsigned long long)declared);
    }
    elm__nio *f = calloc(1, sizeof *f);
    if (f) f->path = strdup(path);
    if (!f || !f->path) {
        close(fd);
        elm__nio_close(f);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory", path);
    }
    f->size = (size_t)st.st_size;
    if ((uint64_t)st.st_size != declared || f->size != (uint64_t)st.st_size) {
        close(fd);
        int rc = elm__fail(ELM_E_FORMAT, "%s: %llu bytes after the declared end", path,
                           (unsigned long long)((uint64_t)st.st_size - declared));
        f->size = 0;
        elm__nio_close(f);
        return rc;
    }
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (map == MAP_FAILED) {
        f->size = 0;
        elm__nio_close(f);
        return elm__fail(ELM_E_IO, "%s: cannot map: %s", path, strerror(err));
    }
    f->map = map;
    int rc = parse(f);
    if (rc != ELM_OK) {
        elm__nio_close(f);
        return rc;
    }
    *out = f;
    return ELM_OK;
}

size_t elm__nio_count(const elm__nio *f) {
    return f ? f->n_sim : 0;
}
size_t elm__nio_duration(const elm__nio *f) {
    return f ? f->duration : 0;
}
size_t elm__nio_n_in(const elm__nio *f) {
    return f ? f->n_in : 0;
}
const char *elm__nio_path(const elm__nio *f) {
    return f ? f->path : NULL;
}
size_t elm__nio_spike_count(const elm__nio *f, size_t s) {
    return f && s < f->n_sim ? f->sims[s].n_spikes : 0;
}

/* Adds the inputs of steps [t0, t0 + len) into x (len, n_in), which must
 * be zero: +1 excitatory, -1 inhibitory. */
static void fill_inputs(const elm__nio *f, const nio_sim *sm, size_t t0, size_t len, float *x) {
    const uint16_t n_seg = (uint16_t)f->n_seg;
    for (size_t t = 0; t < len; t++) {
        float *row = x + t * f->n_in;
        for (uint32_t e = sm->time_ptr[t0 + t], end = sm->time_ptr[t0 + t + 1]; e < end; e++) {
            uint16_t c = sm->channels[e];
            row[c] = c < n_seg ? 1.0f : -1.0f;
        }
    }
}

/* Sets spike[k * stride] = 1 for the output spikes of [t0, t0 + len). */
static void fill_spikes(const nio_sim *sm, size_t t0, size_t len, float *spike, size_t stride) {
    size_t lo = 0, hi = sm->n_spikes; /* first spike bin >= t0 */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((size_t)sm->spikes[mid] < t0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = lo; k < sm->n_spikes && (size_t)sm->spikes[k] < t0 + len; k++)
        spike[((size_t)sm->spikes[k] - t0) * stride] = 1.0f;
}

int elm__nio_window(const elm__nio *f, size_t s, size_t t0, size_t len, float *x, float *spike,
                    float *soma_mv) {
    if (!f || !x) return elm__fail(ELM_E_NULL, "elm__nio_window: file or x is NULL");
    if (s >= f->n_sim || len > f->duration || t0 > f->duration - len)
        return elm__fail(ELM_E_INVALID,
                         "%s: window [%zu, %zu + %zu) of simulation %zu outside %zu simulations "
                         "of %zu ms",
                         f->path, t0, t0, len, s, f->n_sim, f->duration);
    const nio_sim *sm = &f->sims[s];
    size_t n;
    if (!elm__mul_ok(len, f->n_in, &n))
        return elm__fail(ELM_E_NOMEM, "elm__nio_window: size overflow");
    memset(x, 0, n * sizeof *x);
    fill_inputs(f, sm, t0, len, x);
    if (spike) {
        memset(spike, 0, len * sizeof *spike);
        fill_spikes(sm, t0, len, spike, 1);
    }
    if (soma_mv) memcpy(soma_mv, sm->soma + t0, len * sizeof *soma_mv);
    return ELM_OK;
}

/* ---- the training source ---- */

typedef struct nio_source {
    elm__nio *f;
    size_t window;   /* ms */
    size_t first;    /* earliest start, ms */
    size_t n_starts; /* starts are first + [0, n_starts) */
} nio_source;

static int nio_read(void *self, size_t i, uint64_t key, float *x, float *target, int32_t *labels,
                    int64_t *length) {
    (void)i, (void)labels, (void)length;
    const nio_source *src = self;
    const elm__nio *f = src->f;
    elm_rng r;
    elm__rng_seed(&r, key);
    size_t s = (size_t)elm__rng_below(&r, f->n_sim);
    size_t t0 = src->first + (size_t)elm__rng_below(&r, src->n_starts);
    const nio_sim *sm = &f->sims[s];
    fill_inputs(f, sm, t0, src->window, x);
    if (target) { /* (T, 2): spike, soma target */
        fill_spikes(sm, t0, src->window, target, 2);
        for (size_t t = 0; t < src->window; t++)
            target[2 * t + 1] = elm__nio_soma_target(sm->soma[t0 + t]);
    }
    return ELM_OK;
}

static void nio_free(void *self) {
    nio_source *src = self;
    if (!src) return;
    elm__nio_close(src->f);
    free(src);
}

static const elm__source_vt nio_vt = {"neuronio", nio_read, nio_free};

ELM_API int elm_dataset_open_neuronio(const char *path, size_t window_ms, size_t samples_per_epoch,
                                      elm_dataset **out) {
    static const char fn[] = "elm_dataset_open_neuronio";
    if (!out) return elm__fail(ELM_E_NULL, "%s: out is NULL", fn);
    *out = NULL;
    if (!path) return elm__fail(ELM_E_NULL, "%s: path is NULL", fn);
    if (samples_per_epoch < 1)
        return elm__fail(ELM_E_INVALID, "%s: samples_per_epoch must be >= 1", fn);
    elm__nio *f;
    int rc = elm__nio_open(path, &f);
    if (rc != ELM_OK) return rc;
    size_t D = f->duration;
    if (window_ms < 1 || window_ms > D) {
        elm__nio_close(f);
        return elm__fail(ELM_E_INVALID, "%s: window_ms %zu outside [1, %zu] (%s)", fn, window_ms,
                         D, path);
    }
    nio_source *src = calloc(1, sizeof *src);
    if (!src) {
        elm__nio_close(f);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    }
    src->f = f;
    src->window = window_ms;
    /* As generate_batch: start = ignore + choice(D - window - ignore), so the
     * last possible start D - window is never drawn. Simulations too short
     * for the 500 ms skip (where the official loader cannot draw at all)
     * start anywhere in [0, max(1, D - window)). */
    if (D - window_ms > NIO_IGNORE_MS) {
        src->first = NIO_IGNORE_MS;
        src->n_starts = D - window_ms - NIO_IGNORE_MS;
    } else {
        src->first = 0;
        src->n_starts = D - window_ms > 0 ? D - window_ms : 1;
    }
    elm__source_shape shape = {.N = samples_per_epoch, .T = window_ms, .n_in = f->n_in,
                               .n_target = 2, .n_label = 0};
    return elm__dataset_from_source(fn, &nio_vt, src, shape, out);
}
