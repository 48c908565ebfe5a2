/* elm bench: the benchmark harness of issue 7 (bench/harness.c, shared with
 * the `bench` program): NeuronIO, SHD-like and LRA-like cases at 1 and 2
 * threads, one JSON line each, with the single-core SGEMM peak and each
 * case's peak memory measured in the same run. bench/README.md describes
 * the cases and fields. */
#include "cli.h"

#include "../bench/harness.h"

#include <stdio.h>
#include <stdlib.h>

static const char help[] =
    "usage: elm bench [options]\n"
    "\n"
    "Time libelm on the official best NeuronIO model (streaming step B = 1,\n"
    "sequence forward and Adam training step B = 32, T = 500), SHD-like models\n"
    "(700 inputs, dt 10 ms / 2 ms, B = 8) and an LRA-like model (25 one-hot\n"
    "inputs, T = 2000, B = 8, training with and without checkpointing). One\n"
    "JSON line per case and thread count: sample_steps_per_s, us_per_step,\n"
    "gflops, peak_fraction (of a single-core BLIS SGEMM measured in the same\n"
    "run), max_rss_kib (each case runs in its own process), tape_bytes.\n"
    "\n";

int cmd_bench(int argc, char **argv) {
    static const cli_opt opts[] = {{"quick", 0, 0},  {"threads", 0, 1},      {"cases", 0, 1},
                                   {"torch", 0, 0},  {"python", 0, 1},       {"torch-script", 0, 1},
                                   {"official", 0, 1}, {"no-peak", 0, 0}};
    enum { N_OPTS = sizeof opts / sizeof *opts };
    const char *opt[N_OPTS], *pos[1];
    size_t n_pos;
    int st = cli_parse_args("bench", argc, argv, opts, N_OPTS, opt, pos, 0, &n_pos);
    if (st < 0) {
        fputs(help, stdout);
        fputs(bench_help_options, stdout);
        return CLI_OK;
    }
    if (st) return st;
    bench_opts o;
    bench_opts_init(&o);
    o.quick = opt[0] != NULL;
    if (opt[1] && bench_parse_threads(&o, opt[1]))
        return cli_usage_error("bench", "--threads wants a list such as 1,2; got '%s'", opt[1]);
    o.cases = opt[2];
    o.torch = opt[3] != NULL;
    o.python = opt[4];
    o.torch_script = opt[5];
    o.official = opt[6];
    o.no_peak = opt[7] != NULL;
    return bench_run(&o, stdout) ? CLI_FAIL : CLI_OK;
}
