import Foundation
import QSTEngine
import QSTFormat
import QSTNN
import XCTest
@testable import QSTSide

/// A segment written by the cache, read back by hand from Formats/BASECACHE.md alone (offsets, key, byte
/// planes, zstd), against states computed here directly from the engine: each example run alone, pooled
/// with a plain loop.
final class BaseCacheFormatTests: XCTestCase {
    private func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) }
    }
    private func le64(_ b: [UInt8], _ at: Int) -> Int {
        Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) })
    }

    func testSegmentFollowsTheSpec() throws {
        let frozen = try FrozenModel(path: try ExportFixtures.tinyContainer())
        let weights = try ExportFixtures.sideWeights(for: frozen, r: 2, kind: .avgpool)
        let identity = try BaseCacheIdentity.of(model: frozen, config: weights.config, maxLength: 32)
        let dir = try ExportFixtures.scratch("spec-cache")
        defer { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
        let cache = try BaseStateCache(directory: dir, identity: identity, config: weights.config)
        let model = try SideModel(weights: weights, backbone: frozen)
        // Two examples: labelled at the last position only, and at every position after the first.
        let x = ChunkedCrossEntropy.ignoreIndex
        let seqs: [[Int32]] = [[5, 17, 99, 42, 7, 250], [8, 31, 64]]
        let labels: [[Int32]] = [[x, x, x, x, x, 12], [31, 64, 9]]
        let T = 6
        var flatLabels: [Int32] = []
        for l in labels { flatLabels += l + [Int32](repeating: x, count: T - l.count) }
        let batch = SideBatch(tokens: TokenBatch(sequences: seqs), labels: flatLabels)
        _ = try cache.frozenStates(batch, model: model) { _, _ in }

        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".qbc") }
        XCTAssertEqual(names.count, 1)
        let name = try XCTUnwrap(names.first)
        let b = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: dir + "/" + name)))
        XCTAssertEqual(Array(b[0..<8]), Array("QSTBCSEG".utf8))
        XCTAssertEqual(le32(b, 8), 1)
        let J = Int(le32(b, 12))
        let id = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(b[16..<(16 + J)])) as? [String: Any])
        XCTAssertEqual(id["downsample"] as? String, "avgpool")
        XCTAssertEqual(id["r"] as? Int, 2); XCTAssertEqual(id["width"] as? Int, 32)
        XCTAssertEqual(id["layers"] as? Int, 2); XCTAssertEqual(id["hidden_size"] as? Int, 64)
        XCTAssertEqual(id["max_length"] as? Int, 32)
        let container = try XCTUnwrap(frozen.source as? ContainerWeightSource)
        XCTAssertEqual(id["base"] as? String, try container.container.directorySHA256())
        let I = (16 + J + 7) / 8 * 8
        XCTAssertTrue(b[(16 + J)..<I].allSatisfy { $0 == 0 })
        let R = Int(le32(b, I))
        XCTAssertEqual(R, 2)
        let index = Array(b[(I + 8)..<(I + 8 + 64 * R)])
        XCTAssertEqual(le32(b, I + 4), index.withUnsafeBytes { Checksums.crc32c($0) })
        XCTAssertEqual(
            name, "segment-" + String(Checksums.sha256Hex(Data(index[0..<32] + index[64..<96])).prefix(16)) + ".qbc")

        let L = 2, w = 32, d = 64
        var expectedEnd = I + 8 + 64 * R
        for (e, seq) in seqs.enumerated() {
            let entry = Array(index[(64 * e)..<(64 * e + 64)])
            var keyBytes: [UInt8] = []
            for v in [UInt32(seq.count)] + seq.map({ UInt32(bitPattern: $0) })
                + labels[e].map({ UInt32(bitPattern: $0) })
            {
                keyBytes += [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24)]
            }
            XCTAssertEqual(
                entry[0..<32].map { String(format: "%02x", $0) }.joined(), Checksums.sha256Hex(Data(keyBytes)))
            let M = labels[e].filter { $0 != x }.count
            XCTAssertEqual(Int(le32(entry, 32)), seq.count); XCTAssertEqual(Int(le32(entry, 36)), M)
            let offset = le64(entry, 40), size = le64(entry, 48)
            XCTAssertEqual(offset, expectedEnd, "payloads back to back in index order")
            expectedEnd = offset + size
            let payload = Array(b[offset..<(offset + size)])
            XCTAssertEqual(le32(entry, 56), payload.withUnsafeBytes { Checksums.crc32c($0) })
            let N = (L + 1) * seq.count * w + M * d
            let planes = [UInt8](
                try payload.withUnsafeBytes { try Zstd.decompress($0, expectedSize: 4 * N, what: "test") })
            let stored = (0..<N).map { i in
                Float(
                    bitPattern: UInt32(planes[i]) | UInt32(planes[N + i]) << 8 | UInt32(planes[2 * N + i]) << 16
                        | UInt32(planes[3 * N + i]) << 24)
            }
            // Reference: the example alone through the engine, pooled here.
            var expected: [Float] = []
            let final = try frozen.forwardHiddenStates(TokenBatch(sequences: [seq])) { _, h in
                for t in 0..<seq.count {
                    for g in 0..<w { expected.append((h[t * d + 2 * g] + h[t * d + 2 * g + 1]) * 0.5) }
                }
            }
            for t in 0..<seq.count where labels[e][t] != x { expected += final[(t * d)..<((t + 1) * d)] }
            XCTAssertEqual(stored.count, expected.count)
            XCTAssertTrue(stored == expected, "example \(e): stored states differ from the engine's")
        }
        XCTAssertEqual(expectedEnd, b.count)
    }
}
