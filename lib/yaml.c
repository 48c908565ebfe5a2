/* YAML through libyaml: a small reader that turns a document into a tree
 * of positioned nodes, typed scalar access with messages that give the
 * line and column, a writer whose numbers read back exactly, and the
 * model-config functions of elm.h section 12. Files go through
 * modelfile.c's whole-file helpers (atomic saving).
 *
 * Scalars are typed the way YAML 1.2's core schema types plain scalars
 * (null, true/false, decimal integers, floats with .inf/.nan); anything
 * quoted is a string. Numbers are parsed and printed in the C locale, so
 * a host application's setlocale() cannot turn "0.5" into "0,5". */
#include "yaml_internal.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_TEXT (16u << 20) /* bytes of YAML we accept: configs are small */
#define MAX_DEPTH 16         /* nesting; configs need 3 */
#define EXACT_LL (1LL << 53) /* integers exact in a double */

/* ---- the node tree -------------------------------------------------------- */

void elm__yaml_free(elm_yaml *y) {
    free(y->nodes);
    free(y->text);
    free(y->anchors);
    y->nodes = NULL;
    y->text = NULL;
    y->anchors = NULL;
    y->n_nodes = y->n_text = y->n_anchors = 0;
    y->cap_nodes = y->cap_text = y->cap_anchors = 0;
    y->root = ELM_YAML_NONE;
}

/* Capacity for `need` items of `size` bytes, doubling; false on overflow. */
static bool next_cap(size_t cap, size_t need, size_t size, size_t *out) {
    size_t c = cap ? cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2) return false;
        c *= 2;
    }
    if (c > SIZE_MAX / size) return false;
    *out = c;
    return true;
}

static size_t add_text(elm_yaml *y, const void *s, size_t n) {
    size_t cap;
    if (n > SIZE_MAX - y->n_text - 1) return ELM_YAML_NONE;
    if (y->n_text + n + 1 > y->cap_text) {
        if (!next_cap(y->cap_text, y->n_text + n + 1, 1, &cap)) return ELM_YAML_NONE;
        char *t = realloc(y->text, cap);
        if (!t) return ELM_YAML_NONE;
        y->text = t;
        y->cap_text = cap;
    }
    size_t at = y->n_text;
    if (n) memcpy(y->text + at, s, n);
    y->text[at + n] = '\0';
    y->n_text += n + 1;
    return at;
}

static size_t add_node(elm_yaml *y, int kind, const yaml_mark_t *mark) {
    size_t cap;
    if (y->n_nodes == y->cap_nodes) {
        if (!next_cap(y->cap_nodes, y->n_nodes + 1, sizeof *y->nodes, &cap)) return ELM_YAML_NONE;
        elm_ynode *p = realloc(y->nodes, cap * sizeof *p);
        if (!p) return ELM_YAML_NONE;
        y->nodes = p;
        y->cap_nodes = cap;
    }
    size_t i = y->n_nodes++;
    y->nodes[i] = (elm_ynode){.kind = kind, .line = mark->line + 1, .col = mark->column + 1,
                              .first = ELM_YAML_NONE, .next = ELM_YAML_NONE,
                              .last = ELM_YAML_NONE};
    return i;
}

static bool add_anchor(elm_yaml *y, const unsigned char *name, size_t node) {
    size_t cap;
    if (y->n_anchors == y->cap_anchors) {
        if (!next_cap(y->cap_anchors, y->n_anchors + 1, sizeof *y->anchors, &cap)) return false;
        elm_yaml_anchor *p = realloc(y->anchors, cap * sizeof *p);
        if (!p) return false;
        y->anchors = p;
        y->cap_anchors = cap;
    }
    size_t at = add_text(y, name, strlen((const char *)name));
    if (at == ELM_YAML_NONE) return false;
    y->anchors[y->n_anchors++] = (elm_yaml_anchor){at, node};
    return true;
}

/* Chain node i under the open container on top of the stack (or make it
 * the root). */
static void attach(elm_yaml *y, const size_t *stack, int depth, size_t i) {
    if (depth == 0) {
        y->root = i;
        return;
    }
    elm_ynode *parent = &y->nodes[stack[depth - 1]];
    if (parent->first == ELM_YAML_NONE)
        parent->first = i;
    else
        y->nodes[parent->last].next = i;
    parent->last = i;
    parent->n++;
}

int elm__yaml_fail(const elm_yaml *y, const elm_ynode *at, int status, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return elm__fail(status, "%s:%zu:%zu: %s", y->origin, at ? at->line : (size_t)1,
                     at ? at->col : (size_t)1, msg);
}

static int fail_at(const elm_yaml *y, size_t line, size_t col, int status, const char *msg) {
    elm_ynode at = {.line = line, .col = col};
    return elm__yaml_fail(y, &at, status, "%s", msg);
}

/* libyaml's own complaint, with the position it gives. Reader errors
 * (bad UTF-8, control characters) only give a byte offset. */
static int syntax_error(const elm_yaml *y, const yaml_parser_t *p, const char *text, size_t len) {
    char msg[300];
    if (p->error == YAML_MEMORY_ERROR)
        return elm__fail(ELM_E_NOMEM, "%s: out of memory while parsing", y->origin);
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (text[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        snprintf(msg, sizeof msg, "syntax error: %s (byte %zu, value 0x%X)", problem,
                 p->problem_offset, (unsigned)p->problem_value);
        return fail_at(y, line, col, ELM_E_FORMAT, msg);
    }
    if (p->context)
        snprintf(msg, sizeof msg, "syntax error: %s (%s that starts at %zu:%zu)", problem,
                 p->context, p->context_mark.line + 1, p->context_mark.column + 1);
    else
        snprintf(msg, sizeof msg, "syntax error: %s", problem);
    return fail_at(y, p->problem_mark.line + 1, p->problem_mark.column + 1, ELM_E_FORMAT, msg);
}

/* One parser event into the tree. */
static int take_event(elm_yaml *y, const yaml_event_t *ev, size_t *stack, int *depth,
                      int *docs) {
    const yaml_mark_t *mark = &ev->start_mark;
    const unsigned char *anchor = NULL, *tag = NULL;
    size_t i;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*docs > 1)
            return fail_at(y, mark->line + 1, mark->column + 1, ELM_E_FORMAT,
                           "a second document: a config is one YAML document");
        return ELM_OK;
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        size_t target = ELM_YAML_NONE;
        for (size_t a = y->n_anchors; a-- > 0;)
            if (strcmp(y->text + y->anchors[a].name, name) == 0) {
                target = y->anchors[a].node;
                break;
            }
        if (target == ELM_YAML_NONE) {
            char msg[160];
            snprintf(msg, sizeof msg, "alias '*%.100s' names no anchor before it", name);
            return fail_at(y, mark->line + 1, mark->column + 1, ELM_E_FORMAT, msg);
        }
        if ((i = add_node(y, 0, mark)) == ELM_YAML_NONE) goto nomem;
        elm_ynode copy = y->nodes[target];
        copy.line = y->nodes[i].line;
        copy.col = y->nodes[i].col;
        copy.next = copy.last = ELM_YAML_NONE;
        y->nodes[i] = copy;
        attach(y, stack, *depth, i);
        return ELM_OK;
    }
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
        if ((i = add_node(y, ELM_YAML_SCALAR, mark)) == ELM_YAML_NONE) goto nomem;
        y->nodes[i].quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        y->nodes[i].len = ev->data.scalar.length;
        if ((y->nodes[i].text = add_text(y, ev->data.scalar.value, ev->data.scalar.length)) ==
            ELM_YAML_NONE)
            goto nomem;
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        anchor = seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
        if (*depth == MAX_DEPTH)
            return fail_at(y, mark->line + 1, mark->column + 1, ELM_E_FORMAT,
                           "nested too deeply for a config");
        if ((i = add_node(y, seq ? ELM_YAML_SEQUENCE : ELM_YAML_MAPPING, mark)) == ELM_YAML_NONE)
            goto nomem;
        break;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        (*depth)--;
        return ELM_OK;
    default:
        return ELM_OK;
    }
    if (tag) {
        char msg[200];
        snprintf(msg, sizeof msg, "YAML tags are not supported ('%.100s'); quote a value to "
                 "make it a string", (const char *)tag);
        return fail_at(y, mark->line + 1, mark->column + 1, ELM_E_FORMAT, msg);
    }
    if (anchor && !add_anchor(y, anchor, i)) goto nomem;
    attach(y, stack, *depth, i);
    if (y->nodes[i].kind != ELM_YAML_SCALAR) stack[(*depth)++] = i;
    return ELM_OK;
nomem:
    return elm__fail(ELM_E_NOMEM, "%s: out of memory while parsing", y->origin);
}

int elm__yaml_parse(elm_yaml *y, const char *origin, const char *text, size_t len) {
    memset(y, 0, sizeof *y);
    y->origin = origin;
    y->root = ELM_YAML_NONE;
    if (len > MAX_TEXT)
        return elm__fail(ELM_E_LIMIT, "%s: %zu bytes; a config may hold at most %u bytes", origin,
                         len, MAX_TEXT);
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return elm__fail(ELM_E_NOMEM, "%s: out of memory while parsing", origin);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    size_t stack[MAX_DEPTH];
    int depth = 0, docs = 0, rc = ELM_OK;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = syntax_error(y, &p, text, len);
            break;
        }
        bool end = ev.type == YAML_STREAM_END_EVENT;
        rc = take_event(y, &ev, stack, &depth, &docs);
        yaml_event_delete(&ev);
        if (rc != ELM_OK || end) break;
    }
    yaml_parser_delete(&p);
    if (rc != ELM_OK) elm__yaml_free(y);
    return rc;
}

/* ---- scalars -------------------------------------------------------------- */

typedef enum { S_NULL, S_BOOL, S_INT, S_FLOAT, S_STRING } scalar_kind;

static bool one_of(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return true;
    return false;
}

static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", NULL};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* [-+]? [0-9]+ */
static bool int_syntax(const char *s) {
    if (*s == '+' || *s == '-') s++;
    if (!is_digit(*s)) return false;
    while (is_digit(*s)) s++;
    return *s == '\0';
}

/* [-+]? (.[0-9]+ | [0-9]+ (.[0-9]*)?) ([eE] [-+]? [0-9]+)?, or .inf / .nan */
static bool float_syntax(const char *s) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    static const char *const inf[] = {".inf", ".Inf", ".INF", NULL};
    static const char *const nan[] = {".nan", ".NaN", ".NAN", NULL};
    if (one_of(p, inf) || (p == s && one_of(p, nan))) return true;
    size_t digits = 0;
    while (is_digit(*p)) p++, digits++;
    if (*p == '.')
        for (p++; is_digit(*p); p++) digits++;
    if (digits == 0) return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!is_digit(*p)) return false;
        while (is_digit(*p)) p++;
    }
    return *p == '\0';
}

static scalar_kind classify(const elm_yaml *y, const elm_ynode *n) {
    if (n->quoted) return S_STRING;
    const char *s = elm__yaml_text(y, n);
    if (one_of(s, null_words)) return S_NULL;
    if (one_of(s, true_words) || one_of(s, false_words)) return S_BOOL;
    if (int_syntax(s)) return S_INT;
    if (float_syntax(s)) return S_FLOAT;
    return S_STRING;
}

bool elm__yaml_is_null(const elm_yaml *y, const elm_ynode *n) {
    return n->kind == ELM_YAML_SCALAR && classify(y, n) == S_NULL;
}

void elm__yaml_excerpt(const char *s, size_t len, char *buf, size_t size) {
    size_t n = len < 40 ? len : 40;
    while (n < len && n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    size_t w = 0;
    for (size_t i = 0; i < n && w + 4 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[w++] = c < 0x20 || c == 0x7F ? '?' : (char)c;
    }
    if (n < len && w + 4 < size) {
        memcpy(buf + w, "...", 3);
        w += 3;
    }
    buf[w] = '\0';
}

const char *elm__yaml_describe(const elm_yaml *y, const elm_ynode *n, char *buf, size_t size) {
    if (n->kind == ELM_YAML_SEQUENCE) return "a list";
    if (n->kind == ELM_YAML_MAPPING) return "a mapping";
    char ex[64];
    elm__yaml_excerpt(elm__yaml_text(y, n), n->len, ex, sizeof ex);
    switch (classify(y, n)) {
    case S_NULL: return "null";
    case S_BOOL:
    case S_INT:
    case S_FLOAT: snprintf(buf, size, "%s", ex); break;
    case S_STRING:
        snprintf(buf, size, n->quoted ? "the quoted string \"%s\"" : "'%s'", ex);
        break;
    }
    return buf;
}

/* The C numeric locale for the calling thread while a number is read or
 * written; uselocale() changes nothing for other threads. */
typedef struct c_numeric {
    locale_t c, old;
} c_numeric;

static c_numeric c_numeric_begin(void) {
    c_numeric l = {newlocale(LC_NUMERIC_MASK, "C", (locale_t)0), (locale_t)0};
    if (l.c) l.old = uselocale(l.c);
    return l;
}

static void c_numeric_end(c_numeric l) {
    if (!l.c) return;
    uselocale(l.old);
    freelocale(l.c);
}

bool elm__yaml_parse_double(const char *s, double *v) {
    c_numeric l = c_numeric_begin();
    char *end;
    *v = strtod(s, &end);
    c_numeric_end(l);
    return end != s && *end == '\0';
}

void elm__yaml_format_number(double v, bool float_form, char *buf, size_t size) {
    if (!isfinite(v)) {
        snprintf(buf, size, "%s", isnan(v) ? ".nan" : v > 0 ? ".inf" : "-.inf");
        return;
    }
    c_numeric l = c_numeric_begin();
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* %g turns 150 into "1.5e+02" at 2 digits: below 1e17, print every
     * digit of the integer part instead */
    char sci[40];
    snprintf(sci, sizeof sci, "%.*e", prec - 1, v);
    int exp10 = atoi(strchr(sci, 'e') + 1);
    if (exp10 >= prec && exp10 < 17) prec = exp10 + 1;
    snprintf(buf, size, "%.*g", prec, v);
    c_numeric_end(l);
    if (!float_form || strchr(buf, '.')) return;
    char *e = strchr(buf, 'e');
    size_t n = strlen(buf);
    if (n + 3 > size) return;
    if (!e) {
        memcpy(buf + n, ".0", 3);
        return;
    }
    memmove(e + 2, e, strlen(e) + 1); /* "1e-08" -> "1.0e-08" */
    memcpy(e, ".0", 2);
}

static int type_error(const elm_yaml *y, const elm_ynode *v, const char *sec, const char *key,
                      const char *want) {
    char buf[96];
    return elm__yaml_fail(y, v, ELM_E_INVALID, "'%s' in '%s' must be %s, got %s", key, sec, want,
                          elm__yaml_describe(y, v, buf, sizeof buf));
}

int elm__yaml_number(const elm_yaml *y, const elm_ynode *v, const char *sec, const char *key,
                     bool integer, double *out) {
    const char *want = integer ? "an integer" : "a number";
    if (v->kind != ELM_YAML_SCALAR) return type_error(y, v, sec, key, want);
    scalar_kind k = classify(y, v);
    const char *s = elm__yaml_text(y, v);
    if (k == S_INT && integer) {
        errno = 0;
        long long i = strtoll(s, NULL, 10);
        if (errno == ERANGE || i > EXACT_LL || i < -EXACT_LL)
            return elm__yaml_fail(y, v, ELM_E_INVALID,
                                  "'%s' in '%s' = %s is too large (integers stop at 2^53)", key,
                                  sec, s);
        *out = (double)i + 0.0; /* no negative zero */
        return ELM_OK;
    }
    if (k == S_FLOAT && integer)
        return elm__yaml_fail(y, v, ELM_E_INVALID, "'%s' in '%s' must be an integer (digits only, "
                              "no '.' or exponent), got %s", key, sec, s);
    if (k != S_INT && k != S_FLOAT) return type_error(y, v, sec, key, want);
    const char *p = s + (*s == '+' || *s == '-');
    if (*p == '.' && (p[1] == 'i' || p[1] == 'I'))
        *out = *s == '-' ? -INFINITY : INFINITY;
    else if (*p == '.' && (p[1] == 'n' || p[1] == 'N'))
        *out = NAN;
    else if (!elm__yaml_parse_double(s, out))
        return type_error(y, v, sec, key, want);
    *out += 0.0;
    return ELM_OK;
}

int elm__yaml_bool(const elm_yaml *y, const elm_ynode *v, const char *sec, const char *key,
                   double *out) {
    if (v->kind != ELM_YAML_SCALAR || classify(y, v) != S_BOOL)
        return type_error(y, v, sec, key, "true or false");
    *out = one_of(elm__yaml_text(y, v), true_words) ? 1 : 0;
    return ELM_OK;
}

int elm__yaml_string(const elm_yaml *y, const elm_ynode *v, const char *sec, const char *key,
                     const char **out) {
    if (v->kind != ELM_YAML_SCALAR) return type_error(y, v, sec, key, "a string");
    if (classify(y, v) == S_NULL) {
        *out = "";
        return ELM_OK;
    }
    const char *s = elm__yaml_text(y, v);
    if (strlen(s) != v->len)
        return elm__yaml_fail(y, v, ELM_E_INVALID, "'%s' in '%s' contains a NUL character", key,
                              sec);
    *out = s;
    return ELM_OK;
}

/* ---- enums ----------------------------------------------------------------- */

bool elm__yaml_name_value(const elm_yaml_name *names, const char *name, int *value) {
    for (; names->name; names++)
        if (strcmp(names->name, name) == 0) {
            *value = names->value;
            return true;
        }
    return false;
}

const char *elm__yaml_value_name(const elm_yaml_name *names, int value) {
    for (; names->name; names++)
        if (!names->alias && names->value == value) return names->name;
    return NULL;
}

const char *elm__yaml_name_list(const elm_yaml_name *names, char *buf, size_t size) {
    size_t count = 0, w = 0;
    for (const elm_yaml_name *p = names; p->name; p++) count += !p->alias;
    buf[0] = '\0';
    size_t i = 0;
    for (const elm_yaml_name *p = names; p->name && w < size; p++) {
        if (p->alias) continue;
        const char *sep = i == 0 ? "" : i + 1 == count ? (count > 2 ? ", or " : " or ") : ", ";
        w += (size_t)snprintf(buf + w, size - w, "%s%s", sep, p->name);
        i++;
    }
    return buf;
}

int elm__yaml_enum(const elm_yaml *y, const elm_ynode *v, const char *sec, const char *key,
                   const elm_yaml_name *names, double *out) {
    char list[160];
    int value;
    if (v->kind != ELM_YAML_SCALAR || classify(y, v) == S_NULL ||
        strlen(elm__yaml_text(y, v)) != v->len ||
        !elm__yaml_name_value(names, elm__yaml_text(y, v), &value)) {
        char want[180];
        snprintf(want, sizeof want, "%s", elm__yaml_name_list(names, list, sizeof list));
        return type_error(y, v, sec, key, want);
    }
    *out = value;
    return ELM_OK;
}

/* ---- hyper-parameters ----------------------------------------------------- */

static const elm_yaml_name formulations[] = {{"v1", ELM_V1, false}, {"v2", ELM_V2, false},
                                             {NULL, 0, false}};
static const elm_yaml_name activations[] = {{"relu", ELM_RELU, false}, {"silu", ELM_SILU, false},
                                            {NULL, 0, false}};
/* The official model_config.json spells routings "neuronio_routing" and
 * "random_routing"; null (no routing) is handled by the reader. */
static const elm_yaml_name routings[] = {
    {"none", ELM_ROUTING_NONE, false},          {"random", ELM_ROUTING_RANDOM, false},
    {"neuronio", ELM_ROUTING_NEURONIO, false},  {"random_routing", ELM_ROUTING_RANDOM, true},
    {"neuronio_routing", ELM_ROUTING_NEURONIO, true}, {NULL, 0, false}};

elm_value_type elm__yaml_param_type(elm_param key) {
    switch (key) {
    case ELM_FORMULATION:
    case ELM_MLP_ACTIVATION:
    case ELM_ROUTING: return ELM_VALUE_ENUM;
    case ELM_LEARN_TAU_M: return ELM_VALUE_BOOL;
    case ELM_NUM_INPUT:
    case ELM_NUM_OUTPUT:
    case ELM_NUM_MEMORY:
    case ELM_MLP_NUM_LAYERS:
    case ELM_MLP_HIDDEN_SIZE:
    case ELM_NUM_BRANCH:
    case ELM_SYNAPSES_PER_BRANCH: return ELM_VALUE_INTEGER;
    default: return ELM_VALUE_NUMBER;
    }
}

const elm_yaml_name *elm__yaml_param_names(elm_param key) {
    return key == ELM_FORMULATION      ? formulations
           : key == ELM_MLP_ACTIVATION ? activations
           : key == ELM_ROUTING        ? routings
                                       : NULL;
}

/* ---- the same tables, public: what a config editor or a binding needs to
 * show and parse model keys without its own copy of them ---------------- */

ELM_API int elm_param_type(elm_param key, elm_value_type *type) {
    if (!type) return elm__fail(ELM_E_NULL, "elm_param_type: type is NULL");
    if (!elm_param_name(key)) return elm__fail(ELM_E_UNKNOWN_NAME, "elm_param_type: unknown key %d", (int)key);
    *type = elm__yaml_param_type(key);
    return ELM_OK;
}

ELM_API const char *elm_param_value_name(elm_param key, int value) {
    const elm_yaml_name *names = elm_param_name(key) ? elm__yaml_param_names(key) : NULL;
    return names ? elm__yaml_value_name(names, value) : NULL;
}

ELM_API int elm_param_value_from_name(elm_param key, const char *name, int *value) {
    static const char fn[] = "elm_param_value_from_name";
    if (!name || !value) return elm__fail(ELM_E_NULL, "%s: NULL argument", fn);
    if (!elm_param_name(key)) return elm__fail(ELM_E_UNKNOWN_NAME, "%s: unknown key %d", fn, (int)key);
    const elm_yaml_name *names = elm__yaml_param_names(key);
    if (!names)
        return elm__fail(ELM_E_INVALID, "%s: %s takes a number, not a name", fn, elm_param_name(key));
    if (!elm__yaml_name_value(names, name, value)) {
        char list[160];
        return elm__fail(ELM_E_UNKNOWN_NAME, "%s: %s is %s, not '%s'", fn, elm_param_name(key),
                         elm__yaml_name_list(names, list, sizeof list), name);
    }
    return ELM_OK;
}

/* Keys whose value 0 means "unset" (num_input, num_output), "derived"
 * (num_branch, mlp_hidden_size) or "no routing": null means that 0, as
 * None does in the reference. */
static bool null_is_zero(elm_param key) {
    return key == ELM_NUM_INPUT || key == ELM_NUM_OUTPUT || key == ELM_NUM_BRANCH ||
           key == ELM_MLP_HIDDEN_SIZE || key == ELM_ROUTING;
}

static int read_param(const elm_yaml *y, const elm_ynode *val, const char *name, elm_param p,
                      elm_config *cfg) {
    if (null_is_zero(p) && elm__yaml_is_null(y, val)) {
        cfg->v[p] = 0; /* below the lower bound of num_input/num_output: "unset" */
        return ELM_OK;
    }
    elm_value_type t = elm__yaml_param_type(p);
    double v;
    int rc;
    if (t == ELM_VALUE_ENUM)
        rc = elm__yaml_enum(y, val, "model", name, elm__yaml_param_names(p), &v);
    else if (t == ELM_VALUE_BOOL)
        rc = elm__yaml_bool(y, val, "model", name, &v);
    else
        rc = elm__yaml_number(y, val, "model", name, t == ELM_VALUE_INTEGER, &v);
    if (rc != ELM_OK) return rc;
    double lo, hi;
    elm_config_bounds(p, &lo, &hi);
    if (!(v >= lo && v <= hi)) {
        char a[32], b[32], got[96];
        elm__yaml_format_number(lo, false, a, sizeof a);
        elm__yaml_format_number(hi, false, b, sizeof b);
        return elm__yaml_fail(y, val, ELM_E_INVALID,
                              "'%s' in 'model' must be %s in [%s, %s], got %s", name,
                              t == ELM_VALUE_INTEGER ? "an integer" : "a number", a, b,
                              elm__yaml_describe(y, val, got, sizeof got));
    }
    rc = elm_config_set(cfg, p, v);
    if (rc != ELM_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", elm_last_error());
        return elm__yaml_fail(y, val, rc, "'%s' in 'model': %s", name, why);
    }
    return ELM_OK;
}

int elm__yaml_read_model(const elm_yaml *y, const elm_ynode *map, elm_config *cfg) {
    const elm_ynode *seen[ELM_PARAM_LAST + 1] = {0};
    for (const elm_ynode *key = elm__ynode(y, map->first); key;) {
        const elm_ynode *val = elm__ynode(y, key->next);
        if (key->kind != ELM_YAML_SCALAR)
            return elm__yaml_fail(y, key, ELM_E_FORMAT, "a key in 'model' must be a name, got %s",
                                  key->kind == ELM_YAML_SEQUENCE ? "a list" : "a mapping");
        const char *name = elm__yaml_text(y, key);
        elm_param p;
        if (strlen(name) != key->len || elm_param_from_name(name, &p) != ELM_OK) {
            char ex[64];
            elm__yaml_excerpt(name, key->len, ex, sizeof ex);
            return elm__yaml_fail(y, key, ELM_E_UNKNOWN_NAME, "unknown key '%s' in 'model'", ex);
        }
        if (seen[p])
            return elm__yaml_fail(y, key, ELM_E_FORMAT,
                                  "duplicate key '%s' in 'model' (first given at line %zu)", name,
                                  seen[p]->line);
        seen[p] = key;
        int rc = read_param(y, val, name, p, cfg);
        if (rc != ELM_OK) return rc;
        key = elm__ynode(y, val->next);
    }
    return ELM_OK;
}

int elm__yaml_root(const elm_yaml *y, const char *what, const elm_ynode **root) {
    const elm_ynode *r = elm__ynode(y, y->root);
    if (!r || elm__yaml_is_null(y, r))
        return elm__yaml_fail(y, r, ELM_E_FORMAT, "empty document: expected %s", what);
    if (r->kind != ELM_YAML_MAPPING) {
        char buf[96];
        return elm__yaml_fail(y, r, ELM_E_FORMAT, "expected %s at the top level, got %s", what,
                              elm__yaml_describe(y, r, buf, sizeof buf));
    }
    *root = r;
    return ELM_OK;
}

/* ---- writing -------------------------------------------------------------- */

void elm__ybuf_free(elm_ybuf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

static bool ybuf_reserve(elm_ybuf *b, size_t extra) {
    if (b->failed) return false;
    size_t cap;
    if (extra > SIZE_MAX - b->n - 1 || !next_cap(b->cap, b->n + extra + 1, 1, &cap)) {
        b->failed = true;
        return false;
    }
    if (cap > b->cap) {
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return false;
        }
        b->p = p;
        b->cap = cap;
    }
    return true;
}

void elm__ybuf_printf(elm_ybuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !ybuf_reserve(b, (size_t)n)) {
        b->failed = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

/* Length of the UTF-8 sequence starting with lead byte c (s is valid). */
static size_t utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static uint32_t utf8_decode(const unsigned char *s, size_t n) {
    static const unsigned char lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t cp = s[0] & lead_mask[n];
    for (size_t i = 1; i < n; i++) cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

void elm__ybuf_quoted(elm_ybuf *b, const char *s) {
    elm__ybuf_printf(b, "\"");
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_len(*p);
        uint32_t cp = utf8_decode(p, n);
        if (cp == '"' || cp == '\\')
            elm__ybuf_printf(b, "\\%c", (char)cp);
        else if (cp == '\n')
            elm__ybuf_printf(b, "\\n");
        else if (cp == '\t')
            elm__ybuf_printf(b, "\\t");
        else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
            elm__ybuf_printf(b, "\\x%02X", (unsigned)cp);
        /* line and paragraph separators would be folded inside quotes by a
         * YAML 1.1 reader; a BOM and the non-characters are not printable */
        else if (cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF)
            elm__ybuf_printf(b, "\\u%04X", (unsigned)cp);
        else
            elm__ybuf_printf(b, "%.*s", (int)n, (const char *)p);
        p += n;
    }
    elm__ybuf_printf(b, "\"");
}

void elm__yaml_write_model(elm_ybuf *b, const elm_config *cfg, const char *indent) {
    for (int k = 1; k <= ELM_PARAM_LAST; k++) {
        elm_param p = (elm_param)k;
        double v = cfg->v[k];
        char num[40];
        const char *text = num;
        switch (elm__yaml_param_type(p)) {
        case ELM_VALUE_ENUM:
            text = elm__yaml_value_name(elm__yaml_param_names(p), (int)v);
            if (!text) {
                elm__yaml_format_number(v, false, num, sizeof num);
                text = num;
            }
            break;
        case ELM_VALUE_BOOL: text = v != 0 ? "true" : "false"; break;
        case ELM_VALUE_INTEGER:
            if (v == 0 && (p == ELM_NUM_INPUT || p == ELM_NUM_OUTPUT))
                text = "null"; /* unset */
            else
                elm__yaml_format_number(v, false, num, sizeof num);
            break;
        default: elm__yaml_format_number(v, true, num, sizeof num); break;
        }
        elm__ybuf_printf(b, "%s%s: %s\n", indent, elm_param_name(p), text);
    }
}

int elm__yaml_output(const char *fn, elm_ybuf *b, char *dst, size_t capacity, size_t *size) {
    if (b->failed || !ybuf_reserve(b, 0)) {
        elm__ybuf_free(b);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    }
    size_t need = b->n + 1;
    *size = need;
    int rc = ELM_OK;
    if (dst && capacity < need)
        rc = elm__fail(ELM_E_INVALID, "%s: the text needs %zu bytes, dst holds %zu", fn, need,
                       capacity);
    else if (dst)
        memcpy(dst, b->p, need);
    elm__ybuf_free(b);
    return rc;
}

/* ---- files ---------------------------------------------------------------- */

int elm__yaml_read_file(const char *fn, const char *path, char **text, size_t *len) {
    char where[300];
    snprintf(where, sizeof where, "%s: '%s'", fn, path);
    void *data;
    int rc = elm__read_file(path, MAX_TEXT, &data, len, where);
    if (rc == ELM_OK) *text = data;
    return rc;
}

int elm__yaml_save(const char *fn, const char *path, elm_ybuf *b) {
    if (b->failed) {
        elm__ybuf_free(b);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    }
    int rc = elm__write_file_atomic(path, b->p ? b->p : "", b->n, fn);
    elm__ybuf_free(b);
    return rc;
}

bool elm__utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == 0) return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        uint32_t cp = utf8_decode(s + i, len);
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* ---- model configs (elm.h section 12) -------------------------------------- */

static int model_from_text(const char *origin, const char *text, size_t len, elm_config **out) {
    elm_yaml y;
    int rc = elm__yaml_parse(&y, origin, text, len);
    if (rc != ELM_OK) return rc;
    const elm_ynode *root = NULL;
    elm_config *cfg = NULL;
    rc = elm__yaml_root(&y, "a mapping of hyper-parameters", &root);
    if (rc == ELM_OK) rc = elm_config_create(&cfg);
    if (rc == ELM_OK) rc = elm__yaml_read_model(&y, root, cfg);
    elm__yaml_free(&y);
    if (rc != ELM_OK) {
        elm_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return ELM_OK;
}

ELM_API int elm_config_from_yaml(const char *text, size_t len, elm_config **out) {
    if (!text || !out) return elm__fail(ELM_E_NULL, "elm_config_from_yaml: NULL argument");
    return model_from_text("<string>", text, len, out);
}

ELM_API int elm_config_load_yaml(const char *path, elm_config **out) {
    if (!path || !out) return elm__fail(ELM_E_NULL, "elm_config_load_yaml: NULL argument");
    char *text;
    size_t len;
    int rc = elm__yaml_read_file("elm_config_load_yaml", path, &text, &len);
    if (rc != ELM_OK) return rc;
    rc = model_from_text(path, text, len, out);
    free(text);
    return rc;
}

ELM_API int elm_config_to_yaml(const elm_config *cfg, char *dst, size_t capacity, size_t *size) {
    if (!cfg || !size) return elm__fail(ELM_E_NULL, "elm_config_to_yaml: NULL argument");
    elm_ybuf b = {0};
    elm__yaml_write_model(&b, cfg, "");
    return elm__yaml_output("elm_config_to_yaml", &b, dst, capacity, size);
}

ELM_API int elm_config_save_yaml(const elm_config *cfg, const char *path) {
    if (!cfg || !path) return elm__fail(ELM_E_NULL, "elm_config_save_yaml: NULL argument");
    elm_ybuf b = {0};
    elm__yaml_write_model(&b, cfg, "");
    return elm__yaml_save("elm_config_save_yaml", path, &b);
}
