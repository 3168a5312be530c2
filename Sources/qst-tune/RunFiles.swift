import Foundation
import QSTCLI
import QSTSide

/// run/run.json: the data arguments of a run, so `--resume` needs only the run folder.
struct RunArguments: Codable {
    var data: String?
    var eval: String?
    var task: String?
    var trainLimit: Int?
    var skipBad: Bool
    var trainFingerprint: String?
    var cacheBase: String? = nil

    static func read(run: String) -> RunArguments? {
        guard let d = FileManager.default.contents(atPath: run + "/run.json") else { return nil }
        return try? JSONDecoder().decode(RunArguments.self, from: d)
    }
    func write(run: String) throws { try TrainingCheckpoint.writeJSON(self, to: run + "/run.json") }

    /// Count and an FNV-1a hash of the token ids and labels, in order.
    static func fingerprint(_ examples: [TrainingExample]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for e in examples {
            for t in e.ids + [-1] + e.labels + [-2] { h = (h ^ UInt64(UInt32(bitPattern: t))) &* 0x100_0000_01b3 }
        }
        return "\(examples.count):\(String(h, radix: 16))"
    }
}

/// run/log.jsonl: one JSON object per line, appended as training goes (kept across resumes).
final class LogFile {
    let path: String
    let handle: FileHandle
    init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        // A run killed mid-append left half a line: cut it so the next entry starts on its own line.
        try TrainingLog.repair(path: path)
        guard let h = FileHandle(forWritingAtPath: path) else {
            throw QSTError("cannot write \(path)", kind: .unwritableFile)
        }
        handle = h
        handle.seekToEndOfFile()
    }
    func append(_ e: TrainingLogEntry) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        if let d = try? enc.encode(e) { handle.write(d); handle.write(Data("\n".utf8)) }
    }
    func readAll() -> [TrainingLogEntry] { TrainingLog.entries(atPath: path) }
}
