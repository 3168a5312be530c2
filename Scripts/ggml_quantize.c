/* Quantizes one F32 matrix with ggml's own quantizers (the code llama-quantize calls) and writes it back
 * dequantized, so Scripts/bench_quality.py can put llama.cpp's formats through QST's evaluator.
 *
 *   ggml_quantize TYPE ROWS COLS IN.f32 OUT.f32 [IMATRIX.f32]
 *
 * IN/OUT: ROWS×COLS little-endian float32, row-major; IMATRIX: COLS float32 (per-column importance, the mean
 * squared activation, as llama-imatrix collects). Prints the quantized size in bytes on stdout.
 * Built by Scripts/bench-quality against the ggml static library of its llama.cpp build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "ggml_quantize: %s: cannot open\n", path); exit(1); }
    float *p = malloc(n * sizeof(float));
    if (!p || fread(p, sizeof(float), n, f) != n) { fprintf(stderr, "ggml_quantize: %s: short file\n", path); exit(1); }
    fclose(f);
    return p;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: ggml_quantize TYPE ROWS COLS IN.f32 OUT.f32 [IMATRIX.f32]\n");
        return 2;
    }
    enum ggml_type type = GGML_TYPE_COUNT;
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char *name = ggml_type_name((enum ggml_type)t);
        if (name && strcmp(name, argv[1]) == 0) { type = (enum ggml_type)t; break; }
    }
    if (type == GGML_TYPE_COUNT) { fprintf(stderr, "ggml_quantize: unknown type %s\n", argv[1]); return 2; }
    const int64_t rows = atoll(argv[2]), cols = atoll(argv[3]);
    if (rows <= 0 || cols <= 0 || cols % ggml_blck_size(type) != 0) {
        fprintf(stderr, "ggml_quantize: %s needs rows of a multiple of %lld values (got %lld)\n", argv[1],
                (long long)ggml_blck_size(type), (long long)cols);
        return 2;
    }
    float *x = read_floats(argv[4], (size_t)(rows * cols));
    float *imatrix = argc == 7 ? read_floats(argv[6], (size_t)cols) : NULL;
    const size_t row_bytes = ggml_row_size(type, cols);
    void *q = malloc(row_bytes * (size_t)rows);
    ggml_quantize_init(type);
    const size_t bytes = ggml_quantize_chunk(type, x, q, 0, rows, cols, imatrix);
    const struct ggml_type_traits *traits = ggml_get_type_traits(type);
    for (int64_t r = 0; r < rows; r++) traits->to_float((const char *)q + r * row_bytes, x + r * cols, cols);
    FILE *out = fopen(argv[5], "wb");
    if (!out || fwrite(x, sizeof(float), (size_t)(rows * cols), out) != (size_t)(rows * cols) || fclose(out) != 0) {
        fprintf(stderr, "ggml_quantize: %s: write failed\n", argv[5]);
        return 1;
    }
    printf("%zu\n", bytes);
    return 0;
}
