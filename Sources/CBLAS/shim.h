#include <cblas.h>
// OpenBLAS extras used to keep BLAS threads and our own threads from oversubscribing the cores.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_corename(void);
