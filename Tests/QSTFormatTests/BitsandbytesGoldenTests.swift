import Foundation
import XCTest
import QSTTestSupport
@testable import QSTFormat

/// QST's NF4 codec against data written by the real bitsandbytes 0.50.2 on CPU
/// (`shared/data/bnb-nf4/`, see its README): the dynamic map and the double-quantization offset
/// equal bit for bit; bitsandbytes' own quantization state decodes through our decoder to its
/// `dequantize_4bit` output bit for bit; and the codes our quantizer chooses differ from its CPU
/// kernels exactly where Formats/NF4.md says (counts asserted, so the document stays true).
final class BitsandbytesGoldenTests: XCTestCase {
    static let cases = ["normal_4096x64", "heavy_tail_1000x77", "with_zero_blocks_300x128"]
    /// Formats/NF4.md §5: absmax codes that differ from bitsandbytes' CPU lookup-table kernel.
    static let expectedAbsmaxCodeDifferences = [
        "normal_4096x64": 9, "heavy_tail_1000x77": 1, "with_zero_blocks_300x128": 3,
    ]
    /// Formats/NF4.md §5: NF4 codes (elements) that differ from bitsandbytes' CPU torch backend.
    static let expectedNF4CodeDifferences = [
        "normal_4096x64": 1, "heavy_tail_1000x77": 0, "with_zero_blocks_300x128": 2560,
    ]

    /// dQuantizeNF4's split points as Double (the decimal literals rounded to double).
    static let splitPoints: [Double] = [
        -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
        -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
        0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
        0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
    ]

    var golden: SafetensorsFile!

    override func setUpWithError() throws {
        let dir = try TestRequirement.sharedData("bnb-nf4")
        golden = try SafetensorsFile(path: dir + "/bnb_nf4_golden.safetensors")
    }

    func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

    func testDynamicMapEqualsCreateDynamicMap() throws {
        let bnb = try golden.floats("dynamic_map_signed")
        XCTAssertEqual(bits(DynamicMap8.signedCode), bits(bnb))
    }

    func testOffsetIsTorchFloat32Mean() throws {
        for c in Self.cases {
            let absmax = try golden.floats(c + ".nf4.absmax")
            let offset = try golden.floats(c + ".dq.offset")[0]
            XCTAssertEqual(
                NF4.mean(absmax).bitPattern, offset.bitPattern, "\(c): offset \(NF4.mean(absmax)) vs \(offset)")
        }
    }

    /// bitsandbytes' packed codes, absmax codes, absmax2 and offset through QST's decoder (every
    /// kernel this CPU has) give `dequantize_4bit`'s float32 output bit for bit, -0.0 included.
    func testBitsandbytesStateDecodesBitForBit() throws {
        for c in Self.cases {
            let expected = try golden.floats(c + ".dq.dequantized")
            let t = NF4Tensor(
                count: expected.count, blockSize: 64, codes: try golden.copyElements(c + ".dq.packed", as: UInt8.self),
                absmax: [], absmaxCodes: try golden.copyElements(c + ".dq.absmax_codes", as: UInt8.self),
                absmax2: try golden.floats(c + ".dq.absmax2"), absmaxOffset: try golden.floats(c + ".dq.offset")[0],
                dqBlockSize: 256)
            XCTAssertEqual(bits(NF4.dequantize(t)), bits(expected), "\(c): double-quantized state")
            let absmax = t.decodedAbsmax()
            for kernel in [NF4.Kernel.scalar] + (NF4.usesAVX512 ? [.avx512] : []) {
                var out = [Float](repeating: .nan, count: t.count)
                t.codes.withUnsafeBufferPointer { cb in
                    absmax.withUnsafeBufferPointer { ab in
                        out.withUnsafeMutableBufferPointer { o in
                            NF4.dequantize(
                                codes: cb.baseAddress!, absmax: ab.baseAddress!, blockSize: 64, start: 0,
                                count: t.count, into: o.baseAddress!, threads: 1, kernel: kernel)
                        }
                    }
                }
                XCTAssertEqual(bits(out), bits(expected), "\(c): kernel \(kernel)")
            }
            // Plain NF4 (no double quantization): the stored absmax as it is.
            let plain = NF4Tensor(
                count: expected.count, blockSize: 64, codes: try golden.copyElements(c + ".nf4.packed", as: UInt8.self),
                absmax: try golden.floats(c + ".nf4.absmax"), dqBlockSize: 256)
            XCTAssertEqual(
                bits(NF4.dequantize(plain)), bits(try golden.floats(c + ".nf4.dequantized")), "\(c): plain NF4 state")
        }
    }

    /// Our quantizer on the same input: absmax, absmax2 and offset equal; the codes that differ
    /// are the documented ones, each explained (Formats/NF4.md §5).
    func testQuantizerDiffersOnlyWhereDocumented() throws {
        let code = DynamicMap8.signedCode
        for c in Self.cases {
            let input = try golden.floats(c + ".input")
            let ours = try input.withUnsafeBufferPointer {
                try NF4.quantize($0, parameters: NF4Parameters(), file: "golden", tensor: c)
            }
            let bnbAbsmax = try golden.floats(c + ".nf4.absmax")
            XCTAssertEqual(bits(ours.decodedAbsmax()).count, bnbAbsmax.count)
            XCTAssertEqual(ours.absmaxOffset.bitPattern, try golden.floats(c + ".dq.offset")[0].bitPattern, c)
            XCTAssertEqual(bits(ours.absmax2), bits(try golden.floats(c + ".dq.absmax2")), c)
            let plain = try input.withUnsafeBufferPointer {
                try NF4.quantize($0, parameters: NF4Parameters(doubleQuant: false), file: "golden", tensor: c)
            }
            XCTAssertEqual(bits(plain.absmax), bits(bnbAbsmax), "\(c): absmax")

            // Absmax codes: bitsandbytes' CPU kernel looks u up in a 65,536-bin table over [-1, 1]
            // (bin width 2^-15); dQuantize searches exactly. They can disagree only on a neighbouring
            // code, for u within one bin of the midpoint between the two.
            let bnbCodes: [UInt8] = try golden.copyElements(c + ".dq.absmax_codes", as: UInt8.self)
            var differ = 0
            for i in bnbCodes.indices where bnbCodes[i] != ours.absmaxCodes[i] {
                differ += 1
                let a = Int(ours.absmaxCodes[i]), b = Int(bnbCodes[i])
                XCTAssertEqual(abs(a - b), 1, "\(c) block \(i): codes \(a) and \(b) are not neighbours")
                let u = (bnbAbsmax[i] - ours.absmaxOffset) * (1 / ours.absmax2[i / 256])
                let mid = (code[min(a, b)] + code[max(a, b)]) / 2
                XCTAssertLessThanOrEqual(
                    abs(u - mid), 1.0 / 32768,
                    "\(c) block \(i): u \(u) is not within a lookup bin of the midpoint \(mid)")
            }
            XCTAssertEqual(
                differ, Self.expectedAbsmaxCodeDifferences[c],
                "\(c): absmax codes differing from bitsandbytes' CPU kernel")

            // NF4 codes: QST follows the CUDA kernel's decision tree. bitsandbytes' CPU backend differs
            // (a) on an all-zero block (code 7 where the CUDA kernel gives code 0) and (b) for a value
            // exactly on the float32 rounding of a split point's double, where the two roundings differ.
            let bnbPacked: [UInt8] = try golden.copyElements(c + ".dq.packed", as: UInt8.self)
            var nf4Differ = 0
            for k in 0..<input.count {
                let mine = k % 2 == 0 ? ours.codes[k / 2] >> 4 : ours.codes[k / 2] & 15
                let theirs = k % 2 == 0 ? bnbPacked[k / 2] >> 4 : bnbPacked[k / 2] & 15
                guard mine != theirs else { continue }
                nf4Differ += 1
                let block = k / 64
                if bnbAbsmax[block] == 0 {
                    XCTAssertEqual([mine, theirs], [0, 7], "\(c) element \(k): zero block")
                } else {
                    // The split point between the two codes, as the CUDA kernel's float32 literal
                    // (QST) and as the float32 of the double literal: they differ by one float32
                    // step for 4 of the 15 split points, and v sits exactly on the latter.
                    let v = input[k] * (1 / bnbAbsmax[block])
                    XCTAssertEqual(abs(Int(mine) - Int(theirs)), 1, "\(c) element \(k)")
                    let i = Int(min(mine, theirs))
                    let literal = NF4Tests.bnbThresholds[i], viaDouble = Float(Self.splitPoints[i])
                    XCTAssertNotEqual(literal, viaDouble, "\(c) element \(k): split point \(i)")
                    XCTAssertEqual(v, viaDouble, "\(c) element \(k): a difference off the split point (v \(v))")
                }
            }
            XCTAssertEqual(
                nf4Differ, Self.expectedNF4CodeDifferences[c],
                "\(c): NF4 codes differing from bitsandbytes' CPU backend")
        }
    }
}
