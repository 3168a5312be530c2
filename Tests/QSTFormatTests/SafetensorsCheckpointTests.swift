import XCTest
@testable import QSTFormat

final class SafetensorsCheckpointTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try STFiles.makeTempDir("ckpt") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ tensors: [(String, [Float])]) throws {
        try STFiles.write(STFiles.f32File(tensors), to: dir + "/" + name)
    }

    func writeIndex(_ map: [(String, String)]) throws {
        let entries = map.map { "\"\($0.0)\": \"\($0.1)\"" }.joined(separator: ",\n    ")
        let text = "{\n  \"metadata\": {\"total_size\": 24},\n  \"weight_map\": {\n    \(entries)\n  }\n}\n"
        try text.write(toFile: dir + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
    }

    func testShardedFolderWithIndex() throws {
        try write("model-00001-of-00002.safetensors", [("b", [3, 4]), ("a", [1, 2])])
        try write("model-00002-of-00002.safetensors", [("c", [5, 6])])
        try writeIndex([
            ("a", "model-00001-of-00002.safetensors"), ("b", "model-00001-of-00002.safetensors"),
            ("c", "model-00002-of-00002.safetensors"),
        ])
        let config = Data("{\"hidden_size\": 8}".utf8)
        try config.write(to: URL(fileURLWithPath: dir + "/config.json"))

        let ck = try SafetensorsCheckpoint(path: dir)
        XCTAssertEqual(ck.names, ["b", "a", "c"], "shard by shard, in data order")
        XCTAssertEqual(ck.files.count, 2)
        XCTAssertEqual(try ck.floats("a"), [1, 2])
        XCTAssertEqual(try ck.floats("c"), [5, 6])
        XCTAssertEqual(ck.file(for: "c")?.path, dir + "/model-00002-of-00002.safetensors")
        XCTAssertEqual(ck.info("b")?.shape, [2])
        XCTAssertNil(ck.info("zzz"))
        XCTAssertEqual(ck.configJSON, config)
        XCTAssertEqual(ck.directory, dir)
        stExpectError([dir, "tensor 'zzz'"]) { _ = try ck.floats("zzz") }

        // The index file itself is also accepted as the path.
        let viaIndex = try SafetensorsCheckpoint(path: dir + "/model.safetensors.index.json")
        XCTAssertEqual(viaIndex.names, ck.names)
    }

    func testMissingShardNamesShardAndTensor() throws {
        try write("s1.safetensors", [("a", [1])])
        try writeIndex([("a", "s1.safetensors"), ("d", "s2.safetensors")])
        stExpectError(["model.safetensors.index.json", "tensor 'd'", "s2.safetensors", "does not exist"]) {
            _ = try SafetensorsCheckpoint(path: dir)
        }
    }

    func testTensorListedInIndexButAbsentFromShard() throws {
        try write("s1.safetensors", [("a", [1])])
        try writeIndex([("a", "s1.safetensors"), ("ghost", "s1.safetensors")])
        stExpectError([dir + "/s1.safetensors", "tensor 'ghost'", "not present"]) {
            _ = try SafetensorsCheckpoint(path: dir)
        }
    }

    func testDuplicateTensorAcrossShards() throws {
        try write("s1.safetensors", [("a", [1])])
        try write("s2.safetensors", [("a", [2]), ("b", [3])])
        try writeIndex([("a", "s1.safetensors"), ("b", "s2.safetensors")])
        stExpectError([dir + "/s2.safetensors", "tensor 'a'", "also present in shard 's1.safetensors'"]) {
            _ = try SafetensorsCheckpoint(path: dir)
        }
    }

    func testDuplicateAndMalformedIndexEntries() throws {
        try write("s1.safetensors", [("a", [1])])
        try writeIndex([("a", "s1.safetensors"), ("a", "s1.safetensors")])
        stExpectError(["model.safetensors.index.json", "tensor 'a'", "more than once"]) {
            _ = try SafetensorsCheckpoint(path: dir)
        }
        try "{\"weight_map\": {\"a\": 3}}".write(
            toFile: dir + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        stExpectError(["model.safetensors.index.json", "tensor 'a'", "shard file name"]) {
            _ = try SafetensorsCheckpoint(path: dir)
        }
        try "{\"weight_map\": {\"a\": \"../s1.safetensors\"}}".write(
            toFile: dir + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        stExpectError(["tensor 'a'", "not a file name inside"]) { _ = try SafetensorsCheckpoint(path: dir) }
        try "{\"metadata\": {}}".write(toFile: dir + "/model.safetensors.index.json", atomically: true, encoding: .utf8)
        stExpectError(["model.safetensors.index.json", "weight_map"]) { _ = try SafetensorsCheckpoint(path: dir) }
    }

    func testCorruptShardIsReportedByItsPath() throws {
        try STFiles.write([1, 2], to: dir + "/s1.safetensors")
        try writeIndex([("a", "s1.safetensors")])
        stExpectError([dir + "/s1.safetensors", "too short"]) { _ = try SafetensorsCheckpoint(path: dir) }
    }

    func testSingleFileAndSingleFileFolder() throws {
        try write("model.safetensors", [("w", [7, 8, 9])])
        let byFolder = try SafetensorsCheckpoint(path: dir)
        XCTAssertEqual(byFolder.names, ["w"])
        XCTAssertEqual(try byFolder.floats("w"), [7, 8, 9])
        XCTAssertNil(byFolder.configJSON)
        let byFile = try SafetensorsCheckpoint(path: dir + "/model.safetensors")
        XCTAssertEqual(try byFile.floats("w"), [7, 8, 9])
        XCTAssertEqual(byFile.directory, dir)
    }

    func testFolderWithoutWeights() throws {
        stExpectError([dir, "no model.safetensors"]) { _ = try SafetensorsCheckpoint(path: dir) }
        try write("x.safetensors", [("w", [1])])
        try write("y.safetensors", [("w", [1])])
        stExpectError([dir, "several .safetensors files"]) { _ = try SafetensorsCheckpoint(path: dir) }
        stExpectError([dir + "/nothing", "no such file"]) { _ = try SafetensorsCheckpoint(path: dir + "/nothing") }
    }
}
