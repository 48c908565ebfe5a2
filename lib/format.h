/* The .elm container (docs/file-format.md): a writer that can also just
 * count bytes, and a validating reader of sections. Shared by the model
 * files (modelfile.c) and the training checkpoints (checkpoint.c). */
#ifndef ELM_FORMAT_H
#define ELM_FORMAT_H

#include "elm_internal.h"

#define ELM_FORMAT_MAJOR 1
#define ELM_FORMAT_MINOR 0
#define ELM_HEADER_BYTES 24
#define ELM_SECTION_HEADER 16
#define ELM_END_BYTES (ELM_SECTION_HEADER + 8)
#define ELM_SEC_REQUIRED 1u
#define ELM_NAME_BYTES 32   /* CONF / TRNR entry names */
#define ELM_TNAME_BYTES 40  /* TENS / BEST tensor names */
#define ELM_MAX_SECTIONS 64
#define ELM_FILE_LIMIT ((uint64_t)1 << 40)

/* Writes into buf[0, cap) or, with buf NULL, only counts. The caller sizes
 * buf with a counting pass first, so a real pass never overflows. */
typedef struct elm_writer {
    unsigned char *buf;
    size_t cap, n;
} elm_writer;

void elm__w_bytes(elm_writer *w, const void *p, size_t n);
void elm__w_u32(elm_writer *w, uint32_t v);
void elm__w_u64(elm_writer *w, uint64_t v);
void elm__w_f64(elm_writer *w, double v);
void elm__w_name(elm_writer *w, const char *s, size_t width); /* NUL-padded */
void elm__w_header(elm_writer *w);
size_t elm__w_begin(elm_writer *w, const char tag[4], uint32_t flags);
void elm__w_end(elm_writer *w, size_t start); /* patch the length, pad */
void elm__w_finish(elm_writer *w);            /* END + CRC, file size */
/* CONF, ROUT, TENS and META of a model. */
void elm__w_model(elm_writer *w, const elm_model *m);
/* A tensor section (TENS layout) of the model's tensors with values from
 * params (n_params floats in buffer order). */
void elm__w_tensors(elm_writer *w, const char tag[4], uint32_t flags, const elm_model *m,
                    const float *params);

/* A bounded little-endian cursor over one section's payload. */
typedef struct elm_reader {
    const unsigned char *p;
    size_t n, pos;
} elm_reader;
bool elm__r_left(const elm_reader *r, size_t n);
uint32_t elm__r_u32(elm_reader *r);
uint64_t elm__r_u64(elm_reader *r);
double elm__r_f64(elm_reader *r);
/* A NUL-padded name of `width` bytes; false unless NUL-terminated. */
bool elm__r_name(elm_reader *r, size_t width, const char **name);

typedef struct elm_section {
    char tag[5];
    uint32_t flags;
    const unsigned char *p; /* payload */
    size_t n;
} elm_section;

typedef struct elm_file {
    elm_section s[ELM_MAX_SECTIONS];
    size_t n;
} elm_file;

/* Check the header, size and CRC, and index the sections; fn prefixes
 * every message. */
int elm__file_parse(const void *src, size_t size, const char *fn, elm_file *f);
const elm_section *elm__file_find(const elm_file *f, const char *tag);
/* Build a model from CONF, ROUT, TENS and META. */
int elm__file_model(const elm_file *f, const char *fn, elm_model **out);
/* Validate a TENS-layout section against m's tensors and copy the values
 * into dst (n_params floats). */
int elm__file_tensors(const elm_section *s, const elm_model *m, const char *fn, float *dst);
/* Serialise with a counting pass then a writing pass into dst, or malloc
 * when dst is NULL and alloc is set (for the path functions). */
typedef void (*elm_write_fn)(elm_writer *w, const void *obj);
int elm__serialise(elm_write_fn write, const void *obj, void *dst, size_t capacity, size_t *size,
                   const char *fn);
int elm__save_path(elm_write_fn write, const void *obj, const char *path, const char *fn);

#endif
