/* The benchmark harness of issue 7: every case of bench/README.md as one
 * JSON line, with the single-core SGEMM peak and peak memory measured in
 * the same run; `--torch` adds PyTorch's figures and the ratios. `elm bench`
 * runs the same code (bench/harness.c).
 *
 *   bench [--quick] [--threads 1,2] [--cases PREFIXES] [--torch] ... */
#include "harness.h"

#include <stdio.h>
#include <string.h>

static int usage(FILE *f, int rc) {
    fputs("usage: bench [options]\n\n"
          "Time the NeuronIO, SHD-like and LRA-like cases of libelm (forward,\n"
          "streaming, training) and print one JSON line per case and thread count.\n\n",
          f);
    fputs(bench_help_options, f);
    return rc;
}

int main(int argc, char **argv) {
    bench_opts o;
    bench_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* options taking a value accept "--opt VALUE" and "--opt=VALUE" */
        static const char *const with_value[] = {"--threads", "--cases", "--python",
                                                 "--torch-script", "--official"};
        const char *val = NULL;
        int which = -1;
        for (int k = 0; k < 5; k++) {
            size_t len = strlen(with_value[k]);
            if (!strncmp(a, with_value[k], len) && (a[len] == 0 || a[len] == '=')) {
                which = k;
                if (a[len] == '=') val = a + len + 1;
                else if (i + 1 < argc) val = argv[++i];
                else {
                    fprintf(stderr, "bench: %s needs a value\n", a);
                    return 2;
                }
            }
        }
        if (which == 0) {
            if (bench_parse_threads(&o, val)) {
                fprintf(stderr, "bench: --threads wants a list such as 1,2; got '%s'\n", val);
                return 2;
            }
        } else if (which == 1) o.cases = val;
        else if (which == 2) o.python = val;
        else if (which == 3) o.torch_script = val;
        else if (which == 4) o.official = val;
        else if (!strcmp(a, "--quick")) o.quick = 1;
        else if (!strcmp(a, "--torch")) o.torch = 1;
        else if (!strcmp(a, "--no-peak")) o.no_peak = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 0);
        else {
            fprintf(stderr, "bench: unknown option '%s'\n", a);
            return usage(stderr, 2);
        }
    }
    return bench_run(&o, stdout);
}
