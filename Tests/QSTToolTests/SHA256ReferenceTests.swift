import Foundation
import XCTest
@testable import QSTFormat

/// SHA-256 (the provenance hashes of .qst4 files, run identities) against Python's hashlib, on both
/// C paths: the portable rounds and the CPU's SHA-256 instructions (SHA-NI or ARMv8 SHA2, when it has them), fed whole and in uneven
/// pieces, around every padding edge (55/56/64 bytes) and across many blocks; and the source hasher of
/// qst-quantize (pread in 4 MiB chunks) on a file longer than one chunk.
final class SHA256ReferenceTests: ToolTestCase {
    func testDigestsMatchHashlibOnEveryPath() throws {
        var rng = SplitMixForTests(seed: 11)
        let lengths = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4113, (1 << 20) + 5, (9 << 20) + 3]
        var files: [String] = [], buffers: [[UInt8]] = []
        for (i, n) in lengths.enumerated() {
            let b = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let p = path("buffer\(i).bin")
            try Data(b).write(to: URL(fileURLWithPath: p))
            files.append(p)
            buffers.append(b)
        }
        let code = "import hashlib, sys\nfor p in sys.argv[1:]: print(hashlib.sha256(open(p, 'rb').read()).hexdigest())"
        let r = try ReferenceScripts.runPython(["-c", code] + files)
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(expected.count, lengths.count, r.stdout)
        guard expected.count == lengths.count else { return }

        var paths = [("portable", true)]
        if SHA256Hasher.hasHardwareRounds { paths.append(("instructions", false)) }
        let steps = [1, 7, 64, 100, 63, 4096, 129]
        for (name, portable) in paths {
            for (i, b) in buffers.enumerated() {
                var whole = SHA256Hasher(portable: portable)
                b.withUnsafeBytes { whole.update($0) }
                XCTAssertEqual(whole.finalizeHex(), expected[i], "\(name), \(b.count) bytes at once")
                var pieces = SHA256Hasher(portable: portable)
                b.withUnsafeBytes { raw in
                    var o = 0, k = 0
                    while o < raw.count {
                        let s = min(steps[k % steps.count], raw.count - o)
                        pieces.update(UnsafeRawBufferPointer(rebasing: raw[o..<(o + s)]))
                        o += s
                        k += 1
                    }
                }
                XCTAssertEqual(pieces.finalizeHex(), expected[i], "\(name), \(b.count) bytes in pieces")
            }
        }
        let big = lengths.count - 1
        XCTAssertEqual(try SourceHashing.hash(files[big]).sha256, expected[big], "source hasher")
        XCTAssertEqual(try Checksums.sha256Hex(file: files[big]), expected[big], "mapped file")

        // The fast path must not be silently off on a CPU that has the instructions.
        #if arch(x86_64) && os(Linux)
            let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
            if info.contains(" sha_ni"), ProcessInfo.processInfo.environment["QST_KERNELS"] != "scalar" {
                XCTAssertTrue(SHA256Hasher.hasHardwareRounds, "the CPU lists sha_ni but the SHA-NI rounds are off")
            }
        #elseif arch(arm64) && os(Linux)
            let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
            if info.contains(" sha2"), ProcessInfo.processInfo.environment["QST_KERNELS"] != "scalar" {
                XCTAssertTrue(SHA256Hasher.hasHardwareRounds, "the CPU lists sha2 but the SHA2 rounds are off")
            }
        #endif
    }
}
