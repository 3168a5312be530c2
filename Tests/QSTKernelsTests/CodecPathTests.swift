import Foundation
import QSTKernels
import XCTest

/// The error statistics and CRC-32C have one vector path per ISA (AVX-512/AVX2 on x86, NEON on
/// ARM64); each must give the scalar path's exact bits. (The NF4 codec paths:
/// QSTFormatTests/NF4KernelPathTests; all of them again on ARM64 under qemu: Scripts/test-arm64.)
final class CodecPathTests: XCTestCase {
    static let vectorPaths: [(String, Int32)] = [
        ("avx512", Int32(QST_IMPL_AVX512)), ("avx2", Int32(QST_IMPL_AVX2)), ("neon", Int32(QST_IMPL_NEON)),
    ]

    /// The paths this CPU runs; an x86-64 or ARM64 CPU without any is a detection bug.
    private func supportedPaths() -> [(String, Int32)] {
        let paths = Self.vectorPaths.filter { qst_impl_supported($0.1) != 0 }
        #if arch(x86_64) || arch(arm64)
            if qst_cpu_features() & QST_CPU_FORCED_SCALAR == 0 {
                XCTAssertFalse(paths.isEmpty, "no vector codec path on this CPU")
            }
        #endif
        return paths
    }

    func testErrorSumsAreBitIdenticalOnEveryPath() {
        var rng = SplitMix(seed: 17)
        for n in [0, 1, 15, 16, 17, 511, 512, 513, 4099, 100_003] {
            let x = (0..<n).map { _ in Float(rng.unit() * 4 - 2) }
            var y = x.map { $0 + Float(rng.unit() - 0.5) * 0.01 }
            if n > 20 { y[7] = .nan }  // a NaN difference must be treated alike
            var ref = (0.0, 0.0, 0.0)
            qst_error_sums_impl(x, y, n, &ref.0, &ref.1, &ref.2, Int32(QST_IMPL_SCALAR))
            for (name, impl) in supportedPaths() {
                var got = (0.0, 0.0, 0.0)
                qst_error_sums_impl(x, y, n, &got.0, &got.1, &got.2, impl)
                XCTAssertEqual(got.0.bitPattern, ref.0.bitPattern, "\(name) signal n \(n)")
                XCTAssertEqual(got.1.bitPattern, ref.1.bitPattern, "\(name) error n \(n)")
                XCTAssertEqual(got.2.bitPattern, ref.2.bitPattern, "\(name) max n \(n)")
            }
        }
    }

    func testCRC32CIsIdenticalOnEveryPath() {
        // RFC 3720 B.4 check values, then random buffers across the 3 x 4 KiB stripe edges.
        let digits = Array("123456789".utf8), zeros = [UInt8](repeating: 0, count: 32)
        var rng = SplitMix(seed: 3)
        let data = (0..<(3 * 4096 * 4 + 777)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for (name, impl) in [("scalar", Int32(QST_IMPL_SCALAR))] + supportedPaths() {
            XCTAssertEqual(qst_crc32c_impl(0, digits, digits.count, impl), 0xE306_9283, name)
            XCTAssertEqual(qst_crc32c_impl(0, zeros, zeros.count, impl), 0x8A91_36AA, name)
            for n in [0, 1, 8, 9, 4095, 12_287, 12_288, 12_289, 24_577, data.count] {
                data.withUnsafeBytes { p in
                    let ref = qst_crc32c_impl(0, p.baseAddress, n, Int32(QST_IMPL_SCALAR))
                    XCTAssertEqual(qst_crc32c_impl(0, p.baseAddress, n, impl), ref, "\(name) n \(n)")
                    let first = qst_crc32c_impl(0, p.baseAddress, n / 2, impl)
                    XCTAssertEqual(
                        qst_crc32c_impl(first, p.baseAddress! + n / 2, n - n / 2, impl), ref, "\(name) chained n \(n)")
                }
            }
        }
    }
}
