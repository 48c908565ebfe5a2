/* Event lists (spike trains) binned to a time step: the caller's arrays,
 * borrowed, in CSR form (sample i owns events [offsets[i], offsets[i+1])). */
#include "source.h"

#include <math.h>
#include <stdlib.h>

typedef struct events {
    size_t T, n_in;
    double dt, duration; /* ms */
    const int64_t *offsets;  /* (N + 1) */
    const float *times;      /* (offsets[N]) ms */
    const int32_t *channels; /* (offsets[N]) in [0, n_in) */
    const int32_t *labels;   /* (N) or NULL */
} events;

/* Event e of sample i: ELM_OK, or why it cannot be binned. */
static int check_event(const events *ev, const char *fn, size_t i, int64_t e) {
    float t = ev->times[e];
    int32_t c = ev->channels[e];
    if (!(t >= 0) || isinf(t))
        return elm__fail(ELM_E_INVALID, "%s: sample %zu, event %lld: time %g ms is not a finite "
                         "value >= 0", fn, i, (long long)e, (double)t);
    if (c < 0 || (size_t)c >= ev->n_in)
        return elm__fail(ELM_E_INVALID, "%s: sample %zu, event %lld: channel %d is outside "
                         "[0, n_in = %zu)", fn, i, (long long)e, (int)c, ev->n_in);
    return ELM_OK;
}

static int check_sample(const events *ev, const char *fn, size_t i) {
    int64_t a = ev->offsets[i], b = ev->offsets[i + 1];
    if (a < 0 || b < a)
        return elm__fail(ELM_E_INVALID, "%s: offsets[%zu] = %lld, offsets[%zu] = %lld must be "
                         "non-negative and non-decreasing", fn, i, (long long)a, i + 1,
                         (long long)b);
    for (int64_t e = a; e < b; e++) {
        int rc = check_event(ev, fn, i, e);
        if (rc) return rc;
    }
    return ELM_OK;
}

static int events_read(void *self, size_t i, uint64_t key, float *x, float *target,
                       int32_t *labels, int64_t *length) {
    (void)key, (void)target, (void)length;
    const events *ev = self;
    /* Borrowed arrays: checked at creation, checked again because a changed
     * channel would write outside x. */
    int rc = check_sample(ev, "elm_dataset_next", i);
    if (rc) return rc;
    for (int64_t e = ev->offsets[i]; e < ev->offsets[i + 1]; e++) {
        double t = ev->times[e];
        if (t >= ev->duration) continue; /* cut, as the SHD code cuts at 1 s */
        size_t bin = (size_t)floor(t / ev->dt);
        if (bin >= ev->T) continue; /* t just below duration rounding up */
        x[bin * ev->n_in + (size_t)ev->channels[e]] += 1.0f;
    }
    if (labels) labels[0] = ev->labels[i];
    return ELM_OK;
}

static const elm__source_vt events_vt = {"events", events_read, free};

/* T = ceil(duration / dt), where a ratio within 1e-9 of an integer counts
 * as that integer (1000 / 0.1 is 10000, not 10001). */
static size_t steps_for(double duration, double dt) {
    double r = duration / dt, k = nearbyint(r);
    if (fabs(r - k) <= 1e-9 * k) return (size_t)k;
    return (size_t)ceil(r);
}

ELM_API int elm_dataset_from_events(size_t N, size_t n_in, const int64_t *offsets,
                                    const float *times, const int32_t *channels,
                                    const int32_t *labels, double dt_ms, double duration_ms,
                                    elm_dataset **out) {
    static const char *fn = "elm_dataset_from_events";
    if (!out) return elm__fail(ELM_E_NULL, "%s: out is NULL", fn);
    if (!offsets) return elm__fail(ELM_E_NULL, "%s: offsets is NULL", fn);
    if (N == 0 || n_in == 0)
        return elm__fail(ELM_E_SHAPE, "%s: N = %zu and n_in = %zu must be >= 1", fn, N, n_in);
    if (!(dt_ms > 0) || !isfinite(dt_ms))
        return elm__fail(ELM_E_INVALID, "%s: dt_ms = %g must be finite and > 0", fn, dt_ms);
    if (!(duration_ms > 0) || !isfinite(duration_ms))
        return elm__fail(ELM_E_INVALID, "%s: duration_ms = %g must be finite and > 0", fn,
                         duration_ms);
    if (duration_ms / dt_ms > 1e8)
        return elm__fail(ELM_E_LIMIT, "%s: duration_ms / dt_ms = %g steps exceeds 1e8", fn,
                         duration_ms / dt_ms);
    if (offsets[0] != 0)
        return elm__fail(ELM_E_INVALID, "%s: offsets[0] = %lld must be 0", fn,
                         (long long)offsets[0]);
    if (offsets[N] > 0 && (!times || !channels))
        return elm__fail(ELM_E_NULL, "%s: %lld events but times or channels is NULL", fn,
                         (long long)offsets[N]);
    events ev = {steps_for(duration_ms, dt_ms), n_in, dt_ms, duration_ms, offsets, times,
                 channels, labels};
    for (size_t i = 0; i < N; i++) {
        int rc = check_sample(&ev, fn, i);
        if (rc) return rc;
    }
    events *self = malloc(sizeof *self);
    if (!self) return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    *self = ev;
    elm__source_shape sh = {N, ev.T, n_in, 0, labels ? 1 : 0};
    return elm__dataset_from_source(fn, &events_vt, self, sh, out);
}
