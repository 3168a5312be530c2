// Non-x86 builds: the AVX-512 matmul kernels (matmul_gemm.c, matmul_gemv.c) compile to nothing,
// and matmul.c's dispatch never selects them (their CPU bits are never set), but matmul.c
// still names them. These definitions satisfy the linker and refuse the call.
#if !defined(__x86_64__)
#include "matmul_internal.h"

int qst_mm_gemv_avx512(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                       float *y, int64_t ldy, int64_t n0, int64_t n1, int use_bf16) {
    (void)x; (void)m; (void)ldx; (void)w; (void)y; (void)ldy; (void)n0; (void)n1; (void)use_bf16;
    return QST_MATMUL_UNSUPPORTED;
}

int qst_mm_gemm_avx512(const float *x, int64_t m, int64_t ldx, const qst_weight *w,
                       float *y, int64_t ldy, int64_t n0, int64_t n1, int use_bf16) {
    (void)x; (void)m; (void)ldx; (void)w; (void)y; (void)ldy; (void)n0; (void)n1; (void)use_bf16;
    return QST_MATMUL_UNSUPPORTED;
}

// The AVX2 files (matmul_gemv_avx2.c, matmul_gemm_avx2.c, matmul_gemv_int16_avx2.c) carry their own
// refusing definitions off x86.
#endif
