import Foundation
import QSTFormat
import QSTNN

/// Element type of exported side tensors.
public enum ExportDType: String, Codable, CaseIterable, Sendable {
    case f32, bf16, f16
    public var dtype: DType {
        switch self {
        case .f32: return .f32
        case .bf16: return .bf16
        case .f16: return .f16
        }
    }
}

/// Where an exported side network came from (kept through re-exports).
public struct ExportOrigin: Codable, Sendable, Equatable {
    /// `best`, `last`, `step` or `side-folder`.
    public var checkpoint: String
    public var step: Int?
    public init(checkpoint: String, step: Int? = nil) { self.checkpoint = checkpoint; self.step = step }
}

/// `adapter_config.json` (Formats/SIDE.md §7): everything needed to rebuild and attach the side network.
public struct AdapterConfig: Codable, Sendable, Equatable {
    public static let formatTag = "qst-adapter-1"
    public var format: String = AdapterConfig.formatTag
    public var peftType: String = "QST"
    public var base: BaseIdentity
    public var side: SideConfig
    public var dtype: ExportDType
    /// How tensor names are spelled: the reference PyTorch implementation's state dict.
    public var tensorNames: String = "QSTLlamaForCausalLM.state_dict"
    public var origin: ExportOrigin

    enum CodingKeys: String, CodingKey {
        case format, base, side, dtype, origin
        case peftType = "peft_type", tensorNames = "tensor_names"
    }

    public init(base: BaseIdentity, side: SideConfig, dtype: ExportDType, origin: ExportOrigin) {
        self.base = base; self.side = side; self.dtype = dtype; self.origin = origin
        tensorNames = SideExportMapping.tensorNames(side)
    }

    /// Sorted keys, two-space indentation, trailing newline: the same config gives the same bytes.
    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try e.encode(self) + Data("\n".utf8)
    }
}

/// An adapter folder: `adapter_model.safetensors` + `adapter_config.json`.
public enum AdapterIO {
    public static let weightsFileName = "adapter_model.safetensors"
    public static let configFileName = "adapter_config.json"

    /// The side tensors in layout order, converted to `dtype`.
    public static func tensors(_ weights: SideWeights, dtype: ExportDType) throws -> [SafetensorsTensorData] {
        try weights.specs.map { s in
            let values = SideExportMapping.exported(
                Array(
                    UnsafeBufferPointer(
                        start: weights.values.pointer + s.offset,
                        count: s.count)),
                name: s.name, config: weights.config)
            for v in values where !v.isFinite {
                throw QSTError("side tensor '\(s.name)' holds a non-finite value; refusing to export it")
            }
            if dtype == .f16, let big = values.first(where: { abs($0) > 65504 }) {
                throw QSTError(
                    "side tensor '\(s.name)' holds \(big), beyond the F16 range; export with --dtype f32 or bf16")
            }
            return try SafetensorsTensorData(name: s.name, shape: s.shape, floats: values, dtype: dtype.dtype)
        }
    }

    /// Writes both files (each atomically). Deterministic: the same weights and config give the same bytes.
    public static func save(_ weights: SideWeights, config: AdapterConfig, directory: String) throws {
        guard weights.config == config.side else {
            throw QSTError("\(directory): adapter config does not describe these weights")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configData = try config.jsonData()
        let meta = [
            "format": AdapterConfig.formatTag,
            "side_config": String(decoding: try weights.config.jsonData(), as: UTF8.self),
        ]
        try SafetensorsWriter.write(
            to: directory + "/" + weightsFileName, tensors: try tensors(weights, dtype: config.dtype),
            metadata: meta)
        let out = try AtomicFileWriter(path: directory + "/" + configFileName)
        try out.write(configData)
        try out.commit()
    }

    /// Whether `directory` is an adapter folder (rather than a side folder from qst-init-side / qst-tune).
    public static func isAdapter(_ directory: String) -> Bool {
        FileManager.default.fileExists(atPath: directory + "/" + configFileName)
    }

    /// Loads an adapter folder, or a plain side folder (then `config` is nil: no base identity to check).
    public static func load(directory: String) throws -> (weights: SideWeights, config: AdapterConfig?) {
        guard isAdapter(directory) else { return (try SideWeightsIO.load(directory: directory), nil) }
        let configPath = directory + "/" + configFileName
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw QSTError.file(configPath, "cannot read")
        }
        let config: AdapterConfig
        do { config = try JSONDecoder().decode(AdapterConfig.self, from: data) } catch {
            throw QSTError.file(configPath, "not a QST adapter configuration: \(error)")
        }
        guard config.format == AdapterConfig.formatTag else {
            throw QSTError.file(configPath, "format '\(config.format)' is not \(AdapterConfig.formatTag)")
        }
        let weightsPath = directory + "/" + weightsFileName
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw QSTError.file(
                weightsPath, "missing (the adapter folder needs both \(weightsFileName) and \(configFileName))")
        }
        let weights = try SideWeightsIO.read(config: config.side, file: try SafetensorsFile(path: weightsPath))
        SideExportMapping.importInPlace(weights)
        return (weights, config)
    }
}
