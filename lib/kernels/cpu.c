/* CPU identification through CPUID, used to pick kernels. */
#include "../elm_internal.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

void elm__cpu_detect(elm_cpu *c) {
    memset(c, 0, sizeof *c);
    unsigned a, b, cx, d;
    if (!__get_cpuid(0, &a, &b, &cx, &d)) return;
    unsigned max_leaf = a;
    memcpy(c->vendor, &b, 4);
    memcpy(c->vendor + 4, &d, 4);
    memcpy(c->vendor + 8, &cx, 4);
    __get_cpuid(1, &a, &b, &cx, &d);
    unsigned fam = (a >> 8) & 0xf, mod = (a >> 4) & 0xf;
    if (fam == 0xf) fam += (a >> 20) & 0xff;
    if (fam >= 0x6) mod += ((a >> 16) & 0xf) << 4;
    c->family = fam;
    c->model = mod;
    bool osxsave = cx & (1u << 27);
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm_os = (xcr0 & 0x6) == 0x6, zmm_os = (xcr0 & 0xe6) == 0xe6;
    c->avx = ymm_os && (cx & (1u << 28));
    c->fma = ymm_os && (cx & (1u << 12));
    if (max_leaf >= 7) {
        __get_cpuid_count(7, 0, &a, &b, &cx, &d);
        c->avx2 = c->avx && (b & (1u << 5));
        c->avx512f = zmm_os && (b & (1u << 16));
        c->avx512dq = zmm_os && (b & (1u << 17));
        c->avx512bw = zmm_os && (b & (1u << 30));
        c->avx512vl = zmm_os && (b & (1u << 31));
    }
}
#else
void elm__cpu_detect(elm_cpu *c) { memset(c, 0, sizeof *c); }
#endif
