/* IDX images (MNIST, Fashion-MNIST) as sequences: sequential MNIST
 * (pixel by pixel, x (rows * cols, 1)), row by row (x (rows, cols)), and
 * the permuted variants (one fixed pixel order for every image). The
 * images stay uint8 in memory (47 MB for 60000 MNIST images instead of
 * 188 MB as floats); read() scales them to [0, 1]. */
#include <stdlib.h>

#include "idx.h"
#include "source.h"

#define FN "elm_dataset_open_idx"

typedef struct idx_source {
    elm_idx images;      /* (N, rows, cols) uint8 */
    elm_idx labels;      /* (N) uint8 */
    size_t pixels;       /* rows * cols */
    uint32_t *perm;      /* (pixels): step t shows pixel perm[t]; NULL = identity */
} idx_source;

static void idx_source_free(void *self) {
    idx_source *s = self;
    if (!s) return;
    elm__idx_free(&s->images);
    elm__idx_free(&s->labels);
    free(s->perm);
    free(s);
}

/* x holds the image's pixels in sequence order; PIXELS and ROWS differ only
 * in how the caller's (T, n_in) view splits them, both row-major. */
static int idx_source_read(void *self, size_t i, uint64_t key, float *x, float *target,
                           int32_t *labels, int64_t *length) {
    (void)key, (void)target, (void)length;
    const idx_source *s = self;
    const uint8_t *img = s->images.data + i * s->pixels;
    if (s->perm) {
        for (size_t t = 0; t < s->pixels; t++) x[t] = (float)img[s->perm[t]] / 255.0f;
    } else {
        for (size_t t = 0; t < s->pixels; t++) x[t] = (float)img[t] / 255.0f;
    }
    if (labels) labels[0] = s->labels.data[i];
    return ELM_OK;
}

static const elm__source_vt idx_vt = {"idx", idx_source_read, idx_source_free};

/* Fisher-Yates from the library's generator, so that a seed gives the same
 * permutation on every platform. */
static uint32_t *draw_permutation(size_t n, uint64_t seed) {
    uint32_t *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    for (size_t k = 0; k < n; k++) p[k] = (uint32_t)k;
    elm_rng rng;
    elm__rng_seed(&rng, seed);
    for (size_t k = n - 1; k > 0; k--) {
        size_t j = (size_t)elm__rng_below(&rng, (uint64_t)k + 1);
        uint32_t tmp = p[k];
        p[k] = p[j];
        p[j] = tmp;
    }
    return p;
}

/* Shapes: images (N, rows, cols) with every dim >= 1, labels (N). */
static int check_shapes(const idx_source *s, const char *images, const char *labels) {
    const elm_idx *im = &s->images, *lb = &s->labels;
    if (im->ndim != 3)
        return elm__fail(ELM_E_FORMAT, "%s: %s: images need 3 dims (N, rows, cols), the file has %d",
                         FN, images, im->ndim);
    if (lb->ndim != 1)
        return elm__fail(ELM_E_FORMAT, "%s: %s: labels need 1 dim (N), the file has %d", FN, labels,
                         lb->ndim);
    if (im->dims[0] == 0 || im->dims[1] == 0 || im->dims[2] == 0)
        return elm__fail(ELM_E_FORMAT, "%s: %s: images dims (%u, %u, %u) must all be >= 1", FN,
                         images, (unsigned)im->dims[0], (unsigned)im->dims[1],
                         (unsigned)im->dims[2]);
    if (im->dims[0] != lb->dims[0])
        return elm__fail(ELM_E_FORMAT, "%s: %s holds %u images but %s holds %u labels", FN, images,
                         (unsigned)im->dims[0], labels, (unsigned)lb->dims[0]);
    return ELM_OK;
}

ELM_API int elm_dataset_open_idx(const char *images, const char *labels, elm_idx_sequence seq,
                                 int permute, uint64_t permute_seed, elm_dataset **out) {
    if (!out) return elm__fail(ELM_E_NULL, "%s: out is NULL", FN);
    if (!images) return elm__fail(ELM_E_NULL, "%s: images is NULL", FN);
    if (!labels) return elm__fail(ELM_E_NULL, "%s: labels is NULL", FN);
    if (seq != ELM_IDX_PIXELS && seq != ELM_IDX_ROWS)
        return elm__fail(ELM_E_INVALID, "%s: seq = %d is neither ELM_IDX_PIXELS (0) nor ELM_IDX_ROWS (1)",
                         FN, (int)seq);
    if (permute != 0 && permute != 1)
        return elm__fail(ELM_E_INVALID, "%s: permute = %d must be 0 or 1", FN, permute);

    idx_source *s = calloc(1, sizeof *s);
    if (!s) return elm__fail(ELM_E_NOMEM, "%s: out of memory", FN);
    int rc = elm__idx_load(images, &s->images);
    if (rc == ELM_OK) rc = elm__idx_load(labels, &s->labels);
    if (rc == ELM_OK) rc = check_shapes(s, images, labels);
    if (rc != ELM_OK) {
        idx_source_free(s);
        return rc;
    }
    size_t rows = s->images.dims[1], cols = s->images.dims[2];
    s->pixels = rows * cols; /* <= 2^32 bytes: idx.c bounds the payload */
    if (permute && !(s->perm = draw_permutation(s->pixels, permute_seed))) {
        idx_source_free(s);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory for a permutation of %zu pixels", FN,
                         rows * cols);
    }
    elm__source_shape shape = {
        .N = s->images.dims[0],
        .T = seq == ELM_IDX_PIXELS ? s->pixels : rows,
        .n_in = seq == ELM_IDX_PIXELS ? 1 : cols,
        .n_target = 0,
        .n_label = 1,
    };
    return elm__dataset_from_source(FN, &idx_vt, s, shape, out);
}
