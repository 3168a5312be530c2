import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// Resumable LoRA checkpoints, laid out as the side network's (Formats/RUNS.md §4) with the adapter in
/// PEFT layout: run/checkpoint-N/{adapter_model.safetensors, adapter_config.json, optimizer.safetensors,
/// trainer_state.json}, run/checkpoint.json switched last.
public enum LoRACheckpoint {
    public static func save(
        run: String, weights: LoRAWeights, optimizer: AdamW, state: TrainerState,
        training: TrainingConfig
    ) throws {
        try TrainingCheckpoint.save(run: run, optimizer: optimizer, state: state, training: training) {
            try LoRAAdapterIO.save(weights, directory: $0)
        }
    }

    /// The latest checkpoint of `run` for a base of `layerCount` blocks of `shape`.
    public static func load(run: String, layerCount: Int, shape: DecoderBlockShape) throws
        -> (weights: LoRAWeights, optimizer: AdamW, state: TrainerState, training: TrainingConfig)
    {
        try TrainingCheckpoint.load(
            run: run, weights: { try LoRAAdapterIO.load(directory: $0, layerCount: layerCount, shape: shape) },
            parameters: \.parameters)
    }

    /// Whether `run` holds a LoRA checkpoint (an adapter_config.json in its latest checkpoint).
    public static func isLoRARun(_ run: String) -> Bool {
        guard let dir = TrainingCheckpoint.latestDirectory(run: run) else { return false }
        return FileManager.default.fileExists(atPath: dir + "/" + LoRAAdapterIO.configName)
    }
}
