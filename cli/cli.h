/* Shared declarations of the `elm` command-line program: one function per
 * subcommand and the helpers they share. Uses the public libelm ABI only. */
#ifndef ELM_CLI_H
#define ELM_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Exit statuses of every subcommand. */
enum {
    CLI_OK = 0,
    CLI_FAIL = 1,        /* runtime error, message on stderr */
    CLI_USAGE = 2,       /* bad command line */
    CLI_INTERRUPTED = 130 /* 128 + SIGINT, as a shell reports it */
};

/* Each subcommand gets argv[0] = its own name; returns an exit status. */
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_plot(int argc, char **argv);

/* "elm: <what>: <library message>" on stderr for a failed libelm call with
 * status rc; returns CLI_FAIL. */
int cli_lib_error(const char *what, int rc);
/* printf-style "elm: ..." message on stderr; returns CLI_FAIL. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* printf-style "elm CMD: ..." usage complaint plus a hint to --help on
 * stderr; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A decimal integer in [lo, hi]; 0 on success, -1 otherwise. */
int cli_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* Whether s ends with suffix (ASCII case-insensitive). */
int cli_has_suffix(const char *s, const char *suffix);

/* Path helpers; each result is malloc'ed (NULL when out of memory).
 * dirname: "a/b.yaml" -> "a", "b.yaml" -> "."; stem: "a/b.x.yaml" ->
 * "b.x"; join: dir + "/" + name, or name itself when absolute. */
char *cli_dirname(const char *path);
char *cli_stem(const char *path);
char *cli_join(const char *dir, const char *name);
/* dirname(path) + "/" + stem(path) + ext, e.g. ("cfg/run.yaml", ".elm")
 * -> "cfg/run.elm". */
char *cli_sibling(const char *path, const char *ext);

/* Monotonic clock, seconds. */
double cli_now(void);

/* Command-line options of a subcommand: "--name VALUE", "--name=VALUE" or
 * "-c VALUE" when has_arg, else a flag. */
typedef struct cli_opt {
    const char *name;
    char short_name; /* 0: none */
    int has_arg;
} cli_opt;

/* Split argv[1..] into options and positional arguments ("--" ends the
 * options). values[i] gets opts[i]'s value, "" for a given flag, NULL when
 * absent (the last occurrence wins); pos gets up to max_pos positionals.
 * Returns 0, CLI_USAGE after printing the complaint, or -1 when --help or
 * -h was given. */
int cli_parse_args(const char *cmd, int argc, char **argv, const cli_opt *opts,
                   size_t n_opts, const char **values, const char **pos, size_t max_pos,
                   size_t *n_pos);

#endif
