# Sourced by the C benchmark scripts that call OpenBLAS: qst_openblas_core prints the OPENBLAS_CORETYPE the tools
# choose on this CPU (Sources/QSTCLI/BLASEnvironment.swift): SkylakeX with AVX-512 F/BW/VL/DQ, Haswell otherwise.
# Debian's OpenBLAS 0.3.21 misdetects recent CPUs unless the variable is set before it loads.
qst_openblas_core() {
    local flags
    flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
    local f
    for f in avx512f avx512bw avx512vl avx512dq; do
        if ! grep -q -w "$f" <<<"$flags"; then echo Haswell; return; fi
    done
    echo SkylakeX
}
