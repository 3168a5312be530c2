import Foundation
import XCTest
import QSTTestSupport
@testable import QSTFormat

/// Runs Scripts/nf4_reference.py (independent NumPy implementation of bitsandbytes' NF4) and
/// compares its output with QST's Swift/C codec. Reusable by any test:
///
///     let ref = try NF4ReferenceHarness()               // skips (or fails) without Python
///     try ref.assertEquivalent(values, NF4Parameters(), label: "layer0.q_proj")
///
/// Python: env QST_PYTHON, else ${QST_CACHE:-$HOME/.cache/qst}/venv/bin/python. When it is
/// missing the test is skipped, unless QST_REQUIRE_REFERENCE=1, which makes it a failure.
struct NF4ReferenceHarness {
    let python: String
    let script: String
    let workDir: URL

    init() throws {
        let python = TestEnvironment.python
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        script = repo.appendingPathComponent("Scripts/nf4_reference.py").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            try TestRequirement.unavailable(
                "NF4 reference: no Python at \(python) (set QST_PYTHON or run Scripts/setup-env.sh)")
        }
        self.python = python
        workDir = FileManager.default.temporaryDirectory.appendingPathComponent("qst-nf4-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: workDir, withIntermediateDirectories: true)
    }

    func cleanUp() { try? FileManager.default.removeItem(at: workDir) }

    /// The reference's arrays for `values` (fields documented in Scripts/nf4_reference.py).
    func reference(_ values: [Float], _ p: NF4Parameters) throws -> [String: NF4NPYArray] {
        var args = ["quantize", "--block-size", "\(p.blockSize)", "--dq-block-size", "\(p.dqBlockSize)"]
        if !p.doubleQuant { args.append("--no-double-quant") }
        return try run(values, args)
    }

    /// The reference's blockwise dynamic 8-bit quantization (codes, absmax, dequantized, dynamic_map).
    func dynamicReference(_ values: [Float], blockSize: Int) throws -> [String: NF4NPYArray] {
        try run(values, ["dynamic", "--block-size", "\(blockSize)"])
    }

    private func run(_ values: [Float], _ args: [String]) throws -> [String: NF4NPYArray] {
        let id = UUID().uuidString
        let input = workDir.appendingPathComponent("\(id).npy"), output = workDir.appendingPathComponent("\(id).npz")
        defer { try? FileManager.default.removeItem(at: input); try? FileManager.default.removeItem(at: output) }
        try NF4NPY.writeFloat32(values, to: input)
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: python)
        var full = [script, args[0], input.path, output.path]
        full.append(contentsOf: args.dropFirst())
        proc.arguments = full
        let err = Pipe()
        proc.standardError = err
        try proc.run()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        proc.waitUntilExit()
        guard proc.terminationStatus == 0 else {
            throw QSTError("nf4_reference.py \(args.joined(separator: " ")) failed: \(errText)")
        }
        return try NF4NPY.readNPZ(output)
    }

    /// Quantizes `values` with QST and with the reference and asserts identical codes, absmax,
    /// double-quantization parts, decoded absmax and dequantized F32/BF16 values (bitwise).
    @discardableResult
    func assertEquivalent(
        _ values: [Float], _ p: NF4Parameters, label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> NF4Tensor {
        let t = try values.withUnsafeBufferPointer {
            try NF4.quantize($0, parameters: p, file: "test", tensor: label)
        }
        let ref = try reference(values, p)
        let what = "\(label) [n=\(values.count) block=\(p.blockSize) dq=\(p.doubleQuant)]"
        Self.assertSame(t.codes, try ref.field("codes").uint8(), "\(what) packed codes", file: file, line: line)
        if p.doubleQuant {
            Self.assertSame(
                t.absmaxCodes, try ref.field("absmax_codes").uint8(), "\(what) absmax codes", file: file, line: line)
            Self.assertSame(
                bits(t.absmax2), bits(try ref.field("absmax2").float32()), "\(what) absmax2", file: file, line: line)
            Self.assertSame(
                bits([t.absmaxOffset]), bits(try ref.field("offset").float32()), "\(what) offset", file: file,
                line: line)
            XCTAssertTrue(
                t.absmax.isEmpty, "\(what): double-quantized tensor keeps no plain absmax", file: file, line: line)
        } else {
            Self.assertSame(
                bits(t.absmax), bits(try ref.field("absmax").float32()), "\(what) absmax", file: file, line: line)
        }
        let decoded = t.decodedAbsmax()
        Self.assertSame(
            bits(decoded), bits(try ref.field("absmax_decoded").float32()), "\(what) decoded absmax",
            file: file, line: line)
        Self.assertSame(
            bits(NF4.dequantize(t)), bits(try ref.field("dequantized").float32()), "\(what) dequantized",
            file: file, line: line)
        var bf16 = [UInt16](repeating: 0, count: t.count)
        if t.count > 0 {
            t.codes.withUnsafeBufferPointer { c in
                decoded.withUnsafeBufferPointer { a in
                    bf16.withUnsafeMutableBufferPointer { o in
                        NF4.dequantizeBF16(
                            codes: c.baseAddress!, absmax: a.baseAddress!, blockSize: t.blockSize,
                            start: 0, count: t.count, into: o.baseAddress!)
                    }
                }
            }
        }
        Self.assertSame(
            bf16, try ref.field("dequantized_bf16").uint16(), "\(what) dequantized BF16", file: file, line: line)
        return t
    }

    func bits(_ v: [Float]) -> [UInt32] { v.map(\.bitPattern) }

    /// Equality with a short report (count, first differing index and both values).
    static func assertSame<T: Equatable>(
        _ got: [T], _ want: [T], _ what: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        guard got.count == want.count else {
            XCTFail("\(what): \(got.count) values, reference has \(want.count)", file: file, line: line)
            return
        }
        if let i = got.indices.first(where: { got[$0] != want[$0] }) {
            let n = got.indices.filter { got[$0] != want[$0] }.count
            XCTFail(
                "\(what): \(n) of \(got.count) differ; first at \(i): got \(got[i]), reference \(want[i])",
                file: file, line: line)
        }
    }
}

/// Seeded values for tests: SplitMix64 with Box-Muller normals.
struct NF4TestRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Float {
        let u = max(uniform(), 1e-300), v = uniform()
        return Float((-2 * Foundation.log(u)).squareRoot() * Foundation.cos(2 * Double.pi * v))
    }
    mutating func normals(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in normal() * scale } }
}
