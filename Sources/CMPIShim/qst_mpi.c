// Open MPI through dlopen: see include/qst_mpi.h. The resolved entry points live in file-scope statics
// because a process has exactly one MPI library and one MPI_COMM_WORLD; they are written once by
// qst_mpi_load before any other call.
#include "qst_mpi.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef void *handle_t;  // MPI_Comm, MPI_Datatype and MPI_Op are pointers in Open MPI

static struct {
    int (*init_thread)(int *, char ***, int, int *);
    int (*comm_rank)(handle_t, int *);
    int (*comm_size)(handle_t, int *);
    int (*allreduce)(const void *, void *, int, handle_t, handle_t, handle_t);
    int (*barrier)(handle_t);
    int (*finalize)(void);
    int (*abort_job)(handle_t, int);
    handle_t comm_world, type_float, type_double, op_sum;
} mpi;

// Open MPI's constants (mpi.h): MPI_THREAD_FUNNELED = 1, MPI_IN_PLACE = (void *)1.
enum { thread_funneled = 1 };
#define in_place ((void *)1)

int qst_mpi_load(const char *library, char *error, size_t error_length) {
    const char *name = library ? library : "libmpi.so.40";
    // RTLD_GLOBAL: Open MPI's own plug-ins resolve libmpi's symbols from the global scope.
    void *lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(error, error_length, "cannot load %s (%s); install Debian's libopenmpi-dev/openmpi-bin", name, dlerror());
        return -1;
    }
    struct { const char *symbol; void **slot; } table[] = {
        {"MPI_Init_thread", (void **)&mpi.init_thread}, {"MPI_Comm_rank", (void **)&mpi.comm_rank},
        {"MPI_Comm_size", (void **)&mpi.comm_size},     {"MPI_Allreduce", (void **)&mpi.allreduce},
        {"MPI_Barrier", (void **)&mpi.barrier},         {"MPI_Finalize", (void **)&mpi.finalize},
        {"MPI_Abort", (void **)&mpi.abort_job},         {"ompi_mpi_comm_world", &mpi.comm_world},
        {"ompi_mpi_float", &mpi.type_float},            {"ompi_mpi_double", &mpi.type_double},
        {"ompi_mpi_op_sum", &mpi.op_sum},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        *table[i].slot = dlsym(lib, table[i].symbol);
        if (!*table[i].slot) {
            snprintf(error, error_length, "%s has no symbol %s (not Open MPI?)", name, table[i].symbol);
            memset(&mpi, 0, sizeof mpi);
            return -1;
        }
    }
    return 0;
}

int qst_mpi_init(int *rank, int *size) {
    if (!mpi.init_thread) return -1;
    int provided = 0;
    int rc = mpi.init_thread(NULL, NULL, thread_funneled, &provided);
    if (rc) return rc;
    if ((rc = mpi.comm_rank(mpi.comm_world, rank))) return rc;
    return mpi.comm_size(mpi.comm_world, size);
}

int qst_mpi_allreduce_sum_float(float *buffer, int count) {
    if (!mpi.allreduce) return -1;
    return mpi.allreduce(in_place, buffer, count, mpi.type_float, mpi.op_sum, mpi.comm_world);
}

int qst_mpi_allreduce_sum_double(double *buffer, int count) {
    if (!mpi.allreduce) return -1;
    return mpi.allreduce(in_place, buffer, count, mpi.type_double, mpi.op_sum, mpi.comm_world);
}

int qst_mpi_barrier(void) { return mpi.barrier ? mpi.barrier(mpi.comm_world) : -1; }

int qst_mpi_finalize(void) { return mpi.finalize ? mpi.finalize() : -1; }

void qst_mpi_abort(int code) {
    if (mpi.abort_job) mpi.abort_job(mpi.comm_world, code);
    _exit(code);
}

// The handler may only call async-signal-safe functions: write(2) of a buffer prepared beforehand, _exit.
static char termination_message[1024];
static size_t termination_length;

static void on_sigterm(int signal_number) {
    (void)signal_number;
    if (termination_length) {
        ssize_t ignored = write(STDERR_FILENO, termination_message, termination_length);
        (void)ignored;
    }
    _exit(1);
}

void qst_mpi_on_termination(const char *message) {
    size_t n = strlen(message);
    if (n > sizeof termination_message - 2) n = sizeof termination_message - 2;
    memcpy(termination_message, message, n);
    termination_message[n] = '\n';
    termination_length = n + 1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_sigterm;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
}
