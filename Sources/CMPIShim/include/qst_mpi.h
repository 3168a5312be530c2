#ifndef QST_MPI_H
#define QST_MPI_H

#include <stddef.h>

/// Open MPI loaded at run time (dlopen of libmpi.so.40), so one build of the tools runs with or without
/// MPI installed. Only the calls data-parallel training needs; every handle is Open MPI's exported
/// predefined object (MPI_COMM_WORLD is &ompi_mpi_comm_world, and so on). Every call returns an MPI
/// error code (0 = success) or -1 when the library is not loaded.

/// Loads `library` (NULL: "libmpi.so.40") and resolves the functions and handles. Returns 0, or -1 with
/// a one-line reason in `error`.
int qst_mpi_load(const char *library, char *error, size_t error_length);
/// MPI_Init_thread(MPI_THREAD_FUNNELED) on the calling (main) thread, then rank and size of MPI_COMM_WORLD.
int qst_mpi_init(int *rank, int *size);
/// In-place element-wise sums over MPI_COMM_WORLD; every rank receives the same result.
int qst_mpi_allreduce_sum_float(float *buffer, int count);
int qst_mpi_allreduce_sum_double(double *buffer, int count);
int qst_mpi_barrier(void);
int qst_mpi_finalize(void);
/// MPI_Abort(MPI_COMM_WORLD, code): ends every rank of the job.
void qst_mpi_abort(int code);
/// Prints `message` (copied) on stderr and exits 1 when the process receives SIGTERM: what mpirun sends
/// the surviving ranks when one of them dies.
void qst_mpi_on_termination(const char *message);

#endif
