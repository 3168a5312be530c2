import Foundation
import QSTFormat

/// Which state of a run to export (`--checkpoint best|last|STEP`).
public enum CheckpointChoice: Equatable, Sendable {
    case best, last, step(Int)

    public init(parsing s: String) throws {
        switch s {
        case "best": self = .best
        case "last": self = .last
        default:
            guard let n = Int(s), n >= 0 else {
                throw QSTError("--checkpoint must be best, last or a step number (got '\(s)')")
            }
            self = .step(n)
        }
    }
}

/// Finds the side network to export in a qst-tune run folder (Formats/RUNS.md §4), an adapter folder or
/// a side folder.
public enum ExportSource {
    /// The folder holding the weights and what to record as their origin. With no choice: `best` when the
    /// run has one, else `last`. `last` is `run/final` (written at the end of training), else the latest
    /// checkpoint.
    public static func resolve(_ path: String, choice: CheckpointChoice?) throws -> (
        folder: String, origin: ExportOrigin
    ) {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw QSTError.file(path, "no such folder (expected a qst-tune run, an adapter or a side folder)")
        }
        let isRun =
            fm.fileExists(atPath: path + "/" + TrainingCheckpoint.pointerName) || fm.fileExists(atPath: path + "/best")
            || fm.fileExists(atPath: path + "/final")
        if !isRun {
            guard AdapterIO.isAdapter(path) || fm.fileExists(atPath: path + "/" + SideWeightsIO.weightsFileName) else {
                throw QSTError.file(
                    path, "neither a qst-tune run (checkpoint.json, best/, final/) nor a side or adapter folder")
            }
            if let c = choice, c != .last { throw QSTError.file(path, "--checkpoint \(c) needs a qst-tune run folder") }
            return (path, ExportOrigin(checkpoint: "side-folder"))
        }
        let available = checkpoints(in: path)
        switch choice ?? (fm.fileExists(atPath: path + "/best") ? .best : .last) {
        case .best:
            guard fm.fileExists(atPath: path + "/best/" + SideWeightsIO.weightsFileName) else {
                throw QSTError.file(path, "has no best/ side network (no evaluation ran); use --checkpoint last")
            }
            return (path + "/best", ExportOrigin(checkpoint: "best"))
        case .last:
            if fm.fileExists(atPath: path + "/final/" + SideWeightsIO.weightsFileName) {
                return (path + "/final", ExportOrigin(checkpoint: "last", step: latestStep(path)))
            }
            guard let (step, name) = available.last else {
                throw QSTError.file(path, "has no final/ and no checkpoint")
            }
            return (path + "/" + name, ExportOrigin(checkpoint: "last", step: step))
        case .step(let n):
            guard let (_, name) = available.first(where: { $0.0 == n }) else {
                let list = available.map { String($0.0) }.joined(separator: ", ")
                throw QSTError.file(
                    path, "has no checkpoint for step \(n) (available: \(list.isEmpty ? "none" : list))")
            }
            return (path + "/" + name, ExportOrigin(checkpoint: "step", step: n))
        }
    }

    /// `checkpoint-NNNNNNNN` folders with side weights, by step.
    static func checkpoints(in run: String) -> [(Int, String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("checkpoint-"), let n = Int(name.dropFirst("checkpoint-".count)),
                FileManager.default.fileExists(atPath: run + "/" + name + "/" + SideWeightsIO.weightsFileName)
            else { return nil }
            return (n, name)
        }.sorted { $0.0 < $1.0 }
    }

    static func latestStep(_ run: String) -> Int? {
        guard let d = FileManager.default.contents(atPath: run + "/" + TrainingCheckpoint.pointerName),
            let obj = try? JSONSerialization.jsonObject(with: d) as? [String: Any]
        else { return nil }
        return obj["step"] as? Int
    }
}
