// Which implementation of the NF4 codec / error statistics / CRC-32C runs (kernel_impl.h).
#include "kernel_impl.h"
#include "cpu.h"

int qst_impl_supported(int impl) {
    const uint32_t f = qst_cpu_features();
    switch (impl) {
    case QST_IMPL_AUTO:
    case QST_IMPL_SCALAR: return 1;
    case QST_IMPL_AVX512: return (f & QST_CPU_AVX512_BASE) == QST_CPU_AVX512_BASE;
    case QST_IMPL_AVX2: return (f & QST_CPU_AVX2_BASE) == QST_CPU_AVX2_BASE;
    case QST_IMPL_NEON: return (f & QST_CPU_NEON) != 0;
    }
    return 0;
}

int qst_impl_resolve(int impl) {
    if (impl != QST_IMPL_AUTO) return qst_impl_supported(impl) ? impl : QST_IMPL_SCALAR;
    static const int order[] = {QST_IMPL_AVX512, QST_IMPL_AVX2, QST_IMPL_NEON};
    for (unsigned i = 0; i < sizeof order / sizeof order[0]; i++)
        if (qst_impl_supported(order[i])) return order[i];
    return QST_IMPL_SCALAR;
}
