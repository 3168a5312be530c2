import QSTCLI
import XCTest

/// What the tools set before OpenBLAS loads (Sources/QSTCLI/BLASEnvironment.swift): the core type by the CPU's
/// flags, the thread timeout at OpenBLAS's minimum, and neither where the user chose already. (That a tool's
/// process really runs with them: ServeToolTests.testQueueBoundAndAPIKey reads qst-serve's environment.)
final class BLASEnvironmentTests: XCTestCase {
    let avx512: Set<String> = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"]
    let avx2: Set<String> = ["avx2", "fma"]

    func testCoreTypeByFlagsAndTimeoutAlways() {
        XCTAssertEqual(
            BLASEnvironment.wanted(environment: [:], cpuFlags: avx512),
            ["OPENBLAS_CORETYPE": "SkylakeX", "OPENBLAS_THREAD_TIMEOUT": "4"])
        XCTAssertEqual(
            BLASEnvironment.wanted(environment: [:], cpuFlags: avx2),
            ["OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_THREAD_TIMEOUT": "4"])
        // No core type better than OpenBLAS's own detection (ARM64, older x86): only the timeout.
        XCTAssertEqual(BLASEnvironment.wanted(environment: [:], cpuFlags: ["neon"]), ["OPENBLAS_THREAD_TIMEOUT": "4"])
        // QST_KERNELS=avx2 stands in for an AVX2-only CPU, for OpenBLAS too.
        XCTAssertEqual(
            BLASEnvironment.wanted(environment: ["QST_KERNELS": "avx2"], cpuFlags: avx512)["OPENBLAS_CORETYPE"],
            "Haswell")
    }

    func testTheUsersChoicesAreKept() {
        let wanted = BLASEnvironment.wanted(
            environment: ["OPENBLAS_THREAD_TIMEOUT": "28", "QST_OPENBLAS_CORETYPE": "Zen"], cpuFlags: avx512)
        XCTAssertEqual(wanted, ["OPENBLAS_CORETYPE": "Zen", "OPENBLAS_THREAD_TIMEOUT": "28"])
    }
}
