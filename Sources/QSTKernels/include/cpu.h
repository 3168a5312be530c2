#ifndef QST_CPU_H
#define QST_CPU_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Bits returned by qst_cpu_features(). A bit is set only when the CPU reports the
/// instruction set AND the OS saves the matching register state (XCR0), so a set bit
/// means the instructions are safe to execute.
enum {
    QST_CPU_AVX512F = 1u << 0,
    QST_CPU_AVX512BW = 1u << 1,
    QST_CPU_AVX512VL = 1u << 2,
    QST_CPU_AVX512DQ = 1u << 3,
    QST_CPU_AVX512_BF16 = 1u << 4,
    QST_CPU_AVX512_VNNI = 1u << 5,
    QST_CPU_AMX_TILE = 1u << 6,
    QST_CPU_AMX_BF16 = 1u << 7,
    QST_CPU_AMX_INT8 = 1u << 8,
    /// Linux granted this process the AMX tile-data state (see qst_amx_enable).
    QST_CPU_AMX_PERMITTED = 1u << 9,
    /// x86 256-bit paths: AVX2 (cpuid 7.0 EBX 5), FMA (1.ECX 12), F16C (1.ECX 29), AVX-VNNI
    /// (7.1 EAX 4), each only when the OS saves the YMM state (XCR0 bits 1-2).
    QST_CPU_AVX2 = 1u << 10,
    QST_CPU_FMA = 1u << 11,
    QST_CPU_F16C = 1u << 12,
    QST_CPU_AVX_VNNI = 1u << 13,
    /// ARM64: Advanced SIMD, SDOT/UDOT, SMMLA (i8mm), BFDOT/BFMMLA (bf16).
    QST_CPU_NEON = 1u << 16,
    QST_CPU_NEON_DOTPROD = 1u << 17,
    QST_CPU_NEON_I8MM = 1u << 18,
    QST_CPU_NEON_BF16 = 1u << 19,
    /// Environment variable QST_KERNELS=scalar asked for the portable paths only.
    QST_CPU_FORCED_SCALAR = 1u << 31,
};

/// All AVX-512 subsets the vector kernels rely on (F, BW, VL, DQ).
#define QST_CPU_AVX512_BASE (QST_CPU_AVX512F | QST_CPU_AVX512BW | QST_CPU_AVX512VL | QST_CPU_AVX512DQ)

/// The AVX2 kernels need AVX2 and FMA together.
#define QST_CPU_AVX2_BASE (QST_CPU_AVX2 | QST_CPU_FMA)

/// Feature bitmask of the running CPU. Detected once (cpuid is a VM exit under a
/// hypervisor, far too slow to repeat per matmul) and cached; AMX permission is re-read
/// because qst_amx_enable can change it. The environment variable QST_KERNELS, read at
/// first call, caps the reported features to one level so every path can be measured and
/// tested on a bigger CPU: "scalar" reports only QST_CPU_FORCED_SCALAR; "avx2" keeps the
/// AVX2/FMA/F16C/AVX-VNNI bits and hides every AVX-512 and AMX bit; "avx512" hides AMX;
/// "neon" keeps only the NEON bits. Any other value is ignored (all detected features).
uint32_t qst_cpu_features(void);

/// Asks Linux for permission to use AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM).
/// Returns 1 when AMX is usable afterwards, 0 when the CPU or OS has no AMX.
int qst_amx_enable(void);

/// Human-readable list of the detected features, e.g. "avx512f avx512bw ... avx512_bf16".
/// Writes at most `capacity` bytes including the terminating NUL; returns `buffer`.
char *qst_cpu_describe(char *buffer, int capacity);

#ifdef __cplusplus
}
#endif
#endif
