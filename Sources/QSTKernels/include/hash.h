#ifndef QST_HASH_H
#define QST_HASH_H
#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as stored per tensor in .qst4.
/// Pass 0 as `crc` for a new checksum; chaining calls continues it.
uint32_t qst_crc32c(uint32_t crc, const void *data, size_t length);

/// The same with a pinned implementation (QST_IMPL_* of kernel_impl.h): SCALAR is the byte
/// table; AVX2/AVX512 use SSE4.2 crc32, NEON the ARMv8 CRC32C instructions (each falls back to
/// the table when the instruction is missing). Every path gives the same value.
uint32_t qst_crc32c_impl(uint32_t crc, const void *data, size_t length, int impl);

/// Incremental SHA-256 (FIPS 180-4). Uses the CPU's SHA-256 instructions when it has them (SHA-NI on
/// x86-64, the SHA2 extension on AArch64).
typedef struct {
    uint32_t state[8];
    uint64_t total;
    uint8_t buffer[64];
    size_t buffered;
    int fast;   // 1: the CPU's SHA-256 instructions, 0: portable rounds (set by init)
} qst_sha256_ctx;

/// The fastest rounds this CPU has (its SHA-256 instructions when present, unless QST_KERNELS=scalar).
void qst_sha256_init(qst_sha256_ctx *ctx);
/// A pinned implementation (QST_IMPL_* of kernel_impl.h): QST_IMPL_SCALAR always runs the portable
/// rounds; any other supported value the instruction rounds when the CPU has them. Every choice gives the same
/// digest.
void qst_sha256_init_impl(qst_sha256_ctx *ctx, int impl);
/// 1 when this CPU has SHA-256 instructions the library uses (SHA-NI with SSE4.1 on x86-64, SHA2 on AArch64).
int qst_sha256_has_hardware(void);
void qst_sha256_update(qst_sha256_ctx *ctx, const void *data, size_t length);
void qst_sha256_final(qst_sha256_ctx *ctx, uint8_t digest[32]);
#endif
