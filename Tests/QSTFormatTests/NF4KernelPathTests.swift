import XCTest
@testable import QSTFormat

/// Every vector kernel the CPU has (AVX-512, AVX2, NEON) must give the scalar kernel's bits, and splitting work over threads or
/// into sub-ranges must not change a single value. (Values vs bitsandbytes: NF4Tests.)
final class NF4KernelPathTests: XCTestCase {
    private func quantize(_ v: [Float], _ p: NF4Parameters, _ k: NF4.Kernel, threads: Int) throws -> NF4Tensor {
        try v.withUnsafeBufferPointer {
            try NF4.quantize($0, parameters: p, file: "f", tensor: "t", kernel: k, threads: threads)
        }
    }

    private func dequant(_ t: NF4Tensor, start: Int, count: Int, _ k: NF4.Kernel, threads: Int) -> ([Float], [UInt16]) {
        let absmax = t.decodedAbsmax()
        var f = [Float](repeating: .nan, count: count), h = [UInt16](repeating: 0xffff, count: count)
        t.codes.withUnsafeBufferPointer { c in
            absmax.withUnsafeBufferPointer { a in
                f.withUnsafeMutableBufferPointer { o in
                    NF4.dequantize(
                        codes: c.baseAddress!, absmax: a.baseAddress!, blockSize: t.blockSize, start: start,
                        count: count, into: o.baseAddress!, threads: threads, kernel: k)
                }
                h.withUnsafeMutableBufferPointer { o in
                    NF4.dequantizeBF16(
                        codes: c.baseAddress!, absmax: a.baseAddress!, blockSize: t.blockSize, start: start,
                        count: count, into: o.baseAddress!, threads: threads, kernel: k)
                }
            }
        }
        return (f, h)
    }

    private func testData(_ count: Int, seed: UInt64) -> [Float] {
        var rng = NF4TestRandom(seed: seed)
        var v = rng.normals(count)
        for i in stride(from: 0, to: count, by: 997) { v[i] *= 40 }  // outliers
        if count > 300 { for i in 128..<256 { v[i] = 0 } }  // zero blocks
        return v
    }

    /// The vector paths this CPU can run. An x86 machine without AVX2 (or ARM64 without NEON)
    /// does not exist among supported targets, so an empty list is a failure, not a skip.
    private var vectorKernels: [NF4.Kernel] { [.avx512, .avx2, .neon].filter(\.isSupported) }

    func testEveryVectorPathGivesTheScalarBits() throws {
        let kernels = vectorKernels
        #if arch(x86_64) || arch(arm64)
            XCTAssertFalse(kernels.isEmpty, "no vector NF4 kernel runs on this CPU (QST_KERNELS=scalar?)")
        #endif
        for kernel in kernels {
            for blockSize in [32, 64, 128, 1024, 4096] {
                for count in [1, 17, 33, 64, 1001, blockSize * 3 + 5, 70_001] {
                    let v = testData(count, seed: UInt64(blockSize * 7 + count))
                    let p = NF4Parameters(blockSize: blockSize)
                    let s = try quantize(v, p, .scalar, threads: 1), a = try quantize(v, p, kernel, threads: 1)
                    XCTAssertEqual(s, a, "\(kernel) quantize block \(blockSize) n \(count)")
                    for (start, n) in [
                        (0, count), (count / 2 & ~1, count - (count / 2 & ~1)),
                        (count > 3 ? 1 : 0, count > 3 ? count - 2 : count),
                    ] {
                        let (fs, hs) = dequant(s, start: start, count: n, .scalar, threads: 1)
                        let (fa, ha) = dequant(s, start: start, count: n, kernel, threads: 1)
                        XCTAssertEqual(
                            fs.map(\.bitPattern), fa.map(\.bitPattern),
                            "\(kernel) F32 block \(blockSize) n \(count) start \(start)")
                        XCTAssertEqual(hs, ha, "\(kernel) BF16 block \(blockSize) n \(count) start \(start)")
                    }
                }
            }
        }
    }

    func testNonFiniteInputIsReportedByEveryPath() throws {
        for kernel in [NF4.Kernel.scalar] + vectorKernels {
            for (i, bad) in [(5, Float.nan), (40, Float.infinity), (99, -Float.infinity)] {
                var v = testData(130, seed: 9)
                v[i] = bad
                XCTAssertThrowsError(
                    try quantize(v, NF4Parameters(blockSize: 64), kernel, threads: 1), "\(kernel) element \(i)"
                ) { e in
                    XCTAssertTrue("\(e)".contains("element \(i)"), "\(kernel): \(e)")
                }
            }
        }
    }

    func testThreadsAndSubrangesDoNotChangeValues() throws {
        let count = 300_001
        let v = testData(count, seed: 1)
        let p = NF4Parameters()
        let one = try quantize(v, p, .auto, threads: 1), two = try quantize(v, p, .auto, threads: 2)
        XCTAssertEqual(one, two)
        let (full, fullH) = dequant(one, start: 0, count: count, .auto, threads: 1)
        let (par, parH) = dequant(one, start: 0, count: count, .auto, threads: 2)
        XCTAssertEqual(full.map(\.bitPattern), par.map(\.bitPattern))
        XCTAssertEqual(fullH, parH)
        for (start, n) in [(64, 64), (100, 1000), (2, 1), (131_072, 100_000), (count - 5, 5), (77, 300)] {
            let (f, h) = dequant(one, start: start, count: n, .auto, threads: 2)
            XCTAssertEqual(f.map(\.bitPattern), full[start..<(start + n)].map(\.bitPattern), "F32 [\(start), +\(n))")
            XCTAssertEqual(h, Array(fullH[start..<(start + n)]), "BF16 [\(start), +\(n))")
        }
        // BF16 is the float32 value rounded to nearest even: compare against a direct rounding.
        for (x, b) in zip(full, fullH) {
            let u = x.bitPattern
            XCTAssertEqual(b, UInt16((u + 0x7fff + ((u >> 16) & 1)) >> 16))
        }
    }

    func testDequantizedErrorIsBoundedByHalfTheWidestGap() throws {
        // Any NF4 value is within half of the widest code gap (≈0.152 of absmax) of its input.
        let v = testData(64 * 50, seed: 5)
        let t = try quantize(v, NF4Parameters(doubleQuant: false), .auto, threads: 1)
        let d = NF4.dequantize(t)
        let gaps = zip(NF4.codeValues.dropFirst(), NF4.codeValues).map { $0 - $1 }
        let halfGap = gaps.max()! / 2
        for i in v.indices {
            XCTAssertLessThanOrEqual(abs(d[i] - v[i]), halfGap * t.absmax[i / 64] * 1.0001, "element \(i)")
        }
    }
}
