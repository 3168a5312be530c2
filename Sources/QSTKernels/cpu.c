// Run-time CPU feature detection for the kernel dispatch.
#include "cpu.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

#if defined(__x86_64__)
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t detect_static(void) {
    uint32_t a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 27))) return 0; // no OSXSAVE: xgetbv unusable, no AVX state
    const int fma = (c & (1u << 12)) != 0, f16c = (c & (1u << 29)) != 0;
    uint64_t xcr0 = read_xcr0();
    // SSE and AVX (YMM upper halves) saved by the OS: the 256-bit paths are usable.
    int os_avx = (xcr0 & 0x6) == 0x6;
    // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM must all be saved by the OS.
    int os_avx512 = (xcr0 & 0xE6) == 0xE6;
    int os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);
    uint32_t max_leaf = __get_cpuid_max(0, 0);
    if (max_leaf < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    uint32_t f = 0;
    if (os_avx) {
        if (b & (1u << 5)) f |= QST_CPU_AVX2;
        if (fma) f |= QST_CPU_FMA;
        if (f16c) f |= QST_CPU_F16C;
    }
    if (os_avx512) {
        if (b & (1u << 16)) f |= QST_CPU_AVX512F;
        if (b & (1u << 17)) f |= QST_CPU_AVX512DQ;
        if (b & (1u << 30)) f |= QST_CPU_AVX512BW;
        if (b & (1u << 31)) f |= QST_CPU_AVX512VL;
        if (c & (1u << 11)) f |= QST_CPU_AVX512_VNNI;
    }
    if (os_amx) {
        if (d & (1u << 24)) f |= QST_CPU_AMX_TILE;
        if (d & (1u << 22)) f |= QST_CPU_AMX_BF16;
        if (d & (1u << 25)) f |= QST_CPU_AMX_INT8;
    }
    uint32_t a1, b1, c1, d1;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    if (os_avx512 && (a1 & (1u << 5))) f |= QST_CPU_AVX512_BF16;
    if (os_avx && (a1 & (1u << 4))) f |= QST_CPU_AVX_VNNI;
    return f;
}
#elif defined(__aarch64__)
// ARM64: Advanced SIMD is architectural; dotprod, i8mm and bf16 are optional and reported by
// the kernel (Linux auxiliary vector) or sysctl (macOS).
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1ul << 13)
#endif
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1ul << 14)
#endif
static uint32_t detect_static(void) {
    uint32_t f = QST_CPU_NEON;
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (hw & HWCAP_ASIMDDP) f |= QST_CPU_NEON_DOTPROD;
    if (hw2 & HWCAP2_I8MM) f |= QST_CPU_NEON_I8MM;
    if (hw2 & HWCAP2_BF16) f |= QST_CPU_NEON_BF16;
    return f;
}
#elif defined(__APPLE__)
#include <sys/sysctl.h>
static int sysctl_flag(const char *name) {
    int v = 0;
    size_t size = sizeof v;
    return sysctlbyname(name, &v, &size, NULL, 0) == 0 && v != 0;
}
static uint32_t detect_static(void) {
    uint32_t f = QST_CPU_NEON;
    if (sysctl_flag("hw.optional.arm.FEAT_DotProd")) f |= QST_CPU_NEON_DOTPROD;
    if (sysctl_flag("hw.optional.arm.FEAT_I8MM")) f |= QST_CPU_NEON_I8MM;
    if (sysctl_flag("hw.optional.arm.FEAT_BF16")) f |= QST_CPU_NEON_BF16;
    return f;
}
#else
static uint32_t detect_static(void) { return QST_CPU_NEON; }
#endif
#else
static uint32_t detect_static(void) { return 0; }
#endif

static int amx_permitted(void) {
#if defined(__linux__) && defined(__x86_64__)
    unsigned long mask = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &mask) != 0) return 0;
    return (mask & (1ul << XFEATURE_XTILEDATA)) != 0;
#else
    return 0;
#endif
}

// QST_KERNELS=scalar|avx2|avx2vnni|avx512|neon keeps only the features of that level; an unknown
// value changes nothing (a typo must not silently slow a run down to scalar). "avx2" is the
// AVX2 + FMA + F16C of Haswell to Zen 3, without AVX-VNNI (Zen 3 has none), so an AVX-512
// machine measures what those CPUs run; "avx2vnni" adds AVX-VNNI (Alder Lake, Zen 5).
static uint32_t cap_to_level(uint32_t f, const char *level) {
    const uint32_t avx2 = QST_CPU_AVX2 | QST_CPU_FMA | QST_CPU_F16C;
    const uint32_t avx512 = QST_CPU_AVX512_BASE | QST_CPU_AVX512_BF16 | QST_CPU_AVX512_VNNI;
    const uint32_t neon = QST_CPU_NEON | QST_CPU_NEON_DOTPROD | QST_CPU_NEON_I8MM | QST_CPU_NEON_BF16;
    if (!level) return f;
    if (strcmp(level, "scalar") == 0) return QST_CPU_FORCED_SCALAR;
    if (strcmp(level, "avx2") == 0) return f & avx2;
    if (strcmp(level, "avx2vnni") == 0) return f & (avx2 | QST_CPU_AVX_VNNI);
    if (strcmp(level, "avx512") == 0) return f & (avx2 | QST_CPU_AVX_VNNI | avx512);
    if (strcmp(level, "neon") == 0) return f & neon;
    return f;
}

// Cached because cpuid traps to the hypervisor; the value is a fact about the machine,
// identical for every caller, so a benign race on first use only repeats the detection.
static _Atomic uint32_t cached_features = 0;
static _Atomic int cached_valid = 0;
// AMX permission, once granted, lasts for the process: remember it to skip the syscall.
static _Atomic int amx_granted = 0;

uint32_t qst_cpu_features(void) {
    if (!atomic_load_explicit(&cached_valid, memory_order_acquire)) {
        uint32_t f = cap_to_level(detect_static(), getenv("QST_KERNELS"));
        atomic_store_explicit(&cached_features, f, memory_order_relaxed);
        atomic_store_explicit(&cached_valid, 1, memory_order_release);
    }
    uint32_t f = atomic_load_explicit(&cached_features, memory_order_relaxed);
    if (f & QST_CPU_AMX_TILE) {
        if (!atomic_load_explicit(&amx_granted, memory_order_relaxed) && amx_permitted())
            atomic_store_explicit(&amx_granted, 1, memory_order_relaxed);
        if (atomic_load_explicit(&amx_granted, memory_order_relaxed)) f |= QST_CPU_AMX_PERMITTED;
    }
    return f;
}

int qst_amx_enable(void) {
    uint32_t f = qst_cpu_features();
    if (!(f & QST_CPU_AMX_TILE)) return 0;
    if (f & QST_CPU_AMX_PERMITTED) return 1;
#if defined(__linux__) && defined(__x86_64__)
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 0;
#endif
    return amx_permitted();
}

char *qst_cpu_describe(char *buffer, int capacity) {
    static const struct { uint32_t bit; const char *name; } names[] = {
        {QST_CPU_AVX512F, "avx512f"}, {QST_CPU_AVX512BW, "avx512bw"}, {QST_CPU_AVX512VL, "avx512vl"},
        {QST_CPU_AVX512DQ, "avx512dq"}, {QST_CPU_AVX512_BF16, "avx512_bf16"},
        {QST_CPU_AVX512_VNNI, "avx512_vnni"}, {QST_CPU_AMX_TILE, "amx_tile"}, {QST_CPU_AMX_BF16, "amx_bf16"},
        {QST_CPU_AMX_INT8, "amx_int8"}, {QST_CPU_AMX_PERMITTED, "amx_permitted"},
        {QST_CPU_AVX2, "avx2"}, {QST_CPU_FMA, "fma"}, {QST_CPU_F16C, "f16c"}, {QST_CPU_AVX_VNNI, "avx_vnni"},
        {QST_CPU_NEON, "neon"}, {QST_CPU_NEON_DOTPROD, "dotprod"}, {QST_CPU_NEON_I8MM, "i8mm"},
        {QST_CPU_NEON_BF16, "bf16"},
        {QST_CPU_FORCED_SCALAR, "forced_scalar"},
    };
    if (!buffer || capacity <= 0) return buffer;
    buffer[0] = 0;
    uint32_t f = qst_cpu_features();
    int used = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(f & names[i].bit)) continue;
        int w = snprintf(buffer + used, (size_t)(capacity - used), "%s%s", used ? " " : "", names[i].name);
        if (w < 0 || w >= capacity - used) break;
        used += w;
    }
    return buffer;
}
