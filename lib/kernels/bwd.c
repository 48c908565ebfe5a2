/* Backward kernels of the training tape. The memory backward used to be a
 * restrict-qualified copy of vec.c's kernel here; vec.c's version now
 * vectorises itself, so the tape's name (called by backward.c, declared in
 * tape.h) only forwards to it: one implementation, one set of formulas. */
#include "../elm_internal.h"
#include "../tape.h"

void elm__tape_memory_backward(int B, int n, const float *gm, const float *z, const float *mprev,
                               const float *kappa, const float *coef, float *dz, float *carry,
                               float *acc_coef, float *acc_kappa) {
    elm__memory_backward(B, n, gm, z, mprev, kappa, coef, dz, carry, acc_coef, acc_kappa);
}
