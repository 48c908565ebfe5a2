/* Free-form metadata of a model: UTF-8 key/value strings that travel with
 * it in .elm files (META section). Few entries, so a plain array. */
#include "elm_internal.h"

#include <stdlib.h>
#include <string.h>

void elm__meta_clear(elm_model *m) {
    for (size_t i = 0; i < m->n_meta; i++) {
        free(m->meta[i].key);
        free(m->meta[i].value);
    }
    free(m->meta);
    m->meta = NULL;
    m->n_meta = 0;
}

int elm__meta_check(const char *key, size_t key_len, size_t value_len, const char *fn) {
    if (key_len == 0 || key_len > ELM_META_MAX_KEY)
        return elm__fail(ELM_E_INVALID, "%s: metadata keys have 1 to %d bytes, got %zu", fn,
                         ELM_META_MAX_KEY, key_len);
    if (memchr(key, '\0', key_len))
        return elm__fail(ELM_E_INVALID, "%s: a metadata key holds a NUL byte", fn);
    if (value_len > ELM_META_MAX_VALUE)
        return elm__fail(ELM_E_LIMIT, "%s: the value of '%.*s' has %zu bytes, at most %u allowed",
                         fn, (int)key_len, key, value_len, ELM_META_MAX_VALUE);
    return ELM_OK;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int elm__meta_assign(elm_model *m, const struct elm_meta *src, size_t n, const char *fn) {
    struct elm_meta *copy = n ? calloc(n, sizeof *copy) : NULL;
    bool ok = n == 0 || copy;
    for (size_t i = 0; ok && i < n; i++) {
        copy[i].key = dup_n(src[i].key, strlen(src[i].key));
        copy[i].value = dup_n(src[i].value, strlen(src[i].value));
        ok = copy[i].key && copy[i].value;
    }
    if (!ok) {
        for (size_t i = 0; i < n && copy; i++) {
            free(copy[i].key);
            free(copy[i].value);
        }
        free(copy);
        return elm__fail(ELM_E_NOMEM, "%s: out of memory", fn);
    }
    elm__meta_clear(m);
    m->meta = copy;
    m->n_meta = n;
    return ELM_OK;
}

static size_t find(const elm_model *m, const char *key) {
    for (size_t i = 0; i < m->n_meta; i++)
        if (strcmp(m->meta[i].key, key) == 0) return i;
    return m->n_meta;
}

ELM_API int elm_model_set_meta(elm_model *m, const char *key, const char *value) {
    if (!m || !key) return elm__fail(ELM_E_NULL, "elm_model_set_meta: NULL argument");
    int rc = elm__meta_check(key, strlen(key), value ? strlen(value) : 0, "elm_model_set_meta");
    if (rc) return rc;
    size_t i = find(m, key);
    if (!value) { /* remove, keeping the order of the rest */
        if (i == m->n_meta) return ELM_OK;
        free(m->meta[i].key);
        free(m->meta[i].value);
        memmove(m->meta + i, m->meta + i + 1, (m->n_meta - i - 1) * sizeof *m->meta);
        m->n_meta--;
        return ELM_OK;
    }
    char *v = dup_n(value, strlen(value));
    if (!v) return elm__fail(ELM_E_NOMEM, "elm_model_set_meta: out of memory");
    if (i < m->n_meta) {
        free(m->meta[i].value);
        m->meta[i].value = v;
        return ELM_OK;
    }
    if (m->n_meta == ELM_META_MAX_ENTRIES) {
        free(v);
        return elm__fail(ELM_E_LIMIT, "elm_model_set_meta: a model holds at most %d entries",
                         ELM_META_MAX_ENTRIES);
    }
    char *k = dup_n(key, strlen(key));
    struct elm_meta *grown = k ? realloc(m->meta, (m->n_meta + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(k);
        free(v);
        return elm__fail(ELM_E_NOMEM, "elm_model_set_meta: out of memory");
    }
    m->meta = grown;
    m->meta[m->n_meta].key = k;
    m->meta[m->n_meta].value = v;
    m->n_meta++;
    return ELM_OK;
}

ELM_API const char *elm_model_get_meta(const elm_model *m, const char *key) {
    if (!m || !key) return NULL;
    size_t i = find(m, key);
    return i < m->n_meta ? m->meta[i].value : NULL;
}

ELM_API size_t elm_model_meta_count(const elm_model *m) { return m ? m->n_meta : 0; }

ELM_API const char *elm_model_meta_key(const elm_model *m, size_t i) {
    return m && i < m->n_meta ? m->meta[i].key : NULL;
}
