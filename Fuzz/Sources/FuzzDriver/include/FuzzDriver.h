#ifndef QST_FUZZ_DRIVER_H
#define QST_FUZZ_DRIVER_H
#include <stddef.h>
#include <stdint.h>

/// Runs libFuzzer's driver with `test` as the target. SwiftPM renames an executable's `main` to
/// `<module>_main` (so tests can link executables), which hides libFuzzer's own `main`; each target's
/// `<module>_main` calls this instead.
int qst_fuzz_run(int argc, char **argv, int (*test)(const uint8_t *data, size_t size));

#endif
