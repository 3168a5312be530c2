import Foundation
import QSTEngine
import QSTFormat
import QSTNN

/// LoRA adapters in Hugging Face PEFT's layout, so `PeftModel.from_pretrained(base, folder)` loads them:
///   folder/adapter_model.safetensors   base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight [r, in], …
///   folder/adapter_config.json         peft_type LORA, r, lora_alpha, lora_dropout, target_modules, …
public enum LoRAAdapterIO {
    public static let weightsName = "adapter_model.safetensors"
    public static let configName = "adapter_config.json"

    /// adapter_config.json as PEFT writes it (the fields PEFT needs to rebuild the LoRA layers).
    struct PEFTConfig: Codable {
        var peft_type = "LORA"
        var task_type = "CAUSAL_LM"
        var base_model_name_or_path: String
        var r: Int
        var lora_alpha: Double
        var lora_dropout: Float
        var target_modules: [String]
        var bias = "none"
        var fan_in_fan_out = false
        var inference_mode = true
        var init_lora_weights = true
        var use_rslora = false
        var use_dora = false
        var layers_to_transform: [Int]? = nil
        var modules_to_save: [String]? = nil
        /// QST's own extras (PEFT ignores unknown keys): the seed and the block shape the adapters fit.
        var qst_seed: UInt64?
        var qst_layer_count: Int?
    }

    public static func save(_ w: LoRAWeights, directory: String, extraMetadata: [String: String] = [:]) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let r = w.config.r
        var tensors: [SafetensorsTensorData] = []
        for p in w.pairs {
            for (name, offset, shape) in [(p.nameA, p.offsetA, [r, p.inF]), (p.nameB, p.offsetB, [p.outF, r])] {
                let count = shape[0] * shape[1]
                let bytes = Array(UnsafeRawBufferPointer(start: w.values.pointer + offset, count: count * 4))
                tensors.append(SafetensorsTensorData(name: name, dtype: .f32, shape: shape, bytes: bytes))
            }
        }
        var meta = extraMetadata
        meta["format"] = "pt"
        try SafetensorsWriter.write(to: directory + "/" + weightsName, tensors: tensors, metadata: meta)
        let c = w.config
        let peft = PEFTConfig(
            base_model_name_or_path: c.baseModel, r: r, lora_alpha: c.alpha, lora_dropout: c.dropout,
            target_modules: c.targets.map(\.rawValue), qst_seed: c.seed, qst_layer_count: w.layerCount)
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let out = try AtomicFileWriter(path: directory + "/" + configName)
        try out.write(try e.encode(peft))
        try out.write([UInt8]("\n".utf8))
        try out.commit()
    }

    /// Reads the configuration of an adapter folder.
    public static func loadConfig(directory: String) throws -> LoRAConfig {
        let path = directory + "/" + configName
        guard let data = FileManager.default.contents(atPath: path) else { throw QSTError.file(path, "cannot read") }
        let p: PEFTConfig
        do { p = try JSONDecoder().decode(PEFTConfig.self, from: data) } catch {
            throw QSTError.file(path, "not a PEFT LoRA adapter_config.json: \(error)")
        }
        guard p.peft_type == "LORA" else { throw QSTError.file(path, "peft_type is \(p.peft_type), expected LORA") }
        guard !p.use_dora, !p.use_rslora, !p.fan_in_fan_out, p.bias == "none" else {
            throw QSTError.file(path, "DoRA, rsLoRA, fan_in_fan_out and LoRA biases are not supported")
        }
        let targets = try p.target_modules.map { name -> LoRATarget in
            guard let t = LoRATarget(rawValue: name) else {
                throw QSTError.file(path, "target module '\(name)' is not supported")
            }
            return t
        }
        let c = LoRAConfig(
            r: p.r, alpha: p.lora_alpha, dropout: p.lora_dropout, targets: targets, seed: p.qst_seed ?? 0,
            baseModel: p.base_model_name_or_path)
        do { try c.validate() } catch { throw QSTError.file(path, "\(error)") }
        return c
    }

    /// Loads adapters for a base of `layerCount` blocks of `shape`; every tensor must be present with its shape.
    public static func load(directory: String, layerCount: Int, shape: DecoderBlockShape) throws -> LoRAWeights {
        let w = try LoRAWeights(config: try loadConfig(directory: directory), layerCount: layerCount, shape: shape)
        let file = try SafetensorsFile(path: directory + "/" + weightsName)
        let r = w.config.r
        for p in w.pairs {
            for (name, offset, shape) in [(p.nameA, p.offsetA, [r, p.inF]), (p.nameB, p.offsetB, [p.outF, r])] {
                guard let info = file.tensors[name] else { throw QSTError.tensor(file.path, name, "missing") }
                guard info.shape == shape else {
                    throw QSTError.tensor(
                        file.path, name, "shape \(info.shape) does not fit the base (expected \(shape))")
                }
                try file.floats(
                    name, into: UnsafeMutableBufferPointer(start: w.values.pointer + offset, count: shape[0] * shape[1])
                )
            }
        }
        return w
    }
}
