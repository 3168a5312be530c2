// Plain C test driver for Sources/QSTKernels: every vector path this CPU has against the
// scalar reference. Built natively (x86: AVX-512, AVX2 paths) and cross-compiled for ARM64
// under qemu by Scripts/test-arm64 (NEON, NEON dotprod paths). Prints "N passed, N failed"
// and exits non-zero on any failure.
//
//   NF4 quantize / dequantize, error sums, CRC-32C: identical bits to the scalar path.
//   matmul: each path against a float64 sum of the scalar-decoded weights, within the bound
//   of its precision class (float32 reorder, bfloat16 rounding, int8 activations + int8 grid).
//   Q8 rows: the quantizer's rounding, each GEMV path against a float64 sum (test_q8.inc).
//   vecmath: softmax, SiLU gate, side attention forward/backward against float64 (test_vecmath.inc).
//   small_gemv: every path bit for bit against the scalar reference, float32 and bfloat16 weights
//   (test_small_gemv.inc).
//   side decode attention: every path against float64 (test_side_decode_attention.inc).
//   binary16 cache: conversions against the IEEE rules, decode attention against float64 (test_kv_half.inc).
#include "QSTKernels.h"
#include "matmul_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) { passed++; return; }
    failed++;
    if (failed <= 40) printf("FAIL %s\n", what);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float unit(void) { return (float)((next_u64() >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }
static float normalish(void) { return (unit() + unit() + unit()) * 1.2f; }

static const char *impl_name(int impl) {
    switch (impl) {
    case QST_IMPL_SCALAR: return "scalar";
    case QST_IMPL_AVX512: return "avx512";
    case QST_IMPL_AVX2: return "avx2";
    case QST_IMPL_NEON: return "neon";
    }
    return "?";
}

static const int vector_impls[] = {QST_IMPL_AVX512, QST_IMPL_AVX2, QST_IMPL_NEON};

// ------------------------------------------------------------------------------- NF4 codec

static void test_nf4(int impl) {
    static const int64_t blocks[] = {32, 64, 128, 1024};
    static const int64_t counts[] = {1, 2, 17, 33, 64, 65, 1001, 4099, 70001};
    char what[160];
    for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            int64_t bs = blocks[bi], n = counts[ci], nb = (n + bs - 1) / bs;
            float *x = malloc((size_t)n * sizeof(float));
            for (int64_t i = 0; i < n; i++) x[i] = normalish() * ((i % 997 == 0) ? 40.0f : 1.0f);
            if (n > 300) for (int64_t i = 128; i < 256; i++) x[i] = 0.0f; // all-zero blocks
            uint8_t *c0 = calloc((size_t)(n + 1) / 2, 1), *c1 = calloc((size_t)(n + 1) / 2, 1);
            float *a0 = calloc((size_t)nb, sizeof(float)), *a1 = calloc((size_t)nb, sizeof(float));
            int64_t r0 = qst_nf4_quantize_blocks(x, n, bs, 0, nb, c0, a0, QST_IMPL_SCALAR);
            int64_t r1 = qst_nf4_quantize_blocks(x, n, bs, 0, nb, c1, a1, impl);
            snprintf(what, sizeof what, "nf4 quantize %s block %lld n %lld", impl_name(impl), (long long)bs, (long long)n);
            check(r0 == -1 && r1 == -1 && memcmp(c0, c1, (size_t)(n + 1) / 2) == 0
                  && memcmp(a0, a1, (size_t)nb * sizeof(float)) == 0, what);
            // Dequantize ranges: whole, odd start, ragged end, inside one block.
            int64_t ranges[4][2] = {{0, n}, {n > 3 ? 1 : 0, n > 3 ? n - 2 : n}, {(n / 2) & ~1LL, n - ((n / 2) & ~1LL)},
                                    {n > 40 ? 3 : 0, n > 40 ? 37 : n}};
            for (int r = 0; r < 4; r++) {
                int64_t s = ranges[r][0], len = ranges[r][1];
                float *f0 = malloc((size_t)len * sizeof(float) + 4), *f1 = malloc((size_t)len * sizeof(float) + 4);
                uint16_t *h0 = malloc((size_t)len * 2 + 2), *h1 = malloc((size_t)len * 2 + 2);
                qst_nf4_dequantize_f32(c0, a0, bs, s, len, f0, QST_IMPL_SCALAR);
                qst_nf4_dequantize_f32(c0, a0, bs, s, len, f1, impl);
                qst_nf4_dequantize_bf16(c0, a0, bs, s, len, h0, QST_IMPL_SCALAR);
                qst_nf4_dequantize_bf16(c0, a0, bs, s, len, h1, impl);
                snprintf(what, sizeof what, "nf4 dequantize %s block %lld n %lld [%lld, +%lld)", impl_name(impl),
                         (long long)bs, (long long)n, (long long)s, (long long)len);
                check(memcmp(f0, f1, (size_t)len * sizeof(float)) == 0 && memcmp(h0, h1, (size_t)len * 2) == 0, what);
                free(f0); free(f1); free(h0); free(h1);
            }
            free(x); free(c0); free(c1); free(a0); free(a1);
        }
    }
    // Non-finite input: every path reports the first bad element.
    float x[200];
    for (int i = 0; i < 200; i++) x[i] = normalish();
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    const int at[3] = {5, 70, 199};
    for (int t = 0; t < 3; t++) {
        float y[200];
        memcpy(y, x, sizeof y);
        y[at[t]] = bad[t];
        uint8_t c[100];
        float a[4];
        snprintf(what, sizeof what, "nf4 non-finite %s at %d", impl_name(impl), at[t]);
        check(qst_nf4_quantize_blocks(y, 200, 64, 0, 4, c, a, impl) == at[t], what);
    }
}

// ---------------------------------------------------------------------------- error sums

static void test_stats(int impl) {
    static const size_t sizes[] = {0, 1, 15, 16, 17, 511, 512, 513, 5000, 100003};
    char what[120];
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        float *x = malloc(n * sizeof(float) + 4), *y = malloc(n * sizeof(float) + 4);
        for (size_t i = 0; i < n; i++) { x[i] = normalish(); y[i] = x[i] + unit() * 0.01f; }
        double s0, e0, m0, s1, e1, m1;
        qst_error_sums_impl(x, y, n, &s0, &e0, &m0, QST_IMPL_SCALAR);
        qst_error_sums_impl(x, y, n, &s1, &e1, &m1, impl);
        snprintf(what, sizeof what, "error sums %s n %zu", impl_name(impl), n);
        check(memcmp(&s0, &s1, 8) == 0 && memcmp(&e0, &e1, 8) == 0 && memcmp(&m0, &m1, 8) == 0, what);
        free(x); free(y);
    }
}

// -------------------------------------------------------------------------------- CRC-32C

static void test_crc(int impl) {
    // Known answer (RFC 3720 B.4): 32 bytes of zeros -> 0x8A9136AA; "123456789" -> 0xE3069283.
    uint8_t zeros[32] = {0};
    char what[120];
    snprintf(what, sizeof what, "crc32c %s known answers", impl_name(impl));
    check(qst_crc32c_impl(0, zeros, 32, impl) == 0x8A9136AAu && qst_crc32c_impl(0, "123456789", 9, impl) == 0xE3069283u, what);
    size_t big = 3 * 4096 * 5 + 1234;
    uint8_t *buf = malloc(big);
    for (size_t i = 0; i < big; i++) buf[i] = (uint8_t)next_u64();
    static const size_t sizes[] = {0, 1, 7, 8, 9, 63, 4096, 12287, 12288, 12289, 3 * 4096 * 5 + 1234};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (size_t off = 0; off < 3; off++) {
            size_t n = sizes[si] - (sizes[si] >= off ? off : 0);
            uint32_t r0 = qst_crc32c_impl(0, buf + off, n, QST_IMPL_SCALAR), r1 = qst_crc32c_impl(0, buf + off, n, impl);
            // Chaining: two calls equal one call.
            uint32_t half = qst_crc32c_impl(qst_crc32c_impl(0, buf + off, n / 3, impl), buf + off + n / 3, n - n / 3, impl);
            snprintf(what, sizeof what, "crc32c %s n %zu offset %zu", impl_name(impl), n, off);
            check(r0 == r1 && r0 == half, what);
        }
    }
    free(buf);
}

// -------------------------------------------------------------------------------- SHA-256

static void sha256_of(const void *data, size_t n, int impl, size_t piece, uint8_t out[32]) {
    qst_sha256_ctx ctx;
    qst_sha256_init_impl(&ctx, impl);
    const uint8_t *p = (const uint8_t *)data;
    for (size_t o = 0; o < n; o += piece) qst_sha256_update(&ctx, p + o, n - o < piece ? n - o : piece);
    qst_sha256_final(&ctx, out);
}

static void test_sha256(int impl) {
    // Known answers (FIPS 180-2 appendix B.1, B.2, and the empty message).
    static const struct { const char *msg; uint8_t d0, d1, d31; } known[] = {
        {"abc", 0xba, 0x78, 0xad},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 0x24, 0x8d, 0xc1},
        {"", 0xe3, 0xb0, 0x55},
    };
    char what[120];
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        uint8_t d[32];
        sha256_of(known[k].msg, strlen(known[k].msg), impl, 1000, d);
        snprintf(what, sizeof what, "sha256 %s known answer %zu", impl_name(impl), k);
        check(d[0] == known[k].d0 && d[1] == known[k].d1 && d[31] == known[k].d31, what);
    }
    // Every length around the padding edges and across many blocks, whole and in uneven pieces, against
    // the portable rounds (which SHA256ReferenceTests checks against Python's hashlib).
    static const size_t sizes[] = {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4097, 65536 + 17};
    uint8_t *buf = malloc(65536 + 17);
    for (size_t i = 0; i < 65536 + 17; i++) buf[i] = (uint8_t)next_u64();
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        uint8_t ref[32], whole[32], pieces[32];
        sha256_of(buf, sizes[si], QST_IMPL_SCALAR, sizes[si] + 1, ref);
        sha256_of(buf, sizes[si], impl, sizes[si] + 1, whole);
        sha256_of(buf, sizes[si], impl, 7 + si, pieces);
        snprintf(what, sizeof what, "sha256 %s n %zu", impl_name(impl), sizes[si]);
        check(memcmp(ref, whole, 32) == 0 && memcmp(ref, pieces, 32) == 0, what);
    }
    free(buf);
}

#include "test_matmul.inc"
#include "test_q8.inc"
#include "test_vecmath.inc"
#include "test_small_gemv.inc"
#include "test_nf4_block_errors.inc"
#include "test_side_decode_attention.inc"
#include "test_kv_half.inc"

int main(void) {
    char features[256];
    qst_cpu_describe(features, sizeof features);
    printf("cpu features: %s\n", features[0] ? features : "(none)");
    int any = 0;
    for (size_t i = 0; i < sizeof vector_impls / sizeof vector_impls[0]; i++) {
        int impl = vector_impls[i];
        if (!qst_impl_supported(impl)) continue;
        any = 1;
        printf("testing %s codec paths\n", impl_name(impl));
        test_nf4(impl);
        test_nf4_block_errors(impl);
        test_stats(impl);
        test_crc(impl);
        test_sha256(impl);
    }
    printf("sha256 rounds: %s\n", qst_sha256_has_hardware() ? "the CPU's instructions" : "portable");
    test_crc(QST_IMPL_SCALAR);
    test_sha256(QST_IMPL_SCALAR);
    test_nf4_block_errors(QST_IMPL_SCALAR);
#if defined(__x86_64__) || defined(__aarch64__)
    check(any || (qst_cpu_features() & QST_CPU_FORCED_SCALAR), "a vector codec path runs on this CPU");
#else
    (void)any;
#endif
    test_matmul_paths();
    test_q8_quantize();
    test_q8_gemv_paths();
    test_vecmath_paths();
    test_small_gemv_paths();
    test_small_gemv_bf16_paths();
    test_side_decode_attention_paths();
    test_f16_conversions();
    for (size_t pi = 0; pi < sizeof vec_paths / sizeof vec_paths[0]; pi++) test_f16_key_tiles(vec_paths[pi]);
    test_decode_attention_f16_paths();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
