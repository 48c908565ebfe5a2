/* The datasets a training config describes: its data.* keys mapped onto
 * the dataset constructors, the split and the iterator options. Uses the
 * public API only. */
#include "elm_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct data_keys {
    const char *source, *train, *test, *train_labels, *test_labels, *sequence;
    double val_fraction, batch_size, dt, max_time, window, shuffle, seed, drop_last, prefetch,
        batches_per_epoch, permute;
} data_keys;

static int read_keys(const elm_train_config *tc, data_keys *k) {
    static const struct { const char *key; size_t off; } strs[] = {
        {"data.source", offsetof(data_keys, source)},
        {"data.train", offsetof(data_keys, train)},
        {"data.test", offsetof(data_keys, test)},
        {"data.train_labels", offsetof(data_keys, train_labels)},
        {"data.test_labels", offsetof(data_keys, test_labels)},
        {"data.sequence", offsetof(data_keys, sequence)},
    };
    static const struct { const char *key; size_t off; } nums[] = {
        {"data.val_fraction", offsetof(data_keys, val_fraction)},
        {"data.batch_size", offsetof(data_keys, batch_size)},
        {"data.dt", offsetof(data_keys, dt)},
        {"data.max_time", offsetof(data_keys, max_time)},
        {"data.window", offsetof(data_keys, window)},
        {"data.shuffle", offsetof(data_keys, shuffle)},
        {"data.seed", offsetof(data_keys, seed)},
        {"data.drop_last", offsetof(data_keys, drop_last)},
        {"data.prefetch", offsetof(data_keys, prefetch)},
        {"data.batches_per_epoch", offsetof(data_keys, batches_per_epoch)},
        {"data.permute", offsetof(data_keys, permute)},
    };
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        int rc = elm_train_config_get_string(tc, strs[i].key,
                                             (const char **)((char *)k + strs[i].off));
        if (rc) return rc;
    }
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
        int rc = elm_train_config_get(tc, nums[i].key, (double *)((char *)k + nums[i].off));
        if (rc) return rc;
    }
    return ELM_OK;
}

/* base_dir / path, or path itself when absolute or base_dir is NULL/"". */
static int resolve(const char *base_dir, const char *path, char *out, size_t cap) {
    int n = (!base_dir || !*base_dir || path[0] == '/')
                ? snprintf(out, cap, "%s", path)
                : snprintf(out, cap, "%s/%s", base_dir, path);
    if (n < 0 || (size_t)n >= cap)
        return elm__fail(ELM_E_LIMIT, "elm_train_config_open_data: path '%s' is too long", path);
    return ELM_OK;
}

static int need(const char *what, const char *value, const char *source) {
    if (value && *value) return ELM_OK;
    return elm__fail(ELM_E_CONFIG, "elm_train_config_open_data: source '%s' needs %s", source,
                     what);
}

/* One dataset of the config: `path` (and `labels`) for the train or test
 * part; `part` 0 = train, 1 = test. */
static int open_one(const data_keys *k, const char *base_dir, const char *path_key,
                    const char *labels_key, int part, elm_dataset **out) {
    char path[4096], labels[4096];
    const char *src = k->source;
    size_t per_epoch = (size_t)(k->batches_per_epoch * k->batch_size);
    double max_time = k->max_time > 0 ? k->max_time : 1000.0;
    int rc;
    if (strcmp(src, "listops_generate") != 0) {
        if ((rc = need(part ? "data.test" : "data.train", path_key, src))) return rc;
        if ((rc = resolve(base_dir, path_key, path, sizeof path))) return rc;
    }
    if (!strcmp(src, "shd")) return elm_dataset_open_shd(path, k->dt, max_time, out);
    if (!strcmp(src, "shd_adding") || !strcmp(src, "neuronio")) {
        if (per_epoch == 0)
            return elm__fail(ELM_E_CONFIG, "elm_train_config_open_data: source '%s' draws "
                             "samples at random: set data.batches_per_epoch", src);
        if (!strcmp(src, "shd_adding"))
            return elm_dataset_open_shd_adding(path, k->dt, max_time, per_epoch, out);
        return elm_dataset_open_neuronio(path, k->window > 0 ? (size_t)k->window : 500,
                                         per_epoch, out);
    }
    if (!strcmp(src, "idx")) {
        if ((rc = need(part ? "data.test_labels" : "data.train_labels", labels_key, src)))
            return rc;
        if ((rc = resolve(base_dir, labels_key, labels, sizeof labels))) return rc;
        elm_idx_sequence seq;
        if (!*k->sequence || !strcmp(k->sequence, "pixels")) seq = ELM_IDX_PIXELS;
        else if (!strcmp(k->sequence, "rows")) seq = ELM_IDX_ROWS;
        else
            return elm__fail(ELM_E_CONFIG, "elm_train_config_open_data: data.sequence '%s' is "
                             "not one of pixels, rows", k->sequence);
        /* The same permutation for train and test: it is part of the task. */
        return elm_dataset_open_idx(path, labels, seq, k->permute != 0, (uint64_t)k->seed, out);
    }
    if (!strcmp(src, "listops"))
        return elm_dataset_open_listops(path, k->window > 0 ? (size_t)k->window : 0, out);
    if (!strcmp(src, "listops_generate")) {
        if (per_epoch == 0)
            return elm__fail(ELM_E_CONFIG, "elm_train_config_open_data: source '%s' needs "
                             "data.batches_per_epoch (samples = batches x batch_size)", src);
        /* Train and test drawn from different seeds. */
        return elm_dataset_generate_listops(per_epoch, 2 * (uint64_t)k->seed + (uint64_t)part,
                                            500, k->window > 0 ? (size_t)k->window : 2000, out);
    }
    return elm__fail(ELM_E_CONFIG, "elm_train_config_open_data: data.source '%s' is not one of "
                     "shd, shd_adding, neuronio, idx, listops, listops_generate", src);
}

static int apply(elm_dataset *ds, const data_keys *k, bool training) {
    int rc = elm_dataset_set(ds, ELM_DATASET_SHUFFLE, training ? k->shuffle : 0);
    if (!rc) rc = elm_dataset_set(ds, ELM_DATASET_SEED, k->seed);
    if (!rc) rc = elm_dataset_set(ds, ELM_DATASET_DROP_LAST, training ? k->drop_last : 0);
    if (!rc) rc = elm_dataset_set(ds, ELM_DATASET_PREFETCH, k->prefetch > 0);
    return rc;
}

ELM_API int elm_train_config_open_data(const elm_train_config *tc, const char *base_dir,
                                       elm_dataset **train, elm_dataset **val,
                                       elm_dataset **test) {
    static const char *fn = "elm_train_config_open_data";
    if (!tc || !train) return elm__fail(ELM_E_NULL, "%s: tc and train are required", fn);
    data_keys k;
    int rc = read_keys(tc, &k);
    if (rc) return rc;
    if (k.val_fraction > 0 && !val)
        return elm__fail(ELM_E_NULL, "%s: data.val_fraction = %g but val is NULL", fn,
                         k.val_fraction);
    elm_dataset *all = NULL, *tr = NULL, *va = NULL, *te = NULL;
    if ((rc = open_one(&k, base_dir, k.train, k.train_labels, 0, &all))) return rc;
    if (k.val_fraction > 0) {
        size_t N;
        elm_dataset_size(all, ELM_DATASET_SAMPLES, &N);
        size_t n_val = (size_t)llround(k.val_fraction * (double)N);
        if (n_val < 1) n_val = 1;
        rc = n_val >= N ? elm__fail(ELM_E_CONFIG, "%s: data.val_fraction = %g leaves no training "
                                    "samples of %zu", fn, k.val_fraction, N)
                        : elm_dataset_split(all, n_val, (uint64_t)k.seed, &tr, &va);
        elm_dataset_free(all);
        all = NULL;
        if (rc) return rc;
    } else {
        tr = all;
    }
    if (test && *k.test) rc = open_one(&k, base_dir, k.test, k.test_labels, 1, &te);
    if (!rc) rc = apply(tr, &k, true);
    if (!rc && va) rc = apply(va, &k, false);
    if (!rc && te) rc = apply(te, &k, false);
    if (rc) {
        elm_dataset_free(tr);
        elm_dataset_free(va);
        elm_dataset_free(te);
        return rc;
    }
    *train = tr;
    if (val) *val = va;
    if (test) *test = te;
    return ELM_OK;
}
