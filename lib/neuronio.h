/* Internal reader of the NeuronIO binary layout written by
 * `python3 -m elm.neuronio convert` (docs/datasets/neuronio.md).
 * The file is memory-mapped read-only and validated entirely at open, so
 * that window reads cannot fail on well-formed arguments. Not exported. */
#ifndef ELM_NEURONIO_H
#define ELM_NEURONIO_H

#include "elm_internal.h"

#include <stddef.h>
#include <stdint.h>

/* An opened, validated, memory-mapped converted file. */
typedef struct elm__nio elm__nio;

/* Opens and validates `path` (header, CRC-32, table, every event in range
 * and time-sorted). Fails with ELM_E_IO, ELM_E_FORMAT, ELM_E_TRUNCATED,
 * ELM_E_LIMIT, ELM_E_CHECKSUM or ELM_E_VERSION, the file name in the
 * message; *out is NULL then. */
int elm__nio_open(const char *path, elm__nio **out);
void elm__nio_close(elm__nio *f); /* NULL is fine */

size_t elm__nio_count(const elm__nio *f);    /* simulations */
size_t elm__nio_duration(const elm__nio *f); /* ms per simulation (6000); 1 step = 1 ms */
size_t elm__nio_n_in(const elm__nio *f);     /* 1278 = 639 exc + 639 inh */
size_t elm__nio_spike_count(const elm__nio *f, size_t s); /* output spikes of simulation s (distinct ms bins) */
const char *elm__nio_path(const elm__nio *f); /* the name it was opened with */

/* Steps [t0, t0 + len) of simulation s (t0 + len <= duration):
 * x (len, n_in) overwritten entirely: +1 where an excitatory segment spikes
 * in that ms bin, -1 inhibitory, else 0;
 * spike (len) 0/1 output spike in that ms, or NULL;
 * soma_mv (len) raw somatic voltage in mV, or NULL.
 * ELM_E_INVALID for s or the range out of bounds, ELM_E_NULL for f or x
 * NULL. Thread-safe (read-only). */
int elm__nio_window(const elm__nio *f, size_t s, size_t t0, size_t len, float *x,
                    float *spike, float *soma_mv);

/* The official training target of the soma from a raw voltage in mV:
 * (min(v, -55) - (-67.7)) * 0.1, in float32 as the official loader does. */
static inline float elm__nio_soma_target(float v_mv) {
    const float thr = -55.0f, bias = -67.7f, scale = 0.1f;
    float c = v_mv > thr ? thr : v_mv;
    return (c - bias) * scale;
}

#endif
