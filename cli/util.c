/* Helpers shared by the subcommands: error reporting, number parsing,
 * paths, the clock. */
#include "cli.h"

#include <elm.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_lib_error(const char *what, int rc) {
    const char *msg = elm_last_error();
    if (msg && *msg)
        fprintf(stderr, "elm: %s: %s\n", what, msg);
    else
        fprintf(stderr, "elm: %s: %s\n", what, elm_strerror(rc));
    return CLI_FAIL;
}

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("elm: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "elm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'elm %s --help'.\n", cmd);
    va_end(ap);
    return CLI_USAGE;
}

int cli_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (!s || !isdigit((unsigned char)s[0])) return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = (uint64_t)v;
    return 0;
}

int cli_has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    if (k > n) return 0;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)s[n - k + i]) != tolower((unsigned char)suffix[i])) return 0;
    return 1;
}

char *cli_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

char *cli_stem(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    /* a leading dot is part of the name (".hidden"), not an extension */
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    return strndup(base, n);
}

char *cli_join(const char *dir, const char *name) {
    if (name[0] == '/' || !dir || !*dir) return strdup(name);
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}

char *cli_sibling(const char *path, const char *ext) {
    if (!strchr(path, '/')) {
        char *stem = cli_stem(path), *s = NULL;
        size_t n = stem ? strlen(stem) + strlen(ext) + 1 : 0;
        if (stem && (s = malloc(n))) snprintf(s, n, "%s%s", stem, ext);
        free(stem);
        return s;
    }
    char *dir = cli_dirname(path), *stem = cli_stem(path), *s = NULL;
    if (dir && stem) {
        size_t n = strlen(dir) + strlen(stem) + strlen(ext) + 2;
        if ((s = malloc(n))) snprintf(s, n, "%s/%s%s", dir, stem, ext);
    }
    free(dir);
    free(stem);
    return s;
}

double cli_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int find_opt(const cli_opt *opts, size_t n, const char *name, size_t len, char short_name) {
    for (size_t i = 0; i < n; i++) {
        if (short_name ? opts[i].short_name == short_name
                       : strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len))
            return (int)i;
    }
    return -1;
}

int cli_parse_args(const char *cmd, int argc, char **argv, const cli_opt *opts, size_t n_opts,
                   const char **values, const char **pos, size_t max_pos, size_t *n_pos) {
    for (size_t i = 0; i < n_opts; i++) values[i] = NULL;
    *n_pos = 0;
    int only_pos = 0;
    for (int a = 1; a < argc; a++) {
        const char *s = argv[a];
        if (only_pos || s[0] != '-' || s[1] == 0) {
            if (*n_pos >= max_pos) return cli_usage_error(cmd, "unexpected argument '%s'", s);
            pos[(*n_pos)++] = s;
            continue;
        }
        if (!strcmp(s, "--")) {
            only_pos = 1;
            continue;
        }
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) return -1;
        int k;
        const char *inline_value = NULL;
        if (s[1] == '-') {
            const char *eq = strchr(s + 2, '=');
            size_t len = eq ? (size_t)(eq - (s + 2)) : strlen(s + 2);
            k = find_opt(opts, n_opts, s + 2, len, 0);
            if (eq) inline_value = eq + 1;
        } else {
            k = s[2] == 0 ? find_opt(opts, n_opts, NULL, 0, s[1]) : -1;
        }
        if (k < 0) return cli_usage_error(cmd, "unknown option '%s'", s);
        if (!opts[k].has_arg) {
            if (inline_value) return cli_usage_error(cmd, "option '--%s' takes no value", opts[k].name);
            values[k] = "";
        } else if (inline_value) {
            values[k] = inline_value;
        } else if (a + 1 < argc) {
            values[k] = argv[++a];
        } else {
            return cli_usage_error(cmd, "option '%s' needs a value", s);
        }
    }
    return 0;
}
