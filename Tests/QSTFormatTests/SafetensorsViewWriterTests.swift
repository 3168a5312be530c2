import XCTest
@testable import QSTFormat

/// Writing from views of live memory (checkpoints without a second copy) must give the very file the
/// copying writer gives, and refuse the same malformed tensors.
final class SafetensorsViewWriterTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try STFiles.makeTempDir("views") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func testViewsWriteTheSameBytesAsCopies() throws {
        var rng = STRandom(seed: 11)
        let tensors = [
            SafetensorsTensorData(name: "m.b", dtype: .f32, shape: [3, 5], bytes: rng.bytes(60)),
            SafetensorsTensorData(name: "m.a", dtype: .bf16, shape: [7], bytes: rng.bytes(14)),
            SafetensorsTensorData(name: "empty", dtype: .f32, shape: [0], bytes: []),
        ]
        let meta = ["adam_step": "3"]
        try SafetensorsWriter.write(to: dir + "/copies.safetensors", tensors: tensors, metadata: meta)
        let storage = tensors.map { $0.bytes }
        try storage[0].withUnsafeBytes { b0 in
            try storage[1].withUnsafeBytes { b1 in
                try storage[2].withUnsafeBytes { b2 in
                    let views = zip(tensors, [b0, b1, b2]).map {
                        SafetensorsTensorView(name: $0.0.name, dtype: $0.0.dtype, shape: $0.0.shape, bytes: $0.1)
                    }
                    try SafetensorsWriter.write(to: dir + "/views.safetensors", views: views, metadata: meta)
                }
            }
        }
        let a = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/copies.safetensors"))
        let b = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/views.safetensors"))
        XCTAssertEqual(a, b)
        let f = try SafetensorsFile(path: dir + "/views.safetensors")
        XCTAssertEqual(Array(try f.rawBytes("m.b")), tensors[0].bytes)
        XCTAssertEqual(f.orderedNames, tensors.map(\.name))
    }

    func testViewWithTheWrongSizeIsRefusedAndNothingIsWritten() throws {
        let bytes: [UInt8] = Array(repeating: 0, count: 12)
        let path = dir + "/bad.safetensors"
        XCTAssertThrowsError(
            try bytes.withUnsafeBytes { b in
                try SafetensorsWriter.write(
                    to: path, views: [SafetensorsTensorView(name: "m.x", dtype: .f32, shape: [4], bytes: b)])
            }
        ) { error in
            XCTAssertTrue("\(error)".contains("m.x"), "\(error)")
            XCTAssertTrue("\(error)".contains("12 bytes"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }
}
