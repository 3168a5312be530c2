#include <cblas.h>
// OpenBLAS extras used to keep BLAS threads and our own threads from oversubscribing the cores.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_corename(void);
// Stops the worker threads OpenBLAS starts as it loads (each spins ~0.1 s before it sleeps); the next
// threaded BLAS call starts them again. Exported by OpenBLAS for its fork handling.
int blas_thread_shutdown_(void);
// LAPACK (shipped inside OpenBLAS): Cholesky factor and inverse from it, for GPTQ quantization (NF4GPTQ).
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);
// Solve with the Cholesky factor from dpotrf_ (GPTQ's asymmetric target, NF4GPTQ.asymmetricTarget).
void dpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a, const int *lda, double *b,
             const int *ldb, int *info);
