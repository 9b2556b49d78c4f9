/* numeric.c: half/bfloat16 conversion and the seeded random generator. */
#include "base.h"

#include <math.h>

float spine_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t spine_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
    if (absx < 0x38800000u) {                                   /* subnormal or zero in half */
        if (absx < 0x33000000u) return (uint16_t)sign;          /* below half of min subnormal */
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t v = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (v & 1))) v++;
        return (uint16_t)(sign | v);
    }
    uint32_t v = ((absx >> 13) - (112u << 10));
    uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (v & 1))) v++;
    return (uint16_t)(sign | v);
}

float spine_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t spine_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

uint64_t spine_hash64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void spine_rng_seed(spine_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        seed = spine_hash64(seed);
        r->s[i] = seed;
    }
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t spine_rng_next(spine_rng *r) {
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

uint64_t spine_rng_below(spine_rng *r, uint64_t n) {
    /* Lemire's multiply-shift with rejection: unbiased */
    uint64_t x = spine_rng_next(r);
    __uint128_t m = (__uint128_t)x * n;
    uint64_t l = (uint64_t)m;
    if (l < n) {
        uint64_t t = (0 - n) % n;
        while (l < t) {
            x = spine_rng_next(r);
            m = (__uint128_t)x * n;
            l = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

float spine_rng_uniform(spine_rng *r) {
    return (float)(spine_rng_next(r) >> 40) * 0x1p-24f;
}

float spine_rng_normal(spine_rng *r) {
    double u1 = ((double)(spine_rng_next(r) >> 11) + 1.0) * 0x1p-53; /* (0, 1] */
    double u2 = (double)(spine_rng_next(r) >> 11) * 0x1p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* log(1+x)/x and (exp(x)-1)/x, continuous at 0 */
static double helper1(double x) {
    return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x / 2 + x * x / 3;
}
static double helper2(double x) {
    return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x / 2 + x * x / 6;
}
static double zh(const spine_zipf *z, double x) {
    return exp(-z->alpha * log(x));
}
static double zH(const spine_zipf *z, double x) {
    double lx = log(x);
    return helper2((1 - z->alpha) * lx) * lx;
}
static double zHinv(const spine_zipf *z, double y) {
    double t = y * (1 - z->alpha);
    if (t < -1) t = -1; /* numerical guard */
    return exp(helper1(t) * y);
}

void spine_zipf_init(spine_zipf *z, uint64_t n, double alpha) {
    z->n = n ? n : 1;
    z->alpha = alpha;
    z->hx1 = zH(z, 1.5) - 1.0;
    z->hn = zH(z, (double)z->n + 0.5);
    z->s = 2 - zHinv(z, zH(z, 2.5) - zh(z, 2));
}

uint64_t spine_zipf_draw(const spine_zipf *z, spine_rng *r) {
    for (;;) {
        double u = z->hn + (double)spine_rng_uniform(r) * (z->hx1 - z->hn);
        double x = zHinv(z, u);
        double k = floor(x + 0.5);
        if (k < 1) k = 1;
        if (k > (double)z->n) k = (double)z->n;
        if (k - x <= z->s || u >= zH(z, k + 0.5) - zh(z, k)) return (uint64_t)k - 1;
    }
}
