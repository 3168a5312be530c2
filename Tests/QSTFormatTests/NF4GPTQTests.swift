import Foundation
import XCTest
@testable import QSTFormat

/// GPTQ in the NF4 grid against its NumPy statement (Scripts/nf4_gptq_reference.py), and against the per-block
/// scale search on the quantity GPTQ minimises: the layer's output error ‖(W − Ŵ)Xᵀ‖ on the calibration inputs.
/// The result is read by the plain NF4 decoder (`NF4.dequantize`: NF4[code]·scale) like any NF4 tensor.
final class NF4GPTQTests: XCTestCase {
    /// Inputs with correlated channels of very different sizes (like activations entering a linear).
    func inputs(tokens: Int, cols: Int, seed: UInt64) -> [Float] {
        var g = NF4TestRandom(seed: seed)
        let mix = g.normals(cols * cols, scale: 0.2)
        let gain = (0..<cols).map { _ in Float(exp(Double(g.normal()) * 0.7)) }
        var x = [Float](repeating: 0, count: tokens * cols)
        for t in 0..<tokens {
            let z = g.normals(cols)
            for j in 0..<cols {
                var s = z[j]
                for i in 0..<cols where mix[i * cols + j] != 0 { s += z[i] * mix[i * cols + j] }
                x[t * cols + j] = s * gain[j]
            }
        }
        return x
    }

    func weights(rows: Int, cols: Int, seed: UInt64) -> [Float] {
        var g = NF4TestRandom(seed: seed)
        return (0..<(rows * cols)).map { i in g.normal() * (i % 509 == 0 ? 0.2 : 0.02) }
    }

    /// Σₜ xₜxₜᵀ in double, stored as float32 (what the calibration collects).
    func gram(_ x: [Float], cols: Int) -> [Float] { cross(x, x, cols: cols) }

    /// ‖(W − Ŵ)Xᵀ‖²_F in double.
    func outputError(_ w: [Float], _ deq: [Float], _ x: [Float], cols: Int) -> Double {
        let rows = w.count / cols, tokens = x.count / cols
        var e = 0.0
        for r in 0..<rows {
            for t in 0..<tokens {
                var s = 0.0
                for j in 0..<cols {
                    s += (Double(w[r * cols + j]) - Double(deq[r * cols + j])) * Double(x[t * cols + j])
                }
                e += s * s
            }
        }
        return e
    }

    func referenceGPTQ(
        _ w: [Float], _ x: [Float], cols: Int, blockSize: Int, actOrder: Bool, refitPasses: Int = 0,
        fullInputs: [Float]? = nil
    ) throws -> [String: NF4NPYArray] {
        let h = try NF4ReferenceHarness()
        defer { h.cleanUp() }
        let ws = h.workDir.appendingPathComponent("w.npy"), xs = h.workDir.appendingPathComponent("x.npy")
        let out = h.workDir.appendingPathComponent("out.npz")
        try NF4NPY.writeFloat32(w, to: ws)
        try NF4NPY.writeFloat32(x, to: xs)
        let xf = h.workDir.appendingPathComponent("xf.npy")
        if let fullInputs { try NF4NPY.writeFloat32(fullInputs, to: xf) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: h.python)
        var arguments: [String] = [
            h.script.replacingOccurrences(of: "nf4_reference.py", with: "nf4_gptq_reference.py"),
            ws.path, xs.path, out.path, "--cols", "\(cols)", "--block-size", "\(blockSize)",
        ]
        if actOrder { arguments.append("--act-order") }
        if refitPasses > 0 { arguments += ["--refit-passes", "\(refitPasses)"] }
        if fullInputs != nil { arguments += ["--full-inputs", xf.path] }
        p.arguments = arguments
        let err = Pipe()
        p.standardError = err
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw QSTError("nf4_gptq_reference.py failed: \(text)") }
        return try NF4NPY.readNPZ(out)
    }

    /// Same codes and scales as the NumPy statement on ≥ 99 % of weights and blocks (the two differ only in
    /// summation order: BLAS against NumPy, LAPACK's inverse against NumPy's, so a weight at a rounding tie may go
    /// the other way and its error moves later columns slightly), output error within 1 %.
    func testMatchesNumPyReference() throws { try checkAgainstReference(actOrder: false) }
    func testActOrderMatchesNumPyReference() throws { try checkAgainstReference(actOrder: true) }

    /// The scale refit after GPTQ (4 passes) against the reference's statement of it: same codes (the refit keeps
    /// them), same re-solved scales.
    func testRefitMatchesNumPyReference() throws { try checkAgainstReference(actOrder: true, refitPasses: 4) }

    /// The asymmetric target (inputs from a quantized model, outputs of the full-precision one): Swift's `w*`
    /// against NumPy's solve, then GPTQ on it against the reference run with `--full-inputs`.
    func testAsymmetricTargetMatchesNumPyReference() throws {
        let x = inputs(tokens: 512, cols: 256, seed: 22)
        var g = NF4TestRandom(seed: 23)
        let full = x.map { $0 + 0.05 * g.normal() }
        try checkAgainstReference(actOrder: true, fullInputs: full)
    }

    func checkAgainstReference(actOrder: Bool, refitPasses: Int = 0, fullInputs: [Float]? = nil) throws {
        let rows = 48, cols = 256, tokens = 512, bs = 64
        var w = weights(rows: rows, cols: cols, seed: 21)
        let x = inputs(tokens: tokens, cols: cols, seed: 22)
        let p = NF4Parameters(blockSize: bs, doubleQuant: false)
        var settings = NF4GPTQ.Settings()
        settings.actOrder = actOrder
        settings.refitPasses = refitPasses
        let h = gram(x, cols: cols)
        let ref = try referenceGPTQ(
            w, x, cols: cols, blockSize: bs, actOrder: actOrder, refitPasses: refitPasses, fullInputs: fullInputs)
        if let fullInputs {
            let target = try w.withUnsafeBufferPointer {
                try NF4GPTQ.asymmetricTarget(
                    $0, rows: rows, cols: cols, gram: h, projected: projected(w, cross(x, fullInputs, cols: cols)),
                    damp: settings.damp, file: "t", tensor: "w")
            }
            let refTarget = try ref.field("target").float32()
            let scale = refTarget.map { abs($0) }.max()!
            for k in 0..<(rows * cols) { XCTAssertEqual(target[k], refTarget[k], accuracy: 1e-4 * scale, "w*[\(k)]") }
            XCTAssertGreaterThan(zip(target, w).map { abs($0 - $1) }.max()!, 1e-3 * scale)  // not w itself
            w = target
        }
        let t = try w.withUnsafeBufferPointer {
            try NF4GPTQ.quantize(
                $0, rows: rows, cols: cols, gram: h, parameters: p, settings: settings,
                file: "t", tensor: "w")
        }
        try t.validate(file: "t", tensor: "w")
        let refCodes = try ref.field("codes").uint8(), refScales = try ref.field("scales").float32()
        let refDeq = try ref.field("dequant").float32(), refErr = try ref.field("out_error").float64()[0]
        var sameCodes = 0
        for k in 0..<(rows * cols) {
            let c = k & 1 == 0 ? t.codes[k >> 1] >> 4 : t.codes[k >> 1] & 0x0F
            if c == refCodes[k] { sameCodes += 1 }
        }
        XCTAssertGreaterThanOrEqual(
            Double(sameCodes), 0.99 * Double(rows * cols), "codes equal: \(sameCodes)/\(rows * cols)")
        let closeScales = zip(t.absmax, refScales).filter { abs($0 - $1) <= 1e-4 * abs($1) }.count
        XCTAssertGreaterThanOrEqual(
            Double(closeScales), 0.99 * Double(refScales.count), "scales within 1e-4: \(closeScales)")
        let deq = NF4.dequantize(t)
        let mine = outputError(w, deq, x, cols: cols)
        XCTAssertEqual(mine, refErr, accuracy: refErr * 0.01)
        XCTAssertEqual(outputError(w, refDeq, x, cols: cols), refErr, accuracy: refErr * 1e-6)  // same measure
    }

    /// `Σₜ xₜ fₜᵀ` (`[i, j] = Σₜ x[t, i] f[t, j]`) in double, stored as float32.
    func cross(_ x: [Float], _ f: [Float], cols: Int) -> [Float] {
        let tokens = x.count / cols
        var c = [Double](repeating: 0, count: cols * cols)
        for t in 0..<tokens {
            for i in 0..<cols {
                let a = Double(x[t * cols + i])
                for j in 0..<cols { c[i * cols + j] += a * Double(f[t * cols + j]) }
            }
        }
        return c.map { Float($0) }
    }

    /// The rows `C w_r` (`[r, i] = Σⱼ C[i, j] w[r, j]`) in double, stored as float32.
    func projected(_ w: [Float], _ c: [Float]) -> [Float] {
        let cols = Int(Double(c.count).squareRoot()), rows = w.count / cols
        var out = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for i in 0..<cols {
                var s = 0.0
                for j in 0..<cols { s += Double(c[i * cols + j]) * Double(w[r * cols + j]) }
                out[r * cols + i] = Float(s)
            }
        }
        return out
    }

    /// `Σ_r (w_r − ŵ_r)ᵀ (H + λI) (w_r − ŵ_r)`, the quantity the refit minimises (no dead channels here).
    func dampedError(_ w: [Float], _ deq: [Float], gram h: [Float], cols: Int, damp: Double) -> Double {
        let rows = w.count / cols
        let lambda = damp * (0..<cols).reduce(0.0) { $0 + Double(h[$1 * cols + $1]) } / Double(cols)
        var total = 0.0
        for r in 0..<rows {
            let e = (0..<cols).map { Double(w[r * cols + $0]) - Double(deq[r * cols + $0]) }
            for i in 0..<cols {
                var s = lambda * e[i]
                for j in 0..<cols { s += Double(h[i * cols + j]) * e[j] }
                total += e[i] * s
            }
        }
        return total
    }

    /// The refit only ever lowers the damped output error, with and without double quantization (then under the
    /// fixed second-level grid), and keeps every code.
    func testRefitLowersDampedError() throws {
        let rows = 32, cols = 256
        let w = weights(rows: rows, cols: cols, seed: 61), x = inputs(tokens: 384, cols: cols, seed: 62)
        let h = gram(x, cols: cols)
        for p in [NF4Parameters(), NF4Parameters(blockSize: 64, doubleQuant: false)] {
            var settings = NF4GPTQ.Settings()
            let plain = try w.withUnsafeBufferPointer {
                try NF4GPTQ.quantize(
                    $0, rows: rows, cols: cols, gram: h, parameters: p, settings: settings, file: "t", tensor: "w")
            }
            settings.refitPasses = 4
            let refit = try w.withUnsafeBufferPointer {
                try NF4GPTQ.quantize(
                    $0, rows: rows, cols: cols, gram: h, parameters: p, settings: settings, file: "t", tensor: "w")
            }
            try refit.validate(file: "t", tensor: "w")
            XCTAssertEqual(refit.codes, plain.codes)
            XCTAssertEqual(refit.absmax2, plain.absmax2)
            let before = dampedError(w, NF4.dequantize(plain), gram: h, cols: cols, damp: settings.damp)
            let after = dampedError(w, NF4.dequantize(refit), gram: h, cols: cols, damp: settings.damp)
            XCTAssertLessThan(after, before * 0.995, "\(p): refit \(after) vs GPTQ \(before)")
        }
    }

    /// With the full-precision inputs equal to the quantized ones the asymmetric target is the weights themselves.
    func testAsymmetricTargetOfEqualInputsIsTheWeights() throws {
        let rows = 16, cols = 128
        let w = weights(rows: rows, cols: cols, seed: 71), x = inputs(tokens: 256, cols: cols, seed: 72)
        let h = gram(x, cols: cols)
        let t = try w.withUnsafeBufferPointer {
            try NF4GPTQ.asymmetricTarget(
                $0, rows: rows, cols: cols, gram: h, projected: projected(w, h), damp: 0.01, file: "t", tensor: "w")
        }
        let scale = w.map { abs($0) }.max()!
        for k in 0..<(rows * cols) { XCTAssertEqual(t[k], w[k], accuracy: 1e-5 * scale, "element \(k)") }
    }

    /// The point of GPTQ: on the same data and the same importance (the Gram diagonal), its output error is well
    /// below the per-block weighted search's, with and without double quantization and for blocks of 32.
    func testOutputErrorBelowPerBlockSearch() throws {
        let rows = 64, cols = 512, tokens = 384
        let w = weights(rows: rows, cols: cols, seed: 31), x = inputs(tokens: tokens, cols: cols, seed: 32)
        let h = gram(x, cols: cols)
        let diag = (0..<cols).map { h[$0 * cols + $0] }
        let mean = diag.reduce(0.0) { $0 + Double($1) } / Double(cols)
        let importance = diag.map { $0 + Float(mean * 1e-3) }
        let cases: [(NF4Parameters, Bool)] = [
            (NF4Parameters(), false), (NF4Parameters(blockSize: 64, doubleQuant: false), false),
            (NF4Parameters(blockSize: 32), false), (NF4Parameters(), true),
        ]
        for (p, actOrder) in cases {
            var settings = NF4GPTQ.Settings()
            settings.actOrder = actOrder
            let (g, s) = try w.withUnsafeBufferPointer {
                (
                    try NF4GPTQ.quantize(
                        $0, rows: rows, cols: cols, gram: h, parameters: p, settings: settings, file: "t", tensor: "w"),
                    try NF4ScaleSearch.quantize(
                        $0, parameters: p, importance: importance, rowLength: cols, file: "t", tensor: "w")
                )
            }
            try g.validate(file: "t", tensor: "w")
            XCTAssertEqual(g.isDoubleQuantized, p.doubleQuant)
            XCTAssertEqual(g.bitsPerWeight, s.bitsPerWeight)
            let eg = outputError(w, NF4.dequantize(g), x, cols: cols),
                es = outputError(w, NF4.dequantize(s), x, cols: cols)
            XCTAssertLessThan(eg, es * 0.8, "\(p), act-order \(actOrder): GPTQ \(eg) vs per-block search \(es)")
        }
    }

    /// Decoding is NF4[code]·scale with the stored (decoded) scales: rebuilt by hand from the tensor's parts.
    func testDecodesAsPlainNF4() throws {
        let rows = 8, cols = 128
        let w = weights(rows: rows, cols: cols, seed: 41), x = inputs(tokens: 64, cols: cols, seed: 42)
        let t = try w.withUnsafeBufferPointer {
            try NF4GPTQ.quantize(
                $0, rows: rows, cols: cols, gram: gram(x, cols: cols),
                parameters: NF4Parameters(blockSize: 64, doubleQuant: false), file: "t", tensor: "w")
        }
        let deq = NF4.dequantize(t)
        for k in 0..<(rows * cols) {
            let c = Int(k & 1 == 0 ? t.codes[k >> 1] >> 4 : t.codes[k >> 1] & 0x0F)
            XCTAssertEqual(deq[k], NF4.codeValues[c] * t.absmax[k / 64], "element \(k)")
        }
    }

    /// A channel that never fired (zero Gram row) gets zero weights, as in the paper; the rest stays finite.
    func testDeadChannelDecodesToZero() throws {
        let rows = 16, cols = 128
        let w = weights(rows: rows, cols: cols, seed: 51)
        var x = inputs(tokens: 200, cols: cols, seed: 52)
        for t in 0..<200 { x[t * cols + 5] = 0 }
        let t = try w.withUnsafeBufferPointer {
            try NF4GPTQ.quantize(
                $0, rows: rows, cols: cols, gram: gram(x, cols: cols), parameters: NF4Parameters(),
                file: "t", tensor: "w")
        }
        let deq = NF4.dequantize(t)
        XCTAssertTrue(deq.allSatisfy(\.isFinite))
        for r in 0..<rows { XCTAssertEqual(deq[r * cols + 5], 0, "row \(r)") }
    }

    func testBadInputNamesTheTensor() throws {
        let w = weights(rows: 4, cols: 96, seed: 1)
        let cases: [(cols: Int, gram: [Float])] = [
            (96, [Float](repeating: 1, count: 96 * 96)),  // rows of 96 are not whole blocks of 64
            (64, [Float](repeating: 0, count: 10)),  // wrong Gram size (W read as 6×64)
            (64, [Float](repeating: .nan, count: 64 * 64)),
        ]
        for c in cases {
            XCTAssertThrowsError(
                try w.withUnsafeBufferPointer {
                    try NF4GPTQ.quantize(
                        $0, rows: w.count / c.cols, cols: c.cols, gram: c.gram, parameters: NF4Parameters(),
                        file: "f.safetensors", tensor: "layers.0.q")
                }
            ) { e in XCTAssertTrue("\(e)".contains("layers.0.q"), "\(e)") }
        }
    }
}
