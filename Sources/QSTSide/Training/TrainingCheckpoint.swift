import Foundation
import QSTFormat
import QSTNN

/// Resumable checkpoints in a run folder:
///   run/checkpoint-00000020/side.safetensors, side_config.json   the side weights
///   run/checkpoint-00000020/optimizer.safetensors                AdamW moments (m.<name>, v.<name>)
///   run/checkpoint-00000020/trainer_state.json                   step, data position, RNG, best metric
///   run/checkpoint.json                                          {"latest": "checkpoint-00000020"}
/// Each file is written atomically and the pointer is switched last, so an interrupted save leaves the
/// previous checkpoint in force.
public enum TrainingCheckpoint {
    public static let pointerName = "checkpoint.json"

    struct Pointer: Codable { var latest: String; var step: Int }
    struct StateFile: Codable { var state: TrainerState; var training: TrainingConfig; var adamStep: Int }

    public static func save(
        run: String, weights: SideWeights, optimizer: AdamW, state: TrainerState,
        training: TrainingConfig
    ) throws {
        try save(run: run, optimizer: optimizer, state: state, training: training) {
            try SideWeightsIO.save(weights, directory: $0)
        }
    }

    /// Whether `run` holds a checkpoint to resume from.
    public static func exists(run: String) -> Bool { FileManager.default.fileExists(atPath: run + "/" + pointerName) }

    /// Loads the latest checkpoint of `run`: weights, optimizer (moments and step), trainer state, the
    /// training configuration it was written with.
    public static func load(run: String) throws -> (
        weights: SideWeights, optimizer: AdamW, state: TrainerState,
        training: TrainingConfig
    ) {
        try load(run: run, weights: { try SideWeightsIO.load(directory: $0) }, parameters: \.parameters)
    }

    /// The checkpoint layout shared by every trainable model (side network, LoRA): `writeWeights`
    /// stores the model's own files into the checkpoint folder; the rest is common.
    static func save(
        run: String, optimizer: AdamW, state: TrainerState, training: TrainingConfig,
        writeWeights: (String) throws -> Void
    ) throws {
        let name = String(format: "checkpoint-%08d", state.step)
        let dir = run + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try writeWeights(dir)
        // Written straight from the optimizer's buffers (alive for the call): copying the moments first
        // doubled their memory at every save (2 GiB more for a 70B side network).
        var moments: [SafetensorsTensorView] = []
        for (i, p) in optimizer.parameters.enumerated() {
            for (prefix, buf) in [("m.", optimizer.m[i]), ("v.", optimizer.v[i])] {
                moments.append(
                    SafetensorsTensorView(
                        name: prefix + p.name, dtype: .f32, shape: [p.count],
                        bytes: UnsafeRawBufferPointer(start: buf.pointer, count: p.count * 4)))
            }
        }
        try withExtendedLifetime(optimizer) {
            try SafetensorsWriter.write(
                to: dir + "/optimizer.safetensors", views: moments,
                metadata: ["adam_step": String(optimizer.step)])
        }
        try writeJSON(
            StateFile(state: state, training: training, adamStep: optimizer.step), to: dir + "/trainer_state.json")
        try writeJSON(Pointer(latest: name, step: state.step), to: run + "/" + pointerName)
        // Older checkpoints are no longer needed once the pointer has moved.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []
        where entry.hasPrefix("checkpoint-") && entry != name {
            try? FileManager.default.removeItem(atPath: run + "/" + entry)
        }
    }

    /// The folder of `run`'s latest checkpoint, or nil without a readable pointer.
    static func latestDirectory(run: String) -> String? {
        guard let d = FileManager.default.contents(atPath: run + "/" + pointerName),
            let p = try? JSONDecoder().decode(Pointer.self, from: d)
        else { return nil }
        return run + "/" + p.latest
    }

    static func load<W>(run: String, weights loadWeights: (String) throws -> W, parameters: (W) -> [Parameter]) throws
        -> (weights: W, optimizer: AdamW, state: TrainerState, training: TrainingConfig)
    {
        let pointerPath = run + "/" + pointerName
        guard let pdata = FileManager.default.contents(atPath: pointerPath) else {
            throw QSTError.file(pointerPath, "no checkpoint to resume from")
        }
        let pointer: Pointer
        do { pointer = try JSONDecoder().decode(Pointer.self, from: pdata) } catch {
            throw QSTError.file(pointerPath, "unreadable: \(error)")
        }
        let dir = run + "/" + pointer.latest
        let weights = try loadWeights(dir)
        let statePath = dir + "/trainer_state.json"
        guard let sdata = FileManager.default.contents(atPath: statePath) else {
            throw QSTError.file(statePath, "missing")
        }
        let file: StateFile
        do { file = try JSONDecoder().decode(StateFile.self, from: sdata) } catch {
            throw QSTError.file(statePath, "unreadable: \(error)")
        }
        let optimizer = AdamW(parameters: parameters(weights), config: file.training.adamW)
        optimizer.step = file.adamStep
        let opt = try SafetensorsFile(path: dir + "/optimizer.safetensors")
        for (i, p) in optimizer.parameters.enumerated() {
            for (prefix, buf) in [("m.", optimizer.m[i]), ("v.", optimizer.v[i])] {
                guard let info = opt.tensors[prefix + p.name], info.elementCount == p.count else {
                    throw QSTError.tensor(opt.path, prefix + p.name, "missing or of the wrong size")
                }
                try opt.floats(prefix + p.name, into: UnsafeMutableBufferPointer(start: buf.pointer, count: p.count))
            }
        }
        return (weights, optimizer, file.state, file.training)
    }

    /// Pretty, key-sorted JSON written atomically (temporary file, fsync, rename): every JSON file of a run.
    public static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let out = try AtomicFileWriter(path: path)
        try out.write(try e.encode(value))
        try out.write([UInt8]("\n".utf8))
        try out.commit()
    }
}
