import Foundation
import XCTest
import QSTTestSupport
@testable import QSTFormat

/// Cross-checks against the reference implementations: the `safetensors` Python
/// package (Hugging Face's Rust core) for the file format, NumPy for float16.
/// Skipped when the venv lacks them (install with `pip install safetensors numpy`).
final class SafetensorsInteropTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try STFiles.makeTempDir("interop") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    static let torchNames: [DType: String] = [
        .f64: "float64", .f32: "float32", .f16: "float16", .bf16: "bfloat16", .i64: "int64", .i32: "int32",
        .i16: "int16", .i8: "int8", .u8: "uint8", .u16: "uint16", .u32: "uint32", .u64: "uint64", .bool: "bool",
    ]

    /// Shared Python prelude: serialize() across package versions (0.8 takes TensorSpec
    /// pointers, older versions take dicts with bytes).
    static let prelude = """
        import sys, json, numpy as np
        import safetensors._safetensors_rust as r
        def ser(tensors, meta):
            keep = []
            if hasattr(r, "TensorSpec"):
                specs = {}
                for name, (dt, shape, data) in tensors.items():
                    a = np.frombuffer(bytes(data), dtype=np.uint8).copy() if len(data) else np.zeros(1, np.uint8)
                    keep.append(a)
                    specs[name] = r.TensorSpec(dtype=dt, shape=shape, data_ptr=a.ctypes.data, data_len=len(data))
                return bytes(r.serialize(specs, metadata=meta))
            return bytes(r.serialize({n: {"dtype": dt, "shape": s, "data": bytes(d)} for n, (dt, s, d) in tensors.items()}, metadata=meta))
        """

    func python() throws -> String {
        let py = TestEnvironment.python
        guard FileManager.default.isExecutableFile(atPath: py) else {
            try TestRequirement.unavailable("no Python at \(py)")
        }
        guard (try? run(py, ["-c", "import numpy, safetensors._safetensors_rust"])) != nil else {
            try TestRequirement.unavailable("\(py) lacks numpy or safetensors")
        }
        return py
    }

    @discardableResult
    func run(_ exe: String, _ args: [String]) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw QSTError("python failed: \(String(decoding: errData, as: UTF8.self))")
        }
        return data
    }

    func testReferenceReadsOurFiles() throws {
        let py = try python()
        var rng = STRandom(seed: 99)
        var tensors: [SafetensorsTensorData] = []
        for dtype in DType.allCases where dtype != .nf4 {
            let bytes = rng.bytes(4 * dtype.byteSize!).map { dtype == .bool ? $0 & 1 : $0 }
            tensors.append(
                SafetensorsTensorData(name: "layer.\(dtype.rawValue)", dtype: dtype, shape: [2, 2], bytes: bytes))
        }
        tensors.append(SafetensorsTensorData(name: "empty", dtype: .f32, shape: [0], bytes: []))
        let meta = ["format": "pt", "quote": "a\"b\\c\u{1}é"]
        let path = dir + "/ours.safetensors"
        try SafetensorsWriter.write(to: path, tensors: tensors, metadata: meta)
        let script =
            Self.prelude + """

                from safetensors import safe_open
                data = open(sys.argv[1], "rb").read()
                out = {n: [t["dtype"], list(t["shape"]), bytes(t["data"]).hex()] for n, t in r.deserialize(data)}
                with safe_open(sys.argv[1], framework="numpy") as f:
                    meta = f.metadata()
                print(json.dumps({"tensors": out, "metadata": meta}))
                """
        let json = try XCTUnwrap(
            JSONSerialization.jsonObject(with: try run(py, ["-c", script, path])) as? [String: Any])
        XCTAssertEqual(json["metadata"] as? [String: String], meta)
        let seen = try XCTUnwrap(json["tensors"] as? [String: [Any]])
        XCTAssertEqual(Set(seen.keys), Set(tensors.map(\.name)))
        for t in tensors {
            let entry = try XCTUnwrap(seen[t.name])
            XCTAssertEqual(entry[0] as? String, t.dtype.rawValue)
            XCTAssertEqual(entry[1] as? [Int], t.shape)
            XCTAssertEqual(entry[2] as? String, t.bytes.map { String(format: "%02x", $0) }.joined(), t.name)
        }
    }

    func testWeReadReferenceFiles() throws {
        let py = try python()
        let names = Self.torchNames.map { "\"\($0.key.rawValue)\": \"\($0.value)\"" }.joined(separator: ", ")
        let script =
            Self.prelude + """

                sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                         "U8": 1, "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}
                names = {\(names)}
                tensors, summary = {}, {}
                for k, (st, dt) in enumerate(sorted(names.items())):
                    n = 3 * (k + 1)
                    data = bytes(((i * 37 + k * 11) % 256) & (1 if st == "BOOL" else 255) for i in range(n * sizes[st]))
                    tensors["w." + st] = (dt, [n], data)
                    summary["w." + st] = [st, [n], data.hex()]
                tensors["scalar"] = ("float32", [], np.float32(2.5).tobytes())
                summary["scalar"] = ["F32", [], np.float32(2.5).tobytes().hex()]
                open(sys.argv[1], "wb").write(ser(tensors, {"made_by": "reference"}))
                print(json.dumps(summary))
                """
        let path = dir + "/theirs.safetensors"
        let summary = try XCTUnwrap(
            JSONSerialization.jsonObject(with: try run(py, ["-c", script, path])) as? [String: [Any]])
        let f = try SafetensorsFile(path: path)
        XCTAssertEqual(f.metadata, ["made_by": "reference"])
        XCTAssertEqual(Set(f.tensors.keys), Set(summary.keys))
        for (name, s) in summary {
            let info = try f.info(name)
            XCTAssertEqual(info.dtype.rawValue, s[0] as? String)
            XCTAssertEqual(info.shape, s[1] as? [Int])
            XCTAssertEqual(try f.rawBytes(name).map { String(format: "%02x", $0) }.joined(), s[2] as? String, name)
        }
        XCTAssertEqual(try f.floats("scalar"), [2.5])
    }

    /// NumPy's float16 casts (round to nearest even) over every F16 pattern and
    /// random plus tie-heavy F32 inputs.
    func testFloat16AgreesWithNumPy() throws {
        let py = try python()
        let script =
            Self.prelude + """

                rng = np.random.default_rng(1234)
                rand = rng.integers(0, 2**32, size=100000, dtype=np.uint64).astype(np.uint32).view(np.float32)
                scaled = (rng.standard_normal(100000) * np.exp2(rng.integers(-30, 18, 100000))).astype(np.float32)
                halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
                finite = np.sort(halves[np.isfinite(halves)].astype(np.float64))
                ties = ((finite[1:] + finite[:-1]) / 2).astype(np.float32)
                x = np.concatenate([rand, scaled, ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf)),
                                    np.array([65520, -65520, 65519.996, 1e9, 2**-25, 2**-26, np.inf, -np.inf, -0.0], np.float32)])
                with np.errstate(all="ignore"):
                    h = x.astype(np.float16)
                    wide = halves.astype(np.float32)
                t = {"x": ("float32", [len(x)], x.tobytes()), "h": ("float16", [len(h)], h.tobytes()),
                     "all": ("uint16", [65536], np.arange(65536, dtype=np.uint16).tobytes()),
                     "wide": ("float32", [65536], wide.tobytes())}
                open(sys.argv[1], "wb").write(ser(t, {}))
                """
        let path = dir + "/numpy16.safetensors"
        try run(py, ["-c", script, path])
        let f = try SafetensorsFile(path: path)
        let x = try f.floats("x")
        let h = try f.copyElements("h", as: UInt16.self)
        let ours = FloatConversion.fromF32(x, to: .f16)
        var bad = 0
        for i in x.indices where bad < 10 {
            let same =
                x[i].isNaN
                ? (FloatReference.isNaNPattern(ours[i], FloatReference.f16)
                    && FloatReference.isNaNPattern(h[i], FloatReference.f16))
                : ours[i] == h[i]
            if !same {
                bad += 1;
                XCTFail("f32->f16 of \(x[i]) (\(String(x[i].bitPattern, radix: 16))): ours \(ours[i]) numpy \(h[i])")
            }
        }
        let all = try f.copyElements("all", as: UInt16.self)
        let wide = try f.copyElements("wide", as: UInt32.self)
        let oursWide = FloatConversion.toF32(all, from: .f16)
        for i in all.indices where !FloatReference.isNaNPattern(all[i], FloatReference.f16) {
            XCTAssertEqual(oursWide[i].bitPattern, wide[i], "f16 pattern \(String(all[i], radix: 16))")
        }
    }
}
