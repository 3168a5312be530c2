import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// OpenBLAS reads its settings from the environment once, when the library loads, so every tool
/// re-executes itself once (before any other work) with the two it needs set:
/// - `OPENBLAS_CORETYPE`: Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and falls back to a
///   slow generic kernel. Set to the best kernel the CPU supports (capped like our kernels by
///   `QST_KERNELS=avx2`); `QST_OPENBLAS_CORETYPE` overrides the choice.
/// - `OPENBLAS_THREAD_TIMEOUT`: after each threaded call OpenBLAS's idle threads poll with `sched_yield`
///   for 2^28 cycles (~0.1 s) before they sleep. On a machine shared with another busy process those
///   polls take the cores the working threads need: GPTQ quantization of SmolLM2-135M beside two busy
///   loops took 297 s, against 76 s with idle threads that sleep at once (4, OpenBLAS's minimum, 2^4
///   cycles), and alone the same time within noise (BENCHMARKS.md §46, Scripts/bench-shared-cpu). Our own
///   worker pool polls for 100 µs only.
///   A value the user set is kept.
public enum BLASEnvironment {
    static let reexecMarker = "QST_BLAS_ENVIRONMENT_SET"

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

    /// The OpenBLAS thread timeout the tools set: 2^4 cycles, the shortest OpenBLAS accepts.
    public static let threadTimeout = "4"

    /// The OpenBLAS variables a tool should run with, given its environment and the CPU's flags: the core
    /// type (when the CPU has one better than what OpenBLAS would detect) and the thread timeout, each only
    /// where the user did not choose already.
    public static func wanted(environment env: [String: String], cpuFlags: Set<String>) -> [String: String] {
        var flags = cpuFlags
        // QST_KERNELS=avx2 stands in for an AVX2-only machine: OpenBLAS gets its AVX2 kernels too.
        if env["QST_KERNELS"] == "avx2" || env["QST_KERNELS"] == "avx2vnni" {
            flags = flags.filter { !$0.hasPrefix("avx512") }
        }
        var wanted = ["OPENBLAS_THREAD_TIMEOUT": env["OPENBLAS_THREAD_TIMEOUT"] ?? threadTimeout]
        if let core = env["QST_OPENBLAS_CORETYPE"] ?? bestCoreType(cpuFlags: flags) {
            wanted["OPENBLAS_CORETYPE"] = core
        }
        return wanted
    }

    /// Call first thing in `main`. Returns only if no re-exec was needed (or it failed).
    /// `blasUsed: false` is for a run that never calls BLAS: the settings do not matter, and the
    /// re-execution (a second start-up of the process) is skipped.
    public static func applyBeforeLoad(blasUsed: Bool = true) {
        let env = ProcessInfo.processInfo.environment
        guard blasUsed, env[reexecMarker] == nil else { return }
        setenv(reexecMarker, "1", 1)
        let changes = wanted(environment: env, cpuFlags: cpuFlags()).filter { env[$0.key] != $0.value }
        if changes.isEmpty { return }
        for (name, value) in changes { setenv(name, value, 1) }
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // execv only returns on failure: carry on with the settings OpenBLAS loaded with.
    }
}
