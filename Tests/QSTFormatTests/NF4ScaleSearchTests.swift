import Foundation
import XCTest
@testable import QSTFormat

/// The NF4 scale search against its NumPy statement (Scripts/nf4_search_reference.py): on every block the
/// (weighted) error of the searched scale is at most the absmax's, the output decodes with the unchanged NF4
/// decoder, and with double quantization the tensor's error still beats plain NF4's.
final class NF4ScaleSearchTests: XCTestCase {
    /// Gaussian rows with a few outliers and some heavy-tailed blocks, like trained weights.
    func matrix(rows: Int, cols: Int, seed: UInt64) -> [Float] {
        var g = NF4TestRandom(seed: seed)
        return (0..<(rows * cols)).map { i in
            var v = g.normal() * 0.02
            if i % 997 == 0 { v *= 12 }
            if (i / 64) % 7 == 3 { v = v * v * 40 * (g.next() & 1 == 0 ? 1 : -1) }
            return v
        }
    }

    func importance(_ k: Int, seed: UInt64) -> [Float] {
        var g = NF4TestRandom(seed: seed)
        return (0..<k).map { _ in Float(exp(Double(g.normal()) * 1.5)) }
    }

    /// Σ w (x − decoded)² per block, from the tensor as the standard decoder reads it.
    func blockErrors(_ x: [Float], _ t: NF4Tensor, weights: [Float]?, rowLength: Int) -> [Double] {
        let y = NF4.dequantize(t)
        var e = [Double](repeating: 0, count: t.blocks)
        for k in 0..<x.count {
            let d = Double(x[k]) - Double(y[k])
            e[k / t.blockSize] += Double(weights?[k % rowLength] ?? 1) * d * d
        }
        return e
    }

    func reference(_ x: [Float], importance: [Float]?, rowLength: Int) throws -> [String: NF4NPYArray] {
        let h = try NF4ReferenceHarness()
        defer { h.cleanUp() }
        let xs = h.workDir.appendingPathComponent("x.npy"), imp = h.workDir.appendingPathComponent("imp.npy")
        let out = h.workDir.appendingPathComponent("out.npz")
        try NF4NPY.writeFloat32(x, to: xs)
        var args = [
            h.script.replacingOccurrences(of: "nf4_reference.py", with: "nf4_search_reference.py"),
            xs.path, out.path, "--row-length", "\(rowLength)",
        ]
        if let importance { try NF4NPY.writeFloat32(importance, to: imp); args += ["--importance", imp.path] }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: h.python)
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw QSTError("nf4_search_reference.py failed: \(text)") }
        return try NF4NPY.readNPZ(out)
    }

    func checkAgainstReference(weighted: Bool) throws {
        let rows = 48, cols = 256
        let x = matrix(rows: rows, cols: cols, seed: weighted ? 7 : 8)
        let imp = weighted ? importance(cols, seed: 9) : nil
        let p = NF4Parameters(blockSize: 64, doubleQuant: false)
        let t = try x.withUnsafeBufferPointer {
            try NF4ScaleSearch.quantize($0, parameters: p, importance: imp, rowLength: cols, file: "test", tensor: "w")
        }
        try t.validate(file: "test", tensor: "w")
        let mine = blockErrors(x, t, weights: imp, rowLength: cols)
        let ref = try reference(x, importance: imp, rowLength: cols)
        let absmaxError = try ref.field("absmax_error").float64(), refError = try ref.field("error").float64()
        let refScale = try ref.field("scale").float32()
        XCTAssertEqual(mine.count, absmaxError.count)
        var improved = 0, sameScale = 0
        for b in 0..<mine.count {
            XCTAssertLessThanOrEqual(mine[b], absmaxError[b] * (1 + 1e-12) + 1e-300, "block \(b)")
            if mine[b] < absmaxError[b] * (1 - 1e-6) { improved += 1 }
            if t.absmax[b] == refScale[b] { sameScale += 1 }
        }
        // The search must do something, and the same thing as the reference.
        XCTAssertGreaterThan(improved, mine.count / 2)
        XCTAssertGreaterThanOrEqual(
            sameScale * 100, mine.count * 95, "scales equal to the reference's: \(sameScale)/\(mine.count)")
        let total = mine.reduce(0, +), refTotal = refError.reduce(0, +)
        XCTAssertEqual(total, refTotal, accuracy: refTotal * 1e-3)
        XCTAssertLessThan(total, absmaxError.reduce(0, +) * 0.95)
    }

    func testWeightedSearchNeverWorseThanAbsmaxOnAnyBlock() throws { try checkAgainstReference(weighted: true) }
    func testUnweightedSearchNeverWorseThanAbsmaxOnAnyBlock() throws { try checkAgainstReference(weighted: false) }

    /// With double quantization the chosen scales are stored as 8-bit codes: the result is a normal DQ tensor
    /// whose weighted error (as decoded) is still below plain NF4's, and the absmax choice is reproduced where
    /// it is best (all-equal-magnitude blocks).
    func testDoubleQuantizedSearchDecodesAndBeatsPlain() throws {
        let rows = 64, cols = 512
        let x = matrix(rows: rows, cols: cols, seed: 11)
        let imp = importance(cols, seed: 12)
        let p = NF4Parameters()
        let (plain, searched) = try x.withUnsafeBufferPointer {
            (
                try NF4.quantize($0, parameters: p, file: "t", tensor: "w"),
                try NF4ScaleSearch.quantize($0, parameters: p, importance: imp, rowLength: cols, file: "t", tensor: "w")
            )
        }
        try searched.validate(file: "t", tensor: "w")
        XCTAssertTrue(searched.isDoubleQuantized)
        XCTAssertEqual(searched.bitsPerWeight, plain.bitsPerWeight)
        let e0 = blockErrors(x, plain, weights: imp, rowLength: cols).reduce(0, +)
        let e1 = blockErrors(x, searched, weights: imp, rowLength: cols).reduce(0, +)
        XCTAssertLessThan(e1, e0 * 0.95, "searched \(e1) vs plain \(e0)")
        XCTAssertTrue(NF4.dequantize(searched).allSatisfy(\.isFinite))
    }

    func testAllZeroBlockDecodesToZero() throws {
        var x = matrix(rows: 2, cols: 128, seed: 3)
        for i in 64..<128 { x[i] = 0 }
        let t = try x.withUnsafeBufferPointer {
            try NF4ScaleSearch.quantize(
                $0, parameters: NF4Parameters(), importance: nil, rowLength: 128, file: "t", tensor: "w")
        }
        XCTAssertEqual(Array(NF4.dequantize(t)[64..<128]), [Float](repeating: 0, count: 64))
    }

    func testBadImportanceNamesTheTensor() throws {
        let x = matrix(rows: 2, cols: 64, seed: 1)
        for imp: [Float] in [[1, 2], [Float](repeating: 1, count: 63) + [-1], [Float](repeating: .nan, count: 64)] {
            XCTAssertThrowsError(
                try x.withUnsafeBufferPointer {
                    try NF4ScaleSearch.quantize(
                        $0, parameters: NF4Parameters(), importance: imp, rowLength: 64,
                        file: "f.safetensors", tensor: "layers.0.q")
                }
            ) { e in XCTAssertTrue("\(e)".contains("layers.0.q"), "\(e)") }
        }
    }
}

extension NF4NPYArray {
    func float64() throws -> [Double] {
        guard descr == "<f8", data.count == count * 8 else { throw QSTError("npy: dtype \(descr), expected <f8") }
        return data.withUnsafeBytes { raw in
            (0..<count).map { raw.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
        }
    }
}
