/* The benchmark harness of issue 7, shared by bench/bench.c and `elm bench`
 * (cli/bench.c): one JSON line per (case, threads), each case run in its own
 * forked child so that its peak memory is its own, plus the single-core
 * SGEMM peak of BLIS measured in the same run and, with `torch`, PyTorch's
 * figures for the NeuronIO cases and the ratios. bench/README.md lists the
 * cases and the fields. */
#ifndef ELM_BENCH_HARNESS_H
#define ELM_BENCH_HARNESS_H

#include <stdio.h>

#define BENCH_MAX_THREADS 8

typedef struct bench_opts {
    int quick;                          /* tiny T and repeats: the smoke test */
    int n_threads;                      /* entries of threads[] */
    int threads[BENCH_MAX_THREADS];     /* libelm threads per case, e.g. 1, 2 */
    int torch;                          /* also time torch_reference.py */
    const char *cases;                  /* comma-separated name prefixes, NULL: all */
    const char *python;                 /* NULL: /usr/bin/python3 */
    const char *torch_script;           /* NULL: the built-in default path */
    const char *official;               /* NULL: /tmp/elmneuron when it exists */
    int no_peak;                        /* skip the SGEMM peak (peak = null) */
} bench_opts;

/* Defaults: threads 1 and 2, everything else off. */
void bench_opts_init(bench_opts *o);

/* "1,2" -> threads[]; 0 on success, -1 on a malformed list. */
int bench_parse_threads(bench_opts *o, const char *list);

/* Option help text common to both front ends. */
extern const char bench_help_options[];

/* Run the harness, JSON lines on `out`. Returns 0 when every case ran or was
 * skipped on purpose, 1 when a case failed (its line says why). */
int bench_run(const bench_opts *o, FILE *out);

#endif
