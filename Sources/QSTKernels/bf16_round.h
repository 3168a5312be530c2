// float32 -> bfloat16 bits, round to nearest even: the one scalar rounding every bfloat16 copy the kernels
// make uses (NF4 values decoded to bfloat16, the bfloat16 GEMV's grid, the side networks' bfloat16 packs).
// Inf stays Inf; a NaN whose payload sits in the low half only could round to Inf (no caller stores one).
#ifndef QST_BF16_ROUND_H
#define QST_BF16_ROUND_H
#include <stdint.h>
#include <string.h>

static inline uint16_t qst_bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#endif
