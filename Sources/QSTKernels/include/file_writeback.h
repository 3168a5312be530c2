#ifndef QST_FILE_WRITEBACK_H
#define QST_FILE_WRITEBACK_H
#include <stdint.h>

/// Starts writing the dirty pages of bytes [offset, offset+length) of `fd` to disk without waiting
/// (Linux sync_file_range with SYNC_FILE_RANGE_WRITE), so that a later fsync finds little left to do.
/// Not a durability guarantee by itself. Returns 0, or -1 with errno set; a no-op returning 0 where
/// the call does not exist. (Swift's Glibc module does not import sync_file_range.)
int qst_file_start_writeback(int fd, int64_t offset, int64_t length);
#endif
