/* Internal interface between elm_dataset (lib/dataset.c: order, batches,
 * splits, prefetch) and the sources that produce one sample at a time
 * (arrays, events, SHD, NeuronIO, IDX, ListOps). A source is random
 * access: sample i of N, any order, from any thread. Not exported. */
#ifndef ELM_SOURCE_H
#define ELM_SOURCE_H

#include "elm_internal.h"

typedef struct elm__source_vt {
    /* Short name for messages ("shd", "idx", ...). */
    const char *name;
    /* Writes sample i (0 <= i < N) into
     *   x      (T, n_in)      arrives zero-filled
     *   target (T, n_target)  arrives zero-filled, or NULL (not wanted)
     *   labels (n_label)      arrives zero-filled, or NULL (not wanted)
     *   length                arrives = T; set it to the sample's length
     *                         in [1, T] when shorter.
     * key: 64 random bits that are a function of (dataset seed, epoch, i)
     * only, for sources that draw per epoch (SHD-Adding pairs, NeuronIO
     * windows); other sources ignore it.
     * Must be safe to call from several threads at once (it may only read
     * `self`). Returns ELM_OK, or an ELM_E_* code through elm__fail with a
     * message naming the file and the problem; data should have been
     * validated when the source was opened so that read rarely fails. */
    int (*read)(void *self, size_t i, uint64_t key, float *x, float *target,
                int32_t *labels, int64_t *length);
    /* Releases self (may be NULL). */
    void (*free)(void *self);
} elm__source_vt;

/* The shape every sample of a source has. */
typedef struct elm__source_shape {
    size_t N;        /* samples (>= 1) */
    size_t T;        /* steps per sample (>= 1) */
    size_t n_in;     /* >= 1 */
    size_t n_target; /* 0: no targets */
    size_t n_label;  /* 0, 1 (per sample) or T (per step) */
} elm__source_shape;

/* Creates a dataset reading `self` through `vt`. The dataset owns self from
 * this call on: on failure vt->free(self) has already been called. `fn` is
 * the public function name used in error messages. */
int elm__dataset_from_source(const char *fn, const elm__source_vt *vt, void *self,
                             elm__source_shape shape, elm_dataset **out);

/* The splitmix64 finaliser: a bijection of 64-bit words; used to derive
 * independent streams from (seed, epoch, i). */
static inline uint64_t elm__mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#endif
