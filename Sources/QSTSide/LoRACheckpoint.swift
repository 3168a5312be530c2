import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// Resumable LoRA checkpoints, laid out as the side network's (Formats/SIDE.md §6) with the adapter in
/// PEFT layout: run/checkpoint-N/{adapter_model.safetensors, adapter_config.json, optimizer.safetensors,
/// trainer_state.json}, run/checkpoint.json switched last.
public enum LoRACheckpoint {
    public static func save(run: String, weights: LoRAWeights, optimizer: AdamW, state: TrainerState,
                            training: TrainingConfig) throws {
        let name = String(format: "checkpoint-%08d", state.step)
        let dir = run + "/" + name
        try LoRAAdapterIO.save(weights, directory: dir)
        var moments: [SafetensorsTensorData] = []
        for (i, p) in optimizer.parameters.enumerated() {
            for (prefix, buf) in [("m.", optimizer.m[i]), ("v.", optimizer.v[i])] {
                let bytes = Array(UnsafeRawBufferPointer(start: buf.pointer, count: p.count * 4))
                moments.append(SafetensorsTensorData(name: prefix + p.name, dtype: .f32, shape: [p.count], bytes: bytes))
            }
        }
        try SafetensorsWriter.write(to: dir + "/optimizer.safetensors", tensors: moments,
                                    metadata: ["adam_step": String(optimizer.step)])
        try TrainingCheckpoint.writeJSON(TrainingCheckpoint.StateFile(state: state, training: training, adamStep: optimizer.step),
                                         to: dir + "/trainer_state.json")
        try TrainingCheckpoint.writeJSON(TrainingCheckpoint.Pointer(latest: name, step: state.step),
                                         to: run + "/" + TrainingCheckpoint.pointerName)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []
        where entry.hasPrefix("checkpoint-") && entry != name {
            try? FileManager.default.removeItem(atPath: run + "/" + entry)
        }
    }

    /// The latest checkpoint of `run` for a base of `layerCount` blocks of `shape`.
    public static func load(run: String, layerCount: Int, shape: DecoderBlockShape) throws
        -> (weights: LoRAWeights, optimizer: AdamW, state: TrainerState, training: TrainingConfig) {
        let pointerPath = run + "/" + TrainingCheckpoint.pointerName
        guard let pdata = FileManager.default.contents(atPath: pointerPath) else {
            throw QSTError.file(pointerPath, "no checkpoint to resume from")
        }
        let pointer: TrainingCheckpoint.Pointer
        do { pointer = try JSONDecoder().decode(TrainingCheckpoint.Pointer.self, from: pdata) } catch {
            throw QSTError.file(pointerPath, "unreadable: \(error)")
        }
        let dir = run + "/" + pointer.latest
        let weights = try LoRAAdapterIO.load(directory: dir, layerCount: layerCount, shape: shape)
        let statePath = dir + "/trainer_state.json"
        guard let sdata = FileManager.default.contents(atPath: statePath) else { throw QSTError.file(statePath, "missing") }
        let file: TrainingCheckpoint.StateFile
        do { file = try JSONDecoder().decode(TrainingCheckpoint.StateFile.self, from: sdata) } catch {
            throw QSTError.file(statePath, "unreadable: \(error)")
        }
        let optimizer = AdamW(parameters: weights.parameters, config: file.training.adamW)
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

    /// Whether `run` holds a LoRA checkpoint (an adapter_config.json in its latest checkpoint).
    public static func isLoRARun(_ run: String) -> Bool {
        guard let d = FileManager.default.contents(atPath: run + "/" + TrainingCheckpoint.pointerName),
              let p = try? JSONDecoder().decode(TrainingCheckpoint.Pointer.self, from: d) else { return false }
        return FileManager.default.fileExists(atPath: run + "/" + p.latest + "/" + LoRAAdapterIO.configName)
    }
}
