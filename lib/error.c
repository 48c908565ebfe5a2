/* One error table and the per-thread last-error message. */
#include "elm_internal.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[512];

int elm__fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

void elm__clear_error(void) { last_error[0] = '\0'; }

ELM_API const char *elm_last_error(void) { return last_error; }

ELM_API const char *elm_strerror(int status) {
    switch (status) {
    case ELM_OK: return "success";
    case ELM_E_NULL: return "required pointer is NULL";
    case ELM_E_INVALID: return "invalid argument";
    case ELM_E_SHAPE: return "shape mismatch";
    case ELM_E_NOMEM: return "out of memory or size overflow";
    case ELM_E_NONFINITE: return "NaN or Inf where finite values are needed";
    case ELM_E_UNKNOWN_NAME: return "unknown name";
    case ELM_E_CONFIG: return "inconsistent configuration";
    case ELM_E_UNSUPPORTED: return "unsupported operation";
    case ELM_E_IO: return "I/O error";
    case ELM_E_FORMAT: return "malformed data";
    case ELM_E_TRUNCATED: return "truncated data";
    case ELM_E_CHECKSUM: return "checksum mismatch";
    case ELM_E_VERSION: return "needs a newer libelm";
    case ELM_E_LIMIT: return "declared size exceeds the data or a limit";
    case ELM_E_INTERNAL: return "internal error";
    default: return "unknown status code";
    }
}
