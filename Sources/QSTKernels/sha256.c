// SHA-256: a portable implementation, and the CPUs' own SHA-256 rounds chosen at run time: SHA-NI
// (x86-64) or the ARMv8 SHA2 instructions (AArch64). qst-quantize hashes every source file for the
// container's provenance (a 538 MB F32 SmolLM2 is hashed in full), so without them the portable rounds
// take longer than the quantization itself.
#include "hash.h"
#include "kernel_impl.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#include <cpuid.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_SHA2
#define HWCAP_SHA2 (1ul << 6)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void blocks_portable(uint32_t s[8], const uint8_t *p, size_t nblocks) {
    while (nblocks--) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
            uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
        p += 64;
    }
}

#if defined(__x86_64__)
// The SHA-NI round structure follows Intel's published description of the extensions.
__attribute__((target("sha,sse4.1")))
static void blocks_shani(uint32_t s[8], const uint8_t *p, size_t nblocks) {
    const __m128i shuf = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_loadu_si128((const __m128i *)&s[0]);
    __m128i st1 = _mm_loadu_si128((const __m128i *)&s[4]);
    tmp = _mm_shuffle_epi32(tmp, 0xB1);          // CDAB
    st1 = _mm_shuffle_epi32(st1, 0x1B);          // EFGH
    __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);  // ABEF
    st1 = _mm_blend_epi16(st1, tmp, 0xF0);       // CDGH
    while (nblocks--) {
        __m128i abef = st0, cdgh = st1, msg, m[4];
        for (int i = 0; i < 4; i++) m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), shuf);
        // Fully unrolled, so m[] lives in registers (with a loop the indices r & 3 send it to the stack).
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) {
            __m128i cur = m[r & 3];
            msg = _mm_add_epi32(cur, _mm_loadu_si128((const __m128i *)&K[4 * r]));
            st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
            msg = _mm_shuffle_epi32(msg, 0x0E);
            st0 = _mm_sha256rnds2_epu32(st0, st1, msg);
            if (r < 12) {
                // Schedule the message words four rounds-groups ahead.
                __m128i next = _mm_sha256msg1_epu32(m[r & 3], m[(r + 1) & 3]);
                next = _mm_add_epi32(next, _mm_alignr_epi8(m[(r + 3) & 3], m[(r + 2) & 3], 4));
                m[r & 3] = _mm_sha256msg2_epu32(next, m[(r + 3) & 3]);
            }
        }
        st0 = _mm_add_epi32(st0, abef);
        st1 = _mm_add_epi32(st1, cdgh);
        p += 64;
    }
    tmp = _mm_shuffle_epi32(st0, 0x1B);          // FEBA
    st1 = _mm_shuffle_epi32(st1, 0xB1);          // DCHG
    st0 = _mm_blend_epi16(tmp, st1, 0xF0);       // DCBA
    st1 = _mm_alignr_epi8(st1, tmp, 8);          // HGFE
    _mm_storeu_si128((__m128i *)&s[0], st0);
    _mm_storeu_si128((__m128i *)&s[4], st1);
}

static int has_shani(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 29) & 1;
}
#endif

#if defined(__aarch64__)
// The ARMv8 SHA2 instructions (FIPS 180-4's rounds four at a time): SHA256H / SHA256H2 advance the
// ABCD and EFGH halves of the state by four rounds given W + K; SHA256SU0 / SHA256SU1 extend the
// message schedule by four words from the sixteen before them.
__attribute__((target("arch=armv8-a+crypto")))
static void blocks_arm(uint32_t s[8], const uint8_t *p, size_t nblocks) {
    uint32x4_t abcd = vld1q_u32(&s[0]), efgh = vld1q_u32(&s[4]);
    while (nblocks--) {
        const uint32x4_t abcd0 = abcd, efgh0 = efgh;
        uint32x4_t m[4];
        // The message words are big-endian.
        for (int i = 0; i < 4; i++) m[i] = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 16 * i)));
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) {
            const uint32x4_t wk = vaddq_u32(m[r & 3], vld1q_u32(&K[4 * r]));
            const uint32x4_t prev = abcd;
            abcd = vsha256hq_u32(abcd, efgh, wk);
            efgh = vsha256h2q_u32(efgh, prev, wk);
            // W[4r+16 .. 4r+19] from W[4r ..], W[4r+4 ..], W[4r+8 ..], W[4r+12 ..].
            if (r < 12)
                m[r & 3] = vsha256su1q_u32(vsha256su0q_u32(m[r & 3], m[(r + 1) & 3]), m[(r + 2) & 3], m[(r + 3) & 3]);
        }
        abcd = vaddq_u32(abcd, abcd0);
        efgh = vaddq_u32(efgh, efgh0);
        p += 64;
    }
    vst1q_u32(&s[0], abcd);
    vst1q_u32(&s[4], efgh);
}

static int arm_has_sha2(void) {
#if defined(__ARM_FEATURE_SHA2)
    return 1;
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
#elif defined(__APPLE__)
    int v = 0;
    size_t size = sizeof v;
    return sysctlbyname("hw.optional.arm.FEAT_SHA256", &v, &size, NULL, 0) == 0 && v != 0;
#else
    return 0;
#endif
}
#endif

int qst_sha256_has_hardware(void) {
    static int mode = -1;
    int m = __atomic_load_n(&mode, __ATOMIC_RELAXED);
    if (m < 0) {
#if defined(__x86_64__)
        m = has_shani() && __builtin_cpu_supports("sse4.1");
#elif defined(__aarch64__)
        m = arm_has_sha2();
#else
        m = 0;
#endif
        __atomic_store_n(&mode, m, __ATOMIC_RELAXED);
    }
    return m;
}

static void blocks(const qst_sha256_ctx *ctx, uint32_t s[8], const uint8_t *p, size_t n) {
#if defined(__x86_64__)
    if (ctx->fast) { blocks_shani(s, p, n); return; }
#elif defined(__aarch64__)
    if (ctx->fast) { blocks_arm(s, p, n); return; }
#else
    (void)ctx;
#endif
    blocks_portable(s, p, n);
}

void qst_sha256_init(qst_sha256_ctx *ctx) { qst_sha256_init_impl(ctx, QST_IMPL_AUTO); }

void qst_sha256_init_impl(qst_sha256_ctx *ctx, int impl) {
    // The SHA instructions are not tied to a vector width: any non-scalar choice uses them when the CPU
    // has them (QST_KERNELS=scalar, through qst_impl_resolve, gives the portable rounds).
    ctx->fast = qst_impl_resolve(impl) != QST_IMPL_SCALAR && qst_sha256_has_hardware();
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, iv, sizeof iv);
    ctx->total = 0;
    ctx->buffered = 0;
}

void qst_sha256_update(qst_sha256_ctx *ctx, const void *data, size_t length) {
    const uint8_t *p = (const uint8_t *)data;
    ctx->total += length;
    if (ctx->buffered) {
        size_t take = 64 - ctx->buffered < length ? 64 - ctx->buffered : length;
        memcpy(ctx->buffer + ctx->buffered, p, take);
        ctx->buffered += take; p += take; length -= take;
        if (ctx->buffered < 64) return;
        blocks(ctx, ctx->state, ctx->buffer, 1);
        ctx->buffered = 0;
    }
    if (length >= 64) { blocks(ctx, ctx->state, p, length / 64); p += length & ~(size_t)63; length &= 63; }
    if (length) { memcpy(ctx->buffer, p, length); ctx->buffered = length; }
}

void qst_sha256_final(qst_sha256_ctx *ctx, uint8_t digest[32]) {
    uint64_t bits = ctx->total * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (ctx->buffered < 56) ? 56 - ctx->buffered : 120 - ctx->buffered;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    uint64_t total = ctx->total;
    qst_sha256_update(ctx, pad, padlen);
    qst_sha256_update(ctx, len, 8);
    ctx->total = total;
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(ctx->state[i] >> 24); digest[4 * i + 1] = (uint8_t)(ctx->state[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(ctx->state[i] >> 8); digest[4 * i + 3] = (uint8_t)ctx->state[i];
    }
}
