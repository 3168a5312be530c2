// Early writeback for streamed output files (see file_writeback.h).
#if defined(__linux__)
#define _GNU_SOURCE
#include <fcntl.h>
#endif
#include "file_writeback.h"

int qst_file_start_writeback(int fd, int64_t offset, int64_t length) {
#if defined(__linux__)
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd; (void)offset; (void)length;
    return 0;
#endif
}
