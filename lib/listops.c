/* LRA ListOps (Nangia & Bowman 2018; Tay et al. 2021): nested list
 * operations on the digits 0-9, e.g. [MAX 2 9 [MIN 4 7 ] 0 ] = 9. A sample
 * is the token sequence, one-hot over ELM_LISTOPS_VOCAB channels, and its
 * value as the label. Two sources: a TSV file in LRA's layout
 * ("Source\tTarget", parentheses in the source that LRA's pipeline drops),
 * and a generator that follows LRA's lra_benchmarks/data/listops.py
 * definition. Both keep the tokens as uint8 ids, about one byte per step. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "source.h"

/* Token ids, which are also the one-hot channels: 0-9 the digits (a
 * digit's id is its value), then the operators and the closing bracket. */
enum {
    TOK_MIN = 10,
    TOK_MAX = 11,
    TOK_MED = 12,
    TOK_SM = 13, /* sum modulo 10 */
    TOK_END = 14 /* "]" */
};

/* The longest sequence either source accepts: one sample is then 60 MB of
 * floats (T * 15 * 4 bytes). */
#define LISTOPS_MAX_LENGTH 1000000

/* LRA's generator: maximum tree depth (the root is depth 1, so operators
 * sit at depths 1..9 and leaves at up to 10), arguments per operator
 * uniform in [2, 10], an operator with probability 1/4 below the maximum
 * depth. */
#define GEN_MAX_DEPTH 10
#define GEN_MIN_ARGS 2
#define GEN_MAX_ARGS 10
/* Draws allowed for one sample before the length range is declared too
 * rare (at LRA's 500..2000, about 1 draw in 12 is kept). */
#define GEN_MAX_ATTEMPTS 1000000

static const char *const OP_NAMES[4] = {"[MIN", "[MAX", "[MED", "[SM"};

/* ---------------------------------------------------------------------------
 * Evaluation */

/* The value of an operator over args (n >= 1 values in 0..9). MED is LRA's
 * int(np.median(args)): the mean of the two middle values for an even
 * count, truncated. */
static int apply_op(int op, const uint8_t *args, size_t n) {
    if (op == TOK_SM) {
        size_t sum = 0;
        for (size_t k = 0; k < n; k++) sum += args[k];
        return (int)(sum % 10);
    }
    size_t count[10] = {0};
    for (size_t k = 0; k < n; k++) count[args[k]]++;
    int lo = 0, hi = 9;
    while (!count[lo]) lo++;
    while (!count[hi]) hi--;
    if (op == TOK_MIN) return lo;
    if (op == TOK_MAX) return hi;
    /* The values of sorted ranks (n - 1) / 2 and n / 2. */
    size_t r1 = (n - 1) / 2, r2 = n / 2, below = 0;
    int v1 = -1, v2 = -1;
    for (int v = 0; v < 10 && v2 < 0; v++) {
        below += count[v];
        if (v1 < 0 && r1 < below) v1 = v;
        if (r2 < below) v2 = v;
    }
    return (v1 + v2) / 2;
}

typedef struct eval_frame {
    uint8_t op;
    size_t base;  /* its first argument in the value stack */
    size_t token; /* where it opened, for messages */
} eval_frame;

/* Scratch for evaluate(): both stacks need at most n entries for n
 * tokens. */
typedef struct eval_scratch {
    uint8_t *values;
    eval_frame *frames;
    size_t cap;
} eval_scratch;

static int scratch_reserve(eval_scratch *s, size_t n) {
    if (n <= s->cap) return 0;
    uint8_t *v = realloc(s->values, n);
    if (v) s->values = v;
    eval_frame *f = realloc(s->frames, n * sizeof *f);
    if (f) s->frames = f;
    if (!v || !f) return -1;
    s->cap = n;
    return 0;
}

static void scratch_free(eval_scratch *s) {
    free(s->values);
    free(s->frames);
}

/* Evaluates tokens (n >= 1) as one expression: expr = digit | op expr+ "]".
 * Returns the value in 0..9, or -1 with *why (a message fragment) filled. */
static int evaluate(const uint8_t *tok, size_t n, eval_scratch *s, char *why, size_t why_n) {
    size_t nv = 0, nf = 0;
    for (size_t k = 0; k < n; k++) {
        uint8_t t = tok[k];
        if (nf == 0 && nv == 1) {
            if (t == TOK_END)
                snprintf(why, why_n, "unbalanced brackets: ']' at token %zu closes nothing", k + 1);
            else
                snprintf(why, why_n, "the expression ends at token %zu but more tokens follow", k);
            return -1;
        }
        if (t < 10) {
            s->values[nv++] = t;
        } else if (t != TOK_END) {
            s->frames[nf++] = (eval_frame){t, nv, k};
        } else if (nf == 0) {
            snprintf(why, why_n, "unbalanced brackets: ']' at token %zu closes nothing", k + 1);
            return -1;
        } else {
            eval_frame f = s->frames[--nf];
            if (nv == f.base) {
                snprintf(why, why_n, "%s at token %zu has no arguments", OP_NAMES[f.op - TOK_MIN],
                         f.token + 1);
                return -1;
            }
            s->values[f.base] = (uint8_t)apply_op(f.op, s->values + f.base, nv - f.base);
            nv = f.base + 1;
        }
    }
    if (nf > 0) {
        snprintf(why, why_n, "unbalanced brackets: %s at token %zu is never closed (%zu open at the end)",
                 OP_NAMES[s->frames[nf - 1].op - TOK_MIN], s->frames[nf - 1].token + 1, nf);
        return -1;
    }
    if (nv != 1) { /* only for n = 0: extra tokens are caught above */
        snprintf(why, why_n, "empty expression");
        return -1;
    }
    return s->values[0];
}

/* ---------------------------------------------------------------------------
 * The source: samples stored back to back as token ids. */

typedef struct listops_source {
    uint8_t *tokens; /* all samples' tokens */
    size_t *offsets; /* (N + 1): sample i is tokens[offsets[i] .. offsets[i+1]) */
    uint8_t *labels; /* (N) in 0..9 */
    size_t N, T;
    size_t cap_tokens, cap_samples; /* allocated while growing */
} listops_source;

static void listops_free(void *self) {
    listops_source *s = self;
    if (!s) return;
    free(s->tokens);
    free(s->offsets);
    free(s->labels);
    free(s);
}

static int listops_read(void *self, size_t i, uint64_t key, float *x, float *target,
                        int32_t *labels, int64_t *length) {
    (void)key, (void)target;
    const listops_source *s = self;
    const uint8_t *tok = s->tokens + s->offsets[i];
    size_t n = s->offsets[i + 1] - s->offsets[i];
    for (size_t t = 0; t < n; t++) x[t * ELM_LISTOPS_VOCAB + tok[t]] = 1.0f;
    *length = (int64_t)n;
    if (labels) labels[0] = s->labels[i];
    return ELM_OK;
}

static const elm__source_vt listops_vt = {"listops", listops_read, listops_free};

/* Room for one more sample of n tokens. Returns 0 or -1 (out of memory;
 * the samples so far stay intact). */
static int source_reserve(listops_source *s, size_t n) {
    size_t used = s->N ? s->offsets[s->N] : 0;
    if (n > s->cap_tokens - used) {
        size_t cap = s->cap_tokens ? s->cap_tokens : 1 << 16;
        while (cap - used < n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        uint8_t *t = realloc(s->tokens, cap);
        if (!t) return -1;
        s->tokens = t;
        s->cap_tokens = cap;
    }
    if (s->N == s->cap_samples) {
        size_t cap = s->cap_samples ? 2 * s->cap_samples : 1024;
        size_t *o = realloc(s->offsets, (cap + 1) * sizeof *o);
        if (!o) return -1;
        s->offsets = o;
        o[0] = 0;
        uint8_t *l = realloc(s->labels, cap);
        if (!l) return -1;
        s->labels = l;
        s->cap_samples = cap;
    }
    return 0;
}

/* Appends one sample (room reserved by source_reserve). */
static void source_append(listops_source *s, const uint8_t *tok, size_t n, int label) {
    size_t used = s->offsets[s->N];
    memcpy(s->tokens + used, tok, n);
    s->offsets[s->N + 1] = used + n;
    s->labels[s->N] = (uint8_t)label;
    s->N++;
}

/* ---------------------------------------------------------------------------
 * TSV reader */

#define OPEN_FN "elm_dataset_open_listops"

typedef struct tsv_reader {
    const char *path;
    size_t line;      /* 1-based */
    size_t limit;     /* most tokens per sample */
    uint8_t *tok;     /* the current line's tokens */
    size_t tok_cap;
    eval_scratch scratch;
} tsv_reader;

static int token_id(const char *w, size_t n) {
    if (n == 1 && w[0] >= '0' && w[0] <= '9') return w[0] - '0';
    if (n == 1 && w[0] == ']') return TOK_END;
    for (int k = 0; k < 4; k++)
        if (strlen(OP_NAMES[k]) == n && memcmp(w, OP_NAMES[k], n) == 0) return TOK_MIN + k;
    return -1;
}

/* Whitespace (LRA splits on it) and the parentheses that LRA deletes. */
static int is_separator(char c) {
    return c == ' ' || c == '(' || c == ')' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Splits src into token ids in r->tok. Whitespace and parentheses separate
 * tokens; the parentheses must balance. */
static int tokenize(tsv_reader *r, const char *src, size_t *n_out) {
    size_t n = 0, parens = 0;
    const char *p = src;
    for (;;) {
        while (is_separator(*p)) {
            if (*p == '(') parens++;
            if (*p == ')' && parens-- == 0)
                return elm__fail(ELM_E_FORMAT, "%s: %s:%zu: unbalanced parentheses: ')' at column %zu closes nothing",
                                 OPEN_FN, r->path, r->line, (size_t)(p - src) + 1);
            p++;
        }
        if (!*p) break;
        const char *w = p;
        while (*p && !is_separator(*p)) p++;
        int id = token_id(w, (size_t)(p - w));
        if (id < 0)
            return elm__fail(ELM_E_FORMAT,
                             "%s: %s:%zu: unknown token \"%.*s\" at column %zu (ListOps tokens: 0-9 [MIN [MAX [MED [SM ])",
                             OPEN_FN, r->path, r->line, (int)((p - w) > 40 ? 40 : (p - w)), w,
                             (size_t)(w - src) + 1);
        if (n == r->limit)
            return elm__fail(ELM_E_LIMIT, "%s: %s:%zu: the sequence is longer than %s = %zu tokens",
                             OPEN_FN, r->path, r->line,
                             r->limit == LISTOPS_MAX_LENGTH ? "the limit" : "max_length", r->limit);
        if (n == r->tok_cap) {
            size_t cap = r->tok_cap ? 2 * r->tok_cap : 4096;
            uint8_t *t = realloc(r->tok, cap);
            if (!t) return elm__fail(ELM_E_NOMEM, "%s: out of memory", OPEN_FN);
            r->tok = t;
            r->tok_cap = cap;
        }
        r->tok[n++] = (uint8_t)id;
    }
    if (parens)
        return elm__fail(ELM_E_FORMAT, "%s: %s:%zu: unbalanced parentheses: %zu '(' never closed",
                         OPEN_FN, r->path, r->line, parens);
    if (n == 0)
        return elm__fail(ELM_E_FORMAT, "%s: %s:%zu: empty source", OPEN_FN, r->path, r->line);
    *n_out = n;
    return ELM_OK;
}

/* The Target column: a decimal integer in [0, 10). */
static int parse_target(const tsv_reader *r, const char *s, int *label) {
    const char *d = s + (s[0] == '-');
    if (!*d || strspn(d, "0123456789") != strlen(d))
        return elm__fail(ELM_E_FORMAT, "%s: %s:%zu: target \"%.20s\" is not an integer", OPEN_FN,
                         r->path, r->line, s);
    d += strspn(d, "0");
    if (s[0] == '-' || strlen(d) > 1)
        return elm__fail(ELM_E_INVALID, "%s: %s:%zu: target %.20s is outside [0, 10)", OPEN_FN,
                         r->path, r->line, s);
    *label = *d ? *d - '0' : 0;
    return ELM_OK;
}

/* One data line (its newline removed) appended to s. */
static int parse_line(tsv_reader *r, char *line, listops_source *s) {
    char *tab = strchr(line, '\t');
    if (!tab)
        return elm__fail(ELM_E_FORMAT, "%s: %s:%zu: no tab between Source and Target", OPEN_FN,
                         r->path, r->line);
    *tab = '\0';
    int label = 0, rc = parse_target(r, tab + 1, &label);
    size_t n = 0;
    if (rc == ELM_OK) rc = tokenize(r, line, &n);
    if (rc != ELM_OK) return rc;
    if (scratch_reserve(&r->scratch, n) != 0)
        return elm__fail(ELM_E_NOMEM, "%s: out of memory", OPEN_FN);
    char why[160];
    int value = evaluate(r->tok, n, &r->scratch, why, sizeof why);
    if (value < 0)
        return elm__fail(ELM_E_FORMAT, "%s: %s:%zu: %s", OPEN_FN, r->path, r->line, why);
    if (value != label)
        return elm__fail(ELM_E_INVALID, "%s: %s:%zu: target %d but the expression evaluates to %d",
                         OPEN_FN, r->path, r->line, label, value);
    if (source_reserve(s, n) != 0)
        return elm__fail(ELM_E_NOMEM, "%s: out of memory", OPEN_FN);
    source_append(s, r->tok, n, label);
    return ELM_OK;
}

/* Strips "\n" and a "\r" before it (Python's csv module ends rows with
 * "\r\n"). */
static void chomp(char *line, ssize_t *len) {
    if (*len > 0 && line[*len - 1] == '\n') line[--*len] = '\0';
    if (*len > 0 && line[*len - 1] == '\r') line[--*len] = '\0';
}

static int read_tsv(FILE *f, tsv_reader *r, listops_source *s) {
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int rc = ELM_OK;
    while (rc == ELM_OK && (len = getline(&line, &line_cap, f)) >= 0) {
        r->line++;
        chomp(line, &len);
        if ((size_t)len != strlen(line))
            rc = elm__fail(ELM_E_FORMAT, "%s: %s:%zu: NUL byte in a text line", OPEN_FN, r->path,
                           r->line);
        else if (r->line > 1)
            rc = parse_line(r, line, s);
        else if (strcmp(line, "Source\tTarget") != 0)
            rc = elm__fail(ELM_E_FORMAT, "%s: %s:1: the header must be \"Source<TAB>Target\", not \"%.40s\"",
                           OPEN_FN, r->path, line);
    }
    free(line);
    if (rc != ELM_OK) return rc;
    if (ferror(f))
        return elm__fail(ELM_E_IO, "%s: %s: read failed after line %zu", OPEN_FN, r->path, r->line);
    if (r->line == 0)
        return elm__fail(ELM_E_FORMAT, "%s: %s: empty file (expected the header \"Source<TAB>Target\")",
                         OPEN_FN, r->path);
    if (s->N == 0)
        return elm__fail(ELM_E_FORMAT, "%s: %s: no samples after the header", OPEN_FN, r->path);
    return ELM_OK;
}

static size_t longest(const listops_source *s) {
    size_t T = 0;
    for (size_t i = 0; i < s->N; i++)
        if (s->offsets[i + 1] - s->offsets[i] > T) T = s->offsets[i + 1] - s->offsets[i];
    return T;
}

ELM_API int elm_dataset_open_listops(const char *path, size_t max_length, elm_dataset **out) {
    if (!out) return elm__fail(ELM_E_NULL, "%s: out is NULL", OPEN_FN);
    if (!path) return elm__fail(ELM_E_NULL, "%s: path is NULL", OPEN_FN);
    if (max_length > LISTOPS_MAX_LENGTH)
        return elm__fail(ELM_E_INVALID, "%s: max_length = %zu is above the limit of %d tokens",
                         OPEN_FN, max_length, LISTOPS_MAX_LENGTH);
    FILE *f = fopen(path, "rb");
    if (!f) return elm__fail(ELM_E_IO, "%s: cannot open %s: %s", OPEN_FN, path, strerror(errno));
    listops_source *s = calloc(1, sizeof *s);
    tsv_reader r = {.path = path, .limit = max_length ? max_length : LISTOPS_MAX_LENGTH};
    int rc = s ? read_tsv(f, &r, s) : elm__fail(ELM_E_NOMEM, "%s: out of memory", OPEN_FN);
    fclose(f);
    free(r.tok);
    scratch_free(&r.scratch);
    if (rc != ELM_OK) {
        listops_free(s);
        return rc;
    }
    elm__source_shape shape = {
        .N = s->N,
        .T = max_length ? max_length : longest(s),
        .n_in = ELM_LISTOPS_VOCAB,
        .n_label = 1,
    };
    s->T = shape.T;
    return elm__dataset_from_source(OPEN_FN, &listops_vt, s, shape, out);
}

/* ---------------------------------------------------------------------------
 * Generator */

#define GEN_FN "elm_dataset_generate_listops"

typedef struct gen_state {
    elm_rng rng;
    uint8_t *tok; /* (max_length) */
    size_t n, max_length;
} gen_state;

/* Appends a random tree at `depth` (root = 1) in prefix order, as LRA's
 * generate_tree draws it. Returns 0, or -1 as soon as the sequence passes
 * max_length (such a draw is rejected whole, so stopping early changes
 * nothing but the time spent). */
static int gen_tree(gen_state *g, int depth) {
    if (g->n == g->max_length) return -1;
    if (depth >= GEN_MAX_DEPTH || elm__rng_below(&g->rng, 4) != 0) {
        g->tok[g->n++] = (uint8_t)elm__rng_below(&g->rng, 10);
        return 0;
    }
    int args = GEN_MIN_ARGS + (int)elm__rng_below(&g->rng, GEN_MAX_ARGS - GEN_MIN_ARGS + 1);
    g->tok[g->n++] = (uint8_t)(TOK_MIN + elm__rng_below(&g->rng, 4));
    for (int k = 0; k < args; k++)
        if (gen_tree(g, depth + 1) != 0) return -1;
    if (g->n == g->max_length) return -1;
    g->tok[g->n++] = TOK_END;
    return 0;
}

/* Draws trees for sample i until one has [min_length, max_length] tokens.
 * Each sample has its own stream, a function of (seed, i). Returns its
 * token count, or 0 after GEN_MAX_ATTEMPTS draws. */
static size_t gen_sample(gen_state *g, uint64_t seed, size_t i, size_t min_length) {
    elm__rng_seed(&g->rng, elm__mix64(seed ^ elm__mix64((uint64_t)i)));
    for (long attempt = 0; attempt < GEN_MAX_ATTEMPTS; attempt++) {
        g->n = 0;
        if (gen_tree(g, 1) == 0 && g->n >= min_length) return g->n;
    }
    return 0;
}

static int generate(listops_source *s, size_t N, uint64_t seed, size_t min_length,
                    size_t max_length) {
    gen_state g = {.max_length = max_length};
    eval_scratch scratch = {0};
    g.tok = malloc(max_length);
    int rc = ELM_OK;
    if (!g.tok || scratch_reserve(&scratch, max_length) != 0)
        rc = elm__fail(ELM_E_NOMEM, "%s: out of memory", GEN_FN);
    for (size_t i = 0; i < N && rc == ELM_OK; i++) {
        size_t n = gen_sample(&g, seed, i, min_length);
        char why[160];
        int value = n ? evaluate(g.tok, n, &scratch, why, sizeof why) : -1;
        if (n == 0)
            rc = elm__fail(ELM_E_LIMIT,
                           "%s: no expression of %zu..%zu tokens in %d draws for sample %zu: "
                           "such lengths are too rare under the task's distribution",
                           GEN_FN, min_length, max_length, GEN_MAX_ATTEMPTS, i);
        else if (value < 0)
            rc = elm__fail(ELM_E_INTERNAL, "%s: generated sample %zu is malformed: %s", GEN_FN, i, why);
        else if (source_reserve(s, n) != 0)
            rc = elm__fail(ELM_E_NOMEM, "%s: out of memory", GEN_FN);
        else
            source_append(s, g.tok, n, value);
    }
    free(g.tok);
    scratch_free(&scratch);
    return rc;
}

ELM_API int elm_dataset_generate_listops(size_t N, uint64_t seed, size_t min_length,
                                         size_t max_length, elm_dataset **out) {
    if (!out) return elm__fail(ELM_E_NULL, "%s: out is NULL", GEN_FN);
    if (N == 0) return elm__fail(ELM_E_INVALID, "%s: N must be >= 1", GEN_FN);
    if (min_length < 1 || min_length > max_length || max_length > LISTOPS_MAX_LENGTH)
        return elm__fail(ELM_E_INVALID,
                         "%s: lengths [%zu, %zu] must satisfy 1 <= min_length <= max_length <= %d",
                         GEN_FN, min_length, max_length, LISTOPS_MAX_LENGTH);
    listops_source *s = calloc(1, sizeof *s);
    int rc = s ? generate(s, N, seed, min_length, max_length)
               : elm__fail(ELM_E_NOMEM, "%s: out of memory", GEN_FN);
    if (rc != ELM_OK) {
        listops_free(s);
        return rc;
    }
    elm__source_shape shape = {
        .N = N, .T = max_length, .n_in = ELM_LISTOPS_VOCAB, .n_label = 1,
    };
    s->T = max_length;
    return elm__dataset_from_source(GEN_FN, &listops_vt, s, shape, out);
}
