# Sourced by the C benchmark scripts: qst_c_compiler NAME prints the C compiler to use — $CC, else the Swift
# toolchain's clang, else Debian's — or exits with "NAME: no C compiler (set CC)".
qst_c_compiler() {
    if [ -n "${CC:-}" ]; then echo "$CC"; return; fi
    local c
    for c in /opt/swift/usr/bin/clang "$(command -v clang || true)"; do
        if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return; fi
    done
    echo "$1: no C compiler (set CC)" >&2
    exit 1
}
