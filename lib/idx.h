/* Internal reader of IDX files (the MNIST / Fashion-MNIST format), raw or
 * gzip-compressed (detected by the 1f 8b magic, not by the name). Only the
 * uint8 element type (0x08) is supported. Not exported. */
#ifndef ELM_IDX_H
#define ELM_IDX_H

#include <stddef.h>
#include <stdint.h>

#define ELM_IDX_MAX_DIMS 4
/* The largest payload accepted: 2^32 bytes. */
#define ELM_IDX_MAX_BYTES ((uint64_t)1 << 32)

typedef struct elm_idx {
    uint8_t *data;   /* numel bytes, row-major (malloc'd; never NULL on success) */
    int ndim;        /* 1 .. ELM_IDX_MAX_DIMS */
    uint32_t dims[ELM_IDX_MAX_DIMS]; /* unused ones are 0 */
    size_t numel;    /* product of dims */
} elm_idx;

/* Read `path` into *out (zeroed first; left zeroed on failure). Errors:
 * ELM_E_NULL, ELM_E_IO (cannot open / read), ELM_E_FORMAT (bad magic,
 * unsupported type, ndim 0 or > 4, trailing bytes in a raw file, corrupt gzip
 * stream), ELM_E_TRUNCATED (header or data shorter than declared),
 * ELM_E_LIMIT (dims overflow or exceed ELM_IDX_MAX_BYTES, checked before any
 * allocation; in a gzip file, more decompressed data than declared),
 * ELM_E_NOMEM. */
int elm__idx_load(const char *path, elm_idx *out);
/* Free the data and zero *a; NULL and zeroed structs are fine. */
void elm__idx_free(elm_idx *a);

#endif
