/* elm: the command-line program of libelm. Dispatches to one subcommand;
 * see docs/cli.md. */
#include "cli.h"

#include <elm.h>

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: elm COMMAND [ARGS...]\n"
    "\n"
    "Train, evaluate and inspect Expressive Leaky Memory (ELM) neurons.\n"
    "\n"
    "commands:\n"
    "  train CONFIG.yaml   train a model from a training config\n"
    "  eval MODEL DATA     evaluate a model on a NeuronIO file or a config's test set\n"
    "  info MODEL.elm      hyper-parameters, parameter count, routing, metadata\n"
    "  convert PT OUT.elm  official PyTorch checkpoint -> .elm (runs Python)\n"
    "  bench               time streaming, sequence forward and training steps\n"
    "  plot METRICS.tsv    training curves as an SVG picture\n"
    "  version             libelm's version and matrix-product backend\n"
    "\n"
    "'elm COMMAND --help' describes a command. Exit status: 0 success,\n"
    "1 runtime error, 2 usage error, 130 training interrupted (resumable).\n";

static int cmd_version(int argc, char **argv) {
    if (argc > 1) {
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
            printf("usage: elm version\n\nPrint the versions of the program and of the "
                   "libelm it loaded.\n");
            return CLI_OK;
        }
        return cli_usage_error("version", "unexpected argument '%s'", argv[1]);
    }
    printf("elm %d.%d.%d (libelm %s loaded)\n", ELM_VERSION_MAJOR, ELM_VERSION_MINOR,
           ELM_VERSION_PATCH, elm_version_string());
    return CLI_OK;
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"train", cmd_train},     {"eval", cmd_eval},   {"info", cmd_info},
        {"convert", cmd_convert}, {"bench", cmd_bench}, {"plot", cmd_plot},
        {"version", cmd_version},
    };
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(1, argv + 1);
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "elm: unknown command '%s'\n\n%s", argv[1], usage);
    return CLI_USAGE;
}
