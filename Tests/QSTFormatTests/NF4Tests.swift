import Foundation
import XCTest
@testable import QSTFormat

/// QST's NF4 codec against the independent NumPy reference (bitsandbytes semantics), plus the
/// behaviour bitsandbytes' source fixes directly (tie rule, zero blocks, errors, sizes).
final class NF4Tests: XCTestCase {
    private var harness: NF4ReferenceHarness!

    override func setUpWithError() throws { harness = try NF4ReferenceHarness() }
    override func tearDown() { harness?.cleanUp() }

    /// dQuantizeNF4's split constants, copied from bitsandbytes' csrc (ascending).
    static let bnbThresholds: [Float] = [
        -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
        -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
        0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
        0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
    ]

    func testCodeTablesMatchReference() throws {
        let ref = try harness.reference([1, 2, 3], NF4Parameters())
        NF4ReferenceHarness.assertSame(
            NF4.codeValues.map(\.bitPattern),
            try ref.field("nf4_code").float32().map(\.bitPattern), "NF4 code values")
        NF4ReferenceHarness.assertSame(
            DynamicMap8.signedCode.map(\.bitPattern),
            try ref.field("dynamic_map").float32().map(\.bitPattern), "dynamic 8-bit map")
        XCTAssertEqual(DynamicMap8.signedCode.count, 256)
        XCTAssertEqual(DynamicMap8.signedCode, DynamicMap8.signedCode.sorted())
        XCTAssertEqual(NF4.codeValues.first, -1)
        XCTAssertEqual(NF4.codeValues[7], 0)
        XCTAssertEqual(NF4.codeValues.last, 1)
    }

    func testRandomNormalMatrices() throws {
        var rng = NF4TestRandom(seed: 7)
        for blockSize in [32, 64, 256, 4096] {
            // A few whole and a partial last block; rows*cols flattened row-major.
            let count = blockSize == 4096 ? 4096 * 3 + 1000 : 48 * 130 + 18
            let values = rng.normals(count, scale: 0.02)
            for dq in [true, false] {
                try harness.assertEquivalent(
                    values, NF4Parameters(blockSize: blockSize, doubleQuant: dq),
                    label: "normal.b\(blockSize)")
            }
        }
    }

    func testManyBlocksSpanSeveralDQBlocksAndThreads() throws {
        // 1100 blocks of 64 -> 5 second-level blocks (last partial); large enough to run on 2 threads.
        var rng = NF4TestRandom(seed: 11)
        let values = rng.normals(64 * 1100 + 33)
        try harness.assertEquivalent(values, NF4Parameters(), label: "large")
        try harness.assertEquivalent(
            values, NF4Parameters(blockSize: 64, doubleQuant: true, dqBlockSize: 64),
            label: "large.dq64")
    }

    func testAllZerosFollowBitsandbytes() throws {
        for dq in [true, false] {
            let t = try harness.assertEquivalent(
                [Float](repeating: 0, count: 1000),
                NF4Parameters(doubleQuant: dq), label: "zeros")
            // 1/0 = inf, 0*inf = NaN, and NaN fails every `>` of the tree: code 0 everywhere.
            XCTAssertEqual(Set(t.codes), [0])
            XCTAssertTrue(NF4.dequantize(t).allSatisfy { $0 == 0 })
        }
        // One zero block among normal ones, and a zero tail in an odd-length partial block.
        var rng = NF4TestRandom(seed: 3)
        var values = rng.normals(64 * 5 + 9)
        for i in 64..<128 { values[i] = 0 }
        try harness.assertEquivalent(values, NF4Parameters(), label: "zero-block")
    }

    func testPartialLastBlockAndOddCounts() throws {
        var rng = NF4TestRandom(seed: 5)
        for count in [1, 2, 3, 31, 63, 65, 127, 129, 64 * 7 + 1] {
            let values = rng.normals(count)
            for dq in count % 2 == 1 ? [true, false] : [true] {
                try harness.assertEquivalent(values, NF4Parameters(doubleQuant: dq), label: "odd\(count)")
            }
        }
        // The missing partner of an odd tail is quantized as 0.0 -> code 7 (value 0) in bitsandbytes.
        let t = try [Float(0.5), 1, -1].withUnsafeBufferPointer {
            try NF4.quantize($0, parameters: NF4Parameters(doubleQuant: false), file: "f", tensor: "t")
        }
        XCTAssertEqual(t.codes.count, 2)
        XCTAssertEqual(t.codes[1], 0x07)
    }

    func testExactTiesGoToLowerCode() throws {
        // Block 0 has absmax 1 and block 1 absmax 2 (exact reciprocal 0.5): each element lands
        // exactly on a split point, where `x > t` is false and the lower code wins.
        let t = Self.bnbThresholds
        var values = t + [1.0] + [Float](repeating: 0, count: 48)
        values += t.map { $0 * 2 } + [-2.0] + [Float](repeating: 0, count: 48)
        XCTAssertEqual(values.count, 128)
        for dq in [true, false] {
            let q = try harness.assertEquivalent(values, NF4Parameters(doubleQuant: dq), label: "ties")
            for block in 0..<2 {
                for k in 0..<15 {
                    let e = block * 64 + k
                    let code = e % 2 == 0 ? q.codes[e / 2] >> 4 : q.codes[e / 2] & 15
                    XCTAssertEqual(code, UInt8(k), "element \(e) sits on threshold \(k + 1)")
                }
            }
        }
        // Just above each split point the upper code wins.
        let above = t.map { $0.nextUp } + [1.0]
        let qa = try harness.assertEquivalent(above, NF4Parameters(doubleQuant: false), label: "above-ties")
        for k in 0..<15 {
            let code = k % 2 == 0 ? qa.codes[k / 2] >> 4 : qa.codes[k / 2] & 15
            XCTAssertEqual(code, UInt8(k + 1))
        }
    }

    func testDynamicMapTiesAndBlockwiseMatchReference() throws {
        // Midpoints of adjacent dynamic-map entries (dQuantize's tie cases) and random values,
        // in 256-blocks each holding a 1.0 so the scale is exact.
        let map = DynamicMap8.signedCode
        var values: [Float] = [1.0]
        for i in 0..<255 { values.append((map[i] + map[i + 1]) * 0.5) }
        var rng = NF4TestRandom(seed: 9)
        values += [1.0] + rng.normals(600, scale: 0.3).map { max(-0.99, min(0.99, $0)) }
        values += [Float](repeating: 0, count: 256)  // an all-zero block
        let (codes, absmax) = DynamicMap8.quantizeBlockwise(values, blockSize: 256)
        let ref = try harness.dynamicReference(values, blockSize: 256)
        NF4ReferenceHarness.assertSame(codes, try ref.field("codes").uint8(), "dynamic codes")
        NF4ReferenceHarness.assertSame(
            absmax.map(\.bitPattern), try ref.field("absmax").float32().map(\.bitPattern),
            "dynamic absmax")
        NF4ReferenceHarness.assertSame(
            DynamicMap8.dequantizeBlockwise(codes: codes, absmax: absmax, blockSize: 256).map(\.bitPattern),
            try ref.field("dequantized").float32().map(\.bitPattern), "dynamic dequantized")
    }

    func testBigOutliersAndExtremeScales() throws {
        var rng = NF4TestRandom(seed: 13)
        var values = rng.normals(64 * 40 + 7, scale: 0.01)
        values[5] = 3.0e4; values[700] = -2.5e5; values[701] = 1e-3; values[1500] = 3.4e38
        for i in 128..<192 { values[i] *= 1e-33 }  // tiny but normal absmax
        for i in 192..<256 { values[i] = 0 }
        values[200] = 1e-40  // subnormal absmax: 1/absmax overflows to inf
        values[201] = -1e-41
        for dq in [true, false] {
            try harness.assertEquivalent(values, NF4Parameters(doubleQuant: dq), label: "outliers")
        }
    }

    func testNonFiniteInputThrowsNamingTensor() throws {
        for (bad, word) in [(Float.nan, "NaN"), (.infinity, "+inf"), (-.infinity, "-inf")] {
            for (count, index) in [(10, 3), (200_000, 150_001)] {  // the second runs on several threads
                var values = [Float](repeating: 0.25, count: count)
                values[index] = bad
                XCTAssertThrowsError(
                    try values.withUnsafeBufferPointer {
                        try NF4.quantize(
                            $0, parameters: NF4Parameters(), file: "model.safetensors",
                            tensor: "model.layers.0.mlp.up_proj.weight")
                    }
                ) { error in
                    let msg = (error as? QSTError)?.message ?? "\(error)"
                    XCTAssertTrue(msg.contains("model.safetensors"), msg)
                    XCTAssertTrue(msg.contains("model.layers.0.mlp.up_proj.weight"), msg)
                    XCTAssertTrue(msg.contains(word) && msg.contains("element \(index)"), msg)
                }
            }
        }
    }

    func testBitsPerWeight() throws {
        let values = [Float](repeating: 0.5, count: 64 * 256 * 8)
        let dq = try values.withUnsafeBufferPointer {
            try NF4.quantize($0, parameters: NF4Parameters(), file: "f", tensor: "t")
        }
        // 4 bits + one 8-bit absmax code per 64 + one float32 per 64*256 (+ one offset per tensor).
        let perWeight: Double = 4.0 + 8.0 / 64.0 + 32.0 / 16384.0
        let offsetShare: Double = 32.0 / Double(values.count)
        XCTAssertEqual(dq.bitsPerWeight, perWeight + offsetShare, accuracy: 1e-9)
        XCTAssertEqual(dq.bitsPerWeight, 4.127, accuracy: 1e-3)
        let plain = try values.withUnsafeBufferPointer {
            try NF4.quantize($0, parameters: NF4Parameters(doubleQuant: false), file: "f", tensor: "t")
        }
        XCTAssertEqual(plain.bitsPerWeight, 4.5, accuracy: 1e-9)
    }

    func testInvalidBlockSizesRejected() {
        let bad = [0, -64, 16, 48, 100, 8192]
        for size in bad {
            for p in [NF4Parameters(blockSize: size), NF4Parameters(dqBlockSize: size)] {
                XCTAssertThrowsError(try p.validate())
                XCTAssertThrowsError(
                    try [Float](repeating: 1, count: 128).withUnsafeBufferPointer {
                        try NF4.quantize($0, parameters: p, file: "w.safetensors", tensor: "lm_head.weight")
                    }
                ) { error in
                    XCTAssertTrue("\(error)".contains("lm_head.weight") && "\(error)".contains("\(size)"), "\(error)")
                }
            }
        }
        for size in [32, 64, 128, 256, 512, 1024, 2048, 4096] {
            XCTAssertNoThrow(try NF4Parameters(blockSize: size, dqBlockSize: size).validate())
        }
    }

    func testEmptyTensor() throws {
        let t = try [Float]().withUnsafeBufferPointer {
            try NF4.quantize($0, parameters: NF4Parameters(), file: "f", tensor: "t")
        }
        XCTAssertEqual(t.count, 0)
        XCTAssertTrue(t.codes.isEmpty)
        XCTAssertEqual(NF4.dequantize(t), [])
    }
}
