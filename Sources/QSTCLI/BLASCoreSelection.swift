import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and falls back to a slow
/// generic kernel; the core type can only be chosen through OPENBLAS_CORETYPE before the
/// library loads. Every tool therefore re-executes itself once with the variable set to
/// the best kernel the CPU supports (capped like our kernels by `QST_KERNELS=avx2`).
/// `QST_OPENBLAS_CORETYPE` overrides the choice.
public enum BLASCoreSelection {
    static let reexecMarker = "QST_BLAS_CORE_SELECTED"

    public static func bestCoreType(cpuFlags: Set<String>) -> String? {
        let avx512 = ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(cpuFlags.contains)
        if avx512 { return "SkylakeX" }
        if cpuFlags.contains("avx2") && cpuFlags.contains("fma") { return "Haswell" }
        return nil
    }

    public static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
            let colon = line.firstIndex(of: ":")
        else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }

    /// Call first thing in `main`. Returns only if no re-exec was needed (or it failed).
    /// `blasUsed: false` is for a run that never calls BLAS: the kernel choice does not matter, and the
    /// re-execution (a second start-up of the process) is skipped.
    public static func ensureFastKernel(blasUsed: Bool = true) {
        let env = ProcessInfo.processInfo.environment
        guard blasUsed, env[reexecMarker] == nil else { return }
        var flags = cpuFlags()
        // QST_KERNELS=avx2 stands in for an AVX2-only machine: OpenBLAS gets its AVX2 kernels too.
        if env["QST_KERNELS"] == "avx2" || env["QST_KERNELS"] == "avx2vnni" {
            flags = flags.filter { !$0.hasPrefix("avx512") }
        }
        guard let want = env["QST_OPENBLAS_CORETYPE"] ?? bestCoreType(cpuFlags: flags) else { return }
        setenv(reexecMarker, "1", 1)
        if env["OPENBLAS_CORETYPE"] == want { return }
        setenv("OPENBLAS_CORETYPE", want, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv only returns on failure: carry on with whatever kernel was loaded.
    }
}
