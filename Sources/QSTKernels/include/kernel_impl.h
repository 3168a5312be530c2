#ifndef QST_KERNEL_IMPL_H
#define QST_KERNEL_IMPL_H
// Implementation choice for the non-matmul kernels (NF4 codec, error statistics, CRC-32C).
// Every entry point that takes an `impl` accepts these values so tests can pin each path
// against the scalar reference; QST_IMPL_AUTO picks the fastest the CPU (and the
// QST_KERNELS cap, see cpu.h) allows.
#ifdef __cplusplus
extern "C" {
#endif

enum {
    QST_IMPL_AUTO = 0,
    QST_IMPL_SCALAR = 1,
    QST_IMPL_AVX512 = 2,
    QST_IMPL_AVX2 = 3,
    QST_IMPL_NEON = 4,
};

/// 1 when `impl` can run on this CPU (QST_IMPL_AUTO and QST_IMPL_SCALAR always can).
int qst_impl_supported(int impl);

/// The concrete path QST_IMPL_AUTO resolves to (never QST_IMPL_AUTO); an explicit,
/// supported impl is returned unchanged, an unsupported one falls back to QST_IMPL_SCALAR.
int qst_impl_resolve(int impl);

#ifdef __cplusplus
}
#endif
#endif
