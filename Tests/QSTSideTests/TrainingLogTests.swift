import Foundation
import XCTest
@testable import QSTSide

/// run/log.jsonl after a kill mid-append: readers skip the trailing half line, repair cuts it off.
final class TrainingLogTests: XCTestCase {
    let whole =
        #"{"elapsedSeconds":1,"epoch":0.5,"kind":"train","loss":2.5,"step":1}"# + "\n"
        + #"{"elapsedSeconds":2,"epoch":1,"kind":"eval","loss":2.25,"step":2}"# + "\n"
    let half = #"{"elapsedSeconds":3,"epoch":1.5,"ki"#

    func testReaderSkipsTrailingPartialLine() {
        let entries = TrainingLog.entries(in: Data((whole + half).utf8))
        XCTAssertEqual(entries.map(\.step), [1, 2])
        XCTAssertEqual(entries.map(\.kind), ["train", "eval"])
        XCTAssertEqual(TrainingLog.entries(in: Data(whole.utf8)).count, 2)
        XCTAssertEqual(TrainingLog.entries(in: Data(half.utf8)).count, 0)
    }

    func testRepairCutsTheFragmentAndAppendsStartOnTheirOwnLine() throws {
        let path = NSTemporaryDirectory() + "qst-log-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data((whole + half).utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try TrainingLog.repair(path: path), half.utf8.count)
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data(whole.utf8))
        XCTAssertEqual(try TrainingLog.repair(path: path), 0, "a whole file is left alone")
        let h = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        h.seekToEndOfFile()
        h.write(Data((#"{"elapsedSeconds":4,"epoch":2,"kind":"train","loss":2,"step":3}"# + "\n").utf8))
        try h.close()
        XCTAssertEqual(TrainingLog.entries(atPath: path).map(\.step), [1, 2, 3])
    }
}
