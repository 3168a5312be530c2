import Foundation
import QSTCLI
import QSTEngine
import QSTNN
import QSTSide

/// `qst-tune --method lora`: LoRA adapters on the frozen base, trained with backpropagation through it,
/// with the same data, schedules, checkpoints, logs and run folder as the QST path (`Tune.train`).
extension Tune {
    func prepareLoRA(backbone: FrozenModel, run: String) throws -> PreparedModel<LoRAModel> {
        let gradientCheckpointing = loraArguments.gradientCheckpointing
        let training: TrainingConfig, lora: LoRAModel
        var resumed: (optimizer: AdamW, state: TrainerState)?
        if let resume {
            let ck = try LoRACheckpoint.load(
                run: resume, layerCount: backbone.config.numHiddenLayers, shape: backbone.blockShape)
            training = ck.training; resumed = (ck.optimizer, ck.state)
            lora = try LoRAModel(base: backbone, weights: ck.weights, gradientCheckpointing: gradientCheckpointing)
            note("resuming \(resume) at step \(ck.state.step) (hyper-parameters from the checkpoint)")
        } else {
            training = try trainingConfig()
            if TrainingCheckpoint.exists(run: run) {
                throw QSTError("\(run) already holds a run; use --resume \(run) or another -o", kind: .outputExists)
            }
            lora = try LoRAModel.fresh(
                base: backbone, config: try loraArguments.config(seed: seed, baseModel: model),
                gradientCheckpointing: gradientCheckpointing)
        }
        let params = lora.weights.parameterCount
        let activations = lora.activationBytes(batch: training.batchSize, seqLen: training.maxLength)
        let config = lora.weights.config
        let note =
            "LoRA r \(config.r), alpha \(config.alpha), targets \(config.targets.map(\.rawValue).joined(separator: ",")): "
            + "\(params) trainable parameters, AdamW state \(Units.bytes(8 * params)), activations ≈ \(Units.bytes(activations))"
            + (gradientCheckpointing ? " (gradient checkpointing)" : "")
        return PreparedModel(
            model: lora, training: training, resumed: resumed, estimatedMemory: activations + 16 * params,
            notes: [note], steps: "LoRA steps", weights: "best adapters (PEFT layout)")
    }
}
