#include "elm_internal.h"

#define ELM_STR2(x) #x
#define ELM_STR(x) ELM_STR2(x)

ELM_API unsigned elm_version_number(void) { return ELM_VERSION_NUMBER; }

ELM_API const char *elm_version_string(void) {
    return ELM_STR(ELM_VERSION_MAJOR) "." ELM_STR(ELM_VERSION_MINOR) "." ELM_STR(
        ELM_VERSION_PATCH);
}
