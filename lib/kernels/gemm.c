/* Matrix products: BLIS (with a correct kernel configuration chosen at run
 * time) or portable reference loops, selected at build time. */
#include "../elm_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t gemm_once = PTHREAD_ONCE_INIT;
static char gemm_info[256] = "not initialised";

#ifdef ELM_USE_BLIS
#include <blis.h>

/* Which compiled-in BLIS configuration suits this CPU best. Measured on an
 * AMD family 0x19 (Zen 4, AVX-512 on 256-bit units): zen3 92 GFLOP/s vs skx
 * 55 on a (16000 x 45) x (45 x 200) product; Debian's BLIS 0.9 knows no AMD
 * family above 0x19 and would pick the generic kernels (~40 vs ~200 GFLOP/s
 * with skx on family 0x1A, full-width AVX-512). */
const char *elm__blis_pick(const elm_cpu *c, const char **why) {
    bool amd = strcmp(c->vendor, "AuthenticAMD") == 0;
    bool avx512 = c->avx512f && c->avx512dq && c->avx512bw && c->avx512vl;
#if defined(BLIS_CONFIG_ZEN3)
    if (amd && c->family == 0x19 && c->avx2 && c->fma) {
        *why = "AMD family 0x19";
        return "zen3";
    }
#endif
#if defined(BLIS_CONFIG_ZEN)
    if (amd && c->family == 0x17 && c->avx2 && c->fma) {
        *why = "AMD family 0x17";
        return "zen";
    }
#endif
#if defined(BLIS_CONFIG_SKX)
    if (avx512 && c->fma) {
        *why = amd ? "AMD with full-width AVX-512" : "AVX-512";
        return "skx";
    }
#endif
#if defined(BLIS_CONFIG_ZEN3)
    if (amd && c->family > 0x19 && c->avx2 && c->fma) {
        *why = "AMD AVX2+FMA";
        return "zen3";
    }
#endif
#if defined(BLIS_CONFIG_HASWELL)
    if (c->avx2 && c->fma) {
        *why = "AVX2+FMA";
        return "haswell";
    }
#endif
#if defined(BLIS_CONFIG_SANDYBRIDGE)
    if (c->avx) {
        *why = "AVX";
        return "sandybridge";
    }
#endif
    *why = "no known vector extension";
    return NULL;
}

static int arch_id_of(const char *name) {
    for (int id = 0; id < (int)BLIS_NUM_ARCHS; id++) {
        const char *s = bli_arch_string((arch_t)id);
        if (s && strcmp(s, name) == 0) return id;
    }
    return -1;
}

/* Runs once per process. BLIS reads BLIS_ARCH_TYPE when it first queries
 * the architecture; BLIS 0.9.0 aborts if that happens before bli_init() has
 * registered the contexts, so bli_init() comes first. The variable is set
 * only for that moment and then removed again. */
static void gemm_init_once(void) {
    elm_cpu cpu;
    elm__cpu_detect(&cpu);
    const char *why = "", *pick = NULL;
    bool user = getenv("BLIS_ARCH_TYPE") != NULL;
    if (!user) pick = elm__blis_pick(&cpu, &why);
    int id = pick ? arch_id_of(pick) : -1;
    if (id >= 0) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", id);
        setenv("BLIS_ARCH_TYPE", buf, 1);
    }
    bli_init();
    arch_t got = bli_arch_query_id();
    if (id >= 0) unsetenv("BLIS_ARCH_TYPE");
    const char *how;
    char reason[96];
    if (user)
        how = "BLIS_ARCH_TYPE set by the environment";
    else if (id < 0)
        how = "BLIS's own detection";
    else if ((int)got == id) {
        snprintf(reason, sizeof reason, "selected by libelm: %s", why);
        how = reason;
    } else
        how = "BLIS was initialised before libelm; its choice stands";
    snprintf(gemm_info, sizeof gemm_info, "blis %s kernels=%s (%s)", bli_info_get_version_str(),
             bli_arch_string(got), how);
}

void elm__sgemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                size_t ldc) {
    if (M == 0 || N == 0) return;
    /* libelm parallelises over streams itself: BLIS runs single-threaded
     * whatever BLIS_NUM_THREADS says. */
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)M, (dim_t)N, (dim_t)K,
                 &alpha, (float *)A, (inc_t)lda, 1, (float *)B, (inc_t)ldb, 1, &beta, C,
                 (inc_t)ldc, 1, NULL, &rntm);
}

#else /* reference GEMM */

static void gemm_init_once(void) {
    snprintf(gemm_info, sizeof gemm_info, "reference (portable C loops; built with -Dgemm=reference)");
}

void elm__sgemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                size_t ldc) {
    for (size_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        for (size_t j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (size_t p = 0; p < K; p++) {
            float a = alpha * (trans_a ? A[p * lda + i] : A[i * lda + p]);
            if (a == 0.0f) continue;
            if (trans_b)
                for (size_t j = 0; j < N; j++) c[j] += a * B[j * ldb + p];
            else
                for (size_t j = 0; j < N; j++) c[j] += a * B[p * ldb + j];
        }
    }
}
#endif

void elm__gemm_init(void) { pthread_once(&gemm_once, gemm_init_once); }

ELM_API const char *elm_gemm_info(void) {
    elm__gemm_init();
    return gemm_info;
}
