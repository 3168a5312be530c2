import Foundation
import QSTFormat

/// Reading and repairing run/log.jsonl (one `TrainingLogEntry` JSON object per line). A run killed while
/// appending leaves a last line without its newline: readers skip it, and a resumed run cuts it off before
/// appending, so its first entry does not fuse with the fragment.
public enum TrainingLog {
    /// Bytes up to and including the last newline: the complete lines.
    public static func completeLength(_ data: Data) -> Int {
        guard let i = data.lastIndex(of: UInt8(ascii: "\n")) else { return 0 }
        return data.distance(from: data.startIndex, to: i) + 1
    }

    /// The entries of the complete lines; a trailing partial line and lines that are not entries are skipped.
    public static func entries(in data: Data) -> [TrainingLogEntry] {
        let decoder = JSONDecoder()
        return data.prefix(completeLength(data)).split(separator: UInt8(ascii: "\n")).compactMap {
            try? decoder.decode(TrainingLogEntry.self, from: Data($0))
        }
    }

    public static func entries(atPath path: String) -> [TrainingLogEntry] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return entries(in: data)
    }

    /// Cuts a trailing partial line off the file (nothing to do when it ends in a newline or is absent).
    /// Returns the number of bytes removed.
    @discardableResult
    public static func repair(path: String) throws -> Int {
        guard let data = FileManager.default.contents(atPath: path) else { return 0 }
        let keep = completeLength(data)
        guard keep < data.count else { return 0 }
        guard let h = FileHandle(forWritingAtPath: path) else { throw QSTError.file(path, "cannot open to repair") }
        defer { try? h.close() }
        try h.truncate(atOffset: UInt64(keep))
        try h.synchronize()
        return data.count - keep
    }
}
