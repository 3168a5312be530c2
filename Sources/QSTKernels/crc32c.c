// CRC-32C: a byte table (portable reference), the x86 SSE4.2 crc32 instruction, or the ARMv8
// CRC32C instructions. The instruction paths run three independent streams over adjacent
// 4 KiB stripes (crc32 has a latency of ~3 cycles and a throughput of 1 per cycle, so one
// stream uses a third of the unit) and join them with the "append L zero bytes" operator,
// which is linear in the CRC state and so a 4 x 256 lookup table.
#include "hash.h"
#include "kernel_impl.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_acle.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1ul << 7)
#endif
#endif
#endif

#define STRIPE 4096

static uint32_t crc32c_table(uint32_t crc, const uint8_t *p, size_t n) {
    static uint32_t table[256];
    static int ready = 0;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    while (n--) crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

// Operator "feed STRIPE zero bytes" on the raw state, as 4 byte-indexed tables. Built once
// from the reference: the operator is linear, so column b is the image of state 1 << b.
static const uint32_t (*stripe_shift_tables(void))[256] {
    static uint32_t t[4][256];
    static int ready = 0;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        static const uint8_t zeros[STRIPE];
        uint32_t col[32];
        for (int b = 0; b < 32; b++) col[b] = crc32c_table(1u << b, zeros, STRIPE);
        for (int i = 0; i < 4; i++)
            for (uint32_t v = 0; v < 256; v++) {
                uint32_t r = 0;
                for (int b = 0; b < 8; b++) if (v & (1u << b)) r ^= col[8 * i + b];
                t[i][v] = r;
            }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return (const uint32_t (*)[256])t;
}

static inline uint32_t shift_stripe(const uint32_t (*t)[256], uint32_t c) {
    return t[0][c & 255] ^ t[1][(c >> 8) & 255] ^ t[2][(c >> 16) & 255] ^ t[3][c >> 24];
}

// state(A|B|C) = shift(shift(state(A)) ^ state0(B)) ^ state0(C), each stripe STRIPE bytes.
#define CRC_THREE_WAY(STEP64, STEP8, crc, p, n)                                            \
    do {                                                                                   \
        const uint32_t (*t)[256] = n >= 3 * STRIPE ? stripe_shift_tables() : NULL;         \
        while (n >= 3 * STRIPE) {                                                          \
            uint64_t a = crc, b = 0, c = 0;                                                \
            for (size_t o = 0; o < STRIPE; o += 8) {                                       \
                uint64_t va, vb, vc;                                                       \
                memcpy(&va, p + o, 8); memcpy(&vb, p + STRIPE + o, 8);                     \
                memcpy(&vc, p + 2 * STRIPE + o, 8);                                        \
                a = STEP64(a, va); b = STEP64(b, vb); c = STEP64(c, vc);                   \
            }                                                                              \
            crc = shift_stripe(t, shift_stripe(t, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c; \
            p += 3 * STRIPE; n -= 3 * STRIPE;                                              \
        }                                                                                  \
        uint64_t s = crc;                                                                  \
        for (; n >= 8; p += 8, n -= 8) { uint64_t v; memcpy(&v, p, 8); s = STEP64(s, v); } \
        crc = (uint32_t)s;                                                                 \
        while (n--) crc = STEP8(crc, *p++);                                                \
    } while (0)

#if defined(__x86_64__)
#define X86_STEP64(s, v) _mm_crc32_u64((s), (v))
#define X86_STEP8(s, v) _mm_crc32_u8((s), (v))
__attribute__((target("sse4.2")))
static uint32_t crc32c_x86(uint32_t crc, const uint8_t *p, size_t n) {
    CRC_THREE_WAY(X86_STEP64, X86_STEP8, crc, p, n);
    return crc;
}
#endif

#if defined(__aarch64__)
#define ARM_STEP64(s, v) __crc32cd((uint32_t)(s), (v))
#define ARM_STEP8(s, v) __crc32cb((s), (v))
__attribute__((target("arch=armv8-a+crc")))
static uint32_t crc32c_arm(uint32_t crc, const uint8_t *p, size_t n) {
    CRC_THREE_WAY(ARM_STEP64, ARM_STEP8, crc, p, n);
    return crc;
}

static int arm_has_crc(void) {
#if defined(__ARM_FEATURE_CRC32)
    return 1;
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#else
    return 0;
#endif
}
#endif

uint32_t qst_crc32c_impl(uint32_t crc, const void *data, size_t length, int impl) {
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    switch (qst_impl_resolve(impl)) {
#if defined(__x86_64__)
    case QST_IMPL_AVX512:
    case QST_IMPL_AVX2:
        if (__builtin_cpu_supports("sse4.2")) return ~crc32c_x86(crc, p, length);
        break;
#endif
#if defined(__aarch64__)
    case QST_IMPL_NEON:
        if (arm_has_crc()) return ~crc32c_arm(crc, p, length);
        break;
#endif
    default: break;
    }
    return ~crc32c_table(crc, p, length);
}

uint32_t qst_crc32c(uint32_t crc, const void *data, size_t length) {
    return qst_crc32c_impl(crc, data, length, QST_IMPL_AUTO);
}
