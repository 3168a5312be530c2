#ifndef QST_STATS_H
#define QST_STATS_H
#include <stddef.h>

/// Sums over i of x², (x − y)² and the max of |x − y|, for quantization error statistics.
/// Accumulates in float over short runs and in double across them.
void qst_error_sums(const float *x, const float *y, size_t n, double *signal, double *error, double *max_abs);

/// The same with a pinned implementation (QST_IMPL_* of kernel_impl.h); every path gives
/// identical bits.
void qst_error_sums_impl(const float *x, const float *y, size_t n, double *signal, double *error, double *max_abs,
                         int impl);
#endif
