/* YAML reading and writing shared by yaml.c (model configs) and
 * train_config.c (training configs). */
#ifndef ELM_YAML_INTERNAL_H
#define ELM_YAML_INTERNAL_H

#include "elm_internal.h"

#include <stdarg.h>

/* ---- reading ------------------------------------------------------------
 *
 * A document is parsed (libyaml's event parser) into a small tree of
 * nodes: scalars keep their text and whether they were quoted, mappings
 * and sequences chain their children (a mapping's children alternate key,
 * value). Aliases are resolved to a copy of their anchor's node that keeps
 * the alias's own position. Every node knows its 1-based line and column,
 * so that errors can say "config.yaml:4:3: ...". */

#define ELM_YAML_NONE ((size_t)-1)

enum { ELM_YAML_SCALAR = 1, ELM_YAML_SEQUENCE = 2, ELM_YAML_MAPPING = 3 };

typedef struct elm_ynode {
    int kind;
    bool quoted;        /* scalar in quotes or block style: always a string */
    size_t line, col;   /* 1-based */
    size_t text, len;   /* scalar: its NUL-terminated text in the arena */
    size_t first, next; /* first child; next sibling */
    size_t last;        /* last child, while the node is open */
    size_t n;           /* children when built (an alias's copy may lag) */
} elm_ynode;

typedef struct elm_yaml_anchor {
    size_t name; /* in the arena */
    size_t node;
} elm_yaml_anchor;

typedef struct elm_yaml {
    const char *origin; /* file path or "<string>", for messages */
    elm_ynode *nodes;
    size_t n_nodes, cap_nodes;
    char *text;
    size_t n_text, cap_text;
    elm_yaml_anchor *anchors;
    size_t n_anchors, cap_anchors;
    size_t root;
} elm_yaml;

/* Parse `len` bytes. On failure nothing is kept (ELM_E_FORMAT for syntax,
 * with the position in the message). */
int elm__yaml_parse(elm_yaml *y, const char *origin, const char *text, size_t len);
void elm__yaml_free(elm_yaml *y);

static inline const elm_ynode *elm__ynode(const elm_yaml *y, size_t i) {
    return i == ELM_YAML_NONE ? NULL : &y->nodes[i];
}
static inline const char *elm__yaml_text(const elm_yaml *y, const elm_ynode *n) {
    return y->text + n->text;
}

/* "<origin>:<line>:<col>: <message>" at node `at` (the document's start
 * when NULL). Returns status. */
int elm__yaml_fail(const elm_yaml *y, const elm_ynode *at, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The root mapping; ELM_E_FORMAT for an empty document or another kind of
 * root. `what` describes the expected content for the message. */
int elm__yaml_root(const elm_yaml *y, const char *what, const elm_ynode **root);

/* True for a plain null scalar (null, Null, NULL, ~ or nothing). */
bool elm__yaml_is_null(const elm_yaml *y, const elm_ynode *n);

/* At most 40 bytes of s for a message, cut at a character boundary,
 * control characters as '?'. */
void elm__yaml_excerpt(const char *s, size_t len, char *buf, size_t size);
/* "a list", "a mapping", "null", "'text'", ... for messages. */
const char *elm__yaml_describe(const elm_yaml *y, const elm_ynode *n, char *buf, size_t size);

/* Typed values of key `key` in section `sec` (both for messages). Each
 * fails with ELM_E_INVALID naming the key and what it got. */
int elm__yaml_number(const elm_yaml *y, const elm_ynode *v, const char *sec, const char *key,
                     bool integer, double *out);
int elm__yaml_bool(const elm_yaml *y, const elm_ynode *v, const char *sec, const char *key,
                   double *out);
/* A scalar's text (arena, lives as long as y); "" for null. */
int elm__yaml_string(const elm_yaml *y, const elm_ynode *v, const char *sec, const char *key,
                     const char **out);

/* ---- names of enum values ------------------------------------------------ */

typedef struct elm_yaml_name {
    const char *name;
    int value;
    bool alias; /* accepted on input, never written */
} elm_yaml_name;

/* A name's value (aliases included); false if unknown. Lists end with a
 * NULL name. */
bool elm__yaml_name_value(const elm_yaml_name *names, const char *name, int *value);
/* The written name of a value, or NULL. */
const char *elm__yaml_value_name(const elm_yaml_name *names, int value);
/* "relu or silu" */
const char *elm__yaml_name_list(const elm_yaml_name *names, char *buf, size_t size);
int elm__yaml_enum(const elm_yaml *y, const elm_ynode *v, const char *sec, const char *key,
                   const elm_yaml_name *names, double *out);

/* The value type of a hyper-parameter, and the names of an enum one. */
elm_value_type elm__yaml_param_type(elm_param key);
const elm_yaml_name *elm__yaml_param_names(elm_param key);

/* Read a mapping of hyper-parameters into cfg (which keeps its values for
 * absent keys); cfg may be partly written on failure. */
int elm__yaml_read_model(const elm_yaml *y, const elm_ynode *map, elm_config *cfg);

/* ---- writing -------------------------------------------------------------- */

typedef struct elm_ybuf {
    char *p;
    size_t n, cap;
    bool failed; /* out of memory: the text is incomplete */
} elm_ybuf;

void elm__ybuf_printf(elm_ybuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A double-quoted YAML string with escapes (s is valid UTF-8). */
void elm__ybuf_quoted(elm_ybuf *b, const char *s);
void elm__ybuf_free(elm_ybuf *b);

/* The shortest text that reads back as exactly v, in the C locale; with
 * float_form it always has a '.' ("5.0", "1.0e-08"), which YAML 1.1
 * readers such as PyYAML need to see a float. */
void elm__yaml_format_number(double v, bool float_form, char *buf, size_t size);
/* strtod in the C locale; false unless all of s was read. */
bool elm__yaml_parse_double(const char *s, double *v);

/* Every hyper-parameter, one "<indent>name: value" line each. */
void elm__yaml_write_model(elm_ybuf *b, const elm_config *cfg, const char *indent);

/* The text of b into dst following the buffer rule of elm.h section 11
 * (*size counts the NUL). Frees b. */
int elm__yaml_output(const char *fn, elm_ybuf *b, char *dst, size_t capacity, size_t *size);

/* ---- files ---------------------------------------------------------------- */

/* The whole file (ELM_E_IO, or ELM_E_LIMIT above 16 MiB); free() it. */
int elm__yaml_read_file(const char *fn, const char *path, char **text, size_t *len);
/* Write b's text to path atomically (elm__write_file_atomic). Frees b. */
int elm__yaml_save(const char *fn, const char *path, elm_ybuf *b);

/* Valid UTF-8 without NUL bytes. */
bool elm__utf8_valid(const char *s, size_t n);

#endif
