import Foundation
import XCTest
@testable import QSTFormat

/// The page dropping shared by qst-quantize's hasher and quantizer (SharedPageRelease): in any order of
/// the two threads' progress, a range is dropped only once both are past it (unless one thread is more
/// than `maxSpread` ahead), and by the end every byte of the file has been dropped.
final class SharedPageReleaseTests: XCTestCase {
    /// Drop calls as the class makes them.
    final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var ranges: [(Int, Int)] = []
        func record(_ a: Int, _ b: Int) { lock.withLock { ranges.append((a, b)) } }
        var all: [(Int, Int)] { lock.withLock { ranges } }
    }

    struct Fixture {
        let file: SafetensorsFile
        let dir: URL
        /// Tensors in file order: name and byte range.
        var tensors: [(String, Int, Int)] {
            file.orderedNames.map { n in
                let t = file.tensors[n]!; return (n, t.dataOffset, t.dataOffset + t.byteCount)
            }
        }
    }

    func makeFile(tensors: Int = 6, floats: Int = 100_000) throws -> Fixture {
        let dir = try QST4TestSupport.temporaryDirectory()
        let data = try (0..<tensors).map { i in
            try SafetensorsTensorData(name: "t\(i)", shape: [floats], floats: (0..<floats).map { Float($0 % 97 + i) })
        }
        let path = dir.appendingPathComponent("m.safetensors").path
        try SafetensorsWriter.write(to: path, tensors: data)
        return Fixture(file: try SafetensorsFile(path: path), dir: dir)
    }

    /// Union of the dropped ranges covers [0, size).
    func assertCoversFile(_ drops: [(Int, Int)], size: Int, _ label: String) {
        var covered = 0
        for (a, b) in drops.sorted(by: { $0.0 < $1.0 }) where a <= covered { covered = max(covered, b) }
        XCTAssertGreaterThanOrEqual(covered, size, "\(label): dropped only up to \(covered) of \(size) bytes")
    }

    /// Runs one schedule of calls ("h" = the hasher's next chunk, "q<i>" = the quantizer finishes tensor i),
    /// checking after each call that every new drop lies behind both threads.
    func run(_ schedule: [String], chunk: Int, label: String) throws {
        let f = try makeFile()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let rec = Recorder()
        let pages = SharedPageRelease(f.file, dropRange: { rec.record($0, $1) })
        var hashed = 0, finished = Set<String>(), seen = 0
        let size = f.file.mapped.size
        for step in schedule {
            if step == "h" {
                let end = min(size, hashed + chunk)
                pages.hasherReached(end, chunkStart: hashed)
                hashed = end
            } else {
                let name = "t" + step.dropFirst()
                pages.quantizerFinished(name)
                finished.insert(name)
            }
            for (a, b) in rec.all.dropFirst(seen) {
                XCTAssertLessThanOrEqual(
                    b, hashed, "\(label): dropped [\(a), \(b)) before the hasher got there (\(hashed))")
                for (n, s, e) in f.tensors where s < b && e > a {
                    XCTAssertTrue(
                        finished.contains(n), "\(label): dropped [\(a), \(b)) while \(n) was still being quantized")
                }
            }
            seen = rec.all.count
        }
        XCTAssertEqual(hashed, size, "\(label): schedule must hash the whole file")
        assertCoversFile(rec.all, size: size, label)
    }

    func testEveryOrderDropsBehindBothAndEverything() throws {
        let chunk = 150_000
        let hashes = Array(repeating: "h", count: 20)  // 6 × 400 KB in 150 KB chunks: 16 + slack
        let quantize = ["q2", "q0", "q1", "q5", "q3", "q4"]  // not file order, as within a model layer
        let hashChunks = Array(hashes.prefix(17))
        try run(quantize + hashChunks, chunk: chunk, label: "quantizer first")
        try run(hashChunks + quantize, chunk: chunk, label: "hasher first")
        var interleaved: [String] = []
        for i in 0..<17 {
            interleaved.append("h"); if i % 3 == 2, !quantize.isEmpty { interleaved.append(quantize[i / 3]) }
        }
        interleaved += quantize.dropFirst(interleaved.filter { $0 != "h" }.count)
        try run(interleaved, chunk: chunk, label: "interleaved")
    }

    func testAThreadFarAheadDropsItsOwnPages() throws {
        let f = try makeFile()
        defer { try? FileManager.default.removeItem(at: f.dir) }
        let rec = Recorder()
        let pages = SharedPageRelease(f.file, maxSpread: 500_000, dropRange: { rec.record($0, $1) })
        let t = f.tensors
        // The quantizer finishes the last tensor while the hasher has read nothing: far behind, so the
        // quantizer drops that tensor at once.
        pages.quantizerFinished(t[5].0)
        XCTAssertTrue(rec.all.contains { $0.0 == t[5].1 && $0.1 == t[5].2 }, "\(rec.all)")
        // The hasher runs 1.2 MB ahead of a quantizer that has finished nothing before it: it drops its chunk.
        pages.hasherReached(1_200_000, chunkStart: 1_000_000)
        XCTAssertTrue(rec.all.contains { $0.0 == 1_000_000 && $0.1 == 1_200_000 }, "\(rec.all)")
    }
}
