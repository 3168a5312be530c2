import Foundation
import QSTFormat
import QSTNN

/// Side networks on disk: a folder with `side.safetensors` (F32 tensors named as the reference's state dict,
/// the configuration in the `__metadata__` under `side_config`) and the same configuration as `side_config.json`.
public enum SideWeightsIO {
    public static let weightsFileName = "side.safetensors"
    public static let configFileName = "side_config.json"
    public static let formatTag = "qst-side-1"

    /// Writes both files atomically (each is complete or untouched). `extraMetadata` is added to the header.
    public static func save(_ weights: SideWeights, directory: String, extraMetadata: [String: String] = [:]) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configData = try weights.config.jsonData()
        let configText = String(decoding: configData, as: UTF8.self)
        // Views into the live weights, not copies (a 70B side network is 1 GiB).
        var tensors: [SafetensorsTensorView] = []
        tensors.reserveCapacity(weights.specs.count)
        for s in weights.specs {
            tensors.append(
                SafetensorsTensorView(
                    name: s.name, dtype: .f32, shape: s.shape,
                    bytes: UnsafeRawBufferPointer(
                        start: weights.values.pointer + s.offset,
                        count: s.count * MemoryLayout<Float>.stride)))
        }
        var meta = extraMetadata
        meta["format"] = formatTag
        meta["side_config"] = configText
        try withExtendedLifetime(weights) {
            try SafetensorsWriter.write(to: directory + "/" + weightsFileName, views: tensors, metadata: meta)
        }
        let out = try AtomicFileWriter(path: directory + "/" + configFileName)
        try out.write(configData)
        try out.write([UInt8]("\n".utf8))
        try out.commit()
    }

    /// Reads the configuration (side_config.json, else the safetensors metadata) and the weights.
    /// Every tensor of the layout must be present with its shape; F32, F16 and BF16 are accepted.
    public static func load(directory: String) throws -> SideWeights {
        let weightsPath = directory + "/" + weightsFileName
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw QSTError.file(weightsPath, "no side network here (expected \(weightsFileName) from qst-init-side)")
        }
        let file = try SafetensorsFile(path: weightsPath)
        let configPath = directory + "/" + configFileName
        let config: SideConfig
        if let data = FileManager.default.contents(atPath: configPath) {
            config = try SideConfig.decode(data, context: configPath)
        } else if let text = file.metadata["side_config"] {
            config = try SideConfig.decode(Data(text.utf8), context: weightsPath + " (metadata side_config)")
        } else {
            throw QSTError.file(directory, "no \(configFileName) and no side_config in the safetensors metadata")
        }
        return try read(config: config, file: file)
    }

    /// The side network of `config` with its weights from `file`. The file is checked against the layout
    /// before anything is allocated.
    public static func read(config: SideConfig, file: SafetensorsFile) throws -> SideWeights {
        try check(file, against: try SideWeights.layout(config).specs, config: config)
        let weights = try SideWeights(config: config)
        try read(into: weights, file: file)
        return weights
    }

    /// Every tensor of the layout present with its shape, nothing else.
    static func check(_ file: SafetensorsFile, against specs: [SideTensorSpec], config: SideConfig) throws {
        let known = Set(specs.map(\.name))
        for name in file.orderedNames where !known.contains(name) {
            throw QSTError.tensor(
                file.path, name,
                "not part of this side network's layout (\(config.downsample) "
                    + "downsampler, \(config.base.layerCount) layers)")
        }
        for s in specs {
            guard let info = file.tensors[s.name] else { throw QSTError.tensor(file.path, s.name, "missing") }
            guard info.shape == s.shape else {
                throw QSTError.tensor(file.path, s.name, "has shape \(info.shape), expected \(s.shape)")
            }
        }
    }

    /// Copies every tensor of `weights`' layout from `file`, checking names and shapes.
    public static func read(into weights: SideWeights, file: SafetensorsFile) throws {
        try check(file, against: weights.specs, config: weights.config)
        for s in weights.specs {
            try file.floats(
                s.name,
                into: UnsafeMutableBufferPointer(
                    start: weights.values.pointer + s.offset,
                    count: s.count))
        }
    }
}
