#ifndef QST_KERNELS_H
#define QST_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include "hash.h"
#include "stats.h"
#include "nf4.h"
#include "cpu.h"
#include "kernel_impl.h"
#include "matmul.h"
#include "q8.h"
#include "vecmath.h"
#include "small_gemv.h"
#include "side_decode_attention.h"
#include "kv_half.h"
#include "file_writeback.h"
#endif
