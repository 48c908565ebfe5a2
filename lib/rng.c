/* xoshiro256** seeded through splitmix64: small, fast, and bit-identical on
 * every platform, unlike rand(). */
#include "elm_internal.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void elm__rng_seed(elm_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t elm__rng_next(elm_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* 24 random bits give every float in [0, 1) on a 2^-24 grid exactly. */
float elm__rng_uniform(elm_rng *r, float lo, float hi) {
    float u = (float)(elm__rng_next(r) >> 40) * 0x1.0p-24f;
    float v = lo + (hi - lo) * u;
    return v < hi ? v : lo; /* rounding must not reach hi */
}

/* Lemire's nearly-divisionless method, with rejection for exactness. */
uint64_t elm__rng_below(elm_rng *r, uint64_t n) {
    if (n == 0) return 0;
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = elm__rng_next(r);
        unsigned __int128 m = (unsigned __int128)x * n;
        if ((uint64_t)m >= threshold) return (uint64_t)(m >> 64);
    }
}
